package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/gateway"
	"github.com/fundplatform/fund/gateway/auth"
	"github.com/fundplatform/fund/gateway/server"
	"github.com/fundplatform/fund/internal/localpg"
)

// gatewayFlags are the gateway's limits and listeners, shared by `fundd
// gateway` and `fundd dev`.
type gatewayFlags struct {
	httpAddr, grpcAddr string
	keyFile            string
	jwksFile, jwksURL  string
	cfg                gateway.Config
	breaker            gateway.BreakerConfig
	fastMax            string
	logLevel           string
}

func (g *gatewayFlags) register(f *pflag.FlagSet, httpDefault, grpcDefault string) {
	f.StringVar(&g.httpAddr, "http", httpDefault, "REST/JSON listen address (also /healthz, /readyz, /metrics, /openapi.json)")
	f.StringVar(&g.grpcAddr, "grpc", grpcDefault, "gRPC listen address")
	f.StringVar(&g.keyFile, "jwt-key-file", "", "file holding the JWT signing key (>= 32 bytes); default $"+auth.EnvKey)
	f.StringVar(&g.jwksFile, "jwks-file", "", "JWKS file of an identity provider's public keys (EdDSA, RS256, by kid): its tokens are accepted too; read again as it changes")
	f.StringVar(&g.jwksURL, "jwks-url", "", "JWKS URL of an identity provider's public keys (https, or http on loopback): its tokens are accepted too; fetched again every few minutes and on an unknown kid")
	f.IntVar(&g.cfg.ConcurrencyMax, "concurrency-max", 512, "requests handled at once; more are refused at once with 429")
	f.DurationVar(&g.cfg.LatencyTarget, "latency-target", 0, "adapt the concurrency limit to keep the p99 near this (0 = fixed limit)")
	f.IntVar(&g.cfg.ConcurrencyMin, "concurrency-min", 0, "floor of the adaptive concurrency limit (0 = 16, or --concurrency-max if lower)")
	f.Float64Var(&g.cfg.RatePerCustomer, "rate-per-customer", 20, "requests per second per customer")
	f.IntVar(&g.cfg.RateBurst, "rate-burst", 40, "burst of the per-customer rate limit")
	f.Int64Var(&g.cfg.BodyBytesMax, "body-bytes-max", 16<<10, "largest request body")
	f.DurationVar(&g.cfg.RequestTimeout, "request-timeout", 10*time.Second, "deadline of a request that brings none")
	f.DurationVar(&g.cfg.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "how long shutdown waits for in-flight requests")
	f.BoolVar(&g.cfg.RESTViaLoopback, "rest-via-loopback", false, "route REST through a loopback gRPC connection (slower; for comparison)")
	f.Uint32Var(&g.breaker.ConsecutiveFailures, "breaker-failures", 5, "consecutive failures of a ledger shard that open its breaker")
	f.DurationVar(&g.breaker.OpenFor, "breaker-open-for", 2*time.Second, "how long an open breaker refuses before probing")
	f.StringVar(&g.fastMax, "fast-redeem-daily-max", "10000.00", "fast redemption cap per customer per natural day, CNY")
	f.StringVar(&g.logLevel, "log-level", "info", "debug (every request), info, warn or error")
}

// publicKeys opens the identity provider's key set that --jwks-file or
// --jwks-url names and puts it in the gateway's config (nil, nil when
// neither is given). It fails when the first read fails, so a gateway never
// starts unable to verify its users' tokens. The caller closes the source
// once the gateway has stopped.
func (g *gatewayFlags) publicKeys(ctx context.Context, logger *slog.Logger) (*auth.JWKSSource, error) {
	var (
		src *auth.JWKSSource
		err error
	)
	switch {
	case g.jwksFile != "" && g.jwksURL != "":
		return nil, fmt.Errorf("give --jwks-file or --jwks-url, not both")
	case g.jwksFile != "":
		src, err = auth.NewJWKSFile(ctx, g.jwksFile, auth.JWKSConfig{Logger: logger})
	case g.jwksURL != "":
		src, err = auth.NewJWKSURL(ctx, g.jwksURL, auth.JWKSConfig{Logger: logger})
	default:
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("identity provider's keys: %w", err)
	}
	g.cfg.JWTKeys = src
	return src, nil
}

// sharedKey is the HS256 key of --jwt-key-file or $FUND_JWT_KEY. With an
// identity provider's keys and neither of those it is nil: only the
// provider's tokens are accepted.
func (g *gatewayFlags) sharedKey() ([]byte, error) {
	if g.keyFile == "" && os.Getenv(auth.EnvKey) == "" && (g.jwksFile != "" || g.jwksURL != "") {
		return nil, nil
	}
	return auth.LoadKey(g.keyFile)
}

func (g *gatewayFlags) logger(role string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})).With("process", role), nil
}

func (g *gatewayFlags) accountsConfig() (accounts.Config, error) {
	fen, err := accounts.ParseAmount(g.fastMax)
	if err != nil {
		return accounts.Config{}, fmt.Errorf("--fast-redeem-daily-max: %w", err)
	}
	return accounts.Config{FastRedeemDailyMax: fen}, nil
}

// newGatewayCmd is `fundd gateway`: the API in front of ledger shards
// served by `fundd ledger` processes, found through the lease tables
// (gateway/server).
func newGatewayCmd() *cobra.Command {
	var (
		gf  gatewayFlags
		cfg server.Config
		tc  testClockFlags
	)
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Serve the fund and admin APIs (gRPC and REST/JSON) in front of the ledger shard owners",
		Long: `Serves FundService and AdminService over gRPC and REST/JSON. Customers and orders live in
the accounts database (--dsn), or, with several ledger databases, each in its shard's database;
money moves through the ledger shards' owners (fundd ledger), found in the lease tables of the
ledger databases (--ledger-dsn, default --dsn), each shard behind its own circuit breaker. A shard
without an owner fails fast with 503; retry with the same Idempotency-Key.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if cfg.Logger, err = gf.logger("gateway"); err != nil {
				return err
			}
			if cfg.DSN == "" {
				return fmt.Errorf("--dsn (or %s) is required", localpg.EnvDSN)
			}
			if cfg.JWTKey, err = gf.sharedKey(); err != nil {
				return err
			}
			keys, err := gf.publicKeys(cmd.Context(), cfg.Logger)
			if err != nil {
				return err
			}
			if keys != nil {
				defer keys.Close()
			}
			if cfg.Accounts, err = gf.accountsConfig(); err != nil {
				return err
			}
			cfg.HTTPAddr, cfg.GRPCAddr, cfg.Gateway, cfg.Breaker = gf.httpAddr, gf.grpcAddr, gf.cfg, gf.breaker
			clockDSN := cfg.DSN // the shared clock lives in shard group 0's database
			if len(cfg.LedgerDSNs) > 0 {
				clockDSN = cfg.LedgerDSNs[0]
			}
			clk, err := tc.open(cmd.Context(), clockDSN, cfg.Logger)
			if err != nil {
				return err
			}
			if clk != nil {
				defer clk.Close()
				// Business time for orders, and the admin API's clock
				// calls; tokens and rate limits stay on real time.
				cfg.Accounts.Now, cfg.Gateway.TestClock = clk.Now, clk
			}
			return server.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	gf.register(f, "127.0.0.1:8080", "127.0.0.1:9090")
	f.StringVar(&cfg.DSN, "dsn", os.Getenv(localpg.EnvDSN), "Postgres DSN of the accounts database; with several "+
		"--ledger-dsn the customers live in those, each on its shard's, and this must be the first of them")
	f.StringSliceVar(&cfg.LedgerDSNs, "ledger-dsn", dsnList(os.Getenv(envLedgerDSN)),
		"the ledger databases in shard-map order, as given to fundd ledger (default: $"+envLedgerDSN+", else --dsn)")
	f.IntVar(&cfg.Shards, "shards", 64, "logical ledger shards the customers are spread over (the same as fundd ledger --shards)")
	f.IntVar(&cfg.LedgerAttempts, "ledger-attempts", server.LedgerAttemptsDefault, "attempts of one ledger call at most (the request's deadline bounds their time; 503 once another attempt could not finish before it)")
	f.DurationVar(&cfg.LedgerAttemptTimeout, "ledger-attempt-timeout", server.LedgerAttemptTimeoutDefault, "timeout of one ledger attempt")
	f.DurationVar(&cfg.StartTimeout, "start-timeout", server.StartTimeoutDefault, "how long to wait for the databases at start")
	tc.register(f)
	return cmd
}

// envLedgerDSN names the ledger databases (a comma list in shard-map
// order) from the environment, so that no credential sits on a command line.
const envLedgerDSN = "FUND_LEDGER_DSN"
