package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/gateway/auth"
)

// TestJWTKeys: a gateway given public keys (Config.JWTKeys) accepts an
// identity provider's tokens by key id, beside the shared key or without it.
func TestJWTKeys(t *testing.T) {
	ctx := context.Background()
	svc, err := accounts.NewService(ctx, accounts.Config{Calendar: accounts.NewCalendar(nil), Now: stubClock},
		stubStore{}, stubLedger{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	idp, err := auth.GenerateKey(auth.AlgEdDSA, "idp-1")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := auth.GenerateKey(auth.AlgEdDSA, "idp-0")
	keys, err := auth.NewKeySet(idp.Public())
	if err != nil {
		t.Fatal(err)
	}
	idpTok, _ := idp.Mint(auth.Claims{Subject: "1"}, time.Hour, stubClock())
	unknownTok, _ := other.Mint(auth.Claims{Subject: "1"}, time.Hour, stubClock())
	sharedTok, _ := auth.Mint(stubKey, auth.Claims{Subject: "1"}, time.Hour, stubClock())

	get := func(h http.Handler, tok string) int {
		req := httptest.NewRequest(http.MethodGet, "/v1/customers/1", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w.Code
	}
	for _, c := range []struct {
		name                string
		cfg                 Config
		idp, unknown, share int
	}{
		{"public keys only", Config{JWTKeys: keys}, 200, 401, 401},
		{"both", Config{JWTKey: stubKey, JWTKeys: keys}, 200, 401, 200},
		{"shared key only", Config{JWTKey: stubKey}, 401, 401, 200},
	} {
		c.cfg.Accounts, c.cfg.Registry, c.cfg.Now = svc, prometheus.NewRegistry(), stubClock
		g, err := New(c.cfg)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		h, err := g.httpHandler(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := [3]int{get(h, idpTok), get(h, unknownTok), get(h, sharedTok)}; got != [3]int{c.idp, c.unknown, c.share} {
			t.Errorf("%s: provider, unknown kid, shared key answered %v, want %v", c.name, got, [3]int{c.idp, c.unknown, c.share})
		}
	}
	if _, err := New(Config{Accounts: svc}); err == nil {
		t.Fatal("a gateway without keys")
	}
}
