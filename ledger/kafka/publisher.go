package kafka

import (
	"context"
	"fmt"
	"strconv"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/fundplatform/fund/ledger"
)

// batchBytesMax keeps every produce batch under the broker's default
// message.max.bytes (1 MiB, in Kafka and in kfake alike): a bigger batch is
// refused whole, and the relay would retry the same round until it gave up.
// kafka-go splits a larger WriteMessages call into batches of this size.
const batchBytesMax = 1_000_000

// batchSizeMax is the messages in one produce batch (see NewPublisher).
const batchSizeMax = 512

// Publisher writes ledger events to a topic, one message per event, JSON
// with the event's schema version inside.
type Publisher struct {
	w *kafkago.Writer
}

// NewPublisher returns a publisher to brokers (host:port) for topic.
func NewPublisher(brokers []string, topic string) *Publisher {
	return &Publisher{w: NewWriter(brokers, topic)}
}

// NewWriter returns the kafka-go writer every publisher of the platform
// uses: acknowledged by all in-sync replicas, partitioned by a hash of the
// key (one key's messages stay in order), produce batches the broker
// accepts.
func NewWriter(brokers []string, topic string) *kafkago.Writer {
	return &kafkago.Writer{
		Addr:         kafkago.TCP(brokers...),
		Topic:        topic,
		Balancer:     &kafkago.Hash{},
		RequiredAcks: kafkago.RequireAll,
		// kafka-go allocates (and zeroes) room for BatchSize messages for
		// every batch it starts, one per partition per call, however few
		// messages follow: at 5,000 (~750 KB each) a relay publishing a
		// few dozen events per partition hundreds of times a second spent
		// more time clearing memory than encoding. 512 keeps big rounds
		// (a settlement night) at a few requests per partition.
		BatchSize:    batchSizeMax,
		BatchBytes:   batchBytesMax,
		BatchTimeout: 500 * time.Microsecond,
		MaxAttempts:  3,
		WriteTimeout: 10 * time.Second,
		ReadTimeout:  10 * time.Second,
	}
}

// Publish implements outbox.Publisher: it returns nil only once every
// event is acknowledged.
func (p *Publisher) Publish(ctx context.Context, events []ledger.Event) error {
	msgs := make([]kafkago.Message, len(events))
	for i := range events {
		e := &events[i]
		msgs[i] = kafkago.Message{Key: []byte(strconv.Itoa(e.Shard)), Value: appendEventJSON(make([]byte, 0, eventJSONSize(e)), e),
			Headers: []kafkago.Header{{Key: KindHeader, Value: strconv.AppendUint(nil, uint64(e.Kind), 10)}}}
	}
	if err := p.w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("write %d events: %w", len(msgs), err)
	}
	return nil
}

// Close flushes and closes the writer.
func (p *Publisher) Close() error { return p.w.Close() }
