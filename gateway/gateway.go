package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/fundplatform/fund/accounts"
	fundv1 "github.com/fundplatform/fund/gateway/api/fund/v1"
	"github.com/fundplatform/fund/gateway/auth"
)

// Config of a Gateway. Zero values take the defaults in brackets.
type Config struct {
	// JWTKey verifies bearer tokens (HS256, >= 32 bytes). Required unless
	// JWTKeys is given; with both, either kind of token is accepted.
	JWTKey []byte
	// JWTKeys verifies an identity provider's tokens (EdDSA, RS256) by their
	// key id: an auth.KeySet (auth.LoadJWKS) or an auth.JWKSSource
	// (auth.NewJWKSFile, auth.NewJWKSURL; its owner closes it after the
	// gateway stops). nil = HS256 tokens only.
	JWTKeys auth.KeySource
	// Accounts is the service behind the API. Required.
	Accounts *accounts.Service
	// Settler and Reconciler serve the admin settlement and reconciliation
	// calls; nil = those calls answer 501 (not configured).
	Settler    Settler
	Reconciler Reconciler
	// TestClock, when set, is the sandbox's business clock, which the
	// admin API shows and moves (clock:advance); nil = the business time
	// is the wall clock, and clock:advance answers 404
	// TEST_CLOCK_DISABLED.
	TestClock TestClock

	// ConcurrencyMax requests are handled at once; more are refused at
	// once with 429 [512]. By Little's law the requests in flight are the
	// throughput times the latency: set it to the rate the stack serves times
	// the latency to keep (5,000/s at 100 ms = 500).
	ConcurrencyMax int
	// LatencyTarget, when set, makes the limit adaptive: it shrinks (down to
	// ConcurrencyMin [16]) while more than 1% of requests take longer than
	// this, and grows back (up to ConcurrencyMax) while they do not, so that
	// the accepted requests' p99 stays near the target under any overload.
	LatencyTarget  time.Duration
	ConcurrencyMin int
	// RatePerCustomer requests a second per customer, bursts of RateBurst
	// [20/s, burst 40]; buckets for at most RateCustomersMax customers are
	// kept [100,000].
	RatePerCustomer  float64
	RateBurst        int
	RateCustomersMax int
	// BodyBytesMax bounds a request body [16 KiB]; larger is 413.
	BodyBytesMax int64
	// RequestTimeout is the deadline of a request that brings none (or a
	// longer one) [10s]; it is passed down to the store and the ledger.
	RequestTimeout time.Duration
	// ShutdownTimeout bounds the wait for in-flight requests on shutdown [30s].
	ShutdownTimeout time.Duration
	// RESTViaLoopback makes the REST handlers call the gRPC server through
	// a loopback gRPC connection instead of calling it in-process. The
	// in-process path is the default because it is faster (compare with
	// `fundctl bench gateway --rest-via-loopback`): no second protobuf
	// serialisation and no HTTP/2 hop.
	RESTViaLoopback bool
	// RESTMuxOnly serves the order calls through grpc-gateway's mux too,
	// instead of the direct path that does the same for less (see
	// orderPath); for comparison.
	RESTMuxOnly bool
	// Ready checks for /readyz, e.g. that the ledger shard is loaded.
	Ready []func(context.Context) error

	// Metrics to record into; nil = NewMetrics(Registry).
	Metrics *Metrics
	// Registry is served at /metrics; nil = a new registry.
	Registry *prometheus.Registry
	Logger   *slog.Logger
	// Now is the clock of token expiry and rate limits (nil = time.Now).
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.ConcurrencyMax == 0 {
		c.ConcurrencyMax = 512
	}
	if c.ConcurrencyMin == 0 {
		c.ConcurrencyMin = min(16, c.ConcurrencyMax)
	}
	if c.RatePerCustomer == 0 {
		c.RatePerCustomer = 20
	}
	if c.RateBurst == 0 {
		c.RateBurst = 40
	}
	if c.RateCustomersMax == 0 {
		c.RateCustomersMax = 100_000
	}
	if c.BodyBytesMax == 0 {
		c.BodyBytesMax = 16 << 10
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 10 * time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(c.Registry)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Gateway serves the fund and admin services over gRPC and, through
// grpc-gateway, over REST/JSON, with authentication, limits and metrics.
type Gateway struct {
	cfg      Config
	accts    *accounts.Service
	verifier *auth.CachedVerifier
	rate     *RateLimiter
	conc     *AdaptiveLimiter
	m        *Metrics
	log      *slog.Logger
	fund     *fundServer
	adm      *adminServer
	openapi  []byte // Swagger 2.0, served at /openapi.json
	openapi3 []byte // OpenAPI 3, served at /openapi3.json
	codec    *codec
	routes   *routeSet
	// shedBody is the 429 answer of the concurrency limit, encoded once:
	// under overload, refusing must cost as little as possible.
	shedBody []byte
	stopping atomic.Bool
}

// New checks cfg and builds a gateway; start it with Serve.
func New(cfg Config) (*Gateway, error) {
	cfg.setDefaults()
	if cfg.Accounts == nil {
		return nil, errors.New("gateway: no accounts service")
	}
	if cfg.ConcurrencyMax < 1 || cfg.ConcurrencyMin < 1 || cfg.ConcurrencyMin > cfg.ConcurrencyMax || cfg.LatencyTarget < 0 || cfg.RatePerCustomer <= 0 || cfg.RateBurst < 1 || cfg.RateCustomersMax < 1 || cfg.BodyBytesMax < 1 {
		return nil, fmt.Errorf("gateway: limits must be positive: %+v", cfg)
	}
	v, err := auth.NewKeysVerifier(auth.Keys{HS256: cfg.JWTKey, Public: cfg.JWTKeys}, cfg.Now)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	codec := newCodec()
	docV2, docV3, err := apiDocuments(codec)
	if err != nil {
		return nil, fmt.Errorf("gateway: openapi: %w", err)
	}
	g := &Gateway{
		cfg: cfg, accts: cfg.Accounts, verifier: auth.NewCachedVerifier(v, tokenCacheMax, cfg.Now), m: cfg.Metrics, log: cfg.Logger.With("role", "gateway"),
		rate:     NewRateLimiter(cfg.RatePerCustomer, cfg.RateBurst, cfg.RateCustomersMax),
		conc:     NewAdaptiveLimiter(cfg.LatencyTarget, cfg.ConcurrencyMin, cfg.ConcurrencyMax),
		openapi:  docV2,
		openapi3: docV3,
		codec:    codec,
		routes:   newRouteSet(cfg.Metrics),
	}
	shed, err := g.codec.Marshal(status.Convert(exhausted(reasonOverloaded, shedMessage, time.Second)).Proto())
	if err != nil {
		return nil, fmt.Errorf("gateway: encode the shed answer: %w", err)
	}
	g.shedBody = shed
	g.fund = &fundServer{g: g}
	g.adm = &adminServer{g: g}
	return g, nil
}

// Metrics returns the gateway's collectors.
func (g *Gateway) Metrics() *Metrics { return g.m }

// tokenCacheMax bounds the verified tokens the gateway remembers (a few
// hundred bytes each).
const tokenCacheMax = 100_000

// retryAfterSecondsMax caps the Retry-After the gateway asks for.
const retryAfterSecondsMax = 60

// exhausted is the 429 answer: RESOURCE_EXHAUSTED with a RetryInfo that the
// HTTP error handler turns into a Retry-After header (of whole seconds:
// retryInfo asks for one at least).
func exhausted(reason, msg string, after time.Duration) error {
	return gatewayError(reason, msg, retryInfo(after)).Err()
}

// rateLimit spends a token of customer c's bucket.
func (g *Gateway) rateLimit(c int64) error {
	ok, wait := g.rate.Allow(c, g.cfg.Now())
	if ok {
		return nil
	}
	g.m.Shed.WithLabelValues("rate").Inc()
	return exhausted(reasonRateLimited, "too many requests for this customer; retry later", wait)
}

const shedMessage = "the gateway is at capacity; retry shortly"

func (g *Gateway) shedConcurrency() error {
	g.m.Shed.WithLabelValues("concurrency").Inc()
	return exhausted(reasonOverloaded, shedMessage, time.Second)
}

// retrySeconds is the Retry-After header of a RetryInfo: whole seconds,
// rounded up, 1 to retryAfterSecondsMax; 1 without one.
func retrySeconds(ri *errdetails.RetryInfo) string {
	if ri == nil {
		return "1"
	}
	s := math.Ceil(ri.GetRetryDelay().AsDuration().Seconds())
	return strconv.Itoa(int(min(max(s, 1), retryAfterSecondsMax)))
}

// Ready reports whether the gateway should get traffic: not shutting down,
// and every Ready check passes.
func (g *Gateway) Ready(ctx context.Context) error {
	if g.stopping.Load() {
		return errors.New("shutting down")
	}
	for _, check := range g.cfg.Ready {
		if err := check(ctx); err != nil {
			return err
		}
	}
	return nil
}

// GRPCServer returns a gRPC server with both services and the gateway's
// interceptor (concurrency limit, deadline, metrics); a message may be as
// large as a REST body.
func (g *Gateway) GRPCServer() *grpc.Server {
	s := grpc.NewServer(grpc.ChainUnaryInterceptor(g.unaryInterceptor), grpc.MaxRecvMsgSize(int(g.cfg.BodyBytesMax)))
	fundv1.RegisterFundServiceServer(s, g.fund)
	fundv1.RegisterAdminServiceServer(s, g.adm)
	return s
}

func (g *Gateway) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	start := time.Now()
	g.m.InFlight.Inc()
	defer func() {
		g.m.InFlight.Dec()
		g.m.Requests.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
		g.m.Duration.WithLabelValues(info.FullMethod).Observe(time.Since(start).Seconds())
	}()
	if !g.conc.TryAcquire() {
		return nil, g.shedConcurrency()
	}
	defer func() { g.conc.Release(time.Since(start)) }()
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > g.cfg.RequestTimeout {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, g.cfg.RequestTimeout)
		defer cancel()
	}
	return handler(ctx, req)
}

// Serve serves gRPC on grpcLn and REST (with /healthz, /readyz, /metrics
// and /openapi.json) on httpLn until ctx ends; then it stops taking
// requests, finishes those in flight (up to ShutdownTimeout) and returns.
// It returns early with an error if a server fails.
func (g *Gateway) Serve(ctx context.Context, httpLn, grpcLn net.Listener) error {
	gs := g.GRPCServer()
	var (
		conn *grpc.ClientConn
		wg   sync.WaitGroup
	)
	if g.cfg.RESTViaLoopback {
		// The REST handlers' own gRPC server, on a private loopback port and
		// without the interceptor: the HTTP side already took the request's
		// concurrency slot and counted it.
		internal := grpc.NewServer()
		fundv1.RegisterFundServiceServer(internal, g.fund)
		fundv1.RegisterAdminServiceServer(internal, g.adm)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("loopback grpc: %w", err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = internal.Serve(ln) }()
		defer func() { internal.Stop(); wg.Wait() }()
		c, err := dialLoopback(ln.Addr().String())
		if err != nil {
			return err
		}
		conn = c
		defer conn.Close()
	}
	h, err := g.httpHandler(ctx, conn)
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      g.cfg.RequestTimeout + 5*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
	}
	errs := make(chan error, 2)
	var swg sync.WaitGroup
	swg.Add(2)
	go func() {
		defer swg.Done()
		if err := hs.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("http: %w", err)
		}
	}()
	go func() {
		defer swg.Done()
		if err := gs.Serve(grpcLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			errs <- fmt.Errorf("grpc: %w", err)
		}
	}()
	g.log.Info("serving", "http", httpLn.Addr().String(), "grpc", grpcLn.Addr().String(), "rest_via_loopback", g.cfg.RESTViaLoopback)
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errs:
	}
	// Shutdown: stop being ready, stop accepting, finish what is in flight.
	g.stopping.Store(true)
	_, inflight := g.conc.Limit()
	g.log.Info("shutting down; finishing in-flight requests", "inflight", inflight)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.cfg.ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		g.log.Warn("http shutdown", "err", err)
		_ = hs.Close()
	}
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-sctx.Done():
		gs.Stop()
		<-stopped
	}
	swg.Wait()
	g.log.Info("stopped")
	return serveErr
}
