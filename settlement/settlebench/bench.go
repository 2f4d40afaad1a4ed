package settlebench

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/settlement"
	settlepg "github.com/fundplatform/fund/settlement/postgres"
)

// Config of a benchmark run.
type Config struct {
	DSN      string
	Accounts int64 // holders
	Shards   int
	Parallel int // shards settled at once
	FileDir  string
	// IncomePer10k is the day's income per 10,000 shares (0.0001 CNY).
	IncomePer10k int64
	Progress     settlement.Progress // nil = none
	Log          io.Writer           // phase lines; nil = none
	NoVerify     bool
	Trace        io.Writer // booking stage times; nil = none
}

// Result is what a run measured.
type Result struct {
	Accounts         int64              `json:"accounts"`
	Shards           int                `json:"shards"`
	SeedSeconds      float64            `json:"seed_s"`
	SettleSeconds    float64            `json:"settle_s"`
	IncomeSeconds    float64            `json:"income_booking_s"`
	AccountsPerSec   float64            `json:"accounts_per_sec"`
	VerifySeconds    float64            `json:"verify_s"`
	Verified         bool               `json:"verified"`
	CustodianFileSHA string             `json:"custodian_file_sha256"`
	Summary          settlement.Summary `json:"summary"`
}

// Run seeds a day for cfg.Accounts holders, settles it (the timed part),
// and verifies every shard's journal against its balances.
func Run(ctx context.Context, cfg Config) (Result, error) {
	logf := func(format string, a ...any) {
		if cfg.Log != nil {
			fmt.Fprintf(cfg.Log, format+"\n", a...)
		}
	}
	res := Result{Accounts: cfg.Accounts, Shards: max(cfg.Shards, 1)}
	store, yields, closeStore, err := settlepg.OpenForRunner(ctx, []string{cfg.DSN}, res.Shards, cfg.Parallel, nil)
	if err != nil {
		return res, err
	}
	defer closeStore()
	store.SetTrace(cfg.Trace)
	// Settle yesterday: its cut-off has passed.
	date := accounts.NaturalDay(time.Now()).AddDate(0, 0, -1)
	logf("seeding %d holders over %d shards for %s (not timed)...", cfg.Accounts, res.Shards, date.Format(time.DateOnly))
	seeded, err := Seed(ctx, store.Database(0).Pool(), store.Database(0).Ledger(), SeedConfig{Customers: cfg.Accounts, Shards: res.Shards, Date: date,
		SubscribeEvery: 100, RedeemEvery: 200, Salt: 1})
	if err != nil {
		return res, err
	}
	res.SeedSeconds = seeded.Took.Seconds()
	logf("seeded in %.1fs: %d subscriptions and %d standard redemptions due", res.SeedSeconds, seeded.Subscriptions, seeded.Redemptions)
	runner := settlement.NewRunner(settlement.Config{Shards: res.Shards, Parallel: cfg.Parallel, FileDir: cfg.FileDir,
		TakeShards: true}, store, yields, nil, nil)
	start := time.Now()
	sum, err := runner.Run(ctx, settlement.Input{Date: date, PerTenK: true, IncomePer10k: cfg.IncomePer10k}, cfg.Progress)
	if err != nil {
		return res, err
	}
	took := time.Since(start)
	res.SettleSeconds, res.IncomeSeconds = took.Seconds(), sum.TookIncomeBooking.Seconds()
	res.AccountsPerSec = float64(cfg.Accounts) / took.Seconds()
	res.Summary, res.CustodianFileSHA = sum, sum.FileSHA256
	if cfg.NoVerify {
		return res, nil
	}
	logf("verifying every shard's journal against its balances (not timed)...")
	vstart := time.Now()
	res.Verified = true
	for s := 0; s < res.Shards; s++ {
		rep, err := store.LedgerOf(s).Verify(ctx, s)
		if err != nil {
			return res, fmt.Errorf("verify shard %d: %w", s, err)
		}
		if !rep.OK() {
			res.Verified = false
			logf("shard %d: %d differences, problems %q; first %+v", s, len(rep.Differences), rep.Problems, rep.Differences[:min(3, len(rep.Differences))])
		}
	}
	res.VerifySeconds = time.Since(vstart).Seconds()
	if !res.Verified {
		return res, fmt.Errorf("%w: ledger verify found differences", ledger.ErrInvariantBroke)
	}
	return res, nil
}
