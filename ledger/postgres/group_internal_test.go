package postgres

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"
)

// Calls that arrive while the only slot is busy share the next round trip,
// within its bounds; each gets its own answer; a call whose context ends
// before it was sent is dropped, never sent.
func TestGroupMergesWhileBusy(t *testing.T) {
	g := newGroup[int, int](1, 3, 100, func(in int) int { return in })
	var (
		mu     sync.Mutex
		rec    tripRecorder
		first  = make(chan struct{})
		unlock = make(chan struct{})
	)
	run := func(_ context.Context, calls []*groupCall[int, int]) {
		if n := rec.record(calls); n == 1 {
			close(first)
			<-unlock // hold the slot until the others queued
		}
		for _, c := range calls {
			c.done <- groupResult[int]{out: 10 * c.in}
		}
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	results := make(map[int]int)
	call := func(in int) {
		defer wg.Done()
		out, err := g.do(ctx, in, run)
		if err != nil {
			t.Errorf("call %d: %v", in, err)
		}
		mu.Lock()
		results[in] = out
		mu.Unlock()
	}
	wg.Add(1)
	go call(1)
	<-first
	// The slot is busy: these queue. A cancelled one leaves the queue.
	cctx, cancel := context.WithCancel(ctx)
	cancelled := make(chan error, 1)
	go func() {
		_, err := g.do(cctx, 99, run)
		cancelled <- err
	}()
	for _, in := range []int{2, 3, 4, 5, 60} {
		wg.Add(1)
		go call(in)
	}
	for queued(g) < 6 {
		runtime.Gosched()
	}
	cancel()
	if err := <-cancelled; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v, want context.Canceled", err)
	}
	close(unlock)
	wg.Wait()

	trips := rec.all()
	sent := 0
	for i, trip := range trips {
		w := 0
		for _, in := range trip {
			if in == 99 {
				t.Fatalf("the cancelled call was sent: %v", trips)
			}
			w += in
		}
		if i > 0 && (len(trip) > 3 || (len(trip) > 1 && w > 100)) {
			t.Fatalf("round trip %v over the bounds (3 calls, weight 100)", trip)
		}
		sent += len(trip)
	}
	if sent != 6 || len(trips) > 4 {
		t.Fatalf("round trips %v: want the 6 calls in at most 4", trips)
	}
	for _, in := range []int{1, 2, 3, 4, 5, 60} {
		if results[in] != 10*in {
			t.Fatalf("call %d answered %d", in, results[in])
		}
	}
}

func queued(g *group[int, int]) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.queue)
}

// A leader with a linger waits for the calls it expects (the other active
// shards') and carries them in its round trip; when they do not come it
// goes alone once the linger is over; without a linger it never waits.
func TestGroupLingersForTheOtherShards(t *testing.T) {
	var rec tripRecorder
	run := func(_ context.Context, calls []*groupCall[int, int]) {
		rec.record(calls)
		for _, c := range calls {
			c.done <- groupResult[int]{out: c.in}
		}
	}
	ctx := context.Background()

	// Three expected, they come 1 ms apart: one round trip.
	g := newGroup[int, int](1, 64, 1000, func(int) int { return 1 })
	g.linger, g.lingerCalls = time.Minute, func() int { return 3 }
	var wg sync.WaitGroup
	for i := 1; i <= 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := g.do(ctx, i, run); err != nil {
				t.Error(err)
			}
		}()
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	if trips := rec.all(); len(trips) != 1 || len(trips[0]) != 3 {
		t.Fatalf("three calls expected together went as %v, want one round trip", trips)
	}

	// Two expected, one comes: it goes alone after the linger, not before.
	rec.reset()
	g = newGroup[int, int](1, 64, 1000, func(int) int { return 1 })
	g.linger, g.lingerCalls = 20*time.Millisecond, func() int { return 2 }
	start := time.Now()
	if _, err := g.do(ctx, 7, run); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < 20*time.Millisecond || waited > 10*time.Second {
		t.Fatalf("alone, it went after %v, want the 20ms linger", waited)
	}

	// No linger: never waits, whatever is expected.
	g = newGroup[int, int](1, 64, 1000, func(int) int { return 1 })
	g.lingerCalls = func() int { t.Fatal("asked for the calls expected without a linger"); return 0 }
	if _, err := g.do(ctx, 8, run); err != nil {
		t.Fatal(err)
	}
	if st := g.trips.Load(); st != 1 {
		t.Fatalf("round trips counted %d, want 1", st)
	}
}

// tripRecorder keeps the inputs of each round trip a test's run made.
type tripRecorder struct {
	mu    sync.Mutex
	trips [][]int
}

// record adds a round trip's inputs and returns how many there were.
func (r *tripRecorder) record(calls []*groupCall[int, int]) int {
	ins := make([]int, len(calls))
	for i, c := range calls {
		ins[i] = c.in
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.trips = append(r.trips, ins)
	return len(r.trips)
}

func (r *tripRecorder) all() [][]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.trips
}

func (r *tripRecorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.trips = nil
}
