package kafka_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/kafka"
	"github.com/fundplatform/fund/ledger/outbox"
	"github.com/fundplatform/fund/ledger/xshard"
)

// A caller told "in flight" learns the end from Status: while no consumer
// applies second legs the sagas stay in flight; once one runs, the payment
// to an open account is completed and the one to a closed account
// refunded. Unknown transfers are reported as such; same-shard ones are
// completed at once.
func TestSagaStatusAfterInFlight(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const shards = 2
	rig := newSagaRig(t, ctx, shards)
	seqs, router, broker := rig.seqs, rig.router, rig.broker
	rctx, stopAll := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopAll(); wg.Wait() }()
	relay := outbox.NewRelay(outbox.RelayConfig{Shards: []int{0, 1}}, rig.store, rig.pub, nil)
	wg.Add(1)
	go func() { defer wg.Done(); _ = relay.Run(rctx) }()

	bank := accountOn(100, 0, shards, 1)
	payer := accountOn(1000, 0, shards, 1)
	neighbour := accountOn(1000, 0, shards, 2)
	payee := accountOn(1000, 1, shards, 1)
	closedPayee := accountOn(1000, 1, shards, 2)
	for s, as := range map[int][]ledger.Account{
		0: {{ID: bank, Asset: ledger.AssetCNY}, {ID: payer, Asset: ledger.AssetCNY, Flags: ledger.DebitsMustNotExceedCredits},
			{ID: neighbour, Asset: ledger.AssetCNY}},
		1: {{ID: payee, Asset: ledger.AssetCNY}, {ID: closedPayee, Asset: ledger.AssetCNY}},
	} {
		if _, err := seqs[s].CreateAccounts(ctx, as); err != nil {
			t.Fatal(err)
		}
	}
	if rs, err := seqs[1].CloseAccounts(ctx, []ledger.AccountID{closedPayee}); err != nil || rs[0].Result != ledger.ResultOK {
		t.Fatalf("close: %v %v", rs, err)
	}
	if rs, err := seqs[0].CreateTransfers(ctx, []ledger.Transfer{{ID: ledger.NewTransferID(), DebitAccountID: bank,
		CreditAccountID: payer, Amount: 10_000, Asset: ledger.AssetCNY}}); err != nil || rs[0].Result != ledger.ResultOK {
		t.Fatalf("fund payer: %v %v", rs, err)
	}

	pay := func(to ledger.AccountID) ledger.Transfer {
		return ledger.Transfer{ID: ledger.NewTransferID(), DebitAccountID: payer, CreditAccountID: to, Amount: 100,
			Asset: ledger.AssetCNY, Kind: 9}
	}
	toOpen, toClosed, local := pay(payee), pay(closedPayee), pay(neighbour)
	// No consumer yet: both sagas answer "in flight" after a short wait.
	for _, tr := range []ledger.Transfer{toOpen, toClosed} {
		o, err := router.Transfer(ctx, tr, 50*time.Millisecond)
		if err != nil || o.State != xshard.InFlight {
			t.Fatalf("transfer to %d: %+v %v, want in flight", tr.CreditAccountID, o, err)
		}
		if o, err := router.Status(ctx, tr); err != nil || o.State != xshard.InFlight {
			t.Errorf("status of the transfer to %d: %+v %v, want in flight", tr.CreditAccountID, o, err)
		}
	}
	if o, err := router.Transfer(ctx, local, time.Second); err != nil || o.State != xshard.Completed || o.Result != ledger.ResultOK {
		t.Fatalf("same-shard transfer: %+v %v", o, err)
	}
	if o, err := router.Status(ctx, local); err != nil || o.State != xshard.Completed {
		t.Errorf("status of the same-shard transfer: %+v %v, want completed", o, err)
	}
	if _, err := router.Status(ctx, pay(payee)); !errors.Is(err, xshard.ErrUnknownTransfer) {
		t.Errorf("status of a transfer never sent: %v, want ErrUnknownTransfer", err)
	}

	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = kafka.Consume(rctx, kafka.ConsumerConfig{Brokers: broker.Addrs(), Topic: topic, Group: "status",
			InFlightMax: 8, Wants: router.Wants}, router.Handle)
	}()
	for _, c := range []struct {
		tr   ledger.Transfer
		want xshard.State
	}{{toOpen, xshard.Completed}, {toClosed, xshard.Refunded}} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			o, err := router.Status(ctx, c.tr)
			if err != nil {
				t.Fatal(err)
			}
			if o.State == c.want {
				break
			}
			if o.State != xshard.InFlight || time.Now().After(deadline) {
				t.Fatalf("status of the transfer to %d: %s, want %s", c.tr.CreditAccountID, o.State, c.want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	as, err := seqs[0].LookupAccounts(ctx, []ledger.AccountID{payer})
	if err != nil || len(as) != 1 || as[0].Balance() != 10_000-200 {
		t.Errorf("payer after one payment and one refund: %+v %v, want balance %d", as, err, 10_000-200)
	}
}
