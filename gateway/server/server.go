package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/fundplatform/fund/accounts"
	accountspg "github.com/fundplatform/fund/accounts/postgres"
	"github.com/fundplatform/fund/gateway"
	"github.com/fundplatform/fund/ledger"
	ledgergrpc "github.com/fundplatform/fund/ledger/grpc"
	ledgerpg "github.com/fundplatform/fund/ledger/postgres"
)

// Defaults of Config (the flags of `fundd gateway` have the same).
const (
	ShardsDefault = 1
	// LedgerAttemptsDefault bounds the attempts of one ledger call; the
	// request's deadline (gateway.Config.RequestTimeout, 10 s by default)
	// bounds its time, and is what ends the retries of a failover.
	LedgerAttemptsDefault = 40
	// LedgerAttemptTimeoutDefault: a frozen owner is abandoned after 2 s
	// and the request sent to whoever owns the shard by then, so a request
	// with a 10 s deadline survives an owner frozen past its 5 s lease.
	LedgerAttemptTimeoutDefault = 2 * time.Second
	StartTimeoutDefault         = time.Minute
	// requestTimeoutDefault is gateway.Config.RequestTimeout's default:
	// how long the shared databases' readiness checks tolerate an outage.
	requestTimeoutDefault = 10 * time.Second
	// accountsConnsMax is the accounts store's pool by default.
	accountsConnsMax = 64
	// ledgerConnsMax per ledger database: the gateway reads only the
	// lease tables there.
	ledgerConnsMax = 4
	// The sweep of the transfers between shards (SweepTransfers): every
	// tick it resolves up to sweepMax pending ones, within sweepTimeout.
	sweepInterval = 500 * time.Millisecond
	sweepMax      = 256
	sweepTimeout  = 10 * time.Second
)

// Config is the gateway role's settings.
type Config struct {
	// HTTPAddr and GRPCAddr are the REST/JSON (also /healthz, /readyz,
	// /metrics, /openapi.json) and gRPC listen addresses (Run only).
	HTTPAddr, GRPCAddr string
	// DSN of the accounts database (required). With several LedgerDSNs
	// the customers live in the ledger databases, each with its shards
	// (accountspg.Sharded), and DSN must be the first of them, which holds
	// the fund-wide rows.
	DSN string
	// LedgerDSNs are the ledger databases in shard-map order, as given to
	// the ledger owners; empty = DSN alone. Not used with Ledger.
	LedgerDSNs []string
	// Ledger, when set, is the client of each shard in this process (a
	// process that runs the ledger owner too, such as the dev stack);
	// nil = the routing client, which finds each shard's owner in the
	// lease tables of LedgerDSNs and calls it over gRPC.
	Ledger func(shard int) ledger.Client
	// Shards is the number of logical ledger shards the customers are
	// spread over (accounts.ShardOf); 0 = ShardsDefault. Every role must
	// be given the same.
	Shards int
	// LedgerAttempts bounds the attempts of one ledger call (the request's
	// deadline bounds their time: a call gives up, 503, once another
	// attempt could not finish before it); 0 = LedgerAttemptsDefault.
	LedgerAttempts int
	// LedgerAttemptTimeout of one ledger attempt; 0 =
	// LedgerAttemptTimeoutDefault.
	LedgerAttemptTimeout time.Duration
	// StartTimeout bounds waiting for the databases at start; 0 =
	// StartTimeoutDefault.
	StartTimeout time.Duration
	// Gateway is the gateway's limits and timeouts, and the Settler and
	// Reconciler it serves (nil: those admin calls answer 501). The role
	// fills in the key, the accounts service, the registry, the metrics,
	// the logger and the readiness checks (after those given).
	Gateway gateway.Config
	// JWTKey signs and verifies tokens (required, auth.KeyLenMin bytes).
	JWTKey []byte
	// Breaker tunes the circuit breakers: one per owner address with the
	// routing client (gateway.OwnerBreakers), one per shard with Ledger.
	Breaker gateway.BreakerConfig
	// Accounts tunes the accounts service (fast-redemption cap); its
	// Shards is set from Shards.
	Accounts accounts.Config
	// AccountsConnsMax is the accounts store's pool in each of its
	// databases; 0 = 64 (enough for
	// the order writers and the reads of a busy gateway: every order
	// holds a connection while its ledger batch commits).
	AccountsConnsMax int32
	// OrderWriters and OrderBatchMax tune the accounts store's batched
	// order placement (accounts/postgres.Config); 0 = its defaults.
	OrderWriters, OrderBatchMax int
	// Registry is served at /metrics; nil = a new one with the Go and
	// process collectors.
	Registry *prometheus.Registry
	// Logger; nil = discard.
	Logger *slog.Logger
}

// Run serves the APIs until ctx ends, then shuts down gracefully.
func Run(ctx context.Context, cfg Config) error {
	s, err := Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	httpLn, grpcLn, err := listenBoth(cfg.HTTPAddr, cfg.GRPCAddr)
	if err != nil {
		return err
	}
	return s.Serve(ctx, httpLn, grpcLn)
}

// Server is the gateway role opened but not serving yet: the accounts
// service in front of the ledger shards, each behind its circuit breaker.
// A process that composes several roles (the dev stack) opens it, hands
// the service to its other roles, and then serves the API on listeners of
// its own.
type Server struct {
	cfg     Config
	log     *slog.Logger
	reg     *prometheus.Registry
	metrics *gateway.Metrics
	ledger  *gateway.ShardedClient
	store   *accountspg.Sharded
	svc     *accounts.Service
	dbs     *ledgerpg.Databases // the lease tables; nil with Config.Ledger
	ready   []func(context.Context) error
	closers []func() // in reverse order on Close
}

// Open opens the accounts store and builds the service in front of the
// ledger: through cfg.Ledger in this process, else the routing client
// over the lease tables. The caller must Close it.
func Open(ctx context.Context, cfg Config) (_ *Server, err error) {
	if cfg.DSN == "" {
		return nil, errors.New("no accounts database (DSN) given")
	}
	cfg.Shards = cmp.Or(cfg.Shards, ShardsDefault)
	s := &Server{cfg: cfg, log: cfg.Logger, reg: cfg.Registry}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.reg == nil {
		s.reg = prometheus.NewRegistry()
		s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	octx, cancel := context.WithTimeout(ctx, cmp.Or(cfg.StartTimeout, StartTimeoutDefault))
	defer cancel()
	s.metrics = gateway.NewMetrics(s.reg)
	// The accounts service asks the shards themselves how a transfer
	// between shards ended (accounts.Config.ShardClient), outside the
	// breakers: a status lookup that fails leaves the order pending for
	// the next one, and answers no request with an error.
	perShard := cfg.Ledger
	if cfg.Ledger != nil {
		s.ledger = gateway.NewShardedClient(cfg.Shards, cfg.Ledger, cfg.Breaker, s.metrics.BreakerChanged)
	} else {
		if perShard, err = s.openRouter(octx); err != nil {
			return nil, err
		}
		s.ledger = gateway.NewShardedRoutes(cfg.Shards, perShard)
	}
	for _, b := range s.ledger.Breakers() {
		s.metrics.BreakerState.WithLabelValues(b.Target()).Set(0)
	}
	if s.store, err = openAccounts(octx, cfg); err != nil {
		return nil, fmt.Errorf("accounts store: %w", err)
	}
	s.closers = append(s.closers, s.store.Close)
	// Every replica shares these databases: their check tolerates an
	// outage shorter than a request's deadline (outageTolerant says why).
	checks := []func(context.Context) error{s.store.Ping}
	if s.dbs != nil {
		checks = append(checks, func(ctx context.Context) error { return leasesReadable(ctx, s.dbs) })
	}
	grace := cmp.Or(cfg.Gateway.RequestTimeout, requestTimeoutDefault)
	s.ready = append(s.ready, newOutageTolerant("shared databases", grace, allOf(checks...)).Check)
	// A database restart shorter than a request's deadline is latency: the
	// service's store calls are retried within it (accounts.RetryStore says
	// which, and why that is safe), except those of a store closing.
	retrying := accounts.NewRetryStore(s.store, accounts.RetryConfig{Retryable: func(err error) bool {
		return errors.Is(err, accounts.ErrUnavailable) && !errors.Is(err, accountspg.ErrClosed)
	}})
	acfg := cfg.Accounts
	acfg.Shards, acfg.ShardClient = cfg.Shards, perShard
	if s.svc, err = accounts.NewService(octx, acfg, retrying, s.ledger, s.log.With("role", "accounts")); err != nil {
		return nil, fmt.Errorf("accounts: %w", err)
	}
	return s, nil
}

// openRouter opens the ledger databases' lease tables and the routing
// client that calls each shard's owner over gRPC, with a breaker per owner
// address; s.metrics must be set.
func (s *Server) openRouter(ctx context.Context) (func(int) ledger.Client, error) {
	dsns := s.cfg.LedgerDSNs
	if len(dsns) == 0 {
		dsns = []string{s.cfg.DSN}
	}
	dbs, err := ledgerpg.OpenDatabases(ctx, ledgerpg.DatabasesConfig{DSNs: dsns, Shards: s.cfg.Shards, ConnsMax: ledgerConnsMax})
	if err != nil {
		return nil, fmt.Errorf("ledger databases: %w", err)
	}
	s.closers = append(s.closers, dbs.Close)
	router := ledgergrpc.NewClient(ledgergrpc.ClientConfig{Shards: s.cfg.Shards,
		AttemptsMax:    cmp.Or(s.cfg.LedgerAttempts, LedgerAttemptsDefault),
		AttemptTimeout: cmp.Or(s.cfg.LedgerAttemptTimeout, LedgerAttemptTimeoutDefault),
		Breakers:       gateway.NewOwnerBreakers(s.cfg.Breaker, s.metrics.BreakerChanged, s.metrics.BreakerGone),
		Logger:         s.log}, dbs)
	s.closers = append(s.closers, func() { _ = router.Close() })
	s.dbs = dbs
	return router.ForShard, nil
}

// Accounts is the service behind the API.
func (s *Server) Accounts() *accounts.Service { return s.svc }

// AccountsStore is the first accounts database's store: all of the
// service's store with one database (AccountsShards is the whole).
func (s *Server) AccountsStore() *accountspg.Store { return s.store.Database(0) }

// AccountsShards is the service's store, over every accounts database.
func (s *Server) AccountsShards() *accountspg.Sharded { return s.store }

// openAccounts opens the accounts store: over the ledger databases when
// there are several (each customer in its shard's database), else over
// DSN alone.
func openAccounts(ctx context.Context, cfg Config) (*accountspg.Sharded, error) {
	dsns := []string{cfg.DSN}
	if len(cfg.LedgerDSNs) > 1 {
		if cfg.DSN != cfg.LedgerDSNs[0] {
			return nil, errors.New("with several ledger databases the customers live in them: the accounts " +
				"database (DSN) must be the first ledger database, which holds the fund-wide rows")
		}
		dsns = cfg.LedgerDSNs
	}
	return accountspg.OpenSharded(ctx, accountspg.ShardedConfig{DSNs: dsns, Shards: cfg.Shards,
		ConnsMax: cmp.Or(cfg.AccountsConnsMax, accountsConnsMax), OrderWriters: cfg.OrderWriters,
		OrderBatchMax: cfg.OrderBatchMax})
}

// Ledger is the service's ledger client: every shard behind its breaker.
func (s *Server) Ledger() ledger.Client { return s.ledger }

// Registry holds the gateway's metrics, served at /metrics.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Gateway builds the API over the service with cfg.Gateway, adding the
// settler and reconciler when not nil (in place of the Config's).
func (s *Server) Gateway(settler gateway.Settler, rec gateway.Reconciler) (*gateway.Gateway, error) {
	gcfg := s.cfg.Gateway
	if settler != nil {
		gcfg.Settler = settler
	}
	if rec != nil {
		gcfg.Reconciler = rec
	}
	gcfg.JWTKey, gcfg.Accounts, gcfg.Registry, gcfg.Metrics, gcfg.Logger = s.cfg.JWTKey, s.svc, s.reg, s.metrics, s.log
	gcfg.Ready = append(slices.Clip(gcfg.Ready), s.ready...)
	return gateway.New(gcfg)
}

// Serve builds the API with Config.Gateway and serves it on the listeners
// until ctx ends, then shuts down gracefully; SweepTransfers runs beside it
// meanwhile.
func (s *Server) Serve(ctx context.Context, httpLn, grpcLn net.Listener) error {
	gw, err := s.Gateway(nil, nil)
	if err != nil {
		_ = httpLn.Close()
		_ = grpcLn.Close()
		return err
	}
	sctx, stop := context.WithCancel(ctx)
	swept := make(chan struct{})
	go func() {
		defer close(swept)
		s.SweepTransfers(sctx)
	}()
	defer func() {
		stop()
		<-swept
	}()
	return gw.Serve(ctx, httpLn, grpcLn)
}

// SweepTransfers resolves the pending transfers between shards until ctx
// ends (accounts.Service.ResolvePendingTransfers, a bounded batch every
// tick), so that a transfer's order and the payee's history show its end
// soon after the payee's shard applied it, whether or not anyone reads the
// order. Reads resolve what they answer with too; this catches the rest.
// With one shard no transfer is ever pending, and it returns at once. A
// process that serves the API on its own listeners (Gateway) runs it.
func (s *Server) SweepTransfers(ctx context.Context) {
	if s.svc.Shards() == 1 {
		return
	}
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	failing := false // logged once per spell of failures, not every tick
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		tctx, cancel := context.WithTimeout(ctx, sweepTimeout)
		n, err := s.svc.ResolvePendingTransfers(tctx, sweepMax)
		cancel()
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil && !failing:
			s.log.Warn("pending transfers not resolved; retrying every tick", "err", err)
			failing = true
		case err != nil:
			s.log.Debug("pending transfers not resolved", "err", err)
		case failing:
			s.log.Info("pending transfers resolved again", "ended", n)
			failing = false
		case n > 0:
			s.log.Debug("pending transfers resolved", "ended", n)
		}
	}
}

// Close closes what Open opened, once the API stopped serving.
func (s *Server) Close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}

// leasesReadable is ready when the lease tables answer, whether or not
// every shard has an owner right now. A shard between owners (a dead
// owner's lease not expired yet) is answered 503 for its own customers
// only; taking the gateway out of service for it would turn one shard's
// failover into an outage of every shard (the front, or Kubernetes,
// stops sending this pod anything).
func leasesReadable(ctx context.Context, dir ledger.Directory) error {
	_, err := dir.ShardOwners(ctx)
	return err
}

func listenBoth(httpAddr, grpcAddr string) (net.Listener, net.Listener, error) {
	h, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen --http %s: %w", httpAddr, err)
	}
	g, err := net.Listen("tcp", grpcAddr)
	if err != nil {
		return nil, nil, errors.Join(fmt.Errorf("listen --grpc %s: %w", grpcAddr, err), h.Close())
	}
	return h, g, nil
}
