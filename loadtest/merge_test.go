package loadtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"
)

// TestPartsDisjointAndCovering: for several splits, the parts own every
// setup index exactly once, their sizes add up, their profiles add up to
// the whole, and their key prefixes and seeds differ.
func TestPartsDisjointAndCovering(t *testing.T) {
	prof := Double11(time.Minute, 900, 15)
	for _, n := range []int{1, 2, 3, 7} {
		for _, total := range []int{1, 5, 100, 1001} {
			owner := make([]int, total)
			sizes, runIDs, seeds := 0, map[string]bool{}, map[uint64]bool{}
			expected := 0.0
			for i := 1; i <= n; i++ {
				p := Part{Index: i, Count: n}
				for j := 0; j < total; j++ {
					if p.Owns(j) {
						owner[j]++
					}
				}
				sizes += p.Size(total)
				runIDs[p.RunID("lt1")] = true
				seeds[p.Seed(42)] = true
				expected += p.Share(prof).Expected()
			}
			for j, c := range owner {
				if c != 1 {
					t.Fatalf("%d parts, %d customers: index %d owned by %d parts", n, total, j, c)
				}
			}
			if sizes != total || len(runIDs) != n || len(seeds) != n {
				t.Fatalf("%d parts, %d customers: sizes %d, run ids %d, seeds %d", n, total, sizes, len(runIDs), len(seeds))
			}
			if d := expected - prof.Expected(); d > 1e-6 || d < -1e-6 {
				t.Fatalf("%d parts: expected arrivals %.3f, whole %.3f", n, expected, prof.Expected())
			}
		}
	}
	for _, bad := range []string{"0/3", "4/3", "1/0", "a/b", "3", "1/2000"} {
		if _, err := ParsePart(bad); err == nil {
			t.Errorf("ParsePart(%q): no error", bad)
		}
	}
	if p, err := ParsePart("2/4"); err != nil || p != (Part{Index: 2, Count: 4}) {
		t.Errorf("ParsePart(2/4) = %v, %v", p, err)
	}
}

// keyBackend records the setup's keys.
type keyBackend struct {
	mu   sync.Mutex
	keys map[string]int
	next int64
}

func (b *keyBackend) note(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.keys[key]++
}
func (b *keyBackend) OpenCustomer(_ context.Context, key, _ string) (int64, error) {
	b.note(key)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.next++
	return b.next, nil
}
func (b *keyBackend) TopUp(_ context.Context, _ int64, key string, _ int64) error {
	b.note(key)
	return nil
}
func (b *keyBackend) Subscribe(_ context.Context, _ int64, key string, _ int64) error {
	b.note(key)
	return nil
}
func (b *keyBackend) RegisterMerchant(context.Context, int64, string) error { return nil }

// TestSplitRun runs a profile as three parts against one fake gateway:
// the parts' setups open each customer once between them, their requests
// never share a key, together they send the whole profile's arrivals, and
// their results merge into counts that add up.
func TestSplitRun(t *testing.T) {
	f, srv := newFake(t, nil)
	be := &keyBackend{keys: map[string]int{}}
	const n, customers = 3, 31
	prof := Constant(time.Second, 300)
	var parts []*Result
	for i := 1; i <= n; i++ {
		part := Part{Index: i, Count: n}
		cs, ms, err := Setup(context.Background(), SetupConfig{Customers: customers, Balance: 100, Subscribe: 50,
			Merchants: 2, RunID: "s1", Backend: be, Part: part})
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) != part.Size(customers) {
			t.Fatalf("part %s: %d customers, want %d", part, len(cs), part.Size(customers))
		}
		cfg := baseConfig(srv.URL, prof)
		cfg.Customers, cfg.Merchants, cfg.Part, cfg.RunID = cs, ms, part, "lt1"
		res, err := Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, res)
	}
	for k, c := range be.keys {
		if c != 1 {
			t.Fatalf("setup key %s sent %d times", k, c)
		}
	}
	if len(be.keys) != 3*customers {
		t.Fatalf("setup sent %d keys, want %d", len(be.keys), 3*customers)
	}
	for k, c := range f.keys {
		if c != 1 {
			t.Fatalf("key %s sent %d times", k, c)
		}
	}
	m, err := Merge(parts)
	if err != nil {
		t.Fatal(err)
	}
	// Even arrivals: each part sends its 100 a second, together the whole
	// profile's 300.
	if m.Totals.Offered != 300 || m.Totals.Sent != int64(len(f.keys)) || m.Parts != n || m.Customers != customers {
		t.Fatalf("merged: totals %+v, %d keys at the gateway, parts %d, customers %d", m.Totals, len(f.keys), m.Parts, m.Customers)
	}
	if int64(len(m.Records)) != m.Orders.Sent {
		t.Fatalf("merged %d records, %d orders sent", len(m.Records), m.Orders.Sent)
	}
	if _, err := Merge(parts[:2]); err == nil {
		t.Fatal("merge of 2 of 3 parts: no error")
	}
}

// TestMergeExact feeds random latencies to three parts' stats and to one
// that gets everything: the merged result's counts, percentiles, per-op
// and per-second latencies and histograms equal the single one's.
func TestMergeExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	one := newStats(10)
	parts := []*stats{newStats(10), newStats(10), newStats(10)}
	outcomes := []Outcome{Accepted, Accepted, Accepted, Rejected, Failed, Shed}
	for i := 0; i < 30_000; i++ {
		op := Ops[rng.IntN(len(Ops))]
		o := outcomes[rng.IntN(len(outcomes))]
		lat := time.Duration(rng.ExpFloat64()*float64(20*time.Millisecond)) + time.Duration(rng.IntN(5000))*time.Microsecond
		sec := i / 3000 // in time order, as answers come
		p := parts[rng.IntN(len(parts))]
		code := fmt.Sprint(200 + rng.IntN(2))
		for _, s := range []*stats{one, p} {
			s.scheduled(sec, op, false)
			s.finished(sec, op, o, code, "INSUFFICIENT_FUNDS", lat, 0)
		}
	}
	want := &Result{}
	one.fill(want)
	var results []*Result
	for i, s := range parts {
		r := &Result{RunID: "lt", Seed: 1, Part: Part{Index: i + 1, Count: len(parts)}}
		s.fill(r)
		results = append(results, r)
	}
	got, err := Merge(results)
	if err != nil {
		t.Fatal(err)
	}
	if got.Latency != want.Latency || got.Totals != want.Totals || got.Orders != want.Orders {
		t.Fatalf("merged latency %+v totals %+v, one histogram %+v totals %+v", got.Latency, got.Totals, want.Latency, want.Totals)
	}
	for name, pair := range map[string][2]any{"by op": {got.ByOp, want.ByOp}, "distribution": {got.Distribution, want.Distribution},
		"codes": {got.Codes, want.Codes}} {
		if !reflect.DeepEqual(pair[0], pair[1]) {
			t.Fatalf("merged %s differs:\n%+v\n%+v", name, pair[0], pair[1])
		}
	}
	if !reflect.DeepEqual(got.Timeline, want.Timeline) {
		t.Fatalf("merged timeline differs")
	}
	a, _ := decodeHist(got.Histograms.All)
	b, _ := decodeHist(want.Histograms.All)
	if !a.Equals(b) {
		t.Fatal("merged histogram is not the one fed everything")
	}
	t.Logf("p50 %.3f p99 %.3f p99.9 %.3f ms over %d", got.Latency.P50Ms, got.Latency.P99Ms, got.Latency.P999Ms, got.Latency.Count)
}
