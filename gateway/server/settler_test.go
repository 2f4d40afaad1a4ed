package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/gateway"
	"github.com/fundplatform/fund/settlement"
)

// fakeSettler refuses with err, or settles with sum.
type fakeSettler struct {
	err   error
	sum   settlement.Summary
	in    settlement.Input
	state *settlement.RunState // what Status answers; nil = no run
}

func (f *fakeSettler) Settle(_ context.Context, in settlement.Input) (settlement.Summary, error) {
	f.in = in
	return f.sum, f.err
}

func (f *fakeSettler) Status(context.Context, time.Time) (settlement.RunState, bool, error) {
	if f.state == nil {
		return settlement.RunState{}, false, nil
	}
	return *f.state, true, nil
}

// A run that stopped is FAILED on the admin API with the note that says
// why and how to resume it, not RUNNING.
func TestSettlerGetFailedRun(t *testing.T) {
	date := time.Date(2026, 11, 11, 0, 0, 0, 0, time.UTC)
	started := time.Date(2026, 11, 11, 16, 0, 0, 0, time.UTC)
	st := settlement.RunState{StartedAt: started, Failure: &settlement.RunFailure{At: started.Add(time.Minute),
		Error: "database unavailable", Resolve: "fundctl settle run --date 2026-11-11"}}
	run, err := NewSettler(&fakeSettler{state: &st}).Get(context.Background(), date)
	if err != nil {
		t.Fatal(err)
	}
	if run.Status != settlement.StatusFailed || run.Message != st.Note() || !strings.Contains(run.Message, "fundctl settle run") ||
		!run.StartedAt.Equal(started) {
		t.Errorf("got %+v, want FAILED with the note %q", run, st.Note())
	}
	st.Failure = nil
	if run, err = NewSettler(&fakeSettler{state: &st}).Get(context.Background(), date); err != nil || run.Status != settlement.StatusRunning {
		t.Errorf("run in progress: got %+v, %v; want RUNNING", run, err)
	}
}

// Settlement's errors reach the gateway as they are (its table has their
// rows), not relabelled as another domain's.
func TestSettlerPassesSettlementErrorsThrough(t *testing.T) {
	for _, want := range []error{settlement.ErrTooEarly, settlement.ErrOutOfOrder, settlement.ErrRunConflict,
		settlement.ErrInvalidIncome, settlement.ErrNoShares} {
		s := NewSettler(&fakeSettler{err: fmt.Errorf("2026-11-11: %w", want)})
		_, err := s.Run(context.Background(), gateway.SettlementRequest{Date: time.Date(2026, 11, 11, 0, 0, 0, 0, time.UTC)})
		if !errors.Is(err, want) {
			t.Errorf("%v: got %v", want, err)
		}
		for _, other := range []error{accounts.ErrYieldGap, accounts.ErrInvalidAmount, accounts.ErrRecordConflict, accounts.ErrIncomePer10kRange} {
			if errors.Is(err, other) {
				t.Errorf("%v passes for %v", want, other)
			}
		}
	}
}

func TestSettlerRunAndGet(t *testing.T) {
	f := &fakeSettler{sum: settlement.Summary{Date: "2026-11-11", FundIncome: 12345, Holders: 3, File: "f.csv", Took: time.Second}}
	s := NewSettler(f)
	run, err := s.Run(context.Background(), gateway.SettlementRequest{Date: time.Date(2026, 11, 11, 0, 0, 0, 0, time.UTC),
		Income: 99, IncomePer10k: 6543, HasIncomePer10k: true})
	if err != nil {
		t.Fatal(err)
	}
	if !f.in.PerTenK || f.in.IncomePer10k != 6543 || f.in.IncomeTotal != 0 {
		t.Errorf("input %+v: per 10k given, the total must be left out", f.in)
	}
	if run.Status != "COMPLETED" || run.Income != 12345 || run.Accounts != 3 || run.FinishedAt.Sub(run.StartedAt) != time.Second {
		t.Errorf("run %+v", run)
	}
	if _, err := s.Get(context.Background(), time.Date(2026, 11, 12, 0, 0, 0, 0, time.UTC)); !errors.Is(err, gateway.ErrSettlementNotFound) {
		t.Errorf("Get of a date never run: %v", err)
	}
}
