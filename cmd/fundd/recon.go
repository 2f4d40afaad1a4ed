package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/fundplatform/fund/deploy/devstack"
	"github.com/fundplatform/fund/gateway"
	"github.com/fundplatform/fund/internal/localpg"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/kafka"
	"github.com/fundplatform/fund/settlement/recon"
	reconkafka "github.com/fundplatform/fund/settlement/recon/kafka"
	reconpg "github.com/fundplatform/fund/settlement/recon/postgres"
)

// reconFlags are the settings of `fundd recon`.
type reconFlags struct {
	dsns         []string
	shards       int
	brokers      []string
	topic        string
	group        string
	httpAddr     string
	inFlightMax  int
	batchMax     int
	compareEvery time.Duration
	fullEvery    time.Duration
	grace        time.Duration
	daysBack     int
	readyWait    time.Duration
}

// newReconCmd is `fundd recon`: a reconciliation worker. Run as many as the
// topic has partitions; they share them through the consumer group.
func newReconCmd() *cobra.Command {
	var f reconFlags
	cmd := &cobra.Command{
		Use:   "recon",
		Short: "Reconcile the ledger: consume its events, keep totals, compare with the journal, report breaks",
		Long: `A member of a Kafka consumer group on the ledger's events. It records every event once in
its own tables (redeliveries are ignored; the same id with other content is a break), keeps totals per
business day, shard and account, and commits offsets only after its writes. Every --compare-every it
compares today with the journal up to --grace ago (only what came since the last clean comparison,
the whole day every --full-every), and each of the --days-back days before once after it closed; it
stores the breaks (fundctl recon report lists them). Metrics: fund_recon_breaks{kind}, fund_recon_consumer_lag_messages,
fund_recon_events_total{result}.`,
		RunE: func(cmd *cobra.Command, _ []string) error { return runRecon(cmd.Context(), f) },
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&f.dsns, "dsn", dsnList(os.Getenv(localpg.EnvDSN)),
		"Postgres DSN of a ledger database; repeat (or a comma list) for several, in the ledger's order")
	fl.IntVar(&f.shards, "shards", 64, "logical shards in the system (places shards on the databases)")
	fl.StringSliceVar(&f.brokers, "kafka-brokers", nil, "Kafka brokers (required)")
	fl.StringVar(&f.topic, "topic", "ledger-events", "Kafka topic of the ledger's events")
	fl.StringVar(&f.group, "group", "fund-recon", "consumer group of the reconciliation workers")
	fl.StringVar(&f.httpAddr, "http-addr", "", "serve /metrics, /healthz and /readyz here (empty: no HTTP)")
	fl.IntVar(&f.inFlightMax, "inflight-max", 4096, "events handled at once (they wait together for one write per batch)")
	fl.IntVar(&f.batchMax, "batch-max", 1024, "events per database write")
	fl.DurationVar(&f.compareEvery, "compare-every", time.Minute, "how often to compare with the journal (0: never)")
	fl.DurationVar(&f.fullEvery, "full-every", time.Hour, "how often today is compared whole (in between: only what came since the last clean comparison)")
	fl.DurationVar(&f.grace, "grace", 2*time.Minute, "entries newer than this are not compared yet (still on their way)")
	fl.IntVar(&f.daysBack, "days-back", 1, "past business days compared (each once, whole, after it closed and the grace passed)")
	fl.DurationVar(&f.readyWait, "start-timeout", time.Minute, "how long to wait for the databases at start")
	return cmd
}

func runRecon(ctx context.Context, f reconFlags) error {
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil)) // the worker adds role=recon
	if len(f.dsns) == 0 {
		return fmt.Errorf("--dsn (or %s) is required", localpg.EnvDSN)
	}
	if len(f.brokers) == 0 {
		return errors.New("--kafka-brokers is required")
	}
	octx, cancel := context.WithTimeout(ctx, f.readyWait)
	set, first, closeStores, err := openReconSet(octx, f.dsns, f.shards)
	cancel()
	if err != nil {
		return err
	}
	defer closeStores()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	compareEvery := f.compareEvery
	if compareEvery == 0 {
		compareEvery = -1 // the worker's "never"
	}
	w, err := recon.NewWorker(recon.WorkerConfig{
		Consume:      reconConsumer(f.brokers, f.topic, f.group, f.inFlightMax, logger),
		Lag:          reconkafka.NewLagProbe(f.brokers, f.topic, f.group).Lag,
		BatchMax:     f.batchMax,
		CompareEvery: compareEvery,
		FullEvery:    f.fullEvery,
		Grace:        f.grace,
		DaysBack:     f.daysBack,
		// One worker of the group compares at a time (the lock lives in
		// the first database).
		CompareLock: first.CompareLock,
		Registerer:  reg,
	}, set, logger)
	if err != nil {
		return err
	}
	logger.Info("starting", "databases", len(f.dsns), "shards", f.shards, "kafka", strings.Join(f.brokers, ","),
		"topic", f.topic, "group", f.group)
	var ready atomic.Bool
	var sup supervisor
	sctx := sup.start(ctx)
	if f.httpAddr != "" {
		if err := sup.runHTTP(f.httpAddr, reg, &ready); err != nil {
			sup.stop()
			return err
		}
	}
	sup.run("worker", w.Run)
	ready.Store(true)
	<-sctx.Done()
	ready.Store(false)
	err = sup.wait()
	logger.Info("stopped", "err", err)
	return err
}

// openReconSet opens reconciliation's store on every ledger database; it
// also returns the first database's store.
func openReconSet(ctx context.Context, dsns []string, shards int) (*recon.Set, *reconpg.Store, func(), error) {
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

// reconConsumer is the worker's consumer group runner.
func reconConsumer(brokers []string, topic, group string, inFlightMax int, logger *slog.Logger) func(context.Context, func(context.Context, ledger.Event) error) error {
	return func(ctx context.Context, h func(context.Context, ledger.Event) error) error {
		return kafka.Consume(ctx, kafka.ConsumerConfig{Brokers: brokers, Topic: topic, Group: group,
			InFlightMax: inFlightMax, Logger: logger}, h)
	}
}

// reconDevWorker runs a reconciliation worker inside `fundd dev` on the
// stack's database and broker, its metrics on the stack's /metrics, and
// answers the admin API's GET /v1/admin/recon/report. It compares every
// 30 s, up to 10 s ago (a dev stack's pipeline takes milliseconds), the
// whole day every 5 minutes.
func reconDevWorker() devstack.Worker {
	return devstack.Worker{Name: "recon", Start: func(ctx context.Context, s *devstack.Stack) (devstack.Role, error) {
		store, err := reconpg.Open(ctx, reconpg.Config{DSN: s.DSN})
		if err != nil {
			return devstack.Role{}, fmt.Errorf("recon store: %w", err)
		}
		lag := reconkafka.NewLagProbe(s.Brokers, s.Topic, "fund-recon").Lag
		w, err := recon.NewWorker(recon.WorkerConfig{
			Consume:      reconConsumer(s.Brokers, s.Topic, "fund-recon", 4096, s.Logger),
			Lag:          lag,
			CompareEvery: 30 * time.Second,
			FullEvery:    5 * time.Minute,
			Grace:        10 * time.Second,
			Registerer:   s.Registry,
		}, recon.Single(store), s.Logger)
		if err != nil {
			store.Close()
			return devstack.Role{}, err
		}
		return devstack.Role{Run: w.Run, Reconciler: newReconReporter(w.Store(), w, nil), Close: store.Close}, nil
	}}
}

// reconReporter answers the admin API's reconciliation report from the
// stored breaks: in a worker's process with its counters, elsewhere (the
// gateway) with a lag probe.
type reconReporter struct {
	set    *recon.Set
	worker *recon.Worker                            // nil outside a worker
	lag    func(ctx context.Context) (int64, error) // used without a worker; may be nil
}

// reportBreaksMax bounds the breaks one report carries.
const reportBreaksMax = 1000

func newReconReporter(set *recon.Set, w *recon.Worker, lag func(context.Context) (int64, error)) *reconReporter {
	return &reconReporter{set: set, worker: w, lag: lag}
}

var _ gateway.Reconciler = (*reconReporter)(nil)

func (r *reconReporter) Report(ctx context.Context) (gateway.ReconReport, error) {
	bs, err := r.set.Breaks(ctx, recon.BreakFilter{Limit: reportBreaksMax})
	if err != nil {
		return gateway.ReconReport{}, err
	}
	open, err := r.set.OpenBreaks(ctx)
	if err != nil {
		return gateway.ReconReport{}, err
	}
	rep := gateway.ReconReport{GeneratedAt: time.Now().UTC(), OpenBreaksByKind: map[string]int64{}}
	for k, n := range open {
		rep.OpenBreaksByKind[string(k)] = n
	}
	switch {
	case r.worker != nil:
		st := r.worker.Stats()
		rep.EventsProcessed, rep.ConsumerLag = st.Applied+st.Redelivered+st.Conflicts, st.Lag
	case r.lag != nil:
		if rep.ConsumerLag, err = r.lag(ctx); err != nil {
			rep.ConsumerLag = -1 // unknown; the report is still worth having
		}
	}
	for _, b := range bs {
		rep.Breaks = append(rep.Breaks, gateway.ReconBreak{Kind: string(b.Kind), Ref: breakSubject(&b), Detail: b.Detail,
			Amount: breakAmount(&b), DetectedAt: b.FirstSeen})
	}
	return rep, nil
}

// breakSubject names what a break is about: a transfer, an account or a
// statement reference.
func breakSubject(b *recon.Break) string {
	switch {
	case b.TransferID != nil:
		return "transfer " + b.TransferID.String()
	case b.Reference != "":
		return "reference " + b.Reference
	case b.AccountID != nil:
		return fmt.Sprintf("account %d", *b.AccountID)
	case b.Shard != nil:
		return fmt.Sprintf("shard %d", *b.Shard)
	}
	return b.Key
}

// breakAmount is the journal's figure less the other side's, or whichever
// is known.
func breakAmount(b *recon.Break) int64 {
	switch {
	case b.Journal != nil && b.Other != nil:
		return int64(*b.Journal - *b.Other)
	case b.Journal != nil:
		return int64(*b.Journal)
	case b.Other != nil:
		return -int64(*b.Other)
	}
	return 0
}
