package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fundplatform/fund/internal/testseed"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/postgres"
)

// cluster is in-process ledger hosts on one database, with what a routing
// client does in front of them: each request goes to whichever host serves
// its shard now, and is tried again (with the same transfer id) while the
// shard is moving. It records every pause of a shard (no host serving it)
// and every warning the hosts log.
type cluster struct {
	t      *testing.T
	store  *postgres.Store
	shards int
	ttl    time.Duration
	warns  *warnCounter

	mu      sync.Mutex
	hosts   map[string]*runningHost
	handOff []time.Duration // the holders' part of each hand-off: request noticed to lease released
}

type runningHost struct {
	h    *ledger.Host
	stop context.CancelFunc
	done chan error
}

// warnCounter is a slog handler that counts WARN and ERROR records (and
// keeps their text): a clean hand-off logs neither.
type warnCounter struct {
	mu    sync.Mutex
	lines []string
}

func (w *warnCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnCounter) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
	w.lines = append(w.lines, b.String())
	return nil
}
func (w *warnCounter) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnCounter) WithGroup(string) slog.Handler      { return w }

func newCluster(t *testing.T, shards int, ttl time.Duration) *cluster {
	return &cluster{t: t, store: openStore(t), shards: shards, ttl: ttl, warns: &warnCounter{}, hosts: map[string]*runningHost{}}
}

func (c *cluster) start(name string) {
	h := ledger.NewHost(ledger.HostConfig{Owner: name, Address: name + ":7000", Shards: c.shards, LeaseTTL: c.ttl,
		OnHandOff: func(shard int, to string, took time.Duration) {
			c.mu.Lock()
			c.handOff = append(c.handOff, took)
			c.mu.Unlock()
		}}, c.store, c.store, slog.New(c.warns))
	ctx, stop := context.WithCancel(context.Background())
	r := &runningHost{h: h, stop: stop, done: make(chan error, 1)}
	go func() { r.done <- h.Run(ctx) }()
	c.mu.Lock()
	c.hosts[name] = r
	c.mu.Unlock()
}

// stop stops a host cleanly, as a scale-in does (SIGTERM).
func (c *cluster) stop(name string) {
	c.mu.Lock()
	r := c.hosts[name]
	delete(c.hosts, name)
	c.mu.Unlock()
	r.stop()
	if err := <-r.done; err != nil {
		c.t.Errorf("host %s: %v", name, err)
	}
}

func (c *cluster) stopAll() {
	c.mu.Lock()
	var names []string
	for n := range c.hosts {
		names = append(names, n)
	}
	c.mu.Unlock()
	for _, n := range names {
		c.stop(n)
	}
}

// client returns the shard's server now, if any host serves it.
func (c *cluster) client(shard int) (ledger.Client, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.hosts {
		if cl, ok := r.h.Client(shard); ok {
			return cl, true
		}
	}
	return nil, false
}

// ownerMap says which host serves each shard, and how many each serves.
func (c *cluster) ownerMap() (byHost map[string][]int, unserved []int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	byHost = map[string][]int{}
	for n := range c.hosts {
		byHost[n] = nil
	}
	for s := 0; s < c.shards; s++ {
		served := false
		for n, r := range c.hosts {
			if _, ok := r.h.Client(s); ok {
				byHost[n] = append(byHost[n], s)
				served = true
			}
		}
		if !served {
			unserved = append(unserved, s)
		}
	}
	return byHost, unserved
}

func formatMap(byHost map[string][]int) string {
	var names []string
	for n := range byHost {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		s := byHost[n]
		sort.Ints(s)
		fmt.Fprintf(&b, "%s:%v(%d) ", n, s, len(s))
	}
	return strings.TrimSpace(b.String())
}

// waitEven waits until every shard is served, by exactly one host, and the
// hosts' counts differ by at most one, then returns the map.
func (c *cluster) waitEven(within time.Duration) string {
	c.t.Helper()
	end := time.Now().Add(within)
	for {
		byHost, unserved := c.ownerMap()
		lo, hi, total := c.shards, 0, 0
		for _, s := range byHost {
			lo, hi, total = min(lo, len(s)), max(hi, len(s)), total+len(s)
		}
		if len(unserved) == 0 && total == c.shards && hi-lo <= 1 {
			return formatMap(byHost)
		}
		if time.Now().After(end) {
			c.t.Fatalf("not spread evenly after %s: %s, unserved %v", within, formatMap(byHost), unserved)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// load sends transfers on every shard from workers through the cluster,
// each tried again while its shard moves (up to retryFor, as a request's
// deadline), and watches every shard for pauses.
type load struct {
	c                      *cluster
	stopped                atomic.Bool
	wg                     sync.WaitGroup
	acked, retried, failed atomic.Int64
	fenced, commitFailed   atomic.Int64
	mu                     sync.Mutex
	errs                   []error
	pauses                 []time.Duration // every interval a shard was served by nobody
	pauseMax               time.Duration
	accounts               [][2]ledger.AccountID
	ids                    []ledger.TransferID
}

const retryFor = 10 * time.Second

func (c *cluster) startLoad(seed uint64, workers int) *load {
	l := &load{c: c}
	ctx := context.Background()
	for s := 0; s < c.shards; s++ {
		a := [2]ledger.AccountID{accountOn(s, c.shards, 1), accountOn(s, c.shards, 2)}
		l.accounts = append(l.accounts, a)
		if err := l.send(ctx, s, func(cl ledger.Client) error {
			rs, err := cl.CreateAccounts(ctx, []ledger.Account{{ID: a[0], Asset: ledger.AssetCNY}, {ID: a[1], Asset: ledger.AssetCNY}})
			if err == nil && !rs[0].Result.Applied() && rs[0].Result != ledger.ResultExists {
				return fmt.Errorf("create accounts: %v", rs)
			}
			return err
		}); err != nil {
			c.t.Fatal(err)
		}
	}
	for w := 0; w < workers; w++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for !l.stopped.Load() {
				s := rng.IntN(c.shards)
				tr := ledger.Transfer{ID: ledger.NewTransferID(), DebitAccountID: l.accounts[s][0], CreditAccountID: l.accounts[s][1],
					Amount: 1 + rng.Int64N(100), Asset: ledger.AssetCNY, Kind: 1}
				attempts := 0
				err := l.send(ctx, s, func(cl ledger.Client) error {
					attempts++
					rs, err := cl.CreateTransfers(ctx, []ledger.Transfer{tr})
					if err != nil {
						return err
					}
					if r := rs[0].Result; !(r.Applied() || attempts > 1 && r == ledger.ResultExists) {
						return fmt.Errorf("transfer refused: %s", r)
					}
					return nil
				})
				l.mu.Lock()
				if err != nil {
					l.failed.Add(1)
					l.errs = append(l.errs, err)
				} else {
					l.acked.Add(1)
					l.ids = append(l.ids, tr.ID)
				}
				l.mu.Unlock()
			}
		}()
	}
	l.wg.Add(1)
	go func() { defer l.wg.Done(); l.watchPauses() }()
	return l
}

// send runs fn on the shard's current server, again while the shard is
// between owners, for at most retryFor: on no server, "not owner", the
// sequencer closing, or a batch that failed before its commit (a
// sequencer stopped for a hand-off cancels the id lookup of the batch it
// was collecting) — none of which applied anything, and all of which the
// gRPC routing client retries too (ledger/grpc's error table).
func (l *load) send(ctx context.Context, shard int, fn func(ledger.Client) error) error {
	start := time.Now()
	for try := 0; ; try++ {
		if try == 1 {
			l.retried.Add(1)
		}
		err := ledger.ErrNotOwner
		if cl, ok := l.c.client(shard); ok {
			err = fn(cl)
		}
		if err == nil {
			return nil
		}
		if errors.Is(err, ledger.ErrFenced) {
			l.fenced.Add(1) // a live commit was fenced: what a hand-off must never do
		}
		if errors.Is(err, ledger.ErrCommitFailed) {
			l.commitFailed.Add(1)
		}
		if !errors.Is(err, ledger.ErrNotOwner) && !errors.Is(err, ledger.ErrClosed) && !errors.Is(err, ledger.ErrCommitFailed) ||
			time.Since(start) > retryFor {
			return fmt.Errorf("shard %d: %w", shard, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// watchPauses samples every millisecond which shards nobody serves.
func (l *load) watchPauses() {
	since := make([]time.Time, l.c.shards)
	for !l.stopped.Load() {
		for s := range since {
			_, ok := l.c.client(s)
			switch {
			case !ok && since[s].IsZero():
				since[s] = time.Now()
			case ok && !since[s].IsZero():
				p := time.Since(since[s])
				since[s] = time.Time{}
				l.mu.Lock()
				l.pauses = append(l.pauses, p)
				l.pauseMax = max(l.pauseMax, p)
				l.mu.Unlock()
			}
		}
		time.Sleep(time.Millisecond)
	}
}

func (l *load) stop() {
	l.stopped.Store(true)
	l.wg.Wait()
}

// check fails the test on any failed request, fenced commit or warning,
// and on a pause as long as the lease TTL (a move that waited for a lease
// to expire); it logs the pauses.
func (l *load) check(t *testing.T) {
	t.Helper()
	c := l.c
	sort.Slice(l.pauses, func(i, j int) bool { return l.pauses[i] < l.pauses[j] })
	t.Logf("requests: %d acknowledged, %d waited for their shard's move (%d attempts answered commit-failed), %d failed, %d fenced attempts",
		l.acked.Load(), l.retried.Load(), l.commitFailed.Load(), l.failed.Load(), l.fenced.Load())
	if n := len(l.pauses); n > 0 {
		t.Logf("%d pauses (a shard served by no host): median %s, max %s", n, l.pauses[n/2].Round(time.Millisecond),
			l.pauseMax.Round(time.Millisecond))
	}
	c.mu.Lock()
	ho := slices.Clone(c.handOff)
	c.mu.Unlock()
	if len(ho) > 0 {
		slices.Sort(ho)
		t.Logf("%d hand-offs, holder's part (request noticed to lease released): median %s, max %s",
			len(ho), ho[len(ho)/2].Round(time.Microsecond), ho[len(ho)-1].Round(time.Microsecond))
	}
	if l.failed.Load() > 0 {
		t.Errorf("%d requests failed, first: %v", l.failed.Load(), l.errs[0])
	}
	if l.fenced.Load() > 0 {
		t.Errorf("%d attempts were fenced", l.fenced.Load())
	}
	if l.pauseMax >= c.ttl {
		t.Errorf("a shard paused %s, as long as the lease TTL %s: a move waited for a lease to expire", l.pauseMax, c.ttl)
	}
	c.warns.mu.Lock()
	defer c.warns.mu.Unlock()
	if len(c.warns.lines) > 0 {
		t.Errorf("%d warnings logged, first: %s", len(c.warns.lines), c.warns.lines[0])
	}
}

// verify checks that every acknowledged transfer is in the journal once
// and that every shard's balances agree with it.
func (l *load) verify(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	for s := 0; s < l.c.shards; s++ {
		rep, err := l.c.store.Verify(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK() {
			t.Fatalf("shard %d: %d differences, problems %q", s, len(rep.Differences), rep.Problems)
		}
	}
	var n int
	if err := l.c.store.Pool().QueryRow(ctx, `SELECT count(*) FROM transfers WHERE kind = 1`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(l.ids) {
		t.Fatalf("journal holds %d transfers, %d were acknowledged", n, len(l.ids))
	}
}

// Ledger hosts scale 3 -> 6 -> 3 while requests flow: after each change
// the shards are spread evenly (counts differ by at most one), every move
// is a hand-off or a clean stop's release (no shard waits for a lease to
// expire: every pause is far shorter than the TTL), no request fails and
// no commit is fenced, and the journal holds each acknowledged transfer
// once.
func TestHostsRebalanceUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("runs six hosts under load")
	}
	t.Parallel()
	const shards, ttl = 8, 3 * time.Second
	c := newCluster(t, shards, ttl)
	defer c.stopAll()
	for _, n := range []string{"a", "b", "c"} {
		c.start(n)
	}
	t.Logf("3 hosts: %s", c.waitEven(30*time.Second))
	l := c.startLoad(testseed.Seed(t), 4)
	time.Sleep(500 * time.Millisecond)

	start := time.Now()
	for _, n := range []string{"d", "e", "f"} {
		c.start(n)
	}
	m := c.waitEven(30 * time.Second)
	t.Logf("6 hosts, spread after %s: %s", time.Since(start).Round(time.Millisecond), m)
	time.Sleep(time.Second)

	start = time.Now()
	for _, n := range []string{"d", "e", "f"} {
		c.stop(n)
	}
	m = c.waitEven(30 * time.Second)
	t.Logf("3 hosts again, spread after %s: %s", time.Since(start).Round(time.Millisecond), m)
	time.Sleep(500 * time.Millisecond)
	l.stop()
	l.check(t)
	c.stopAll()
	l.verify(t)
}

// A settlement-like party takes each shard in turn by a hand-off while
// requests flow, holds it for a step, and releases it: the host hands it
// over without a fenced commit, takes it back at once, and no request
// fails; each shard's pause is the hand-off, the step and the take-back.
func TestHostHandsOffToSettlementUnderLoad(t *testing.T) {
	t.Parallel()
	const shards, ttl = 4, 3 * time.Second
	c := newCluster(t, shards, ttl)
	defer c.stopAll()
	c.start("a")
	c.start("b")
	t.Logf("hosts: %s", c.waitEven(30*time.Second))
	l := c.startLoad(testseed.Seed(t), 4)
	ctx := context.Background()
	const step = 50 * time.Millisecond
	for round := 0; round < 2; round++ {
		for s := 0; s < shards; s++ {
			t0 := time.Now()
			epoch, from, ok, err := c.store.HandOffLease(ctx, s, "settle", time.Minute, 2*ttl)
			if err != nil || !ok || from == "" {
				t.Fatalf("shard %d: hand-off from %q: %v %v", s, from, ok, err)
			}
			took := time.Since(t0)
			time.Sleep(step) // the step's transaction
			if err := c.store.ReleaseLease(ctx, s, "settle", epoch); err != nil {
				t.Fatal(err)
			}
			t.Logf("shard %d handed off by %s in %s", s, from, took.Round(time.Millisecond))
		}
	}
	t.Logf("hosts after: %s", c.waitEven(10*time.Second))
	time.Sleep(200 * time.Millisecond)
	l.stop()
	l.check(t)
	c.stopAll()
	l.verify(t)
}
