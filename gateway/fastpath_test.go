package gateway

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/metadata"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/gateway/auth"
	"github.com/fundplatform/fund/internal/testseed"
	"github.com/fundplatform/fund/ledger"
)

// stubStore is an accounts.Store of fixed customers that keeps nothing:
// customer 13 is frozen, 404 does not exist, every other positive id is
// active. Only what the order calls use is implemented.
type stubStore struct {
	accounts.Store
}

func (stubStore) PlaceOrder(ctx context.Context, o *accounts.Order, parties []accounts.CustomerID,
	apply func(ctx context.Context, parties []accounts.Customer) error) (accounts.Order, bool, error) {
	ps := make([]accounts.Customer, len(parties))
	for i, id := range parties {
		if id == 404 {
			return accounts.Order{}, false, accounts.ErrCustomerNotFound
		}
		ps[i] = accounts.Customer{ID: id, Status: accounts.StatusActive}
		if id == 13 {
			ps[i].Status = accounts.StatusFrozen
		}
	}
	if err := apply(ctx, ps); err != nil {
		return accounts.Order{}, false, err
	}
	return *o, false, nil
}

func (stubStore) Customer(_ context.Context, id accounts.CustomerID) (accounts.Customer, error) {
	if id == 404 {
		return accounts.Customer{}, accounts.ErrCustomerNotFound
	}
	return accounts.Customer{ID: id, RequestID: "open", Name: "Stub", Status: accounts.StatusActive, CreatedAt: stubClock()}, nil
}

// stubLedger applies everything except a chain whose first amount exceeds
// 1,000,000.00 (refused for funds) or a payment to merchant 404.
type stubLedger struct{}

func (stubLedger) CreateAccounts(_ context.Context, as []ledger.Account) ([]ledger.AccountResult, error) {
	return make([]ledger.AccountResult, len(as)), nil
}

func (stubLedger) CreateTransfers(_ context.Context, ts []ledger.Transfer) ([]ledger.TransferResult, error) {
	res := make([]ledger.TransferResult, len(ts))
	for i, t := range ts {
		switch {
		case t.Amount > 1_000_000_00 && i == len(ts)-1:
			res[i].Result = ledger.ResultExceedsCredits
		case t.CreditAccountID == accounts.MerchantAccountOn(404, 0, 1):
			res[i].Result = ledger.ResultCreditAccountNotFound
		}
	}
	// A linked chain fails as a whole.
	for i := range res {
		if res[i].Result != ledger.ResultOK {
			for j := range res {
				if j != i {
					res[j].Result = ledger.ResultLinkedEventFailed
				}
			}
			break
		}
	}
	return res, nil
}

func (stubLedger) CloseAccounts(_ context.Context, ids []ledger.AccountID) ([]ledger.AccountResult, error) {
	return make([]ledger.AccountResult, len(ids)), nil
}

func (stubLedger) LookupAccounts(_ context.Context, ids []ledger.AccountID) ([]ledger.Account, error) {
	as := make([]ledger.Account, len(ids))
	for i, id := range ids {
		as[i].ID = id
	}
	return as, nil
}

var stubKey = bytes.Repeat([]byte("k"), 32)

// stubClock is a fixed time, so that two gateways answer alike.
func stubClock() time.Time { return time.Date(2026, 3, 4, 5, 6, 7, 891_234_000, time.UTC) }

// stubGateway is a gateway on the stub store and ledger with its own
// registry; muxOnly turns the direct order path off.
func stubGateway(t testing.TB, muxOnly bool) (*Gateway, http.Handler, *prometheus.Registry) {
	t.Helper()
	ctx := context.Background()
	svc, err := accounts.NewService(ctx, accounts.Config{Calendar: accounts.NewCalendar(nil), Now: stubClock},
		stubStore{}, stubLedger{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	g, err := New(Config{JWTKey: stubKey, Accounts: svc, Registry: reg, Now: stubClock, RESTMuxOnly: muxOnly,
		RatePerCustomer: 1e9, RateBurst: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	h, err := g.httpHandler(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	return g, h, reg
}

func stubToken(t testing.TB, subject string, scopes ...string) string {
	tok, err := auth.Mint(stubKey, auth.Claims{Subject: subject, Scopes: scopes}, time.Hour, stubClock())
	if err != nil {
		t.Fatal(err)
	}
	return "Bearer " + tok
}

// randRequest is a request near the order calls: mostly well formed (a
// customer's own token, a valid body), often not, now and then with what
// makes the direct path step aside. tokens[0] is customer 1's; the others
// anything.
func randRequest(t testing.TB, r *rand.Rand, tokens []string) *http.Request {
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	often := func() bool { return r.IntN(10) < 8 }
	id := "1"
	if !often() {
		id = pick("2", "13", "404", "0", "007", "-1", "+1", "1x", "99999999999999999999", "123456789012345678", "%31", "")
	}
	kind := pick("topups", "subscriptions", "withdrawals", "redemptions", "transfers", "payments")
	if r.IntN(10) == 0 {
		kind = pick("subscriptions/", "holdings", "nope", "")
	}
	path := "/v1/customers/" + id + "/" + kind
	switch r.IntN(25) {
	case 0:
		path = pick("/v1/customers/1", "/v1/customers", "/v1/admin/customers/1:freeze", "/v1/orders/k1", "/v1/customers/1/subscriptions:x")
	case 1:
		path += "?x=1"
	}
	method := http.MethodPost
	if r.IntN(15) == 0 {
		method = pick(http.MethodGet, http.MethodPut, http.MethodDelete)
	}
	body := map[string]string{
		"redemptions": pick(`{"amount":"5","mode":"FAST"}`, `{"amount":"5","mode":"STANDARD"}`),
		"transfers":   `{"amount":"1","to_customer_id":"2"}`,
		"payments":    `{"amount":"1","merchant_id":5}`,
	}[kind]
	if body == "" {
		body = pick(`{"amount":"1.00"}`, `{"amount":"0.01"}`)
	}
	if !often() {
		body = pick("", " ", `{"amount":"0.001"}`, `{"amount":"1.00","request_id":"other"}`, `{"amount":"9999999.00"}`,
			`{"amount":"5","mode":"SLOW"}`, `{"amount":"1","to_customer_id":"404"}`, `{"amount":"1","merchant_id":"404"}`,
			`{"amount":"1","to_customer_id":"1"}`, `{"amount":"1","customer_id":"999"}`, `{"bogus":1}`, `{"amount":`, `[]`,
			`null`, `{"amount":"1"} x`, `{"amount":"`+strings.Repeat("9", 20<<10)+`"}`, " \u00a0 ", `{"amount":"1","amount":"2"}`)
	}
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if r.IntN(10) == 0 {
		req.ContentLength = -1 // as a chunked body arrives
	}
	if often() {
		req.Header.Set("Content-Type", "application/json")
	} else if r.IntN(3) != 0 {
		req.Header.Set("Content-Type", pick("application/json; charset=utf-8", "text/plain", "bad/", "Application/JSON"))
	}
	if often() {
		req.Header.Set("Authorization", tokens[0])
	} else {
		for n := r.IntN(3); n > 0; n-- {
			req.Header.Add("Authorization", pick(tokens...))
		}
	}
	if often() {
		req.Header.Set("Idempotency-Key", pick("k1", "k2"))
	} else {
		for n := r.IntN(3); n > 0; n-- {
			req.Header.Add("Idempotency-Key", pick("k1", "k2", " k1 ", "", "ключ", "k\x01"))
		}
	}
	if r.IntN(10) == 0 {
		req.Header.Set(pick("Grpc-Timeout", "Te", "X-HTTP-Method-Override", "X-Forwarded-For", "X-Forwarded-Host", "Accept"),
			pick("1S", "trailers", "GET", "10.0.0.1", "example.com", "*", "bad\x7f"))
	}
	req.RemoteAddr = "192.0.2.1:1234"
	if r.IntN(10) == 0 {
		req.RemoteAddr = pick("[::1]:5", "", "nonsense")
	}
	if r.IntN(10) == 0 {
		req.Host = pick("", "gw.example", "gw\x01")
	}
	return req
}

// TestFastPathMatchesMux: every request gets the same status, headers and
// body from the gateway with the direct order path as from the one with the
// mux only, and the two count the same requests by route and status.
func TestFastPathMatchesMux(t *testing.T) {
	r := rand.New(rand.NewPCG(testseed.Seed(t), 1))
	_, fast, fastReg := stubGateway(t, false)
	_, mux, muxReg := stubGateway(t, true)
	tokens := []string{stubToken(t, "1"), stubToken(t, "2"), stubToken(t, "13"), stubToken(t, "", auth.ScopeAdmin),
		"Bearer nonsense", "", "Bearer", "Bearer ключ"}
	const n = 5000
	codes := map[int]int{}
	for i := range n {
		req := randRequest(t, r, tokens)
		req2 := req.Clone(req.Context())
		raw := new(bytes.Buffer)
		_, _ = raw.ReadFrom(req.Body)
		req.Body = httpBody(raw.Bytes())
		req2.Body = httpBody(raw.Bytes())
		got, want := httptest.NewRecorder(), httptest.NewRecorder()
		fast.ServeHTTP(got, req)
		mux.ServeHTTP(want, req2)
		if got.Code != want.Code || !reflect.DeepEqual(got.Header(), want.Header()) || !bytes.Equal(got.Body.Bytes(), want.Body.Bytes()) {
			t.Fatalf("request %d %s %s %q headers %v:\n got  %d %v %s\n want %d %v %s", i, req.Method, req.URL, raw.Bytes(), req.Header,
				got.Code, got.Header(), got.Body.Bytes(), want.Code, want.Header(), want.Body.Bytes())
		}
		codes[got.Code]++
	}
	t.Logf("%d requests, by status: %v", n, codes)
	if g, w := requestCounts(t, fastReg), requestCounts(t, muxReg); !reflect.DeepEqual(g, w) {
		t.Fatalf("fund_gateway_requests_total:\n got  %v\n want %v", g, w)
	}
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

func httpBody(b []byte) readCloser { return readCloser{bytes.NewReader(b)} }

// requestCounts are the series of fund_gateway_requests_total and, for the
// duration histogram, the sample count per route.
func requestCounts(t *testing.T, reg *prometheus.Registry) []string {
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			switch f.GetName() {
			case "fund_gateway_requests_total":
				out = append(out, fmt.Sprintf("%s%v %v", f.GetName(), labels, m.GetCounter().GetValue()))
			case "fund_gateway_request_duration_seconds":
				out = append(out, fmt.Sprintf("%s%v %v", f.GetName(), labels, m.GetHistogram().GetSampleCount()))
			case "fund_gateway_shed_total":
				out = append(out, fmt.Sprintf("%s%v %v", f.GetName(), labels, m.GetCounter().GetValue()))
			}
		}
	}
	sort.Strings(out)
	return out
}

// TestIncomingMetadataMatchesGrpcGateway: the direct path's metadata is
// grpc-gateway's, header by header.
func TestIncomingMetadataMatchesGrpcGateway(t *testing.T) {
	r := rand.New(rand.NewPCG(testseed.Seed(t), 2))
	mux := runtime.NewServeMux(runtime.WithIncomingHeaderMatcher(headerMatcher))
	tokens := []string{"Bearer a", "Bearer ключ", "", "x\x7f"}
	for i := range 2000 {
		req := randRequest(t, r, tokens)
		if r.IntN(3) == 0 {
			req.Header.Add("X-Forwarded-For", []string{"10.0.0.1", "10.0.0.2, 10.0.0.3", "bad\x01"}[r.IntN(3)])
		}
		if r.IntN(3) == 0 {
			req.Header.Set("X-Forwarded-Host", []string{"", "a.example", "bad\x01"}[r.IntN(3)])
		}
		ctx, err := runtime.AnnotateIncomingContext(context.Background(), mux, req, "/fund.v1.FundService/Subscribe")
		if err != nil {
			continue // the direct path leaves such requests (a Grpc-Timeout it cannot read) to the mux
		}
		want, _ := metadata.FromIncomingContext(ctx)
		got := incomingMetadata(req)
		if len(want) == 0 && len(got) == 0 {
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("request %d headers %v host %q remote %q:\n got  %v\n want %v", i, req.Header, req.Host, req.RemoteAddr, got, want)
		}
	}
}

// BenchmarkHandlerOrder measures the gateway's own cost of a subscription
// (in process, no network, the stub store and ledger): the handler with
// the direct order path and with the mux only. Estimate: the direct path
// saves the mux's route search, two contexts, the metadata and a marshaler
// lookup, some microseconds of a few tens.
func BenchmarkHandlerOrder(b *testing.B) {
	tok := stubToken(b, "1")
	body := []byte(`{"amount":"0.01"}`)
	for _, mode := range []struct {
		name    string
		muxOnly bool
	}{{"direct", false}, {"mux", true}} {
		b.Run(mode.name, func(b *testing.B) {
			_, h, _ := stubGateway(b, mode.muxOnly)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				req := httptest.NewRequest(http.MethodPost, "/v1/customers/1/subscriptions", nil)
				req.Body, req.ContentLength = httpBody(body), int64(len(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", tok)
				req.Header.Set("Idempotency-Key", "k"+fmt.Sprint(i))
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
	}
}
