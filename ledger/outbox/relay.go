package outbox

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/fundplatform/fund/ledger"
)

// Store is the ledger's transactional outbox (ledger/postgres.Store).
type Store interface {
	// OutboxPending returns up to limit unpublished batches per shard,
	// oldest first within each shard.
	OutboxPending(ctx context.Context, shards []int, limit int) ([]ledger.OutboxBatch, error)
	// OutboxAck removes each shard's batches up to the given position.
	OutboxAck(ctx context.Context, upTo map[int]int64) error
}

// Publisher sends events to the broker. Publish returns nil only when every
// event was acknowledged by the broker (for Kafka: by all in-sync replicas).
type Publisher interface {
	Publish(ctx context.Context, events []ledger.Event) error
}

// RelayConfig tunes the relay.
type RelayConfig struct {
	Shards       []int
	BatchesMax   int           // outbox rows read per round, per shard
	PollInterval time.Duration // sleep when every outbox is empty
	// Linger is the pause after a round that moved events but did not fill
	// its read, so that the next round carries what committed meanwhile
	// (Kafka producers' linger.ms, one level up). Each round costs a read
	// and a delete in Postgres and a produce round trip whatever it carries;
	// under load, rounds back to back carried one or two batches each. It
	// adds at most Linger to an event's way to the broker. 0 = 5 ms; < 0 =
	// none.
	Linger time.Duration
	// IdlePoll is the sleep between rounds once every outbox has stayed
	// empty for idleAfter: an idle relay read the outbox 50 times a
	// second, most of an idle process's CPU. The first event after a quiet
	// spell waits up to IdlePoll longer; steady traffic keeps
	// PollInterval. 0 = 100 ms; < 0 = PollInterval always.
	IdlePoll    time.Duration
	AttemptsMax int // consecutive failed rounds before Run gives up
	BackoffMax  time.Duration
	// ReportAfter: rounds failing in a row for this long are reported
	// once at WARN, and the first round that succeeds after them at INFO;
	// each failed round is logged at DEBUG (a broker or database away for
	// a moment is not worth an operator's attention). 0 = 5 s.
	ReportAfter time.Duration
}

// idleAfter is how long every outbox stays empty before the relay polls
// at IdlePoll.
const idleAfter = time.Second

func (c *RelayConfig) setDefaults() {
	if c.BatchesMax == 0 {
		c.BatchesMax = 64
	}
	if c.PollInterval == 0 {
		c.PollInterval = 20 * time.Millisecond
	}
	if c.Linger == 0 {
		c.Linger = 5 * time.Millisecond
	}
	if c.AttemptsMax == 0 {
		c.AttemptsMax = 120 // with BackoffMax of 1 s: rides out about two minutes of outage
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = time.Second
	}
	if c.IdlePoll == 0 {
		c.IdlePoll = 100 * time.Millisecond
	}
	if c.IdlePoll < 0 {
		c.IdlePoll = c.PollInterval
	}
	if c.ReportAfter == 0 {
		c.ReportAfter = 5 * time.Second
	}
}

// Relay publishes the outbox. One relay per shard set: two relays on the
// same shards would publish twice (harmless, consumers deduplicate, but
// wasteful).
type Relay struct {
	cfg       RelayConfig
	outbox    Store
	pub       Publisher
	log       *slog.Logger
	published atomic.Int64
	failures  atomic.Int64
}

// NewRelay returns a relay; start it with Run.
func NewRelay(cfg RelayConfig, outbox Store, pub Publisher, logger *slog.Logger) *Relay {
	cfg.setDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Relay{cfg: cfg, outbox: outbox, pub: pub, log: logger.With("role", "relay")}
}

// Published returns how many events were published, and how many publish
// rounds failed, since start.
func (r *Relay) Published() (events, failures int64) { return r.published.Load(), r.failures.Load() }

// Run relays until ctx ends, or returns an error after AttemptsMax
// consecutive failed rounds.
func (r *Relay) Run(ctx context.Context) error {
	var fails failStreak
	var emptySince time.Time // zero while events move
	for ctx.Err() == nil {
		moved, full, err := r.round(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			r.failures.Add(1)
			backoff, err := fails.failed(r, err)
			if err != nil {
				return err
			}
			if !sleep(ctx, backoff) {
				return nil
			}
			continue
		}
		fails.succeeded(r)
		pause := time.Duration(0)
		switch {
		case moved == 0:
			if emptySince.IsZero() {
				emptySince = time.Now()
			}
			pause = r.cfg.PollInterval
			if time.Since(emptySince) >= idleAfter {
				pause = r.cfg.IdlePoll
			}
		case !full && r.cfg.Linger > 0:
			emptySince = time.Time{}
			pause = r.cfg.Linger
		default:
			emptySince = time.Time{}
		}
		if pause > 0 && !sleep(ctx, pause) {
			return nil
		}
	}
	return nil
}

// failStreak is the relay's consecutive failed rounds.
type failStreak struct {
	n        int
	since    time.Time
	backoff  time.Duration
	reported bool
}

// failed counts a failed round and returns the pause before the next, or
// the error to stop with once AttemptsMax rounds failed in a row.
func (f *failStreak) failed(r *Relay, err error) (time.Duration, error) {
	if f.n == 0 {
		f.since, f.backoff = time.Now(), 10*time.Millisecond
	}
	f.n++
	if f.n >= r.cfg.AttemptsMax {
		return 0, fmt.Errorf("relay: %d rounds failed in a row: %w", f.n, err)
	}
	r.log.Debug("relay round failed; backing off", "attempt", f.n, "backoff", f.backoff, "err", err)
	if !f.reported && time.Since(f.since) >= r.cfg.ReportAfter {
		f.reported = true
		r.log.Warn("relay rounds keep failing; retrying", "for", time.Since(f.since).Round(time.Millisecond),
			"rounds_failed", f.n, "err", err)
	}
	backoff := f.backoff
	f.backoff = min(2*f.backoff, r.cfg.BackoffMax)
	return backoff, nil
}

// succeeded ends the streak, if any.
func (f *failStreak) succeeded(r *Relay) {
	if f.n == 0 {
		return
	}
	if f.reported {
		r.log.Info("relay rounds succeed again", "after", time.Since(f.since).Round(time.Millisecond), "rounds_failed", f.n)
	}
	*f = failStreak{}
}

// round publishes what is waiting on every shard (one read, one publish,
// one acknowledgement for all of them; order is kept within each shard)
// and acknowledges the batches once they are published. full reports that
// some shard had as many batches waiting as a round reads: more may wait.
func (r *Relay) round(ctx context.Context) (moved int, full bool, err error) {
	batches, err := r.outbox.OutboxPending(ctx, r.cfg.Shards, r.cfg.BatchesMax)
	if err != nil || len(batches) == 0 {
		return 0, false, err
	}
	var events []ledger.Event
	upTo := map[int]int64{}
	perShard := map[int]int{}
	for _, b := range batches {
		events = append(events, b.Events...)
		upTo[b.Shard] = max(upTo[b.Shard], b.LastTS)
		perShard[b.Shard]++
		full = full || perShard[b.Shard] >= r.cfg.BatchesMax
	}
	if err := r.pub.Publish(ctx, events); err != nil {
		return 0, false, fmt.Errorf("publish: %w", err)
	}
	if err := r.outbox.OutboxAck(ctx, upTo); err != nil {
		return 0, false, err
	}
	r.published.Add(int64(len(events)))
	return len(events), full, nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
