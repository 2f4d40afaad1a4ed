package postgres_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/postgres"
)

// idOn returns the first account id at or above from that lives on shard.
func idOn(from ledger.AccountID, shard, shards int) ledger.AccountID {
	for id := from; ; id += 16 { // the next home, same slot
		if ledger.ShardOf(id, shards) == shard {
			return id
		}
	}
}

// TestVerifyFindsAccountsOnTheWrongShard: a writer of shard 0 started with
// the wrong shard count (1, on a ledger of 2) books an account of shard 1
// under shard 0. Verify, told the ledger has 2 shards, names it; a store
// not told the count leaves that check out and finds nothing else wrong;
// the same books written with the right count verify. An entry whose
// account was then moved to its own shard (by hand, as a botched repair
// would) is named too.
func TestVerifyFindsAccountsOnTheWrongShard(t *testing.T) {
	ctx := context.Background()
	const shards = 2
	bank, own, foreign := idOn(1<<20|1, 0, shards), idOn(1000<<4|1, 0, shards), idOn(1000<<4|1, 1, shards)
	book := func(t *testing.T, seqShards int) string {
		dsn := pgtest.NewDatabase(t)
		st := openWith(t, dsn, 0)
		// With the right count the foreign account goes to shard 1 and
		// its top-up is paid from shard 1's own bank account.
		for s := range seqShards {
			seq := ledger.NewSequencer(ledger.SequencerConfig{Shard: s, Shards: seqShards}, st, nil)
			stop, err := seq.Start(ctx, readyTimeout)
			if err != nil {
				t.Fatal(err)
			}
			var as []ledger.Account
			var ts []ledger.Transfer
			for _, id := range []ledger.AccountID{own, foreign} {
				if ledger.ShardOf(id, seqShards) != s {
					continue
				}
				b := idOn(bank, s, seqShards)
				as = append(as, ledger.Account{ID: b, Asset: ledger.AssetCNY, Code: 1},
					ledger.Account{ID: id, Asset: ledger.AssetCNY, Code: 2, Flags: ledger.DebitsMustNotExceedCredits})
				ts = append(ts, ledger.Transfer{ID: ledger.NewTransferID(), DebitAccountID: b, CreditAccountID: id,
					Amount: 100, Asset: ledger.AssetCNY, Kind: 1})
			}
			if rs, err := seq.CreateAccounts(ctx, as); err != nil || len(rs) != len(as) {
				t.Fatalf("accounts: %v %v", rs, err)
			}
			if rs, err := seq.CreateTransfers(ctx, ts); err != nil || rs[0].Result != ledger.ResultOK {
				t.Fatalf("transfers: %v %v", rs, err)
			}
			if err := stop(); err != nil {
				t.Fatal(err)
			}
		}
		return dsn
	}
	problems := func(t *testing.T, st *postgres.Store) []string {
		t.Helper()
		var out []string
		for s := range shards {
			rep, err := st.Verify(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Differences) > 0 {
				out = append(out, "balance differences")
			}
			out = append(out, rep.Problems...)
		}
		return out
	}

	t.Run("right count", func(t *testing.T) {
		st := openWith(t, book(t, shards), shards)
		if p := problems(t, st); len(p) != 0 {
			t.Fatalf("problems: %q", p)
		}
	})
	t.Run("wrong count", func(t *testing.T) {
		dsn := book(t, 1)
		p := problems(t, openWith(t, dsn, shards))
		if len(p) != 1 || !strings.Contains(p[0], "1 accounts stored under shard 0 belong to another of the 2 shards") ||
			!strings.Contains(p[0], "the first, "+itoa(foreign)+", to shard 1") {
			t.Fatalf("problems: %q", p)
		}
		t.Logf("found: %s", p[0])
		if p := problems(t, openWith(t, dsn, 0)); len(p) != 0 {
			t.Fatalf("without the shard count: %q", p)
		}
		// Moved to its own shard by hand, the account's entries stay
		// under shard 0.
		st := openWith(t, dsn, shards)
		if _, err := st.Pool().Exec(ctx, `UPDATE accounts SET shard = 1 WHERE id = $1`, foreign); err != nil {
			t.Fatal(err)
		}
		p = problems(t, st)
		if !strings.Contains(strings.Join(p, "\n"), "1 entries name an account stored under another shard") {
			t.Fatalf("after the move: %q", p)
		}
		t.Logf("after the move: %q", p)
	})
}

func openWith(t *testing.T, dsn string, shards int) *postgres.Store {
	t.Helper()
	st, err := postgres.Open(context.Background(), postgres.Config{DSN: dsn, ConnsMax: 4, Shards: shards})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

func itoa(id ledger.AccountID) string { return strconv.FormatInt(int64(id), 10) }
