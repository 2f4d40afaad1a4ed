package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fundplatform/fund/gateway/auth"
)

// responseBytesMax bounds how much of an answer is read.
const responseBytesMax = 1 << 20

// ErrNotLoopback refuses a target that is not on this machine unless the
// caller allowed remote targets explicitly.
var ErrNotLoopback = errors.New("target is not a loopback address")

// CheckTarget parses a target base URL; unless allowRemote it must be a
// loopback address (127.0.0.0/8, ::1 or localhost): a load test pointed at
// the wrong machine by a typo is an incident.
func CheckTarget(target string, allowRemote bool) (*url.URL, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("target %q: %w", target, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("target %q: want an http or https URL", target)
	}
	if allowRemote {
		return u, nil
	}
	host := u.Hostname()
	if host == "localhost" {
		return u, nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return u, nil
	}
	return nil, fmt.Errorf("%w: %s", ErrNotLoopback, target)
}

// Tokens mints bearer tokens with the platform's key, once per customer
// (cached: at most one per customer of the run).
type Tokens struct {
	key   []byte
	ttl   time.Duration
	admin string
	mu    sync.Mutex
	cache map[int64]string
}

// NewTokens mints an admin token at once, customer tokens on demand; each
// lives ttl.
func NewTokens(key []byte, ttl time.Duration) (*Tokens, error) {
	admin, err := auth.Mint(key, auth.Claims{Scopes: []string{auth.ScopeAdmin}}, ttl, time.Now())
	if err != nil {
		return nil, fmt.Errorf("mint admin token: %w", err)
	}
	return &Tokens{key: key, ttl: ttl, admin: admin, cache: map[int64]string{}}, nil
}

// Admin is the admin token.
func (t *Tokens) Admin() string { return t.admin }

// Customer is customer c's token.
func (t *Tokens) Customer(c int64) (string, error) {
	t.mu.Lock()
	tok, ok := t.cache[c]
	t.mu.Unlock()
	if ok {
		return tok, nil
	}
	tok, err := auth.Mint(t.key, auth.Claims{Subject: strconv.FormatInt(c, 10)}, t.ttl, time.Now())
	if err != nil {
		return "", fmt.Errorf("mint token of customer %d: %w", c, err)
	}
	t.mu.Lock()
	t.cache[c] = tok
	t.mu.Unlock()
	return tok, nil
}

// api is a thin JSON client of the gateway's REST API.
type api struct {
	base string
	http *http.Client
}

func newAPI(base string, connsMax int) *api {
	tr := &http.Transport{
		Proxy:               nil, // loopback targets; never through a proxy
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        connsMax,
		MaxIdleConnsPerHost: connsMax,
		MaxConnsPerHost:     connsMax,
		IdleConnTimeout:     30 * time.Second,
	}
	return &api{base: strings.TrimRight(base, "/"), http: &http.Client{Transport: tr}}
}

func (a *api) close() { a.http.CloseIdleConnections() }

// answer is one HTTP exchange's outcome; Err is set when none came back.
type answer struct {
	Status int
	Body   []byte
	Err    error
}

// timedOut reports whether the exchange ended by the attempt's deadline.
func (a answer) timedOut() bool {
	var ne net.Error
	return errors.Is(a.Err, context.DeadlineExceeded) || (errors.As(a.Err, &ne) && ne.Timeout())
}

func (a *api) do(ctx context.Context, method, path, token, key string, body any) answer {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return answer{Err: err}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return answer{Err: err}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return answer{Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, responseBytesMax))
	if err != nil {
		return answer{Status: resp.StatusCode, Err: err}
	}
	return answer{Status: resp.StatusCode, Body: b}
}

// orderStatus reads "status" from an Order answer ("" when absent).
func orderStatus(body []byte) string {
	var o struct {
		Status string `json:"status"`
	}
	_ = json.Unmarshal(body, &o)
	return o.Status
}

// idOf reads "id" (a JSON string or number) from an answer.
func idOf(body []byte) (int64, error) {
	var o struct {
		ID json.RawMessage `json:"id"`
	}
	if err := json.Unmarshal(body, &o); err != nil {
		return 0, fmt.Errorf("answer %.200q: %w", body, err)
	}
	s := strings.Trim(string(o.ID), `"`)
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("answer %.200q: no positive id", body)
	}
	return id, nil
}

// errorBody is the gateway's error answer (a google.rpc.Status in JSON).
type errorBody struct {
	Message string `json:"message"`
	Details []struct {
		Type   string `json:"@type"`
		Reason string `json:"reason"`
	} `json:"details"`
}

// reasonOf reads the ErrorInfo reason of an error answer ("" if none).
func reasonOf(body []byte) string {
	var e errorBody
	if json.Unmarshal(body, &e) != nil {
		return ""
	}
	for _, d := range e.Details {
		if strings.HasSuffix(d.Type, "ErrorInfo") && d.Reason != "" {
			return d.Reason
		}
	}
	return ""
}

func messageOf(body []byte) string {
	var e errorBody
	_ = json.Unmarshal(body, &e)
	return e.Message
}
