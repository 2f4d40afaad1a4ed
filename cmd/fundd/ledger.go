package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/fundplatform/fund/deploy/localpg"
	"github.com/fundplatform/fund/ledger"
	ledgergrpc "github.com/fundplatform/fund/ledger/grpc"
	"github.com/fundplatform/fund/ledger/postgres"
)

// grpcStopTimeout bounds how long a clean stop waits for calls in flight
// before cutting them (their clients retry at the shards' next owners).
const grpcStopTimeout = 5 * time.Second

// newLedgerCmd is `fundd ledger`: a process that owns ledger shards through
// leases and serves them over gRPC. The shards live on the databases given
// by --dsn, placed by ledger.ShardMap (contiguous ranges, in the order the
// DSNs are given: every process must get the same list); each shard's
// lease is kept in its own database, with this process's address, so that
// the routing client (ledger/grpc) finds the owner.
func newLedgerCmd() *cobra.Command {
	var (
		dsns      []string
		listen    string
		advertise string
		cfg       ledger.HostConfig
		readyWait time.Duration
	)
	host, _ := os.Hostname()
	cmd := &cobra.Command{
		Use:   "ledger",
		Short: "Own ledger shards through leases and serve them over gRPC",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			logger := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("role", "ledger", "owner", cfg.Owner)
			if len(dsns) == 0 {
				return fmt.Errorf("--dsn (or %s) is required", localpg.EnvDSN)
			}
			lis, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("listen: %w", err)
			}
			defer lis.Close()
			if cfg.Address, err = advertised(lis.Addr(), advertise); err != nil {
				return err
			}

			octx, cancel := context.WithTimeout(ctx, readyWait)
			dbs, err := postgres.OpenDatabases(octx, postgres.DatabasesConfig{DSNs: dsns, Shards: cfg.Shards})
			cancel()
			if err != nil {
				return err
			}
			defer dbs.Close()

			h := ledger.NewHost(cfg, dbs, dbs, logger)
			srv := grpc.NewServer()
			ledgergrpc.NewServer(cfg.Shards, h.Client).Register(srv)
			var wg sync.WaitGroup
			serveErr := make(chan error, 1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				serveErr <- srv.Serve(lis)
			}()
			defer func() {
				stopGRPC(srv)
				wg.Wait()
			}()

			logger.Info("starting", "shards", cfg.Shards, "databases", dbs.Len(), "addr", cfg.Address,
				"lease_ttl", cfg.LeaseTTL, "shards_max", cfg.ShardsMax)
			hctx, stopHost := context.WithCancel(ctx)
			defer stopHost()
			hostErr := make(chan error, 1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				hostErr <- h.Run(hctx)
			}()
			// The host stops first (its sequencers answer what they took,
			// leases are released so the shards move at once); calls that
			// arrive meanwhile are answered "not owner" and go elsewhere.
			select {
			case err = <-hostErr:
			case err = <-serveErr:
				err = fmt.Errorf("grpc server: %w", err)
				stopHost()
				<-hostErr
			}
			logger.Info("stopped", "err", err)
			return err
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&dsns, "dsn", dsnList(os.Getenv(localpg.EnvDSN)),
		"Postgres DSN of a ledger database; repeat (or give a comma list) for several, in the same order on every process")
	f.StringVar(&listen, "listen", "127.0.0.1:0", "gRPC listen address (port 0: any free port; the lease advertises the real one)")
	f.StringVar(&advertise, "advertise", "", "address clients reach this process at (default: the listen address)")
	f.StringVar(&cfg.Owner, "owner", fmt.Sprintf("%s-%d", host, os.Getpid()), "this process's name in the lease table (unique)")
	f.IntVar(&cfg.Shards, "shards", 64, "logical shards in the system")
	f.IntVar(&cfg.ShardsMax, "shards-max", 0, "most shards this process owns (0 = as many as it can take)")
	f.DurationVar(&cfg.LeaseTTL, "lease-ttl", 5*time.Second, "lease length: a dead owner's shards move after at most this long")
	f.DurationVar(&readyWait, "start-timeout", time.Minute, "how long to wait for the databases at start")
	return cmd
}

func dsnList(env string) []string {
	if env == "" {
		return nil
	}
	return strings.Split(env, ",")
}

// advertised is the address put in the leases: --advertise, or the bound
// address when it is a specific one (0.0.0.0 or :: is not reachable).
func advertised(bound net.Addr, flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	tcp, ok := bound.(*net.TCPAddr)
	if !ok || tcp.IP == nil || tcp.IP.IsUnspecified() {
		return "", errors.New("--advertise is required when listening on all interfaces")
	}
	return tcp.String(), nil
}

// stopGRPC lets calls in flight finish for a bounded time, then cuts them.
func stopGRPC(srv *grpc.Server) {
	done := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(done)
	}()
	t := time.NewTimer(grpcStopTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		srv.Stop()
		<-done
	}
}
