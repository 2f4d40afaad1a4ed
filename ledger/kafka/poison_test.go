package kafka_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/fundplatform/fund/internal/kafkabroker"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/kafka"
)

// An event the consumer cannot decode stops Consume with an error naming
// it, instead of being skipped: nothing after it is committed either. (It
// used to hang: the workers were waited for before they were told to stop.)
func TestConsumerStopsOnUndecodableEvent(t *testing.T) {
	broker, err := kafkabroker.Start(0, 1, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := kafka.NewWriter(broker.Addrs(), topic)
	if err := w.WriteMessages(ctx, kafkago.Message{Key: []byte("0"), Value: []byte("not an event")}); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()

	done := make(chan error, 1)
	go func() {
		done <- kafka.Consume(ctx, kafka.ConsumerConfig{Brokers: broker.Addrs(), Topic: topic, Group: "poison"},
			func(context.Context, ledger.Event) error { return nil })
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "event at 0/0") {
			t.Fatalf("Consume returned %v, want the undecodable event's error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Consume did not return after an undecodable event")
	}
	if n := committedTotal(t, ctx, broker.Addrs(), "poison"); n != 0 {
		t.Errorf("offsets committed up to %d past an event never handled", n)
	}
}

// An event whose handling keeps failing is retried AttemptsMax times, then
// Consume returns the error rather than skip it.
func TestConsumerGivesUpAfterAttemptsMax(t *testing.T) {
	broker, err := kafkabroker.Start(0, 1, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pub := kafka.NewPublisher(broker.Addrs(), topic)
	defer pub.Close()
	e := ledger.Event{Version: ledger.EventVersion, ID: ledger.NewTransferID(), Timestamp: 1,
		DebitAccountID: 1, CreditAccountID: 2, Amount: 1, Asset: ledger.AssetCNY, Kind: 1}
	if err := pub.Publish(ctx, []ledger.Event{e}); err != nil {
		t.Fatal(err)
	}
	failing := errors.New("handler refuses")
	var attempts atomic.Int32
	err = kafka.Consume(ctx, kafka.ConsumerConfig{Brokers: broker.Addrs(), Topic: topic, Group: "giveup",
		AttemptsMax: 3, BackoffMax: time.Millisecond},
		func(context.Context, ledger.Event) error { attempts.Add(1); return failing })
	if !errors.Is(err, failing) {
		t.Fatalf("Consume returned %v, want the handler's error", err)
	}
	if n := attempts.Load(); n != 3 {
		t.Errorf("handled %d times, want 3", n)
	}
	if n := committedTotal(t, ctx, broker.Addrs(), "giveup"); n != 0 {
		t.Errorf("offset committed up to %d for an event never handled", n)
	}
}
