package local

import (
	"context"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds of the front.
const (
	frontCheckInterval = 500 * time.Millisecond // /readyz of every backend
	frontHeaderTimeout = 30 * time.Second       // a backend's answer to one request
	frontStopTimeout   = 5 * time.Second        // requests in flight at Stop
)

// Front is a round-robin HTTP reverse proxy over the gateways, what a load
// balancer or a Kubernetes Service is in production: it sends each request
// to the next backend whose /readyz answered 200 at the last check, and
// answers 503 with Retry-After when none does or the chosen one fails
// before answering (the client retries with the same Idempotency-Key).
type Front struct {
	URL string // http://127.0.0.1:port

	backends []*backend
	next     atomic.Uint64
	srv      *http.Server
	client   *http.Client
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

type backend struct {
	url     *url.URL
	proxy   *httputil.ReverseProxy
	healthy atomic.Bool
	served  atomic.Int64
}

// StartFront listens on addr ("" = a free loopback port) and proxies to
// the backends' base URLs (http://host:port).
func StartFront(addr string, backendURLs []string) (*Front, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	f := &Front{client: &http.Client{Timeout: probeTimeout}}
	transport := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: time.Second}).DialContext,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: frontHeaderTimeout,
	}
	for _, raw := range backendURLs {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, err
		}
		b := &backend{url: u}
		b.proxy = &httputil.ReverseProxy{
			Rewrite: func(r *httputil.ProxyRequest) {
				r.SetURL(u)
				r.SetXForwarded()
			},
			Transport: transport,
			ErrorHandler: func(w http.ResponseWriter, _ *http.Request, _ error) {
				b.healthy.Store(false) // until the next check says otherwise
				unavailable(w)
			},
		}
		f.backends = append(f.backends, b)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	f.URL = "http://" + ln.Addr().String()
	f.srv = &http.Server{Handler: f, ReadHeaderTimeout: 10 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	f.check(ctx)
	f.wg.Add(2)
	go func() {
		defer f.wg.Done()
		_ = f.srv.Serve(ln) // ends with http.ErrServerClosed at Stop
	}()
	go func() {
		defer f.wg.Done()
		t := time.NewTicker(frontCheckInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				f.check(ctx)
			}
		}
	}()
	return f, nil
}

// check asks every backend's /readyz once.
func (f *Front) check(ctx context.Context) {
	for _, b := range f.backends {
		b.healthy.Store(ready(ctx, f.client, b.url.String()+"/readyz"))
	}
}

func (f *Front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := uint64(len(f.backends))
	start := f.next.Add(1)
	for i := range n {
		b := f.backends[(start+i)%n]
		if b.healthy.Load() {
			b.served.Add(1)
			b.proxy.ServeHTTP(w, r)
			return
		}
	}
	unavailable(w)
}

func unavailable(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "1")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write([]byte(`{"code":14,"message":"no gateway available","details":[]}` + "\n"))
}

// Served returns how many requests each backend was sent, in order.
func (f *Front) Served() []int64 {
	out := make([]int64, len(f.backends))
	for i, b := range f.backends {
		out[i] = b.served.Load()
	}
	return out
}

// Stop stops accepting, lets requests in flight finish for a bounded time,
// and stops the health checks.
func (f *Front) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), frontStopTimeout)
	defer cancel()
	_ = f.srv.Shutdown(ctx)
	f.cancel()
	f.wg.Wait()
}
