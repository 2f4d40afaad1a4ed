package kafka_test

import (
	"context"
	"testing"
	"time"

	"github.com/fundplatform/fund/internal/kafkabroker"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/kafka"
)

// A settlement night publishes tens of thousands of events in one relay
// round, several MiB of JSON: far over the broker's 1 MiB limit per batch.
// One Publish call must still be accepted whole.
func TestPublishOverBrokerBatchLimit(t *testing.T) {
	broker, err := kafkabroker.Start(0, 2, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	pub := kafka.NewPublisher(broker.Addrs(), topic)
	defer pub.Close()

	const n = 20_000 // about 250 bytes each: ~5 MB
	events := make([]ledger.Event, n)
	for i := range events {
		events[i] = ledger.Event{
			Version: ledger.EventVersion, Shard: i % 4, ID: ledger.NewTransferID(), Timestamp: int64(i + 1),
			DebitAccountID: 1, CreditAccountID: 2, Amount: int64(i + 1), Asset: ledger.AssetFundShares,
			Kind: 1, UserData: "settlement/2026-11-11/income",
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := pub.Publish(ctx, events); err != nil {
		t.Fatalf("publish %d events: %v", n, err)
	}
}
