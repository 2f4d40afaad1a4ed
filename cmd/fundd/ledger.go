package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	accountspg "github.com/fundplatform/fund/accounts/postgres"
	"github.com/fundplatform/fund/internal/localpg"
	"github.com/fundplatform/fund/ledger/owner"
)

// newLedgerCmd is `fundd ledger`: a process that owns ledger shards through
// leases and serves them over gRPC (ledger/owner).
func newLedgerCmd() *cobra.Command {
	var (
		cfg       owner.Config
		tc        testClockFlags
		orderRows bool
	)
	hostname, _ := os.Hostname()
	cmd := &cobra.Command{
		Use:   "ledger",
		Short: "Own ledger shards through leases and serve them over gRPC",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(cfg.DSNs) == 0 {
				return fmt.Errorf("--dsn (or %s) is required", localpg.EnvDSN)
			}
			cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
			clk, err := tc.open(cmd.Context(), cfg.DSNs[0], cfg.Logger)
			if err != nil {
				return err
			}
			if clk != nil {
				defer clk.Close()
				cfg.Host.Sequencer.Now = clk.Now // the journal's timestamps
			}
			if orderRows {
				// Each customer order's row commits with its entries.
				cfg.Attachments = accountspg.OrderRowsWriter
			}
			return owner.Run(cmd.Context(), cfg)
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&cfg.DSNs, "dsn", dsnList(os.Getenv(localpg.EnvDSN)),
		"Postgres DSN of a ledger database; repeat (or give a comma list) for several, in the same order on every process")
	fl.StringVar(&cfg.Listen, "listen", owner.ListenDefault, "gRPC listen address (port 0: any free port; the lease advertises the real one)")
	fl.StringVar(&cfg.Advertise, "advertise", "", "address clients reach this process at (default: the listen address)")
	fl.StringVar(&cfg.HTTPAddr, "http-addr", "", "serve /metrics, /healthz and /readyz here (empty: no HTTP)")
	fl.StringSliceVar(&cfg.Brokers, "kafka-brokers", nil, "Kafka brokers: relay the owned shards' outboxes and apply cross-shard second legs (empty: neither)")
	fl.StringVar(&cfg.Topic, "topic", owner.TopicDefault, "Kafka topic of the ledger's events")
	fl.StringVar(&cfg.XShardGroup, "xshard-group", owner.XShardGroupDefault, "consumer group applying cross-shard second legs (empty: this process applies none)")
	fl.StringVar(&cfg.Host.Owner, "owner", fmt.Sprintf("%s-%d", hostname, os.Getpid()), "this process's name in the lease table (unique)")
	fl.IntVar(&cfg.Host.Shards, "shards", 64, "logical shards in the system")
	fl.IntVar(&cfg.Host.ShardsMax, "shards-max", 0, "most shards this process owns (0 = as many as it can take)")
	fl.DurationVar(&cfg.Host.LeaseTTL, "lease-ttl", 5*time.Second, "lease length: a dead owner's shards move after at most this long")
	fl.DurationVar(&cfg.StartTimeout, "start-timeout", owner.StartTimeoutDefault, "how long to wait for the databases at start")
	tc.register(fl)
	fl.StringVar(&cfg.Fill, "fill", "auto", "sequencers fill the next batch while one commits: auto (when several shards share a database), on, off")
	fl.BoolVar(&orderRows, "order-rows", true, "write customer orders' rows in the ledger's commit, with their entries "+
		"(the accounts tables must be in the ledger's databases, as fundd migrate puts them)")
	return cmd
}

// dsnList splits a comma list of DSNs from the environment.
func dsnList(env string) []string {
	if env == "" {
		return nil
	}
	return strings.Split(env, ",")
}
