package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/fundplatform/fund/internal/opshttp"
	"github.com/fundplatform/fund/internal/supervise"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/kafka"
	"github.com/fundplatform/fund/settlement/recon"
	reconkafka "github.com/fundplatform/fund/settlement/recon/kafka"
	reconpg "github.com/fundplatform/fund/settlement/recon/postgres"
)

// Defaults of Config (the flags of `fundd recon` have the same).
const (
	TopicDefault        = "ledger-events"
	GroupDefault        = "fund-recon"
	InFlightMaxDefault  = 4096
	StartTimeoutDefault = time.Minute
)

// Config is the reconciliation role's settings.
type Config struct {
	// DSNs are the ledger databases in the ledger's order (required).
	DSNs []string
	// Shards is the number of logical shards (places shards on the
	// databases).
	Shards int
	// Brokers of Kafka (required).
	Brokers []string
	// Topic of the ledger's events; "" = TopicDefault.
	Topic string
	// Group is the workers' consumer group; "" = GroupDefault.
	Group string
	// HTTPAddr serves /metrics, /healthz and /readyz; "" = no HTTP.
	HTTPAddr string
	// InFlightMax events are handled at once (they wait together for one
	// write per batch); 0 = InFlightMaxDefault.
	InFlightMax int
	// BatchMax events per database write; 0 = recon's default (1024).
	BatchMax int
	// CompareEvery is how often to compare with the journal; 0 = never.
	CompareEvery time.Duration
	// FullEvery is how often today is compared whole (in between: only
	// what came since the last clean comparison); 0 = every hour.
	FullEvery time.Duration
	// Grace: entries newer than this are not compared yet (still on their
	// way); 0 = 2 minutes.
	Grace time.Duration
	// DaysBack is how many past business days are compared (each once,
	// whole, after it closed); 0 = 1, < 0 = today only.
	DaysBack int
	// StartTimeout bounds waiting for the databases at start; 0 =
	// StartTimeoutDefault.
	StartTimeout time.Duration
	// Logger; nil = discard. The worker adds role=recon.
	Logger *slog.Logger
	// Now is the business clock, which decides the journal's days to
	// compare and up to when (a rehearsal's shared test clock); nil =
	// time.Now.
	Now func() time.Time
}

// Run is the role: it consumes, compares and reports until ctx ends or
// the worker fails.
func Run(ctx context.Context, cfg Config) error {
	if len(cfg.DSNs) == 0 {
		return errors.New("no ledger database (DSNs) given")
	}
	if len(cfg.Brokers) == 0 {
		return errors.New("no Kafka brokers given")
	}
	cfg.Topic, cfg.Group = cmp.Or(cfg.Topic, TopicDefault), cmp.Or(cfg.Group, GroupDefault)
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	octx, cancel := context.WithTimeout(ctx, cmp.Or(cfg.StartTimeout, StartTimeoutDefault))
	set, first, closeStores, err := openSet(octx, cfg.DSNs, cfg.Shards)
	cancel()
	if err != nil {
		return err
	}
	defer closeStores()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	compareEvery := cfg.CompareEvery
	if compareEvery == 0 {
		compareEvery = -1 // the worker's "never"
	}
	w, err := recon.NewWorker(recon.WorkerConfig{
		Consume:      consumer(cfg.Brokers, cfg.Topic, cfg.Group, cmp.Or(cfg.InFlightMax, InFlightMaxDefault), logger),
		Lag:          reconkafka.NewLagProbe(cfg.Brokers, cfg.Topic, cfg.Group).Lag,
		BatchMax:     cfg.BatchMax,
		CompareEvery: compareEvery,
		FullEvery:    cfg.FullEvery,
		Grace:        cfg.Grace,
		DaysBack:     cfg.DaysBack,
		// One worker of the group compares at a time (the lock lives in
		// the first database).
		CompareLock: first.CompareLock,
		Registerer:  reg,
		Now:         cfg.Now,
	}, set, logger)
	if err != nil {
		return err
	}
	logger.Info("starting", "databases", len(cfg.DSNs), "shards", cfg.Shards, "kafka", strings.Join(cfg.Brokers, ","),
		"topic", cfg.Topic, "group", cfg.Group)
	err = runParts(ctx, cfg.HTTPAddr, reg, w.Run)
	logger.Info("stopped", "err", err)
	return err
}

// runParts runs the worker and, with an address, the ops endpoint, ready
// while both run.
func runParts(ctx context.Context, httpAddr string, reg *prometheus.Registry, work func(context.Context) error) error {
	var g supervise.Group
	gctx := g.Start(ctx)
	var ops *opshttp.Server
	if httpAddr != "" {
		var err error
		if ops, err = opshttp.Listen(httpAddr, reg); err != nil {
			g.Stop()
			return err
		}
		g.Run("http", ops.Run)
	}
	g.Run("worker", work)
	if ops != nil {
		ops.SetReady(true)
	}
	<-gctx.Done()
	if ops != nil {
		ops.SetReady(false)
	}
	return g.Wait()
}

// openSet opens reconciliation's store on every ledger database; it also
// returns the first database's store.
func openSet(ctx context.Context, dsns []string, shards int) (*recon.Set, *reconpg.Store, func(), error) {
	smap, err := ledger.NewShardMap(shards, len(dsns))
	if err != nil {
		return nil, nil, nil, err
	}
	var stores []recon.Store
	var opened []*reconpg.Store
	closeAll := func() {
		for _, s := range opened {
			s.Close()
		}
	}
	for i, dsn := range dsns {
		s, err := reconpg.Open(ctx, reconpg.Config{DSN: dsn})
		if err != nil {
			closeAll()
			return nil, nil, nil, fmt.Errorf("database %d: %w", i, err)
		}
		opened, stores = append(opened, s), append(stores, s)
	}
	set, err := recon.NewSet(smap, stores...)
	if err != nil {
		closeAll()
		return nil, nil, nil, err
	}
	return set, opened[0], closeAll, nil
}

// consumer is the worker's consumer group runner.
func consumer(brokers []string, topic, group string, inFlightMax int, logger *slog.Logger) func(context.Context, func(context.Context, ledger.Event) error) error {
	return func(ctx context.Context, h func(context.Context, ledger.Event) error) error {
		return kafka.Consume(ctx, kafka.ConsumerConfig{Brokers: brokers, Topic: topic, Group: group,
			InFlightMax: inFlightMax, Logger: logger}, h)
	}
}

// EmbeddedConfig is a worker inside a process that runs every role.
type EmbeddedConfig struct {
	// DSNs are the ledger databases in shard-map order, as the ledger
	// owner is given them (required): each event is recorded beside its
	// shard's journal, and compared with it there.
	DSNs []string
	// Shards is the number of logical shards (places shards on the
	// databases); 0 = 1, which only one database allows.
	Shards int
	// Brokers and Topic of the ledger's events (required).
	Brokers []string
	Topic   string
	// LagEvery is how often the consumer lag is probed; 0 = recon's
	// default (5 s). A process that waits for the worker to catch up (the
	// demo) probes more often.
	LagEvery time.Duration
	// Registerer gets the worker's metrics (the process's /metrics).
	Registerer prometheus.Registerer
	// Logger; nil = discard.
	Logger *slog.Logger
	// Now is the business clock, which decides the journal's days to
	// compare and up to when (the journal's timestamps follow it: a
	// sandbox's test clock); nil = time.Now.
	Now func() time.Time
}

// Timings of an embedded worker: a dev stack's pipeline takes
// milliseconds, so it compares every 30 s, up to 10 s ago, the whole day
// every 5 minutes.
const (
	embeddedCompareEvery = 30 * time.Second
	embeddedFullEvery    = 5 * time.Minute
	embeddedGrace        = 10 * time.Second
)

// OpenEmbedded opens the worker's stores on every database of cfg.DSNs
// (as Run does) and returns the worker (its Run consumes; its Store and
// Stats feed the admin API's report); release closes the stores once Run
// returned.
func OpenEmbedded(ctx context.Context, cfg EmbeddedConfig) (_ *recon.Worker, release func(), err error) {
	if len(cfg.DSNs) == 0 {
		return nil, nil, errors.New("no ledger database (DSNs) given")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	set, _, closeStores, err := openSet(ctx, cfg.DSNs, cmp.Or(cfg.Shards, 1))
	if err != nil {
		return nil, nil, fmt.Errorf("recon store: %w", err)
	}
	// One worker in the process and no other in its group: no compare
	// lock (Run's CompareLock keeps a group's workers from comparing at
	// once).
	w, err := recon.NewWorker(recon.WorkerConfig{
		Consume:      consumer(cfg.Brokers, cfg.Topic, GroupDefault, InFlightMaxDefault, logger),
		Lag:          reconkafka.NewLagProbe(cfg.Brokers, cfg.Topic, GroupDefault).Lag,
		CompareEvery: embeddedCompareEvery,
		FullEvery:    embeddedFullEvery,
		Grace:        embeddedGrace,
		LagEvery:     cfg.LagEvery,
		Registerer:   cfg.Registerer,
		Now:          cfg.Now,
	}, set, logger)
	if err != nil {
		closeStores()
		return nil, nil, err
	}
	return w, closeStores, nil
}
