package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/postgres"
	"github.com/fundplatform/fund/ledger/xshard"
)

// accountOn returns the first id at or above from that lives on shard.
func accountOn(from ledger.AccountID, shard, shards int) ledger.AccountID {
	for id := from; ; id++ {
		if ledger.ShardOf(id, shards) == shard {
			return id
		}
	}
}

// `fundctl ledger verify` over four shards on two databases: a saga whose
// second leg has not run shows as in-transit not netting to zero; once it
// ran, every shard on both databases verifies; the DSNs given in the wrong
// order are caught as misplaced shards.
func TestLedgerVerifyAcrossDatabases(t *testing.T) {
	ctx := context.Background()
	const shards = 4
	a, b := pgtest.NewDatabase(t), pgtest.NewDatabase(t)
	dbs, err := postgres.OpenDatabases(ctx, postgres.DatabasesConfig{DSNs: []string{a, b}, Shards: shards})
	if err != nil {
		t.Fatal(err)
	}
	defer dbs.Close()
	seqs := make([]ledger.Client, shards)
	stops := make([]func() error, shards)
	for s := range seqs {
		seq := ledger.NewSequencer(ledger.SequencerConfig{Shard: s, Shards: shards}, dbs, nil)
		if stops[s], err = seq.Start(ctx, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		seqs[s] = seq
	}
	router := xshard.NewRouter(shards, func(s int) ledger.Client { return seqs[s] })
	if err := router.EnsureInTransit(ctx, ledger.AssetCNY); err != nil {
		t.Fatal(err)
	}
	// A payer on shard 0 (database 1), a payee on shard 3 (database 2).
	bank, payer, payee := accountOn(1<<40, 0, shards), accountOn(1000, 0, shards), accountOn(1000, 3, shards)
	for _, acct := range []ledger.Account{
		{ID: bank, Asset: ledger.AssetCNY, Code: 1},
		{ID: payer, Asset: ledger.AssetCNY, Code: 10, Flags: ledger.DebitsMustNotExceedCredits},
		{ID: payee, Asset: ledger.AssetCNY, Code: 10, Flags: ledger.DebitsMustNotExceedCredits},
	} {
		if rs, err := seqs[ledger.ShardOf(acct.ID, shards)].CreateAccounts(ctx, []ledger.Account{acct}); err != nil || rs[0].Result != ledger.ResultOK {
			t.Fatalf("account %d: %v %v", acct.ID, rs, err)
		}
	}
	fund := ledger.Transfer{ID: ledger.NewTransferID(), DebitAccountID: bank, CreditAccountID: payer, Amount: 500_00, Asset: ledger.AssetCNY, Kind: 1}
	if rs, err := seqs[0].CreateTransfers(ctx, []ledger.Transfer{fund}); err != nil || rs[0].Result != ledger.ResultOK {
		t.Fatalf("fund: %v %v", rs, err)
	}
	pay := ledger.Transfer{ID: ledger.NewTransferID(), DebitAccountID: payer, CreditAccountID: payee, Amount: 123_45, Asset: ledger.AssetCNY, Kind: 2}
	if o, err := router.Transfer(ctx, pay, 0); err != nil || o.State != xshard.InFlight {
		t.Fatalf("saga: %v %v", o, err)
	}

	dsnArg := a + "," + b
	out, err := fundctl(t, "ledger", "verify", "--dsn", dsnArg, "--shards", "4")
	if err == nil || !strings.Contains(out, "in-transit CNY: nets to 12345 across 4 shards on 2 databases") {
		t.Fatalf("verify with a saga in flight: %v\n%s", err, out)
	}

	// Deliver the saga's event by hand, as the consumer would.
	batches, err := dbs.OutboxPending(ctx, []int{0, 1, 2, 3}, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, bt := range batches {
		for _, e := range bt.Events {
			if err := router.Handle(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
	}
	for s, stop := range stops {
		if err := stop(); err != nil {
			t.Fatalf("shard %d: %v", s, err)
		}
	}
	out, err = fundctl(t, "ledger", "verify", "--dsn", a, "--dsn", b, "--shards", "4")
	if err != nil || !strings.Contains(out, "shard 3 (database 2): 4 accounts, 1 entries") || !strings.Contains(out, "in-transit CNY: nets to 0") {
		t.Fatalf("verify after the saga: %v\n%s", err, out)
	}
	out, err = fundctl(t, "ledger", "verify", "--dsn", b, "--dsn", a, "--shards", "4")
	if err == nil || !strings.Contains(out, "database 1 holds shard 2, which the map places on database 2") {
		t.Fatalf("verify with the DSNs swapped: %v\n%s", err, out)
	}
	// No process holds a lease here (the sequencers ran without a host).
	out, err = fundctl(t, "ledger", "owners", "--dsn", dsnArg, "--shards", "4")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); err != nil || len(lines) != 5 || !strings.Contains(lines[4], "none") {
		t.Fatalf("owners: %v\n%s", err, out)
	}
}
