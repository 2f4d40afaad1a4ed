package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/fundplatform/fund/internal/localpg"
	"github.com/fundplatform/fund/settlement/recon/worker"
)

// newReconCmd is `fundd recon`: a reconciliation worker
// (settlement/recon/worker). Run as many as the topic has partitions; they
// share them through the consumer group.
func newReconCmd() *cobra.Command {
	var (
		cfg worker.Config
		tc  testClockFlags
	)
	cmd := &cobra.Command{
		Use:   "recon",
		Short: "Reconcile the ledger: consume its events, keep totals, compare with the journal, report breaks",
		Long: `A member of a Kafka consumer group on the ledger's events. It records every event once in
its own tables (redeliveries are ignored; the same id with other content is a break), keeps totals per
business day, shard and account, and commits offsets only after its writes. Every --compare-every it
compares today with the journal up to --grace ago (only what came since the last clean comparison,
the whole day every --full-every), and each of the --days-back days before once after it closed; it
stores the breaks (fundctl recon report lists them). Metrics: fund_recon_breaks{kind}, fund_recon_consumer_lag_messages,
fund_recon_events_total{result}.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(cfg.DSNs) == 0 {
				return fmt.Errorf("--dsn (or %s) is required", localpg.EnvDSN)
			}
			if len(cfg.Brokers) == 0 {
				return errors.New("--kafka-brokers is required")
			}
			cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, nil)) // the worker adds role=recon
			clk, err := tc.open(cmd.Context(), cfg.DSNs[0], cfg.Logger)
			if err != nil {
				return err
			}
			if clk != nil {
				defer clk.Close()
				cfg.Now = clk.Now // which journal days to compare, up to when
			}
			return worker.Run(cmd.Context(), cfg)
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&cfg.DSNs, "dsn", dsnList(os.Getenv(localpg.EnvDSN)),
		"Postgres DSN of a ledger database; repeat (or a comma list) for several, in the ledger's order")
	fl.IntVar(&cfg.Shards, "shards", 64, "logical shards in the system (places shards on the databases)")
	fl.StringSliceVar(&cfg.Brokers, "kafka-brokers", nil, "Kafka brokers (required)")
	fl.StringVar(&cfg.Topic, "topic", worker.TopicDefault, "Kafka topic of the ledger's events")
	fl.StringVar(&cfg.Group, "group", worker.GroupDefault, "consumer group of the reconciliation workers")
	fl.StringVar(&cfg.HTTPAddr, "http-addr", "", "serve /metrics, /healthz and /readyz here (empty: no HTTP)")
	fl.IntVar(&cfg.InFlightMax, "inflight-max", worker.InFlightMaxDefault, "events handled at once (they wait together for one write per batch)")
	fl.IntVar(&cfg.BatchMax, "batch-max", 1024, "events per database write")
	fl.DurationVar(&cfg.CompareEvery, "compare-every", time.Minute, "how often to compare with the journal (0: never)")
	fl.DurationVar(&cfg.FullEvery, "full-every", time.Hour, "how often today is compared whole (in between: only what came since the last clean comparison)")
	fl.DurationVar(&cfg.Grace, "grace", 2*time.Minute, "entries newer than this are not compared yet (still on their way)")
	fl.IntVar(&cfg.DaysBack, "days-back", 1, "past business days compared (each once, whole, after it closed and the grace passed)")
	fl.DurationVar(&cfg.StartTimeout, "start-timeout", worker.StartTimeoutDefault, "how long to wait for the databases at start")
	tc.register(fl)
	return cmd
}
