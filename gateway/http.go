package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	fundv1 "github.com/fundplatform/fund/gateway/api/fund/v1"
)

// headerMatcher forwards the Idempotency-Key header as metadata
// "idempotency-key", and no other header: the services read nothing else
// (grpc-gateway always forwards the Authorization header as
// "authorization"), and each forwarded header costs a key, a value and a
// lower-casing per request.
func headerMatcher(key string) (string, bool) {
	if key == "Idempotency-Key" || http.CanonicalHeaderKey(key) == "Idempotency-Key" {
		return mdIdempotencyKey, true
	}
	return "", false
}

func dialLoopback(addr string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("loopback grpc %s: %w", addr, err)
	}
	return conn, nil
}

// httpHandler is the whole HTTP surface: the REST API (through
// grpc-gateway, calling the servers in-process, or through conn when it is
// not nil) and the operational endpoints.
func (g *Gateway) httpHandler(ctx context.Context, conn *grpc.ClientConn) (http.Handler, error) {
	mux := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, g.codec),
		runtime.WithIncomingHeaderMatcher(headerMatcher),
		runtime.WithErrorHandler(g.httpError),
		runtime.WithRoutingErrorHandler(g.routingError),
		runtime.WithMiddlewares(g.routeMiddleware),
	)
	// The mux tries a method's routes newest first: the admin service is
	// registered first so that the customers' calls, most of the traffic,
	// are tried first (no pattern of one service matches a path of the
	// other).
	var err error
	if conn != nil {
		err = errors.Join(fundv1.RegisterAdminServiceHandler(ctx, mux, conn), fundv1.RegisterFundServiceHandler(ctx, mux, conn))
	} else {
		err = errors.Join(fundv1.RegisterAdminServiceHandlerServer(ctx, mux, g.adm),
			fundv1.RegisterFundServiceHandlerServer(ctx, mux, g.fund))
	}
	if err != nil {
		return nil, fmt.Errorf("register rest handlers: %w", err)
	}
	var api http.Handler = mux
	if conn == nil && !g.cfg.RESTMuxOnly {
		api = g.newOrderPath(mux)
	}
	top := http.NewServeMux()
	top.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	top.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		rctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := g.Ready(rctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "not ready: "+err.Error()+"\n")
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	top.Handle("GET /metrics", promhttp.HandlerFor(g.cfg.Registry, promhttp.HandlerOpts{}))
	for path, doc := range map[string][]byte{"GET /openapi.json": g.openapi, "GET /openapi3.json": g.openapi3} {
		top.HandleFunc(path, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(doc)
		})
	}
	top.Handle("/", g.apiMiddleware(api))
	return top, nil
}

// statusRecorder remembers the status written and, once the mux matched
// one, the route's metrics. It is the only per-request state of the
// middleware: routeMiddleware finds it as its ResponseWriter (grpc-gateway
// passes the writer through as it got it), so no context value and no copy
// of the request carry the route out.
type statusRecorder struct {
	http.ResponseWriter
	code  int
	wrote bool
	route *routeMetrics
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wrote {
		s.code, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if !s.wrote {
		s.code, s.wrote = http.StatusOK, true
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// apiMiddleware wraps the REST API: in-flight gauge, request metrics by
// route and status, access log, and a recovered panic answered with 500.
func (g *Gateway) apiMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		g.m.InFlight.Inc()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		defer func() {
			if p := recover(); p != nil {
				g.log.Error("panic serving request", "panic", fmt.Sprint(p), "method", r.Method, "path", r.URL.Path)
				if !rec.wrote {
					g.writeStatus(rec, gatewayError(reasonInternal, "internal error"))
				}
			}
			g.m.InFlight.Dec()
			elapsed := time.Since(start)
			route := rec.route
			if route == nil {
				route = g.routes.unmatched
			}
			route.observe(rec.code, elapsed)
			level := slog.LevelDebug // successes and sheds: too many to log at the peak
			switch {
			case rec.code >= 500:
				level = slog.LevelError
			case rec.code >= 400 && rec.code != http.StatusTooManyRequests:
				level = slog.LevelInfo
			}
			if g.log.Enabled(r.Context(), level) {
				g.log.Log(r.Context(), level, "request", "method", r.Method, "route", route.name, "path", r.URL.Path,
					"status", rec.code, "duration_ms", float64(elapsed.Microseconds())/1000)
			}
		}()
		next.ServeHTTP(rec, r)
	})
}

// routeMiddleware runs after the mux matched a route, before the body is
// decoded: it names the route for the metrics and runs serveRoute. The mux
// wraps each route's handler once, so the route's metrics are looked up on
// its first request and kept here.
func (g *Gateway) routeMiddleware(next runtime.HandlerFunc) runtime.HandlerFunc {
	var cached atomic.Pointer[routeMetrics]
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		if rec, ok := w.(*statusRecorder); ok {
			rm := cached.Load()
			if rm == nil || rm.method != r.Method {
				// The first request, or one the mux let through under
				// another method (POST for GET with X-HTTP-Method-Override).
				rm = g.routes.unmatched
				if p, ok := runtime.HTTPPattern(r.Context()); ok {
					rm = g.routes.get(r.Method, p.String())
					cached.CompareAndSwap(nil, rm)
				}
			}
			rec.route = rm
		}
		g.serveRoute(w, r, func(ctx context.Context, w http.ResponseWriter, r *http.Request) {
			next(w, r.WithContext(ctx), params)
		})
	}
}

// serveRoute does what every route does before its handler: it checks the
// body, sheds when the gateway is at its concurrency limit and sets the
// deadline, the context handle gets (with the request, whose own context is
// its parent: copying the request to carry it is for handle to do if it
// must).
func (g *Gateway) serveRoute(w http.ResponseWriter, r *http.Request, handle func(context.Context, http.ResponseWriter, *http.Request)) {
	// The body first (bounded, and by the server's read timeout): a
	// client that sends it slowly must not hold a concurrency slot.
	if r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch {
		body, st := g.readBody(r)
		if st != nil {
			g.writeStatus(w, st)
			return
		}
		r.Body = newRequestBody(body)
	}
	if !g.conc.TryAcquire() {
		g.m.Shed.WithLabelValues("concurrency").Inc()
		h := w.Header()
		h.Set("Retry-After", "1")
		h.Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write(g.shedBody)
		return
	}
	start := time.Now()
	defer func() { g.conc.Release(time.Since(start)) }()
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.RequestTimeout)
	defer cancel()
	handle(ctx, w, r)
}

// readBody enforces the JSON rules of a request body: application/json,
// at most BodyBytesMax bytes, one well-formed JSON value (an empty body is
// an empty request). It returns the answer to refuse with.
func (g *Gateway) readBody(r *http.Request) ([]byte, *status.Status) {
	tooLarge := func() *status.Status {
		return fieldError(reasonBodyTooLarge, "body", fmt.Sprintf("is larger than the limit of %d bytes", g.cfg.BodyBytesMax))
	}
	if r.ContentLength > g.cfg.BodyBytesMax {
		return nil, tooLarge()
	}
	var body []byte
	if r.ContentLength >= 0 {
		// The length is known (and net/http delivers exactly that many
		// bytes or an error): one allocation of the right size.
		body = make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			return nil, fieldError(reasonIncompleteBody, "body", "ended before its Content-Length, or could not be read")
		}
	} else {
		b, err := io.ReadAll(io.LimitReader(r.Body, g.cfg.BodyBytesMax+1))
		if err != nil {
			return nil, fieldError(reasonIncompleteBody, "body", "could not be read in full")
		}
		if int64(len(b)) > g.cfg.BodyBytesMax {
			return nil, tooLarge()
		}
		body = b
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return body, nil
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return nil, gatewayError(reasonUnsupportedMedia,
				fmt.Sprintf("a body of Content-Type %q is not accepted: send application/json", ct))
		}
	}
	if !json.Valid(body) {
		return nil, fieldError(reasonMalformedJSON, "body", "is not well-formed JSON")
	}
	return body, nil
}

// httpStatus maps a gRPC code to HTTP: grpc-gateway's mapping, except
// FailedPrecondition, which is a 422 here (refused by the state of the
// money or the customer, not by the request's form).
func httpStatus(c codes.Code) int {
	if c == codes.FailedPrecondition {
		return http.StatusUnprocessableEntity
	}
	return runtime.HTTPStatusFromCode(c)
}
