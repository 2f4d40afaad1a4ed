package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fundplatform/fund/internal/localpg"
	"github.com/fundplatform/fund/settlement"
	settlekafka "github.com/fundplatform/fund/settlement/kafka"
	"github.com/fundplatform/fund/settlement/nightly"
)

// newSettleCmd is `fundd settle`: the nightly settlement on a schedule
// (settlement/nightly).
func newSettleCmd() *cobra.Command {
	var (
		cfg           nightly.Config
		brokers, from string
		tc            testClockFlags
	)
	cmd := &cobra.Command{
		Use:   "settle",
		Short: "Run the nightly settlement on a schedule, after each business date ends",
		Long: `Settles business dates one after another: the date after the last one settled (or
--from for the first), once it has ended plus --delay (China Standard Time) and its income is
known. The income of date D is read from --income-dir/D (one line: "income=123.45" for the
fund total in CNY, or "income_per_10k=0.6543"). An unfinished run (a crash) is resumed with the
income it started with. Each step of a run takes each ledger shard from its owner by a hand-off
(the owner drains it and releases it) and gives it back at once, so orders keep flowing with a
short pause per shard; with --take-shards an owner that does not hand a shard over within 10 s is
fenced. With the shards on several
databases give all of them (--dsn, in the ledger's order): each shard's steps run in its own
database, the run's records in the first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(cfg.DSNs) == 0 {
				return fmt.Errorf("no database: give --dsn or set %s", localpg.EnvDSN)
			}
			if from != "" {
				d, err := settlement.ParseDate(from)
				if err != nil {
					return err
				}
				cfg.From = d
			}
			if brokers != "" {
				cfg.Brokers = strings.Split(brokers, ",")
			}
			cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
			clk, err := tc.open(cmd.Context(), cfg.DSNs[0], cfg.Logger)
			if err != nil {
				return err
			}
			if clk != nil {
				defer clk.Close()
				// Read fresh before each look at what is due: a date is
				// settled on the first tick after the move that made it due.
				cfg.Now = clk.Now
				cfg.Refresh = func(ctx context.Context) error { _, err := clk.Refresh(ctx); return err }
			}
			return nightly.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&cfg.DSNs, "dsn", dsnList(os.Getenv(localpg.EnvDSN)), "Postgres DSN of a shard database "+
		"(its shards' ledger and accounts tables); repeat (or a comma list) for several, in the ledger's order "+
		"(default $"+localpg.EnvDSN+")")
	f.StringVar(&cfg.IncomeDir, "income-dir", ".", "directory with one file per date (YYYY-MM-DD) holding its income")
	f.StringVar(&cfg.FileDir, "file-dir", ".", "where custodian files are written")
	f.StringVar(&from, "from", "", "first date to settle when none was settled yet (default: yesterday)")
	f.IntVar(&cfg.Shards, "shards", 0, "logical ledger shards (as fundd ledger --shards); 0 = as many as the ledger's tables show")
	f.IntVar(&cfg.Parallel, "parallel", nightly.ParallelDefault, "shards settled at once")
	f.DurationVar(&cfg.Delay, "delay", nightly.DelayDefault, "how long after a date ends its settlement starts")
	f.DurationVar(&cfg.Tick, "tick", nightly.TickDefault, "how often to look for a date to settle")
	f.BoolVar(&cfg.TakeShards, "take-shards", false, "fence a ledger process that did not hand a shard over within 10 s (each step takes each shard by a hand-off; without this it waits up to a minute)")
	f.StringVar(&brokers, "kafka", "", "Kafka brokers for settlement events; empty = none")
	f.StringVar(&cfg.Topic, "topic", settlekafka.TopicDefault, "Kafka topic of settlement events")
	f.StringVar(&cfg.HTTPAddr, "http-addr", "127.0.0.1:9104", "where /metrics is served; empty = nowhere")
	tc.register(f)
	return cmd
}
