package auth_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fundplatform/fund/gateway/auth"
)

// idp is an identity provider's JWKS endpoint on loopback: it serves the
// document set last, or fails as told, and counts the requests.
type idp struct {
	mu    sync.Mutex
	doc   []byte
	fail  int // HTTP status to answer instead; 0 = serve doc
	stall chan struct{}
	reqs  atomic.Int64
	srv   *httptest.Server
}

func newIDP(t *testing.T, keys ...*auth.PrivateKey) *idp {
	p := &idp{}
	p.serve(t, keys...)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.reqs.Add(1)
		p.mu.Lock()
		doc, fail, stall := p.doc, p.fail, p.stall
		p.mu.Unlock()
		if stall != nil {
			select {
			case <-stall:
			case <-r.Context().Done():
			}
			return
		}
		if fail != 0 {
			http.Error(w, "down", fail)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(doc)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *idp) serve(t *testing.T, keys ...*auth.PrivateKey) {
	t.Helper()
	doc, err := keySet(t, keys...).MarshalJWKS()
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.doc, p.fail = doc, 0
	p.mu.Unlock()
}

func (p *idp) failWith(status int) {
	p.mu.Lock()
	p.fail = status
	p.mu.Unlock()
}

// fakeClock is the JWKS source's clock, moved by the test.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 11, 11, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// settle waits for the source's background read to end (Refresh joins the
// read under way, or reads once more, which is harmless here).
func settle(t *testing.T, s *auth.JWKSSource) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = s.Refresh(ctx)
}

func TestJWKSURL(t *testing.T) {
	ctx := context.Background()
	old, next := edKey(t, "old"), rsaKey(t, "next")
	p := newIDP(t, old)
	clock := newFakeClock()
	src, err := auth.NewJWKSURL(ctx, p.srv.URL+"/.well-known/jwks.json", auth.JWKSConfig{
		RefreshInterval: 5 * time.Minute, UnknownKeyInterval: 30 * time.Second, FetchTimeout: 2 * time.Second, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	v, err := auth.NewKeysVerifier(auth.Keys{Public: src}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cv := auth.NewCachedVerifier(v, 10, nil)
	now := time.Now()
	oldTok, nextTok := mint(t, old, "1", time.Hour, now), mint(t, next, "2", time.Hour, now)
	if _, err := cv.Verify(oldTok); err != nil {
		t.Fatal(err)
	}
	if n := p.reqs.Load(); n != 1 {
		t.Fatalf("%d fetches after the first, want 1", n)
	}

	// Rotation: the provider publishes the next key beside the old one and
	// starts signing with it. The first token naming it makes the source
	// fetch again, and passes; many such tokens at once make one fetch.
	p.serve(t, old, next)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if _, err := cv.Verify(nextTok); err != nil {
				t.Errorf("new key: %v", err)
			}
		})
	}
	wg.Wait()
	if _, err := cv.Verify(oldTok); err != nil {
		t.Fatalf("old key during the rotation: %v", err)
	}
	if n := p.reqs.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}

	// Unknown key ids: refused; within UnknownKeyInterval of the last such
	// fetch, without fetching again.
	stranger := mint(t, edKey(t, "stranger"), "3", time.Hour, now)
	for range 5 {
		if _, err := cv.Verify(stranger); !errors.Is(err, auth.ErrUnknownKey) || !errors.Is(err, auth.ErrInvalidToken) {
			t.Fatalf("unknown key: %v", err)
		}
	}
	if n := p.reqs.Load(); n != 2 {
		t.Fatalf("%d fetches after unknown key ids within the rate limit, want 2", n)
	}
	clock.Advance(31 * time.Second)
	if _, err := cv.Verify(stranger); !errors.Is(err, auth.ErrUnknownKey) {
		t.Fatalf("unknown key: %v", err)
	}
	if n := p.reqs.Load(); n != 3 {
		t.Fatalf("%d fetches after the rate limit passed, want 3", n)
	}

	// The provider fails: past the refresh interval a token makes the source
	// fetch in the background; the fetch fails and the last good set stays.
	p.failWith(http.StatusInternalServerError)
	clock.Advance(6 * time.Minute)
	if _, err := cv.Verify(nextTok); err != nil {
		t.Fatal(err)
	}
	settle(t, src)
	if err := src.Err(); err == nil || !strings.Contains(err.Error(), "500") {
		t.Fatalf("Err after a failed fetch: %v", err)
	}
	for _, tok := range []string{oldTok, nextTok} {
		if _, err := cv.Verify(tok); err != nil {
			t.Fatalf("last good set after a failure: %v", err)
		}
	}
	if got := strings.Join(src.Keys().IDs(), ","); got != "next,old" {
		t.Fatalf("keys %s", got)
	}
	// A document that does not parse, or is too large, is a failure too.
	p.mu.Lock()
	p.fail, p.doc = 0, []byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"x","x":"bad"}]}`)
	p.mu.Unlock()
	if err := src.Refresh(ctx); err == nil {
		t.Fatal("a bad document accepted")
	}
	p.mu.Lock()
	p.doc = []byte(`{"keys":[` + strings.Repeat(" ", auth.JWKSBytesMax) + `]}`)
	p.mu.Unlock()
	if err := src.Refresh(ctx); err == nil || !strings.Contains(err.Error(), "larger") {
		t.Fatalf("a huge document: %v", err)
	}

	// Revocation: the provider drops the old key. After the next refresh its
	// tokens are refused, the cached one too; the new key's pass.
	p.serve(t, next)
	clock.Advance(6 * time.Minute)
	if _, err := cv.Verify(nextTok); err != nil {
		t.Fatal(err)
	}
	settle(t, src)
	if src.Err() != nil {
		t.Fatal(src.Err())
	}
	if _, err := cv.Verify(oldTok); !errors.Is(err, auth.ErrUnknownKey) {
		t.Fatalf("revoked key: %v", err)
	}
	if _, err := cv.Verify(nextTok); err != nil {
		t.Fatal(err)
	}
}

func TestJWKSURLBounds(t *testing.T) {
	ctx := context.Background()
	k := edKey(t, "k")
	p := newIDP(t, k)
	clock := newFakeClock()
	src, err := auth.NewJWKSURL(ctx, p.srv.URL, auth.JWKSConfig{FetchTimeout: 200 * time.Millisecond, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	v, _ := auth.NewKeysVerifier(auth.Keys{Public: src}, nil)

	// A provider that never answers: a token naming an unknown key waits for
	// the fetch at most FetchTimeout, and the known key keeps working.
	stall := make(chan struct{})
	defer close(stall)
	p.mu.Lock()
	p.stall = stall
	p.mu.Unlock()
	start := time.Now()
	if _, err := v.Verify(mint(t, edKey(t, "new"), "1", time.Hour, time.Now())); !errors.Is(err, auth.ErrUnknownKey) {
		t.Fatalf("unknown key while the provider stalls: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("waited %s for a stalled provider", took)
	}
	if src.Err() == nil {
		t.Fatal("no error after a timed-out fetch")
	}
	if _, err := v.Verify(mint(t, k, "1", time.Hour, time.Now())); err != nil {
		t.Fatal(err)
	}

	// The first fetch must succeed; only https, or http to loopback, is
	// fetched unless plain http is allowed.
	p.failWith(http.StatusNotFound)
	p.mu.Lock()
	p.stall = nil
	p.mu.Unlock()
	if _, err := auth.NewJWKSURL(ctx, p.srv.URL, auth.JWKSConfig{}); err == nil {
		t.Fatal("started on a 404")
	}
	for _, u := range []string{"http://idp.example/jwks", "ftp://127.0.0.1/jwks", "file:///etc/jwks.json", "::"} {
		if _, err := auth.NewJWKSURL(ctx, u, auth.JWKSConfig{}); err == nil {
			t.Errorf("%s: accepted", u)
		}
	}
}

func TestJWKSFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	file := filepath.Join(dir, "jwks.json")
	old := edKey(t, "old")
	if err := auth.WriteKeyPair(old, filepath.Join(dir, "old.pem"), file); err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock()
	src, err := auth.NewJWKSFile(ctx, file, auth.JWKSConfig{RefreshInterval: time.Minute, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	v, _ := auth.NewKeysVerifier(auth.Keys{Public: src}, nil)
	now := time.Now()
	oldTok := mint(t, old, "1", time.Hour, now)
	if _, err := v.Verify(oldTok); err != nil {
		t.Fatal(err)
	}
	// Rotation: a new pair added to the file is picked up by its first token.
	next := edKey(t, "next")
	if err := auth.WriteKeyPair(next, filepath.Join(dir, "next.pem"), file); err != nil {
		t.Fatal(err)
	}
	nextTok := mint(t, next, "2", time.Hour, now)
	for _, tok := range []string{nextTok, oldTok} {
		if _, err := v.Verify(tok); err != nil {
			t.Fatalf("during the rotation: %v", err)
		}
	}
	// Revocation: the old key taken out of the file; refused after the
	// refresh interval.
	set, _ := auth.LoadJWKS(file)
	doc, _ := set.Without("old").MarshalJWKS()
	if err := os.WriteFile(file, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Minute)
	_, _ = v.Verify(nextTok) // starts the refresh
	settle(t, src)
	if _, err := v.Verify(oldTok); !errors.Is(err, auth.ErrUnknownKey) {
		t.Fatalf("revoked key: %v", err)
	}
	// A broken file keeps the last good set.
	if err := os.WriteFile(file, []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := src.Refresh(ctx); err == nil {
		t.Fatal("a broken file accepted")
	}
	if _, err := v.Verify(nextTok); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.NewJWKSFile(ctx, filepath.Join(dir, "missing.json"), auth.JWKSConfig{}); err == nil {
		t.Fatal("started on a missing file")
	}
}
