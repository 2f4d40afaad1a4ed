// Command fundd is the fund platform's server; each role is a subcommand.
// `fundd ledger` owns ledger shards through leases: it takes free shards,
// serves them with one single-writer sequencer each, renews its leases,
// stops a shard the moment its lease is lost, and on a clean stop releases
// its shards so another process takes them at once. A process that dies
// without stopping loses its shards when its leases expire.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/fundplatform/fund/deploy/localpg"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/postgres"
)

func main() {
	ctx, stop := signalContext()
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fundd:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	root := &cobra.Command{Use: "fundd", Short: "The fund platform's server roles", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(newLedgerCmd())
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

func newLedgerCmd() *cobra.Command {
	var (
		dsn       string
		cfg       ledger.HostConfig
		readyWait time.Duration
	)
	host, _ := os.Hostname()
	cmd := &cobra.Command{
		Use:   "ledger",
		Short: "Own ledger shards through leases and serve them",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			logger := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("role", "ledger", "owner", cfg.Owner)
			if dsn == "" {
				return fmt.Errorf("--dsn (or %s) is required", localpg.EnvDSN)
			}
			octx, cancel := context.WithTimeout(ctx, readyWait)
			store, err := postgres.Open(octx, postgres.Config{DSN: dsn, ConnsMax: int32(4 + 2*min(cfg.Shards, 32))})
			cancel()
			if err != nil {
				return err
			}
			defer store.Close()
			h := ledger.NewHost(cfg, store, store, logger)
			logger.Info("starting", "shards", cfg.Shards, "lease_ttl", cfg.LeaseTTL, "shards_max", cfg.ShardsMax)
			err = h.Run(ctx)
			logger.Info("stopped", "err", err)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&dsn, "dsn", os.Getenv(localpg.EnvDSN), "Postgres DSN of the ledger database")
	f.StringVar(&cfg.Owner, "owner", fmt.Sprintf("%s-%d", host, os.Getpid()), "this process's name in the lease table (unique)")
	f.IntVar(&cfg.Shards, "shards", 64, "logical shards in the system")
	f.IntVar(&cfg.ShardsMax, "shards-max", 0, "most shards this process owns (0 = as many as it can take)")
	f.DurationVar(&cfg.LeaseTTL, "lease-ttl", 5*time.Second, "lease length: a dead owner's shards move after at most this long")
	f.DurationVar(&readyWait, "start-timeout", time.Minute, "how long to wait for the database at start")
	return cmd
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}
