package postgres

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/internal/testseed"
	"github.com/fundplatform/fund/ledger"
)

// TestShardOfSQL holds the SQL of Verify's placement check to
// ledger.ShardOf: random ids over the whole int64 range (negative ones
// too: the top bits are a namespace), the edges of the home, and shard
// counts from 1 to 1,000.
func TestShardOfSQL(t *testing.T) {
	seed := testseed.Seed(t)
	rng := rand.New(rand.NewPCG(seed, 1))
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	ids := []int64{1, 15, 16, 1 << 4, 1<<44 - 1, 1 << 44, -1, -1 << 63, 1<<63 - 1, int64(ledger.WithHome(0, 1<<40-1))}
	for range 2000 {
		ids = append(ids, int64(rng.Uint64()), rng.Int64N(1<<20), rng.Int64N(1<<44))
	}
	for _, shards := range []int{1, 2, 3, 7, 8, 64, 1000} {
		rows, err := conn.Query(ctx, `SELECT id, `+shardOfSQL("id", "$2")+` FROM unnest($1::bigint[]) AS u(id)`, ids, shards)
		if err != nil {
			t.Fatal(err)
		}
		var id int64
		var got int
		n := 0
		_, err = pgx.ForEachRow(rows, []any{&id, &got}, func() error {
			n++
			if want := ledger.ShardOf(ledger.AccountID(id), shards); got != want {
				t.Errorf("account %d of %d shards: SQL says shard %d, ledger.ShardOf %d", id, shards, got, want)
			}
			return nil
		})
		if err != nil || n != len(ids) {
			t.Fatalf("%d shards: %d rows, %v", shards, n, err)
		}
	}
}

// BenchmarkShardOfSQL measures the placement check's cost per account:
// the expression over a million ids in the server, less the series alone.
// Estimate: about 25 bigint operations, each a few ns in the executor, so
// 100-300 ns an account (the same in numeric, one 104-bit product, took
// about 1.1 µs here).
func BenchmarkShardOfSQL(b *testing.B) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.NewDatabase(b))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	const n = 1_000_000
	var base time.Duration
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM generate_series(1, $1) AS g(id)`, n).Scan(new(int64)); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM generate_series(1, $1) AS g(id) WHERE id >= 0`, n).
			Scan(new(int64)); err != nil {
			b.Fatal(err)
		}
		base += time.Since(t0)
		var misplaced int64
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM generate_series(1::bigint, $1) AS g(id)
			WHERE `+shardOfSQL("id", "$2")+` <> 0`, n, 64).Scan(&misplaced); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed()-2*base)/float64(b.N)/n, "ns/account")
}
