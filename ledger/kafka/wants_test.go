package kafka_test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/fundplatform/fund/internal/kafkabroker"
	"github.com/fundplatform/fund/internal/testseed"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/kafka"
)

// A consumer that wants one kind gets every event of that kind, and the
// events without the kind header (older producers) whatever their kind;
// the events it passes over still move the group's offsets, so nothing is
// redelivered.
func TestConsumerPassesOverUnwantedKinds(t *testing.T) {
	seed := testseed.Seed(t)
	rng := rand.New(rand.NewPCG(seed, 0))
	broker, err := kafkabroker.Start(0, 2, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	const wanted = uint16(7)
	n := 200 + rng.IntN(300)
	events := make([]ledger.Event, n)
	want := map[ledger.TransferID]bool{}
	for i := range events {
		kind := uint16(1 + rng.IntN(3)) // 1..3: never the wanted kind
		if rng.IntN(3) == 0 {
			kind = wanted
		}
		events[i] = ledger.Event{Version: ledger.EventVersion, Shard: rng.IntN(4), ID: ledger.NewTransferID(),
			Timestamp: int64(i + 1), DebitAccountID: 1, CreditAccountID: 2, Amount: int64(i + 1), Asset: ledger.AssetCNY, Kind: kind}
		if kind == wanted {
			want[events[i].ID] = true
		}
	}
	pub := kafka.NewPublisher(broker.Addrs(), topic)
	defer pub.Close()
	if err := pub.Publish(ctx, events); err != nil {
		t.Fatal(err)
	}
	// One event of an unwanted kind without the header: it must be
	// decoded and handed over, since nothing says what it is.
	bare := ledger.Event{Version: ledger.EventVersion, Shard: 0, ID: ledger.NewTransferID(), Timestamp: 1,
		DebitAccountID: 1, CreditAccountID: 2, Amount: 1, Asset: ledger.AssetCNY, Kind: 2}
	raw, err := json.Marshal(bare)
	if err != nil {
		t.Fatal(err)
	}
	w := kafka.NewWriter(broker.Addrs(), topic)
	if err := w.WriteMessages(ctx, kafkago.Message{Key: []byte("0"), Value: raw}); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	want[bare.ID] = true
	total := int64(n + 1)

	var mu sync.Mutex
	got := map[ledger.TransferID]int{}
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- kafka.Consume(cctx, kafka.ConsumerConfig{Brokers: broker.Addrs(), Topic: topic, Group: "wants",
			InFlightMax: 16, Wants: func(k uint16) bool { return k == wanted }},
			func(_ context.Context, e ledger.Event) error {
				mu.Lock()
				got[e.ID]++
				mu.Unlock()
				return nil
			})
	}()
	// Every offset committed: the passed-over events included.
	deadline := time.Now().Add(30 * time.Second)
	for committedTotal(t, ctx, broker.Addrs(), "wants") < total {
		if time.Now().After(deadline) {
			t.Fatalf("group offsets reached %d of %d", committedTotal(t, ctx, broker.Addrs(), "wants"), total)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Errorf("handled %d events, want %d (seed %d)", len(got), len(want), seed)
	}
	for id, c := range got {
		if !want[id] {
			t.Errorf("event %s of an unwanted kind was handed over", id)
		}
		if c != 1 {
			t.Errorf("event %s handled %d times", id, c)
		}
	}
}

// committedTotal sums the group's committed offsets over the topic's
// partitions (-1 offsets, nothing committed, count as 0).
func committedTotal(t *testing.T, ctx context.Context, brokers []string, group string) int64 {
	t.Helper()
	c := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 5 * time.Second}
	res, err := c.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: group,
		Topics: map[string][]int{topic: {0, 1}}})
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, p := range res.Topics[topic] {
		if p.CommittedOffset > 0 {
			sum += p.CommittedOffset
		}
	}
	return sum
}
