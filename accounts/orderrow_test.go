package accounts_test

import (
	"errors"
	"testing"
	"time"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/ledger"
)

// An order row survives its encoding, dates and shortage rule included,
// and the rule gives each outcome its status (or no row).
func TestOrderRowEncoding(t *testing.T) {
	r := accounts.OrderRow{
		Order: accounts.Order{CustomerID: 42, RequestID: "req-1", Kind: accounts.KindFastRedeem, Amount: 12_345,
			Counterparty: 7, TradeDate: time.Date(2026, 11, 18, 0, 0, 0, 0, time.UTC),
			CreatedAt: time.Date(2026, 11, 18, 2, 3, 4, 5000, time.UTC)},
		First: 1, Shortage: map[int]string{0: "insufficient_funds", 1: "fast_redeem_limit"},
	}
	got, err := accounts.DecodeOrderRow(r.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if got.Order != r.Order || got.First != 1 || got.Pending || len(got.Shortage) != 2 || got.Shortage[1] != "fast_redeem_limit" {
		t.Fatalf("decoded %+v, want %+v", got, r)
	}
	if _, err := accounts.DecodeOrderRow(r.Encode()[:10]); !errors.Is(err, accounts.ErrBadOrderRow) {
		t.Fatalf("truncated: %v, want ErrBadOrderRow", err)
	}
	res := func(rs ...ledger.Result) []ledger.TransferResult {
		out := make([]ledger.TransferResult, len(rs))
		for i, x := range rs {
			out[i].Result = x
		}
		return out
	}
	for _, tc := range []struct {
		res    []ledger.TransferResult
		status accounts.OrderStatus
		reason string
		err    error
	}{
		{res(ledger.ResultExists, ledger.ResultOK, ledger.ResultOK), accounts.OrderCompleted, "", nil},
		{res(ledger.ResultOK, ledger.ResultExists, ledger.ResultExists), accounts.OrderCompleted, "", nil},
		{res(ledger.ResultOK, ledger.ResultLinkedEventFailed, ledger.ResultExceedsCredits), accounts.OrderRejected, "fast_redeem_limit", nil},
		{res(ledger.ResultOK, ledger.ResultExistsWithDifferentFields, ledger.ResultOK), "", "", accounts.ErrIdempotencyConflict},
		{res(ledger.ResultOK, ledger.ResultDebitAccountClosed, ledger.ResultLinkedEventFailed), "", "", accounts.ErrCustomerClosed},
		{res(ledger.ResultOK), "", "", accounts.ErrLedger},
	} {
		st, reason, err := got.Outcome(tc.res)
		if st != tc.status || reason != tc.reason || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("outcome of %v: %q %q %v, want %q %q %v", tc.res, st, reason, err, tc.status, tc.reason, tc.err)
		}
	}
}
