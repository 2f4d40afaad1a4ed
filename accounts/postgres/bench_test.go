package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/accounts/postgres"
	"github.com/fundplatform/fund/internal/localpg"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
)

// BenchmarkPlaceOrders places subscriptions through the store alone, from
// 256 concurrent callers over 4,000 customers (the gateway bench's shape),
// with an apply that stands in for the ledger by pausing 2 ms, and reports
// orders/s, the Postgres CPU per order (pg-µs/order: the whole server, so
// run it on a quiet machine and compare runs, not absolute values) and the
// WAL bytes per order (the server's, from its insert position).
//
// Estimate: a batch costs a few statements (BEGIN, locks, two reads,
// INSERT, COMMIT: ~0.2 ms of fixed work and a WAL flush) plus, per order,
// two lock-table entries, one index probe, a customer read and one row
// with three index entries (~10-20 µs). With batches of ~50, ~15-25 µs of
// Postgres CPU per order.
func BenchmarkPlaceOrders(b *testing.B) {
	for _, writers := range []int{2, 3, 8} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) { benchPlace(b, writers) })
	}
}

func benchPlace(b *testing.B, writers int) {
	const (
		customers = 4000
		callers   = 256
		pause     = 2 * time.Millisecond
	)
	dsn := pgtest.NewDatabase(b)
	ctx := context.Background()
	st, err := postgres.Open(ctx, postgres.Config{DSN: dsn, ConnsMax: int32(writers + 2), OrderWriters: writers})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	var dataDir string
	if err := st.Pool().QueryRow(ctx, `SHOW data_directory`).Scan(&dataDir); err != nil {
		b.Fatal(err)
	}
	ids := make([]accounts.CustomerID, customers)
	for i := range ids {
		c, _, err := st.CreateCustomer(ctx, accounts.Customer{RequestID: fmt.Sprintf("c%d", i), Name: "bench",
			CreatedAt: time.Now().UTC().Truncate(time.Microsecond)}, func(context.Context, accounts.Customer) error { return nil })
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = c.ID
	}
	var seq atomic.Int64
	run := func(n int64) {
		var wg sync.WaitGroup
		for range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					k := seq.Add(1)
					if k > n {
						return
					}
					c := ids[int(k)%customers]
					o := &accounts.Order{CustomerID: c, RequestID: fmt.Sprintf("b%d", k), Kind: accounts.KindSubscribe,
						Amount: 1, TradeDate: time.Date(2026, 11, 18, 0, 0, 0, 0, time.UTC),
						ConfirmDate: time.Date(2026, 11, 19, 0, 0, 0, 0, time.UTC), CreatedAt: time.Now().UTC().Truncate(time.Microsecond)}
					if _, _, err := st.PlaceOrder(ctx, o, []accounts.CustomerID{c}, func(context.Context, []accounts.Customer) error {
						time.Sleep(pause)
						o.Status = accounts.OrderPending
						return nil
					}); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	run(2000) // warm-up: connections, caches
	seq.Store(0)
	before := st.OrderStats()
	walBytes := func() int64 {
		var n int64
		if err := st.Pool().QueryRow(ctx, `SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint`).Scan(&n); err != nil {
			b.Fatal(err)
		}
		return n
	}
	wal0 := walBytes()
	cpu0, ok := localpg.ProcessCPU(dataDir)
	b.ResetTimer()
	start := time.Now()
	run(int64(b.N))
	elapsed := time.Since(start)
	b.StopTimer()
	cpu1, _ := localpg.ProcessCPU(dataDir)
	b.ReportMetric(float64(walBytes()-wal0)/float64(b.N), "wal-B/order")
	after := st.OrderStats()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "orders/s")
	if batches := after.Batches - before.Batches; batches > 0 {
		b.ReportMetric(float64(after.Orders-before.Orders)/float64(batches), "orders/batch")
	}
	if ok {
		b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N), "pg-µs/order")
	}
}
