package kafka_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fundplatform/fund/internal/kafkabroker"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/kafka"
	"github.com/fundplatform/fund/ledger/outbox"
	"github.com/fundplatform/fund/ledger/postgres"
	"github.com/fundplatform/fund/ledger/xshard"
)

// accountOn returns the n-th id at or above from that lives on shard.
func accountOn(from ledger.AccountID, shard, shards, n int) ledger.AccountID {
	for id := from; ; id++ {
		if ledger.ShardOf(id, shards) == shard {
			if n--; n == 0 {
				return id
			}
		}
	}
}

// Customers on shard 0 pay customers on shard 1 through the real pipeline:
// leg 1 commits with its outbox row, the relay publishes it to a Kafka-
// protocol broker, a consumer group applies leg 2 (or the refund). Every
// saga ends, money is exact, and the in-transit accounts net to zero.
func TestCrossShardSaga(t *testing.T) { testSaga(t, false) }

// The broker refuses every connection for 10 s in the middle of the
// cross-shard load (keeping its data, as a replicated cluster would):
// commits go on, events wait in the outbox, and every saga completes once
// it is back.
func TestCrossShardSagaBrokerOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("holds a 10 s outage")
	}
	testSaga(t, true)
}

// sagaRig is the in-process saga setup: shards in one database, each with
// its sequencer, a router over them with its in-transit accounts, a
// Kafka-protocol broker and a publisher. Everything stops at the test's
// end.
type sagaRig struct {
	store  *postgres.Store
	seqs   []*ledger.Sequencer
	router *xshard.Router
	broker *kafkabroker.Broker
	pub    *kafka.Publisher
}

func newSagaRig(t *testing.T, ctx context.Context, shards int) *sagaRig {
	t.Helper()
	store, err := postgres.Open(ctx, postgres.Config{DSN: pgtest.NewDatabase(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	r := &sagaRig{store: store, seqs: make([]*ledger.Sequencer, shards)}
	for s := range r.seqs {
		r.seqs[s] = ledger.NewSequencer(ledger.SequencerConfig{Shard: s, Shards: shards}, store, nil)
		stop, err := r.seqs[s].Start(ctx, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = stop() })
	}
	r.router = xshard.NewRouter(shards, func(s int) ledger.Client { return r.seqs[s] })
	if err := r.router.EnsureInTransit(ctx, ledger.AssetCNY); err != nil {
		t.Fatal(err)
	}
	if r.broker, err = kafkabroker.Start(0, shards, topic); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.broker.Close)
	r.pub = kafka.NewPublisher(r.broker.Addrs(), topic)
	t.Cleanup(func() { _ = r.pub.Close() })
	return r
}

func testSaga(t *testing.T, outage bool) {
	ctx := context.Background()
	const shards = 2
	rig := newSagaRig(t, ctx, shards)
	store, seqs, router, broker := rig.store, rig.seqs, rig.router, rig.broker
	relay := outbox.NewRelay(outbox.RelayConfig{Shards: []int{0, 1}}, store, rig.pub, nil)
	rctx, stopRelay := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopRelay(); wg.Wait() }()
	wg.Add(2)
	go func() { defer wg.Done(); _ = relay.Run(rctx) }()
	consumeErr := make(chan error, 1)
	go func() {
		defer wg.Done()
		consumeErr <- kafka.Consume(rctx, kafka.ConsumerConfig{Brokers: broker.Addrs(), Topic: topic, Group: "xshard", InFlightMax: 64, Wants: router.Wants}, router.Handle)
	}()

	bank := accountOn(100, 0, shards, 1)
	payer := accountOn(1000, 0, shards, 1)
	payee := accountOn(1000, 1, shards, 1)
	closedPayee := accountOn(1000, 1, shards, 2)
	for s, as := range map[int][]ledger.Account{
		0: {{ID: bank, Asset: ledger.AssetCNY}, {ID: payer, Asset: ledger.AssetCNY, Flags: ledger.DebitsMustNotExceedCredits}},
		1: {{ID: payee, Asset: ledger.AssetCNY, Flags: ledger.DebitsMustNotExceedCredits}, {ID: closedPayee, Asset: ledger.AssetCNY}},
	} {
		if _, err := seqs[s].CreateAccounts(ctx, as); err != nil {
			t.Fatal(err)
		}
	}
	if rs, err := seqs[1].CloseAccounts(ctx, []ledger.AccountID{closedPayee}); err != nil || rs[0].Result != ledger.ResultOK {
		t.Fatalf("close: %v %v", rs, err)
	}
	if rs, err := seqs[0].CreateTransfers(ctx, []ledger.Transfer{{ID: ledger.NewTransferID(), DebitAccountID: bank,
		CreditAccountID: payer, Amount: 100_000, Asset: ledger.AssetCNY}}); err != nil || rs[0].Result != ledger.ResultOK {
		t.Fatalf("fund payer: %v %v", rs, err)
	}

	// 40 concurrent payments of 10.00 to the open payee, 5 to the closed one.
	const good, bad, amount = 40, 5, 1000
	outcomes := make([]xshard.Outcome, good+bad)
	ids := make([]ledger.TransferID, good+bad)
	for i := range ids {
		ids[i] = ledger.NewTransferID()
	}
	stagger := time.Duration(0)
	if outage {
		stagger = 250 * time.Millisecond // payments keep coming through the outage
	}
	var pw sync.WaitGroup
	for i := range outcomes {
		pw.Add(1)
		go func(i int) {
			defer pw.Done()
			time.Sleep(time.Duration(i) * stagger)
			to := payee
			if i >= good {
				to = closedPayee
			}
			o, err := router.Transfer(ctx, ledger.Transfer{ID: ids[i], DebitAccountID: payer,
				CreditAccountID: to, Amount: amount, Asset: ledger.AssetCNY, Kind: 9, UserData: "order"}, time.Minute)
			if err != nil {
				t.Errorf("payment %d: %v", i, err)
			}
			outcomes[i] = o
		}(i)
	}
	if outage {
		time.Sleep(time.Second)
		broker.Down()
		time.Sleep(10 * time.Second)
		broker.Up()
	}
	pw.Wait()
	if _, failures := relay.Published(); outage && failures == 0 {
		t.Error("the relay never failed during the outage")
	}
	for i, o := range outcomes {
		want := xshard.Completed
		if i >= good {
			want = xshard.Refunded
		}
		if o.State != want {
			t.Errorf("payment %d: %s (%s), want %s", i, o.State, o.Result, want)
		}
	}
	lookup := func(s int, id ledger.AccountID) *ledger.Account {
		as, err := seqs[s].LookupAccounts(ctx, []ledger.AccountID{id})
		if err != nil || len(as) != 1 {
			t.Fatalf("lookup %d: %v %v", id, as, err)
		}
		return &as[0]
	}
	if got := lookup(0, payer).Balance(); got != 100_000-good*amount {
		t.Errorf("payer balance %d, want %d", got, 100_000-good*amount)
	}
	if got := lookup(1, payee).Balance(); got != good*amount {
		t.Errorf("payee balance %d, want %d", got, good*amount)
	}
	if got := lookup(1, closedPayee).Balance(); got != 0 {
		t.Errorf("closed payee balance %d", got)
	}
	net, err := router.InTransitNet(ctx, ledger.AssetCNY)
	if err != nil {
		t.Fatal(err)
	}
	if net[ledger.AssetCNY] != 0 {
		t.Errorf("in-transit accounts net to %d, want 0", net[ledger.AssetCNY])
	}
	if jnet, err := store.NetByCode(ctx, xshard.KindOut); err != nil || jnet[ledger.AssetCNY] != 0 || len(jnet) != 1 {
		t.Errorf("in-transit from the journal: %v %v, want CNY 0", jnet, err)
	}
	select {
	case err := <-consumeErr:
		t.Fatalf("consumer stopped: %v", err)
	default:
	}

	// Redelivered leg-1 events (a consumer crash before its offset commit)
	// change nothing.
	for i, id := range ids {
		to := payee
		if i >= good {
			to = closedPayee
		}
		e := ledger.Event{Version: ledger.EventVersion, Shard: 0, ID: id, Kind: xshard.KindOut, Amount: amount,
			Asset: ledger.AssetCNY, DebitAccountID: payer, CreditAccountID: xshard.InTransitAccount(0, 1, shards, ledger.AssetCNY),
			UserData: "x:" + strconv.FormatInt(int64(to), 10) + ":9:order"}
		if err := router.Handle(ctx, e); err != nil {
			t.Fatalf("redelivery %d: %v", i, err)
		}
	}
	if got := lookup(0, payer).Balance(); got != 100_000-good*amount {
		t.Errorf("payer balance after redelivery %d, want %d", got, 100_000-good*amount)
	}
	if got := lookup(1, payee).Balance(); got != good*amount {
		t.Errorf("payee balance after redelivery %d, want %d", got, good*amount)
	}
	for s := 0; s < shards; s++ {
		rep, err := store.Verify(ctx, s)
		if err != nil || len(rep.Differences) > 0 || len(rep.Problems) > 0 {
			t.Errorf("verify shard %d: %+v %v", s, rep, err)
		}
	}
}
