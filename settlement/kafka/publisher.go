package kafka

import (
	"context"
	"encoding/json"
	"fmt"

	kafkago "github.com/segmentio/kafka-go"

	fundkafka "github.com/fundplatform/fund/ledger/kafka"
	"github.com/fundplatform/fund/settlement"
)

// TopicDefault is the topic settlement events go to.
const TopicDefault = "fund.settlement"

// Publisher writes settlement events, one JSON message each, keyed by the
// event id (a re-run republishes the same ids, so consumers can drop
// repeats).
type Publisher struct {
	w *kafkago.Writer
}

// NewPublisher returns a publisher to brokers for topic: the platform's
// writer (settlement/kafka.NewWriter), creating the topic if the cluster
// allows it.
func NewPublisher(brokers []string, topic string) *Publisher {
	w := fundkafka.NewWriter(brokers, topic)
	w.AllowAutoTopicCreation = true
	w.MaxAttempts = 5
	return &Publisher{w: w}
}

// PublishSettlement implements settlement.EventPublisher.
func (p *Publisher) PublishSettlement(ctx context.Context, events []settlement.Event) error {
	msgs := make([]kafkago.Message, len(events))
	for i := range events {
		v, err := json.Marshal(&events[i])
		if err != nil {
			return fmt.Errorf("encode event %s: %w", events[i].ID, err)
		}
		msgs[i] = kafkago.Message{Key: []byte(events[i].ID), Value: v}
	}
	if err := p.w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("write %d settlement events: %w", len(msgs), err)
	}
	return nil
}

// Close flushes and closes the writer.
func (p *Publisher) Close() error { return p.w.Close() }
