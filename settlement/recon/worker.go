package recon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fundplatform/fund/ledger"
)

// WorkerConfig configures a Worker. Consume is required.
type WorkerConfig struct {
	// Consume runs the consumer group until ctx ends, calling handle for
	// every event and committing an event's offset only after handle
	// returned nil for it (settlement/kafka.Consume). For batches to form,
	// let it handle many events at once (InFlightMax of a few thousand).
	Consume func(ctx context.Context, handle func(context.Context, ledger.Event) error) error
	// Lag returns the group's lag in messages (settlement/recon/kafka.GroupLag);
	// nil leaves the lag metric at zero.
	Lag func(ctx context.Context) (int64, error)

	BatchMax     int           // events per store write; 0 = 1024
	QueueMax     int           // events waiting for a write; 0 = 4 x BatchMax
	ApplyTimeout time.Duration // one store write; 0 = 30 s
	// CompareEvery is how often the worker compares with the journal;
	// 0 = every minute, < 0 = never (compare with fundctl recon report --compare).
	CompareEvery time.Duration
	// FullEvery is how often the open day is compared whole; in between,
	// only the window after the last clean comparison is (see
	// CompareOptions.From). 0 = every hour.
	FullEvery time.Duration
	// Grace is how long an entry may take from commit to this worker
	// (outbox, relay, broker); newer entries are not compared yet. 0 = 2 min.
	Grace time.Duration
	// DaysBack is how many days before today each comparison covers too
	// (late events, sagas across midnight); 0 = 1, < 0 = today only.
	DaysBack       int
	CompareTimeout time.Duration // 0 = 10 min
	LagEvery       time.Duration // 0 = 5 s
	// CompareLock, when set, is taken around each round of comparisons
	// (ok false: another worker holds it; this round is skipped), so that
	// many workers in a group do not all compare the same days. The
	// Postgres store's CompareLock is an advisory lock.
	CompareLock func(ctx context.Context) (unlock func(), ok bool, err error)
	// Registerer receives the worker's metrics; nil = not registered.
	Registerer prometheus.Registerer
	Now        func() time.Time // clock; tests replace it
}

func (c *WorkerConfig) setDefaults() {
	if c.BatchMax <= 0 {
		c.BatchMax = 1024
	}
	if c.QueueMax <= 0 {
		c.QueueMax = 4 * c.BatchMax
	}
	if c.ApplyTimeout <= 0 {
		c.ApplyTimeout = 30 * time.Second
	}
	if c.CompareEvery == 0 {
		c.CompareEvery = time.Minute
	}
	if c.FullEvery <= 0 {
		c.FullEvery = time.Hour
	}
	if c.Grace <= 0 {
		c.Grace = 2 * time.Minute
	}
	if c.DaysBack == 0 {
		c.DaysBack = 1
	}
	if c.CompareTimeout <= 0 {
		c.CompareTimeout = 10 * time.Minute
	}
	if c.LagEvery <= 0 {
		c.LagEvery = 5 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Worker is one reconciliation worker: a member of the consumer group
// that records the ledger's events (in batches: many events handled at
// once wait together for one store write) and, on a timer, compares the
// record with the journal. Several workers, in one process or many, share
// the partitions of the topic through the group.
type Worker struct {
	cfg   WorkerConfig
	store *Set
	log   *slog.Logger
	queue chan *pending
	m     *metrics

	applied, redelivered, conflicts, lag, lastCompare atomic.Int64
	// lagDownSince is when the lag probes began to fail (zero while they
	// answer): an outage of the brokers is reported once, not per probe.
	lagDownSince time.Time // only pollLag's goroutine touches it

	mu      sync.Mutex
	running bool
	// pastDone holds the past days compared after they closed (and the
	// grace passed): nothing new can land on them, so the timer leaves
	// them alone; fundctl recon report --compare rechecks on demand.
	pastDone map[time.Time]bool
	// cleanTo holds, per day, the cutoff of the last comparison that found
	// the day clean: the next one looks at the window after it.
	cleanTo map[time.Time]time.Time
	// lastFull holds, per day, when it was last compared whole.
	lastFull map[time.Time]time.Time
}

// Stats are a worker's counters since it started.
type Stats struct {
	Applied, Redelivered, Conflicts int64 // events, by outcome
	Lag                             int64 // the group's lag in messages at the last probe
	LastCompare                     time.Time
}

// Stats returns the worker's counters.
func (w *Worker) Stats() Stats {
	st := Stats{Applied: w.applied.Load(), Redelivered: w.redelivered.Load(), Conflicts: w.conflicts.Load(), Lag: w.lag.Load()}
	if ns := w.lastCompare.Load(); ns != 0 {
		st.LastCompare = time.Unix(0, ns)
	}
	return st
}

// Queued returns how many events wait for a write.
func (w *Worker) Queued() int { return len(w.queue) }

// Store is the set of stores the worker writes and compares.
func (w *Worker) Store() *Set { return w.store }

type pending struct {
	e    ledger.Event
	done chan error // buffered 1
}

// NewWorker returns a worker over the stores of every ledger database
// (Single(store) for one); start it with Run.
func NewWorker(cfg WorkerConfig, store *Set, logger *slog.Logger) (*Worker, error) {
	if cfg.Consume == nil {
		return nil, errors.New("recon: WorkerConfig.Consume is required")
	}
	cfg.setDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	w := &Worker{cfg: cfg, store: store, log: logger.With("role", "recon"), queue: make(chan *pending, cfg.QueueMax), m: newMetrics(),
		pastDone: map[time.Time]bool{}, cleanTo: map[time.Time]time.Time{}, lastFull: map[time.Time]time.Time{}}
	if cfg.Registerer != nil {
		if err := w.m.register(cfg.Registerer); err != nil {
			return nil, fmt.Errorf("recon metrics: %w", err)
		}
	}
	return w, nil
}

// Run consumes, writes and compares until ctx ends (then it returns nil
// once every goroutine stopped) or until the consumer fails.
func (w *Worker) Run(ctx context.Context) error {
	w.mu.Lock()
	if w.running {
		w.mu.Unlock()
		return errors.New("recon: worker already running")
	}
	w.running = true
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.running = false
		w.mu.Unlock()
	}()
	w.refreshBreaks(ctx)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	// The writer outlives the consumer: Consume returns only after its
	// handlers did, and they wait on the writer.
	writerCtx, stopWriter := context.WithCancel(context.WithoutCancel(ctx))
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		w.write(writerCtx)
	}()
	defer func() {
		stopWriter()
		<-writerDone
	}()
	wg.Add(2)
	go func() {
		defer wg.Done()
		w.every(ctx, w.cfg.LagEvery, w.pollLag)
	}()
	go func() {
		defer wg.Done()
		if w.cfg.CompareEvery > 0 {
			w.every(ctx, w.cfg.CompareEvery, w.compareRecent)
		}
	}()
	err := w.cfg.Consume(ctx, w.Handle)
	stopped := ctx.Err() != nil
	cancel() // the lag and compare loops end; the deferred waits follow
	if stopped {
		return nil
	}
	if err == nil {
		err = errors.New("consumer stopped")
	}
	return fmt.Errorf("recon consumer: %w", err)
}

// Handle records one event and returns once it is durably written (or
// found to be a redelivery): the consumer may then commit its offset. It is
// safe for concurrent use and meant to be called by many at once.
func (w *Worker) Handle(ctx context.Context, e ledger.Event) error {
	// A malformed event is refused alone (the consumer stops on it rather
	// than skip it), never inside a batch it would fail with it.
	if e.Version != ledger.EventVersion {
		return fmt.Errorf("%w: event %s has schema version %d", ledger.ErrInvariantBroke, e.ID, e.Version)
	}
	if !w.store.knows(e.Shard) {
		return fmt.Errorf("%w: event %s of shard %d: not a shard of this deployment (--shards %d)",
			ledger.ErrInvariantBroke, e.ID, e.Shard, w.store.shards.Shards)
	}
	if e.PendingID != "" {
		if _, err := ledger.ParseTransferID(e.PendingID); err != nil {
			return fmt.Errorf("%w: event %s: pending id: %v", ledger.ErrInvariantBroke, e.ID, err)
		}
	}
	p := &pending{e: e, done: make(chan error, 1)}
	select {
	case w.queue <- p:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		// The write may still happen; the redelivery then finds it.
		return ctx.Err()
	}
}

// write takes what is queued, up to BatchMax events, and writes it in one
// store transaction, until ctx ends.
func (w *Worker) write(ctx context.Context) {
	batch := make([]*pending, 0, w.cfg.BatchMax)
	events := make([]ledger.Event, 0, w.cfg.BatchMax)
	for {
		batch, events = batch[:0], events[:0]
		select {
		case p := <-w.queue:
			batch = append(batch, p)
		case <-ctx.Done():
			w.drain(ctx.Err())
			return
		}
	fill:
		for len(batch) < w.cfg.BatchMax {
			select {
			case p := <-w.queue:
				batch = append(batch, p)
			default:
				break fill
			}
		}
		for _, p := range batch {
			events = append(events, p.e)
		}
		actx, cancel := context.WithTimeout(ctx, w.cfg.ApplyTimeout)
		outs, err := w.store.Apply(actx, events)
		cancel()
		if err == nil && len(outs) != len(events) {
			err = fmt.Errorf("%w: %d outcomes for %d events", ledger.ErrInvariantBroke, len(outs), len(events))
		}
		conflicts := 0
		for i, p := range batch {
			if err == nil {
				w.m.events.WithLabelValues(outs[i].String()).Inc()
				switch outs[i] {
				case Applied:
					w.applied.Add(1)
				case Redelivered:
					w.redelivered.Add(1)
				case Conflict:
					w.conflicts.Add(1)
					conflicts++
				}
			}
			p.done <- err
		}
		if err != nil {
			w.log.Warn("apply failed; the consumer retries", "events", len(events), "err", err)
		}
		if conflicts > 0 {
			w.log.Warn("events redelivered with different content", "count", conflicts)
			w.refreshBreaks(ctx)
		}
	}
}

func (w *Worker) drain(err error) {
	for {
		select {
		case p := <-w.queue:
			p.done <- err
		default:
			return
		}
	}
}

func (w *Worker) every(ctx context.Context, d time.Duration, fn func(context.Context)) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn(ctx)
		}
	}
}

func (w *Worker) pollLag(ctx context.Context) {
	if w.cfg.Lag == nil {
		return
	}
	lctx, cancel := context.WithTimeout(ctx, w.cfg.LagEvery)
	defer cancel()
	lag, err := w.cfg.Lag(lctx)
	if err != nil {
		if ctx.Err() == nil && w.lagDownSince.IsZero() {
			w.lagDownSince = time.Now()
			w.log.Warn("consumer lag unknown; probing again until the brokers answer", "err", err)
		}
		return
	}
	if !w.lagDownSince.IsZero() {
		w.log.Info("consumer lag known again", "after", time.Since(w.lagDownSince).Round(time.Millisecond))
		w.lagDownSince = time.Time{}
	}
	w.lag.Store(lag)
	w.m.lag.Set(float64(lag))
}

// compareRecent compares today and DaysBack days before, up to now less
// the grace period.
func (w *Worker) compareRecent(ctx context.Context) {
	if w.cfg.CompareLock != nil {
		unlock, ok, err := w.cfg.CompareLock(ctx)
		if err != nil {
			if ctx.Err() == nil {
				w.log.Warn("compare lock", "err", err)
			}
			return
		}
		if !ok {
			return // another worker compares this round
		}
		defer unlock()
	}
	now := w.cfg.Now()
	cutoff := now.Add(-w.cfg.Grace)
	today := ledger.BusinessDate(now.UnixNano())
	oldest := today.AddDate(0, 0, -max(w.cfg.DaysBack, 0))
	for day := range w.pastDone {
		if day.Before(oldest) {
			delete(w.pastDone, day) // bounded by DaysBack+1 entries
		}
	}
	for day := range w.cleanTo {
		if day.Before(oldest) {
			delete(w.cleanTo, day)
		}
	}
	for day := range w.lastFull {
		if day.Before(oldest) {
			delete(w.lastFull, day)
		}
	}
	for day := oldest; !day.After(today); day = day.AddDate(0, 0, 1) {
		if cutoff.Before(DayStart(day)) || w.pastDone[day] {
			continue
		}
		closed := !cutoff.Before(DayStart(day).AddDate(0, 0, 1))
		opts := CompareOptions{Cutoff: cutoff}
		if !closed && now.Sub(w.lastFull[day]) < w.cfg.FullEvery {
			// The day's last comparison, once it closed, is whole; so is one
			// every FullEvery.
			opts.From = w.cleanTo[day]
		}
		rep, err := w.Compare(ctx, day, opts)
		if err != nil {
			if ctx.Err() == nil {
				w.log.Error("comparison failed", "date", day.Format(time.DateOnly), "err", err)
			}
			continue
		}
		if rep.From == nil {
			w.lastFull[day] = now
		}
		if dayClean(rep) {
			w.cleanTo[day] = cutoff
		} else {
			delete(w.cleanTo, day)
		}
		if closed {
			w.pastDone[day] = true
		}
	}
}

// dayClean reports whether a comparison found nothing wrong with the day's
// entries (open sagas are not the day's: they are checked every time).
func dayClean(rep *Report) bool {
	for _, b := range rep.Breaks {
		if b.Kind != InTransitNotZero {
			return false
		}
	}
	return true
}

// Compare runs one comparison now and updates the metrics.
func (w *Worker) Compare(ctx context.Context, day time.Time, opts CompareOptions) (*Report, error) {
	cctx, cancel := context.WithTimeout(ctx, w.cfg.CompareTimeout)
	defer cancel()
	rep, err := w.store.Compare(cctx, day, opts)
	if err != nil {
		return nil, err
	}
	now := w.cfg.Now()
	w.lastCompare.Store(now.UnixNano())
	w.m.lastCompare.Set(float64(now.Unix()))
	w.log.Info("compared with the journal", "date", rep.BusinessDate, "cutoff", rep.Cutoff,
		"breaks", len(rep.Breaks), "resolved", rep.Resolved, "open_sagas", rep.OpenSagas, "took", rep.Took)
	w.refreshBreaks(ctx)
	return rep, nil
}

func (w *Worker) refreshBreaks(ctx context.Context) {
	bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	open, err := w.store.OpenBreaks(bctx)
	if err != nil {
		w.log.Warn("count open breaks", "err", err)
		return
	}
	for _, k := range BreakKinds() {
		w.m.breaks.WithLabelValues(string(k)).Set(float64(open[k]))
	}
}

// metrics are the worker's Prometheus series (contract names).
type metrics struct {
	breaks      *prometheus.GaugeVec
	lag         prometheus.Gauge
	events      *prometheus.CounterVec
	lastCompare prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		breaks: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fund_recon_breaks", Help: "Open reconciliation breaks, by kind.",
		}, []string{"kind"}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fund_recon_consumer_lag_messages", Help: "Ledger events on the topic not yet committed by the reconciliation group.",
		}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fund_recon_events_total", Help: "Ledger events handled by reconciliation: applied, redelivered (ignored) or conflict (same id, other content).",
		}, []string{"result"}),
		lastCompare: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fund_recon_last_compare_timestamp_seconds", Help: "When the last comparison with the journal finished.",
		}),
	}
	for _, k := range BreakKinds() {
		m.breaks.WithLabelValues(string(k))
	}
	for _, o := range []Outcome{Applied, Redelivered, Conflict} {
		m.events.WithLabelValues(o.String())
	}
	return m
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.breaks, m.lag, m.events, m.lastCompare} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}
