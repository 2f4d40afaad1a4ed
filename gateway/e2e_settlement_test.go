package gateway_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/fundplatform/fund/internal/devstack"
)

// TestEndToEndSettlementRefusals: over the admin REST API, each way a
// settlement is refused is a 4xx with its own reason and a message naming
// the cause, and the dates after it settle: income on a fund nobody holds
// shares of (nothing recorded, so the date is not found), a date before
// its cut-off, a gap, a settled date asked with other income.
func TestEndToEndSettlementRefusals(t *testing.T) {
	t.Parallel()
	st := startStack(t, devstack.Options{Settle: &devstack.SettleOptions{FileDir: t.TempDir()}})
	c := newClient(t, st)
	admin := token(t, st, 0, true)
	n := 0
	settle := func(date, income string) reply {
		n++
		return c.req("POST", "/v1/admin/settlements", admin, map[string]any{"date": date, "income": income},
			"Idempotency-Key", "settle-"+strconv.Itoa(n))
	}
	refused := func(what string, r reply, code int, reason string, says ...string) {
		t.Helper()
		if r.code != code || r.reason() != reason {
			t.Fatalf("%s: %d %s, want %d %s: %s", what, r.code, r.reason(), code, reason, r.raw)
		}
		for _, s := range says {
			if !strings.Contains(r.str("message"), s) {
				t.Errorf("%s: message %q does not say %q", what, r.str("message"), s)
			}
		}
		t.Logf("%s: %d %s: %s", what, r.code, r.reason(), r.str("message"))
	}

	refused("income, no holders", settle("2026-11-10", "5.00"), 422, "SETTLEMENT_NO_ELIGIBLE_SHARES",
		"2026-11-10 has income 5.00 to distribute but no eligible shares", "--date 2026-11-10 --income 0.00")
	c.req("GET", "/v1/admin/settlements/2026-11-10", admin, nil).want(t, 404)
	refused("too early", settle("2999-01-01", "0"), 422, "SETTLEMENT_TOO_EARLY",
		"2999-01-01 cannot settle before its cut-off 2999-01-01 15:00 CST has passed")
	if r := settle("2026-11-10", "0").want(t, 200); r.str("status") != "COMPLETED" {
		t.Fatalf("income 0 on a fund without holders: %s", r.raw)
	}
	refused("gap", settle("2026-11-12", "0"), 422, "SETTLEMENT_OUT_OF_ORDER",
		"2026-11-12 cannot be settled before 2026-11-11", "the last settled is 2026-11-10")
	refused("other income", settle("2026-11-10", "1.00"), 409, "SETTLEMENT_RUN_CONFLICT",
		"2026-11-10 is settled already, with income 0.00", "income 1.00 asked")
	settle("2026-11-11", "0").want(t, 200)
	settle("2026-11-12", "0").want(t, 200)
	if r := c.req("GET", "/v1/admin/settlements/2026-11-12", admin, nil).want(t, 200); r.str("status") != "COMPLETED" {
		t.Fatalf("the 12th: %s", r.raw)
	}
}
