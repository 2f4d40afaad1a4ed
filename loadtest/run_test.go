package loadtest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeGateway answers like the gateway's REST API, from a rule per request.
type fakeGateway struct {
	mu   sync.Mutex
	keys map[string]int // attempts per Idempotency-Key
	// answer decides the status and body; nil = 200 COMPLETED.
	answer func(w http.ResponseWriter, r *http.Request, attempt int)
	noKey  int // order requests that came without a key
	noAuth int
}

func newFake(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, attempt int)) (*fakeGateway, *httptest.Server) {
	f := &fakeGateway{keys: map[string]int{}, answer: answer}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	key := r.Header.Get("Idempotency-Key")
	f.mu.Lock()
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
		f.noAuth++
	}
	if r.Method == "POST" && key == "" {
		f.noKey++
	}
	f.keys[key]++
	attempt := f.keys[key]
	f.mu.Unlock()
	if f.answer != nil {
		f.answer(w, r, attempt)
		return
	}
	okOrder(w, r)
}

func okOrder(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if r.Method == "GET" {
		_, _ = w.Write([]byte(`{"customer_id":"1","cash":"1.00"}`))
		return
	}
	_, _ = w.Write([]byte(`{"request_id":"x","status":"COMPLETED"}`))
}

type fixedTokens struct{}

func (fixedTokens) Customer(c int64) (string, error) { return "t", nil }

func baseConfig(target string, p Profile) Config {
	cs := make([]int64, 50)
	for i := range cs {
		cs[i] = int64(i + 1)
	}
	return Config{
		Target: target, Profile: p, Customers: cs, Merchants: []int64{1, 2, 3, 4, 5},
		Tokens: fixedTokens{}, Seed: 42, RequestTimeout: 10 * time.Second,
		// Evenly spaced: these tests count arrivals exactly.
		Arrivals: ArrivalsEven,
	}
}

func TestRunOpenLoopCounts(t *testing.T) {
	f, srv := newFake(t, nil)
	cfg := baseConfig(srv.URL, Constant(time.Second, 300))
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	tot := res.Totals
	if tot.Offered != 300 || tot.Sent+tot.Dropped != tot.Offered || tot.Accepted != tot.Sent {
		t.Fatalf("totals %+v: want 300 offered, all sent ones accepted", tot)
	}
	if f.noKey != 0 || f.noAuth != 0 {
		t.Fatalf("%d orders without Idempotency-Key, %d requests without a token", f.noKey, f.noAuth)
	}
	if int64(len(res.Records)) != res.Orders.Offered {
		t.Fatalf("%d records for %d orders", len(res.Records), res.Orders.Offered)
	}
	seen := map[string]bool{}
	for _, r := range res.Records {
		if seen[r.Key] || r.Key == "" || r.Amount <= 0 {
			t.Fatalf("record %+v: key repeated or empty, or no amount", r)
		}
		seen[r.Key] = true
		if (r.Op == OpTransfer && (r.Counterparty == 0 || r.Counterparty == r.Customer)) || (r.Op == OpPay && r.Counterparty == 0) {
			t.Fatalf("record %+v: bad counterparty", r)
		}
	}
	if res.Latency.Count != tot.Sent || len(res.Timeline) == 0 || len(res.Distribution) == 0 {
		t.Fatalf("latency %+v, %d seconds, %d buckets", res.Latency, len(res.Timeline), len(res.Distribution))
	}
	var perSecond, offered int64
	for _, s := range res.Timeline {
		perSecond += s.Latency.Count
		offered += s.Offered
	}
	if perSecond != res.Latency.Count || offered != tot.Offered {
		t.Fatalf("timeline: %d latencies, %d offered; totals %d and %d", perSecond, offered, res.Latency.Count, tot.Offered)
	}
	for _, op := range Ops {
		if res.ByOp[op].Offered == 0 {
			t.Fatalf("no %s in the default mix over 300 requests: %v", op, res.ByOp)
		}
	}
}

func TestRunClassifiesAnswers(t *testing.T) {
	_, srv := newFake(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/subscriptions"):
			w.Header().Set("Retry-After", "1")
			http.Error(w, `{"code":8,"message":"shed"}`, 429)
		case strings.HasSuffix(r.URL.Path, "/payments"):
			http.Error(w, `{"code":9,"message":"insufficient funds"}`, 422)
		case strings.HasSuffix(r.URL.Path, "/transfers"):
			http.Error(w, `{"code":14,"message":"shard unavailable","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"SHARD_FAILING_OVER","domain":"fund.v1"}]}`, 503)
		case strings.HasSuffix(r.URL.Path, "/redemptions"):
			_, _ = w.Write([]byte(`{"status":"REJECTED","reason":"fast_redeem_limit"}`))
		default:
			okOrder(w, r)
		}
	})
	cfg := baseConfig(srv.URL, Constant(time.Second, 200))
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	check := func(op Op, want func(OpResult) int64) {
		t.Helper()
		r := res.ByOp[op]
		if r.Sent == 0 || want(r) != r.Sent {
			t.Fatalf("%s: %+v", op, r.Counts)
		}
	}
	check(OpSubscribe, func(r OpResult) int64 { return r.Shed })
	check(OpPay, func(r OpResult) int64 { return r.Rejected })
	check(OpTransfer, func(r OpResult) int64 { return r.Failed })
	check(OpFastRedeem, func(r OpResult) int64 { return r.Rejected })
	check(OpHoldings, func(r OpResult) int64 { return r.Accepted })
	if res.Codes["429"] != res.ByOp[OpSubscribe].Sent || res.Codes["503"] != res.ByOp[OpTransfer].Sent {
		t.Fatalf("codes %v", res.Codes)
	}
	// A failed order keeps the reason of its answer, so that a fault's
	// window says who failed it; other outcomes keep none.
	for _, r := range res.Records {
		if want := map[bool]string{true: "SHARD_FAILING_OVER"}[r.Op == OpTransfer]; r.Reason != want {
			t.Fatalf("record %+v: reason %q, want %q", r, r.Reason, want)
		}
	}
}

// A transfer to a customer on another shard is acknowledged PENDING (the
// saga's leg 1 committed) and may be read back REFUNDED (the payee's shard
// refused it, the money returned): both are acknowledged orders, counted
// accepted with their status, not refusals or errors.
func TestRunCountsSagaAnswersAsAccepted(t *testing.T) {
	var n sync.Mutex
	i := 0
	_, srv := newFake(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		if !strings.HasSuffix(r.URL.Path, "/transfers") {
			okOrder(w, r)
			return
		}
		n.Lock()
		i++
		pending := i%2 == 0
		n.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if pending {
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write([]byte(`{"request_id":"x","status":"PENDING"}`))
			return
		}
		_, _ = w.Write([]byte(`{"request_id":"x","status":"REFUNDED","reason":"payee_closed"}`))
	})
	cfg := baseConfig(srv.URL, Constant(time.Second, 200))
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	tr := res.ByOp[OpTransfer]
	if tr.Sent == 0 || tr.Accepted != tr.Sent {
		t.Fatalf("transfers: %+v", tr.Counts)
	}
	statuses := map[string]int{}
	for _, r := range res.Records {
		if r.Op == OpTransfer {
			if r.Outcome != Accepted {
				t.Fatalf("transfer %s: outcome %s", r.Key, r.Outcome)
			}
			statuses[r.Status]++
		}
	}
	if statuses["PENDING"] == 0 || statuses["REFUNDED"] == 0 || len(statuses) != 2 {
		t.Fatalf("transfer statuses %v, want PENDING and REFUNDED", statuses)
	}
}

// A timed-out attempt is sent again with the same key, a bounded number of
// times.
func TestRunRetriesTimeoutsWithSameKey(t *testing.T) {
	f, srv := newFake(t, func(w http.ResponseWriter, r *http.Request, attempt int) {
		if r.Method == "POST" && attempt == 1 {
			<-r.Context().Done() // the client gives up on this attempt
			return
		}
		if strings.HasSuffix(r.URL.Path, "/payments") {
			<-r.Context().Done() // never answers
			return
		}
		okOrder(w, r)
	})
	cfg := baseConfig(srv.URL, Constant(time.Second, 40))
	cfg.RequestTimeout = 100 * time.Millisecond
	cfg.TimeoutRetries = 2
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range res.Records {
		want := 2
		if r.Op == OpPay {
			want = 3 // first attempt and both retries, all timed out
		}
		if got := f.keys[r.Key]; got != want {
			t.Fatalf("%s %s: %d attempts, want %d", r.Op, r.Key, got, want)
		}
		if wantOut := map[bool]Outcome{true: Failed, false: Accepted}[r.Op == OpPay]; r.Outcome != wantOut {
			t.Fatalf("%s: %s (%s), want %s", r.Op, r.Outcome, r.Code, wantOut)
		}
		if r.Op == OpPay && r.Code != "timeout" {
			t.Fatalf("pay code %q, want timeout", r.Code)
		}
	}
	if res.Orders.Retries == 0 {
		t.Fatal("no retries counted")
	}
}

// With MaxInFlight requests stuck, the generator keeps its schedule and
// drops (and counts) what it cannot send.
func TestRunDropsBeyondInFlightBound(t *testing.T) {
	release := make(chan struct{})
	_, srv := newFake(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		okOrder(w, r)
	})
	cfg := baseConfig(srv.URL, Constant(time.Second/10, 100)) // 10 requests in 0.1 s
	cfg.MaxInFlight = 2
	cfg.dispatched = func() { close(release) }
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Totals.Offered != 10 || res.Totals.Sent != 2 || res.Totals.Dropped != 8 || res.Totals.Accepted != 2 {
		t.Fatalf("totals %+v: want 10 offered, 2 sent and accepted, 8 dropped", res.Totals)
	}
}

func TestZipfSkewAndHotMerchants(t *testing.T) {
	cs := make([]int64, 1000)
	for i := range cs {
		cs[i] = int64(i + 1)
	}
	ms := []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	cfg := Config{Customers: cs, Merchants: ms, Mix: Mix{OpPay: 1}, Seed: 7, HotMerchants: 3, ZipfSkew: 1.1}
	g := newGenerator(cfg)
	byCustomer, hot := map[int64]int{}, 0
	const n = 20000
	for i := 0; i < n; i++ {
		r := g.next(0)
		byCustomer[r.customer]++
		if r.counterparty <= 3 {
			hot++
		}
	}
	if byCustomer[1] < 10*n/len(cs) {
		t.Fatalf("the busiest customer got %d of %d requests: no skew", byCustomer[1], n)
	}
	if hot < n*7/10 {
		t.Fatalf("hot merchants got %d of %d payments", hot, n)
	}
}

func TestCheckTarget(t *testing.T) {
	for _, ok := range []string{"http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9"} {
		if _, err := CheckTarget(ok, false); err != nil {
			t.Fatalf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"http://10.0.0.1:8080", "http://example.com", "ftp://127.0.0.1"} {
		if _, err := CheckTarget(bad, false); err == nil {
			t.Fatalf("%s accepted", bad)
		}
	}
}

func TestSetupOpensCustomersWithRetries(t *testing.T) {
	var mu sync.Mutex
	nextID := int64(100)
	byKey := map[string]int64{}
	f, srv := newFake(t, func(w http.ResponseWriter, r *http.Request, attempt int) {
		if attempt == 1 && strings.HasSuffix(r.URL.Path, "/topups") {
			http.Error(w, `{"code":8}`, 429) // every top-up is shed once
			return
		}
		if r.URL.Path == "/v1/customers" {
			mu.Lock()
			key := r.Header.Get("Idempotency-Key")
			id, ok := byKey[key]
			if !ok {
				nextID++
				id = nextID
				byKey[key] = id
			}
			mu.Unlock()
			_ = json.NewEncoder(w).Encode(map[string]any{"id": id, "name": "x", "status": "ACTIVE"})
			return
		}
		okOrder(w, r)
	})
	cs, ms, err := Setup(context.Background(), SetupConfig{
		Target: srv.URL, AdminToken: "a", Tokens: fixedTokens{}, Customers: 40, Balance: 100_000,
		Subscribe: 50_000, Subscribers: 30, Merchants: 3, Parallelism: 4, RunID: "s1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 40 || len(ms) != 3 {
		t.Fatalf("%d customers, %d merchants", len(cs), len(ms))
	}
	seen := map[int64]bool{}
	for _, c := range cs {
		if c <= 100 || seen[c] {
			t.Fatalf("customer ids %v", cs)
		}
		seen[c] = true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.keys["s1-c0-t"] != 2 || f.keys["s1-c0-s"] != 1 {
		t.Fatalf("top-up attempts %d, subscription attempts %d", f.keys["s1-c0-t"], f.keys["s1-c0-s"])
	}
	if f.keys["s1-c29-s"] != 1 || f.keys["s1-c30-s"] != 0 || f.keys["s1-c39-t"] != 2 {
		t.Fatalf("only the first 30 of 40 subscribe: %d %d %d", f.keys["s1-c29-s"], f.keys["s1-c30-s"], f.keys["s1-c39-t"])
	}
}
