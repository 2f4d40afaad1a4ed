package gateway_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fundplatform/fund/gateway"
	"github.com/fundplatform/fund/internal/devstack"
	"github.com/fundplatform/fund/internal/localpg"
)

// recoverTimeout bounds the wait for the stack to serve again once its
// database is back (a lease to take again, pools to reconnect).
const recoverTimeout = time.Minute

// TestEndToEndDatabaseDown: the stack's database refuses connections and
// every session of it is terminated, which is what an outage or a restart
// looks like from the pools. Reads, orders and admin calls are answered 503
// (or 504) with Retry-After and a documented reason, never 500, and none
// leaks the driver's text; once the database is back, the stack serves
// again and nothing the refused orders asked for was applied.
func TestEndToEndDatabaseDown(t *testing.T) {
	t.Parallel()
	st := startStack(t, devstack.Options{})
	c := newClient(t, st)
	admin := token(t, st, 0, true)
	alice := openCustomer(t, c, admin, "Alice", "a")
	tok := token(t, st, alice, false)
	c.req("POST", customerPath(alice, "/topups"), tok, map[string]any{"amount": "10"}, "Idempotency-Key", "t1").want(t, 200)

	allow := databaseSwitch(t, st.DSN)
	allow(false)
	// Registered after the stack's own clean-up, so it runs before the
	// stack stops.
	t.Cleanup(func() { allow(true) })

	documented := map[string]bool{}
	for _, r := range gateway.Reasons() {
		documented[r.Reason] = true
	}
	for i, rq := range []struct {
		method, path, tok string
		body              any
	}{
		{"GET", customerPath(alice, "/holdings"), tok, nil},
		{"GET", customerPath(alice, "/transactions"), tok, nil},
		{"GET", "/v1/orders/t1", tok, nil},
		{"POST", customerPath(alice, "/subscriptions"), tok, map[string]any{"amount": "1"}},
		{"POST", customerPath(alice, "/withdrawals"), tok, map[string]any{"amount": "1"}},
		{"POST", "/v1/customers", admin, map[string]any{"name": "Bob"}},
		{"POST", "/v1/admin/customers/" + strconv.FormatInt(alice, 10) + ":freeze", admin, map[string]any{}},
	} {
		name := rq.method + " " + rq.path
		r := c.req(rq.method, rq.path, rq.tok, rq.body, "Idempotency-Key", "down-"+strconv.Itoa(i))
		if r.code != 503 && r.code != 504 {
			t.Errorf("%s with the database away: %d, want 503 or 504: %s", name, r.code, r.raw)
			continue
		}
		if n, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || n < 1 {
			t.Errorf("%s: Retry-After %q", name, r.header.Get("Retry-After"))
		}
		if !documented[r.reason()] {
			t.Errorf("%s: reason %q is not documented: %s", name, r.reason(), r.raw)
		}
		for _, leak := range []string{"SQLSTATE", "dial tcp", "failed to connect", "pgx", "pgconn"} {
			if strings.Contains(r.raw, leak) {
				t.Errorf("%s: the answer carries %q: %s", name, leak, r.raw)
			}
		}
	}

	allow(true)
	deadline := time.Now().Add(recoverTimeout)
	for {
		r := c.req("GET", customerPath(alice, "/holdings"), tok, nil)
		if r.code == 200 {
			if r.str("cash") != "10.00" || r.str("shares_pending") != "0.00" {
				t.Fatalf("holdings after the outage: %s", r.raw)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stack does not serve %v after its database came back: %d %s", recoverTimeout, r.code, r.raw)
		}
		time.Sleep(200 * time.Millisecond) // polling for recovery, not a timing assertion
	}
}

// databaseSwitch returns a function that lets connections to dsn's
// database in or, turning them away, also terminates every session of it.
// It acts as the database's operator would, through the server the tests
// run on.
func databaseSwitch(t *testing.T, dsn string) func(allow bool) {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, os.Getenv(localpg.EnvDSN))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	name := cfg.Database
	return func(allow bool) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		sql := fmt.Sprintf(`ALTER DATABASE %s ALLOW_CONNECTIONS %t`, pgx.Identifier{name}.Sanitize(), allow)
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
		if allow {
			return
		}
		if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, name); err != nil {
			t.Fatal(err)
		}
	}
}
