package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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
	Logger      *slog.Logger
}

// Consume reads ledger events as a member of a consumer group and hands
// each to handle, committing the offset only after handle succeeded, so an
// event is never skipped (handle must be idempotent: after a crash the last
// events come again). A failing event is retried AttemptsMax times with
// backoff; then Consume returns the error rather than skip it.
func Consume(ctx context.Context, cfg ConsumerConfig, handle func(context.Context, ledger.Event) error) error {
	if cfg.AttemptsMax == 0 {
		cfg.AttemptsMax = 20
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := kafkago.NewReader(kafkago.ReaderConfig{
		Brokers: cfg.Brokers, Topic: cfg.Topic, GroupID: cfg.Group,
		MaxWait: 50 * time.Millisecond, StartOffset: kafkago.FirstOffset,
	})
	defer r.Close()
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("fetch: %w", err)
		}
		var e ledger.Event
		if err := json.Unmarshal(m.Value, &e); err != nil {
			return fmt.Errorf("event at %d/%d: %w", m.Partition, m.Offset, err)
		}
		if e.Version != ledger.EventVersion {
			return fmt.Errorf("event at %d/%d: schema version %d unknown", m.Partition, m.Offset, e.Version)
		}
		backoff := 10 * time.Millisecond
		for attempt := 1; ; attempt++ {
			err = handle(ctx, e)
			if err == nil || ctx.Err() != nil || errors.Is(err, ledger.ErrInvariantBroke) || attempt >= cfg.AttemptsMax {
				break
			}
			cfg.Logger.Warn("event handling failed; retrying", "id", e.ID, "attempt", attempt, "err", err)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			backoff = min(2*backoff, cfg.BackoffMax)
		}
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("event %s: %w", e.ID, err)
		}
		if err := r.CommitMessages(ctx, m); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("commit offset: %w", err)
		}
	}
}
