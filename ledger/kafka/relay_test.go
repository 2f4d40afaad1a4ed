package kafka_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/fundplatform/fund/internal/kafkabroker"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/kafka"
	"github.com/fundplatform/fund/ledger/outbox"
	"github.com/fundplatform/fund/ledger/postgres"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const topic = "ledger-events"

// shard is a running ledger shard with two accounts, torn down with t.
type shard struct {
	store *postgres.Store
	seq   *ledger.Sequencer
}

func startShard(t *testing.T) *shard {
	t.Helper()
	ctx := context.Background()
	store, err := postgres.Open(ctx, postgres.Config{DSN: pgtest.NewDatabase(t)})
	if err != nil {
		t.Fatal(err)
	}
	seq := ledger.NewSequencer(ledger.SequencerConfig{}, store, nil)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = seq.Run(runCtx)
	}()
	t.Cleanup(func() {
		stop()
		<-done
		store.Close()
	})
	<-seq.Ready()
	if _, err := seq.CreateAccounts(ctx, []ledger.Account{
		{ID: 1, Asset: ledger.AssetCNY, Code: 1}, {ID: 2, Asset: ledger.AssetCNY, Code: 1},
	}); err != nil {
		t.Fatal(err)
	}
	return &shard{store: store, seq: seq}
}

// transfer commits n transfers in requests of 50 and returns their ids.
func (s *shard) transfer(t *testing.T, n int) map[ledger.TransferID]bool {
	t.Helper()
	ids := map[ledger.TransferID]bool{}
	for i := 0; i < n; i += 50 {
		ts := make([]ledger.Transfer, min(50, n-i))
		for j := range ts {
			ts[j] = ledger.Transfer{ID: ledger.NewTransferID(), DebitAccountID: 1, CreditAccountID: 2,
				Amount: int64(1 + j), Asset: ledger.AssetCNY, Kind: 7}
			ids[ts[j].ID] = true
		}
		rs, err := s.seq.CreateTransfers(context.Background(), ts)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.Result != ledger.ResultOK {
				t.Fatalf("transfer: %s", r.Result)
			}
		}
	}
	return ids
}

func startRelay(t *testing.T, s *shard, brokers []string) *outbox.Relay {
	t.Helper()
	pub := kafka.NewPublisher(brokers, topic)
	relay := outbox.NewRelay(outbox.RelayConfig{Shards: []int{0}, BackoffMax: 200 * time.Millisecond}, s.store, pub, nil)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
		_ = pub.Close()
	})
	return relay
}

// consume reads the topic's events until every id in want was seen or the
// deadline passes, and returns how often each id arrived.
func consume(t *testing.T, brokers []string, want map[ledger.TransferID]bool, deadline time.Duration) map[ledger.TransferID]int {
	t.Helper()
	r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: brokers, Topic: topic, Partition: 0, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	seen := map[ledger.TransferID]int{}
	missing := len(want)
	for missing > 0 {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("consume: %v (%d of %d events still missing)", err, missing, len(want))
		}
		var e ledger.Event
		if err := json.Unmarshal(m.Value, &e); err != nil {
			t.Fatalf("event %q: %v", m.Value, err)
		}
		if e.Version != ledger.EventVersion || e.Shard != 0 || e.Amount <= 0 {
			t.Fatalf("malformed event %+v", e)
		}
		seen[e.ID]++
		if want[e.ID] && seen[e.ID] == 1 {
			missing--
		}
	}
	return seen
}

func waitOutboxEmpty(t *testing.T, s *shard, deadline time.Duration) {
	t.Helper()
	end := time.Now().Add(deadline)
	for {
		b, e, err := s.store.OutboxLag(context.Background(), 0)
		if err != nil {
			t.Fatal(err)
		}
		if b == 0 {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("outbox still holds %d batches (%d events)", b, e)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRelayPublishesEveryCommittedTransfer(t *testing.T) {
	broker, err := kafkabroker.Start(0, 1, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	s := startShard(t)
	startRelay(t, s, broker.Addrs())
	ids := s.transfer(t, 1000)
	seen := consume(t, broker.Addrs(), ids, 30*time.Second)
	waitOutboxEmpty(t, s, 10*time.Second)
	for id := range ids {
		if seen[id] != 1 {
			t.Errorf("transfer %s published %d times", id, seen[id])
		}
	}
}

// The broker is unreachable while transfers commit: they wait in the
// outbox, and all of them are published once a broker is back.
func TestRelayRidesOutBrokerOutage(t *testing.T) {
	port := freePort(t)
	s := startShard(t)
	addr := []string{fmt.Sprintf("127.0.0.1:%d", port)}
	relay := startRelay(t, s, addr)

	// Outage from the start: commits go on, the outbox fills.
	before := s.transfer(t, 500)
	time.Sleep(time.Second)
	if n, _ := relay.Published(); n != 0 {
		t.Fatalf("published %d events with no broker", n)
	}
	if b, _, _ := s.store.OutboxLag(context.Background(), 0); b == 0 {
		t.Fatal("outbox empty while the broker is down")
	}
	broker, err := kafkabroker.Start(port, 1, topic)
	if err != nil {
		t.Fatal(err)
	}
	seen := consume(t, addr, before, 60*time.Second)
	waitOutboxEmpty(t, s, 30*time.Second)
	for id := range before {
		if seen[id] < 1 {
			t.Errorf("transfer %s never published", id)
		}
	}

	// A second outage in the middle of the load.
	broker.Close()
	during := s.transfer(t, 300)
	time.Sleep(500 * time.Millisecond)
	broker, err = kafkabroker.Start(port, 1, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	seen = consume(t, addr, during, 60*time.Second)
	waitOutboxEmpty(t, s, 30*time.Second)
	for id := range during {
		if seen[id] < 1 {
			t.Errorf("transfer %s committed during the outage never published", id)
		}
	}
	if _, failures := relay.Published(); failures == 0 {
		t.Error("the relay saw no failed round during the outages")
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
