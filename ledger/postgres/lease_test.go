package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/postgres"
)

// A writer whose lease was taken over cannot commit anything more, even
// though it still believes it owns the shard (the SIGSTOP'd owner case).
func TestStaleOwnerIsFenced(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, err := postgres.Open(ctx, postgres.Config{DSN: pgtest.NewDatabase(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	// Long enough that a busy CI machine cannot let it lapse between the two
	// acquires below by accident.
	const ttl = 2 * time.Second

	e1, ok, err := store.AcquireLease(ctx, 0, "owner-a", "", ttl)
	if err != nil || !ok {
		t.Fatalf("owner-a acquire: ok=%v err=%v", ok, err)
	}
	if _, ok, err := store.AcquireLease(ctx, 0, "owner-b", "", ttl); err != nil || ok {
		t.Fatalf("owner-b took a live lease: ok=%v err=%v", ok, err)
	}
	a := ledger.NewSequencer(ledger.SequencerConfig{Epoch: e1}, store, nil)
	aDone := make(chan error, 1)
	go func() { aDone <- a.Run(ctx) }()
	<-a.Ready()
	if _, err := a.CreateAccounts(ctx, []ledger.Account{{ID: 1, Asset: ledger.AssetCNY}, {ID: 2, Asset: ledger.AssetCNY}}); err != nil {
		t.Fatal(err)
	}
	first := ledger.Transfer{ID: ledger.NewTransferID(), DebitAccountID: 1, CreditAccountID: 2, Amount: 100, Asset: ledger.AssetCNY}
	if rs, err := a.CreateTransfers(ctx, []ledger.Transfer{first}); err != nil || rs[0].Result != ledger.ResultOK {
		t.Fatalf("owner-a transfer: %v %v", rs, err)
	}

	// owner-a stops renewing (paused); its lease expires and owner-b takes over.
	time.Sleep(ttl + 200*time.Millisecond)
	e2, ok, err := store.AcquireLease(ctx, 0, "owner-b", "", ttl)
	if err != nil || !ok {
		t.Fatalf("owner-b acquire after expiry: ok=%v err=%v", ok, err)
	}
	if e2 <= e1 {
		t.Fatalf("epoch did not increase: %d then %d", e1, e2)
	}

	// owner-a resumes and tries to write: refused, and it stops.
	stale := ledger.Transfer{ID: ledger.NewTransferID(), DebitAccountID: 1, CreditAccountID: 2, Amount: 7, Asset: ledger.AssetCNY}
	if _, err := a.CreateTransfers(ctx, []ledger.Transfer{stale}); !errors.Is(err, ledger.ErrFenced) {
		t.Fatalf("stale owner's transfer: err=%v, want ErrFenced", err)
	}
	select {
	case err := <-aDone:
		if !errors.Is(err, ledger.ErrFenced) {
			t.Fatalf("stale owner's Run returned %v, want ErrFenced", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stale owner kept running")
	}
	if _, err := store.RenewLease(ctx, 0, "owner-a", e1, ttl); !errors.Is(err, ledger.ErrFenced) {
		t.Fatalf("stale renew: %v, want ErrFenced", err)
	}

	// owner-b sees exactly what owner-a committed before the takeover.
	b := ledger.NewSequencer(ledger.SequencerConfig{Epoch: e2}, store, nil)
	bctx, stop := context.WithCancel(ctx)
	bDone := make(chan error, 1)
	go func() { bDone <- b.Run(bctx) }()
	defer func() { stop(); <-bDone }()
	<-b.Ready()
	rs, err := b.CreateTransfers(ctx, []ledger.Transfer{first, stale})
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].Result != ledger.ResultExists || rs[1].Result != ledger.ResultOK {
		t.Fatalf("after takeover: first %s (want exists), stale %s (want ok: it was never written)", rs[0].Result, rs[1].Result)
	}
	accts, err := b.LookupAccounts(ctx, []ledger.AccountID{2})
	if err != nil || len(accts) != 1 || accts[0].CreditsPosted != 107 {
		t.Fatalf("account 2 after takeover: %+v %v, want credits 107", accts, err)
	}
}
