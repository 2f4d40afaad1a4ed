//go:build !nodev

// The dev stack (internal/devstack) brings a private Postgres and an
// in-process Kafka broker with it; production images build fundd with
// -tags nodev (deploy/docker/Dockerfile), which leaves this file, and so
// those, out of the binary (dev_off.go stands in).

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fundplatform/fund/gateway/auth"
	"github.com/fundplatform/fund/internal/clock"
	"github.com/fundplatform/fund/internal/devstack"
	"github.com/fundplatform/fund/ledger"
)

// newDevCmd is `fundd dev`: every role in one process on loopback
// (internal/devstack), with settlement on demand and reconciliation.
func newDevCmd() *cobra.Command {
	var (
		gf         gatewayFlags
		dsn        string
		brokers    []string
		tokenTTL   time.Duration
		connsMax   int32
		sharedBufs string
		fileDir    string
		testClock  bool
		start      string
		shards     int
		databases  int
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Every role in one process: private Postgres, in-process Kafka, ledger, relay, accounts, gateway, workers",
		Long: `Starts a private Postgres (or uses --dsn), an in-process Kafka-protocol broker (or --broker),
the ledger owner of every shard (--shards, on --databases databases of the private Postgres:
8 shards on 2 databases by default; customers are spread over the shards, each one's row and
orders in its shard's database), the outbox relay, the accounts service and the gateway on
loopback, plus the settlement and reconciliation workers over every database, and prints where
everything is and an admin token. Ctrl-C stops everything, finishing requests in flight.

With --test-clock the business time (cut-off, trade and confirm dates, settlement,
income, yields, the journal's timestamps) stands still at --start (default: now) until
moved forward with POST /v1/admin/clock:advance {"to": RFC3339} or {"by": "36h"}: a
sandbox in which a subscription confirms, earns and is redeemed in a minute.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			logger, err := gf.logger("dev")
			if err != nil {
				return err
			}
			var key []byte
			if gf.keyFile != "" || os.Getenv(auth.EnvKey) != "" {
				if key, err = auth.LoadKey(gf.keyFile); err != nil {
					return err
				}
			}
			keys, err := gf.publicKeys(ctx, logger)
			if err != nil {
				return err
			}
			if keys != nil {
				defer keys.Close()
			}
			acfg, err := gf.accountsConfig()
			if err != nil {
				return err
			}
			if err := os.MkdirAll(fileDir, 0o755); err != nil {
				return fmt.Errorf("--settlement-dir: %w", err)
			}
			clk, err := devClock(testClock, start)
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("databases") {
				databases = 0 // the stack's default: the one --dsn names, or at most one per shard
			}
			opts := devstack.Options{
				DSN: dsn, Brokers: brokers, HTTPAddr: gf.httpAddr, GRPCAddr: gf.grpcAddr, JWTKey: key,
				Shards: shards, Databases: databases,
				Gateway: gf.cfg, Accounts: acfg, Breaker: gf.breaker, AccountsConnsMax: connsMax,
				PGSettings: map[string]string{"shared_buffers": sharedBufs}, Logger: logger, Clock: clk,
				Settle: &devstack.SettleOptions{FileDir: fileDir}, Recon: &devstack.ReconOptions{},
			}
			st, err := devstack.Start(ctx, opts)
			if err != nil {
				return err
			}
			admin, err := st.Token(0, true, tokenTTL)
			if err != nil {
				_ = st.Stop(context.WithoutCancel(ctx))
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "fundd dev is up (Ctrl-C stops it)\n")
			fmt.Fprintf(out, "  REST     %s   (OpenAPI: %s/openapi.json, metrics: %s/metrics)\n", st.HTTPURL, st.HTTPURL, st.HTTPURL)
			fmt.Fprintf(out, "  gRPC     %s\n", st.GRPCAddr)
			fmt.Fprintf(out, "  Postgres %s\n", strings.Join(st.DSNs, "\n           "))
			fmt.Fprintf(out, "  ledger   %d shards on %d databases (settlement and reconciliation over every one)\n", st.Shards, len(st.DSNs))
			fmt.Fprintf(out, "  Kafka    %v topic %s\n", st.Brokers, st.Topic)
			if testClock {
				fmt.Fprintf(out, "  clock    test clock at %s (move it: POST %s/v1/admin/clock:advance)\n",
					st.Clock.Now().In(ledger.BusinessZone()).Format(time.RFC3339), st.HTTPURL)
			}
			fmt.Fprintf(out, "  admin token (valid %s):\n%s\n", tokenTTL, admin)
			if key == nil {
				fmt.Fprintf(out, "  (random JWT key for this run; give --jwt-key-file or $%s to mint more with fundctl token)\n", auth.EnvKey)
			}
			select {
			case <-ctx.Done():
			case <-st.Done():
			}
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
			defer cancel()
			return st.Stop(sctx)
		},
	}
	f := cmd.Flags()
	gf.register(f, "127.0.0.1:8080", "127.0.0.1:9090")
	f.StringVar(&dsn, "dsn", "", "use this database instead of a private Postgres")
	f.StringSliceVar(&brokers, "broker", nil, "use these Kafka brokers instead of an in-process one")
	f.DurationVar(&tokenTTL, "admin-token-ttl", 24*time.Hour, "lifetime of the printed admin token")
	f.Int32Var(&connsMax, "accounts-conns-max", 64, "accounts store pool size")
	f.StringVar(&sharedBufs, "shared-buffers", "512MB", "shared_buffers of the private Postgres")
	f.BoolVar(&testClock, "test-clock", false, "run business time on a test clock that stands still until the admin API moves it forward")
	f.StringVar(&start, "start", "", "with --test-clock: where the clock starts, RFC 3339 (default: now)")
	f.IntVar(&shards, "shards", devstack.ShardsDefault, "logical ledger shards, all owned by this process; customers are spread over them")
	f.IntVar(&databases, "databases", devstack.DatabasesDefault, "databases of the private Postgres the shards (and their customers) are placed on (1 with --dsn; at most one per shard)")
	f.StringVar(&fileDir, "settlement-dir", filepath.Join(os.TempDir(), "fund-settlement"), "where settlement writes custodian files")
	return cmd
}

// devClock is the dev stack's business clock: nil (the wall clock), or
// with --test-clock a test clock at start (RFC 3339; "" = now).
func devClock(test bool, start string) (clock.Clock, error) {
	if !test {
		if start != "" {
			return nil, fmt.Errorf("--start needs --test-clock")
		}
		return nil, nil
	}
	at := time.Now()
	if start != "" {
		var err error
		if at, err = time.Parse(time.RFC3339, start); err != nil {
			return nil, fmt.Errorf("--start: want an instant in RFC 3339, e.g. 2026-11-09T10:00:00+08:00: %w", err)
		}
	}
	return clock.NewTest(at), nil
}
