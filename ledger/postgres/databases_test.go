package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/postgres"
)

// Five shards on two databases: each shard's lease (with its owner's
// address) is kept in the database the map puts the shard on and nowhere
// else; the directory reports live owners and forgets released ones; a
// shard's data (accounts, journal, outbox) goes to its own database too.
func TestDatabasesKeepEachShardInItsDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const shards = 5
	dbs, err := postgres.OpenDatabases(ctx, postgres.DatabasesConfig{DSNs: []string{pgtest.NewDatabase(t), pgtest.NewDatabase(t)}, Shards: shards})
	if err != nil {
		t.Fatal(err)
	}
	defer dbs.Close()
	if got := [...]int{dbs.Map.DatabaseOf(0), dbs.Map.DatabaseOf(2), dbs.Map.DatabaseOf(3), dbs.Map.DatabaseOf(4)}; got != [...]int{0, 0, 1, 1} {
		t.Fatalf("placement %v", got)
	}
	epochs := make([]int64, shards)
	for s := 0; s < shards; s++ {
		e, ok, err := dbs.AcquireLease(ctx, s, "owner", "127.0.0.1:7000", 10*time.Second)
		if err != nil || !ok {
			t.Fatalf("shard %d: %v %v", s, ok, err)
		}
		epochs[s] = e
	}
	for i := 0; i < dbs.Len(); i++ {
		ls, err := dbs.Store(i).Leases(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ls) != len(dbs.Map.ShardsOn(i)) {
			t.Fatalf("database %d holds leases %+v, want shards %v", i, ls, dbs.Map.ShardsOn(i))
		}
		for _, l := range ls {
			if dbs.Map.DatabaseOf(l.Shard) != i || !l.Live || l.Addr != "127.0.0.1:7000" {
				t.Fatalf("database %d: lease %+v", i, l)
			}
		}
	}
	if err := dbs.ReleaseLease(ctx, 4, "owner", epochs[4]); err != nil {
		t.Fatal(err)
	}
	owners, err := dbs.ShardOwners(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range owners {
		if want := o.Shard != 4; (o.Addr == "127.0.0.1:7000") != want || (o.Owner == "owner") != want {
			t.Fatalf("directory: %+v", o)
		}
	}

	// Data follows the shard.
	for s := 0; s < shards; s++ {
		seq := ledger.NewSequencer(ledger.SequencerConfig{Shard: s, Shards: shards, Epoch: epochs[s]}, dbs, nil)
		if s == 4 {
			seq = ledger.NewSequencer(ledger.SequencerConfig{Shard: s, Shards: shards}, dbs, nil) // released: epoch 0 is refused
		}
		stop, err := seq.Start(ctx, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		id := ledger.AccountID(1)
		for ledger.ShardOf(id, shards) != s {
			id++
		}
		_, err = seq.CreateAccounts(ctx, []ledger.Account{{ID: id, Asset: ledger.AssetCNY}})
		if s == 4 {
			if err == nil {
				t.Fatal("a writer without the lease committed")
			}
			_ = stop()
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < dbs.Len(); i++ {
			var n int
			if err := dbs.Store(i).Pool().QueryRow(ctx, `SELECT count(*) FROM accounts WHERE id = $1`, int64(id)).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if want := dbs.Map.DatabaseOf(s) == i; (n == 1) != want {
				t.Fatalf("account %d of shard %d: %d rows on database %d", id, s, n, i)
			}
		}
	}
	if problems, err := dbs.CheckPlacement(ctx); err != nil || len(problems) != 0 {
		t.Fatalf("placement: %v %v", problems, err)
	}
}
