package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/pflag"

	"github.com/fundplatform/fund/internal/clock/pgclock"
	"github.com/fundplatform/fund/ledger"
)

// testClockFlags are --test-clock and --test-clock-start of the roles a
// rehearsal cluster runs (ledger, gateway, settle, recon): business time
// from the shared test clock in the first database (shard group 0's)
// instead of the wall clock. Never in production.
type testClockFlags struct {
	on    bool
	start string
}

func (f *testClockFlags) register(fs *pflag.FlagSet) {
	fs.BoolVar(&f.on, "test-clock", false, "REHEARSALS ONLY, never in production: business time from the shared test clock "+
		"in the first database, moved by POST /v1/admin/clock:advance on a gateway")
	fs.StringVar(&f.start, "test-clock-start", "", "with --test-clock: where the shared clock starts if no process started it yet, "+
		"RFC 3339 (default: now)")
}

// open opens the shared test clock in dsn's database with --test-clock
// (nil without), and says loudly that the process runs on it. The caller
// closes it.
func (f *testClockFlags) open(ctx context.Context, dsn string, logger *slog.Logger) (*pgclock.Clock, error) {
	if !f.on {
		if f.start != "" {
			return nil, fmt.Errorf("--test-clock-start needs --test-clock")
		}
		return nil, nil
	}
	var start time.Time
	if f.start != "" {
		var err error
		if start, err = time.Parse(time.RFC3339, f.start); err != nil {
			return nil, fmt.Errorf("--test-clock-start: want an instant in RFC 3339, e.g. 2026-11-09T10:00:00+08:00: %w", err)
		}
	}
	c, err := pgclock.Open(ctx, pgclock.Config{DSN: dsn, Start: start, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("--test-clock: %w", err)
	}
	logger.Warn("TEST CLOCK ON: business time (cut-off, trade and confirm dates, settlement, income, journal timestamps) "+
		"is the shared test clock, not the wall clock; this must never run in production",
		"now", c.Now().In(ledger.BusinessZone()).Format(time.RFC3339))
	return c, nil
}
