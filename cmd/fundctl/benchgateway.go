package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/fundplatform/fund/internal/devstack"
	"github.com/fundplatform/fund/internal/localpg"
	"github.com/fundplatform/fund/loadtest/gatewaybench"
)

// newBenchGatewayCmd is `fundctl bench gateway`: subscribe requests/s
// through REST on loopback, and shedding at a multiple of that.
func newBenchGatewayCmd() *cobra.Command {
	var (
		cfg    gatewaybench.Config
		asJSON bool
		shards string
	)
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Subscribe requests/s through the REST gateway on loopback (devstack in-process), then shedding at 2x",
		Long: `Starts the whole stack in-process (private Postgres or --dsn, broker, ledger, accounts, gateway on
loopback), opens and funds --customers customers, then drives POST /v1/customers/{id}/subscriptions
with per-customer tokens and Idempotency-Keys: a closed loop of --clients connections for --duration
(what the stack sustains, with p50/p99 of the answers), then an open loop offering --open-factor
times that rate (429 shedding, p99 of the accepted requests from their scheduled start).
The load generator runs in the same process, on the same cores.

The customers are spread over --shards ledger shards on --databases databases of the private
Postgres. A list of shard counts (--shards 1,2,4,8) runs the whole bench once per count, one after
the other, each on a fresh stack with the same other flags, and prints one row per count: the
closed loop's ok/s, p50/p99 and CPU per order (this process and Postgres), and each as a ratio to
the first row's. With --json: the run (one count) or {"rows": [...]} (several).`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			counts, err := gatewaybench.ParseShardCounts(shards)
			if err != nil {
				return fmt.Errorf("--shards: %w", err)
			}
			// The whole stack runs in this process; collect garbage a
			// quarter as often as by default (as fundd can with GOGC=400):
			// about a tenth less CPU per request for some more memory.
			if os.Getenv("GOGC") == "" {
				debug.SetGCPercent(400)
			}
			if !asJSON {
				cfg.Progress = cmd.ErrOrStderr()
			}
			if len(counts) > 1 {
				return benchGatewayShards(cmd, cfg, counts, asJSON)
			}
			cfg.Shards = counts[0]
			res, err := gatewaybench.Run(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(out).Encode(res)
			}
			fmt.Fprintf(out, "%d ledger shards on %d databases, %d customers, %d closed-loop clients, REST via loopback gRPC: %v\n",
				res.Shards, res.Databases, res.Customers, res.Clients, res.Loopback)
			for _, p := range res.Phases {
				fmt.Fprintf(out, "%-22s ok/s %8.0f  p50 %6.2f ms  p99 %6.2f ms  p999 %6.2f ms  max %7.2f ms | ok %d  429 %d (p99 %.2f ms)  422 %d  errors %d  not sent %d\n",
					p.Name, p.OKPerSec, p.P50Ms, p.P99Ms, p.P999Ms, p.MaxMs, p.OK, p.Shed, p.ShedP99Ms, p.Rejected, p.Errors, p.NotSent)
				fmt.Fprintf(out, "%-22s ok p99 on the wire (request written to answer read) %.2f ms\n", "", p.WireP99Ms)
				fmt.Fprintf(out, "%-22s CPU per request: %.0f µs in this process (gateway, accounts, ledger writer, load generator), %.0f µs in Postgres\n",
					"", p.GoCPUMicros, p.PGCPUMicros)
				if p.FirstError != "" {
					fmt.Fprintf(out, "  first error: %s\n", p.FirstError)
				}
			}
			fmt.Fprintf(out, "order batches %d (mean %.1f orders), time in steps (ms, summed over batches): %v; ledger batches %d, events %d\n",
				res.OrderBatches, res.OrderBatchMean, res.OrderStepsMs, res.LedgerBatches, res.LedgerEvents)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DSN, "dsn", os.Getenv(localpg.EnvDSN), "Postgres DSN; empty = a private Postgres")
	f.StringVar(&shards, "shards", strconv.Itoa(devstack.ShardsDefault), "ledger shards the customers are spread over, or a list of counts to compare (1,2,4,8): a run each")
	// One database by default, as the bench has always measured (and as
	// --shards 1 needs); issue 15's comparison names --databases 2.
	f.IntVar(&cfg.Databases, "databases", 1, "databases of the private Postgres the shards are placed on (at most one per shard)")
	f.IntVar(&cfg.Customers, "customers", 2000, "customers (each with its own token and rate limit)")
	f.IntVar(&cfg.Clients, "clients", 256, "closed-loop connections")
	f.DurationVar(&cfg.Duration, "duration", 10*time.Second, "length of each phase")
	f.Float64Var(&cfg.OpenRateFactor, "open-factor", 2, "open-loop phase at this multiple of the closed loop's ok/s (0 = skip)")
	f.Float64Var(&cfg.OpenRate, "open-rate", 0, "open-loop phase at this fixed rate instead")
	f.IntVar(&cfg.Gateway.ConcurrencyMax, "concurrency-max", 0, "gateway concurrency limit (0 = its default)")
	f.DurationVar(&cfg.Gateway.LatencyTarget, "latency-target", 0, "gateway adaptive concurrency limit target (0 = fixed limit)")
	f.Float64Var(&cfg.Gateway.RatePerCustomer, "rate-per-customer", 0, "gateway per-customer rate (0 = its default)")
	f.IntVar(&cfg.OrderWriters, "order-writers", 0, "accounts store order writers (0 = its default)")
	f.BoolVar(&cfg.Fill, "fill", false, "the ledger's sequencers fill their next batch while one commits, every shard (default: where several shards share a database)")
	f.IntVar(&cfg.OrderBatchMax, "order-batch-max", 0, "accounts store orders per batch (0 = its default)")
	f.BoolVar(&cfg.Loopback, "rest-via-loopback", false, "REST through a loopback gRPC connection")
	f.StringToStringVar(&cfg.PGSettings, "pg-set", nil, "settings of the private Postgres, name=value")
	f.BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}

// benchGatewayShards runs the bench once per shard count and prints a row
// per count (or the rows as JSON).
func benchGatewayShards(cmd *cobra.Command, cfg gatewaybench.Config, counts []int, asJSON bool) error {
	rows, err := gatewaybench.RunShards(cmd.Context(), cfg, counts)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if asJSON {
		return json.NewEncoder(out).Encode(struct {
			Rows []gatewaybench.Row `json:"rows"`
		}{rows})
	}
	fmt.Fprintf(out, "%d customers, %d closed-loop clients, %s per row; ratios to the first row\n", cfg.Customers, cfg.Clients, cfg.Duration)
	fmt.Fprintf(out, "%6s %4s %9s %8s %8s %11s %11s %7s %7s %7s %7s\n",
		"shards", "dbs", "ok/s", "p50 ms", "p99 ms", "Go µs/ord", "PG µs/ord", "errors", "x ok/s", "x Go", "x PG")
	for _, r := range rows {
		fmt.Fprintf(out, "%6d %4d %9.0f %8.2f %8.2f %11.0f %11.0f %7d %7.2f %7.2f %7.2f\n",
			r.Shards, r.Databases, r.OKPerSec, r.P50Ms, r.P99Ms, r.GoCPUMicros, r.PGCPUMicros, r.Errors,
			r.OKPerSecRatio, r.GoCPURatio, r.PGCPURatio)
	}
	return nil
}
