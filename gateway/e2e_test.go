package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/gateway"
	fundv1 "github.com/fundplatform/fund/gateway/api/fund/v1"
	"github.com/fundplatform/fund/gateway/auth"
	"github.com/fundplatform/fund/internal/devstack"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const stopTimeout = time.Minute

// startStack runs the devstack wiring (what `fundd dev` runs) on a fresh
// database of the test's Postgres, with an in-process broker.
func startStack(t *testing.T, opts devstack.Options) *devstack.Stack {
	t.Helper()
	opts.DSN = pgtest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := devstack.Start(ctx, opts)
	if err != nil {
		t.Fatalf("devstack: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		if err := st.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return st
}

// client talks to the stack over real HTTP.
type client struct {
	t    *testing.T
	base string
	http *http.Client
}

type reply struct {
	code   int
	header http.Header
	raw    string
	body   map[string]any
}

// req sends body (a string, sent as is, or nil) with the headers given as
// name, value pairs; Content-Type is application/json unless given.
func (c *client) req(method, path, token string, body any, headers ...string) reply {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	r, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.http.Do(r)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := reply{code: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &out.body); err != nil {
			c.t.Fatalf("%s %s: answer is not a JSON object: %v: %s", method, path, err, raw)
		}
	}
	return out
}

// want fails unless the reply has the status.
func (r reply) want(t *testing.T, code int) reply {
	t.Helper()
	if r.code != code {
		t.Fatalf("status %d, want %d: %s", r.code, code, r.raw)
	}
	return r
}

func (r reply) str(key string) string {
	v, _ := r.body[key].(string)
	return v
}

// reason returns the ErrorInfo reason of an error reply.
func (r reply) reason() string {
	ds, _ := r.body["details"].([]any)
	for _, d := range ds {
		m, _ := d.(map[string]any)
		if strings.HasSuffix(fmt.Sprint(m["@type"]), "google.rpc.ErrorInfo") {
			return fmt.Sprint(m["reason"])
		}
	}
	return ""
}

// fieldViolations returns the BadRequest fields of an error reply.
func (r reply) fieldViolations() []string {
	var out []string
	ds, _ := r.body["details"].([]any)
	for _, d := range ds {
		m, _ := d.(map[string]any)
		if strings.HasSuffix(fmt.Sprint(m["@type"]), "google.rpc.BadRequest") {
			vs, _ := m["field_violations"].([]any)
			for _, v := range vs {
				out = append(out, fmt.Sprint(v.(map[string]any)["field"]))
			}
		}
	}
	return out
}

// detailOrder returns the Order carried in an error reply's details.
func (r reply) detailOrder() map[string]any {
	ds, _ := r.body["details"].([]any)
	for _, d := range ds {
		m, _ := d.(map[string]any)
		if strings.HasSuffix(fmt.Sprint(m["@type"]), "fund.v1.Order") {
			return m
		}
	}
	return nil
}

func newClient(t *testing.T, st *devstack.Stack) *client {
	return &client{t: t, base: st.HTTPURL, http: &http.Client{Timeout: time.Minute}}
}

func token(t *testing.T, st *devstack.Stack, customer int64, admin bool) string {
	t.Helper()
	tok, err := st.Token(customer, admin, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func customerPath(id int64, rest string) string {
	return "/v1/customers/" + strconv.FormatInt(id, 10) + rest
}

// openCustomer opens a customer through the admin API and returns its id.
func openCustomer(t *testing.T, c *client, admin, name, key string) int64 {
	t.Helper()
	r := c.req("POST", "/v1/customers", admin, map[string]any{"name": name}, "Idempotency-Key", key).want(t, 200)
	id, err := strconv.ParseInt(r.str("id"), 10, 64)
	if err != nil || id <= 0 {
		t.Fatalf("customer id %q: %s", r.str("id"), r.raw)
	}
	return id
}

func TestEndToEndEveryRoute(t *testing.T) {
	t.Parallel()
	st := startStack(t, devstack.Options{Gateway: gateway.Config{RatePerCustomer: 10_000, RateBurst: 10_000}})
	c := newClient(t, st)
	admin := token(t, st, 0, true)

	// Operational endpoints.
	c.req("GET", "/healthz", "", nil).want(t, 200)
	c.req("GET", "/readyz", "", nil).want(t, 200)
	doc := c.req("GET", "/openapi.json", "", nil).want(t, 200)
	paths, _ := doc.body["paths"].(map[string]any)
	for _, p := range []string{"/v1/customers", "/v1/customers/{customer_id}/holdings", "/v1/customers/{customer_id}/topups",
		"/v1/customers/{customer_id}/subscriptions", "/v1/customers/{customer_id}/redemptions",
		"/v1/customers/{customer_id}/transfers", "/v1/customers/{customer_id}/payments",
		"/v1/customers/{customer_id}/withdrawals", "/v1/customers/{customer_id}/transactions", "/v1/orders/{request_id}",
		"/v1/admin/customers/{customer_id}:freeze", "/v1/admin/customers/{customer_id}:unfreeze",
		"/v1/admin/customers/{customer_id}:close", "/v1/admin/merchants", "/v1/admin/settlements",
		"/v1/admin/settlements/{date}", "/v1/admin/recon/report"} {
		if paths[p] == nil {
			t.Errorf("openapi.json has no path %s", p)
		}
	}

	// SQL-looking text is data, stored and returned verbatim.
	evil := `Robert'); DROP TABLE customers;-- "quoted" \ 李`
	alice := openCustomer(t, c, admin, evil, "open-alice")
	bob := openCustomer(t, c, admin, "Bob", "open-bob")
	got := c.req("GET", customerPath(alice, ""), admin, nil).want(t, 200)
	if got.str("name") != evil || got.str("status") != "ACTIVE" {
		t.Fatalf("customer: %s", got.raw)
	}
	// Opening again with the same key and name returns the same customer.
	if again := openCustomer(t, c, admin, evil, "open-alice"); again != alice {
		t.Fatalf("reopened as %d, want %d", again, alice)
	}
	c.req("POST", "/v1/customers", admin, map[string]any{"name": "Mallory"}, "Idempotency-Key", "open-alice").want(t, 409)

	aliceTok := token(t, st, alice, false)
	c.req("POST", "/v1/admin/merchants", admin, map[string]any{"merchant_id": "7"}).want(t, 200)

	// Orders.
	top := c.req("POST", customerPath(alice, "/topups"), aliceTok, map[string]any{"amount": "1000.00"},
		"Idempotency-Key", "t1").want(t, 200)
	if top.str("status") != "COMPLETED" || top.str("kind") != "TOP_UP" || top.str("amount") != "1000.00" ||
		top.str("request_id") != "t1" || top.str("customer_id") != strconv.FormatInt(alice, 10) {
		t.Fatalf("top-up: %s", top.raw)
	}
	sub := c.req("POST", customerPath(alice, "/subscriptions"), aliceTok, map[string]any{"amount": "300.5"},
		"Idempotency-Key", "s1").want(t, 200)
	if sub.str("status") != "PENDING" || sub.str("confirm_date") == "" || sub.str("trade_date") == "" {
		t.Fatalf("subscribe: %s", sub.raw)
	}
	// request_id in the body works as well as the header.
	c.req("POST", customerPath(alice, "/withdrawals"), aliceTok, map[string]any{"amount": "10", "request_id": "w1"}).want(t, 200)
	tr := c.req("POST", customerPath(alice, "/transfers"), aliceTok, map[string]any{"amount": "5.25", "to_customer_id": bob},
		"Idempotency-Key", "x1").want(t, 200)
	if tr.str("to_customer_id") != strconv.FormatInt(bob, 10) {
		t.Fatalf("transfer: %s", tr.raw)
	}
	// No confirmed shares yet: redemptions and payments are rejected (422,
	// the order in the details), and a retry answers the same.
	for _, p := range []struct {
		path string
		body map[string]any
		key  string
	}{
		{"/redemptions", map[string]any{"amount": "1.00", "mode": "FAST"}, "r1"},
		{"/redemptions", map[string]any{"amount": "1.00", "mode": "STANDARD"}, "r2"},
		{"/payments", map[string]any{"amount": "1.00", "merchant_id": "7"}, "p1"},
	} {
		for attempt := 0; attempt < 2; attempt++ {
			r := c.req("POST", customerPath(alice, p.path), aliceTok, p.body, "Idempotency-Key", p.key).want(t, 422)
			o := r.detailOrder()
			if r.reason() != "INSUFFICIENT_FUNDS" || o == nil || o["status"] != "REJECTED" || o["reason"] != "insufficient_funds" {
				t.Fatalf("%s: %s", p.path, r.raw)
			}
		}
	}
	// Too much cash asked: 422 too.
	c.req("POST", customerPath(alice, "/withdrawals"), aliceTok, map[string]any{"amount": "100000"},
		"Idempotency-Key", "w-big").want(t, 422)
	// An unknown merchant, no shares either: the merchant is checked before
	// any money moves, so 404 as with shares, and no order is stored.
	if r := c.req("POST", customerPath(alice, "/payments"), aliceTok, map[string]any{"amount": "1", "merchant_id": "999"},
		"Idempotency-Key", "p-unknown").want(t, 404); r.reason() != "MERCHANT_NOT_FOUND" {
		t.Fatalf("unknown merchant: %s", r.raw)
	}

	// Holdings.
	h := c.req("GET", customerPath(alice, "/holdings"), aliceTok, nil).want(t, 200)
	if h.str("cash") != "684.25" || h.str("shares") != "0.00" || h.str("shares_pending") != "300.50" ||
		h.str("fast_redeem_left_today") != "10000.00" || h.str("status") != "ACTIVE" {
		t.Fatalf("holdings: %s", h.raw)
	}
	for _, k := range []string{"shares_redeeming", "yesterday_income", "cumulative_income", "seven_day_yield", "customer_id"} {
		if _, ok := h.body[k]; !ok {
			t.Errorf("holdings lack %s: %s", k, h.raw)
		}
	}
	// Alice's transfer to Bob may cross shards: Bob is credited when the
	// saga's second leg lands, a moment after Alice's answer.
	var bh reply
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		bh = c.req("GET", customerPath(bob, "/holdings"), admin, nil).want(t, 200)
		if bh.str("cash") == "5.25" || time.Now().After(end) {
			break
		}
	}
	if bh.str("cash") != "5.25" {
		t.Fatalf("bob's holdings: %s", bh.raw)
	}

	// Transactions, paged.
	var seen []string
	tokenQ := ""
	for page := 0; page < 10; page++ {
		r := c.req("GET", customerPath(alice, "/transactions?page_size=3"+tokenQ), aliceTok, nil).want(t, 200)
		txs, _ := r.body["transactions"].([]any)
		for _, tx := range txs {
			seen = append(seen, fmt.Sprint(tx.(map[string]any)["request_id"]))
		}
		next := r.str("next_page_token")
		if next == "" {
			break
		}
		tokenQ = "&page_token=" + next
	}
	if len(seen) != 8 || seen[0] != "w-big" {
		t.Fatalf("history: %v", seen)
	}
	bt := c.req("GET", customerPath(bob, "/transactions"), admin, nil).want(t, 200)
	if txs, _ := bt.body["transactions"].([]any); len(txs) != 1 || txs[0].(map[string]any)["incoming"] != true {
		t.Fatalf("bob's history: %s", bt.raw)
	}
	c.req("GET", customerPath(alice, "/transactions?page_size=1000"), aliceTok, nil).want(t, 400)
	c.req("GET", customerPath(alice, "/transactions?page_token=zz"), aliceTok, nil).want(t, 400)

	// Order status: own customer from the token, or named.
	if o := c.req("GET", "/v1/orders/s1", aliceTok, nil).want(t, 200); o.str("kind") != "SUBSCRIBE" {
		t.Fatalf("order: %s", o.raw)
	}
	c.req("GET", "/v1/orders/s1?customer_id="+strconv.FormatInt(alice, 10), admin, nil).want(t, 200)
	c.req("GET", "/v1/orders/s1", admin, nil).want(t, 400) // an admin token names no customer
	c.req("GET", "/v1/orders/nope", aliceTok, nil).want(t, 404)

	// Freeze, unfreeze, close.
	c.req("POST", "/v1/admin/customers/"+strconv.FormatInt(alice, 10)+":freeze", admin, nil).want(t, 200)
	r := c.req("POST", customerPath(alice, "/subscriptions"), aliceTok, map[string]any{"amount": "1"}, "Idempotency-Key", "s-frozen").want(t, 422)
	if r.reason() != "CUSTOMER_FROZEN" {
		t.Fatalf("frozen: %s", r.raw)
	}
	c.req("POST", customerPath(alice, "/topups"), aliceTok, map[string]any{"amount": "1"}, "Idempotency-Key", "t-frozen").want(t, 200)
	if u := c.req("POST", "/v1/admin/customers/"+strconv.FormatInt(alice, 10)+":unfreeze", admin, "{}").want(t, 200); u.str("status") != "ACTIVE" {
		t.Fatalf("unfreeze: %s", u.raw)
	}
	c.req("POST", "/v1/admin/customers/"+strconv.FormatInt(alice, 10)+":close", admin, nil).want(t, 422)
	empty := openCustomer(t, c, admin, "Empty", "open-empty")
	if cl := c.req("POST", "/v1/admin/customers/"+strconv.FormatInt(empty, 10)+":close", admin, nil).want(t, 200); cl.str("status") != "CLOSED" {
		t.Fatalf("close: %s", cl.raw)
	}
	c.req("POST", "/v1/admin/customers/999999:freeze", admin, nil).want(t, 404)

	// Settlement and reconciliation: no worker gave them in this stack.
	c.req("POST", "/v1/admin/settlements", admin, map[string]any{"date": "2026-11-11", "income": "123.45"}).want(t, 501)
	c.req("GET", "/v1/admin/settlements/2026-11-11", admin, nil).want(t, 501)
	c.req("GET", "/v1/admin/recon/report", admin, nil).want(t, 501)

	// Metrics with the contract's names.
	m := c.req("GET", "/metrics", "", nil).want(t, 200)
	for _, name := range []string{"fund_gateway_requests_total", "fund_gateway_request_duration_seconds",
		"fund_gateway_inflight", "fund_gateway_shed_total", `fund_gateway_breaker_state{target="shard-0"} 0`,
		`route="POST /v1/customers/{customer_id=*}/subscriptions"`} {
		if !strings.Contains(m.raw, name) {
			t.Errorf("metrics lack %s", name)
		}
	}
}

func TestEndToEndAuth(t *testing.T) {
	t.Parallel()
	st := startStack(t, devstack.Options{})
	c := newClient(t, st)
	admin := token(t, st, 0, true)
	alice := openCustomer(t, c, admin, "Alice", "a")
	bob := openCustomer(t, c, admin, "Bob", "b")
	path := customerPath(alice, "/holdings")

	expired, err := auth.Mint(st.JWTKey, auth.Claims{Subject: strconv.FormatInt(alice, 10)}, time.Minute, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	forged, err := auth.Mint([]byte(strings.Repeat("k", 32)), auth.Claims{Subject: strconv.FormatInt(alice, 10)}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	aliceTok := token(t, st, alice, false)
	tampered := aliceTok[:len(aliceTok)-2] + "xx"
	for _, tc := range []struct {
		name, tok, reason string
	}{
		{"missing", "", "NO_TOKEN"},
		{"expired", expired, "TOKEN_EXPIRED"},
		{"forged", forged, "INVALID_TOKEN"},
		{"tampered", tampered, "INVALID_TOKEN"},
		{"garbage", "not.a.jwt", "INVALID_TOKEN"},
	} {
		r := c.req("GET", path, tc.tok, nil).want(t, 401)
		if r.reason() != tc.reason {
			t.Errorf("%s: reason %q, want %q: %s", tc.name, r.reason(), tc.reason, r.raw)
		}
		c.req("POST", customerPath(alice, "/topups"), tc.tok, map[string]any{"amount": "1"}, "Idempotency-Key", "k").want(t, 401)
	}
	// Someone else's customer: 403, for reads and orders.
	bobTok := token(t, st, bob, false)
	c.req("GET", path, bobTok, nil).want(t, 403)
	c.req("POST", customerPath(alice, "/topups"), bobTok, map[string]any{"amount": "1"}, "Idempotency-Key", "k").want(t, 403)
	c.req("GET", "/v1/orders/k?customer_id="+strconv.FormatInt(alice, 10), bobTok, nil).want(t, 403)
	// Customer tokens on admin routes: 403.
	c.req("POST", "/v1/customers", aliceTok, map[string]any{"name": "X"}, "Idempotency-Key", "x").want(t, 403)
	c.req("POST", "/v1/admin/customers/"+strconv.FormatInt(bob, 10)+":freeze", aliceTok, nil).want(t, 403)
	c.req("GET", "/v1/admin/recon/report", aliceTok, nil).want(t, 403)
	c.req("GET", "/v1/admin/recon/report", "", nil).want(t, 401)
	// The own customer and an admin pass.
	c.req("GET", path, aliceTok, nil).want(t, 200)
	c.req("GET", path, admin, nil).want(t, 200)
}

func TestEndToEndBadInput(t *testing.T) {
	t.Parallel()
	st := startStack(t, devstack.Options{})
	c := newClient(t, st)
	admin := token(t, st, 0, true)
	alice := openCustomer(t, c, admin, "Alice", "a")
	tok := token(t, st, alice, false)
	sub := customerPath(alice, "/subscriptions")

	for _, tc := range []struct {
		name    string
		body    any
		headers []string
		code    int
		fields  []string
	}{
		{"malformed JSON", `{"amount": "1.00"`, nil, 400, nil},
		{"trailing garbage", `{"amount": "1.00"} x`, nil, 400, nil},
		{"not an object", `[1,2]`, nil, 400, nil},
		{"unknown field", `{"amount": "1.00", "amuont": "2"}`, nil, 400, nil},
		{"amount as number", `{"amount": 1.5}`, nil, 400, nil},
		{"oversized body", `{"amount": "1.00", "request_id": "` + strings.Repeat("a", 20<<10) + `"}`, nil, 413, nil},
		{"wrong content type", `{"amount": "1.00"}`, []string{"Content-Type", "text/plain"}, 415, nil},
		{"form content type", `amount=1`, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, nil},
		{"three decimals", `{"amount": "1.001"}`, nil, 400, []string{"amount"}},
		{"negative", `{"amount": "-5"}`, nil, 400, []string{"amount"}},
		{"zero", `{"amount": "0.00"}`, nil, 400, []string{"amount"}},
		{"exponent", `{"amount": "1e3"}`, nil, 400, []string{"amount"}},
		{"too large", `{"amount": "100000000.01"}`, nil, 400, []string{"amount"}},
		{"overflow", `{"amount": "99999999999999999999999999"}`, nil, 400, []string{"amount"}},
		{"empty body", ``, nil, 400, []string{"amount"}},
		{"no request id", `{"amount": "1.00"}`, []string{"Idempotency-Key", ""}, 400, []string{"request_id"}},
		{"key and field differ", `{"amount": "1.00", "request_id": "other"}`, nil, 400, []string{"request_id"}},
		{"request id with a space", `{"amount": "1.00", "request_id": "a b"}`, []string{"Idempotency-Key", ""}, 400, []string{"request_id"}},
		{"request id too long", `{"amount": "1.00", "request_id": "` + strings.Repeat("a", 65) + `"}`, []string{"Idempotency-Key", ""}, 400, []string{"request_id"}},
	} {
		headers := append([]string{"Idempotency-Key", "key-1"}, tc.headers...)
		r := c.req("POST", sub, tok, tc.body, headers...)
		if r.code != tc.code {
			t.Errorf("%s: status %d, want %d: %s", tc.name, r.code, tc.code, r.raw)
			continue
		}
		if r.body == nil || r.body["code"] == nil || r.body["message"] == nil {
			t.Errorf("%s: not a google.rpc.Status: %s", tc.name, r.raw)
		}
		if tc.fields != nil && fmt.Sprint(r.fieldViolations()) != fmt.Sprint(tc.fields) {
			t.Errorf("%s: field violations %v, want %v: %s", tc.name, r.fieldViolations(), tc.fields, r.raw)
		}
	}
	// Bad path parameters, modes, ids and routes: 4xx, never 500.
	for _, tc := range []struct {
		method, path string
		body         any
		code         int
	}{
		{"GET", "/v1/customers/abc/holdings", nil, 400},
		{"GET", "/v1/customers/-1/holdings", nil, 400},
		{"GET", "/v1/customers/99999999999999999999/holdings", nil, 400},
		{"POST", customerPath(alice, "/redemptions"), `{"amount": "1", "mode": "SLOW"}`, 400},
		{"POST", customerPath(alice, "/redemptions"), `{"amount": "1"}`, 400},
		{"POST", customerPath(alice, "/transfers"), `{"amount": "1", "to_customer_id": "x"}`, 400},
		{"POST", customerPath(alice, "/transfers"), `{"amount": "1", "to_customer_id": "` + strconv.FormatInt(alice, 10) + `"}`, 400},
		{"POST", customerPath(alice, "/transfers"), `{"amount": "1", "to_customer_id": "999999"}`, 404},
		{"POST", customerPath(alice, "/payments"), `{"amount": "1"}`, 400},
		{"GET", "/v1/nothing-here", nil, 404},
		{"DELETE", customerPath(alice, "/holdings"), nil, 405},
	} {
		r := c.req(tc.method, tc.path, tok, tc.body, "Idempotency-Key", "key-2")
		if r.code != tc.code {
			t.Errorf("%s %s %v: status %d, want %d: %s", tc.method, tc.path, tc.body, r.code, tc.code, r.raw)
		}
	}
	// Admin input.
	for _, tc := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/v1/customers", `{"name": ""}`},
		{"POST", "/v1/customers", `{"name": "nul\u0000byte"}`},
		{"POST", "/v1/customers", `{"name": "tab\there"}`},
		{"POST", "/v1/customers", `{"name": "` + strings.Repeat("x", 101) + `"}`},
		{"POST", "/v1/admin/merchants", `{"merchant_id": "0"}`},
		{"POST", "/v1/admin/settlements", `{"date": "2026-13-01", "income": "1"}`},
		{"POST", "/v1/admin/settlements", `{"date": "2026-11-11"}`},
		{"POST", "/v1/admin/settlements", `{"date": "2026-11-11", "income": "1.001"}`},
		{"POST", "/v1/admin/settlements", `{"date": "2026-11-11", "income": "1", "income_per_10k": "1"}`},
		{"GET", "/v1/admin/settlements/yesterday", nil},
	} {
		if r := c.req(tc.method, tc.path, admin, tc.body, "Idempotency-Key", "k"); r.code != 400 {
			t.Errorf("%s %s %v: status %d, want 400: %s", tc.method, tc.path, tc.body, r.code, r.raw)
		}
	}
	// Nothing was stored by any of it.
	h := c.req("GET", customerPath(alice, "/transactions"), tok, nil).want(t, 200)
	if txs, _ := h.body["transactions"].([]any); len(txs) != 0 {
		t.Fatalf("bad input left orders: %s", h.raw)
	}
}

func TestEndToEndIdempotencyKey(t *testing.T) {
	t.Parallel()
	st := startStack(t, devstack.Options{})
	c := newClient(t, st)
	admin := token(t, st, 0, true)
	alice := openCustomer(t, c, admin, "Alice", "a")
	tok := token(t, st, alice, false)
	c.req("POST", customerPath(alice, "/topups"), tok, map[string]any{"amount": "100"}, "Idempotency-Key", "t1").want(t, 200)

	first := c.req("POST", customerPath(alice, "/subscriptions"), tok, map[string]any{"amount": "40"}, "Idempotency-Key", "s1").want(t, 200)
	// The same key and body: the same order, applied once.
	again := c.req("POST", customerPath(alice, "/subscriptions"), tok, `{"amount":"40.00"}`, "Idempotency-Key", "s1").want(t, 200)
	if again.raw != first.raw {
		t.Fatalf("retry answered\n%s\nfirst was\n%s", again.raw, first.raw)
	}
	// The same key with another body: 409, nothing moved.
	conflict := c.req("POST", customerPath(alice, "/subscriptions"), tok, map[string]any{"amount": "41"}, "Idempotency-Key", "s1").want(t, 409)
	if conflict.reason() != "IDEMPOTENCY_CONFLICT" || conflict.detailOrder()["amount"] != "40.00" {
		t.Fatalf("conflict: %s", conflict.raw)
	}
	// Another kind of order with the key: 409 too.
	c.req("POST", customerPath(alice, "/withdrawals"), tok, map[string]any{"amount": "40"}, "Idempotency-Key", "s1").want(t, 409)
	// Concurrent identical requests: one order.
	var wg sync.WaitGroup
	codes := make([]int, 8)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = c.req("POST", customerPath(alice, "/subscriptions"), tok, map[string]any{"amount": "10"}, "Idempotency-Key", "s2").code
		}()
	}
	wg.Wait()
	for _, code := range codes {
		if code != 200 {
			t.Fatalf("concurrent retries: %v", codes)
		}
	}
	h := c.req("GET", customerPath(alice, "/holdings"), tok, nil).want(t, 200)
	if h.str("cash") != "50.00" || h.str("shares_pending") != "50.00" {
		t.Fatalf("holdings after retries: %s", h.raw)
	}
}

// fakeSettler answers settlement calls; block, when set, holds Run until
// closed (to keep a request in flight).
type fakeSettler struct {
	block   chan struct{}
	started chan struct{}
}

func (f *fakeSettler) Run(ctx context.Context, req gateway.SettlementRequest) (gateway.SettlementRun, error) {
	if f.block != nil {
		f.started <- struct{}{}
		select {
		case <-f.block:
		case <-ctx.Done():
			return gateway.SettlementRun{}, ctx.Err()
		}
	}
	return gateway.SettlementRun{Date: req.Date, Status: "COMPLETED", Income: req.Income, Accounts: 3}, nil
}

func (f *fakeSettler) Get(_ context.Context, date time.Time) (gateway.SettlementRun, error) {
	if date.Format(time.DateOnly) != "2026-11-11" {
		return gateway.SettlementRun{}, gateway.ErrSettlementNotFound
	}
	return gateway.SettlementRun{Date: date, Status: "COMPLETED", Income: -1234, IncomePer10k: 6543, HasIncomePer10k: true}, nil
}

type fakeReconciler struct{}

func (fakeReconciler) Report(context.Context) (gateway.ReconReport, error) {
	return gateway.ReconReport{GeneratedAt: time.Now(), EventsProcessed: 5,
		Breaks: []gateway.ReconBreak{{Kind: "missing", Ref: "x", Amount: 150}}, OpenBreaksByKind: map[string]int64{"missing": 1}}, nil
}

func settlementWorker(f *fakeSettler) devstack.Worker {
	return devstack.Worker{Name: "fake-settlement", Start: func(context.Context, *devstack.Stack) (devstack.Role, error) {
		return devstack.Role{Settler: f, Reconciler: fakeReconciler{}}, nil
	}}
}

func TestEndToEndWorkersAndLimits(t *testing.T) {
	t.Parallel()
	f := &fakeSettler{block: make(chan struct{}), started: make(chan struct{}, 1)}
	st := startStack(t, devstack.Options{
		Workers: []devstack.Worker{settlementWorker(f)},
		// A bucket refilled once in 1000 s: the test cannot outlast it.
		Gateway: gateway.Config{ConcurrencyMax: 1, RatePerCustomer: 0.001, RateBurst: 2},
	})
	c := newClient(t, st)
	admin := token(t, st, 0, true)

	// Settlement and reconciliation through the workers the stack was given.
	g := c.req("GET", "/v1/admin/settlements/2026-11-11", admin, nil).want(t, 200)
	if g.str("income") != "-12.34" || g.str("income_per_10k") != "0.6543" || g.str("status") != "COMPLETED" {
		t.Fatalf("settlement: %s", g.raw)
	}
	c.req("GET", "/v1/admin/settlements/2026-11-12", admin, nil).want(t, 404)
	rep := c.req("GET", "/v1/admin/recon/report", admin, nil).want(t, 200)
	if rep.body["ok"] != false || rep.str("events_processed") != "5" {
		t.Fatalf("recon: %s", rep.raw)
	}

	// Per-customer rate limit: a burst of 2, then 429 with Retry-After.
	// Admin calls spend none of it, before or after.
	alice := openCustomer(t, c, admin, "Alice", "a")
	aliceTok := token(t, st, alice, false)
	path := customerPath(alice, "/holdings")
	for range 3 {
		c.req("GET", path, admin, nil).want(t, 200)
	}
	c.req("GET", path, aliceTok, nil).want(t, 200)
	c.req("GET", path, aliceTok, nil).want(t, 200)
	r := c.req("GET", path, aliceTok, nil).want(t, 429)
	if r.header.Get("Retry-After") == "" || r.reason() != "RATE_LIMITED" {
		t.Fatalf("rate limited: %v %s", r.header, r.raw)
	}
	c.req("GET", path, admin, nil).want(t, 200)

	// The global concurrency limit (1 here): while a request is in flight,
	// another is refused at once with 429, not queued.
	done := make(chan reply, 1)
	go func() {
		done <- c.req("POST", "/v1/admin/settlements", admin, map[string]any{"date": "2026-11-11", "income": "1.00"})
	}()
	<-f.started
	shed := c.req("GET", "/v1/admin/recon/report", admin, nil).want(t, 429)
	if shed.header.Get("Retry-After") != "1" || shed.reason() != "OVERLOADED" {
		t.Fatalf("shed: %v %s", shed.header, shed.raw)
	}
	// Graceful shutdown finishes the request in flight.
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		stopped <- st.Stop(ctx)
	}()
	for st.Gateway.Ready(context.Background()) == nil {
		time.Sleep(5 * time.Millisecond) // waiting for the shutdown to begin, not a timing assertion
	}
	close(f.block)
	if res := <-done; res.code != 200 || res.str("status") != "COMPLETED" {
		t.Fatalf("in-flight request during shutdown: %d %s", res.code, res.raw)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}

func TestEndToEndDeadShardFailsFast(t *testing.T) {
	t.Parallel()
	st := startStack(t, devstack.Options{Breaker: gateway.BreakerConfig{ConsecutiveFailures: 3, OpenFor: time.Hour}})
	c := newClient(t, st)
	admin := token(t, st, 0, true)
	alice := openCustomer(t, c, admin, "Alice", "a")
	c.req("POST", customerPath(alice, "/topups"), admin, map[string]any{"amount": "10"}, "Idempotency-Key", "t1").want(t, 200)
	if err := st.StopLedger(); err != nil {
		t.Fatal(err)
	}
	reasons := map[string]int{}
	for i := 0; i < 6; i++ {
		r := c.req("POST", customerPath(alice, "/subscriptions"), admin, map[string]any{"amount": "1"},
			"Idempotency-Key", "s"+strconv.Itoa(i)).want(t, 503)
		reasons[r.reason()]++
	}
	// The first failures come from the stopped shard, then the breaker
	// answers without calling it.
	if reasons["SHARD_NO_OWNER"] != 3 || reasons["BREAKER_OPEN"] != 3 {
		t.Fatalf("reasons %v", reasons)
	}
	m := c.req("GET", "/metrics", "", nil).want(t, 200)
	if want := fmt.Sprintf(`fund_gateway_breaker_state{target="shard-%d"} 2`, accounts.ShardOf(accounts.CustomerID(alice), st.Shards)); !strings.Contains(m.raw, want) {
		t.Fatal("breaker state metric is not 2 (open)")
	}
	// Nothing was stored for the refused orders: a retry later may apply them.
	c.req("GET", "/v1/orders/s0?customer_id="+strconv.FormatInt(alice, 10), admin, nil).want(t, 404)
}

func TestEndToEndNativeGRPCAndDeadlines(t *testing.T) {
	t.Parallel()
	st := startStack(t, devstack.Options{})
	conn, err := grpc.NewClient(st.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	adminSvc := fundv1.NewAdminServiceClient(conn)
	fund := fundv1.NewFundServiceClient(conn)
	withToken := func(tok string) context.Context {
		return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
	}
	admin := withToken(token(t, st, 0, true))
	cust, err := adminSvc.OpenCustomer(admin, &fundv1.OpenCustomerRequest{RequestId: "g1", Name: "Grace"})
	if err != nil {
		t.Fatal(err)
	}
	alice := withToken(token(t, st, cust.GetId(), false))
	o, err := fund.TopUp(alice, &fundv1.OrderRequest{CustomerId: cust.GetId(), RequestId: "t1", Amount: "5.00"})
	if err != nil || o.GetStatus() != fundv1.OrderStatus_COMPLETED {
		t.Fatalf("top-up over gRPC: %v %v", o, err)
	}
	// The same table of errors: a rejected order is FailedPrecondition with
	// the order in the details.
	_, err = fund.Subscribe(alice, &fundv1.OrderRequest{CustomerId: cust.GetId(), RequestId: "s1", Amount: "6.00"})
	if s := status.Convert(err); s.Code() != codes.FailedPrecondition || len(s.Details()) < 2 {
		t.Fatalf("rejected over gRPC: %v", err)
	}
	if _, err := fund.GetHoldings(context.Background(), &fundv1.GetHoldingsRequest{CustomerId: cust.GetId()}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no token over gRPC: %v", err)
	}
	if _, err := adminSvc.FreezeCustomer(alice, &fundv1.CustomerAction{CustomerId: cust.GetId()}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("customer token on admin over gRPC: %v", err)
	}

	// A deadline the client sets travels down: one already spent ends the
	// order unacknowledged with 504, and nothing is stored.
	c := newClient(t, st)
	tok := token(t, st, cust.GetId(), false)
	c.req("POST", customerPath(cust.GetId(), "/topups"), tok, map[string]any{"amount": "1"},
		"Idempotency-Key", "late", "Grpc-Timeout", "1n").want(t, 504)
	c.req("GET", "/v1/orders/late", tok, nil).want(t, 404)
}

// The REST handlers through a loopback gRPC connection answer the same.
func TestEndToEndRESTViaLoopback(t *testing.T) {
	t.Parallel()
	st := startStack(t, devstack.Options{Gateway: gateway.Config{RESTViaLoopback: true}})
	c := newClient(t, st)
	admin := token(t, st, 0, true)
	alice := openCustomer(t, c, admin, "Alice", "a")
	tok := token(t, st, alice, false)
	c.req("POST", customerPath(alice, "/topups"), tok, map[string]any{"amount": "1"}, "Idempotency-Key", "t1").want(t, 200)
	r := c.req("POST", customerPath(alice, "/subscriptions"), tok, map[string]any{"amount": "2"}, "Idempotency-Key", "s1").want(t, 422)
	if r.reason() != "INSUFFICIENT_FUNDS" || r.detailOrder()["status"] != "REJECTED" {
		t.Fatalf("rejected via loopback: %s", r.raw)
	}
	c.req("POST", customerPath(alice, "/subscriptions"), tok, map[string]any{"amount": "2"}, "Idempotency-Key", "s1").want(t, 422)
	c.req("POST", customerPath(alice, "/subscriptions"), tok, map[string]any{"amount": "3"}, "Idempotency-Key", "s1").want(t, 409)
	c.req("POST", customerPath(alice, "/subscriptions"), tok, `{"amount": "1", "x": 1}`, "Idempotency-Key", "s2").want(t, 400)
	c.req("GET", customerPath(alice, "/holdings"), "", nil).want(t, 401)
	c.req("GET", customerPath(alice+1, "/holdings"), tok, nil).want(t, 403)
	if h := c.req("GET", customerPath(alice, "/holdings"), tok, nil).want(t, 200); h.str("cash") != "1.00" {
		t.Fatalf("holdings via loopback: %s", h.raw)
	}
}
