package main

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/postgres"
)

// `fundctl ledger verify` on 8 shards over 2 databases prints the fund's
// figures summed over shards (each system account's sub-accounts, each
// merchant's) and passes; then a writer of shard 0 started with the wrong
// shard count (1) books a customer of another shard under shard 0, and
// verify fails naming the misplaced account.
func TestLedgerVerifyFundFigures(t *testing.T) {
	ctx := context.Background()
	const shards = 8
	a, b := pgtest.NewDatabase(t), pgtest.NewDatabase(t)
	dbs, err := postgres.OpenDatabases(ctx, postgres.DatabasesConfig{DSNs: []string{a, b}, Shards: shards})
	if err != nil {
		t.Fatal(err)
	}
	defer dbs.Close()
	run := func(s, count int, as []ledger.Account, ts []ledger.Transfer) {
		t.Helper()
		seq := ledger.NewSequencer(ledger.SequencerConfig{Shard: s, Shards: count}, dbs, nil)
		stop, err := seq.Start(ctx, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := stop(); err != nil {
				t.Fatal(err)
			}
		}()
		if rs, err := seq.CreateAccounts(ctx, as); err != nil || len(rs) != len(as) {
			t.Fatalf("shard %d accounts: %v %v", s, rs, err)
		}
		rs, err := seq.CreateTransfers(ctx, ts)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.Result != ledger.ResultOK {
				t.Fatalf("shard %d transfer: %s", s, r.Result)
			}
		}
	}
	// Every shard: the fund's system accounts and merchant 7's account,
	// and shard s's customer tops up 10.00 + s and pays 1.00 to merchant 7.
	const m = accounts.MerchantID(7)
	customer := func(shard int, after accounts.CustomerID) accounts.CustomerID {
		for c := after + 1; ; c++ {
			if accounts.ShardOf(c, shards) == shard {
				return c
			}
		}
	}
	for s := range shards {
		var as []ledger.Account
		for id, asset := range accounts.SystemAccountIDs() {
			as = append(as, ledger.Account{ID: accounts.SystemAccountOn(id, s, shards), Asset: asset, Code: accounts.CodeSystem})
		}
		c := customer(s, 0)
		as = append(as, ledger.Account{ID: accounts.MerchantAccountOn(m, s, shards), Asset: ledger.AssetCNY, Code: accounts.CodeMerchant},
			ledger.Account{ID: accounts.CashAccount(c), Asset: ledger.AssetCNY, Code: accounts.CodeCustomerCash,
				Flags: ledger.DebitsMustNotExceedCredits})
		run(s, shards, as, []ledger.Transfer{
			{ID: ledger.NewTransferID(), DebitAccountID: accounts.SystemAccountOn(accounts.BankSettlement, s, shards),
				CreditAccountID: accounts.CashAccount(c), Amount: 10_00 + int64(s), Asset: ledger.AssetCNY, Kind: accounts.TransferTopUp},
			{ID: ledger.NewTransferID(), DebitAccountID: accounts.CashAccount(c),
				CreditAccountID: accounts.MerchantAccountOn(m, s, shards), Amount: 1_00, Asset: ledger.AssetCNY, Kind: 1},
		})
	}
	dsns := a + "," + b
	out, err := fundctl(t, "ledger", "verify", "--dsn", dsns, "--shards", "8")
	t.Logf("verify:\n%s", out)
	// 8 x 10.00 + (0 + 1 + ... + 7) fen = 80.28 out of the bank; 8.00 to
	// the merchant.
	for _, want := range []string{"fund accounts, each summed over its sub-accounts on 8 shards",
		"bank settlement                  CNY             -80.28", "fund omnibus cash                CNY               0.00",
		"merchant 7                       CNY               8.00", "all 1 merchants                  CNY               8.00"} {
		if err != nil || !strings.Contains(out, want) {
			t.Fatalf("verify: %v, want %q in:\n%s", err, want, out)
		}
	}

	// A writer of shard 0 that believes in one shard books a customer of
	// shard 3 under shard 0, topped up from shard 0's bank account.
	stray := customer(3, customer(3, 0))
	run(0, 1, []ledger.Account{{ID: accounts.CashAccount(stray), Asset: ledger.AssetCNY, Code: accounts.CodeCustomerCash}},
		[]ledger.Transfer{{ID: ledger.NewTransferID(), DebitAccountID: accounts.BankSettlement, CreditAccountID: accounts.CashAccount(stray),
			Amount: 5_00, Asset: ledger.AssetCNY, Kind: accounts.TransferTopUp}})
	out, err = fundctl(t, "ledger", "verify", "--dsn", dsns, "--shards", "8")
	want := "1 accounts stored under shard 0 belong to another of the 8 shards (the first, " + strconv.FormatInt(int64(accounts.CashAccount(stray)), 10)
	if err == nil || !strings.Contains(out, want) {
		t.Fatalf("verify with a misplaced account: %v, want %q in:\n%s", err, want, out)
	}
	t.Logf("verify with a misplaced account:\n%s", out)
}

// A figure is checked to be made of exactly one sub-account per shard,
// each the one the accounts package places there: a copy searched over
// another shard count, or a shard without its copy, is named.
func TestFundFigureSubAccounts(t *testing.T) {
	const shards = 8
	on := func(s int) ledger.AccountID { return accounts.SystemAccountOn(accounts.Rounding, s, shards) }
	nets := func(ids ...ledger.AccountID) []postgres.AccountNet {
		var out []postgres.AccountNet
		for _, id := range ids {
			out = append(out, postgres.AccountNet{ID: id, Shard: ledger.ShardOf(id, shards), Asset: ledger.AssetFundShares,
				Code: accounts.CodeSystem, Net: 1})
		}
		return out
	}
	all := []ledger.AccountID{on(0), on(1), on(2), on(3), on(4), on(5), on(6), on(7)}
	// A copy searched over another shard count that is not the copy of
	// the shard of 8 it lives on.
	var other ledger.AccountID
	for n := 2; other == 0 && n < 64; n++ {
		for s := range n {
			if id := accounts.SystemAccountOn(accounts.Rounding, s, n); id != on(ledger.ShardOf(id, shards)) {
				other = id
				break
			}
		}
	}
	for _, c := range []struct {
		name string
		ids  []ledger.AccountID
		want string
	}{
		{"every shard's", all, ""},
		{"one missing", all[:7], "7 sub-accounts for 8 shards (shard 7 has none)"},
		{"another count", append(all[1:len(all):len(all)], other), "placed for another shard count?"},
	} {
		gs := groupByCanonical(nets(c.ids...), accounts.CodeSystem)
		if len(gs) != 1 || gs[0].canonical != accounts.Rounding || gs[0].net != int64(len(c.ids)) {
			t.Fatalf("%s: groups %+v", c.name, gs)
		}
		got := gs[0].check(shards, on)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
