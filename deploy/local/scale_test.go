package local_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/fundplatform/fund/deploy/local"
	"github.com/fundplatform/fund/loadtest"
)

// The scale-out and back under load: while a Double-11 profile
// runs through the front, the ledger owners go 3 -> 6 and the gateways
// 2 -> 4 before midnight, and back to 3 and 2 after the peak. Every order
// is answered (none failed, shed or dropped), the shards are spread evenly
// after each change (at most one apart), every move is a hand-off (no
// shard is without a live owner for as long as a second, against a 5 s
// lease TTL: nobody waited for a lease to expire), the added gateways
// served orders and the removed ones were drained first, and the audit
// finds every acknowledged order exactly once, nothing half-applied, no
// orphans, every saga completed or refunded, and reconciliation clean.
func TestClusterScalesOutAndBackUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds fundd and starts processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c, err := local.Start(ctx, local.Config{Dir: t.TempDir(), Logger: logger, TestClock: true, TestClockStart: setupDay})
	if err != nil {
		t.Fatal(err)
	}
	all := append(append([]*local.Process{}, c.Owners...), c.Gateways...)
	defer func() {
		if err := c.Stop(context.Background()); err != nil {
			t.Errorf("stop: %v", err)
		}
		if t.Failed() {
			for _, p := range all {
				t.Logf("%s log, tail:\n%s", p.Name, lastBytes([]byte(readLog(p)), 3000))
			}
		}
	}()
	tokens, customers, merchants := setUpCustomers(ctx, t, c, "scales")

	gaps := watchGaps(ctx, c, 20*time.Millisecond)
	// 40 s of Double-11: 6 orders/s in the evening, 60/s from 16.4 s to
	// 24 s, then the decay. The cluster scales out during the evening and
	// back once the peak is over (but while orders still come).
	const runFor = 40 * time.Second
	profile := loadtest.Double11(runFor, 60, 10)
	var (
		res    *loadtest.Result
		runErr error
		wg     sync.WaitGroup
	)
	started := time.Now()
	wg.Add(1)
	go func() {
		defer wg.Done()
		res, runErr = loadtest.Run(ctx, loadtest.Config{
			Target: c.URL, Profile: profile, Mix: loadtest.DefaultMix(), Customers: customers, Merchants: merchants,
			Tokens: tokens, Seed: 16, RunID: "scaler", RequestTimeout: 10 * time.Second,
		})
	}()
	sleepCtx(ctx, t, time.Second)

	scaleOut := time.Now()
	for range 3 {
		p, err := c.AddOwner(ctx)
		if err != nil {
			t.Fatal(err)
		}
		gaps.add(p)
		all = append(all, p)
	}
	balanced(ctx, t, c, "owners 3 -> 6", scaleOut)
	added := len(c.Gateways)
	for range 2 {
		p, err := c.AddGateway(ctx)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, p)
	}
	t.Logf("gateways 2 -> 4 (%s after the load began): %v", time.Since(started).Round(10*time.Millisecond), names(c.Gateways))

	// Back after the peak (60 % of the run), so the new gateways see some
	// of it.
	sleepCtx(ctx, t, time.Until(started.Add(runFor*62/100)))
	served := c.Front.Served()
	t.Logf("front served before the scale-back %v", served)
	for i := added; i < len(served); i++ {
		if served[i] == 0 {
			t.Errorf("added %s was sent nothing by the front", c.Gateways[i].Name)
		}
	}
	scaleBack := time.Now()
	for range 3 {
		if _, err := c.RemoveOwner(ctx); err != nil {
			t.Fatal(err)
		}
	}
	balanced(ctx, t, c, "owners 6 -> 3", scaleBack)
	for range 2 {
		if _, err := c.RemoveGateway(ctx); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("gateways 4 -> 2 (%s after the load began): %v; front served %v", time.Since(started).Round(10*time.Millisecond),
		names(c.Gateways), c.Front.Served())
	if time.Since(started) > runFor {
		t.Errorf("the scale-back ended %s after the load began, after the load (%s): it did not run under load",
			time.Since(started).Round(10*time.Millisecond), runFor)
	}

	wg.Wait()
	longest := gaps.stop()
	if runErr != nil {
		t.Fatal(runErr)
	}
	o := res.Orders
	t.Logf("orders: sent %d, accepted %d, rejected %d, shed %d, failed %d, dropped %d; transfers answered %v; restarts %v",
		o.Sent, o.Accepted, o.Rejected, o.Shed, o.Failed, o.Dropped, transferStatuses(res.Records), c.Restarts())
	for _, op := range loadtest.Ops {
		if r, ok := res.ByOp[op]; ok {
			t.Logf("  %-15s sent %4d, accepted %4d, rejected %4d (%v), failed %d", op, r.Sent, r.Accepted, r.Rejected, r.RefusedBy, r.Failed)
		}
	}
	t.Logf("longest time a shard had no live owner while scaling: %s (shard %d; lease TTL %s)",
		longest.gap.Round(time.Millisecond), longest.shard, c.LeaseTTL)
	if o.Accepted == 0 || o.Failed+o.Shed+o.Dropped > 0 {
		unanswered := map[string]int{}
		for _, r := range res.Records {
			if r.Outcome != loadtest.Accepted && r.Outcome != loadtest.Rejected {
				unanswered[string(r.Op)+" "+string(r.Outcome)+" "+r.Code+" "+r.Reason]++
			}
		}
		t.Errorf("%d accepted, %d failed, %d shed, %d dropped; want every order answered: %v", o.Accepted, o.Failed,
			o.Shed, o.Dropped, unanswered)
	}
	// A move that waited for a lease to expire leaves its shard unowned for
	// the TTL; a hand-off takes tens of milliseconds, up to ~2 s on a CI
	// machine running other packages under the race detector.
	if longest.gap >= c.LeaseTTL/2 {
		t.Errorf("shard %d had no live owner for %s: a move waited (lease TTL %s)", longest.shard, longest.gap, c.LeaseTTL)
	}
	if n := len(c.Restarts()); n > 0 {
		t.Errorf("the supervisor restarted %v: a removed process is not to come back, and nothing else crashed", c.Restarts())
	}

	mustAuditClean(ctx, t, c, res.Records)
}

// balanced waits until the shards are spread evenly over the owners and
// logs the owner map.
func balanced(ctx context.Context, t *testing.T, c *local.Cluster, what string, since time.Time) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.WaitBalanced(wctx); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	owners, err := c.ShardOwners(ctx)
	if err != nil {
		t.Fatal(err)
	}
	counts, _, err := c.OwnerCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: spread evenly %s after the change began: %s; shards by owner %v", what,
		time.Since(since).Round(10*time.Millisecond), ownerMap(owners), counts)
}

func names(ps []*local.Process) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Name
	}
	return out
}

func sleepCtx(ctx context.Context, t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-time.After(d):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
}

// gapWatch polls the leases and keeps, for every shard, the longest time
// it had no live owner (a lease released and not yet taken, or expired),
// or a live lease of an owner process that is not running (one stopped
// without releasing it: its shard waits for the lease to expire).
type gapWatch struct {
	cancel context.CancelFunc
	done   chan shardGap
	procs  sync.Map // owner name: *local.Process
}

// add makes the watch know owner process p.
func (w *gapWatch) add(p *local.Process) { w.procs.Store(p.Name, p) }

// served reports whether the lease's owner is a running process.
func (w *gapWatch) served(owner string) bool {
	p, ok := w.procs.Load(owner)
	return ok && p.(*local.Process).Running()
}

type shardGap struct {
	shard int
	gap   time.Duration
}

func watchGaps(ctx context.Context, c *local.Cluster, every time.Duration) *gapWatch {
	ctx, cancel := context.WithCancel(ctx)
	w := &gapWatch{cancel: cancel, done: make(chan shardGap, 1)}
	for _, p := range c.Owners {
		w.add(p)
	}
	go func() {
		var longest shardGap
		since := map[int]time.Time{} // shard: first poll that saw it unowned
		for ctx.Err() == nil {
			owners, err := c.ShardOwners(ctx)
			now := time.Now()
			if err == nil {
				for _, o := range owners {
					start, open := since[o.Shard]
					live := w.served(o.Owner)
					switch {
					case !live && !open:
						since[o.Shard] = now
					case live && open:
						if g := now.Sub(start); g > longest.gap {
							longest = shardGap{o.Shard, g}
						}
						delete(since, o.Shard)
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(every):
			}
		}
		for s, start := range since { // still unowned at the end
			if g := time.Since(start); g > longest.gap {
				longest = shardGap{s, g}
			}
		}
		w.done <- longest
	}()
	return w
}

// stop ends the watch and returns the longest gap seen.
func (w *gapWatch) stop() shardGap {
	w.cancel()
	return <-w.done
}
