package gateway_test

import (
	"slices"
	"testing"
	"time"

	"github.com/fundplatform/fund/internal/clock"
	"github.com/fundplatform/fund/internal/clock/pgclock"
	"github.com/fundplatform/fund/internal/devstack"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
)

// TestTestClock drives the clock calls of a sandbox over REST: what GET
// shows, moves to an instant and by a duration, a retried move applied
// once, the refusals (backwards, malformed, a customer's token), and that
// business time is the clock's everywhere: an order's trade date, and
// settlement's cut-off check.
func TestTestClock(t *testing.T) {
	cst := time.FixedZone("CST", 8*3600)
	st := startStack(t, devstack.Options{Clock: clock.NewTest(time.Date(2026, 11, 13, 14, 0, 0, 0, cst)), // a Friday
		Settle: &devstack.SettleOptions{FileDir: t.TempDir()}})
	c := newClient(t, st)
	admin := token(t, st, 0, true)

	r := c.req("GET", "/v1/admin/clock", admin, nil).want(t, 200)
	for k, want := range map[string]any{"now": "2026-11-13T14:00:00+08:00", "test_clock": true, "business_date": "2026-11-13",
		"trade_date": "2026-11-13", "next_cutoff": "2026-11-13T15:00:00+08:00", "settleable_through": "2026-11-12"} {
		if r.body[k] != want {
			t.Errorf("GET clock: %s = %v, want %v (%s)", k, r.body[k], want, r.raw)
		}
	}
	// An order reads the same clock: before Friday's cut-off it is
	// Friday's, and confirms on Monday.
	alice := openCustomer(t, c, admin, "Alice", "open-alice")
	c.req("POST", customerPath(alice, "/topups"), admin, map[string]any{"amount": "100.00"}, "Idempotency-Key", "t1").want(t, 200)
	r = c.req("POST", customerPath(alice, "/subscriptions"), admin, map[string]any{"amount": "60.00"}, "Idempotency-Key", "s1").want(t, 200)
	if r.str("trade_date") != "2026-11-13" || r.str("confirm_date") != "2026-11-16" {
		t.Errorf("subscription on Friday 14:00: %s", r.raw)
	}
	// Settlement reads it too: Friday cannot settle before its cut-off.
	settle := func(date, key string) reply {
		return c.req("POST", "/v1/admin/settlements", admin, map[string]any{"date": date, "income": "0.00"}, "Idempotency-Key", key)
	}
	if r = settle("2026-11-13", "early").want(t, 422); r.reason() != "SETTLEMENT_TOO_EARLY" {
		t.Errorf("settle before the cut-off: %s", r.raw)
	}

	// by, retried with its key: the clock moves once.
	for range 2 {
		r = c.req("POST", "/v1/admin/clock:advance", admin, map[string]any{"by": "36h"}, "Idempotency-Key", "by-36h").want(t, 200)
		if r.str("now") != "2026-11-15T02:00:00+08:00" || r.str("trade_date") != "2026-11-16" {
			t.Fatalf("advance by 36h: %s", r.raw)
		}
	}
	// The key with another move is refused.
	if r = c.req("POST", "/v1/admin/clock:advance", admin, map[string]any{"by": "1h"}, "Idempotency-Key", "by-36h").want(t, 409); r.reason() != "IDEMPOTENCY_CONFLICT" {
		t.Errorf("key reused for another move: %s", r.raw)
	}
	// Back in time: 400 naming to; the clock stays.
	r = c.req("POST", "/v1/admin/clock:advance", admin, map[string]any{"to": "2026-11-14T00:00:00+08:00"}, "Idempotency-Key", "back").want(t, 400)
	if r.reason() != "CLOCK_BACKWARDS" || !slices.Equal(r.fieldViolations(), []string{"to"}) {
		t.Errorf("backwards: %s", r.raw)
	}
	for _, bad := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"by": "-1h"}, "by"},
		{map[string]any{"by": "a day"}, "by"},
		{map[string]any{"to": "tomorrow"}, "to"},
		{map[string]any{}, "to"},
	} {
		r = c.req("POST", "/v1/admin/clock:advance", admin, bad.body, "Idempotency-Key", "bad").want(t, 400)
		if r.reason() != "INVALID_ARGUMENT" || !slices.Contains(r.fieldViolations(), bad.field) {
			t.Errorf("advance %v: %s", bad.body, r.raw)
		}
	}
	if r = c.req("POST", "/v1/admin/clock:advance", admin, map[string]any{"by": "1h"}).want(t, 400); !slices.Contains(r.fieldViolations(), "request_id") {
		t.Errorf("advance without a key: %s", r.raw)
	}
	// Admin scope only.
	if r = c.req("GET", "/v1/admin/clock", token(t, st, alice, false), nil).want(t, 403); r.reason() != "FORBIDDEN" {
		t.Errorf("customer's token: %s", r.raw)
	}

	// To an instant, twice (idempotent by nature), past Monday's cut-off:
	// the dates settle one after another, with no income on the days that
	// have no shares, and Monday confirms the subscription.
	for _, key := range []string{"to-mon", "to-mon-again"} {
		r = c.req("POST", "/v1/admin/clock:advance", admin, map[string]any{"to": "2026-11-16T15:00:00+08:00"}, "Idempotency-Key", key).want(t, 200)
		if r.str("settleable_through") != "2026-11-16" {
			t.Fatalf("advance to Monday 15:00: %s", r.raw)
		}
	}
	for _, d := range []string{"2026-11-13", "2026-11-14", "2026-11-15", "2026-11-16"} {
		if r = settle(d, "settle-"+d).want(t, 200); r.str("status") != "COMPLETED" {
			t.Fatalf("settle %s: %s", d, r.raw)
		}
	}
	if r.str("total_shares") != "60.00" {
		t.Errorf("Monday's run: %s", r.raw)
	}
	if r = settle("2026-11-17", "settle-tue").want(t, 422); r.reason() != "SETTLEMENT_TOO_EARLY" {
		t.Errorf("Tuesday before its cut-off: %s", r.raw)
	}
}

// TestNoTestClock: a process on the wall clock shows it and refuses to
// move it.
func TestNoTestClock(t *testing.T) {
	st := startStack(t, devstack.Options{})
	c := newClient(t, st)
	admin := token(t, st, 0, true)
	r := c.req("GET", "/v1/admin/clock", admin, nil).want(t, 200)
	now, err := time.Parse(time.RFC3339, r.str("now"))
	if err != nil || r.body["test_clock"] != nil && r.body["test_clock"] != false || time.Since(now).Abs() > time.Minute {
		t.Errorf("GET clock on the wall clock: %s", r.raw)
	}
	if r = c.req("POST", "/v1/admin/clock:advance", admin, map[string]any{"by": "1h"}, "Idempotency-Key", "k").want(t, 404); r.reason() != "TEST_CLOCK_DISABLED" {
		t.Errorf("advance without a test clock: %s", r.raw)
	}
}

// TestSharedTestClock: with a clock that several processes share (a
// rehearsal cluster's, pgclock), GET shows a move another process made at
// once, a move retried through another process applies once, and a
// request id reused for another move or a move back is refused as on a
// sandbox.
func TestSharedTestClock(t *testing.T) {
	cst := time.FixedZone("CST", 8*3600)
	clockDSN := pgtest.NewDatabase(t)
	open := func() *pgclock.Clock {
		c, err := pgclock.Open(t.Context(), pgclock.Config{DSN: clockDSN, Start: time.Date(2026, 11, 9, 10, 0, 0, 0, cst),
			RefreshEvery: time.Hour}) // only Refresh reads: the test sees what reads fresh
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	mine, other := open(), open()
	st := startStack(t, devstack.Options{Clock: mine})
	c := newClient(t, st)
	admin := token(t, st, 0, true)

	r := c.req("POST", "/v1/admin/clock:advance", admin, map[string]any{"by": "24h"}, "Idempotency-Key", "day-2").want(t, 200)
	if r.str("now") != "2026-11-10T10:00:00+08:00" {
		t.Fatalf("advance by 24h: %s", r.raw)
	}
	// The same move through the other process: the first result, no move.
	if got, err := other.AdvanceOnce(t.Context(), "day-2", 24*time.Hour); err != nil || !got.Equal(time.Date(2026, 11, 10, 10, 0, 0, 0, cst)) {
		t.Fatalf("the move retried elsewhere: %s, %v", got, err)
	}
	// A move by the other process shows at once.
	if _, err := other.AdvanceOnce(t.Context(), "plus-1h", time.Hour); err != nil {
		t.Fatal(err)
	}
	if r = c.req("GET", "/v1/admin/clock", admin, nil).want(t, 200); r.str("now") != "2026-11-10T11:00:00+08:00" || r.body["test_clock"] != true {
		t.Errorf("GET after the other's move: %s", r.raw)
	}
	if r = c.req("POST", "/v1/admin/clock:advance", admin, map[string]any{"by": "2h"}, "Idempotency-Key", "plus-1h").want(t, 409); r.reason() != "IDEMPOTENCY_CONFLICT" {
		t.Errorf("the other's key reused for another move: %s", r.raw)
	}
	r = c.req("POST", "/v1/admin/clock:advance", admin, map[string]any{"to": "2026-11-10T10:30:00+08:00"}, "Idempotency-Key", "back").want(t, 400)
	if r.reason() != "CLOCK_BACKWARDS" || !slices.Equal(r.fieldViolations(), []string{"to"}) {
		t.Errorf("backwards: %s", r.raw)
	}
}
