package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fundplatform/fund/internal/kafkabroker"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/kafka"
	"github.com/fundplatform/fund/ledger/outbox"
)

// A healthy pipeline, relay to publisher to consumer group, logs nothing
// at WARN or above, idle or busy, even when the broker leaves a few
// fetches unanswered (clients time out and reconnect, as on a busy
// machine), and no reader is replaced: an idle partition with nothing
// waiting is not a stalled one. The consumer runs with the former 50 ms
// long poll and watchdog (3 s), which logged a WARN per timeout and
// replaced the idle reader 3 s after one.
func TestHealthyPipelineLogsNothingAboveDebug(t *testing.T) {
	broker, err := kafkabroker.Start(0, 4, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	logs := newLogCapture()
	logger := slog.New(logs)
	store := &memOutbox{}
	pub := kafka.NewPublisher(broker.Addrs(), topic)
	defer func() { _ = pub.Close() }()
	handled := make(chan ledger.TransferID, 16)
	cfg := kafka.WithTimings(kafka.ConsumerConfig{Brokers: broker.Addrs(), Topic: topic, Group: "quiet", Logger: logger},
		kafka.Timings{MaxWait: 50 * time.Millisecond, StallAfter: 3 * time.Second, ReportAfter: 300 * time.Millisecond,
			WatchEvery: 50 * time.Millisecond})
	stop := runAll(t,
		func(ctx context.Context) error {
			return outbox.NewRelay(outbox.RelayConfig{Shards: []int{0}}, store, pub, logger).Run(ctx)
		},
		func(ctx context.Context) error {
			return kafka.Consume(ctx, cfg, func(_ context.Context, e ledger.Event) error {
				handled <- e.ID
				return nil
			})
		})

	waitHandled(t, handled, store.add())
	select {
	case <-broker.Hiccup(4):
	case <-time.After(30 * time.Second):
		t.Fatal("the consumer sent no fetch for 30 s")
	}
	logs.waitFor(t, "the reader's timeout logged", func(r record) bool { return strings.HasPrefix(r.msg, "kafka reader: ") })
	time.Sleep(4 * time.Second) // idle for longer than stallAfter
	waitHandled(t, handled, store.add())
	stop()

	for _, r := range logs.all() {
		if r.level >= slog.LevelWarn || r.msg == "kafka reader replaced" {
			t.Errorf("a healthy pipeline logged %s %q %s", r.level, r.msg, r.attrs)
		}
	}
}

// A broker outage is reported once at WARN, however long it lasts, and
// its end at INFO; the consumer then goes on with the events published
// after it, and commits what it could not commit during it. kafka-go
// rejoins the group by itself: no reader is replaced.
func TestBrokerOutageReportedOnce(t *testing.T) {
	broker, err := kafkabroker.Start(0, 2, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	logs := newLogCapture()
	pub := kafka.NewPublisher(broker.Addrs(), topic)
	defer func() { _ = pub.Close() }()
	handled := make(chan ledger.TransferID, 16)
	cfg := kafka.WithTimings(kafka.ConsumerConfig{Brokers: broker.Addrs(), Topic: topic, Group: "outage", Logger: slog.New(logs)},
		kafka.Timings{MaxWait: 200 * time.Millisecond, StallAfter: 30 * time.Second, ReportAfter: 300 * time.Millisecond,
			WatchEvery: 50 * time.Millisecond})
	stop := runAll(t, func(ctx context.Context) error {
		return kafka.Consume(ctx, cfg, func(_ context.Context, e ledger.Event) error {
			handled <- e.ID
			return nil
		})
	})
	defer stop()
	publish := func() ledger.TransferID {
		e := testEvent()
		for attempt := 1; ; attempt++ { // the writer may still hold connections from before the outage
			err := pub.Publish(context.Background(), []ledger.Event{e})
			if err == nil {
				return e.ID
			}
			if attempt == 10 {
				t.Fatalf("publish: %v", err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	waitHandled(t, handled, publish())
	broker.Down()
	logs.waitFor(t, "the outage reported", func(r record) bool { return r.level == slog.LevelWarn })
	time.Sleep(time.Second) // twenty more ticks of the watchdog into the outage
	broker.Up()
	waitHandled(t, handled, publish())
	logs.waitFor(t, "the recovery logged at INFO", func(r record) bool {
		return r.level == slog.LevelInfo && r.msg == "kafka consumer healthy again"
	})
	// The commit that failed in the outage is made after it.
	for deadline := time.Now().Add(30 * time.Second); committedTotal(t, context.Background(), broker.Addrs(), "outage") != 2; {
		if time.Now().After(deadline) {
			t.Fatal("both events' offsets not committed within 30 s of the outage")
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()

	var above []record
	for _, r := range logs.all() {
		if r.level >= slog.LevelWarn {
			above = append(above, r)
		}
		if r.msg == "kafka reader replaced" {
			t.Errorf("reader replaced: %s", r)
		}
	}
	if len(above) != 1 || above[0].msg != "kafka brokers unreachable; the consumer keeps retrying" {
		t.Errorf("logged at WARN and above: %v, want the outage once", above)
	}
}

// A reader whose fetches go unanswered while events wait for it has
// stalled: after stallAfter it is replaced, which is reported once at WARN
// however often it happens, and the events are handled once the broker
// answers again.
func TestStalledReaderReplacedAndReportedOnce(t *testing.T) {
	broker, err := kafkabroker.Start(0, 1, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	logs := newLogCapture()
	pub := kafka.NewPublisher(broker.Addrs(), topic)
	defer func() { _ = pub.Close() }()
	handled := make(chan ledger.TransferID, 16)
	cfg := kafka.WithTimings(kafka.ConsumerConfig{Brokers: broker.Addrs(), Topic: topic, Group: "stall", Logger: slog.New(logs)},
		kafka.Timings{MaxWait: 100 * time.Millisecond, StallAfter: time.Second, ReportAfter: 300 * time.Millisecond,
			WatchEvery: 50 * time.Millisecond})
	stop := runAll(t, func(ctx context.Context) error {
		return kafka.Consume(ctx, cfg, func(_ context.Context, e ledger.Event) error {
			handled <- e.ID
			return nil
		})
	})
	defer stop()
	publish := func() ledger.TransferID {
		e := testEvent()
		if err := pub.Publish(context.Background(), []ledger.Event{e}); err != nil {
			t.Fatal(err)
		}
		return e.ID
	}

	waitHandled(t, handled, publish())
	// 15 unanswered fetches take at least 15 read timeouts and 15 of
	// kafka-go's 100 ms backoffs: 3 s, three stallAfter.
	broker.Hiccup(15)
	waitHandled(t, handled, publish())
	logs.waitFor(t, "the recovery logged at INFO", func(r record) bool {
		return r.level == slog.LevelInfo && r.msg == "kafka consumer healthy again"
	})
	stop()

	var above []record
	replaced := 0
	for _, r := range logs.all() {
		if r.level >= slog.LevelWarn {
			above = append(above, r)
		}
		if r.msg == "kafka reader replaced" {
			replaced++
		}
	}
	if len(above) != 1 || above[0].msg != "kafka reader stalled with events waiting; starting a new one" {
		t.Errorf("logged at WARN and above: %v, want the stall once", above)
	}
	if replaced == 0 {
		t.Error("the stalled reader was not replaced")
	}
}

// A handler that keeps failing (a shard failing over) is retried, which is
// reported once at WARN however many attempts follow, and its recovery at
// INFO.
func TestHandlerFailuresReportedOnce(t *testing.T) {
	broker, err := kafkabroker.Start(0, 1, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	logs := newLogCapture()
	pub := kafka.NewPublisher(broker.Addrs(), topic)
	defer func() { _ = pub.Close() }()
	var healed atomic.Bool
	var attempts atomic.Int64
	handled := make(chan ledger.TransferID, 16)
	cfg := kafka.WithTimings(kafka.ConsumerConfig{Brokers: broker.Addrs(), Topic: topic, Group: "handler",
		AttemptsMax: 100_000, BackoffMax: 5 * time.Millisecond, Logger: slog.New(logs)},
		kafka.Timings{MaxWait: 200 * time.Millisecond, ReportAfter: 100 * time.Millisecond})
	stop := runAll(t, func(ctx context.Context) error {
		return kafka.Consume(ctx, cfg, func(_ context.Context, e ledger.Event) error {
			if !healed.Load() {
				attempts.Add(1)
				return errors.New("shard moving")
			}
			handled <- e.ID
			return nil
		})
	})
	defer stop()
	e := testEvent()
	if err := pub.Publish(context.Background(), []ledger.Event{e}); err != nil {
		t.Fatal(err)
	}
	logs.waitFor(t, "the failures reported", func(r record) bool { return r.level == slog.LevelWarn })
	for n, deadline := attempts.Load()+10, time.Now().Add(30*time.Second); attempts.Load() < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the handler was not retried ten more times within 30 s")
		}
	}
	healed.Store(true)
	waitHandled(t, handled, e.ID)
	stop()

	var above []string
	for _, r := range logs.all() {
		if r.level >= slog.LevelInfo && strings.HasPrefix(r.msg, "event handling") {
			above = append(above, r.level.String()+" "+r.msg)
		}
		if r.level >= slog.LevelWarn && !strings.HasPrefix(r.msg, "event handling") {
			t.Errorf("logged %s", r)
		}
	}
	if !slices.Equal(above, []string{"WARN event handling keeps failing; retrying", "INFO event handling succeeds again"}) {
		t.Errorf("logged about handling: %q, want the failures reported once and the recovery", above)
	}
}

// runAll runs each fn until the returned stop is called (the test's
// cleanup calls it too); an fn that returns early with an error fails the
// test.
func runAll(t *testing.T, fns ...func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, fn := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx); err != nil {
				t.Errorf("stopped early: %v", err)
			}
		}()
	}
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

func testEvent() ledger.Event {
	return ledger.Event{Version: ledger.EventVersion, ID: ledger.NewTransferID(), Kind: 1, Amount: 100,
		Asset: ledger.AssetCNY, DebitAccountID: 1, CreditAccountID: 2}
}

// waitHandled waits, up to 30 s, for the consumer to handle id.
func waitHandled(t *testing.T, handled <-chan ledger.TransferID, id ledger.TransferID) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case got := <-handled:
			if got == id {
				return
			}
		case <-deadline:
			t.Fatalf("event %v not handled within 30 s", id)
		}
	}
}

// memOutbox is an outbox in memory, for a relay without a database.
type memOutbox struct {
	mu      sync.Mutex
	pending []ledger.OutboxBatch
	ts      int64
}

// add queues one event on shard 0 and returns its id.
func (m *memOutbox) add() ledger.TransferID {
	e := testEvent()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ts++
	m.pending = append(m.pending, ledger.OutboxBatch{Shard: 0, LastTS: m.ts, Events: []ledger.Event{e}})
	return e.ID
}

func (m *memOutbox) OutboxPending(_ context.Context, _ []int, limit int) ([]ledger.OutboxBatch, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]ledger.OutboxBatch(nil), m.pending[:min(limit, len(m.pending))]...), nil
}

func (m *memOutbox) OutboxAck(_ context.Context, upTo map[int]int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for len(m.pending) > 0 && m.pending[0].LastTS <= upTo[m.pending[0].Shard] {
		m.pending = m.pending[1:]
	}
	return nil
}

// record is a log record as logCapture keeps it.
type record struct {
	level slog.Level
	msg   string
	attrs string
}

func (r record) String() string { return fmt.Sprintf("%s %q %s", r.level, r.msg, r.attrs) }

// logCapture is a slog handler that keeps every record, at every level.
type logCapture struct {
	mu    *sync.Mutex
	recs  *[]record
	attrs string
}

func newLogCapture() *logCapture { return &logCapture{mu: &sync.Mutex{}, recs: &[]record{}} }

func (c *logCapture) Enabled(context.Context, slog.Level) bool { return true }

func (c *logCapture) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(c.attrs)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s", a)
		return true
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	*c.recs = append(*c.recs, record{level: r.Level, msg: r.Message, attrs: b.String()})
	return nil
}

func (c *logCapture) WithAttrs(as []slog.Attr) slog.Handler {
	d := *c
	for _, a := range as {
		d.attrs += " " + a.String()
	}
	return &d
}

func (c *logCapture) WithGroup(string) slog.Handler { return c }

func (c *logCapture) all() []record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]record(nil), *c.recs...)
}

// waitFor waits, up to 30 s, for a record that matches.
func (c *logCapture) waitFor(t *testing.T, what string, match func(record) bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, r := range c.all() {
			if match(r) {
				return
			}
		}
	}
	t.Fatalf("not logged within 30 s: %s; logged: %v", what, c.all())
}
