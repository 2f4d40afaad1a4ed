package kafka_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/fundplatform/fund/internal/kafkabroker"
	"github.com/fundplatform/fund/settlement"
	settlekafka "github.com/fundplatform/fund/settlement/kafka"
)

// TestPublishSettlementEvents sends a run's events to an in-process broker
// and reads them back.
func TestPublishSettlementEvents(t *testing.T) {
	b, err := kafkabroker.Start(0, 1, settlekafka.TopicDefault)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	pub := settlekafka.NewPublisher(b.Addrs(), settlekafka.TopicDefault)
	defer pub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sum := settlement.Summary{Date: "2026-11-11", FundIncome: 12345}
	events := []settlement.Event{
		{ID: "settlement/2026-11-11/shard/0", Type: "settlement.shard", Date: "2026-11-11", Income: 12000, Holders: 3},
		{ID: "settlement/2026-11-11", Type: "settlement.completed", Date: "2026-11-11", Shard: -1, Summary: &sum, Income: 12345},
	}
	if err := pub.PublishSettlement(ctx, events); err != nil {
		t.Fatal(err)
	}
	r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: b.Addrs(), Topic: settlekafka.TopicDefault, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	for i := range events {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got settlement.Event
		if err := json.Unmarshal(m.Value, &got); err != nil {
			t.Fatal(err)
		}
		if string(m.Key) != events[i].ID || got.ID != events[i].ID || got.Income != events[i].Income {
			t.Errorf("message %d: key %s, %+v", i, m.Key, got)
		}
	}
}
