package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/fundplatform/fund/internal/localpg"
	"github.com/fundplatform/fund/ledger/ledgerbench"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "fundctl",
		Short:         "Operate and measure the fund platform",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	bench := &cobra.Command{Use: "bench", Short: "Benchmarks against a private Postgres or --dsn"}
	// Every bench can write a Go CPU profile of its whole run: the hooks
	// start it before the subcommand and stop it after.
	var cpuProf string
	var cpuFile *os.File
	bench.PersistentFlags().StringVar(&cpuProf, "cpuprofile", "", "write a Go CPU profile of the run to this file")
	bench.PersistentPreRunE = func(*cobra.Command, []string) error {
		if cpuProf == "" {
			return nil
		}
		f, err := os.Create(cpuProf)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			_ = f.Close()
			return err
		}
		cpuFile = f
		return nil
	}
	bench.PersistentPostRunE = func(*cobra.Command, []string) error {
		if cpuFile == nil {
			return nil
		}
		pprof.StopCPUProfile()
		return cpuFile.Close()
	}
	bench.AddCommand(newBenchLedgerCmd())
	bench.AddCommand(newBenchGatewayCmd())
	bench.AddCommand(newBenchSettleCmd())
	ledgerCmd := &cobra.Command{Use: "ledger", Short: "Ledger operations"}
	ledgerCmd.AddCommand(newLedgerVerifyCmd(), newLedgerOwnersCmd(), newLedgerTransferCmd())
	root.AddCommand(bench, ledgerCmd, newAccountsCmd(), newDevCmd())
	root.AddCommand(newLoadtestCmd(), newDemoCmd(), newRehearseCmd())
	root.AddCommand(newTokenCmd())
	root.AddCommand(newReconCmd())
	root.AddCommand(newSettleCmd())
	return root
}

// database yields a DSN: the one given, or a fresh database on a private
// Postgres started for the command and stopped by the returned function
// (srv is then that server, nil otherwise).
func database(ctx context.Context, dsn, name string, settings map[string]string, progress io.Writer) (string, *localpg.Server, func(), error) {
	if dsn != "" {
		return dsn, nil, func() {}, nil
	}
	fmt.Fprintln(progress, "starting a private Postgres...")
	srv, err := localpg.Start(ctx, localpg.Options{Settings: settings})
	if err != nil {
		return "", nil, nil, err
	}
	stop := func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = srv.Stop(sctx)
	}
	dsn, err = srv.CreateDatabase(ctx, fmt.Sprintf("%s_%d", name, time.Now().UnixNano()))
	if err != nil {
		stop()
		return "", nil, nil, err
	}
	return dsn, srv, stop, nil
}

// pgbenchTPS runs pgbench's built-in TPC-B-like script (scale 10, 32
// clients) for d on a fresh database of srv: the yardstick of what this
// Postgres does with one transaction and row locks per operation.
func pgbenchTPS(ctx context.Context, srv *localpg.Server, d time.Duration, progress io.Writer) (float64, error) {
	bin, err := localpg.FindBinaries()
	if err != nil {
		return 0, err
	}
	dsn, err := srv.CreateDatabase(ctx, fmt.Sprintf("pgbench_%d", time.Now().UnixNano()))
	if err != nil {
		return 0, err
	}
	pgbench := filepath.Join(bin, "pgbench")
	fmt.Fprintln(progress, "pgbench: initialising scale 10...")
	if out, err := exec.CommandContext(ctx, pgbench, "-i", "-q", "-s", "10", dsn).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("pgbench -i: %v: %s", err, out)
	}
	fmt.Fprintf(progress, "pgbench: TPC-B-like, 32 clients, %s...\n", d)
	out, err := exec.CommandContext(ctx, pgbench, "-c", "32", "-j", "2", "-T", strconv.Itoa(int(d.Seconds())), dsn).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("pgbench: %v: %s", err, out)
	}
	m := regexp.MustCompile(`tps = ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("pgbench printed no tps: %s", out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

func newBenchLedgerCmd() *cobra.Command {
	var (
		cfg         ledgerbench.Config
		dsn         string
		asJSON      bool
		sharedB     string
		pgSet       map[string]string
		withPgbench bool
	)
	cmd := &cobra.Command{
		Use:   "ledger",
		Short: "Drive one ledger shard in-process with many concurrent clients",
		Long: `Drives a ledger shard in-process against a private Postgres (or --dsn) with many
concurrent clients, then verifies that journal and balances agree. Fails if they do not.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			progress := cmd.ErrOrStderr()
			if asJSON {
				progress = io.Discard
			}
			settings := map[string]string{"shared_buffers": sharedB}
			for k, v := range pgSet {
				settings[k] = v
			}
			db, srv, stop, err := database(ctx, dsn, "bench_ledger", settings, progress)
			if err != nil {
				return err
			}
			defer stop()
			var pgbenchResult float64
			if withPgbench {
				if srv == nil {
					return fmt.Errorf("--pgbench needs the private Postgres (no --dsn)")
				}
				if pgbenchResult, err = pgbenchTPS(ctx, srv, 10*time.Second, progress); err != nil {
					return err
				}
				fmt.Fprintf(progress, "pgbench TPC-B-like (scale 10, 32 clients) on this Postgres: %.0f tps\n", pgbenchResult)
			}
			cfg.DSN = db
			cfg.Progress = progress
			if srv != nil {
				cfg.PGDataDir = srv.DataDir()
			}
			if cfg.Seed == 0 {
				cfg.Seed = uint64(time.Now().UnixNano())
			}
			fmt.Fprintf(progress, "bench ledger: %d accounts, %d clients, batch %d, skew %s, %d shards (%.0f%% cross-shard), %s, seed %d\n",
				cfg.Accounts, cfg.Clients, cfg.Batch, cfg.Skew, max(cfg.Shards, 1), 100*cfg.CrossShard, cfg.Duration, cfg.Seed)
			res, err := ledgerbench.Run(ctx, cfg)
			if err != nil {
				return err
			}
			res.PgbenchTPS = pgbenchResult
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				if err := enc.Encode(res); err != nil {
					return err
				}
			} else {
				out := cmd.OutOrStdout()
				fmt.Fprintf(out, "transfers/s     %12.0f   (%d transfers, %d rejected, in %.1fs)\n",
					res.TransfersPerSec, res.Transfers, res.Rejected, res.DurationSeconds)
				fmt.Fprintf(out, "requests/s      %12.0f\n", res.RequestsPerSec)
				fmt.Fprintf(out, "latency ms      p50 %.2f  p99 %.2f  p999 %.2f  max %.2f\n", res.P50Ms, res.P99Ms, res.P999Ms, res.MaxMs)
				fmt.Fprintf(out, "batch mean      %12.1f   (%d batches)\n", res.BatchMean, res.Batches)
				fmt.Fprintf(out, "CPU per transfer  Go %.1f us, Postgres %.1f us   (relay, broker, consumer running: %v)\n",
					res.GoCPUMicros, res.PGCPUMicros, res.Pipeline)
				if res.Shards > 1 {
					fmt.Fprintf(out, "in-transit net  %12d   (after every saga ended)\n", res.InTransitNet)
				}
				fmt.Fprintf(out, "verified        %12v   (%.1fs)\n", res.Verified, res.VerifySeconds)
				if res.PgbenchTPS > 0 {
					fmt.Fprintf(out, "pgbench tps     %12.0f   (TPC-B-like, scale 10, 32 clients, same Postgres, just before)\n", res.PgbenchTPS)
				}
			}
			if !res.Verified {
				return fmt.Errorf("verification failed: %d problems", res.VerifyProblems)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dsn, "dsn", os.Getenv(localpg.EnvDSN), "Postgres DSN; empty = start a private Postgres")
	f.IntVar(&cfg.Accounts, "accounts", 100_000, "user accounts")
	f.IntVar(&cfg.Clients, "clients", 1000, "concurrent clients")
	f.IntVar(&cfg.Batch, "batch", 1, "transfers per request")
	f.StringVar(&cfg.Skew, "skew", "uniform", "account choice: uniform, zipf or hot (every transfer credits one account)")
	f.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to run the load")
	f.Uint64Var(&cfg.Seed, "seed", 0, "random seed (0 = from the clock)")
	f.IntVar(&cfg.BatchMax, "batch-max", 0, "sequencer batch limit in transfers (0 = default)")
	f.BoolVar(&asJSON, "json", false, "print one JSON object on stdout")
	f.IntVar(&cfg.Shards, "shards", 1, "shards, each with its own sequencer, on the same database")
	f.Float64Var(&cfg.CrossShard, "cross-shard", 0, "with --shards: fraction of transfers between shards (sagas through Kafka)")
	f.BoolVar(&cfg.NoOutbox, "no-outbox", false, "leave the transactional outbox out of the commits (bare ledger)")
	f.BoolVar(&cfg.NoPipeline, "no-pipeline", false, "one shard: leave out the outbox relay, broker and consumer that fundd ledger runs beside its shards")
	f.StringVar(&cfg.Fill, "fill", "auto", "sequencers fill the next batch until the one in flight committed: on, off, auto (on with --shards > 1)")
	f.StringVar(&sharedB, "shared-buffers", "1GB", "shared_buffers of the private Postgres")
	f.BoolVar(&withPgbench, "pgbench", false, "first measure pgbench's TPC-B-like TPS (scale 10, 32 clients) on the same Postgres")
	f.StringToStringVar(&pgSet, "pg-set", nil, "extra settings of the private Postgres, name=value")
	return cmd
}
