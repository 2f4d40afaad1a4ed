package opshttp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fundplatform/fund/internal/supervise"
)

// Bounds of the endpoint: a slow client cannot hold a connection with a
// half-sent header, and a stop waits this long for requests in flight.
const (
	readHeaderTimeout = 5 * time.Second
	stopTimeout       = 5 * time.Second
)

// Server serves /metrics, /healthz and /readyz on one listener.
type Server struct {
	srv   *http.Server
	lis   net.Listener
	ready atomic.Bool
}

// Listen binds addr and prepares the endpoint over reg (which also gets
// the handler's own error counter); Run serves it. /readyz answers 503
// until SetReady(true).
func Listen(addr string, reg *prometheus.Registry) (*Server, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http listen: %w", err)
	}
	s := &Server{lis: lis}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: readHeaderTimeout}
	return s, nil
}

// Addr is the bound address (useful with port 0).
func (s *Server) Addr() string { return s.lis.Addr().String() }

// SetReady sets what /readyz answers.
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// Run serves until ctx ends, then shuts down gracefully (bounded). It
// closes the listener either way.
func (s *Server) Run(ctx context.Context) error {
	return supervise.ServeUntil(ctx, func() error {
		if err := s.srv.Serve(s.lis); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}, func() {
		c, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		_ = s.srv.Shutdown(c)
	})
}

// Close releases the listener of a Server that never ran.
func (s *Server) Close() error { return s.lis.Close() }
