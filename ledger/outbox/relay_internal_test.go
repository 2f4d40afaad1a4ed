package outbox

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fundplatform/fund/internal/testseed"
	"github.com/fundplatform/fund/ledger"
)

// memOutbox is an outbox in memory: batches per shard in position order.
type memOutbox struct {
	mu      sync.Mutex
	batches map[int][]ledger.OutboxBatch
	reads   int
}

func (o *memOutbox) add(shard int, ts int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.batches[shard] = append(o.batches[shard], ledger.OutboxBatch{Shard: shard, LastTS: ts,
		Events: []ledger.Event{{Shard: shard, Timestamp: ts}}})
}

func (o *memOutbox) OutboxPending(_ context.Context, shards []int, limit int) ([]ledger.OutboxBatch, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.reads++
	var out []ledger.OutboxBatch
	for _, s := range shards {
		bs := o.batches[s]
		out = append(out, bs[:min(limit, len(bs))]...)
	}
	return out, nil
}

func (o *memOutbox) OutboxAck(_ context.Context, upTo map[int]int64) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for s, ts := range upTo {
		o.batches[s] = slices.DeleteFunc(o.batches[s], func(b ledger.OutboxBatch) bool { return b.LastTS <= ts })
	}
	return nil
}

func (o *memOutbox) empty() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, bs := range o.batches {
		if len(bs) > 0 {
			return false
		}
	}
	return true
}

type memPublisher struct {
	mu     sync.Mutex
	events []ledger.Event
}

func (p *memPublisher) Publish(_ context.Context, events []ledger.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, events...)
	return nil
}

// A round says whether it read as many batches as it may for some shard
// (more may wait: no lingering before the next round), and publishes in
// position order per shard.
func TestRelayRoundFull(t *testing.T) {
	ob := &memOutbox{batches: map[int][]ledger.OutboxBatch{}}
	pub := &memPublisher{}
	r := NewRelay(RelayConfig{Shards: []int{0, 1}, BatchesMax: 3}, ob, pub, nil)
	for ts := int64(1); ts <= 4; ts++ {
		ob.add(0, ts)
	}
	ob.add(1, 10)

	moved, full, err := r.round(context.Background())
	if err != nil || moved != 4 || !full {
		t.Fatalf("first round: moved %d full %v err %v; want 4 (3 of shard 0, 1 of shard 1), full", moved, full, err)
	}
	moved, full, err = r.round(context.Background())
	if err != nil || moved != 1 || full {
		t.Fatalf("second round: moved %d full %v err %v; want 1, not full", moved, full, err)
	}
	moved, full, err = r.round(context.Background())
	if err != nil || moved != 0 || full {
		t.Fatalf("empty round: moved %d full %v err %v", moved, full, err)
	}
	var shard0 []int64
	for _, e := range pub.events {
		if e.Shard == 0 {
			shard0 = append(shard0, e.Timestamp)
		}
	}
	if !slices.Equal(shard0, []int64{1, 2, 3, 4}) {
		t.Fatalf("shard 0 published %v, want 1..4 in order", shard0)
	}
}

// Batches committed at random moments while the relay runs (with its linger)
// are all published, each once and in order per shard.
func TestRelayLingersAndPublishesAll(t *testing.T) {
	seed := testseed.Seed(t)
	rng := rand.New(rand.NewPCG(seed, seed))
	ob := &memOutbox{batches: map[int][]ledger.OutboxBatch{}}
	pub := &memPublisher{}
	r := NewRelay(RelayConfig{Shards: []int{0, 1, 2}, BatchesMax: 4, PollInterval: time.Millisecond,
		Linger: 2 * time.Millisecond}, ob, pub, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	const n = 300
	ts := make([]int64, 3)
	for range n {
		s := rng.IntN(3)
		ts[s]++
		ob.add(s, ts[s])
		if rng.IntN(10) == 0 {
			time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for !ob.empty() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	if !ob.empty() {
		t.Fatalf("outbox not drained within 30 s")
	}
	pub.mu.Lock()
	defer pub.mu.Unlock()
	if len(pub.events) != n {
		t.Fatalf("published %d events, want %d", len(pub.events), n)
	}
	last := make([]int64, 3)
	for _, e := range pub.events {
		if e.Timestamp != last[e.Shard]+1 {
			t.Fatalf("shard %d: event %d after %d", e.Shard, e.Timestamp, last[e.Shard])
		}
		last[e.Shard] = e.Timestamp
	}
}

// flakyPublisher fails every Publish until healed.
type flakyPublisher struct {
	memPublisher
	healed atomic.Bool
}

func (p *flakyPublisher) Publish(ctx context.Context, events []ledger.Event) error {
	if !p.healed.Load() {
		return errors.New("broker away")
	}
	return p.memPublisher.Publish(ctx, events)
}

// levelCounter is a slog handler that counts records per level and keeps
// the messages of those at INFO and above.
type levelCounter struct {
	mu     sync.Mutex
	counts map[slog.Level]int
	msgs   []string
}

func (c *levelCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *levelCounter) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts[r.Level]++
	if r.Level >= slog.LevelInfo {
		c.msgs = append(c.msgs, r.Level.String()+" "+r.Message)
	}
	return nil
}
func (c *levelCounter) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *levelCounter) WithGroup(string) slog.Handler      { return c }

func (c *levelCounter) count(l slog.Level) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[l]
}

// Rounds that keep failing are logged at DEBUG each and reported once at
// WARN once they lasted ReportAfter, however many follow; the first round
// that succeeds after them is logged at INFO.
func TestRelayReportsFailuresOnce(t *testing.T) {
	ob := &memOutbox{batches: map[int][]ledger.OutboxBatch{}}
	ob.add(0, 1)
	pub := &flakyPublisher{}
	logs := &levelCounter{counts: map[slog.Level]int{}}
	r := NewRelay(RelayConfig{Shards: []int{0}, BackoffMax: 5 * time.Millisecond, ReportAfter: 50 * time.Millisecond},
		ob, pub, slog.New(logs))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("not within 30 s: %s", what)
			}
		}
	}
	waitUntil("the failure reported", func() bool { return logs.count(slog.LevelWarn) > 0 })
	// Ten more failed rounds after the report.
	_, failures := r.Published()
	waitUntil("ten more failed rounds", func() bool { _, f := r.Published(); return f >= failures+10 })
	pub.healed.Store(true)
	waitUntil("the outbox drained", ob.empty)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	logs.mu.Lock()
	defer logs.mu.Unlock()
	if !slices.Equal(logs.msgs, []string{"WARN relay rounds keep failing; retrying", "INFO relay rounds succeed again"}) {
		t.Errorf("logged at INFO and above: %q, want the failure reported once and the recovery", logs.msgs)
	}
	if logs.counts[slog.LevelDebug] < 10 {
		t.Errorf("%d failed rounds logged at DEBUG, want each", logs.counts[slog.LevelDebug])
	}
}
