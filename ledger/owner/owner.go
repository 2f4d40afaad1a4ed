package owner

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
	"google.golang.org/grpc"

	"github.com/fundplatform/fund/internal/opshttp"
	"github.com/fundplatform/fund/internal/supervise"
	"github.com/fundplatform/fund/ledger"
	ledgergrpc "github.com/fundplatform/fund/ledger/grpc"
	"github.com/fundplatform/fund/ledger/kafka"
	"github.com/fundplatform/fund/ledger/outbox"
	"github.com/fundplatform/fund/ledger/postgres"
	ledgerprom "github.com/fundplatform/fund/ledger/prometheus"
	"github.com/fundplatform/fund/ledger/xshard"
)

// Defaults of Config (the flags of `fundd ledger` have the same).
const (
	ListenDefault       = "127.0.0.1:0"
	TopicDefault        = "ledger-events"
	XShardGroupDefault  = "fund-ledger-xshard"
	StartTimeoutDefault = time.Minute
	// xshardInFlightMax bounds the second legs applied at once.
	xshardInFlightMax = 256
	// grpcStopTimeout bounds a clean stop: calls in flight get this long
	// before they are cut (their clients retry at the shards' next owners).
	grpcStopTimeout = 5 * time.Second
)

// Config is the ledger owner role's settings.
type Config struct {
	// DSNs are the ledger databases, in shard-map order (required).
	DSNs []string
	// Listen is the gRPC listen address; "" = ListenDefault (any free
	// port on loopback; the lease advertises the real one).
	Listen string
	// Advertise is the address clients reach this process at; "" = the
	// bound address, which must then be a specific one.
	Advertise string
	// HTTPAddr serves /metrics, /healthz and /readyz; "" = no HTTP.
	HTTPAddr string
	// Brokers of Kafka: relay the owned shards' outboxes and apply
	// cross-shard second legs; empty = neither.
	Brokers []string
	// Topic of the ledger's events; "" = TopicDefault.
	Topic string
	// XShardGroup is the consumer group applying cross-shard second legs;
	// "" = this process applies none (cmd/fundd defaults it to
	// XShardGroupDefault).
	XShardGroup string
	// Host is the shard host's settings: Owner (unique name in the lease
	// table), Shards, ShardsMax, LeaseTTL, the sequencer template. Address
	// is set from Advertise; the sequencer's FillWhileCommitting from Fill
	// and its BatchObserver to the ledger metrics. The sequencer's Now is
	// the business clock (nil = time.Now): the journal's timestamps, and
	// its partitions in the databases, follow it (a sandbox's test clock).
	Host ledger.HostConfig
	// Fill is whether sequencers fill the next batch while one commits:
	// "auto" or "" (when several shards share a database), "on", "off".
	Fill string
	// StartTimeout bounds waiting for the databases at start; 0 =
	// StartTimeoutDefault.
	StartTimeout time.Duration
	// ConnsMax is each ledger database's pool size; 0 = ledger/postgres's
	// default (two per shard it holds, plus two).
	ConnsMax int32
	// Attachments writes the attachments of transfer requests in their
	// batches' transactions (ledger/postgres Config.Attachments): the
	// composition gives the writer of the domain that attaches (the
	// accounts' order rows, whose tables share the ledger's databases);
	// nil = no attachments are written, and callers record their own.
	Attachments postgres.AttachmentWriter
	// Registry gets the ledger's metrics; nil = a new one with the Go and
	// process collectors, served at HTTPAddr.
	Registry *prometheus.Registry
	// Logger; nil = discard. The role adds role=ledger and owner.
	Logger *slog.Logger
}

// fillWhileCommitting resolves Config.Fill: "auto" turns it on when
// several shards share a database, where per-batch costs dominate and
// bigger batches pay (measured with fundctl bench ledger --shards 8:
// 18-20k to 27-30k transfers/s); one shard alone is latency-bound and
// does better without it.
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

// advertised is the address put in the leases: the configured one, or the
// bound address when it is a specific one (0.0.0.0 or :: is not reachable).
func advertised(bound net.Addr, configured string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	tcp, ok := bound.(*net.TCPAddr)
	if !ok || tcp.IP == nil || tcp.IP.IsUnspecified() {
		return "", errors.New("--advertise is required when listening on all interfaces")
	}
	return tcp.String(), nil
}

// Owner is a started ledger owner role.
type Owner struct {
	cfg     Config
	log     *slog.Logger
	dbs     *postgres.Databases
	host    *ledger.Host
	reg     *prometheus.Registry
	lis     net.Listener
	srv     *grpc.Server
	ops     *opshttp.Server // nil without HTTPAddr
	group   supervise.Group
	done    <-chan struct{}
	closers []func() // in reverse order once the parts stopped
}

// Run is the role: it starts, runs until ctx ends or a part fails, and
// stops cleanly (the host releases its leases); it returns the first
// part's failure.
func Run(ctx context.Context, cfg Config) error {
	o, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-o.Done():
	}
	return o.Stop()
}

// Start opens the databases, binds the listeners and starts every part:
// the gRPC server, the host (which takes shards), and with Brokers the
// relay and the saga consumer, with HTTPAddr the ops endpoint. ctx bounds
// the start only; the parts run until Stop or until one fails (Done).
func Start(ctx context.Context, cfg Config) (*Owner, error) {
	o, err := open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	o.done = o.group.Start(context.WithoutCancel(ctx)).Done()
	o.group.Run("grpc", func(ctx context.Context) error {
		return supervise.ServeUntil(ctx, func() error { return o.srv.Serve(o.lis) }, func() { stopGRPC(o.srv) })
	})
	if o.ops != nil {
		o.group.Run("http", o.ops.Run)
	}
	// The host stops before the gRPC server (the group cancels all at
	// once, but Serve keeps answering until GracefulStop): its sequencers
	// answer what they took, leases are released so the shards move at
	// once, and calls arriving meanwhile are answered "not owner".
	o.group.Run("host", o.host.Run)
	if len(cfg.Brokers) > 0 {
		o.startPipeline()
	}
	if o.ops != nil {
		o.ops.SetReady(true)
	}
	return o, nil
}

// open prepares everything Start runs: the listener, the databases, the
// metrics, the host and the gRPC server.
func open(ctx context.Context, cfg Config) (_ *Owner, err error) {
	if len(cfg.DSNs) == 0 {
		return nil, errors.New("no ledger database (DSNs) given")
	}
	cfg.Topic = cmp.Or(cfg.Topic, TopicDefault)
	cfg.Listen = cmp.Or(cfg.Listen, ListenDefault)
	cfg.StartTimeout = cmp.Or(cfg.StartTimeout, StartTimeoutDefault)
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	o := &Owner{cfg: cfg, log: logger.With("role", "ledger", "owner", cfg.Host.Owner), reg: cfg.Registry}
	defer func() {
		if err != nil {
			o.closeAll()
		}
	}()
	if o.cfg.Host.Sequencer.FillWhileCommitting, err = fillWhileCommitting(cfg.Fill, cfg.Host.Shards, len(cfg.DSNs)); err != nil {
		return nil, err
	}
	if o.lis, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	o.closers = append(o.closers, func() { _ = o.lis.Close() })
	if o.cfg.Host.Address, err = advertised(o.lis.Addr(), cfg.Advertise); err != nil {
		return nil, err
	}
	octx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	o.dbs, err = postgres.OpenDatabases(octx, postgres.DatabasesConfig{DSNs: cfg.DSNs, Shards: cfg.Host.Shards, ConnsMax: cfg.ConnsMax,
		Now: cfg.Host.Sequencer.Now, Attachments: cfg.Attachments})
	cancel()
	if err != nil {
		return nil, err
	}
	o.closers = append(o.closers, o.dbs.Close)
	if err := o.newHost(); err != nil {
		return nil, err
	}
	o.srv = grpc.NewServer(ledgergrpc.ServerOptions()...)
	ledgergrpc.NewServer(o.cfg.Host.Shards, o.host.Client).Register(o.srv)
	if cfg.HTTPAddr != "" {
		if o.ops, err = opshttp.Listen(cfg.HTTPAddr, o.reg); err != nil {
			return nil, err
		}
		o.closers = append(o.closers, func() { _ = o.ops.Close() })
	}
	o.log.Info("starting", "shards", o.cfg.Host.Shards, "databases", o.dbs.Len(), "addr", o.cfg.Host.Address,
		"lease_ttl", o.cfg.Host.LeaseTTL, "shards_max", o.cfg.Host.ShardsMax, "kafka", strings.Join(cfg.Brokers, ","))
	return o, nil
}

// newHost builds the shard host with the ledger's metrics observing it.
func (o *Owner) newHost() error {
	if o.reg == nil {
		o.reg = prometheus.NewRegistry()
		o.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	serving := func(s int) bool { _, ok := o.host.Client(s); return ok }
	metrics, err := ledgerprom.New(o.reg, ledgerprom.Config{Shards: o.cfg.Host.Shards, Serving: serving,
		OutboxLag: func(ctx context.Context, shard int) (int64, error) {
			_, events, err := o.dbs.StoreOf(shard).OutboxLag(ctx, shard)
			return events, err
		}})
	if err != nil {
		return err
	}
	o.cfg.Host.Sequencer.BatchObserver = metrics.ObserveBatch
	o.host = ledger.NewHost(o.cfg.Host, o.dbs, o.dbs, o.log)
	return nil
}

// startPipeline runs the outbox relay of the owned shards and, with a
// consumer group, the saga consumer applying second legs.
func (o *Owner) startPipeline() {
	cfg := o.cfg
	pub := kafka.NewPublisher(cfg.Brokers, cfg.Topic)
	o.closers = append(o.closers, func() { _ = pub.Close() })
	// Kafka being away must not stop the ledger: commits go on and events
	// wait in the outbox, so a relay (or saga consumer) that gives up is
	// started again after a pause (bounded: supervise.KeepRunning).
	relay := outbox.NewRelay(outbox.RelayConfig{Shards: allShards(cfg.Host.Shards)}, ownedOutbox{o.dbs, o.host, o.log}, pub, o.log)
	o.group.Run("relay", supervise.KeepRunning(o.log, "relay", relay.Run))
	if cfg.XShardGroup == "" {
		return
	}
	client := ledgergrpc.NewClient(ledgergrpc.ClientConfig{Shards: cfg.Host.Shards, Logger: o.log}, o.dbs)
	o.closers = append(o.closers, func() { _ = client.Close() })
	router := xshard.NewRouter(cfg.Host.Shards, client.ForShard)
	o.group.Run("xshard", supervise.KeepRunning(o.log, "xshard consumer", func(ctx context.Context) error {
		return kafka.Consume(ctx, kafka.ConsumerConfig{Brokers: cfg.Brokers, Topic: cfg.Topic, Group: cfg.XShardGroup,
			InFlightMax: xshardInFlightMax, Wants: router.Wants, Logger: o.log}, router.Handle)
	}))
}

// Host is the shard host: which shards this process serves, their
// sequencers.
func (o *Owner) Host() *ledger.Host { return o.host }

// Databases are the ledger's stores, one per database.
func (o *Owner) Databases() *postgres.Databases { return o.dbs }

// Registry holds the ledger's metrics.
func (o *Owner) Registry() *prometheus.Registry { return o.reg }

// Addr is the gRPC address the leases advertise.
func (o *Owner) Addr() string { return o.cfg.Host.Address }

// HTTPAddr is the bound ops endpoint; "" without one.
func (o *Owner) HTTPAddr() string {
	if o.ops == nil {
		return ""
	}
	return o.ops.Addr()
}

// Done is closed when a part failed or Stop was called.
func (o *Owner) Done() <-chan struct{} { return o.done }

// Stop stops every part (the host releases its leases), closes what Start
// opened and returns the first part's failure.
func (o *Owner) Stop() error {
	if o.ops != nil {
		o.ops.SetReady(false)
	}
	o.group.Stop()
	err := o.group.Wait()
	o.closeAll()
	o.log.Info("stopped", "err", err)
	return err
}

func (o *Owner) closeAll() {
	for i := len(o.closers) - 1; i >= 0; i-- {
		o.closers[i]()
	}
	o.closers = nil
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

func allShards(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}
