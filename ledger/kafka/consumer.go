package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
func Consume(ctx context.Context, cfg ConsumerConfig, handle func(context.Context, ledger.Event) error) error {
	// kafka-go's group reader can stay silent for good after its
	// connections broke (a broker outage); a reader that logged errors and
	// then fetched nothing for stallAfter is replaced. Events fetched but
	// not committed come again to the new reader; handle is idempotent.
	for restart := 0; ; restart++ {
		err := consumeOnce(ctx, cfg, handle)
		if !errors.Is(err, errStalled) {
			return err
		}
		if restart >= restartsMax {
			return fmt.Errorf("consumer restarted %d times: %w", restart, err)
		}
		if cfg.Logger != nil {
			cfg.Logger.Warn("kafka reader broke; starting a new one", "restart", restart+1, "err", err)
		}
		select {
		case <-time.After(restartBackoff):
		case <-ctx.Done():
			return nil
		}
	}
}

var errStalled = errors.New("kafka reader broke or stalled")

const (
	closeWaitMax   = 5 * time.Second
	stallAfter     = 3 * time.Second
	restartsMax    = 1000 // at restartBackoff apart: rides out several minutes of outage
	restartBackoff = 500 * time.Millisecond
)

func consumeOnce(ctx context.Context, cfg ConsumerConfig, handle func(context.Context, ledger.Event) error) error {
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
	var lastErr, lastFetch atomic.Int64 // Unix nanoseconds
	r := kafkago.NewReader(kafkago.ReaderConfig{
		Brokers: cfg.Brokers, Topic: cfg.Topic, GroupID: cfg.Group,
		MaxWait: 50 * time.Millisecond, StartOffset: kafkago.FirstOffset,
		ErrorLogger: kafkago.LoggerFunc(func(format string, args ...any) {
			lastErr.Store(time.Now().UnixNano())
			cfg.Logger.Warn("kafka reader: " + fmt.Sprintf(format, args...))
		}),
	})
	defer closeBounded(r, cfg.Logger)

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// The watchdog: errors, then silence for stallAfter, means stalled.
	go func() {
		tick := time.NewTicker(stallAfter / 3)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			e, f := lastErr.Load(), lastFetch.Load()
			if e != 0 && e > f && time.Since(time.Unix(0, e)) > stallAfter {
				cancel(errStalled)
				return
			}
		}
	}()
	var (
		mu      sync.Mutex
		order   = map[int][]*work{} // per partition, in offset order
		slots   = make(chan struct{}, cfg.InFlightMax)
		wg      sync.WaitGroup
		commits = make(chan struct{}, 1)
	)
	// Stop the workers and the committer before waiting for them: a return
	// with ctx still live (an undecodable event, a broken fetch) would wait
	// for good otherwise.
	defer func() {
		cancel(nil)
		wg.Wait()
	}()
	// The committer commits, per partition, the last of the events whose
	// predecessors are all done.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-commits:
			}
			var done []kafkago.Message
			mu.Lock()
			for p, q := range order {
				n := 0
				for n < len(q) && q[n].done {
					n++
				}
				if n > 0 {
					done = append(done, q[n-1].msg)
					order[p] = q[n:]
				}
			}
			mu.Unlock()
			if len(done) > 0 {
				if err := r.CommitMessages(ctx, done...); err != nil && ctx.Err() == nil {
					cancel(fmt.Errorf("%w: commit offset: %v", errStalled, err))
					return
				}
			}
		}
	}()
	for {
		m, err := r.FetchMessage(ctx)
		if err == nil {
			lastFetch.Store(time.Now().UnixNano())
		}
		if err != nil {
			if cause := context.Cause(ctx); cause != nil && cause != ctx.Err() && !errors.Is(cause, context.Canceled) {
				return cause
			}
			if ctx.Err() != nil {
				return nil
			}
			// The connection broke (an outage): a new reader rejoins the
			// group once the broker is back.
			return fmt.Errorf("%w: fetch: %v", errStalled, err)
		}
		if cfg.Wants != nil {
			if k, ok := headerKind(&m); ok && !cfg.Wants(k) {
				mu.Lock()
				order[m.Partition] = append(order[m.Partition], &work{msg: m, done: true})
				mu.Unlock()
				select {
				case commits <- struct{}{}:
				default:
				}
				continue
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
		mu.Lock()
		order[m.Partition] = append(order[m.Partition], w)
		mu.Unlock()
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			continue // the fetch above returns the cause
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			if err := handleWithRetry(ctx, cfg, handle, e); err != nil {
				if ctx.Err() == nil {
					cancel(fmt.Errorf("event %s: %w", e.ID, err))
				}
				return
			}
			mu.Lock()
			w.done = true
			mu.Unlock()
			select {
			case commits <- struct{}{}:
			default:
			}
		}()
	}
}

type work struct {
	msg  kafkago.Message
	done bool
}

func handleWithRetry(ctx context.Context, cfg ConsumerConfig, handle func(context.Context, ledger.Event) error, e ledger.Event) error {
	backoff := 10 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := handle(ctx, e)
		if err == nil || ctx.Err() != nil || errors.Is(err, ledger.ErrInvariantBroke) || attempt >= cfg.AttemptsMax {
			return err
		}
		cfg.Logger.Warn("event handling failed; retrying", "id", e.ID, "attempt", attempt, "err", err)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
		backoff = min(2*backoff, cfg.BackoffMax)
	}
}

// closeBounded closes r but waits at most closeWaitMax: kafka-go's group
// reader leaves its group on Close and can wait for a broker that is gone
// for much longer, which held a stopping process up for 15 s and more. The
// offsets that matter were committed after the work already; a reader whose
// Close is abandoned loses nothing but a clean leave (the group rebalances
// once its session times out). The abandoned goroutine ends when Close does.
func closeBounded(r *kafkago.Reader, logger *slog.Logger) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.Close()
	}()
	select {
	case <-done:
	case <-time.After(closeWaitMax):
		logger.Warn("kafka reader did not close in time; leaving it behind", "wait", closeWaitMax)
	}
}
