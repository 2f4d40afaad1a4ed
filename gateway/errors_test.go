package gateway

import (
	"fmt"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"

	"github.com/fundplatform/fund/settlement"
)

// Every settlement error that can reach the admin API has its own reason
// and a 4xx, wrapped as the runner wraps it; none passes for another
// domain's error.
func TestSettlementErrorsHaveTheirOwnRows(t *testing.T) {
	seen := map[string]error{}
	for _, tc := range []struct {
		err    error
		http   int
		reason string
		field  string
	}{
		{settlement.ErrInvalidDate, 400, "SETTLEMENT_INVALID_DATE", "date"},
		{settlement.ErrIncomeForm, 400, "SETTLEMENT_INCOME_FORM", "income"},
		{settlement.ErrInvalidIncome, 400, "SETTLEMENT_INVALID_INCOME", "income"},
		{settlement.ErrIncomeOverflow, 400, "SETTLEMENT_INCOME_OVERFLOW", "income"},
		{settlement.ErrRunConflict, 409, "SETTLEMENT_RUN_CONFLICT", ""},
		{settlement.ErrTooEarly, 422, "SETTLEMENT_TOO_EARLY", ""},
		{settlement.ErrOutOfOrder, 422, "SETTLEMENT_OUT_OF_ORDER", ""},
		{settlement.ErrNoShares, 422, "SETTLEMENT_NO_ELIGIBLE_SHARES", ""},
		{settlement.ErrShardBusy, 422, "SETTLEMENT_SHARD_BUSY", ""},
		{settlement.ErrShardCount, 422, "SETTLEMENT_SHARD_COUNT", ""},
	} {
		st := status.Convert(statusOf(fmt.Errorf("2026-11-11: %w", tc.err), nil))
		if got := httpStatus(st.Code()); got != tc.http {
			t.Errorf("%v: HTTP %d, want %d", tc.err, got, tc.http)
		}
		if got := reasonOf(st); got != tc.reason {
			t.Errorf("%v: reason %q, want %q", tc.err, got, tc.reason)
		}
		if prev, ok := seen[tc.reason]; ok {
			t.Errorf("%v and %v share the reason %s", prev, tc.err, tc.reason)
		}
		seen[tc.reason] = tc.err
		if tc.field != "" && !hasFieldViolation(st, tc.field) {
			t.Errorf("%v: no field violation for %s: %v", tc.err, tc.field, st.Details())
		}
	}
}

func reasonOf(st *status.Status) string {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}
