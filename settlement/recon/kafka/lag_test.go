package kafka_test

import (
	"context"
	"testing"
	"time"

	"github.com/fundplatform/fund/internal/kafkabroker"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/kafka"
	reconkafka "github.com/fundplatform/fund/settlement/recon/kafka"
)

// The lag is every message for a group that committed nothing, and drops
// to zero once the group committed them all.
func TestLag(t *testing.T) {
	const topic = "ledger-events"
	broker, err := kafkabroker.Start(0, 2, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	pub := kafka.NewPublisher(broker.Addrs(), topic)
	defer pub.Close()
	ctx := context.Background()
	events := make([]ledger.Event, 10)
	for i := range events {
		events[i] = ledger.Event{Version: ledger.EventVersion, Shard: i % 2, ID: ledger.NewTransferID(), Amount: 1,
			Asset: ledger.AssetCNY, DebitAccountID: 1, CreditAccountID: 2}
	}
	if err := pub.Publish(ctx, events); err != nil {
		t.Fatal(err)
	}
	probe := reconkafka.NewLagProbe(broker.Addrs(), topic, "g")
	if lag, err := probe.Lag(ctx); err != nil || lag != 10 {
		t.Fatalf("lag before consuming: %d %v, want 10", lag, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- kafka.Consume(cctx, kafka.ConsumerConfig{Brokers: broker.Addrs(), Topic: topic, Group: "g"},
			func(context.Context, ledger.Event) error { return nil })
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	end := time.Now().Add(30 * time.Second)
	for {
		lag, err := probe.Lag(ctx)
		if err == nil && lag == 0 {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("lag still %d (%v)", lag, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
