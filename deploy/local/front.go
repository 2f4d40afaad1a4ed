package local

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
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
	// frontDrainTimeout bounds how long Remove waits for the requests in
	// flight to a removed backend (each is bounded by frontHeaderTimeout
	// and the client's own timeout; a few seconds in practice).
	frontDrainTimeout = frontHeaderTimeout
	frontDrainPoll    = 20 * time.Millisecond
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

	// backends is replaced, never changed in place (Add, Remove), so that
	// a request reads one consistent list without a lock; mu orders the
	// replacements.
	backends  atomic.Pointer[[]*backend]
	mu        sync.Mutex
	transport http.RoundTripper
	next      atomic.Uint64
	retried   atomic.Int64
	srv       *http.Server
	client    *http.Client
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

type backend struct {
	url     *url.URL
	proxy   *httputil.ReverseProxy
	healthy atomic.Bool
	served  atomic.Int64
	// inflight counts the requests being proxied to it; removed is set by
	// Remove before it waits for inflight to reach zero. A request counts
	// itself in first and then looks at removed (both sequentially
	// consistent atomics), so either Remove waits for it or it sees the
	// backend removed and goes to the next: none reaches a backend after
	// Remove returned.
	inflight atomic.Int64
	removed  atomic.Bool
}

// StartFront listens on addr ("" = a free loopback port) and proxies to
// the backends' base URLs (http://host:port).
func StartFront(addr string, backendURLs []string) (*Front, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	f := &Front{client: &http.Client{Timeout: probeTimeout}}
	f.transport = &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: time.Second}).DialContext,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: frontHeaderTimeout,
	}
	var backends []*backend
	for _, raw := range backendURLs {
		b, err := f.newBackend(raw)
		if err != nil {
			return nil, err
		}
		backends = append(backends, b)
	}
	f.backends.Store(&backends)
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

// newBackend returns a backend proxying to base URL raw, not yet ready
// (the next check, or Add, says).
func (f *Front) newBackend(raw string) (*backend, error) {
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
		Transport: f.transport,
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
	return b, nil
}

// list returns the current backends (not to be changed).
func (f *Front) list() []*backend { return *f.backends.Load() }

// Add puts the backend at base URL raw into the rotation once its /readyz
// answers 200 (at once if it does now, else at the next check), as a new
// pod joins a Service's endpoints when it is ready.
func (f *Front) Add(ctx context.Context, raw string) error {
	b, err := f.newBackend(raw)
	if err != nil {
		return err
	}
	b.healthy.Store(ready(ctx, f.client, b.url.String()+"/readyz"))
	f.mu.Lock()
	defer f.mu.Unlock()
	next := append(slices.Clone(f.list()), b)
	f.backends.Store(&next)
	return nil
}

// Remove takes the backend at base URL raw out of the rotation and waits
// until the requests in flight to it have been answered (or ctx ends, or
// frontDrainTimeout passes): a pod's endpoint removed before its process
// is told to stop, so that no request reaches a stopping gateway.
func (f *Front) Remove(ctx context.Context, raw string) error {
	f.mu.Lock()
	cur := f.list()
	i := slices.IndexFunc(cur, func(b *backend) bool { return b.url.String() == raw })
	if i < 0 {
		f.mu.Unlock()
		return fmt.Errorf("local: front: no backend %s", raw)
	}
	b := cur[i]
	b.removed.Store(true)
	next := slices.Delete(slices.Clone(cur), i, i+1)
	f.backends.Store(&next)
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, frontDrainTimeout)
	defer cancel()
	for b.inflight.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("local: front: %d requests still in flight to %s: %w", b.inflight.Load(), raw, ctx.Err())
		case <-time.After(frontDrainPoll):
		}
	}
	return nil
}

// check asks every backend's /readyz once.
func (f *Front) check(ctx context.Context) {
	for _, b := range f.list() {
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
	backends := f.list()
	n := uint64(len(backends))
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
		b := backends[(start+i)%n]
		if !b.healthy.Load() {
			continue
		}
		served, failed := f.serve(b, w, r, retry, body)
		if !served {
			continue
		}
		if !failed {
			return
		}
		f.retried.Add(1)
	}
	unavailable(w)
}

// serve proxies r to b, counted in b's requests in flight. served is false
// when b was removed meanwhile (nothing was sent); failed when a request
// safe to repeat failed before b answered (nothing was written to w).
func (f *Front) serve(b *backend, w http.ResponseWriter, r *http.Request, retry bool, body []byte) (served, failed bool) {
	b.inflight.Add(1)
	defer b.inflight.Add(-1)
	if b.removed.Load() {
		return false, false
	}
	b.served.Add(1)
	if !retry {
		b.proxy.ServeHTTP(w, r)
		return true, false
	}
	try := r.WithContext(context.WithValue(r.Context(), failedKey{}, &failed))
	try.Body = io.NopCloser(bytes.NewReader(body))
	b.proxy.ServeHTTP(w, try)
	return true, failed
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

// Served returns how many requests each backend in the rotation was sent,
// in order (the order they were given and added in; removed ones left out).
func (f *Front) Served() []int64 {
	backends := f.list()
	out := make([]int64, len(backends))
	for i, b := range backends {
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
