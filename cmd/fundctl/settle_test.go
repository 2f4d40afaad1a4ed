package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/settlement"
	settlepg "github.com/fundplatform/fund/settlement/postgres"
)

// TestSettleRunRefusesBadInput: the command checks its arguments before it
// opens a database (none is given here), so bad input changes nothing.
func TestSettleRunRefusesBadInput(t *testing.T) {
	for _, c := range []struct {
		args []string
		want error
	}{
		{[]string{"--date", "2026-13-01", "--income", "1.00"}, settlement.ErrInvalidDate},
		{[]string{"--date", "2026-11-11"}, settlement.ErrIncomeForm},
		{[]string{"--date", "2026-11-11", "--income", "1.00", "--income-per-10k", "0.6543"}, settlement.ErrIncomeForm},
		{[]string{"--date", "2026-11-11", "--income", "1.001"}, settlement.ErrInvalidIncome},
		{[]string{"--date", "2026-11-11", "--income-per-10k", "0.65431"}, settlement.ErrInvalidIncome},
		{[]string{"--date", "2026-11-11", "--income", "99999999999999999999"}, settlement.ErrInvalidIncome},
	} {
		err := run(context.Background(), append([]string{"settle", "run", "--dsn", "postgres://nowhere.invalid/x"}, c.args...))
		if !errors.Is(err, c.want) {
			t.Errorf("%v: %v, want %v", c.args, err, c.want)
		} else {
			t.Logf("%v: %v", c.args, err)
		}
	}
}

// TestSettleStatusShowsAFailedRun: `settle status` of a date whose run
// failed says FAILED, why, and the command that resolves it.
func TestSettleStatusShowsAFailedRun(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	store, err := settlepg.Open(ctx, settlepg.Config{DSN: dsn, ConnsMax: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	// Per 10,000 shares: a fresh fund (no holders) refuses a fund total.
	in := settlement.Input{Date: time.Date(2026, 11, 12, 0, 0, 0, 0, time.UTC), PerTenK: true, IncomePer10k: 6543}
	if _, err := store.OpenRun(ctx, in, 1); err != nil {
		t.Fatal(err)
	}
	out, err := fundctl(t, "settle", "status", "--dsn", dsn, "--date", "2026-11-12")
	if err != nil || !strings.Contains(out, "2026-11-12: RUNNING (income per 10,000 shares 0.6543)") ||
		!strings.Contains(out, "fundctl settle run --date 2026-11-12 --income-per-10k 0.6543") {
		t.Fatalf("running: %v\n%s", err, out)
	}
	f := settlement.RunFailure{Error: "take shard 0: settlement: shard owned by a live ledger process",
		Resolve: "settle 2026-11-12 again with the same income: fundctl settle run --date 2026-11-12 --income-per-10k 0.6543"}
	if err := store.FailRun(ctx, in.Date, f); err != nil {
		t.Fatal(err)
	}
	out, err = fundctl(t, "settle", "status", "--dsn", dsn, "--date", "2026-11-12")
	if err != nil || !strings.Contains(out, "2026-11-12: FAILED (income per 10,000 shares 0.6543)") || !strings.Contains(out, f.Error) ||
		!strings.Contains(out, "To resolve: "+f.Resolve) {
		t.Fatalf("failed: %v\n%s", err, out)
	}
	t.Log(out)
}
