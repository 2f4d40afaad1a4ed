package nightly

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fundplatform/fund/settlement"
)

// runsOnly is a settlement.Store that knows runs only; the schedule asks
// nothing else.
type runsOnly struct {
	settlement.Store
	runs map[string]settlement.RunState
}

func (r runsOnly) Run(_ context.Context, d time.Time) (settlement.RunState, bool, error) {
	st, ok := r.runs[d.Format(time.DateOnly)]
	return st, ok, nil
}

func TestScheduleNextDateAndIncome(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 11, 20, 3, 0, 0, 0, time.UTC) // 11:00 CST on the 20th
	store := runsOnly{runs: map[string]settlement.RunState{}}
	s := &schedule{store: store, incomeDir: dir, first: time.Date(2026, 11, 17, 0, 0, 0, 0, time.UTC),
		log: slog.New(slog.DiscardHandler), now: func() time.Time { return now }}
	ctx := context.Background()
	next := func() string {
		d, err := s.next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return d.Format(time.DateOnly)
	}
	if got := next(); got != "2026-11-17" {
		t.Errorf("nothing settled: next %s, want --from", got)
	}
	store.runs["2026-11-17"] = settlement.RunState{Completed: true}
	store.runs["2026-11-18"] = settlement.RunState{Input: settlement.Input{IncomeTotal: 5}}
	if got := next(); got != "2026-11-18" {
		t.Errorf("unfinished 11-18: next %s", got)
	}
	if in, ok, err := s.input(ctx, time.Date(2026, 11, 18, 0, 0, 0, 0, time.UTC)); err != nil || !ok || in.IncomeTotal != 5 {
		t.Errorf("unfinished run's input: %+v %v %v", in, ok, err)
	}
	store.runs["2026-11-18"] = settlement.RunState{Completed: true}
	if got := next(); got != "2026-11-19" {
		t.Errorf("next %s, want 2026-11-19", got)
	}
	d19 := time.Date(2026, 11, 19, 0, 0, 0, 0, time.UTC)
	if _, ok, err := s.input(ctx, d19); ok || err != nil {
		t.Errorf("no income file: ok %v err %v", ok, err)
	}
	for _, c := range []struct {
		text string
		want settlement.Input
		err  error
	}{
		{"income=123.45\n", settlement.Input{IncomeTotal: 12345}, nil},
		{"income_per_10k=-0.6543", settlement.Input{PerTenK: true, IncomePer10k: -6543}, nil},
		{"income=1.234", settlement.Input{}, settlement.ErrInvalidIncome},
		{"yield=1", settlement.Input{}, settlement.ErrIncomeForm},
		{"", settlement.Input{}, settlement.ErrIncomeForm},
	} {
		if err := os.WriteFile(filepath.Join(dir, "2026-11-19"), []byte(c.text), 0o600); err != nil {
			t.Fatal(err)
		}
		in, ok, err := s.input(ctx, d19)
		c.want.Date = d19
		if c.err != nil {
			if !errors.Is(err, c.err) || ok {
				t.Errorf("%q: %v, want %v", c.text, err, c.err)
			}
			continue
		}
		if err != nil || !ok || in != c.want {
			t.Errorf("%q: %+v %v %v", c.text, in, ok, err)
		}
	}
	// A run that failed for another cause resumes with its own income; one
	// whose income was refused takes the income file again, which the
	// operator corrects.
	if err := os.WriteFile(filepath.Join(dir, "2026-11-19"), []byte("income=0"), 0o600); err != nil {
		t.Fatal(err)
	}
	store.runs["2026-11-19"] = settlement.RunState{Input: settlement.Input{Date: d19, IncomeTotal: 500},
		Failure: &settlement.RunFailure{Error: "shard busy"}}
	if in, ok, err := s.input(ctx, d19); err != nil || !ok || in.IncomeTotal != 500 {
		t.Errorf("failed run's input: %+v %v %v", in, ok, err)
	}
	store.runs["2026-11-19"] = settlement.RunState{Input: settlement.Input{Date: d19, IncomeTotal: 500},
		Failure: &settlement.RunFailure{Error: "no eligible shares", InputRefused: true}}
	if in, ok, err := s.input(ctx, d19); err != nil || !ok || in != (settlement.Input{Date: d19}) {
		t.Errorf("refused income, corrected file: %+v %v %v", in, ok, err)
	}
}

func TestSettleMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.Observe(settlement.Summary{Holders: 7})
	m.Observe(settlement.Summary{Holders: 5})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, mm := range mf.GetMetric() {
			switch {
			case mm.GetCounter() != nil:
				got[mf.GetName()] = mm.GetCounter().GetValue()
			case mm.GetGauge() != nil:
				got[mf.GetName()] = mm.GetGauge().GetValue()
			}
		}
	}
	if got["fund_settlement_accounts_total"] != 12 {
		t.Errorf("fund_settlement_accounts_total %v, want 12", got["fund_settlement_accounts_total"])
	}
	if v := got["fund_settlement_last_success_timestamp_seconds"]; v < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("fund_settlement_last_success_timestamp_seconds %v", v)
	}
}

// A schedule on a clock read on an interval refreshes it before each look
// at what is due: the date due by the fresh time is found on that tick,
// and a clock that cannot be read skips the tick rather than act on a
// stale time.
func TestScheduleRefreshesTheClock(t *testing.T) {
	stale := time.Date(2026, 11, 17, 10, 0, 0, 0, time.UTC)
	now := stale
	store := runsOnly{runs: map[string]settlement.RunState{}}
	refreshErr := errors.New("database away")
	var failing bool
	s := &schedule{store: store, incomeDir: t.TempDir(), first: time.Date(2026, 11, 17, 0, 0, 0, 0, time.UTC),
		log: slog.New(slog.DiscardHandler), now: func() time.Time { return now },
		refresh: func(context.Context) error {
			if failing {
				return refreshErr
			}
			now = stale.Add(48 * time.Hour) // a move another process made
			return nil
		}}
	// The fresh time makes the 17th due; with no income file the tick
	// waits for it, having looked with the fresh time.
	if err := s.once(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !now.Equal(stale.Add(48 * time.Hour)) {
		t.Fatalf("once did not refresh the clock: %s", now)
	}
	failing = true
	if err := s.once(context.Background()); !errors.Is(err, refreshErr) {
		t.Fatalf("once with a clock that cannot be read: %v, want the refresh's error", err)
	}
}
