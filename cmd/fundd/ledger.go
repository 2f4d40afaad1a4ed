package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/fundplatform/fund/internal/localpg"
	"github.com/fundplatform/fund/ledger"
	ledgergrpc "github.com/fundplatform/fund/ledger/grpc"
	"github.com/fundplatform/fund/ledger/kafka"
	"github.com/fundplatform/fund/ledger/outbox"
	"github.com/fundplatform/fund/ledger/postgres"
	ledgerprom "github.com/fundplatform/fund/ledger/prometheus"
	"github.com/fundplatform/fund/ledger/xshard"
)

// Bounds of a clean stop: calls in flight get this long before they are
// cut (their clients retry at the shards' next owners), and so does the
// HTTP endpoint.
const (
	grpcStopTimeout = 5 * time.Second
	httpStopTimeout = 5 * time.Second
	// outboxReadTimeout bounds one relay read of the outboxes, so that a
	// database that hangs is skipped rather than waited for.
	outboxReadTimeout = 5 * time.Second
)

// ledgerFlags are the settings of `fundd ledger`.
type ledgerFlags struct {
	dsns      []string
	listen    string
	advertise string
	httpAddr  string
	brokers   []string
	topic     string
	group     string
	host      ledger.HostConfig
	fill      string
	readyWait time.Duration
}

// fillWhileCommitting resolves --fill: "auto" turns it on when several
// shards share a database, where per-batch costs dominate and bigger
// batches pay (measured with fundctl bench ledger --shards 8: 18-20k to
// 27-30k transfers/s); one shard alone is latency-bound and does better
// without it.
func fillWhileCommitting(mode string, shards, databases int) (bool, error) {
	switch mode {
	case "on":
		return true, nil
	case "off":
		return false, nil
	case "auto", "":
		return databases > 0 && shards/databases > 1, nil
	}
	return false, fmt.Errorf("--fill %q: want auto, on or off", mode)
}

// newLedgerCmd is `fundd ledger`: a process that owns ledger shards through
// leases and serves them over gRPC. The shards live on the databases given
// by --dsn, placed by ledger.ShardMap (contiguous ranges, in the order the
// DSNs are given: every process must get the same list); each shard's
// lease is kept in its own database, with this process's address, so that
// the routing client (ledger/grpc) finds the owner. With --kafka-brokers it
// also relays its shards' outboxes to Kafka and applies the second legs of
// cross-shard sagas (as a member of a consumer group, through the routing
// client, so a leg lands wherever its shard is served).
func newLedgerCmd() *cobra.Command {
	var f ledgerFlags
	hostname, _ := os.Hostname()
	cmd := &cobra.Command{
		Use:   "ledger",
		Short: "Own ledger shards through leases and serve them over gRPC",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runLedger(cmd.Context(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&f.dsns, "dsn", dsnList(os.Getenv(localpg.EnvDSN)),
		"Postgres DSN of a ledger database; repeat (or give a comma list) for several, in the same order on every process")
	fl.StringVar(&f.listen, "listen", "127.0.0.1:0", "gRPC listen address (port 0: any free port; the lease advertises the real one)")
	fl.StringVar(&f.advertise, "advertise", "", "address clients reach this process at (default: the listen address)")
	fl.StringVar(&f.httpAddr, "http-addr", "", "serve /metrics, /healthz and /readyz here (empty: no HTTP)")
	fl.StringSliceVar(&f.brokers, "kafka-brokers", nil, "Kafka brokers: relay the owned shards' outboxes and apply cross-shard second legs (empty: neither)")
	fl.StringVar(&f.topic, "topic", "ledger-events", "Kafka topic of the ledger's events")
	fl.StringVar(&f.group, "xshard-group", "fund-ledger-xshard", "consumer group applying cross-shard second legs (empty: this process applies none)")
	fl.StringVar(&f.host.Owner, "owner", fmt.Sprintf("%s-%d", hostname, os.Getpid()), "this process's name in the lease table (unique)")
	fl.IntVar(&f.host.Shards, "shards", 64, "logical shards in the system")
	fl.IntVar(&f.host.ShardsMax, "shards-max", 0, "most shards this process owns (0 = as many as it can take)")
	fl.DurationVar(&f.host.LeaseTTL, "lease-ttl", 5*time.Second, "lease length: a dead owner's shards move after at most this long")
	fl.DurationVar(&f.readyWait, "start-timeout", time.Minute, "how long to wait for the databases at start")
	fl.StringVar(&f.fill, "fill", "auto", "sequencers fill the next batch while one commits: auto (when several shards share a database), on, off")
	return cmd
}

func runLedger(ctx context.Context, f ledgerFlags) error {
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("role", "ledger", "owner", f.host.Owner)
	if len(f.dsns) == 0 {
		return fmt.Errorf("--dsn (or %s) is required", localpg.EnvDSN)
	}
	fill, err := fillWhileCommitting(f.fill, f.host.Shards, len(f.dsns))
	if err != nil {
		return err
	}
	f.host.Sequencer.FillWhileCommitting = fill
	lis, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer lis.Close()
	if f.host.Address, err = advertised(lis.Addr(), f.advertise); err != nil {
		return err
	}
	octx, cancel := context.WithTimeout(ctx, f.readyWait)
	dbs, err := postgres.OpenDatabases(octx, postgres.DatabasesConfig{DSNs: f.dsns, Shards: f.host.Shards})
	cancel()
	if err != nil {
		return err
	}
	defer dbs.Close()

	var h *ledger.Host
	serving := func(s int) bool { _, ok := h.Client(s); return ok }
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := ledgerprom.New(reg, ledgerprom.Config{Shards: f.host.Shards, Serving: serving,
		OutboxLag: func(ctx context.Context, shard int) (int64, error) {
			_, events, err := dbs.StoreOf(shard).OutboxLag(ctx, shard)
			return events, err
		}})
	if err != nil {
		return err
	}
	f.host.Sequencer.BatchObserver = metrics.ObserveBatch
	h = ledger.NewHost(f.host, dbs, dbs, logger)

	srv := grpc.NewServer(ledgergrpc.ServerOptions()...)
	ledgergrpc.NewServer(f.host.Shards, h.Client).Register(srv)
	logger.Info("starting", "shards", f.host.Shards, "databases", dbs.Len(), "addr", f.host.Address,
		"lease_ttl", f.host.LeaseTTL, "shards_max", f.host.ShardsMax, "kafka", strings.Join(f.brokers, ","))

	var ready atomic.Bool
	var sup supervisor
	sctx := sup.start(ctx)
	sup.run("grpc", func(ctx context.Context) error {
		return serveUntil(ctx, func() error { return srv.Serve(lis) }, func() { stopGRPC(srv) })
	})
	if f.httpAddr != "" {
		if err := sup.runHTTP(f.httpAddr, reg, &ready); err != nil {
			sup.stop()
			return err
		}
	}
	// The host stops before the gRPC server (the supervisor cancels all at
	// once, but Serve keeps answering until GracefulStop): its sequencers
	// answer what they took, leases are released so the shards move at
	// once, and calls arriving meanwhile are answered "not owner".
	sup.run("host", h.Run)
	if len(f.brokers) > 0 {
		pub := kafka.NewPublisher(f.brokers, f.topic)
		defer pub.Close()
		// Kafka being away must not stop the ledger: commits go on and
		// events wait in the outbox, so a relay (or saga consumer) that
		// gives up is started again after a pause (bounded: keepRunning).
		relay := outbox.NewRelay(outbox.RelayConfig{Shards: allShards(f.host.Shards)}, ownedOutbox{dbs, h, logger}, pub, logger)
		sup.run("relay", keepRunning(logger, "relay", relay.Run))
		if f.group != "" {
			client := ledgergrpc.NewClient(ledgergrpc.ClientConfig{Shards: f.host.Shards, Logger: logger}, dbs)
			defer client.Close()
			router := xshard.NewRouter(f.host.Shards, client.ForShard)
			sup.run("xshard", keepRunning(logger, "xshard consumer", func(ctx context.Context) error {
				return kafka.Consume(ctx, kafka.ConsumerConfig{Brokers: f.brokers, Topic: f.topic, Group: f.group,
					InFlightMax: 256, Wants: router.Wants, Logger: logger}, router.Handle)
			}))
		}
	}
	ready.Store(true)
	<-sctx.Done()
	ready.Store(false)
	err = sup.wait()
	logger.Info("stopped", "err", err)
	return err
}

// supervisor runs a process's parts; the first to fail (or the parent
// context ending) stops all of them, and wait returns the first error.
type supervisor struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	err    error
}

func (s *supervisor) start(parent context.Context) context.Context {
	s.ctx, s.cancel = context.WithCancel(parent)
	return s.ctx
}

func (s *supervisor) run(name string, part func(context.Context) error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := part(s.ctx)
		if err != nil && s.ctx.Err() == nil {
			s.once.Do(func() { s.err = fmt.Errorf("%s: %w", name, err) })
		}
		s.cancel() // any part ending ends the process
	}()
}

func (s *supervisor) stop() { s.cancel(); s.wg.Wait() }

// Restarts of a part that failed: a pause apart, at most restartsMax times
// in a row (with the relay's own two minutes of retries per run, that rides
// out an outage of more than a day) before the process gives up.
const (
	restartPause = 5 * time.Second
	restartsMax  = 1000
	healthyRun   = 10 * time.Minute // a run this long resets the count
)

// keepRunning starts part again after it fails, until ctx ends or it failed
// restartsMax times.
func keepRunning(log *slog.Logger, name string, part func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		for restart := 0; ; restart++ {
			began := time.Now()
			err := part(ctx)
			if err == nil || ctx.Err() != nil {
				return err
			}
			if time.Since(began) > healthyRun {
				restart = 0 // it had recovered: count this failure afresh
			}
			if restart >= restartsMax {
				return fmt.Errorf("failed %d times in a row: %w", restart+1, err)
			}
			log.Error(name+" failed; starting it again", "restart", restart+1, "pause", restartPause, "err", err)
			t := time.NewTimer(restartPause)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
	}
}

// serveUntil runs serve until it fails or ctx ends; then it calls stop
// and waits for serve to return, so no goroutine outlives the part.
func serveUntil(ctx context.Context, serve func() error, stop func()) error {
	errc := make(chan error, 1)
	go func() { errc <- serve() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	stop()
	return <-errc
}

func (s *supervisor) wait() error {
	s.wg.Wait()
	return s.err
}

// ownedOutbox is the outbox of the shards this process owns right now, so
// that each shard's events are relayed by its owner. Around a handover two
// relays may publish the same rows once each; consumers are idempotent.
type ownedOutbox struct {
	dbs  *postgres.Databases
	host *ledger.Host
	log  *slog.Logger
}

func (o ownedOutbox) OutboxPending(ctx context.Context, _ []int, limit int) ([]ledger.OutboxBatch, error) {
	owned := o.host.Owned()
	if len(owned) == 0 {
		return nil, nil
	}
	slices.Sort(owned)
	ctx, cancel := context.WithTimeout(ctx, outboxReadTimeout)
	defer cancel()
	bs, err := o.dbs.OutboxPending(ctx, owned, limit)
	if err != nil && len(bs) > 0 {
		// One database failing must not hold back the events of the
		// others; its shards' rows wait (and the error shows in the log).
		o.log.Warn("outbox read in part", "err", err)
		return bs, nil
	}
	return bs, err
}

func (o ownedOutbox) OutboxAck(ctx context.Context, upTo map[int]int64) error {
	return o.dbs.OutboxAck(ctx, upTo)
}

func allShards(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// runHTTP binds addr and serves the metrics and probes (httpServer) as one
// of the supervised parts, shut down gracefully when the parts stop.
func (s *supervisor) runHTTP(addr string, reg *prometheus.Registry, ready *atomic.Bool) error {
	hs, err := httpServer(addr, reg, ready)
	if err != nil {
		return err
	}
	s.run("http", func(ctx context.Context) error {
		return serveUntil(ctx, func() error {
			if err := hs.srv.Serve(hs.lis); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		}, func() {
			c, cancel := context.WithTimeout(context.Background(), httpStopTimeout)
			defer cancel()
			_ = hs.srv.Shutdown(c)
		})
	})
	return nil
}

type boundHTTP struct {
	srv *http.Server
	lis net.Listener
}

// httpServer serves the metrics and the probes: /healthz answers while the
// process runs, /readyz once every part started and until it stops.
func httpServer(addr string, reg *prometheus.Registry, ready *atomic.Bool) (*boundHTTP, error) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http listen: %w", err)
	}
	return &boundHTTP{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, lis: lis}, nil
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
