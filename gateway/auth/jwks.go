package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// jwksRedirectsMax bounds the redirects followed to fetch a JWKS URL.
const jwksRedirectsMax = 3

// JWKSConfig tunes a JWKSSource. Zero values take the defaults in brackets.
type JWKSConfig struct {
	// RefreshInterval: the document is read again when a token is checked
	// this long after the last read began [5m]. A removed (revoked) key
	// stops verifying within about this long.
	RefreshInterval time.Duration
	// UnknownKeyInterval is the shortest time between two reads caused by a
	// token naming a key id not in the set [30s]: a new key is picked up at
	// once, but tokens with made-up key ids cannot hammer the provider.
	UnknownKeyInterval time.Duration
	// FetchTimeout bounds one read, connection and body included [5s]. A
	// token naming an unknown key id waits for the read at most this long.
	FetchTimeout time.Duration
	// BytesMax bounds the document [JWKSBytesMax].
	BytesMax int64
	// Client fetches a JWKS URL; nil = a client with FetchTimeout that
	// follows at most 3 redirects.
	Client *http.Client
	// InsecureHTTP allows a plain http:// URL (and redirect) to a host other
	// than loopback; otherwise only https:// is fetched, since whoever can
	// change the keys in transit can sign any token.
	InsecureHTTP bool
	// Logger gets a line for each failed read and each change of the key
	// ids; nil = no logs.
	Logger *slog.Logger
	// Now is the clock of the intervals (nil = time.Now).
	Now func() time.Time
}

func (c *JWKSConfig) setDefaults() {
	if c.RefreshInterval <= 0 {
		c.RefreshInterval = 5 * time.Minute
	}
	if c.UnknownKeyInterval <= 0 {
		c.UnknownKeyInterval = 30 * time.Second
	}
	if c.FetchTimeout <= 0 {
		c.FetchTimeout = 5 * time.Second
	}
	if c.BytesMax <= 0 {
		c.BytesMax = JWKSBytesMax
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// JWKSSource is a KeySource that follows a JWKS document, at a URL (an
// identity provider's jwks_uri) or in a file, reading it again every
// RefreshInterval and when a token names a key id it does not know (at most
// once per UnknownKeyInterval). A read that fails, or brings a document
// that does not parse, keeps the last good set and is logged. Reads happen
// in the background, except the one an unknown key id waits for; they never
// overlap. Safe for concurrent use; Close stops it.
type JWKSSource struct {
	cfg   JWKSConfig
	where string // the URL or file, for errors and logs
	fetch func(context.Context) ([]byte, error)
	set   atomic.Pointer[KeySet]

	// lastRead is when the last read began (Unix ns): the refresh clock.
	lastRead atomic.Int64

	// ctx ends with Close and cancels a read under way; wg waits for it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu          sync.Mutex
	inflight    chan struct{} // closed when the read under way ends; nil = none
	lastUnknown time.Time     // when an unknown key id last caused a read
	lastErr     error
	closed      bool
}

// NewJWKSURL reads the JWKS document at rawURL (bounded by ctx and
// cfg.FetchTimeout) and returns a source that follows it. It fails if that
// first read fails: a gateway should not start without keys.
func NewJWKSURL(ctx context.Context, rawURL string, cfg JWKSConfig) (*JWKSSource, error) {
	cfg.setDefaults()
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("jwks url: %w", err)
	}
	if err := checkJWKSURL(u, cfg.InsecureHTTP); err != nil {
		return nil, err
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{Timeout: cfg.FetchTimeout, CheckRedirect: func(r *http.Request, via []*http.Request) error {
			if len(via) >= jwksRedirectsMax {
				return fmt.Errorf("jwks url: more than %d redirects", jwksRedirectsMax)
			}
			return checkJWKSURL(r.URL, cfg.InsecureHTTP)
		}}
	}
	s := newJWKSSource(cfg, u.Redacted(), func(ctx context.Context) ([]byte, error) {
		return fetchJWKS(ctx, client, u.String(), cfg.BytesMax)
	})
	return s, s.first(ctx)
}

// NewJWKSFile reads the JWKS document in file and returns a source that
// follows it: edit the file (replace it whole, e.g. by a rename) to add a
// key for a rotation or remove one to revoke it. It fails if that first read
// fails.
func NewJWKSFile(ctx context.Context, file string, cfg JWKSConfig) (*JWKSSource, error) {
	cfg.setDefaults()
	s := newJWKSSource(cfg, file, func(context.Context) ([]byte, error) {
		return readFileMax(file, cfg.BytesMax)
	})
	return s, s.first(ctx)
}

func newJWKSSource(cfg JWKSConfig, where string, fetch func(context.Context) ([]byte, error)) *JWKSSource {
	s := &JWKSSource{cfg: cfg, where: where, fetch: fetch}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// first does the first read, in the caller's goroutine.
func (s *JWKSSource) first(ctx context.Context) error {
	s.lastRead.Store(s.cfg.Now().UnixNano())
	ctx, cancel := context.WithTimeout(ctx, s.cfg.FetchTimeout)
	defer cancel()
	set, err := s.read(ctx)
	if err != nil {
		s.cancel()
		return err
	}
	s.set.Store(set)
	return nil
}

// PublicKey returns the key of id, or ErrUnknownKey. An unknown id makes it
// read the document again and wait for that (at most FetchTimeout) unless a
// read for an unknown id happened within UnknownKeyInterval.
func (s *JWKSSource) PublicKey(id string) (PublicKey, error) {
	now := s.cfg.Now()
	k, err := s.set.Load().PublicKey(id)
	if err == nil {
		s.refreshIfStale(now)
		return k, nil
	}
	done := s.refreshForUnknown(now)
	if done == nil {
		s.refreshIfStale(now)
		// A read may have ended since the first look.
		return s.set.Load().PublicKey(id)
	}
	select {
	case <-done:
	case <-s.ctx.Done():
	}
	return s.set.Load().PublicKey(id)
}

// Keys returns the current set.
func (s *JWKSSource) Keys() *KeySet { return s.set.Load() }

// Err returns the error of the last read, nil when it succeeded: the
// source then serves an older set.
func (s *JWKSSource) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// Refresh reads the document now (or waits for the read under way) and
// returns its error; on error the set is unchanged.
func (s *JWKSSource) Refresh(ctx context.Context) error {
	s.mu.Lock()
	done := s.startLocked(s.cfg.Now())
	s.mu.Unlock()
	if done == nil {
		return errors.New("jwks: closed")
	}
	select {
	case <-done:
		return s.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the source: no more reads; it waits for the one under way.
// The last set keeps serving PublicKey.
func (s *JWKSSource) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

func (s *JWKSSource) refreshIfStale(now time.Time) {
	if now.UnixNano()-s.lastRead.Load() < int64(s.cfg.RefreshInterval) {
		return
	}
	s.mu.Lock()
	s.startLocked(now)
	s.mu.Unlock()
}

// refreshForUnknown starts a read for an unknown key id, or joins the one
// under way; nil when the rate limit refuses it.
func (s *JWKSSource) refreshForUnknown(now time.Time) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight != nil {
		return s.inflight
	}
	if !s.lastUnknown.IsZero() && now.Sub(s.lastUnknown) < s.cfg.UnknownKeyInterval {
		return nil
	}
	s.lastUnknown = now
	return s.startLocked(now)
}

// startLocked starts a background read unless one is under way, and returns
// the channel closed when the read ends; nil once closed. s.mu is held.
func (s *JWKSSource) startLocked(now time.Time) <-chan struct{} {
	if s.closed {
		return nil
	}
	if s.inflight != nil {
		return s.inflight
	}
	done := make(chan struct{})
	s.inflight = done
	s.lastRead.Store(now.UnixNano())
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.FetchTimeout)
		set, err := s.read(ctx)
		cancel()
		s.mu.Lock()
		defer s.mu.Unlock()
		s.lastErr = err
		if err != nil {
			s.cfg.Logger.Warn("jwks: read failed; keeping the last good keys", "from", s.where, "err", err,
				"keys", s.set.Load().IDs())
		} else {
			if old := s.set.Load().IDs(); !slices.Equal(old, set.IDs()) {
				s.cfg.Logger.Info("jwks: key ids changed", "from", s.where, "was", old, "now", set.IDs())
			}
			s.set.Store(set)
		}
		s.inflight = nil
		close(done)
	}()
	return done
}

// read fetches and parses the document.
func (s *JWKSSource) read(ctx context.Context) (*KeySet, error) {
	b, err := s.fetch(ctx)
	if err != nil {
		return nil, fmt.Errorf("jwks %s: %w", s.where, err)
	}
	set, err := ParseJWKS(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.where, err)
	}
	return set, nil
}

// fetchJWKS GETs the document at u, at most max bytes.
func fetchJWKS(ctx context.Context, client *http.Client, u string, max int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("answered %s", resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("document larger than %d bytes", max)
	}
	return b, nil
}

// checkJWKSURL allows https, and http to loopback (or anywhere when
// insecure is set).
func checkJWKSURL(u *url.URL, insecure bool) error {
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		h := u.Hostname()
		if ip := net.ParseIP(h); insecure || h == "localhost" || (ip != nil && ip.IsLoopback()) {
			return nil
		}
		return fmt.Errorf("jwks url %s: http only to loopback; use https (or allow plain http explicitly)", u.Redacted())
	default:
		return fmt.Errorf("jwks url %s: want https://", u.Redacted())
	}
}
