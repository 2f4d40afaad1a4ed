package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/ledger/ledgerbench"
)

// BenchmarkSequencer runs the ledger bench for a few seconds per setting and
// reports transfers/s and p99. Back of the envelope: one Postgres backend
// commits the batches; at ~10 µs of its CPU per transfer it tops out near
// 100k transfers/s, and 1,000 clients waiting ~20 ms each offer 50k/s.
// Run: go test -run '^$' -bench Sequencer -benchtime 1x ./ledger/postgres
func BenchmarkSequencer(b *testing.B) {
	for _, skew := range []string{"uniform", "hot"} {
		b.Run(skew, func(b *testing.B) {
			dsn := pgtest.NewDatabase(b)
			var res *ledgerbench.Result
			for i := 0; i < b.N; i++ {
				var err error
				res, err = ledgerbench.Run(context.Background(), ledgerbench.Config{
					DSN: dsn, Accounts: 20_000, Clients: 1000, Batch: 1, Skew: skew,
					Duration: 3 * time.Second, Seed: uint64(i + 1),
				})
				if err != nil {
					b.Fatal(err)
				}
				if !res.Verified {
					b.Fatal("journal and balances disagree")
				}
			}
			b.ReportMetric(res.TransfersPerSec, "transfers/s")
			b.ReportMetric(res.P99Ms, "p99_ms")
			b.ReportMetric(res.BatchMean, "batch_mean")
		})
	}
}
