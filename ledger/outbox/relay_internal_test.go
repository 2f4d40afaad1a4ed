package outbox

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
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
