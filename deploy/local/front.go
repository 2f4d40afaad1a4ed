package local

import (
	"bytes"
	"context"
	"io"
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
	// frontBodyMax bounds a request body the front keeps to send again;
	// the platform's requests are a few hundred bytes.
	frontBodyMax = 1 << 20
)

// Front is a round-robin HTTP reverse proxy over the gateways, what a load
// balancer or a Kubernetes Service is in production: it sends each request
// to the next backend whose /readyz answered 200 at the last check; a
// request safe to repeat whose backend fails before answering goes to the
// next one, as an ingress retries on reset (ServeHTTP); it answers 503
// with Retry-After when none is left (the client retries with the same
// Idempotency-Key).
type Front struct {
	URL string // http://127.0.0.1:port

	backends []*backend
	next     atomic.Uint64
	retried  atomic.Int64
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
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, _ error) {
				if r.Context().Err() != nil {
					// The client gave up (its own timeout): that says nothing
					// of the gateway, which may be waiting out a failover for
					// it. Marking it down would send the client's retry, and
					// everyone else's, a 503 "no gateway available" until the
					// next check. Nobody is left to answer.
					return
				}
				b.healthy.Store(false) // until the next check says otherwise
				if failed, ok := r.Context().Value(failedKey{}).(*bool); ok {
					*failed = true // ServeHTTP tries the next backend, or answers 503
					return
				}
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

// ServeHTTP sends the request to the next ready backend. When that one
// fails before answering (its process died: connection refused or reset)
// and the request is safe to send again (a GET or HEAD, or one with an
// Idempotency-Key, which the platform applies at most once), it goes to
// the next ready backend, as a load balancer's retry on connect failure
// and reset does (Envoy's retry_on, nginx's proxy_next_upstream); after
// every backend, or for a request that is not safe to repeat, the answer
// is 503 with Retry-After.
func (f *Front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := uint64(len(f.backends))
	start := f.next.Add(1)
	retry := r.Method == http.MethodGet || r.Method == http.MethodHead || r.Header.Get("Idempotency-Key") != ""
	var body []byte
	if retry && r.Body != nil && r.Body != http.NoBody {
		b, err := io.ReadAll(io.LimitReader(r.Body, frontBodyMax+1))
		r.Body.Close()
		if err != nil || len(b) > frontBodyMax {
			retry = false // kept as it came: a backend answers what is wrong with it
		}
		body = b
		r.Body = io.NopCloser(bytes.NewReader(b))
	}
	for i := range n {
		b := f.backends[(start+i)%n]
		if !b.healthy.Load() {
			continue
		}
		b.served.Add(1)
		if !retry {
			b.proxy.ServeHTTP(w, r)
			return
		}
		failed := false
		try := r.WithContext(context.WithValue(r.Context(), failedKey{}, &failed))
		try.Body = io.NopCloser(bytes.NewReader(body))
		b.proxy.ServeHTTP(w, try)
		if !failed {
			return
		}
		f.retried.Add(1)
	}
	unavailable(w)
}

// failedKey marks a request whose backend failed before answering, so
// that ServeHTTP may send it to another.
type failedKey struct{}

// Retried is how many requests the front sent to another gateway after the
// first one failed before answering.
func (f *Front) Retried() int64 { return f.retried.Load() }

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
