package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/fundplatform/fund/settlement"
)

// try runs a date the way settle does, returning the run's error.
func (w *world) try(r *settlement.Runner, in settlement.Input) error {
	w.t.Helper()
	w.stopLedger()
	defer w.startLedger()
	if r == nil {
		r = w.runner
	}
	_, err := r.Run(context.Background(), in, nil)
	return err
}

// refused checks that err is kind with a message naming each of says.
func refused(t *testing.T, what string, err, kind error, says ...string) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("%s: %v, want %v", what, err, kind)
	}
	var r *settlement.Refusal
	if !errors.As(err, &r) {
		t.Errorf("%s: %T is not a *settlement.Refusal", what, err)
	}
	for _, s := range says {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%s: %q does not say %q", what, err, s)
		}
	}
	t.Logf("%s: %v", what, err)
}

// status returns a date's run state.
func (w *world) status(date string) (settlement.RunState, bool) {
	w.t.Helper()
	st, ok, err := w.runner.Status(context.Background(), day(date))
	if err != nil {
		w.t.Fatal(err)
	}
	return st, ok
}

// TestSettlementRefusals: each way a settlement is refused is an error of
// its own kind whose message names the cause (and what resolves it), and
// none leaves a date in the way of the later ones: too early, income on a
// fund nobody can hold shares of (refused up front, nothing recorded), a
// gap, a date before the last settled, a settled date asked with another
// income, income whose holders have all left (refused by the run after
// it settled the day's orders: FAILED with the reason and the command,
// later dates refused naming it, the corrected income resumes), and a run
// that failed after booking income (it resumes with the same income only).
func TestSettlementRefusals(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	runs := func() int64 { return w.count(`SELECT count(*) FROM settlement_runs`) }

	// Tue 11-17 10:00: A subscribes 100.00 (confirmed Wed 11-18).
	w.clock.Set(cst("2026-11-17 10:00:00"))
	a := w.open("A")
	w.must(w.svc.TopUp(ctx, a, "t", 10000))
	w.must(w.svc.Subscribe(ctx, a, "s", 10000))
	refused(t, "too early", w.try(nil, total("2026-11-17", 0)), settlement.ErrTooEarly,
		"2026-11-17 cannot settle before its cut-off 2026-11-17 15:00 CST has passed", "it is 2026-11-17 10:00 CST now")

	// 23:00: nobody holds shares on the 17th (A's confirm on the 18th), so
	// 5.00 of income has nobody to go to: refused before anything is
	// recorded; income 0 settles the day.
	w.clock.Set(cst("2026-11-17 23:00:00"))
	refused(t, "income, no holders", w.try(nil, total("2026-11-17", 500)), settlement.ErrNoShares,
		"2026-11-17 has income 5.00 to distribute but no eligible shares", "nothing was recorded",
		"--date 2026-11-17 --income 0.00")
	if n := runs(); n != 0 {
		t.Fatalf("%d runs recorded by a refused one", n)
	}
	if _, ok := w.status("2026-11-17"); ok {
		t.Fatal("a refused date has a run")
	}
	w.settle(total("2026-11-17", 0))

	// Wed 11-18 23:00: A's shares are confirmed and earn 0.07. Asking the
	// 18th again with other income is a conflict, with the same income
	// its stored result; the 16th comes before the last date settled.
	w.clock.Set(cst("2026-11-18 23:00:00"))
	w.settle(total("2026-11-18", 7))
	refused(t, "other income", w.try(nil, total("2026-11-18", 8)), settlement.ErrRunConflict,
		"2026-11-18 is settled already, with income 0.07", "income 0.08 asked")
	if s := w.settle(total("2026-11-18", 7)); s.FundIncome != 7 {
		t.Fatalf("same income again: %+v", s)
	}
	refused(t, "before the last", w.try(nil, total("2026-11-16", 0)), settlement.ErrOutOfOrder,
		"2026-11-16 cannot be settled: 2026-11-18, a later date, is settled already", "the next to settle is 2026-11-19")

	// Thu 11-19 10:00: A redeems everything (paid Fri 11-20). Fri 11-20
	// 10:00: B subscribes (confirmed Mon 11-23). At 23:00 the 20th before
	// the 19th is a gap; the 19th then settles (A still earns on it; no
	// income that day).
	w.clock.Set(cst("2026-11-19 10:00:00"))
	w.must(w.svc.StandardRedeem(ctx, a, "r", 10007))
	w.clock.Set(cst("2026-11-20 10:00:00"))
	b := w.open("B")
	w.must(w.svc.TopUp(ctx, b, "t", 10000))
	w.must(w.svc.Subscribe(ctx, b, "s", 10000))
	w.clock.Set(cst("2026-11-20 23:00:00"))
	refused(t, "gap", w.try(nil, total("2026-11-20", 0)), settlement.ErrOutOfOrder,
		"2026-11-20 cannot be settled before 2026-11-19", "the last settled is 2026-11-18")
	w.settle(total("2026-11-19", 0))

	// The 20th: A's redemption, made the day before, is paid and A earns
	// nothing more, and B's shares are not confirmed yet, so income has
	// nobody to go to. A held shares once, so the run starts, pays A and
	// stops at the allocation: FAILED, nothing of the income booked, the
	// reason and the command in its status, and the 21st is refused
	// naming them. The corrected income resumes the 20th.
	w.clock.Set(cst("2026-11-21 23:00:00"))
	refused(t, "holders left", w.try(nil, total("2026-11-20", 500)), settlement.ErrNoShares,
		"2026-11-20 has income 5.00 to distribute but no eligible shares", "--date 2026-11-20 --income 0.00")
	st, ok := w.status("2026-11-20")
	if !ok || st.Status() != settlement.StatusFailed || st.Failure == nil || !st.Failure.InputRefused ||
		!strings.Contains(st.Note(), "no eligible shares") || !strings.Contains(st.Note(), "--date 2026-11-20 --income 0.00") {
		t.Fatalf("status of the failed 20th: %s %+v; note %q", st.Status(), st.Failure, st.Note())
	}
	t.Logf("status of the 20th: %s: %s", st.Status(), st.Note())
	if n := w.count(`SELECT count(*) FROM transfers WHERE kind IN ($1, $2)`, int32(settlement.KindIncome),
		int32(settlement.KindIncomeDeduct)); n != 1 {
		t.Fatalf("%d income entries, want the 18th's one", n)
	}
	refused(t, "after a failed date", w.try(nil, total("2026-11-21", 0)), settlement.ErrOutOfOrder,
		"2026-11-21 cannot be settled before 2026-11-20 is", "failed", "no eligible shares", "--date 2026-11-20 --income 0.00")
	if s := w.settle(total("2026-11-20", 0)); s.Redemptions != 1 || s.Holders != 0 {
		t.Fatalf("corrected 20th: %+v", s)
	}
	if st, _ := w.status("2026-11-20"); st.Status() != settlement.StatusCompleted || st.Note() != "" {
		t.Fatalf("status of the 20th: %s %q", st.Status(), st.Note())
	}
	w.clock.Set(cst("2026-11-22 23:00:00"))
	w.settle(total("2026-11-21", 0))
	w.settle(total("2026-11-22", 0))

	// Mon 11-23: B's shares are confirmed. A run that fails after booking
	// the income may resume with that income only.
	w.clock.Set(cst("2026-11-23 23:00:00"))
	crash := settlement.NewRunner(settlement.Config{Shards: 1, FileDir: w.dir, Now: w.clock.Now, Owner: "settle-test",
		Failpoint: func(p string) error {
			if p == "income/0" {
				return settlement.ErrInjected
			}
			return nil
		}}, w.store, w.svc, w.events, nil)
	if err := w.try(crash, total("2026-11-23", 3)); !errors.Is(err, settlement.ErrInjected) {
		t.Fatalf("injected: %v", err)
	}
	st, _ = w.status("2026-11-23")
	if st.Status() != settlement.StatusFailed || st.Failure.InputRefused ||
		!strings.Contains(st.Note(), "with the same income: fundctl settle run --date 2026-11-23 --income 0.03") {
		t.Fatalf("status after the crash: %s %+v", st.Status(), st.Failure)
	}
	t.Logf("status of the 23rd: %s: %s", st.Status(), st.Note())
	refused(t, "booked income changed", w.try(nil, total("2026-11-23", 4)), settlement.ErrRunConflict,
		"2026-11-23's run has booked part of its income 0.03 already", "not with income 0.04", "--income 0.03")
	if s := w.settle(total("2026-11-23", 3)); s.FundIncome != 3 || s.TotalShares != 10000 {
		t.Fatalf("resumed 23rd: %+v", s)
	}
	w.clock.Set(cst("2026-11-24 23:00:00"))
	w.settle(total("2026-11-24", 1))
	if got := fmt.Sprint(w.count(`SELECT count(*) FROM settlement_runs WHERE completed`)); got != "8" {
		t.Fatalf("%s dates settled, want 17th to 24th", got)
	}
	if h, err := w.svc.Holdings(ctx, b); err != nil || h.Shares != 10004 {
		t.Fatalf("B holds %+v, %v", h, err)
	}
	w.verify()
}
