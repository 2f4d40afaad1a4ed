package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/fundplatform/fund/internal/localpg"
	"github.com/fundplatform/fund/settlement"
	settlekafka "github.com/fundplatform/fund/settlement/kafka"
	settlepg "github.com/fundplatform/fund/settlement/postgres"
	"github.com/fundplatform/fund/settlement/settlebench"
)

// newSettleCmd is `fundctl settle run|status`.
func newSettleCmd() *cobra.Command {
	settle := &cobra.Command{Use: "settle", Short: "Nightly fund settlement"}
	var (
		dsn, date, income, per10k, fileDir, brokers, topic string
		shards, parallel                                   int
		take, asJSON, quiet                                bool
	)
	run := &cobra.Command{
		Use:   "run --date YYYY-MM-DD (--income CNY | --income-per-10k X.XXXX)",
		Short: "Settle a business date: confirm, pay, distribute income, yield, custodian file",
		Long: `Settles one business date against the database in --dsn (or FUND_PG_DSN): takes every
ledger shard's lease, step by step (a live ledger process hands it over and takes it back after
the step; with --take-shards one that does not within the wait is fenced),
confirms the subscriptions and pays the standard redemptions due, distributes the day's income
to every holder exactly (truncation, largest remainder, negative days), publishes the 7-day
yield and each customer's income, writes the custodian file (settlement-YYYYMMDD.csv in
--file-dir) and prints a summary. Re-running a date, or resuming after a crash, writes
nothing twice; a finished date prints its stored summary.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			// Validate everything before touching the database.
			in, err := settlement.ParseInput(date, income, per10k)
			if err != nil {
				return err
			}
			if dsn == "" {
				dsn = os.Getenv(localpg.EnvDSN)
			}
			if dsn == "" {
				return fmt.Errorf("no database: give --dsn or set %s", localpg.EnvDSN)
			}
			store, yields, closeStore, err := settlepg.OpenForRunner(ctx, []string{dsn}, shards, parallel, nil)
			if err != nil {
				return err
			}
			defer closeStore()
			var events settlement.EventPublisher
			if brokers != "" {
				pub := settlekafka.NewPublisher(strings.Split(brokers, ","), topic)
				defer pub.Close()
				events = pub
			}
			logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
			runner := settlement.NewRunner(settlement.Config{Shards: shards, Parallel: parallel, FileDir: fileDir,
				TakeShards: take}, store, yields, events, logger)
			var progress settlement.Progress
			if !quiet && !asJSON {
				progress = newSettleBar(cmd.ErrOrStderr())
			}
			sum, err := runner.Run(ctx, in, progress)
			if err != nil {
				return err
			}
			return printSettleSummary(cmd.OutOrStdout(), sum, asJSON)
		},
	}
	f := run.Flags()
	f.StringVar(&dsn, "dsn", "", "Postgres holding the ledger and accounts tables (default $"+localpg.EnvDSN+")")
	f.StringVar(&date, "date", "", "business date to settle, YYYY-MM-DD")
	f.StringVar(&income, "income", "", "the fund's distributable income for the day in CNY (2 decimals, may be negative)")
	f.StringVar(&per10k, "income-per-10k", "", "income per 10,000 shares in CNY (4 decimals, may be negative)")
	f.StringVar(&fileDir, "file-dir", ".", "where the custodian file is written")
	f.IntVar(&shards, "shards", 0, "logical ledger shards (as fundd ledger --shards); 0 = as many as the ledger's tables show")
	f.IntVar(&parallel, "parallel", 2, "shards settled at once")
	f.BoolVar(&take, "take-shards", false, "fence ledger processes that do not hand their shards over within the wait")
	f.StringVar(&brokers, "kafka", "", "Kafka brokers (host:port,...) for settlement events; empty = none")
	f.StringVar(&topic, "topic", settlekafka.TopicDefault, "Kafka topic of settlement events")
	f.BoolVar(&asJSON, "json", false, "print the summary as JSON")
	f.BoolVar(&quiet, "quiet", false, "no progress bar")

	var statusDSN string
	status := &cobra.Command{
		Use:   "status --date YYYY-MM-DD",
		Short: "Show how a date's settlement went",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			d, err := settlement.ParseDate(date)
			if err != nil {
				return err
			}
			if statusDSN == "" {
				statusDSN = os.Getenv(localpg.EnvDSN)
			}
			store, err := settlepg.Open(ctx, settlepg.Config{DSN: statusDSN, ConnsMax: 2})
			if err != nil {
				return err
			}
			defer store.Close()
			st, ok, err := store.Run(ctx, d)
			switch {
			case err != nil:
				return err
			case !ok:
				return fmt.Errorf("%s was never settled", d.Format(time.DateOnly))
			case !st.Completed:
				// FAILED (why, and the command that resolves it) or RUNNING.
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s (%s)\n  %s\n", d.Format(time.DateOnly), st.Status(),
					st.Input.IncomeText(), st.Note())
				return nil
			}
			return printSettleSummary(cmd.OutOrStdout(), st.Summary, asJSON)
		},
	}
	status.Flags().StringVar(&statusDSN, "dsn", "", "Postgres (default $"+localpg.EnvDSN+")")
	status.Flags().StringVar(&date, "date", "", "business date, YYYY-MM-DD")
	status.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	settle.AddCommand(run, status)
	return settle
}

func printSettleSummary(w io.Writer, s settlement.Summary, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	fmt.Fprintf(w, "settled %s (%s) over %d shards in %s\n", s.Date, s.Input, s.Shards, s.Took.Round(time.Millisecond))
	fmt.Fprintf(w, "  holders %d, eligible shares %s, fund income %s, income per 10k %s, 7-day yield %s\n",
		s.Holders, settlement.FormatFen(s.TotalShares), settlement.FormatFen(s.FundIncome),
		settleFmtPer10k(s.IncomePer10k), settleOrDash(s.SevenDayYield, "%"))
	fmt.Fprintf(w, "  income entries %d: paid %s, deducted %s, absorbed by the fund %s\n", s.IncomeEntries,
		settlement.FormatFen(s.IncomePaid), settlement.FormatFen(s.IncomeDeducted), settlement.FormatFen(s.Absorbed))
	fmt.Fprintf(w, "  subscriptions confirmed for %d customers (%s shares), standard redemptions paid to %d (%s CNY)\n",
		s.Subscriptions, settlement.FormatFen(s.SubscribedShares), s.Redemptions, settlement.FormatFen(s.RedeemedCash))
	fmt.Fprintf(w, "  custodian file %s: %d customer lines, SHA-256 %s\n", s.File, s.FileCustomers, s.FileSHA256)
	return nil
}

func settleFmtPer10k(v int64) string {
	sign := ""
	if v < 0 {
		sign, v = "-", -v
	}
	return fmt.Sprintf("%s%d.%04d", sign, v/10000, v%10000)
}

func settleOrDash(s, suffix string) string {
	if s == "" {
		return "-"
	}
	return s + suffix
}

// settleBar draws one progress bar per phase (accounts/s, time left) and,
// when the phase ends, a line per shard.
type settleBar struct {
	w      io.Writer
	bar    *progressbar.ProgressBar
	phase  string
	shards []string
	start  time.Time
}

func newSettleBar(w io.Writer) *settleBar { return &settleBar{w: w} }

func (b *settleBar) Phase(name string, total int64) {
	b.phase, b.shards, b.start = name, nil, time.Now()
	max := total
	if max <= 0 {
		max = -1 // unknown: a spinner
	}
	b.bar = progressbar.NewOptions64(max,
		progressbar.OptionSetWriter(b.w),
		progressbar.OptionSetDescription(fmt.Sprintf("%-8s", name)),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("accounts"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(250*time.Millisecond),
		progressbar.OptionSetWidth(30),
	)
}

func (b *settleBar) Add(n int64) { _ = b.bar.Add64(n) }

func (b *settleBar) ShardDone(shard int, n int64, took time.Duration) {
	rate := 0.0
	if took > 0 {
		rate = float64(n) / took.Seconds()
	}
	b.shards = append(b.shards, fmt.Sprintf("  shard %3d: %9d in %8s (%.0f/s)", shard, n, took.Round(time.Millisecond), rate))
	b.bar.Describe(fmt.Sprintf("%-8s %d shards done", b.phase, len(b.shards)))
}

func (b *settleBar) End() {
	_ = b.bar.Finish()
	fmt.Fprintf(b.w, "\n%s done in %s\n", b.phase, time.Since(b.start).Round(time.Millisecond))
	for _, l := range b.shards {
		fmt.Fprintln(b.w, l)
	}
}

// newBenchSettleCmd is `fundctl bench settle`.
func newBenchSettleCmd() *cobra.Command {
	var (
		cfg     settlebench.Config
		dsn     string
		asJSON  bool
		sharedB string
		pgSet   map[string]string
		per10k  string
		trace   bool
	)
	cmd := &cobra.Command{
		Use:   "settle",
		Short: "Settle a full day for many holders against a private Postgres",
		Long: `Seeds a business day set-based (holders with shares, 1% with a subscription due, 0.5% with a
standard redemption due, the journal entries behind every balance), then times the settlement
run over it, then verifies every shard's journal against its balances. Seeding and verifying
are not part of the timed figure.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			in, err := settlement.ParseInput("2000-01-01", "", per10k)
			if err != nil {
				return err
			}
			cfg.IncomePer10k = in.IncomePer10k
			progress := cmd.ErrOrStderr()
			if asJSON {
				progress = io.Discard
			} else {
				cfg.Progress = newSettleBar(progress)
			}
			cfg.Log = progress
			if trace {
				cfg.Trace = progress
			}
			// Room for a night's WAL without a checkpoint in the middle, and
			// compressed full-page images (the run touches every holder's
			// balance page once): production settings for a settlement host.
			settings := map[string]string{"shared_buffers": sharedB, "max_wal_size": "16GB", "checkpoint_timeout": "30min",
				"wal_compression":      "lz4",
				"maintenance_work_mem": "1GB", "work_mem": "256MB"}
			for k, v := range pgSet {
				settings[k] = v
			}
			db, _, stop, err := database(ctx, dsn, "bench_settle", settings, progress)
			if err != nil {
				return err
			}
			defer stop()
			cfg.DSN = db
			if cfg.FileDir == "" {
				dir, err := os.MkdirTemp("", "fund-settle-bench-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
				cfg.FileDir = dir
			}
			res, err := settlebench.Run(ctx, cfg)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "settled %d holders over %d shards in %.1fs (%.0f accounts/s); income booking %.1fs\n",
				res.Accounts, res.Shards, res.SettleSeconds, res.AccountsPerSec, res.IncomeSeconds)
			fmt.Fprintf(out, "seeding took %.1fs, verify %.1fs: verified=%v\n", res.SeedSeconds, res.VerifySeconds, res.Verified)
			return printSettleSummary(out, res.Summary, false)
		},
	}
	f := cmd.Flags()
	f.Int64Var(&cfg.Accounts, "accounts", 1_000_000, "holders")
	f.IntVar(&cfg.Shards, "shards", 8, "logical shards")
	f.IntVar(&cfg.Parallel, "parallel", 2, "shards settled at once")
	f.StringVar(&per10k, "income-per-10k", "0.6543", "income per 10,000 shares")
	f.StringVar(&cfg.FileDir, "file-dir", "", "where the custodian file goes (default: a temporary directory, removed)")
	f.StringVar(&dsn, "dsn", "", "use this Postgres instead of a private one")
	f.BoolVar(&asJSON, "json", false, "print one JSON object")
	f.StringVar(&sharedB, "shared-buffers", "2GB", "shared_buffers of the private Postgres")
	f.StringToStringVar(&pgSet, "pg-set", nil, "extra settings of the private Postgres, name=value")
	f.BoolVar(&trace, "trace", false, "print how long each stage of each shard's booking took")
	return cmd
}
