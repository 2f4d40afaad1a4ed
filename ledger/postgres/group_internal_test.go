package postgres

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
)

// Calls that arrive while the only slot is busy share the next round trip,
// within its bounds; each gets its own answer; a call whose context ends
// before it was sent is dropped, never sent.
func TestGroupMergesWhileBusy(t *testing.T) {
	g := newGroup[int, int](1, 3, 100, func(in int) int { return in })
	var (
		mu     sync.Mutex
		trips  [][]int
		first  = make(chan struct{})
		unlock = make(chan struct{})
	)
	run := func(_ context.Context, calls []*groupCall[int, int]) {
		var ins []int
		for _, c := range calls {
			ins = append(ins, c.in)
		}
		mu.Lock()
		trips = append(trips, ins)
		n := len(trips)
		mu.Unlock()
		if n == 1 {
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
