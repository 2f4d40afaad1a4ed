package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/accounts/postgres"
	"github.com/fundplatform/fund/internal/testseed"
)

// These tests drive the store directly, with apply callbacks the test
// holds, and a second Store on the same database standing in for a second
// process: its own pool and its own order writers. They hold whatever the
// store does to keep one key to one placement and to make status changes
// wait for orders in flight (row locks once, advisory locks now).

// waitTimeout bounds every wait below; reaching it fails the test rather
// than hanging it. It is not a timing assertion: every wait ends as soon as
// the condition holds.
const waitTimeout = 30 * time.Second

// openSecondStore opens another Store (another pool, other order writers)
// on the test's database.
func openSecondStore(t *testing.T, e *env) *postgres.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	st, err := postgres.Open(ctx, postgres.Config{DSN: e.dsn, ConnsMax: 4})
	if err != nil {
		t.Fatalf("open second store: %v", err)
	}
	t.Cleanup(st.Close)
	return st
}

// waitForLockWaiters waits until n sessions on the test's database wait for
// a heavyweight lock (a row's, a transaction's or an advisory one).
func waitForLockWaiters(t *testing.T, e *env, n int) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		var got int
		if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&got); err != nil {
			t.Fatalf("read lock waiters: %v", err)
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions wait for a lock after %v, want %d", got, waitTimeout, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type placed struct {
	o       accounts.Order
	existed bool
	err     error
}

// place places a subscription of c with request id req through st; apply
// runs the callback (or fails the test when nil, as an apply that must not
// run).
func place(t *testing.T, st *postgres.Store, c accounts.CustomerID, req string, parties []accounts.CustomerID,
	apply func(*accounts.Order, []accounts.Customer) error) placed {
	now := time.Now().UTC().Truncate(time.Microsecond)
	o := &accounts.Order{CustomerID: c, RequestID: req, Kind: accounts.KindSubscribe, Amount: yuan,
		TradeDate: day("2026-11-18"), ConfirmDate: day("2026-11-19"), CreatedAt: now}
	if parties == nil {
		parties = []accounts.CustomerID{c}
	}
	var p placed
	p.o, p.existed, p.err = st.PlaceOrder(context.Background(), o, parties, func(_ context.Context, ps []accounts.Customer) error {
		if apply == nil {
			t.Errorf("order %d/%s applied twice", c, req)
			return errors.New("applied twice")
		}
		return apply(o, ps)
	})
	return p
}

// gate is an apply callback that says when it started and finishes when
// opened. A failing test opens it too (Cleanup), or closing the store would
// wait for the apply forever.
type gate struct {
	entered, release chan struct{}
	once             sync.Once
	status           accounts.Status // the first party's, as apply saw it
}

func newGate(t *testing.T) *gate {
	g := &gate{entered: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(g.open)
	return g
}

func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

func (g *gate) apply(o *accounts.Order, ps []accounts.Customer) error {
	g.status = ps[0].Status
	close(g.entered)
	<-g.release
	o.Status = accounts.OrderPending
	return nil
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitTimeout):
		t.Fatalf("%s: not within %v", what, waitTimeout)
	}
}

// TestSameKeyTwoStores places one key through two stores (two processes)
// while the first is in its apply: the second waits for the first's
// commit, does not apply, and answers the first's order as existing.
func TestSameKeyTwoStores(t *testing.T) {
	t.Parallel()
	e := newEnv(t, accounts.Config{})
	b := openSecondStore(t, e)
	c := e.open("Quinn")

	g := newGate(t)
	first := make(chan placed, 1)
	go func() { first <- place(t, e.store, c, "k1", nil, g.apply) }()
	waitClosed(t, g.entered, "first apply")

	second := make(chan placed, 1)
	go func() { second <- place(t, b, c, "k1", nil, nil) }()
	waitForLockWaiters(t, e, 1)
	select {
	case p := <-second:
		t.Fatalf("second placement answered while the first was applying: %+v", p)
	default:
	}
	g.open()
	p1, p2 := <-first, <-second
	if p1.err != nil || p1.existed || p1.o.Status != accounts.OrderPending || p1.o.ID == 0 {
		t.Fatalf("first: %+v", p1)
	}
	if p2.err != nil || !p2.existed || p2.o != p1.o {
		t.Fatalf("second: %+v, first %+v", p2, p1)
	}
	// And a retry through either store later reads it.
	for _, st := range []*postgres.Store{e.store, b} {
		if p := place(t, st, c, "k1", nil, nil); p.err != nil || !p.existed || p.o != p1.o {
			t.Fatalf("retry: %+v", p)
		}
	}
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM orders WHERE customer_id = $1`, c).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d order rows, %v", n, err)
	}
}

// TestStatusChangeWaitsForOrders: a freeze (through another store) issued
// while an order of the customer, or a transfer to it, is in its apply
// waits for that order's commit; an order placed while a status change is
// in progress waits for it and sees the new status.
func TestStatusChangeWaitsForOrders(t *testing.T) {
	t.Parallel()
	e := newEnv(t, accounts.Config{})
	b := openSecondStore(t, e)
	ctx := context.Background()
	payer, payee := e.open("Rita"), e.open("Sam")
	freeze := func(st *postgres.Store, c accounts.CustomerID, to accounts.Status) error {
		_, err := st.UpdateCustomer(ctx, c, func(_ context.Context, cu *accounts.Customer) error {
			cu.Status = to
			return nil
		})
		return err
	}

	for round, target := range []accounts.CustomerID{payer, payee} {
		g := newGate(t)
		order := make(chan placed, 1)
		go func() {
			order <- place(t, e.store, payer, fmt.Sprintf("r%d", round), []accounts.CustomerID{payer, payee}, g.apply)
		}()
		waitClosed(t, g.entered, "apply")
		frozen := make(chan error, 1)
		go func() { frozen <- freeze(b, target, accounts.StatusFrozen) }()
		waitForLockWaiters(t, e, 1)
		select {
		case err := <-frozen:
			t.Fatalf("round %d: freeze returned (%v) while an order was applying", round, err)
		default:
		}
		g.open()
		if p := <-order; p.err != nil || g.status != accounts.StatusActive {
			t.Fatalf("round %d: order %+v, saw %s", round, p, g.status)
		}
		if err := <-frozen; err != nil {
			t.Fatalf("round %d: freeze: %v", round, err)
		}
		if err := freeze(e.store, target, accounts.StatusActive); err != nil {
			t.Fatal(err)
		}
	}

	// The other way round: the order waits for the status change.
	g := newGate(t)
	frozen := make(chan error, 1)
	go func() {
		_, err := b.UpdateCustomer(ctx, payer, func(_ context.Context, cu *accounts.Customer) error {
			close(g.entered)
			<-g.release
			cu.Status = accounts.StatusFrozen
			return nil
		})
		frozen <- err
	}()
	waitClosed(t, g.entered, "status change")
	var saw accounts.Status
	order := make(chan placed, 1)
	go func() {
		order <- place(t, e.store, payer, "during-freeze", nil, func(o *accounts.Order, ps []accounts.Customer) error {
			saw = ps[0].Status
			if saw == accounts.StatusFrozen {
				return accounts.ErrCustomerFrozen
			}
			o.Status = accounts.OrderPending
			return nil
		})
	}()
	waitForLockWaiters(t, e, 1)
	select {
	case p := <-order:
		t.Fatalf("order answered while a status change was in progress: %+v", p)
	default:
	}
	g.open()
	if err := <-frozen; err != nil {
		t.Fatal(err)
	}
	if p := <-order; !errors.Is(p.err, accounts.ErrCustomerFrozen) || saw != accounts.StatusFrozen {
		t.Fatalf("order placed during a freeze: %+v, saw %s", p, saw)
	}
	var n int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM orders WHERE request_id = 'during-freeze'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("refused order stored: %d rows, %v", n, err)
	}
}

// TestRandomisedSameKeysTwoStores places a few keys many times at once
// through two stores, with applies that sometimes fail: per key at most
// one apply succeeds, every caller that got an order got that one, the
// caller whose apply it was is the one told existed = false, and the table
// holds exactly the keys with a successful apply.
func TestRandomisedSameKeysTwoStores(t *testing.T) {
	t.Parallel()
	seed := testseed.Seed(t)
	r := newRand(seed)
	e := newEnv(t, accounts.Config{})
	stores := []*postgres.Store{e.store, openSecondStore(t, e)}
	custs := []accounts.CustomerID{e.open("Tess"), e.open("Uma"), e.open("Vic")}
	const (
		keys       = 24
		placements = 400
		workers    = 24
	)
	type plan struct {
		store   int
		key     int
		fail    bool
		pauseUs int
	}
	plans := make([]plan, placements)
	for i := range plans {
		plans[i] = plan{store: r.IntN(2), key: r.IntN(keys), fail: r.IntN(5) == 0, pauseUs: r.IntN(2000)}
	}
	keyOf := func(k int) (accounts.CustomerID, string) { return custs[k%len(custs)], fmt.Sprintf("rk-%d", k) }
	var (
		mu        sync.Mutex
		succeeded = map[int]int{} // key -> successful applies
		winner    = map[int]int{} // key -> placement whose apply succeeded
	)
	results := make([]placed, placements)
	var next atomic.Int64
	parallel(workers, func(int) {
		for {
			i := int(next.Add(1)) - 1
			if i >= placements {
				return
			}
			p := plans[i]
			c, req := keyOf(p.key)
			results[i] = place(t, stores[p.store], c, req, nil, func(o *accounts.Order, _ []accounts.Customer) error {
				time.Sleep(time.Duration(p.pauseUs) * time.Microsecond) // widen the window
				if p.fail {
					return fmt.Errorf("apply %d fails", i)
				}
				mu.Lock()
				succeeded[p.key]++
				winner[p.key] = i
				mu.Unlock()
				o.Status = accounts.OrderPending
				return nil
			})
		}
	})
	stored := map[int]accounts.Order{}
	for k := range keys {
		c, req := keyOf(k)
		o, err := e.store.Order(context.Background(), c, req)
		switch {
		case err == nil:
			stored[k] = o
		case !errors.Is(err, accounts.ErrOrderNotFound):
			t.Fatal(err)
		}
		if n := succeeded[k]; n > 1 || (n == 1) != (err == nil) {
			t.Fatalf("seed %d: key %d: %d successful applies, stored %+v (%v)", seed, k, n, o, err)
		}
	}
	for i, res := range results {
		p := plans[i]
		switch {
		case res.err != nil:
			// Its own apply failed, or it shared a batch with another
			// placement of the key whose apply failed, and got its error.
			var j int
			if _, err := fmt.Sscanf(res.err.Error(), "apply %d fails", &j); err != nil || plans[j].key != p.key || !plans[j].fail {
				t.Fatalf("seed %d: placement %d: %v", seed, i, res.err)
			}
		case res.o != stored[p.key]:
			t.Fatalf("seed %d: placement %d got %+v, stored %+v", seed, i, res.o, stored[p.key])
		case res.existed == (winner[p.key] == i):
			t.Fatalf("seed %d: placement %d: existed %v, winner %d", seed, i, res.existed, winner[p.key])
		}
	}
	t.Logf("%d keys placed, %d left unplaced by failing applies", len(stored), keys-len(stored))
}

// TestKeyStoredByLocklessWriter: a writer that takes no key lock (this
// store before the locks, during a rolling upgrade) stores a key while a
// batch applies it: the batch keeps that row, stores its other orders and
// answers the key with the stored order.
func TestKeyStoredByLocklessWriter(t *testing.T) {
	t.Parallel()
	e := newEnv(t, accounts.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	// One writer: both orders below are applying at once only if they are
	// in one batch.
	st, err := postgres.Open(ctx, postgres.Config{DSN: e.dsn, ConnsMax: 2, OrderWriters: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	c := e.open("Xena")
	// Hold the writer with a first order, queue two more, let it go: they
	// are one batch.
	g0, g1, g2 := newGate(t), newGate(t), newGate(t)
	p0, p1, p2 := make(chan placed, 1), make(chan placed, 1), make(chan placed, 1)
	go func() { p0 <- place(t, st, c, "k0", nil, g0.apply) }()
	waitClosed(t, g0.entered, "apply k0")
	go func() { p1 <- place(t, st, c, "k1", nil, g1.apply) }()
	go func() { p2 <- place(t, st, c, "k2", nil, g2.apply) }()
	for deadline := time.Now().Add(waitTimeout); st.OrderStats().Queued < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d orders queued after %v", st.OrderStats().Queued, waitTimeout)
		}
	}
	g0.open()
	if r := <-p0; r.err != nil {
		t.Fatal(r.err)
	}
	waitClosed(t, g1.entered, "apply k1")
	waitClosed(t, g2.entered, "apply k2")
	var id int64
	if err := e.pool.QueryRow(ctx, `INSERT INTO orders (customer_id, request_id, kind, amount, trade_date, status, created_at)
		VALUES ($1, 'k1', 'subscribe', 100, '2026-11-18', 'completed', now()) RETURNING id`, c).Scan(&id); err != nil {
		t.Fatal(err)
	}
	g1.open()
	g2.open()
	r1, r2 := <-p1, <-p2
	if r1.err != nil || !r1.existed || r1.o.ID != id || r1.o.Status != accounts.OrderCompleted {
		t.Fatalf("k1: %+v, want the row stored meanwhile (id %d)", r1, id)
	}
	if r2.err != nil || r2.existed || r2.o.Status != accounts.OrderPending {
		t.Fatalf("k2: %+v", r2)
	}
	if o, err := st.Order(ctx, c, "k2"); err != nil || o != r2.o {
		t.Fatalf("k2 stored %+v, %v; answered %+v", o, err, r2.o)
	}
}
