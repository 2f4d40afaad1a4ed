package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/ledger"
	ledgerpg "github.com/fundplatform/fund/ledger/postgres"
	"github.com/fundplatform/fund/settlement/recon"
	reconpg "github.com/fundplatform/fund/settlement/recon/postgres"
)

// benchEvents returns n events of one shard on day's noon onwards, between
// accounts random enough that account totals see many rows.
func benchEvents(n int, from int64, day time.Time) []ledger.Event {
	noon := recon.DayStart(day).Add(12 * time.Hour).UnixNano()
	out := make([]ledger.Event, n)
	for i := range out {
		k := from + int64(i)
		out[i] = ledger.Event{Version: ledger.EventVersion, ID: ledger.NewTransferID(), Timestamp: noon + k,
			DebitAccountID: ledger.AccountID(1 + k%100_000), CreditAccountID: ledger.AccountID(200_001 + k%7),
			Amount: 1 + k%10_000, Asset: ledger.AssetCNY, Kind: 1, UserData: "bench"}
	}
	return out
}

func openBench(b *testing.B) (*ledgerpg.Store, *reconpg.Store) {
	b.Helper()
	ctx := context.Background()
	dsn := pgtest.NewDatabase(b)
	ls, err := ledgerpg.Open(ctx, ledgerpg.Config{DSN: dsn})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(ls.Close)
	rs, err := reconpg.Open(ctx, reconpg.Config{DSN: dsn})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(rs.Close)
	return ls, rs
}

// BenchmarkApply measures the consumer's write path: batches of 1024 new
// events per transaction. Estimate: five set-based statements per batch,
// ~1024 wide rows with a primary key and one index plus ~100 totals rows
// upserted; Postgres on this machine inserts some 50-100k such rows/s, so
// 20-50k events/s per worker.
func BenchmarkApply(b *testing.B) {
	_, rs := openBench(b)
	ctx := context.Background()
	day := ledger.BusinessDate(time.Now().UnixNano())
	const batch = 1024
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		evs := benchEvents(batch, int64(i)*batch, day)
		b.StartTimer()
		if _, err := rs.Apply(ctx, evs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkCompareDay measures the clean comparison of a day that is over
// (the nightly case): one aggregate pass over the day's journal partition
// (hashing every row) against the stream's day totals. Estimate: a
// sequential scan with a hash per row runs at 1-2 M rows/s on one core.
func BenchmarkCompareDay(b *testing.B) {
	ls, rs := openBench(b)
	ctx := context.Background()
	day := ledger.BusinessDate(time.Now().UnixNano()).AddDate(0, 0, -1)
	const entries, batch = 200_000, 8192
	for from := 0; from < entries; from += batch {
		evs := benchEvents(batch, int64(from), day)
		if _, err := rs.Apply(ctx, evs); err != nil {
			b.Fatal(err)
		}
		if err := plantJournal(ctx, ls, evs); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := ls.Pool().Exec(ctx, `ANALYZE`); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rep, err := rs.Compare(ctx, day, recon.CompareOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if len(rep.Breaks) != 0 {
			b.Fatalf("%d breaks", len(rep.Breaks))
		}
	}
	b.ReportMetric(float64(b.N*entries)/b.Elapsed().Seconds(), "entries/s")
}

// plantJournal writes events as journal rows directly (INSERT is what the
// ledger does; the benchmark skips the sequencer to reach size quickly).
func plantJournal(ctx context.Context, ls *ledgerpg.Store, evs []ledger.Event) error {
	n := len(evs)
	ids, dates := make([]pgtype.UUID, n), make([]pgtype.Date, n)
	ts, dr, cr, amt := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	for i, e := range evs {
		ids[i] = pgtype.UUID{Bytes: e.ID, Valid: true}
		dates[i] = pgtype.Date{Time: ledger.BusinessDate(e.Timestamp), Valid: true}
		ts[i], dr[i], cr[i], amt[i] = e.Timestamp, int64(e.DebitAccountID), int64(e.CreditAccountID), e.Amount
	}
	_, err := ls.Pool().Exec(ctx, `
		INSERT INTO transfers (id, shard, ts, business_date, debit_account_id, credit_account_id, amount, asset, kind, flags, user_data)
		SELECT u.id, 0, u.ts, u.d, u.dr, u.cr, u.amount, 1, 1, 0, 'bench'
		FROM unnest($1::uuid[], $2::bigint[], $3::date[], $4::bigint[], $5::bigint[], $6::bigint[]) AS u(id, ts, d, dr, cr, amount)`,
		ids, ts, dates, dr, cr, amt)
	return err
}
