package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/fundplatform/fund/ledger"
)

// ConsumerConfig configures Consume.
type ConsumerConfig struct {
	Brokers     []string
	Topic       string
	Group       string
	AttemptsMax int           // tries per event before Consume gives up (default 20)
	BackoffMax  time.Duration // default 1 s
	// InFlightMax is how many events are handled at once (default 1). Above
	// one, events are handled concurrently (handle must not depend on their
	// order) and offsets are still committed only up to the last event
	// whose predecessors are all done.
	InFlightMax int
	// Wants, when set, says which event kinds handle needs. An event whose
	// KindHeader names another kind is counted as handled without being
	// decoded: a consumer that acts on one kind in three (the saga's second
	// legs) then spends nothing on the rest. Events without the header are
	// decoded and handed over as before.
	Wants  func(kind uint16) bool
	Logger *slog.Logger

	timings timings // the defaults, but in tests
}

// KindHeader is the Kafka header in which the publisher repeats an event's
// kind, so that consumers can pass over kinds they do not handle without
// decoding them.
const KindHeader = "ledger-kind"

// headerKind returns the kind named by m's KindHeader.
func headerKind(m *kafkago.Message) (uint16, bool) {
	for _, h := range m.Headers {
		if h.Key == KindHeader {
			k, err := strconv.ParseUint(string(h.Value), 10, 16)
			return uint16(k), err == nil
		}
	}
	return 0, false
}

// Consume reads ledger events as a member of a consumer group and hands
// each to handle, committing an offset only after handle succeeded for it
// and every event before it, so an event is never skipped (handle must be
// idempotent: after a crash the last events come again). A failing event is
// retried AttemptsMax times with backoff; then Consume returns the error
// rather than skip it.
//
// A healthy consumer logs nothing above DEBUG, idle or busy. Brokers that
// cannot be reached are reported once at WARN, and their return at INFO;
// see health for how an idle reader is told from a broken one.
func Consume(ctx context.Context, cfg ConsumerConfig, handle func(context.Context, ledger.Event) error) error {
	cfg = cfg.withDefaults()
	h := newHealth(cfg)
	// kafka-go's group reader can stay silent for good after its
	// connections broke (a broker outage); a reader that stalls, or whose
	// fetches or commits keep failing, is replaced. Events fetched but not
	// committed come again to the new reader; handle is idempotent.
	for restart := 0; ; restart++ {
		err := consumeOnce(ctx, cfg, h, handle)
		if !errors.Is(err, errStalled) {
			return err
		}
		if restart >= restartsMax {
			return fmt.Errorf("consumer restarted %d times: %w", restart, err)
		}
		h.replacing(err)
		select {
		case <-time.After(cfg.timings.restartBackoff):
		case <-ctx.Done():
			return nil
		}
	}
}

var errStalled = errors.New("kafka reader broke or stalled")

const (
	closeWaitMax = 5 * time.Second
	restartsMax  = 1000 // readers replaced before Consume gives up
	// A reader whose fetches or offset commits keep failing is replaced
	// after this many in a row, restartBackoff apart. kafka-go itself
	// retries in between (a failed fetch is its third failed try), so
	// this takes minutes of outage.
	fetchErrorsMax    = 100
	commitFailuresMax = 100
	// sessionTimeout is how long the group waits for a member that stopped
	// sending heartbeats (kafka-go sends one every 3 s) before giving its
	// partitions to the others. kafka-go's default, 30 s, held a replaced
	// reader's successor, or a restarted process, that long when the old
	// member could not leave the group cleanly (its brokers away).
	sessionTimeout = 10 * time.Second
)

// sleepCtx waits for d or ctx, and reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// consumeOnce runs one reader until ctx ends, the reader breaks or stalls
// (errStalled), or an event cannot be handled.
func consumeOnce(ctx context.Context, cfg ConsumerConfig, h *health, handle func(context.Context, ledger.Event) error) error {
	c := newConsumer(cfg, h, handle)
	defer closeBounded(c.r, c.cfg.Logger, h.troubled)
	c.ctx, c.cancel = context.WithCancelCause(ctx)
	// Stop the watchdog, the workers and the committer before waiting for
	// them: a return with ctx still live (an undecodable event, a broken
	// fetch) would wait for good otherwise.
	defer func() {
		c.cancel(nil)
		c.wg.Wait()
	}()
	c.wg.Add(2)
	go c.watch()
	go c.commitDone()
	for {
		m, ok, err := c.fetch()
		if !ok {
			return err
		}
		if err := c.dispatch(m); err != nil {
			return err
		}
	}
}

func (cfg ConsumerConfig) withDefaults() ConsumerConfig {
	if cfg.AttemptsMax == 0 {
		cfg.AttemptsMax = 20
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = time.Second
	}
	if cfg.InFlightMax == 0 {
		cfg.InFlightMax = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Logger = cfg.Logger.With("topic", cfg.Topic, "group", cfg.Group)
	cfg.timings = cfg.timings.withDefaults()
	return cfg
}

// consumer is one reader's run: fetch hands each event to dispatch, which
// starts a worker for it (at most InFlightMax at once) after noting it in
// its partition's order; commitDone commits, per partition, the offset of
// the last event whose predecessors are all done. A worker that fails for
// good, the watchdog, or a failed offset commit cancels ctx with the cause,
// and the next fetch returns it.
type consumer struct {
	cfg    ConsumerConfig
	h      *health
	handle func(context.Context, ledger.Event) error
	r      *kafkago.Reader
	// ctx lives as long as this run; cancel ends it with a cause.
	ctx    context.Context
	cancel context.CancelCauseFunc

	// waiting is since when fetch has waited for an event, in Unix
	// nanoseconds; 0 while the consumer is busy elsewhere (a reader is
	// not stalled while its consumer waits for a worker).
	waiting atomic.Int64

	mu      sync.Mutex
	order   map[int][]*work // per partition, in offset order; guarded by mu
	next    map[int]int64   // per partition, the offset after the last fetched; guarded by mu
	slots   chan struct{}   // one per event being handled: bounds the workers
	commits chan struct{}   // nudges commitDone: some work is done
	wg      sync.WaitGroup  // the watchdog, commitDone and the workers
}

type work struct {
	msg  kafkago.Message
	done bool
}

func newConsumer(cfg ConsumerConfig, h *health, handle func(context.Context, ledger.Event) error) *consumer {
	c := &consumer{
		cfg: cfg, h: h, handle: handle,
		order:   map[int][]*work{},
		next:    map[int]int64{},
		slots:   make(chan struct{}, cfg.InFlightMax),
		commits: make(chan struct{}, 1),
	}
	c.r = kafkago.NewReader(kafkago.ReaderConfig{
		Brokers: cfg.Brokers, Topic: cfg.Topic, GroupID: cfg.Group,
		MaxWait: cfg.timings.maxWait, StartOffset: kafkago.FirstOffset,
		SessionTimeout: sessionTimeout,
		// Every failed try is logged, and retried by kafka-go; health
		// tells an operator when they add up to something.
		ErrorLogger: kafkago.LoggerFunc(h.readerError),
	})
	return c
}

// watch is the watchdog: on every tick, health.check says whether the
// reader stalled.
func (c *consumer) watch() {
	defer c.wg.Done()
	tick := time.NewTicker(c.cfg.timings.watchEvery)
	defer tick.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-tick.C:
		}
		var waiting time.Time
		if w := c.waiting.Load(); w != 0 {
			waiting = time.Unix(0, w)
		}
		if c.h.check(c.ctx, time.Now(), waiting, c.positions()) == stalled {
			c.cancel(errStalled)
			return
		}
	}
}

// positions returns a copy of next.
func (c *consumer) positions() map[int]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.next)
}

// fetch returns the next event's message, or false and why the run ends:
// the cause ctx was cancelled with (a worker's failure, a stall), nil when
// ctx itself ended, errStalled after fetchErrorsMax failed fetches in a
// row.
//
// A failed fetch is kafka-go giving up one try (a group it could not
// rejoin, a partition it could not read from) while it goes on trying: the
// same reader is asked again, after a pause. Replacing it instead, as this
// did before, made an outage longer: the old reader cannot leave its group
// while the brokers are away, and the group then waits for its session to
// time out before the new one may join.
func (c *consumer) fetch() (kafkago.Message, bool, error) {
	for failed := 0; ; {
		c.waiting.Store(time.Now().UnixNano())
		m, err := c.r.FetchMessage(c.ctx)
		c.waiting.Store(0)
		if err == nil {
			c.h.fetched()
			return m, true, nil
		}
		if cause := context.Cause(c.ctx); cause != nil && cause != c.ctx.Err() && !errors.Is(cause, context.Canceled) {
			return m, false, cause
		}
		if c.ctx.Err() != nil {
			return m, false, nil
		}
		c.h.readerError("fetch: %v", err)
		if failed++; failed >= fetchErrorsMax {
			return m, false, fmt.Errorf("%w: %d fetches failed in a row: %v", errStalled, failed, err)
		}
		if !sleepCtx(c.ctx, c.cfg.timings.restartBackoff) {
			return m, false, nil
		}
	}
}

// dispatch notes m in its partition's order and hands its event to a
// worker, waiting for a free slot. An event of a kind cfg.Wants passes over
// is done at once, undecoded; one that does not decode ends the run, since
// skipping it would lose it.
func (c *consumer) dispatch(m kafkago.Message) error {
	if c.cfg.Wants != nil {
		if k, ok := headerKind(&m); ok && !c.cfg.Wants(k) {
			c.track(&work{msg: m, done: true})
			c.nudge()
			return nil
		}
	}
	var e ledger.Event
	if err := decodeEvent(m.Value, &e); err != nil {
		return fmt.Errorf("event at %d/%d: %w", m.Partition, m.Offset, err)
	}
	if e.Version != ledger.EventVersion {
		return fmt.Errorf("event at %d/%d: schema version %d unknown", m.Partition, m.Offset, e.Version)
	}
	w := &work{msg: m}
	c.track(w)
	select {
	case c.slots <- struct{}{}:
	case <-c.ctx.Done():
		return nil // the next fetch returns the cause
	}
	c.wg.Add(1)
	go c.runWorker(w, e)
	return nil
}

// runWorker handles one event, with retries, and marks it done; a failure
// for good stops the run with its error.
func (c *consumer) runWorker(w *work, e ledger.Event) {
	defer c.wg.Done()
	defer func() { <-c.slots }()
	if err := handleWithRetry(c.ctx, c.cfg, &c.h.handling, c.handle, e); err != nil {
		if c.ctx.Err() == nil {
			c.cancel(fmt.Errorf("event %s: %w", e.ID, err))
		}
		return
	}
	c.mu.Lock()
	w.done = true
	c.mu.Unlock()
	c.nudge()
}

// track appends w to its partition's order.
func (c *consumer) track(w *work) {
	c.mu.Lock()
	c.order[w.msg.Partition] = append(c.order[w.msg.Partition], w)
	c.next[w.msg.Partition] = w.msg.Offset + 1
	c.mu.Unlock()
}

// nudge tells commitDone that some work is done, without waiting.
func (c *consumer) nudge() {
	select {
	case c.commits <- struct{}{}:
	default:
	}
}

// commitDone commits, whenever nudged, per partition, the offset of the
// last event whose predecessors are all done. A commit that fails is tried
// again after a pause, together with what is done meanwhile (brokers away
// for a moment lose nothing, and a later offset covers an earlier one);
// after commitFailuresMax failures in a row the run ends (errStalled: a new
// reader starts from the last committed offsets).
func (c *consumer) commitDone() {
	defer c.wg.Done()
	pending := map[int]kafkago.Message{} // per partition, the last done and not yet committed
	var retry <-chan time.Time
	for failed := 0; ; {
		select {
		case <-c.ctx.Done():
			return
		case <-c.commits:
		case <-retry:
		}
		retry = nil
		for _, m := range c.takeDone() {
			pending[m.Partition] = m
		}
		if len(pending) == 0 {
			continue
		}
		err := c.r.CommitMessages(c.ctx, slices.Collect(maps.Values(pending))...)
		if c.ctx.Err() != nil {
			return
		}
		if err == nil {
			clear(pending)
			failed = 0
			continue
		}
		c.h.readerError("commit offsets: %v", err)
		if failed++; failed >= commitFailuresMax {
			c.cancel(fmt.Errorf("%w: %d offset commits failed in a row: %v", errStalled, failed, err))
			return
		}
		retry = time.After(c.cfg.timings.restartBackoff)
	}
}

// takeDone removes, per partition, the leading run of done events and
// returns the last of each run: committing it commits them all.
func (c *consumer) takeDone() []kafkago.Message {
	var done []kafkago.Message
	c.mu.Lock()
	defer c.mu.Unlock()
	for p, q := range c.order {
		n := 0
		for n < len(q) && q[n].done {
			n++
		}
		if n > 0 {
			done = append(done, q[n-1].msg)
			c.order[p] = q[n:]
		}
	}
	return done
}

func handleWithRetry(ctx context.Context, cfg ConsumerConfig, fails *handleFailures, handle func(context.Context, ledger.Event) error, e ledger.Event) error {
	backoff := 10 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := handle(ctx, e)
		if err == nil {
			fails.succeeded(cfg.Logger)
		}
		if err == nil || ctx.Err() != nil || errors.Is(err, ledger.ErrInvariantBroke) || attempt >= cfg.AttemptsMax {
			return err
		}
		fails.failed(cfg.Logger, cfg.timings.reportAfter, e, attempt, err)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
		backoff = min(2*backoff, cfg.BackoffMax)
	}
}

// handleFailures reports handling that keeps failing once, not per retry:
// a shard failing over fails every event in flight, thousands, for a few
// seconds. Each failed attempt is logged at DEBUG; failures with no
// success between them for reportAfter are reported once at WARN, and the
// next success at INFO. (Giving up on an event ends Consume with its
// error.)
type handleFailures struct {
	active   atomic.Bool // a failure since the last success: the fast path of succeeded
	mu       sync.Mutex
	since    time.Time // the first failure since the last success
	n        int
	reported bool
}

func (f *handleFailures) failed(logger *slog.Logger, reportAfter time.Duration, e ledger.Event, attempt int, err error) {
	logger.Debug("event handling failed; retrying", "id", e.ID, "attempt", attempt, "err", err)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 {
		f.since = time.Now()
		f.active.Store(true)
	}
	f.n++
	if !f.reported && time.Since(f.since) >= reportAfter {
		f.reported = true
		logger.Warn("event handling keeps failing; retrying", "for", time.Since(f.since).Round(time.Millisecond),
			"failures", f.n, "id", e.ID, "err", err)
	}
}

func (f *handleFailures) succeeded(logger *slog.Logger) {
	if !f.active.Load() {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.reported {
		logger.Info("event handling succeeds again", "after", time.Since(f.since).Round(time.Millisecond), "failures", f.n)
	}
	f.since, f.n, f.reported = time.Time{}, 0, false
	f.active.Store(false)
}

// closeBounded closes r but waits at most closeWaitMax: kafka-go's group
// reader leaves its group on Close and can wait for a broker that is gone
// for much longer, which held a stopping process up for 15 s and more. The
// offsets that matter were committed after the work already; a reader whose
// Close is abandoned loses nothing but a clean leave (the group rebalances
// once its session times out). The abandoned goroutine ends when Close does.
// While the consumer is in trouble (brokers away) that is expected, and
// logged at DEBUG only.
func closeBounded(r *kafkago.Reader, logger *slog.Logger, troubled func() bool) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.Close()
	}()
	select {
	case <-done:
	case <-time.After(closeWaitMax):
		level := slog.LevelWarn
		if troubled() {
			level = slog.LevelDebug
		}
		logger.Log(context.Background(), level, "kafka reader did not close in time; leaving it behind", "wait", closeWaitMax)
	}
}
