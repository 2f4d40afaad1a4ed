package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// timings are the consumer's clocks. Production uses the defaults; tests
// shorten them (export_test.go) to provoke hiccups and outages quickly.
type timings struct {
	// maxWait is how long a fetch waits at the broker for the first new
	// event. kafka-go sets the connection's read deadline to maxWait and
	// asks the broker to answer within maxWait less an allowance for the
	// round trip: a quarter of it below 1 s, 1 s above. At the former 50
	// ms the allowance was 12.5 ms, which a busy machine (or a GC pause,
	// or kfake's single loop) overran every few seconds, and 16 readers
	// polled 400 times a second while nothing happened. At 2 s the broker
	// holds an idle fetch for 1 s and the allowance is 1 s. An event is
	// still delivered as soon as it arrives (the broker answers at once);
	// the price is that stopping or rebalancing a reader waits for its
	// current fetch, up to 1 s.
	maxWait time.Duration
	// stallAfter: a reader that logged errors, fetched nothing since and
	// leaves events waiting for this long has stalled and is replaced. A
	// last resort, well above the time kafka-go takes to recover by itself
	// (a partition reader retries within 1 s, a group rejoins within its
	// 5 s backoff): a replaced reader that cannot leave its group keeps
	// the group from rebalancing until its session times out
	// (sessionTimeout).
	stallAfter time.Duration
	// reportAfter: brokers unreachable for this long are an outage,
	// reported once; so are events whose handling fails for this long.
	reportAfter time.Duration
	// watchEvery is the watchdog's tick.
	watchEvery time.Duration
	// restartBackoff is the pause before a replaced reader's successor.
	restartBackoff time.Duration
	// probeTimeout bounds the watchdog's questions to the brokers.
	probeTimeout time.Duration
}

func (t timings) withDefaults() timings {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&t.maxWait, 2*time.Second)
	def(&t.stallAfter, 20*time.Second)
	def(&t.reportAfter, 5*time.Second)
	def(&t.watchEvery, time.Second)
	def(&t.restartBackoff, 500*time.Millisecond)
	def(&t.probeTimeout, 2*time.Second)
	return t
}

// health is what Consume knows about whether its reader consumes. It
// outlives each reader, so that a replacement inherits the trouble its
// predecessor was in (and what was already reported about it).
//
// kafka-go's reader retries by itself and logs every failed try: a fetch
// that timed out, a connection the broker closed, a group to rejoin. Most
// heal on the next try and tell an operator nothing, so they are logged at
// DEBUG. Whether the consumer still consumes is what matters, and while
// the topic is idle only the brokers can say: once the reader has logged
// an error and fetched nothing since (trouble), the watchdog asks them
// (groupPositions) on every tick:
//   - they do not answer: an outage, reported once at WARN after
//     reportAfter; the reader keeps retrying by itself;
//   - they answer and nothing waits at the consumer's position: the
//     reader is idle, the trouble is over;
//   - events wait, and for stallAfter since they were first seen the
//     reader delivered none while the consumer waited for one: the reader
//     stalled (kafka-go's group reader can stay silent for good
//     after its connections broke) and is replaced; the first replacement
//     of an unreported trouble is reported at WARN.
//
// A fetched event also ends the trouble. The end of a reported trouble is
// logged at INFO.
type health struct {
	t       timings
	logger  *slog.Logger
	brokers []string
	topic   string
	group   string

	// Set by the reader's error log and by fetch, read by the watchdog;
	// Unix nanoseconds, 0 = never.
	lastErr, lastFetch atomic.Int64
	since              atomic.Int64 // the current trouble's first error
	lastErrText        atomic.Pointer[string]
	errs               atomic.Int64 // reader errors in the current trouble

	// handling is the handler's failures, reported apart from the
	// reader's.
	handling handleFailures

	// The watchdog's own: one watchdog runs at a time, and consumeOnce
	// waits for it before the next reader starts.
	downAt   time.Time // first unanswered probe of an outage; zero = answered
	lagAt    time.Time // first probe that saw events waiting for the consumer; zero = none
	reported bool      // the current trouble was reported at WARN
	restarts int       // readers replaced in the current trouble
}

func newHealth(cfg ConsumerConfig) *health {
	return &health{t: cfg.timings, logger: cfg.Logger, brokers: cfg.Brokers, topic: cfg.Topic, group: cfg.Group}
}

// readerError is kafka-go's error log.
func (h *health) readerError(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	h.lastErrText.Store(&msg)
	h.errs.Add(1)
	now := time.Now().UnixNano()
	h.since.CompareAndSwap(0, now)
	h.lastErr.Store(now)
	h.logger.Debug("kafka reader: " + msg)
}

// fetched notes that the reader delivered an event.
func (h *health) fetched() { h.lastFetch.Store(time.Now().UnixNano()) }

// lastError returns the reader's last logged error.
func (h *health) lastError() string {
	if p := h.lastErrText.Load(); p != nil {
		return *p
	}
	return ""
}

// troubled reports whether the reader has logged errors it has not yet
// recovered from.
func (h *health) troubled() bool { return h.lastErr.Load() != 0 }

// verdict is what the watchdog concludes on a tick.
type verdict int

const (
	fine    verdict = iota // no trouble, or trouble being waited out
	stalled                // replace the reader
)

// check is the watchdog's tick. waiting is since when the consumer has
// been waiting for an event (zero while it is busy handing one over);
// next is, per partition, the offset after the last event it fetched.
func (h *health) check(ctx context.Context, now, waiting time.Time, next map[int]int64) verdict {
	e, f := h.lastErr.Load(), h.lastFetch.Load()
	if e == 0 {
		return fine
	}
	if f > e {
		h.over(e, now, "events fetched")
		return fine
	}
	pctx, cancel := context.WithTimeout(ctx, h.t.probeTimeout)
	lag, err := h.lag(pctx, next)
	cancel()
	if ctx.Err() != nil {
		return fine
	}
	if err != nil {
		h.unreachable(now, err)
		return fine
	}
	if !h.downAt.IsZero() {
		if h.reported {
			h.logger.Info("kafka brokers reachable again", "down", now.Sub(h.downAt).Round(time.Millisecond))
		}
		h.downAt = time.Time{}
	}
	if lag == 0 {
		h.over(e, now, "idle")
		return fine
	}
	// Events wait. Give the reader stallAfter, from when they were first
	// seen, to deliver one; not while the consumer is busy elsewhere.
	if waiting.IsZero() {
		h.lagAt = time.Time{}
		return fine
	}
	if h.lagAt.IsZero() {
		h.lagAt = now
	}
	if now.Sub(h.lagAt) < h.t.stallAfter {
		return fine
	}
	if !h.reported {
		h.reported = true
		h.logger.Warn("kafka reader stalled with events waiting; starting a new one", "waiting", lag,
			"for", now.Sub(h.lagAt).Round(time.Millisecond), "errors", h.errs.Load(), "last_error", h.lastError())
	}
	return stalled
}

// unreachable notes a probe the brokers did not answer and reports the
// outage once it lasted reportAfter.
func (h *health) unreachable(now time.Time, err error) {
	if h.downAt.IsZero() {
		h.downAt = now
	}
	if h.reported || now.Sub(h.downAt) < h.t.reportAfter {
		return
	}
	h.reported = true
	h.logger.Warn("kafka brokers unreachable; the consumer keeps retrying", "for", h.troubleFor(now),
		"errors", h.errs.Load(), "err", err, "last_error", h.lastError())
}

// over ends the current trouble, whose last error was at e, unless the
// reader logged another since.
func (h *health) over(e int64, now time.Time, why string) {
	if !h.lastErr.CompareAndSwap(e, 0) {
		return
	}
	took := h.troubleFor(now)
	h.since.Store(0)
	errs := h.errs.Swap(0)
	if h.reported {
		h.logger.Info("kafka consumer healthy again", "why", why, "after", took, "errors", errs, "readers_replaced", h.restarts)
	} else {
		h.logger.Debug("kafka reader errors healed by themselves", "why", why, "errors", errs, "readers_replaced", h.restarts)
	}
	h.downAt, h.lagAt, h.reported, h.restarts = time.Time{}, time.Time{}, false, 0
}

// troubleFor returns how long the current trouble has lasted.
func (h *health) troubleFor(now time.Time) time.Duration {
	s := h.since.Load()
	if s == 0 {
		return 0
	}
	return now.Sub(time.Unix(0, s)).Round(time.Millisecond)
}

// replacing notes that the reader is replaced because of err (a stall,
// or a fetch or commit that failed) and logs it: at INFO, or DEBUG once
// the trouble was reported.
func (h *health) replacing(err error) {
	h.restarts++
	h.lagAt = time.Time{} // the next reader gets stallAfter of its own
	// A reader that failed marks trouble even if kafka-go logged nothing.
	now := time.Now().UnixNano()
	h.since.CompareAndSwap(0, now)
	h.lastErr.Store(now)
	level := slog.LevelInfo
	if h.reported {
		level = slog.LevelDebug
	}
	h.logger.Log(context.Background(), level, "kafka reader replaced", "replaced", h.restarts, "err", err)
}

// lag asks the brokers how many events of the topic wait after the
// consumer's position: per partition, after the later of the group's
// committed offset and next (what this reader fetched already).
//
// Each probe dials afresh: a kafka-go transport that saw its connections
// break answers with the failure it remembers until its next metadata
// refresh (up to 6 s), which made brokers that were back look away. Probes
// run only while there is trouble, once a tick.
func (h *health) lag(ctx context.Context, next map[int]int64) (int64, error) {
	tr := &kafkago.Transport{DialTimeout: h.t.probeTimeout}
	defer tr.CloseIdleConnections()
	c := &kafkago.Client{Addr: kafkago.TCP(h.brokers...), Timeout: h.t.probeTimeout, Transport: tr}
	pos, err := groupPositions(ctx, c, h.topic, h.group)
	if err != nil {
		return 0, err
	}
	var lag int64
	for p, o := range pos {
		from := max(o.committed, o.first, next[p])
		lag += max(o.last-from, 0)
	}
	return lag, nil
}

// partitionOffsets are a partition's first and next-to-be-written
// offsets and the group's committed one (-1 = none).
type partitionOffsets struct{ first, last, committed int64 }

// groupPositions returns, per partition of topic, its offsets and group's.
func groupPositions(ctx context.Context, c *kafkago.Client, topic, group string) (map[int]partitionOffsets, error) {
	md, err := c.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("topic metadata: %w", err)
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil {
		return nil, fmt.Errorf("topic %s not in metadata", topic)
	}
	var parts []int
	var reqs []kafkago.OffsetRequest
	for _, pt := range md.Topics[0].Partitions {
		parts = append(parts, pt.ID)
		reqs = append(reqs, kafkago.FirstOffsetOf(pt.ID), kafkago.LastOffsetOf(pt.ID))
	}
	lo, err := c.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("list offsets: %w", err)
	}
	of, err := c.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
	if err != nil {
		return nil, fmt.Errorf("group offsets: %w", err)
	}
	// A group that never committed is unknown to some brokers.
	if of.Error != nil && !errors.Is(of.Error, kafkago.GroupIdNotFound) {
		return nil, fmt.Errorf("group offsets: %w", of.Error)
	}
	pos := map[int]partitionOffsets{}
	for _, po := range lo.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("offsets of partition %d: %w", po.Partition, po.Error)
		}
		pos[po.Partition] = partitionOffsets{first: po.FirstOffset, last: po.LastOffset, committed: -1}
	}
	for _, o := range of.Topics[topic] {
		if o.Error != nil {
			return nil, fmt.Errorf("group offset of partition %d: %w", o.Partition, o.Error)
		}
		if p, ok := pos[o.Partition]; ok {
			p.committed = o.CommittedOffset
			pos[o.Partition] = p
		}
	}
	return pos, nil
}
