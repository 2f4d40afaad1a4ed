package postgres

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// group merges the round trips of the shards of one database that arrive
// while earlier ones are in flight: batch commits into one transaction (one
// round trip, one WAL flush and one statement per table for all of them),
// id lookups into one query. With many shards on a database each batch
// holds a few dozen transfers, so these per-round-trip costs, not the rows,
// were most of Postgres' work.
//
// Nothing waits to fill a group: a call that finds a slot free goes at once
// (with whatever else is queued); only calls that arrive while every slot
// is busy are merged. Each call is answered only with the outcome of the
// round trip that carried it.
// roundTripMax bounds one merged round trip (as CommitTimeout bounds a
// sequencer's commit by default).
const roundTripMax = 30 * time.Second

type group[In, Out any] struct {
	slots     chan struct{} // round trips in flight
	callsMax  int           // calls in one round trip
	weightMax int           // summed weight (rows) of one round trip's calls, unless one call alone is heavier
	weight    func(In) int
	// linger, when set, is how long a leader waits for more calls before
	// its round trip, while fewer than lingerCalls are queued.
	linger      time.Duration
	lingerCalls func() int
	queued      chan struct{} // a token when a call is queued: wakes a lingering leader

	mu    sync.Mutex
	queue []*groupCall[In, Out]

	trips, calls atomic.Int64 // round trips made and the calls they carried
}

type groupCall[In, Out any] struct {
	in    In
	done  chan groupResult[Out] // buffered: the leader never blocks answering
	taken bool                  // a leader took it: only that leader answers it now
}

type groupResult[Out any] struct {
	out Out
	err error
}

// groupRun carries calls in one round trip and answers each (exactly once).
type groupRun[In, Out any] func(ctx context.Context, calls []*groupCall[In, Out])

func newGroup[In, Out any](inFlightMax, callsMax, weightMax int, weight func(In) int) *group[In, Out] {
	return &group[In, Out]{slots: make(chan struct{}, inFlightMax), callsMax: callsMax, weightMax: weightMax, weight: weight,
		queued: make(chan struct{}, 1)}
}

// do queues in and returns its answer. The caller that takes a free slot
// leads: it carries everything queued, its own call and others', in one
// round trip, and answers each.
func (g *group[In, Out]) do(ctx context.Context, in In, run groupRun[In, Out]) (Out, error) {
	c := &groupCall[In, Out]{in: in, done: make(chan groupResult[Out], 1)}
	g.mu.Lock()
	g.queue = append(g.queue, c)
	g.mu.Unlock()
	select {
	case g.queued <- struct{}{}:
	default: // a token is there already
	}
	for {
		g.mu.Lock()
		taken := c.taken
		g.mu.Unlock()
		if taken {
			// In a leader's round trip: only its outcome is the truth, and
			// roundTripMax bounds the wait.
			r := <-c.done
			return r.out, r.err
		}
		select {
		case r := <-c.done:
			return r.out, r.err
		case g.slots <- struct{}{}:
			g.lingerForMore()
			calls := g.take()
			if len(calls) > 0 {
				g.trips.Add(1)
				g.calls.Add(int64(len(calls)))
			}
			switch {
			case len(calls) == 1 && calls[0] == c:
				run(ctx, calls) // alone: the caller's context rules, as without grouping
			case len(calls) > 0:
				// The round trip carries other callers' work: the leader's
				// cancellation or short deadline must not fail it; a bound
				// does.
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), roundTripMax)
				run(rctx, calls)
				cancel()
			}
			<-g.slots
			// c was in the round trip just made (answered), or another
			// leader took it, or the group was full before c (lead again).
		case <-ctx.Done():
			g.mu.Lock()
			if !c.taken {
				g.remove(c)
				g.mu.Unlock()
				var zero Out
				return zero, ctx.Err() // never sent: it had no effect
			}
			g.mu.Unlock()
			// Sent in a leader's round trip: only its outcome is the truth,
			// and roundTripMax bounds the wait.
			r := <-c.done
			return r.out, r.err
		}
	}
}

// lingerForMore waits, at most linger, until lingerCalls are queued: the
// other active shards' calls, which usually arrive within a fraction of a
// round trip, then share it.
func (g *group[In, Out]) lingerForMore() {
	if g.linger <= 0 {
		return
	}
	want := g.lingerCalls()
	var timeout <-chan time.Time
	for {
		g.mu.Lock()
		n := len(g.queue)
		g.mu.Unlock()
		if n == 0 || n >= want {
			return // nothing to carry (another leader took it), or all there
		}
		if timeout == nil {
			t := time.NewTimer(g.linger)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-g.queued:
		case <-timeout:
			return
		}
	}
}

// take removes the oldest queued calls, up to the bounds of one round trip.
func (g *group[In, Out]) take() []*groupCall[In, Out] {
	g.mu.Lock()
	defer g.mu.Unlock()
	n, weight := 0, 0
	for n < len(g.queue) && n < g.callsMax {
		w := g.weight(g.queue[n].in)
		if n > 0 && weight+w > g.weightMax {
			break
		}
		weight += w
		g.queue[n].taken = true
		n++
	}
	calls := make([]*groupCall[In, Out], n)
	copy(calls, g.queue[:n])
	g.queue = append(g.queue[:0], g.queue[n:]...)
	return calls
}

func (g *group[In, Out]) remove(c *groupCall[In, Out]) {
	for i, q := range g.queue {
		if q == c {
			g.queue = append(g.queue[:i], g.queue[i+1:]...)
			return
		}
	}
}
