// Command fundcluster runs the platform as a multi-process cluster on this
// machine (deploy/local): a private Postgres, a Kafka-protocol broker
// process (fundbroker, or --kafka-brokers), three `fundd ledger` owners,
// two `fundd gateway` processes behind a round-robin front, a `fundd recon`
// worker and the `fundd settle` scheduler, each restarted by a supervisor
// if it dies. It prints the front's URL, the DSNs and a load-test
// command, and runs until Ctrl-C, then stops everything in order.
//
//	go run ./deploy/local/cmd/fundcluster
//	go run ./deploy/local/cmd/fundcluster --kill-owner-after 30s   # and see the shard move
//	go run ./deploy/local/cmd/fundcluster --test-clock --test-clock-start 2026-11-09T10:00:00+08:00   # a rehearsal
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/fundplatform/fund/deploy/local"
	"github.com/fundplatform/fund/ledger"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fundcluster:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	var (
		cfg       local.Config
		brokers   string
		killAfter time.Duration
		verbose   bool
		clockAt   string
	)
	fs := flag.NewFlagSet("fundcluster", flag.ContinueOnError)
	fs.StringVar(&cfg.Fundd, "fundd", "", "fundd binary (default: go build ./cmd/fundd into --dir)")
	fs.StringVar(&cfg.Dir, "dir", "", "directory for logs, the JWT key and the binary (default: a temporary one, removed at the end)")
	fs.IntVar(&cfg.Owners, "owners", local.OwnersDefault, "fundd ledger processes")
	fs.IntVar(&cfg.Gateways, "gateways", local.GatewaysDefault, "fundd gateway processes")
	fs.IntVar(&cfg.Shards, "shards", local.ShardsDefault, "logical ledger shards the customers are spread over")
	fs.IntVar(&cfg.LedgerDatabases, "ledger-databases", local.LedgerDatabasesDefault, "databases the shards (ledger and customers) are spread over (at most --shards)")
	fs.DurationVar(&cfg.LeaseTTL, "lease-ttl", local.LeaseTTLDefault, "shard lease TTL")
	fs.StringVar(&brokers, "kafka-brokers", "", "external Kafka brokers, comma-separated (default: a fundbroker process)")
	fs.StringVar(&cfg.FrontAddr, "front", "127.0.0.1:8080", "address of the round-robin front")
	fs.DurationVar(&killAfter, "kill-owner-after", 0, "kill -9 the owner of shard 0 this long after start (0 = never)")
	fs.BoolVar(&verbose, "v", false, "log the cluster's steps")
	fs.BoolVar(&cfg.TestClock, "test-clock", false, "REHEARSALS ONLY: every process on one shared test clock, moved by POST /v1/admin/clock:advance on a gateway")
	fs.StringVar(&clockAt, "test-clock-start", "", "with --test-clock: where the clock starts, RFC 3339 (default: now)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if clockAt != "" {
		if !cfg.TestClock {
			return errors.New("--test-clock-start needs --test-clock")
		}
		at, err := time.Parse(time.RFC3339, clockAt)
		if err != nil {
			return fmt.Errorf("--test-clock-start: want an instant in RFC 3339, e.g. 2026-11-09T10:00:00+08:00: %w", err)
		}
		cfg.TestClockStart = at
	}
	if brokers != "" {
		cfg.Brokers = strings.Split(brokers, ",")
	}
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	fmt.Fprintln(os.Stderr, "starting the cluster (building fundd and fundbroker, Postgres, Kafka, owners, gateways)...")
	c, err := local.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(os.Stderr, "stopping...")
		if serr := c.Stop(context.Background()); serr != nil {
			err = errors.Join(err, serr)
		}
	}()
	printCluster(c)

	var killC <-chan time.Time
	if killAfter > 0 {
		killC = time.After(killAfter)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-killC:
			killC = nil
			if err := killOwner(ctx, c); err != nil {
				return err
			}
		}
	}
}

func killOwner(ctx context.Context, c *local.Cluster) error {
	p, err := c.OwnerOf(ctx, 0)
	if err != nil {
		return err
	}
	held, err := c.ShardsOf(ctx, p)
	if err != nil {
		return err
	}
	pid, start := p.Pid(), time.Now()
	if err := p.Kill(); err != nil {
		return err
	}
	fmt.Printf("killed %s (pid %d, owner of shards %v) with SIGKILL\n", p.Name, pid, held)
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := c.WaitOwned(wctx); err != nil {
		return err
	}
	now, err := c.OwnerOf(ctx, 0)
	if err != nil {
		return err
	}
	fmt.Printf("shard 0 owned by %s %s later (lease TTL %s)\n", now.Name, time.Since(start).Round(10*time.Millisecond), c.LeaseTTL)
	return nil
}

func printCluster(c *local.Cluster) {
	fmt.Printf("front (round-robin over %d gateways): %s\n", len(c.Gateways), c.URL)
	for _, p := range c.Gateways {
		fmt.Printf("  %-10s pid %-7d http://%s  log %s\n", p.Name, p.Pid(), p.HTTPAddr, p.LogPath)
	}
	for _, p := range append(c.Owners, c.Recon) {
		fmt.Printf("  %-10s pid %-7d http://%s/metrics  log %s\n", p.Name, p.Pid(), p.HTTPAddr, p.LogPath)
	}
	fmt.Printf("  %-10s pid %-7d log %s\n", c.Settle.Name, c.Settle.Pid(), c.Settle.LogPath)
	fmt.Printf("ledger databases:  %s (each with its shards' customers and orders; as %s)\n", strings.Join(c.LedgerDSNs, ","), c.ServiceRole)
	fmt.Printf("  as the owner:    %s (migrations: fundd migrate)\n", strings.Join(c.OwnerDSNs, ","))
	fmt.Printf("kafka:             %s (topic %s)\n", strings.Join(c.Brokers, ","), c.Topic)
	if c.Broker != nil {
		fmt.Printf("  %-10s pid %-7d log %s\n", c.Broker.Name, c.Broker.Pid(), c.Broker.LogPath)
		fmt.Printf("  a broker outage that keeps its data (section 6.2 of docs/operations.md):\n")
		fmt.Printf("    curl -s -X POST http://%s/down; sleep 10; curl -s -X POST http://%s/up\n", c.Broker.HTTPAddr, c.Broker.HTTPAddr)
	}
	fmt.Printf("a role that dies (kill -9 PID) is restarted by the cluster's supervisor, as Kubernetes would\n")
	fmt.Printf("JWT key file:      %s\n", c.KeyFile)
	fmt.Printf("\nload (the demo's Double-11 profile, audited):\n")
	fmt.Printf("  go run ./cmd/fundctl loadtest --target %s --jwt-key-file %s --profile double11 --duration 1m --peak-rps 200 --audit --dsn '%s' --shards %d\n",
		c.URL, c.KeyFile, strings.Join(c.LedgerDSNs, ","), c.Shards)
	fmt.Printf("admin token:\n  go run ./cmd/fundctl token --admin --key-file %s\n", c.KeyFile)
	fmt.Printf("settle a business date D once it has ended (fundd settle takes the shards for the run):\n")
	fmt.Printf("  echo income_per_10k=0.6543 > %s/D    # custodian file appears in %s\n", c.IncomeDir, c.FileDir)
	if !c.TestClockStart.IsZero() {
		fmt.Printf("TEST CLOCK (never in production): business time started at %s and moves only when asked:\n",
			c.TestClockStart.In(ledger.BusinessZone()).Format(time.RFC3339))
		fmt.Printf("  curl -s %s/v1/admin/clock:advance -H \"Authorization: Bearer $ADMIN\" -H 'Idempotency-Key: clock-1' --json '{\"by\":\"24h\"}'\n", c.URL)
		fmt.Printf("  (every process sees a move within 200 ms; fundd settle settles from %s on)\n",
			c.TestClockStart.In(ledger.BusinessZone()).Format(time.DateOnly))
	}
	fmt.Printf("reconciliation breaks:\n  go run ./cmd/fundctl recon report --dsn '%s' --shards %d\n", strings.Join(c.LedgerDSNs, ","), c.Shards)
	fmt.Printf("\nCtrl-C stops everything.\n")
}
