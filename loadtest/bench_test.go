package loadtest

import (
	"testing"
	"time"
)

// The dispatcher draws every request and its send time on one goroutine,
// so these bound the rate one generator can offer. Estimate: a schedule
// step is a square root and a few multiplications (~20 ns); drawing a
// request is a Zipf draw, a weighted pick and an id formatting (~300 ns):
// millions a second, far beyond what one gateway takes.

func BenchmarkScheduleNext(b *testing.B) {
	s := NewSchedule(Double11(time.Hour, 1_000_000, 15))
	for b.Loop() {
		if _, ok := s.Next(); !ok {
			s = NewSchedule(Double11(time.Hour, 1_000_000, 15))
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "arrivals/s")
}

func BenchmarkGeneratorNext(b *testing.B) {
	cs := make([]int64, 100_000)
	for i := range cs {
		cs[i] = int64(i + 1)
	}
	g := newGenerator(Config{Customers: cs, Merchants: []int64{1, 2, 3, 4, 5}, Mix: DefaultMix(), Seed: 1,
		HotMerchants: 3, ZipfSkew: ZipfSkewDefault, RunID: "bench"})
	for b.Loop() {
		_ = g.next(0)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "requests/s")
}
