package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/fundplatform/fund/gateway/auth"
	"github.com/fundplatform/fund/internal/devstack"
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
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Every role in one process: private Postgres, in-process Kafka, ledger, relay, accounts, gateway, workers",
		Long: `Starts a private Postgres (or uses --dsn), an in-process Kafka-protocol broker (or --broker),
ledger shard 0, the outbox relay, the accounts service and the gateway on loopback, plus the
settlement and reconciliation workers, and prints where everything is and an admin token.
Ctrl-C stops everything, finishing requests in flight.`,
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
			acfg, err := gf.accountsConfig()
			if err != nil {
				return err
			}
			if err := os.MkdirAll(fileDir, 0o755); err != nil {
				return fmt.Errorf("--settlement-dir: %w", err)
			}
			st, err := devstack.Start(ctx, devstack.Options{
				DSN: dsn, Brokers: brokers, HTTPAddr: gf.httpAddr, GRPCAddr: gf.grpcAddr, JWTKey: key,
				Gateway: gf.cfg, Accounts: acfg, Breaker: gf.breaker, AccountsConnsMax: connsMax,
				PGSettings: map[string]string{"shared_buffers": sharedBufs},
				Settle:     &devstack.SettleOptions{FileDir: fileDir}, Recon: &devstack.ReconOptions{}, Logger: logger,
			})
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
			fmt.Fprintf(out, "  Postgres %s\n", st.DSN)
			fmt.Fprintf(out, "  Kafka    %v topic %s\n", st.Brokers, st.Topic)
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
	f.StringVar(&fileDir, "settlement-dir", filepath.Join(os.TempDir(), "fund-settlement"), "where settlement writes custodian files")
	return cmd
}
