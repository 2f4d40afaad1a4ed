package nightly

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/settlement"
)

// Bounds of the schedule.
const (
	incomeFileBytesMax = 256
	// datesPerCallMax is the most dates one tick settles, so that a long
	// backlog does not starve shutdown checks.
	datesPerCallMax = 7
	// lookBackDays bounds the walk back to the newest run.
	lookBackDays = 400
)

// schedule settles dates one after another as they become due.
type schedule struct {
	runner    *settlement.Runner
	store     settlement.Store
	incomeDir string
	first     time.Time
	delay     time.Duration
	log       *slog.Logger
	now       func() time.Time
	refresh   func(context.Context) error // nil: now is never stale
}

func (s *schedule) run(ctx context.Context, tick time.Duration) error {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		if err := s.once(ctx); err != nil {
			// A failed run is retried on the next tick (it resumes); the
			// error is the operator's to see.
			s.log.Error("settlement", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// once settles every date that is due, oldest first, at most
// datesPerCallMax per call.
func (s *schedule) once(ctx context.Context) error {
	if s.refresh != nil {
		if err := s.refresh(ctx); err != nil {
			return fmt.Errorf("business clock: %w", err)
		}
	}
	for i := 0; i < datesPerCallMax && ctx.Err() == nil; i++ {
		date, err := s.next(ctx)
		if err != nil {
			return err
		}
		end := time.Date(date.Year(), date.Month(), date.Day()+1, 0, 0, 0, 0, ledger.BusinessZone())
		if s.now().Before(end.Add(s.delay)) {
			return nil
		}
		in, ok, err := s.input(ctx, date)
		if err != nil || !ok {
			return err
		}
		sum, err := s.runner.Run(ctx, in, nil)
		if err != nil {
			return fmt.Errorf("settle %s: %w", date.Format(time.DateOnly), err)
		}
		s.log.Info("settled", "date", sum.Date, "holders", sum.Holders, "fund_income", settlement.FormatFen(sum.FundIncome),
			"seven_day_yield", sum.SevenDayYield, "file", sum.File, "took", sum.Took)
	}
	return nil
}

// next is the date to settle: an unfinished one, else the day after the
// last one settled, else the first date configured (or yesterday).
func (s *schedule) next(ctx context.Context) (time.Time, error) {
	// Walk back from yesterday to find the newest run; dates are
	// contiguous, so the newest one found decides.
	yesterday := accounts.NaturalDay(s.now()).AddDate(0, 0, -1)
	for d, i := yesterday, 0; i < lookBackDays; d, i = d.AddDate(0, 0, -1), i+1 {
		st, ok, err := s.store.Run(ctx, d)
		if err != nil {
			return time.Time{}, err
		}
		if ok {
			if !st.Completed {
				return d, nil
			}
			return d.AddDate(0, 0, 1), nil
		}
		if !s.first.IsZero() && !d.After(s.first) {
			break
		}
	}
	if !s.first.IsZero() {
		return s.first, nil
	}
	return yesterday, nil
}

// input returns a date's income: the one an unfinished run started with
// (unless the run refused it: then the operator corrects the file), or
// the one in the income directory; ok is false when none is there yet.
func (s *schedule) input(ctx context.Context, date time.Time) (settlement.Input, bool, error) {
	st, ok, err := s.store.Run(ctx, date)
	if err != nil {
		return settlement.Input{}, false, err
	}
	if ok && (st.Failure == nil || !st.Failure.InputRefused) {
		return st.Input, true, nil
	}
	name := filepath.Join(s.incomeDir, date.Format(time.DateOnly))
	f, err := os.Open(name)
	if errors.Is(err, os.ErrNotExist) {
		s.log.Info("waiting for the date's income", "date", date.Format(time.DateOnly), "file", name)
		return settlement.Input{}, false, nil
	}
	if err != nil {
		return settlement.Input{}, false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, incomeFileBytesMax), incomeFileBytesMax)
	if !sc.Scan() {
		return settlement.Input{}, false, fmt.Errorf("%s: empty: %w", name, settlement.ErrIncomeForm)
	}
	key, value, _ := strings.Cut(strings.TrimSpace(sc.Text()), "=")
	var in settlement.Input
	switch key {
	case "income":
		in, err = settlement.ParseInput(date.Format(time.DateOnly), value, "")
	case "income_per_10k":
		in, err = settlement.ParseInput(date.Format(time.DateOnly), "", value)
	default:
		err = fmt.Errorf("%s: want income=X or income_per_10k=X: %w", name, settlement.ErrIncomeForm)
	}
	return in, err == nil, err
}
