package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fundplatform/fund/accounts"
	accountspg "github.com/fundplatform/fund/accounts/postgres"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/internal/testseed"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/ledgertest"
	"github.com/fundplatform/fund/settlement"
	settlepg "github.com/fundplatform/fund/settlement/postgres"
	"github.com/fundplatform/fund/settlement/schema"
)

// hostedWorld is the platform over one database with its ledger shards
// served by two ledger hosts (leases, hand-offs), the accounts service
// reaching them the way the routing client does (each call sent to the
// host serving the shard now, tried again while the shard moves), and the
// settlement runner, which takes each shard from its host by a hand-off.
type hostedWorld struct {
	t      *testing.T
	shards int
	clock  *clock
	store  *settlepg.Store
	acc    *accountspg.Store
	hosts  *hostRoutes
	svc    *accounts.Service
	runner *settlement.Runner
	dir    string
	logs   *records
	stops  []func()
}

// records keeps the log records of the hosts and the runner.
type records struct {
	mu    sync.Mutex
	lines []string
	held  []time.Duration // each step's hold of a shard (settlement step held a shard: held)
	hand  []time.Duration // its hand-off part
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rec.Level >= slog.LevelWarn {
		var b strings.Builder
		b.WriteString(rec.Level.String() + " " + rec.Message)
		rec.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
		r.lines = append(r.lines, b.String())
	}
	if rec.Message == "settlement step held a shard" {
		rec.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "held":
				r.held = append(r.held, a.Value.Duration())
			case "hand_off":
				r.hand = append(r.hand, a.Value.Duration())
			}
			return true
		})
	}
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

func newHostedWorld(t *testing.T, shards int, clk *clock) *hostedWorld {
	t.Helper()
	ctx := context.Background()
	roles := pgtest.NewDatabaseWithRoles(t)
	if err := schema.Migrate(ctx, schema.Config{DSNs: []string{roles.Owner}, ServiceRole: roles.ServiceRole}); err != nil {
		t.Fatal(err)
	}
	w := &hostedWorld{t: t, shards: shards, clock: clk, dir: t.TempDir(), logs: &records{}, hosts: &hostRoutes{}}
	var err error
	if w.store, err = settlepg.Open(ctx, settlepg.Config{DSN: roles.Service}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.store.Close)
	if w.acc, err = accountspg.Open(ctx, accountspg.Config{DSN: roles.Service, ConnsMax: 4}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.acc.Close)
	logger := slog.New(w.logs)
	for _, name := range []string{"a", "b"} {
		h := ledger.NewHost(ledger.HostConfig{Owner: name, Address: name + ":7000", Shards: shards, LeaseTTL: 2 * time.Second,
			Sequencer: ledger.SequencerConfig{}}, w.store.Ledger(), w.store.Ledger(), logger)
		hctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- h.Run(hctx) }()
		w.hosts.hosts = append(w.hosts.hosts, h)
		w.stops = append(w.stops, func() {
			stop()
			if err := <-done; err != nil {
				t.Errorf("host %s: %v", name, err)
			}
		})
	}
	t.Cleanup(w.stopHosts)
	w.waitServed()
	cfg := accounts.Config{Now: clk.Now, Shards: shards, ShardClient: func(s int) ledger.Client { return shardRoute{w.hosts, s} }}
	// Each call to the shard its accounts live on, there to its host now.
	lc := ledgertest.NewRoutes(shards, func(s int) ledger.Client { return shardRoute{w.hosts, s} })
	if w.svc, err = accounts.NewService(ctx, cfg, w.acc, lc, nil); err != nil {
		t.Fatal(err)
	}
	w.runner = settlement.NewRunner(settlement.Config{Shards: shards, FileDir: w.dir, Now: clk.Now, Owner: "settle-handoff"},
		w.store, w.svc, nil, logger)
	return w
}

func (w *hostedWorld) stopHosts() {
	for _, stop := range w.stops {
		stop()
	}
	w.stops = nil
}

// waitServed waits until every shard is served by one of the hosts.
func (w *hostedWorld) waitServed() {
	w.t.Helper()
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		served := 0
		for s := range w.shards {
			if _, ok := w.hosts.client(s); ok {
				served++
			}
		}
		if served == w.shards {
			return
		}
		if time.Now().After(end) {
			w.t.Fatalf("%d of %d shards served", served, w.shards)
		}
	}
}

// hostRoutes reaches the shards the hosts serve: shardRoute{r, s} sends
// each call to the host serving shard s now, and tries it again (with the
// same ids, so at most once) while the shard moves: no server, "not owner",
// a closing sequencer, a batch failed before its commit, or fenced
// (counted: a hand-off must never fence), as the routing client does
// (ledger/grpc), for at most routeRetryFor.
type hostRoutes struct {
	hosts           []*ledger.Host
	retried, fenced atomic.Int64
}

const routeRetryFor = 10 * time.Second

func (r *hostRoutes) client(shard int) (ledger.Client, bool) {
	for _, h := range r.hosts {
		if c, ok := h.Client(shard); ok {
			return c, true
		}
	}
	return nil, false
}

func (r *hostRoutes) do(ctx context.Context, shard int, fn func(ledger.Client) error) error {
	start := time.Now()
	for try := 0; ; try++ {
		err := ledger.ErrNoOwner
		if c, ok := r.client(shard); ok {
			err = fn(c)
		}
		if err == nil {
			return nil
		}
		if errors.Is(err, ledger.ErrFenced) {
			r.fenced.Add(1)
		}
		moving := errors.Is(err, ledger.ErrNoOwner) || errors.Is(err, ledger.ErrNotOwner) || errors.Is(err, ledger.ErrClosed) ||
			errors.Is(err, ledger.ErrCommitFailed) || errors.Is(err, ledger.ErrFenced)
		if !moving || time.Since(start) > routeRetryFor {
			return err
		}
		if try == 0 {
			r.retried.Add(1)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// shardRoute is a ledger.Client of one shard over hostRoutes.
type shardRoute struct {
	r     *hostRoutes
	shard int
}

func (c shardRoute) CreateAccounts(ctx context.Context, as []ledger.Account) (out []ledger.AccountResult, err error) {
	err = c.r.do(ctx, c.shard, func(cl ledger.Client) (err error) { out, err = cl.CreateAccounts(ctx, as); return err })
	return out, err
}

func (c shardRoute) CreateTransfers(ctx context.Context, ts []ledger.Transfer) (out []ledger.TransferResult, err error) {
	err = c.r.do(ctx, c.shard, func(cl ledger.Client) (err error) { out, err = cl.CreateTransfers(ctx, ts); return err })
	return out, err
}

func (c shardRoute) CloseAccounts(ctx context.Context, ids []ledger.AccountID) (out []ledger.AccountResult, err error) {
	err = c.r.do(ctx, c.shard, func(cl ledger.Client) (err error) { out, err = cl.CloseAccounts(ctx, ids); return err })
	return out, err
}

func (c shardRoute) LookupAccounts(ctx context.Context, ids []ledger.AccountID) (out []ledger.Account, err error) {
	err = c.r.do(ctx, c.shard, func(cl ledger.Client) (err error) { out, err = cl.LookupAccounts(ctx, ids); return err })
	return out, err
}

// place opens customers and gives them confirmed-to-be shares: the same
// orders, in the same order, in every world of the test.
func (w *hostedWorld) place(seed uint64, customers int) []accounts.CustomerID {
	w.t.Helper()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 1))
	var ids []accounts.CustomerID
	for i := range customers {
		c, err := w.svc.OpenCustomer(ctx, fmt.Sprintf("open-%d", i), fmt.Sprintf("c%d", i))
		if err != nil {
			w.t.Fatal(err)
		}
		ids = append(ids, c.ID)
		top := 1000_00 + rng.Int64N(100_000_00)
		if _, err := w.svc.TopUp(ctx, c.ID, fmt.Sprintf("top-%d", i), top); err != nil {
			w.t.Fatal(err)
		}
		if _, err := w.svc.Subscribe(ctx, c.ID, fmt.Sprintf("sub-%d", i), 1+rng.Int64N(top)); err != nil {
			w.t.Fatal(err)
		}
	}
	return ids
}

// A nightly settlement while orders flow: the run takes each shard from
// its host by a hand-off, step by step, and gives it back at once. No
// order fails (the moves show as latency), no commit is fenced, no host
// or run logs a warning, every shard's journal agrees with its balances,
// and the night's result (summary, custodian file digest) is the one of
// the same night settled with no load.
func TestSettlementUnderLoadByHandOff(t *testing.T) {
	if testing.Short() {
		t.Skip("settles under load")
	}
	t.Parallel()
	const shards, customers, workers = 4, 24, 4
	seed := testseed.Seed(t)
	ctx := context.Background()
	night := func(load bool) (settlement.Summary, *hostedWorld, *loadResult) {
		clk := &clock{}
		clk.Set(cst("2026-11-17 10:00:00"))
		w := newHostedWorld(t, shards, clk)
		ids := w.place(seed, customers)
		clk.Set(cst("2026-11-18 23:00:00"))
		var lr *loadResult
		if load {
			lr = w.startOrders(seed, ids, workers)
			time.Sleep(300 * time.Millisecond)
		}
		sum, err := w.runner.Run(ctx, total("2026-11-18", 1234_56), nil)
		if err != nil {
			t.Fatal(err)
		}
		if lr != nil {
			time.Sleep(300 * time.Millisecond)
			lr.stop()
		}
		return sum, w, lr
	}
	quiet, _, _ := night(false)
	loaded, w, lr := night(true)

	t.Logf("orders during the run: %d acknowledged, %d refused by a business rule, %d failed; %d calls waited for a shard's move, %d fenced attempts",
		lr.acked.Load(), lr.refused.Load(), lr.failed.Load(), w.hosts.retried.Load(), w.hosts.fenced.Load())
	w.logs.mu.Lock()
	held, hand := append([]time.Duration(nil), w.logs.held...), append([]time.Duration(nil), w.logs.hand...)
	warns := append([]string(nil), w.logs.lines...)
	w.logs.mu.Unlock()
	sort.Slice(held, func(i, j int) bool { return held[i] < held[j] })
	sort.Slice(hand, func(i, j int) bool { return hand[i] < hand[j] })
	if len(held) > 0 {
		t.Logf("%d shard holds (4 steps x %d shards): hold median %s max %s; hand-off part median %s max %s",
			len(held), shards, held[len(held)/2].Round(time.Millisecond), held[len(held)-1].Round(time.Millisecond),
			hand[len(hand)/2].Round(time.Millisecond), hand[len(hand)-1].Round(time.Millisecond))
	}
	if lr.failed.Load() > 0 {
		t.Errorf("%d orders failed, first: %v", lr.failed.Load(), lr.firstErr())
	}
	if lr.acked.Load() == 0 {
		t.Error("no order went through during the run")
	}
	if w.hosts.fenced.Load() > 0 {
		t.Errorf("%d calls were fenced", w.hosts.fenced.Load())
	}
	if len(warns) > 0 {
		t.Errorf("%d warnings, first: %s", len(warns), warns[0])
	}
	if len(held) != 4*shards {
		t.Errorf("%d shard holds logged, want %d (close, orders, snapshot, income per shard)", len(held), 4*shards)
	}
	if layoutFree(loaded) != layoutFree(quiet) {
		t.Errorf("the night under load differs:\n%+v\nwithout load:\n%+v", layoutFree(loaded), layoutFree(quiet))
	}
	w.stopHosts()
	for s := range shards {
		rep, err := w.store.Ledger().Verify(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK() {
			t.Fatalf("shard %d: %d differences, problems %q", s, len(rep.Differences), rep.Problems)
		}
	}
}

// loadResult counts the orders a load sent.
type loadResult struct {
	stopped        atomic.Bool
	wg             sync.WaitGroup
	acked, refused atomic.Int64 // refused: by a business rule (insufficient funds), an answer too
	failed         atomic.Int64
	mu             sync.Mutex
	errs           []error
}

func (l *loadResult) stop() { l.stopped.Store(true); l.wg.Wait() }

func (l *loadResult) firstErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) == 0 {
		return nil
	}
	return l.errs[0]
}

// startOrders sends top-ups and subscriptions for the customers until
// stopped: orders of the next business day, which the night must not see.
func (w *hostedWorld) startOrders(seed uint64, ids []accounts.CustomerID, workers int) *loadResult {
	l := &loadResult{}
	ctx := context.Background()
	for wk := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(100+wk)))
			for n := 0; !l.stopped.Load(); n++ {
				c := ids[rng.IntN(len(ids))]
				key := fmt.Sprintf("load-%d-%d", wk, n)
				var err error
				if rng.IntN(2) == 0 {
					_, err = w.svc.TopUp(ctx, c, key, 1+rng.Int64N(100_00))
				} else {
					_, err = w.svc.Subscribe(ctx, c, key, 1+rng.Int64N(10_00))
				}
				switch {
				case err == nil:
					l.acked.Add(1)
				case errors.Is(err, accounts.ErrInsufficientFunds):
					l.refused.Add(1)
				default:
					l.failed.Add(1)
					l.mu.Lock()
					l.errs = append(l.errs, err)
					l.mu.Unlock()
				}
			}
		}()
	}
	return l
}
