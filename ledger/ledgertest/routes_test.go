package ledgertest_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/ledgertest"
)

const routeShards = 3

// routed is a MemStore-backed sequencer per shard behind a Routes, and on
// each shard a bank and a customer account (the copies of two ids there).
type routed struct {
	store        *ledgertest.MemStore
	seqs         []*ledger.Sequencer
	routes       *ledgertest.Routes
	bank, client []ledger.AccountID // per shard
}

func newRouted(t *testing.T, shardClient func(seq *ledger.Sequencer) ledger.Client) *routed {
	t.Helper()
	r := &routed{store: ledgertest.NewMemStore()}
	for s := range routeShards {
		seq := ledger.NewSequencer(ledger.SequencerConfig{Shard: s, Shards: routeShards}, r.store, nil)
		stop, err := seq.Start(context.Background(), 10*time.Second)
		if err != nil {
			t.Fatalf("shard %d: %v", s, err)
		}
		t.Cleanup(func() {
			if err := stop(); err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("shard %d: %v", s, err)
			}
		})
		r.seqs = append(r.seqs, seq)
		r.bank = append(r.bank, ledger.OnShard(1, s, routeShards))
		r.client = append(r.client, ledger.OnShard(2, s, routeShards))
	}
	r.routes = ledgertest.NewRoutes(routeShards, func(s int) ledger.Client { return shardClient(r.seqs[s]) })
	for s := range routeShards {
		rs, err := r.routes.CreateAccounts(callCtx(t), []ledger.Account{
			{ID: r.bank[s], Asset: ledger.AssetCNY, Code: 1},
			{ID: r.client[s], Asset: ledger.AssetCNY, Code: 10, Flags: ledger.DebitsMustNotExceedCredits}})
		if err != nil || rs[0].Result != ledger.ResultOK || rs[1].Result != ledger.ResultOK {
			t.Fatalf("accounts of shard %d: %v, %v", s, rs, err)
		}
	}
	return r
}

func callCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func payment(dr, cr ledger.AccountID, amount int64) ledger.Transfer {
	return ledger.Transfer{ID: ledger.NewTransferID(), DebitAccountID: dr, CreditAccountID: cr, Amount: amount,
		Asset: ledger.AssetCNY}
}

// Each request reaches its accounts' shard (a shard's sequencer answers
// wrong_shard otherwise) and attachments land there; requests naming two
// shards are refused whole; lookups span shards in the order asked.
func TestRoutes(t *testing.T) {
	r := newRouted(t, func(seq *ledger.Sequencer) ledger.Client { return seq })
	var paid []ledger.TransferID
	for s := range routeShards {
		tr := payment(r.bank[s], r.client[s], int64(100*(s+1)))
		rs, attached, err := r.routes.CreateTransfersAttached(callCtx(t), []ledger.Transfer{tr}, []byte{byte('a' + s)})
		if err != nil || !attached || rs[0].Result != ledger.ResultOK {
			t.Fatalf("payment on shard %d: %v, attached %v, %v", s, rs, attached, err)
		}
		paid = append(paid, tr.ID)
		if got := r.store.Attachments(s); len(got) != 1 || string(got[0].Data) != string(rune('a'+s)) {
			t.Fatalf("shard %d's attachments: %v", s, got)
		}
	}

	cross := []ledger.Transfer{payment(r.bank[0], r.client[0], 1), payment(r.bank[1], r.client[1], 1)}
	if _, err := r.routes.CreateTransfers(callCtx(t), cross); !errors.Is(err, ledger.ErrCrossShard) {
		t.Errorf("transfers on two shards: %v, want ErrCrossShard", err)
	}
	if _, _, err := r.routes.CreateTransfersAttached(callCtx(t), cross[:1:1], nil); err != nil {
		t.Errorf("one of them alone: %v", err)
	}
	if _, err := r.routes.CreateAccounts(callCtx(t), []ledger.Account{{ID: ledger.OnShard(3, 0, routeShards)},
		{ID: ledger.OnShard(3, 2, routeShards)}}); !errors.Is(err, ledger.ErrCrossShard) {
		t.Errorf("accounts on two shards: %v, want ErrCrossShard", err)
	}
	if _, err := r.routes.CloseAccounts(callCtx(t), []ledger.AccountID{r.client[1], r.client[2]}); !errors.Is(err, ledger.ErrCrossShard) {
		t.Errorf("closing accounts on two shards: %v, want ErrCrossShard", err)
	}
	if _, err := r.routes.CreateTransfers(callCtx(t), []ledger.Transfer{{ID: ledger.NewTransferID(), PendingID: paid[0],
		Flags: ledger.VoidPending}}); !errors.Is(err, ledger.ErrShardUnknown) {
		t.Errorf("a void naming no account: %v, want ErrShardUnknown", err)
	}

	unknown := ledger.OnShard(9, 1, routeShards)
	asked := []ledger.AccountID{r.client[2], unknown, r.client[0], r.bank[1], r.client[2]}
	as, err := r.routes.LookupAccounts(callCtx(t), asked)
	if err != nil {
		t.Fatal(err)
	}
	var got []ledger.AccountID
	for _, a := range as {
		got = append(got, a.ID)
	}
	if want := []ledger.AccountID{r.client[2], r.client[0], r.bank[1], r.client[2]}; !slices.Equal(got, want) {
		t.Errorf("lookup of %v: %v, want %v", asked, got, want)
	}
	// Shard 0's customer got 100 and the lone payment of 1.
	if as[1].CreditsPosted != 101 || as[0].CreditsPosted != 300 {
		t.Errorf("balances: shard 0's %d, shard 2's %d; want 101, 300", as[1].CreditsPosted, as[0].CreditsPosted)
	}

	committed, err := r.routes.TransfersCommitted(callCtx(t), []ledger.TransferID{paid[2], ledger.NewTransferID(), paid[0], cross[1].ID})
	if err != nil || !slices.Equal(committed, []bool{true, false, true, false}) {
		t.Errorf("transfers committed: %v, %v; want [true false true false]", committed, err)
	}
}

// A shard client without attachments makes attached requests plain ones;
// one without TransferLookup makes TransfersCommitted fail; no client
// (no one serves the shard) is ledger.ErrNoOwner.
func TestRoutesOfPlainClients(t *testing.T) {
	r := newRouted(t, func(seq *ledger.Sequencer) ledger.Client { return struct{ ledger.Client }{seq} })
	rs, attached, err := r.routes.CreateTransfersAttached(callCtx(t), []ledger.Transfer{payment(r.bank[1], r.client[1], 5)}, []byte("x"))
	if err != nil || attached || rs[0].Result != ledger.ResultOK {
		t.Errorf("attached payment through a plain client: %v, attached %v, %v; want ok, not attached", rs, attached, err)
	}
	if got := r.store.Attachments(1); len(got) != 0 {
		t.Errorf("attachments written through a plain client: %v", got)
	}
	if _, err := r.routes.TransfersCommitted(callCtx(t), []ledger.TransferID{ledger.NewTransferID()}); err == nil {
		t.Error("TransfersCommitted through clients without it answered")
	}

	none := ledgertest.NewRoutes(routeShards, func(int) ledger.Client { return nil })
	if _, err := none.CreateTransfers(callCtx(t), []ledger.Transfer{payment(r.bank[1], r.client[1], 5)}); !errors.Is(err, ledger.ErrNoOwner) {
		t.Errorf("no client for the shard: %v, want ErrNoOwner", err)
	}
}
