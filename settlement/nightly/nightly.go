package nightly

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/fundplatform/fund/internal/opshttp"
	"github.com/fundplatform/fund/internal/supervise"
	"github.com/fundplatform/fund/settlement"
	settlekafka "github.com/fundplatform/fund/settlement/kafka"
	settlepg "github.com/fundplatform/fund/settlement/postgres"
)

// Defaults of Config (the flags of `fundd settle` have the same).
const (
	TickDefault     = time.Minute
	DelayDefault    = 30 * time.Minute
	ParallelDefault = 2
)

// Config is the settle role's settings.
type Config struct {
	// DSNs are the shard databases in shard-map order, as the ledger
	// owners are given them; each holds its shards' ledger and accounts
	// tables (required; one database holds every shard).
	DSNs []string
	// IncomeDir holds one file per date (YYYY-MM-DD) with its income; ""
	// = the current directory.
	IncomeDir string
	// FileDir is where custodian files are written; "" = the current
	// directory.
	FileDir string
	// From is the first date to settle when none was settled yet; zero =
	// yesterday.
	From time.Time
	// Shards is the number of logical ledger shards; 0 = as many as the
	// ledger's tables show.
	Shards int
	// Parallel shards settled at once; 0 = ParallelDefault.
	Parallel int
	// Delay after a date ends before its settlement starts; 0 =
	// DelayDefault.
	Delay time.Duration
	// Tick is how often to look for a date to settle; 0 = TickDefault.
	Tick time.Duration
	// TakeShards fences ledger processes that still own shards; without it
	// a run waits for them (settlement.Config.TakeShards).
	TakeShards bool
	// Brokers of Kafka for settlement events; empty = none.
	Brokers []string
	// Topic of settlement events; "" = settlekafka.TopicDefault.
	Topic string
	// HTTPAddr serves /metrics, /healthz and /readyz; "" = no HTTP.
	HTTPAddr string
	// Logger; nil = discard. The role adds role=settle.
	Logger *slog.Logger
	// Now is the business clock of the schedule, of the runs' cut-off
	// check and of the entries the runs write; nil = time.Now.
	Now func() time.Time
	// Refresh, when set, brings Now up to date before each look at what
	// is due, so that neither the schedule nor a run's cut-off check acts
	// on a stale time (a rehearsal's shared test clock, which each process
	// otherwise reads on an interval). An error skips the tick.
	Refresh func(context.Context) error
}

// Run is the role: it settles due dates on every tick until ctx ends. A
// failed run is logged and resumed on the next tick.
func Run(ctx context.Context, cfg Config) error {
	if len(cfg.DSNs) == 0 {
		return errors.New("no database (DSNs) given")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("role", "settle")
	parallel := cmp.Or(cfg.Parallel, ParallelDefault)
	// On the business clock: the entries a run writes are stamped by it.
	store, yields, release, err := settlepg.OpenForRunner(ctx, cfg.DSNs, cfg.Shards, parallel, cfg.Now)
	if err != nil {
		return err
	}
	defer release()
	var events settlement.EventPublisher // stays a nil interface without brokers
	if len(cfg.Brokers) > 0 {
		pub := settlekafka.NewPublisher(cfg.Brokers, cmp.Or(cfg.Topic, settlekafka.TopicDefault))
		defer pub.Close()
		events = pub
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := NewMetrics(reg)
	runner := settlement.NewRunner(settlement.Config{Shards: cfg.Shards, Parallel: parallel, FileDir: cfg.FileDir,
		TakeShards: cfg.TakeShards, Observe: metrics.Observe, Now: cfg.Now}, store, yields, events, logger)
	s := &schedule{runner: runner, store: store, incomeDir: cmp.Or(cfg.IncomeDir, "."), first: cfg.From,
		delay: cmp.Or(cfg.Delay, DelayDefault), log: logger, now: cfg.Now, refresh: cfg.Refresh}
	if s.now == nil {
		s.now = time.Now
	}
	var g supervise.Group
	gctx := g.Start(ctx)
	var ops *opshttp.Server
	if cfg.HTTPAddr != "" {
		if ops, err = opshttp.Listen(cfg.HTTPAddr, reg); err != nil {
			return err
		}
		g.Run("http", ops.Run)
	}
	g.Run("schedule", func(ctx context.Context) error { return s.run(ctx, cmp.Or(cfg.Tick, TickDefault)) })
	if ops != nil {
		ops.SetReady(true)
		<-gctx.Done()
		ops.SetReady(false)
	}
	return g.Wait()
}

// OnDemandConfig is the settlement run of a process that settles when
// asked (the dev stack), not on a schedule.
type OnDemandConfig struct {
	// DSN of the ledger and accounts database, when DSNs is empty.
	DSN string
	// DSNs are the shard databases in shard-map order (Config.DSNs);
	// empty = DSN alone.
	DSNs []string
	// Shards of the ledger; 0 = as many as the ledger's tables show.
	Shards int
	// FileDir is where custodian files are written; "" = the current
	// directory.
	FileDir string
	// TakeShards fences ledger writers that own the shards (see
	// settlement.Config.TakeShards and Quiesce).
	TakeShards bool
	// AllowEarly lets a date run before its cut-off has passed (a drill,
	// as the demo runs; settlement.Config.AllowEarly).
	AllowEarly bool
	// Yields publishes the fund's yield (the process's accounts service).
	Yields settlement.YieldPublisher
	// Registerer gets the settlement's metrics (required).
	Registerer prometheus.Registerer
	// Logger; nil = discard.
	Logger *slog.Logger
	// Now is the business clock: a date may run once its cut-off has
	// passed by it, and the ledger entries the run writes take their
	// timestamps from it (a sandbox's test clock); nil = time.Now.
	Now func() time.Time
}

// onDemandConnsMax is the store's pool of an on-demand runner: one shard
// at a time in a small process.
const onDemandConnsMax = 4

// OpenOnDemand opens the settlement store and returns a runner counting
// its runs in the settlement's metrics; release closes the store.
func OpenOnDemand(ctx context.Context, cfg OnDemandConfig) (_ *settlement.Runner, release func(), err error) {
	dsns := cfg.DSNs
	if len(dsns) == 0 {
		dsns = []string{cfg.DSN}
	}
	store, err := settlepg.OpenSharded(ctx, settlepg.ShardedConfig{DSNs: dsns, Shards: cfg.Shards,
		ConnsMax: onDemandConnsMax, Now: cfg.Now})
	if err != nil {
		return nil, nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	metrics := NewMetrics(cfg.Registerer)
	runner := settlement.NewRunner(settlement.Config{Shards: cfg.Shards, FileDir: cfg.FileDir, TakeShards: cfg.TakeShards,
		AllowEarly: cfg.AllowEarly, Observe: metrics.Observe, Now: cfg.Now}, store, cfg.Yields, nil, logger)
	return runner, store.Close, nil
}
