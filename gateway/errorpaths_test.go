package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/gateway/auth"
	"github.com/fundplatform/fund/ledger"
)

// memStore is stubStore that remembers the orders it placed (so that a
// retry with other content is a conflict) and answers the reads the other
// calls make; with down set, every call fails with it, as a store whose
// database is away does.
type memStore struct {
	stubStore
	mu     sync.Mutex
	orders map[string]accounts.Order
	down   error
}

func newMemStore() *memStore { return &memStore{orders: map[string]accounts.Order{}} }

func (m *memStore) fail() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.down
}

func (m *memStore) PlaceOrder(ctx context.Context, o *accounts.Order, parties []accounts.CustomerID,
	apply func(ctx context.Context, parties []accounts.Customer) error) (accounts.Order, bool, error) {
	if err := m.fail(); err != nil {
		return accounts.Order{}, false, err
	}
	key := fmt.Sprint(o.CustomerID, "/", o.RequestID)
	m.mu.Lock()
	old, ok := m.orders[key]
	m.mu.Unlock()
	if ok {
		return old, true, nil
	}
	stored, existed, err := m.stubStore.PlaceOrder(ctx, o, parties, apply)
	if err == nil {
		m.mu.Lock()
		m.orders[key] = stored
		m.mu.Unlock()
	}
	return stored, existed, err
}

func (m *memStore) Customer(ctx context.Context, id accounts.CustomerID) (accounts.Customer, error) {
	if err := m.fail(); err != nil {
		return accounts.Customer{}, err
	}
	return m.stubStore.Customer(ctx, id)
}

func (m *memStore) CreateCustomer(ctx context.Context, c accounts.Customer,
	setup func(context.Context, accounts.Customer) error) (accounts.Customer, bool, error) {
	if err := m.fail(); err != nil {
		return accounts.Customer{}, false, err
	}
	c.ID, c.Status = 99, accounts.StatusActive
	return c, false, setup(ctx, c)
}

func (m *memStore) Order(_ context.Context, c accounts.CustomerID, requestID string) (accounts.Order, error) {
	if err := m.fail(); err != nil {
		return accounts.Order{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if o, ok := m.orders[fmt.Sprint(c, "/", requestID)]; ok {
		return o, nil
	}
	return accounts.Order{}, accounts.ErrOrderNotFound
}

func (m *memStore) History(context.Context, accounts.HistoryQuery, int64, int) ([]accounts.Order, error) {
	return nil, m.fail()
}

func (m *memStore) Income(context.Context, accounts.CustomerID, time.Time) (int64, int64, error) {
	return 0, 0, m.fail()
}

func (m *memStore) LatestFundYield(context.Context) (accounts.FundYield, bool, error) {
	return accounts.FundYield{}, false, m.fail()
}

// faultLedger is stubLedger until down is set; then every transfer and
// lookup fails with it.
type faultLedger struct {
	stubLedger
	mu   sync.Mutex
	down error
}

func (f *faultLedger) fail() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.down
}

func (f *faultLedger) CreateTransfers(ctx context.Context, ts []ledger.Transfer) ([]ledger.TransferResult, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	return f.stubLedger.CreateTransfers(ctx, ts)
}

func (f *faultLedger) LookupAccounts(ctx context.Context, ids []ledger.AccountID) ([]ledger.Account, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	return f.stubLedger.LookupAccounts(ctx, ids)
}

// world is a gateway on a memStore and a faultLedger (behind a breaker, as
// the gateway role has it), once with the direct order path and once with
// the mux only.
type world struct {
	store  *memStore
	ledger *faultLedger
	gws    [2]*Gateway
	hs     [2]http.Handler
}

func newWorld(t *testing.T, cfg Config, breaker BreakerConfig) *world {
	t.Helper()
	w := &world{store: newMemStore(), ledger: &faultLedger{}}
	ctx := context.Background()
	for i, muxOnly := range []bool{false, true} {
		lc := NewBreakerClient("shard-0", w.ledger, breaker, nil)
		svc, err := accounts.NewService(ctx, accounts.Config{Calendar: accounts.NewCalendar(nil), Now: stubClock}, w.store, lc, nil)
		if err != nil {
			t.Fatal(err)
		}
		c := cfg
		c.JWTKey, c.Accounts, c.Registry, c.Now, c.RESTMuxOnly = stubKey, svc, prometheus.NewRegistry(), stubClock, muxOnly
		if w.gws[i], err = New(c); err != nil {
			t.Fatal(err)
		}
		if w.hs[i], err = w.gws[i].httpHandler(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// errorPath is one request that must be refused, and how.
type errorPath struct {
	name    string
	world   string // the world it is sent to
	setup   func(w *world, g *Gateway)
	method  string
	path    string
	body    string
	headers []string // name, value pairs; Content-Type is application/json and Authorization customer 1's unless given
	status  int
	reason  string
	field   string // the BadRequest field expected; "" = none required
}

// Texts that belong to a parser, a driver or the runtime, never to a
// message for the API's user.
var leakedTexts = []string{"proto:", "proto:\u00a0", "strconv", "pgx", "pq:", "pgconn", "SQLSTATE", "dial tcp",
	"connection refused", "type mismatch", "invalid character", "runtime error", "unexpected EOF", "transport:"}

// TestEveryErrorPath sends every documented error path over REST (both the
// direct order path and the mux) and checks each answer's shape: the
// status expected and never a 500, a google.rpc.Status whose code matches
// the HTTP status by the error table, one ErrorInfo of domain fund.v1 with a
// reason of the table, a BadRequest naming the field at fault, a message
// without a parser's or a driver's text, and Retry-After on 429, 503 and
// 504.
func TestEveryErrorPath(t *testing.T) {
	storeDown := fmt.Errorf("%w: %w", accounts.ErrUnavailable, errors.New(
		`failed to connect to "user=fund database=fund": dial tcp 127.0.0.1:5432: connect: connection refused (SQLSTATE 08001)`))
	unreachable := fmt.Errorf("shard 0 at 127.0.0.1:9: %w", status.Error(codes.Unavailable,
		`connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:9: connect: connection refused"`))
	worlds := map[string]func(t *testing.T) *world{
		"ok": func(t *testing.T) *world {
			return newWorld(t, Config{RatePerCustomer: 1e9, RateBurst: 1 << 30}, BreakerConfig{})
		},
		// A bucket of one, refilled once in a million seconds.
		"rate": func(t *testing.T) *world {
			return newWorld(t, Config{RatePerCustomer: 1e-6, RateBurst: 1}, BreakerConfig{})
		},
		"shed": func(t *testing.T) *world { return newWorld(t, Config{ConcurrencyMax: 1}, BreakerConfig{}) },
		// The breaker opens after two failures.
		"ledger": func(t *testing.T) *world {
			return newWorld(t, Config{}, BreakerConfig{ConsecutiveFailures: 2, OpenFor: time.Hour})
		},
	}
	ledgerDown := func(err error) func(*world, *Gateway) {
		return func(w *world, _ *Gateway) { w.ledger.mu.Lock(); w.ledger.down = err; w.ledger.mu.Unlock() }
	}
	expired, err := auth.Mint(stubKey, auth.Claims{Subject: "1"}, time.Minute, stubClock().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	sub, hold := "/v1/customers/1/subscriptions", "/v1/customers/1/holdings"
	admin := stubToken(t, "", auth.ScopeAdmin)
	paths := []errorPath{
		// Authentication and authorisation.
		{name: "no token", path: hold, method: "GET", headers: []string{"Authorization", ""}, status: 401, reason: "NO_TOKEN"},
		{name: "garbage token", path: sub, body: `{"amount":"1"}`, headers: []string{"Authorization", "Bearer not.a.jwt"}, status: 401, reason: "INVALID_TOKEN"},
		{name: "expired token", path: sub, body: `{"amount":"1"}`, headers: []string{"Authorization", "Bearer " + expired}, status: 401, reason: "TOKEN_EXPIRED"},
		{name: "another customer's", path: sub, body: `{"amount":"1"}`, headers: []string{"Authorization", stubToken(t, "2")}, status: 403, reason: "FORBIDDEN"},
		{name: "customer on an admin call", path: "/v1/customers", body: `{"name":"X"}`, status: 403, reason: "FORBIDDEN"},
		// Amounts.
		{name: "three decimals", path: sub, body: `{"amount":"1.001"}`, status: 400, reason: "INVALID_ARGUMENT", field: "amount"},
		{name: "negative", path: sub, body: `{"amount":"-5"}`, status: 400, reason: "INVALID_ARGUMENT", field: "amount"},
		{name: "zero", path: sub, body: `{"amount":"0.00"}`, status: 400, reason: "INVALID_ARGUMENT", field: "amount"},
		{name: "exponent", path: sub, body: `{"amount":"1e3"}`, status: 400, reason: "INVALID_ARGUMENT", field: "amount"},
		{name: "too large", path: sub, body: `{"amount":"100000000.01"}`, status: 400, reason: "INVALID_ARGUMENT", field: "amount"},
		{name: "no amount", path: sub, body: ``, status: 400, reason: "INVALID_ARGUMENT", field: "amount"},
		{name: "amount as a number", path: sub, body: `{"amount":1.5}`, status: 400, reason: "INVALID_BODY", field: "amount"},
		// The body's JSON.
		{name: "malformed JSON", path: sub, body: `{"amount":`, status: 400, reason: "MALFORMED_JSON", field: "body"},
		{name: "trailing garbage", path: sub, body: `{"amount":"1"} x`, status: 400, reason: "MALFORMED_JSON", field: "body"},
		{name: "not an object", path: sub, body: `[1,2]`, status: 400, reason: "INVALID_BODY", field: "body"},
		{name: "unknown field", path: sub, body: `{"amount":"1","amuont":"2"}`, status: 400, reason: "INVALID_BODY", field: "amuont"},
		{name: "field twice", path: sub, body: `{"amount":"1","amount":"2"}`, status: 400, reason: "INVALID_BODY", field: "amount"},
		{name: "bad enum", path: "/v1/customers/1/redemptions", body: `{"amount":"1","mode":"SLOW"}`, status: 400, reason: "INVALID_BODY", field: "mode"},
		{name: "id of the wrong type", path: "/v1/customers/1/transfers", body: `{"amount":"1","to_customer_id":"x"}`, status: 400, reason: "INVALID_BODY", field: "to_customer_id"},
		{name: "oneof twice", path: "/v1/admin/settlements", body: `{"date":"2026-11-11","income":"1","income_per_10k":"1"}`,
			headers: []string{"Authorization", admin}, status: 400, reason: "INVALID_BODY", field: "income_per_10k"},
		{name: "body too large", path: sub, body: `{"amount":"1","request_id":"` + strings.Repeat("a", 20<<10) + `"}`, status: 413, reason: "BODY_TOO_LARGE", field: "body"},
		{name: "wrong content type", path: sub, body: `{"amount":"1"}`, headers: []string{"Content-Type", "text/plain"}, status: 415, reason: "UNSUPPORTED_MEDIA_TYPE"},
		{name: "form content type", path: sub, body: `amount=1`, headers: []string{"Content-Type", "application/x-www-form-urlencoded"}, status: 415, reason: "UNSUPPORTED_MEDIA_TYPE"},
		// Path and query parameters, routes.
		{name: "customer id not a number", method: "GET", path: "/v1/customers/abc/holdings", status: 400, reason: "INVALID_PATH_PARAMETER", field: "customer_id"},
		{name: "customer id overflows", method: "GET", path: "/v1/customers/99999999999999999999/holdings", status: 400, reason: "INVALID_PATH_PARAMETER", field: "customer_id"},
		{name: "order path id not a number", path: "/v1/customers/1x/subscriptions", body: `{"amount":"1"}`, status: 400, reason: "INVALID_PATH_PARAMETER", field: "customer_id"},
		{name: "customer id negative", method: "GET", path: "/v1/customers/-1/holdings", status: 400, reason: "INVALID_ARGUMENT", field: "customer_id"},
		{name: "query of the wrong type", method: "GET", path: "/v1/customers/1/transactions?page_size=ten", status: 400, reason: "INVALID_QUERY_PARAMETER", field: "page_size"},
		{name: "query id not a number", method: "GET", path: "/v1/orders/k1?customer_id=abc", status: 400, reason: "INVALID_QUERY_PARAMETER", field: "customer_id"},
		{name: "malformed query", method: "GET", path: "/v1/orders/k1?customer_id=%zz", status: 400, reason: "INVALID_QUERY_PARAMETER", field: "query"},
		{name: "page size out of range", method: "GET", path: "/v1/customers/1/transactions?page_size=1000", status: 400, reason: "INVALID_ARGUMENT", field: "page_size"},
		{name: "unknown route", method: "GET", path: "/v1/nothing-here", status: 404, reason: "ROUTE_NOT_FOUND"},
		{name: "no test clock", path: "/v1/admin/clock:advance", body: `{"by":"36h"}`, headers: []string{"Authorization", admin}, status: 404, reason: "TEST_CLOCK_DISABLED"},
		{name: "unknown method", method: "DELETE", path: hold, status: 405, reason: "METHOD_NOT_ALLOWED"},
		// Idempotency.
		{name: "no Idempotency-Key", path: sub, body: `{"amount":"1"}`, headers: []string{"Idempotency-Key", ""}, status: 400, reason: "INVALID_ARGUMENT", field: "request_id"},
		{name: "key and field differ", path: sub, body: `{"amount":"1","request_id":"other"}`, status: 400, reason: "INVALID_ARGUMENT", field: "request_id"},
		{name: "conflicting retry", path: sub, body: `{"amount":"2"}`, headers: []string{"Idempotency-Key", "first"}, status: 409, reason: "IDEMPOTENCY_CONFLICT",
			setup: func(w *world, g *Gateway) { sendOK(t, w, g, sub, `{"amount":"1"}`, "first") }},
		// What does not exist, and refusals by the state of the money.
		{name: "unknown customer", method: "GET", path: "/v1/customers/404", headers: []string{"Authorization", admin}, status: 404, reason: "CUSTOMER_NOT_FOUND"},
		{name: "unknown customer's order", path: "/v1/customers/404/topups", body: `{"amount":"1"}`, headers: []string{"Authorization", admin}, status: 404, reason: "CUSTOMER_NOT_FOUND"},
		{name: "unknown recipient", path: "/v1/customers/1/transfers", body: `{"amount":"1","to_customer_id":"404"}`, status: 404, reason: "CUSTOMER_NOT_FOUND"},
		{name: "unknown order", method: "GET", path: "/v1/orders/nope", status: 404, reason: "ORDER_NOT_FOUND"},
		{name: "unknown merchant", path: "/v1/customers/1/payments", body: `{"amount":"1","merchant_id":"404"}`, status: 404, reason: "MERCHANT_NOT_FOUND"},
		{name: "insufficient funds", path: "/v1/customers/1/withdrawals", body: `{"amount":"1000000.01"}`, status: 422, reason: "INSUFFICIENT_FUNDS"},
		{name: "frozen", path: "/v1/customers/13/withdrawals", body: `{"amount":"1"}`, headers: []string{"Authorization", stubToken(t, "13")}, status: 422, reason: "CUSTOMER_FROZEN"},
		{name: "no settlement worker", path: "/v1/admin/settlements", body: `{"date":"2026-11-11","income":"1"}`,
			headers: []string{"Authorization", admin}, status: 501, reason: "NOT_CONFIGURED"},
		// Limits.
		{name: "rate limited", world: "rate", path: sub, body: `{"amount":"1"}`, status: 429, reason: "RATE_LIMITED",
			setup: func(_ *world, g *Gateway) { g.rate.Allow(1, stubClock()) }},
		{name: "shed", world: "shed", path: sub, body: `{"amount":"1"}`, status: 429, reason: "OVERLOADED",
			setup: func(_ *world, g *Gateway) { g.conc.TryAcquire() }},
		// Dependencies down: the database, then the ledger shard in the
		// ways it fails (closed, then the breaker opens; unreachable;
		// out of time).
		{name: "database down: read", method: "GET", path: hold, status: 503, reason: "DATABASE_UNAVAILABLE",
			setup: func(w *world, _ *Gateway) { w.store.mu.Lock(); w.store.down = storeDown; w.store.mu.Unlock() }},
		{name: "database down: order", path: sub, body: `{"amount":"1"}`, status: 503, reason: "DATABASE_UNAVAILABLE",
			setup: func(w *world, _ *Gateway) { w.store.mu.Lock(); w.store.down = storeDown; w.store.mu.Unlock() }},
		{name: "database down: admin", path: "/v1/customers", body: `{"name":"X"}`, headers: []string{"Authorization", admin}, status: 503, reason: "DATABASE_UNAVAILABLE",
			setup: func(w *world, _ *Gateway) { w.store.mu.Lock(); w.store.down = storeDown; w.store.mu.Unlock() }},
		{name: "ledger stopped", world: "ledger", path: sub, body: `{"amount":"1"}`, status: 503, reason: "SHARD_UNAVAILABLE",
			setup: ledgerDown(fmt.Errorf("ledger: %w", ledger.ErrClosed))},
		{name: "ledger without owner", world: "ledger", method: "GET", path: hold, status: 503, reason: "SHARD_NO_OWNER",
			setup: ledgerDown(fmt.Errorf("read shard owners: %w: %w", ledger.ErrNoOwner, errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")))},
		{name: "breaker open", world: "ledger", path: sub, body: `{"amount":"1"}`, status: 503, reason: "BREAKER_OPEN"},
		{name: "owner unreachable", path: sub, body: `{"amount":"1"}`, status: 503, reason: "SHARD_UNREACHABLE", setup: ledgerDown(unreachable)},
		{name: "owner's transport times out", path: sub, body: `{"amount":"1"}`, status: 504, reason: "DEADLINE_EXCEEDED",
			setup: ledgerDown(status.Error(codes.DeadlineExceeded, "context deadline exceeded"))},
		{name: "owner aborted", path: sub, body: `{"amount":"1"}`, status: 503, reason: "DEPENDENCY_UNAVAILABLE",
			setup: ledgerDown(status.Error(codes.Aborted, "transport is closing"))},
		{name: "network error", method: "GET", path: hold, status: 503, reason: "DEPENDENCY_UNAVAILABLE",
			setup: ledgerDown(&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")})},
		{name: "request deadline", path: sub, body: `{"amount":"1"}`, status: 504, reason: "DEADLINE_EXCEEDED",
			setup: ledgerDown(fmt.Errorf("shard 0: %w", context.DeadlineExceeded))},
	}
	documented := map[string]Reason{}
	for _, r := range Reasons() {
		documented[r.Reason] = r
	}
	built := map[string]*world{}
	for i, p := range paths {
		name := p.world
		if name == "" {
			name = "ok"
		}
		// Each path gets a world of its own, except those that share one
		// on purpose (the ledger's: the breaker opens after two failures).
		w := built[name]
		if w == nil || name == "ok" {
			w = worlds[name](t)
			built[name] = w
		}
		var answers [2]*httptest.ResponseRecorder
		for j, g := range w.gws {
			if p.setup != nil {
				p.setup(w, g)
			}
			answers[j] = httptest.NewRecorder()
			w.hs[j].ServeHTTP(answers[j], p.request(t, i))
		}
		a := answers[0]
		if b := answers[1]; a.Code != b.Code || a.Body.String() != b.Body.String() || a.Header().Get("Retry-After") != b.Header().Get("Retry-After") {
			t.Errorf("%s: the direct path and the mux differ:\n %d %s\n %d %s", p.name, a.Code, a.Body, b.Code, b.Body)
		}
		checkErrorAnswer(t, p, a, documented)
	}
}

// request builds the path's request; i makes its default Idempotency-Key.
func (p errorPath) request(t *testing.T, i int) *http.Request {
	method := p.method
	if method == "" {
		method = http.MethodPost
	}
	r := httptest.NewRequest(method, "http://gw.example"+p.path, strings.NewReader(p.body))
	if p.method == "" {
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Idempotency-Key", "k"+strconv.Itoa(i))
	}
	r.Header.Set("Authorization", stubToken(t, "1"))
	for k := 0; k+1 < len(p.headers); k += 2 {
		if p.headers[k+1] == "" {
			r.Header.Del(p.headers[k])
		} else {
			r.Header.Set(p.headers[k], p.headers[k+1])
		}
	}
	return r
}

// sendOK sends an order that must succeed (to set up a later refusal).
func sendOK(t *testing.T, w *world, g *Gateway, path, body, key string) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Authorization", stubToken(t, "1"))
	r.Header.Set("Idempotency-Key", key)
	rec := httptest.NewRecorder()
	for j := range w.gws {
		if w.gws[j] == g {
			w.hs[j].ServeHTTP(rec, r)
		}
	}
	if rec.Code != http.StatusOK {
		t.Fatalf("set-up order %s: %d %s", body, rec.Code, rec.Body)
	}
}

// checkErrorAnswer checks one answer's status and shape.
func checkErrorAnswer(t *testing.T, p errorPath, a *httptest.ResponseRecorder, documented map[string]Reason) {
	t.Helper()
	if a.Code == http.StatusInternalServerError || a.Code != p.status {
		t.Errorf("%s: HTTP %d, want %d: %s", p.name, a.Code, p.status, a.Body)
	}
	if ct := a.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q", p.name, ct)
	}
	var st spb.Status
	if err := protojson.Unmarshal(a.Body.Bytes(), &st); err != nil {
		t.Errorf("%s: not a google.rpc.Status: %v: %s", p.name, err, a.Body)
		return
	}
	var infos []*errdetails.ErrorInfo
	var fields []string
	for _, d := range status.FromProto(&st).Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			infos = append(infos, d)
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				fields = append(fields, v.GetField())
				if v.GetDescription() == "" {
					t.Errorf("%s: field violation %s says nothing", p.name, v.GetField())
				}
			}
		case error:
			t.Errorf("%s: a detail does not decode: %v", p.name, d)
		}
	}
	if len(infos) != 1 {
		t.Errorf("%s: %d ErrorInfo details, want 1: %s", p.name, len(infos), a.Body)
		return
	}
	info := infos[0]
	doc, ok := documented[info.GetReason()]
	switch {
	case !ok:
		t.Errorf("%s: reason %q is not in the error table", p.name, info.GetReason())
	case info.GetDomain() != errorDomain:
		t.Errorf("%s: domain %q", p.name, info.GetDomain())
	case info.GetReason() != p.reason:
		t.Errorf("%s: reason %s, want %s: %s", p.name, info.GetReason(), p.reason, a.Body)
	case doc.HTTP != a.Code || codes.Code(st.GetCode()) != doc.Code:
		t.Errorf("%s: HTTP %d and code %s, the table says %d and %s", p.name, a.Code, codes.Code(st.GetCode()), doc.HTTP, doc.Code)
	}
	if p.field != "" && !containsString(fields, p.field) {
		t.Errorf("%s: field violations %v, want %s: %s", p.name, fields, p.field, a.Body)
	}
	for _, leak := range leakedTexts {
		if strings.Contains(a.Body.String(), leak) {
			t.Errorf("%s: the answer carries %q: %s", p.name, leak, a.Body)
		}
	}
	if st.GetMessage() == "" {
		t.Errorf("%s: no message", p.name)
	}
	retry := a.Header().Get("Retry-After")
	switch a.Code {
	case http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		if n, err := strconv.Atoi(retry); err != nil || n < 1 {
			t.Errorf("%s: HTTP %d with Retry-After %q", p.name, a.Code, retry)
		}
	default:
		if retry != "" {
			t.Errorf("%s: HTTP %d with Retry-After %q", p.name, a.Code, retry)
		}
	}
}

func containsString(xs []string, x string) bool {
	for _, s := range xs {
		if s == x {
			return true
		}
	}
	return false
}

// Admin calls do not spend the customer's rate limit: an admin reading and
// placing orders for a customer whose bucket is empty is served, and the
// customer's own bucket is what it was.
func TestAdminCallsDoNotSpendTheCustomersRateLimit(t *testing.T) {
	w := newWorld(t, Config{RatePerCustomer: 1e-6, RateBurst: 2}, BreakerConfig{})
	g, h := w.gws[0], w.hs[0]
	admin, own := stubToken(t, "", auth.ScopeAdmin), stubToken(t, "1")
	send := func(tok, method, path, body, key string) int {
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		r.Header.Set("Authorization", tok)
		if body != "" {
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("Idempotency-Key", key)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec.Code
	}
	for i := range 10 {
		if code := send(admin, "GET", "/v1/customers/1/holdings", "", ""); code != http.StatusOK {
			t.Fatalf("admin read %d: %d", i, code)
		}
		if code := send(admin, "POST", "/v1/customers/1/topups", `{"amount":"1"}`, "a"+strconv.Itoa(i)); code != http.StatusOK {
			t.Fatalf("admin order %d: %d", i, code)
		}
	}
	// The customer still has its burst of two, then is limited.
	for i, want := range []int{200, 200, 429} {
		if code := send(own, "GET", "/v1/customers/1/holdings", "", ""); code != want {
			t.Fatalf("customer's request %d: %d, want %d", i, code, want)
		}
	}
	// An admin is still served for the limited customer.
	if code := send(admin, "GET", "/v1/customers/1/holdings", "", ""); code != http.StatusOK {
		t.Fatalf("admin read of a limited customer: %d", code)
	}
	if n := counterValue(t, g, "rate"); n != 1 {
		t.Fatalf("%v requests shed by the rate limit, want 1", n)
	}
}

// counterValue reads fund_gateway_shed_total{reason}.
func counterValue(t *testing.T, g *Gateway, reason string) float64 {
	t.Helper()
	fams, err := g.cfg.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "fund_gateway_shed_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
