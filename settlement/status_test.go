package settlement

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fundplatform/fund/ledger"
)

// TestTooEarlyNamesTheCutOff: a date asked before its 15:00 cut-off is
// refused with ErrTooEarly and a message naming the date's cut-off and
// the time now, both in China Standard Time.
func TestTooEarlyNamesTheCutOff(t *testing.T) {
	now := time.Date(2026, 11, 12, 14, 59, 0, 0, ledger.BusinessZone())
	r := NewRunner(Config{Now: func() time.Time { return now }}, nil, nil, nil, nil)
	in := Input{Date: time.Date(2026, 11, 12, 0, 0, 0, 0, time.UTC)}
	_, err := r.checkInput(in)
	want := "2026-11-12 cannot settle before its cut-off 2026-11-12 15:00 CST has passed (it is 2026-11-12 14:59 CST now)"
	if !errors.Is(err, ErrTooEarly) || err.Error() != want {
		t.Fatalf("%v, want %q", err, want)
	}
	now = now.Add(time.Minute)
	if _, err := r.checkInput(in); err != nil {
		t.Fatalf("at the cut-off: %v", err)
	}
	r.cfg.AllowEarly, now = true, now.Add(-24*time.Hour)
	if _, err := r.checkInput(in); err != nil {
		t.Fatalf("allowed early: %v", err)
	}
}

// TestRunStatus: what a date's status says, for each state of its run,
// and what a failure's resolve says for each kind of error.
func TestRunStatus(t *testing.T) {
	d := time.Date(2026, 11, 12, 0, 0, 0, 0, time.UTC)
	at := time.Date(2026, 11, 12, 17, 5, 0, 0, time.UTC) // 01:05 CST on the 13th
	in := Input{Date: d, IncomeTotal: 500}
	if st := (RunState{Input: in, Completed: true}); st.Status() != StatusCompleted || st.Note() != "" {
		t.Errorf("completed: %s %q", st.Status(), st.Note())
	}
	running := RunState{Input: in, StartedAt: at}
	if running.Status() != StatusRunning || !strings.Contains(running.Note(), "started at 2026-11-13 01:05 CST has not finished") ||
		!strings.Contains(running.Note(), "fundctl settle run --date 2026-11-12 --income 5.00") {
		t.Errorf("running: %s %q", running.Status(), running.Note())
	}
	for _, c := range []struct {
		err     error
		refused bool
		resolve string
	}{
		{Refusef(ErrNoShares, "no shares"), true, "settle 2026-11-12 with income 0: fundctl settle run --date 2026-11-12 --income 0.00"},
		{fmt.Errorf("allocate: %w", ErrInvalidIncome), true, "settle 2026-11-12 again with a corrected income"},
		{fmt.Errorf("income: %w", ErrIncomeOverflow), true, "a corrected income"},
		{fmt.Errorf("take shard 0: %w", ErrShardBusy), false, "again with the same income: fundctl settle run --date 2026-11-12 --income 5.00"},
		{errors.New("connection refused"), false, `POST /v1/admin/settlements {"date": "2026-11-12", "income": "5.00"}`},
	} {
		f := failureOf(in, c.err)
		f.At = at
		st := RunState{Input: in, Failure: &f}
		if f.InputRefused != c.refused || !strings.Contains(f.Resolve, c.resolve) || st.Status() != StatusFailed ||
			!strings.Contains(st.Note(), c.err.Error()) || !strings.Contains(st.Note(), "failed at 2026-11-13 01:05 CST") {
			t.Errorf("%v: %+v; note %q", c.err, f, st.Note())
		}
	}
	per10k := Input{Date: d, PerTenK: true, IncomePer10k: 6543}
	if got, want := SettleCommand(per10k), `fundctl settle run --date 2026-11-12 --income-per-10k 0.6543 (or POST /v1/admin/settlements {"date": "2026-11-12", "income_per_10k": "0.6543"})`; got != want {
		t.Errorf("per 10k: %s, want %s", got, want)
	}
	if got := per10k.IncomeText(); got != "income per 10,000 shares 0.6543" {
		t.Errorf("income text %q", got)
	}
}
