package local_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fundplatform/fund/deploy/local"
)

// A gateway that dies mid-request (its connection cut before an answer)
// costs a request with an Idempotency-Key nothing: the front sends it, body
// and all, to the next gateway. A request without one is not repeated:
// 503 with Retry-After, for the client to decide.
func TestFrontRetriesIdempotentRequestOnReset(t *testing.T) {
	var dying, healthy atomic.Int64
	ready := func(w http.ResponseWriter, r *http.Request) bool { return r.URL.Path == "/readyz" }
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ready(w, r) {
			return
		}
		dying.Add(1)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close() // a process killed with the request in hand
		}
	}))
	defer dead.Close()
	alive := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ready(w, r) {
			return
		}
		healthy.Add(1)
		b, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, "got "+string(b))
	}))
	defer alive.Close()
	f, err := local.StartFront("", []string{dead.URL, alive.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()

	post := func(key string) (int, string) {
		req, _ := http.NewRequest("POST", f.URL+"/v1/customers/1/subscriptions", strings.NewReader(`{"amount":"1.00"}`))
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// Round robin starts at the second backend: the first request goes to
	// the healthy one, the second to the dying one and on to the healthy.
	for i, key := range []string{"k1", "k2"} {
		if code, body := post(key); code != http.StatusOK || body != `got {"amount":"1.00"}` {
			t.Fatalf("request %d: %d %q", i, code, body)
		}
	}
	if dying.Load() != 1 || healthy.Load() != 2 || f.Retried() != 1 {
		t.Fatalf("dying backend saw %d, healthy %d, retried %d; want 1, 2, 1", dying.Load(), healthy.Load(), f.Retried())
	}
	// The dying backend is now marked down until its next check says
	// otherwise; mark-up happens every 500 ms, so wait for it to be back
	// and send a request without a key to it.
	waitFor(t, func() bool {
		before := dying.Load()
		code, _ := post("")
		return dying.Load() > before && code == http.StatusServiceUnavailable
	})
}

// A client that gives up on a slow request (its own timeout, while the
// gateway waits out a failover for it) does not take the gateway out of
// the front: its retry, and everyone else's requests, still go there.
// (A gateway marked down for it answered the retries 503 "no gateway
// available" until the next check, in a rehearsal.)
func TestFrontKeepsAGatewayWhoseClientGaveUp(t *testing.T) {
	release := make(chan struct{})
	var slow atomic.Bool
	slow.Store(true)
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			return
		}
		if slow.Load() {
			select { // a failover being waited out
			case <-release:
			case <-r.Context().Done():
			}
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer gw.Close()
	defer close(release)
	f, err := local.StartFront("", []string{gw.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	send := func(timeout time.Duration) (int, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", f.URL+"/v1/customers/1/subscriptions", strings.NewReader(`{}`))
		req.Header.Set("Idempotency-Key", "k1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if _, err := send(100 * time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow request: %v, want the client's timeout", err)
	}
	slow.Store(false)
	// The retry comes at once, well before the front's next check.
	if code, err := send(time.Second); err != nil || code != http.StatusOK {
		t.Fatalf("retry after the client gave up: %d %v, want 200 from the gateway", code, err)
	}
}

// A backend added to the front gets its share of requests at once; a
// removed one gets none from the moment Remove is called, and Remove
// returns only once the request it was answering has been answered (a
// gateway is drained before it is stopped).
func TestFrontAddsAndDrainsBackends(t *testing.T) {
	var first, second atomic.Int64
	release := make(chan struct{})
	inHand := make(chan struct{}, 1)
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			first.Add(1)
		}
	}))
	defer a.Close()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			return
		}
		second.Add(1)
		if r.URL.Path == "/slow" {
			inHand <- struct{}{}
			<-release
		}
	}))
	defer b.Close()
	f, err := local.StartFront("", []string{a.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	get := func(path string) int {
		resp, err := http.Get(f.URL + path)
		if err != nil {
			t.Error(err)
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if err := f.Add(context.Background(), b.URL); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		get("/v1/x")
	}
	if got := f.Served(); len(got) != 2 || got[0] != 2 || got[1] != 2 {
		t.Fatalf("served %v after adding a second backend; want [2 2]", got)
	}

	// A slow request in hand at the second backend when it is removed.
	slow := make(chan int, 1)
	go func() {
		for range 2 { // round-robin: one of two lands on the second backend
			if code := get("/slow"); second.Load() > 2 {
				slow <- code
				return
			}
		}
		slow <- 0
	}()
	<-inHand
	removed := make(chan error, 1)
	go func() { removed <- f.Remove(context.Background(), b.URL) }()
	select {
	case err := <-removed:
		t.Fatalf("Remove returned (%v) with a request in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	before := second.Load()
	for range 4 {
		if code := get("/v1/x"); code != http.StatusOK {
			t.Errorf("answer %d while the second backend drained", code)
		}
	}
	if second.Load() != before {
		t.Errorf("the backend being removed was sent %d more requests", second.Load()-before)
	}
	close(release)
	if err := <-removed; err != nil {
		t.Fatal(err)
	}
	if code := <-slow; code != http.StatusOK {
		t.Errorf("the request in flight during Remove got %d", code)
	}
	if got := f.Served(); len(got) != 1 {
		t.Errorf("served %v after Remove; want the first backend alone", got)
	}
	if err := f.Remove(context.Background(), b.URL); err == nil {
		t.Error("Remove of a backend not in the rotation succeeded")
	}
}
