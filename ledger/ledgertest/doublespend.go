package ledgertest

import (
	"fmt"
	"sync"
	"testing"

	"github.com/fundplatform/fund/ledger"
)

// Sizes of the double-spend test.
const (
	spendClients = 100
	spendFunding = 1000 // put on the spender's account every round
)

// spendRounds are how many of the clients' spends each round's balance
// affords, before what earlier rounds left over: one client may win, or a
// few.
var spendRounds = []int{1, 3, 1, 7, 2}

// spendModes are sequencer settings that cut the same requests into
// different batches.
var spendModes = []struct {
	name string
	cfg  ledger.SequencerConfig
}{
	{"one request a batch", ledger.SequencerConfig{RequestEventsMax: 1, BatchEventsMax: 1}},
	{"seven requests a batch", ledger.SequencerConfig{RequestEventsMax: 1, BatchEventsMax: 7}},
	{"default batches", ledger.SequencerConfig{}},
	{"fill while committing", ledger.SequencerConfig{FillWhileCommitting: true}},
}

// testDoubleSpend: many clients at once try to spend the same balance,
// with plain transfers, holds, or both. Exactly as many succeed as the
// balance affords, whatever the batching, and the available balance never
// goes below zero.
func testDoubleSpend(t *testing.T, cfg Config) {
	for _, mode := range spendModes {
		for _, kind := range []string{"plain", "pending", "mixed"} {
			t.Run(fmt.Sprintf("%s/%s", mode.name, kind), func(t *testing.T) {
				t.Parallel()
				s := newShard(t, cfg)
				doubleSpend(t, s, mode.cfg, kind)
				s.finish()
			})
		}
	}
}

func doubleSpend(t *testing.T, s *shard, cfg ledger.SequencerConfig, kind string) {
	seq := s.start(cfg)
	for _, a := range []ledger.Account{ // one at a time: a request of one event fits every mode
		{ID: bank, Asset: ledger.AssetCNY, Code: 1},
		{ID: alice, Asset: ledger.AssetCNY, Code: 10, Flags: ledger.DebitsMustNotExceedCredits},
		{ID: bob, Asset: ledger.AssetCNY, Code: 10, Flags: ledger.DebitsMustNotExceedCredits},
	} {
		createAccounts(t, seq, a)
	}
	var want sums // alice's
	for round, affords := range spendRounds {
		expect(t, seq, results(ledger.ResultOK), pay(bank, alice, spendFunding, "funding"))
		want.CreditsPosted += spendFunding
		available := want.CreditsPosted - want.DebitsPosted - want.DebitsPending
		amount := spendFunding / int64(affords)
		won := spendAtOnce(t, seq, amount, kind)
		if wantWon := int(available / amount); len(won) != wantWon {
			t.Fatalf("round %d: %d clients spent %d each of %d available, want %d", round, len(won), amount, available, wantWon)
		}
		for _, flags := range won {
			if flags&ledger.Pending != 0 {
				want.DebitsPending += amount
			} else {
				want.DebitsPosted += amount
			}
		}
		a := lookup(t, seq, alice)[0]
		if sumsOf(a) != want || a.Available() < 0 {
			t.Fatalf("round %d: alice is %+v, want %+v", round, a, want)
		}
	}
	seq.stop(t)
}

// spendAtOnce makes every client try to pay amount from alice to bob at the
// same moment and returns the flags of the transfers that were applied.
// Every other must have been refused for want of funds.
func spendAtOnce(t *testing.T, seq *running, amount int64, kind string) []ledger.TransferFlags {
	t.Helper()
	got := make([]ledger.Result, spendClients)
	answered := make([]bool, spendClients) // a request that failed as a whole was reported already
	sent := make([]ledger.Transfer, spendClients)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range spendClients {
		sent[i] = pay(alice, bob, amount, "")
		if kind == "pending" || kind == "mixed" && i%2 == 1 {
			sent[i].Flags = ledger.Pending
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ctx, cancel := reqCtx()
			defer cancel()
			rs, err := seq.CreateTransfers(ctx, sent[i:i+1])
			if err != nil {
				t.Errorf("client %d: %v", i, err)
				return
			}
			got[i], answered[i] = rs[0].Result, true
		}()
	}
	close(start)
	wg.Wait()
	var won []ledger.TransferFlags
	for i, r := range got {
		switch {
		case !answered[i]:
		case r == ledger.ResultOK:
			won = append(won, sent[i].Flags)
		case r == ledger.ResultExceedsCredits:
		default:
			t.Errorf("client %d: %s", i, r)
		}
	}
	return won
}
