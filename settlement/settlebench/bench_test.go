package settlebench_test

import (
	"context"
	"testing"

	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/settlement"
	settlepg "github.com/fundplatform/fund/settlement/postgres"
	"github.com/fundplatform/fund/settlement/settlebench"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestBenchSmall runs the whole benchmark path on a small day: seed, settle,
// verify.
func TestBenchSmall(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	res, err := settlebench.Run(context.Background(), settlebench.Config{DSN: dsn, Accounts: 3000, Shards: 3,
		FileDir: t.TempDir(), IncomePer10k: 6543, Log: testLog{t}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Verified {
		t.Fatal("not verified")
	}
	t.Logf("%+v", res.Summary)
}

// TestSeedSQLMatchesGo checks the seed's SQL versions of ledger.ShardOf and
// the accounts order transfer id against the Go ones.
func TestSeedSQLMatchesGo(t *testing.T) {
	ctx := context.Background()
	store, err := settlepg.Open(ctx, settlepg.Config{DSN: pgtest.NewDatabase(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for _, id := range []int64{1, 2, 18, 34, 1 << 40, 1<<44 - 1, 123456789} {
		for _, shards := range []int{1, 3, 8, 64} {
			var got int
			if err := store.Pool().QueryRow(ctx, settlebench.ShardSQLForTest(shards), id).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if want := ledger.ShardOf(ledger.AccountID(id), shards); got != want {
				t.Errorf("shard of %d over %d: sql %d, go %d", id, shards, got, want)
			}
		}
	}
	var got [16]byte
	if err := store.Pool().QueryRow(ctx, settlebench.OrderIDSQLForTest()).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if want := settlement.OrderTransferID(42, "seed-sub", 1); ledger.TransferID(got) != want {
		t.Errorf("order id: sql %x, go %s", got, want)
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(string(p))
	return len(p), nil
}
