package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/fundplatform/fund/accounts"
	accountspg "github.com/fundplatform/fund/accounts/postgres"
	"github.com/fundplatform/fund/gateway"
	"github.com/fundplatform/fund/ledger"
	ledgergrpc "github.com/fundplatform/fund/ledger/grpc"
	ledgerpg "github.com/fundplatform/fund/ledger/postgres"
)

// Defaults of Config (the flags of `fundd gateway` have the same).
const (
	ShardsDefault               = 1
	LedgerAttemptsDefault       = 3
	LedgerAttemptTimeoutDefault = 2 * time.Second
	StartTimeoutDefault         = time.Minute
	// accountsConnsMax is the accounts store's pool: enough for the
	// order writers and the reads of a busy gateway.
	accountsConnsMax = 64
	// ledgerConnsMax per ledger database: the gateway reads only the
	// lease tables there.
	ledgerConnsMax = 4
)

// Config is the gateway role's settings.
type Config struct {
	// HTTPAddr and GRPCAddr are the REST/JSON (also /healthz, /readyz,
	// /metrics, /openapi.json) and gRPC listen addresses.
	HTTPAddr, GRPCAddr string
	// DSN of the accounts database (required).
	DSN string
	// LedgerDSNs are the ledger databases in shard-map order, as given to
	// the ledger owners; empty = DSN alone.
	LedgerDSNs []string
	// Shards is the number of logical ledger shards; 0 = ShardsDefault
	// (the accounts service keeps a customer's and the fund's accounts on
	// one shard, so 1 today).
	Shards int
	// LedgerAttempts of one ledger call before answering 503 (small: fail
	// fast, the client retries); 0 = LedgerAttemptsDefault.
	LedgerAttempts int
	// LedgerAttemptTimeout of one ledger attempt; 0 =
	// LedgerAttemptTimeoutDefault.
	LedgerAttemptTimeout time.Duration
	// StartTimeout bounds waiting for the databases at start; 0 =
	// StartTimeoutDefault.
	StartTimeout time.Duration
	// Gateway is the gateway's limits and timeouts, and the Settler and
	// Reconciler it serves (nil: those admin calls answer 501). The role
	// fills in the key, the accounts service, the registry, the metrics,
	// the logger and the readiness checks.
	Gateway gateway.Config
	// JWTKey signs and verifies tokens (required, auth.KeyLenMin bytes).
	JWTKey []byte
	// Breaker tunes the circuit breaker in front of each shard.
	Breaker gateway.BreakerConfig
	// Accounts tunes the accounts service (fast-redemption cap).
	Accounts accounts.Config
	// Logger; nil = discard.
	Logger *slog.Logger
}

// Run serves the APIs until ctx ends, then shuts down gracefully.
func Run(ctx context.Context, cfg Config) error {
	if cfg.DSN == "" {
		return errors.New("no accounts database (DSN) given")
	}
	if len(cfg.LedgerDSNs) == 0 {
		cfg.LedgerDSNs = []string{cfg.DSN}
	}
	cfg.Shards = cmp.Or(cfg.Shards, ShardsDefault)
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	octx, cancel := context.WithTimeout(ctx, cmp.Or(cfg.StartTimeout, StartTimeoutDefault))
	defer cancel()
	dbs, err := ledgerpg.OpenDatabases(octx, ledgerpg.DatabasesConfig{DSNs: cfg.LedgerDSNs, Shards: cfg.Shards, ConnsMax: ledgerConnsMax})
	if err != nil {
		return fmt.Errorf("ledger databases: %w", err)
	}
	defer dbs.Close()
	router := ledgergrpc.NewClient(ledgergrpc.ClientConfig{Shards: cfg.Shards,
		AttemptsMax:    cmp.Or(cfg.LedgerAttempts, LedgerAttemptsDefault),
		AttemptTimeout: cmp.Or(cfg.LedgerAttemptTimeout, LedgerAttemptTimeoutDefault), Logger: logger}, dbs)
	defer router.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := gateway.NewMetrics(reg)
	lc := gateway.NewShardedClient(cfg.Shards, router.ForShard, cfg.Breaker, metrics.BreakerChanged)
	for _, b := range lc.Breakers() {
		metrics.BreakerState.WithLabelValues(b.Target()).Set(0)
	}
	store, err := accountspg.Open(octx, accountspg.Config{DSN: cfg.DSN, ConnsMax: accountsConnsMax})
	if err != nil {
		return fmt.Errorf("accounts store: %w", err)
	}
	defer store.Close()
	svc, err := accounts.NewService(octx, cfg.Accounts, store, lc, logger.With("role", "accounts"))
	if err != nil {
		return err
	}
	cancel()
	gcfg := cfg.Gateway
	gcfg.JWTKey, gcfg.Accounts, gcfg.Registry, gcfg.Metrics, gcfg.Logger = cfg.JWTKey, svc, reg, metrics, logger
	gcfg.Ready = append(gcfg.Ready,
		func(ctx context.Context) error { return store.Pool().Ping(ctx) },
		func(ctx context.Context) error { return ownersKnown(ctx, dbs) },
	)
	gw, err := gateway.New(gcfg)
	if err != nil {
		return err
	}
	httpLn, grpcLn, err := listenBoth(cfg.HTTPAddr, cfg.GRPCAddr)
	if err != nil {
		return err
	}
	return gw.Serve(ctx, httpLn, grpcLn)
}

// ownersKnown is ready when every shard has a live owner.
func ownersKnown(ctx context.Context, dir ledger.Directory) error {
	owners, err := dir.ShardOwners(ctx)
	if err != nil {
		return err
	}
	var missing []string
	for _, o := range owners {
		if o.Owner == "" || o.Addr == "" {
			missing = append(missing, fmt.Sprint(o.Shard))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("shards without an owner: %s", strings.Join(missing, ","))
	}
	return nil
}

func listenBoth(httpAddr, grpcAddr string) (net.Listener, net.Listener, error) {
	h, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen --http %s: %w", httpAddr, err)
	}
	g, err := net.Listen("tcp", grpcAddr)
	if err != nil {
		return nil, nil, errors.Join(fmt.Errorf("listen --grpc %s: %w", grpcAddr, err), h.Close())
	}
	return h, g, nil
}
