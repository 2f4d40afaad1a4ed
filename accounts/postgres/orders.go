package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/fundplatform/fund/accounts"
)

// Orders are placed in batches. A request waits in a bounded queue; one of
// a few writers takes what has queued up (up to OrderBatchMax) and places
// the whole batch in one transaction: it locks the parties' rows for share
// with one statement, claims every key with one INSERT ... ON CONFLICT DO
// NOTHING, reads the orders that already existed with one SELECT, runs the
// new orders' apply callbacks concurrently (so that their ledger calls
// share the ledger's batches too), stores their outcomes with one UPDATE,
// removes the rows of those whose apply failed with one DELETE, and
// commits once. A placed order costs a few statements and one WAL flush
// per batch instead of six round trips and a flush per order; under load
// that is the difference between hundreds and thousands of orders a second.
//
// What a caller sees is what PlaceOrder promised one order at a time: an
// order is stored only with its outcome, only if its apply succeeded, and
// is acknowledged only after the commit; a stored key answers its stored
// order; a key given twice at once is placed once (the second waits for
// the first and gets it as existing).

// Defaults of the order writers.
const (
	orderBatchMaxDefault = 256
	orderWritersDefault  = 8
	orderQueueMaxDefault = 8192
	// orderBatchTimeout bounds a batch's transaction: the applies have
	// their own (the service's ledger timeout), this catches a stuck
	// database.
	orderBatchTimeout = time.Minute
)

// OrderStats say where the order writers' time went, since Open.
type OrderStats struct {
	Batches, Orders int64
	// Time summed over batches in each step: acquiring a connection (Begin),
	// the claim pipeline, the applies, building the outcome pipeline, and
	// sending it with COMMIT.
	Begin, Claim, Apply, Record, Commit time.Duration
}

type orderStats struct {
	batches, orders                     atomic.Int64
	begin, claim, apply, record, commit atomic.Int64 // ns
}

// OrderStats returns the order writers' counters.
func (s *Store) OrderStats() OrderStats {
	st := &s.orders.stats
	d := func(a *atomic.Int64) time.Duration { return time.Duration(a.Load()) }
	return OrderStats{Batches: st.batches.Load(), Orders: st.orders.Load(), Begin: d(&st.begin),
		Claim: d(&st.claim), Apply: d(&st.apply), Record: d(&st.record), Commit: d(&st.commit)}
}

// ErrClosed is returned by PlaceOrder after Close.
var ErrClosed = errors.New("accounts store: closed")

type placeRequest struct {
	ctx     context.Context
	o       *accounts.Order
	parties []accounts.CustomerID
	apply   func(context.Context, []accounts.Customer) error
	done    chan placeResult // buffered: writers never block on it
}

type placeResult struct {
	stored  accounts.Order
	existed bool
	err     error
}

type orderKey struct {
	customer accounts.CustomerID
	request  string
}

// orderWriters owns the queue and the writer goroutines.
type orderWriters struct {
	stats    orderStats
	queue    chan *placeRequest
	batchMax int
	stop     chan struct{}
	wg       sync.WaitGroup
	mu       sync.RWMutex // held for reading while enqueuing, for writing by close
	closed   bool
}

func (s *Store) startOrderWriters(writers, batchMax, queueMax int) {
	w := &orderWriters{queue: make(chan *placeRequest, queueMax), batchMax: batchMax, stop: make(chan struct{})}
	s.orders = w
	for range writers {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			s.writeOrders()
		}()
	}
}

// closeOrderWriters stops taking requests, lets the writers finish the
// batches they hold, and fails what is still queued.
func (s *Store) closeOrderWriters() {
	w := s.orders
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	close(w.stop)
	w.mu.Unlock()
	w.wg.Wait()
	for {
		select {
		case r := <-w.queue:
			r.done <- placeResult{err: ErrClosed}
		default:
			return
		}
	}
}

// PlaceOrder implements accounts.Store (see orders.go for how).
func (s *Store) PlaceOrder(ctx context.Context, o *accounts.Order, parties []accounts.CustomerID,
	apply func(context.Context, []accounts.Customer) error) (accounts.Order, bool, error) {
	if len(parties) == 0 || parties[0] != o.CustomerID {
		return accounts.Order{}, false, fmt.Errorf("order %s: the first party must be the customer", o.RequestID)
	}
	r := &placeRequest{ctx: ctx, o: o, parties: parties, apply: apply, done: make(chan placeResult, 1)}
	w := s.orders
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		return accounts.Order{}, false, ErrClosed
	}
	select {
	case w.queue <- r:
		w.mu.RUnlock()
	case <-ctx.Done():
		w.mu.RUnlock()
		return accounts.Order{}, false, ctx.Err()
	}
	select {
	case res := <-r.done:
		return res.stored, res.existed, res.err
	case <-ctx.Done():
		// The writer may still place it; the caller was told nothing was
		// acknowledged, and a retry with the same key finds the outcome.
		return accounts.Order{}, false, ctx.Err()
	}
}

func (s *Store) writeOrders() {
	w := s.orders
	for {
		var first *placeRequest
		select {
		case first = <-w.queue:
		case <-w.stop:
			return
		}
		batch := []*placeRequest{first}
	fill:
		for len(batch) < w.batchMax {
			select {
			case r := <-w.queue:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		s.placeBatch(batch)
	}
}

// placeBatch places a batch and answers every request in it.
func (s *Store) placeBatch(batch []*placeRequest) {
	// Requests whose caller has gone are not started.
	live := batch[:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- placeResult{err: err}
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	// A key given twice in one batch is placed once; the repeats wait for
	// the first and get its order as existing.
	firsts := make([]*placeRequest, 0, len(live))
	repeats := map[orderKey][]*placeRequest{}
	seen := make(map[orderKey]bool, len(live))
	for _, r := range live {
		k := orderKey{r.o.CustomerID, r.o.RequestID}
		if seen[k] {
			repeats[k] = append(repeats[k], r)
			continue
		}
		seen[k] = true
		firsts = append(firsts, r)
	}
	// Claim keys in one order in every batch, so that two writers claiming
	// overlapping keys cannot deadlock.
	slices.SortFunc(firsts, func(a, b *placeRequest) int {
		return cmp.Or(cmp.Compare(a.o.CustomerID, b.o.CustomerID), cmp.Compare(a.o.RequestID, b.o.RequestID))
	})
	ctx, cancel := context.WithTimeout(context.Background(), orderBatchTimeout)
	defer cancel()
	results := make([]placeResult, len(firsts))
	if err := s.placeTx(ctx, firsts, results); err != nil {
		for i := range results {
			results[i] = placeResult{err: err}
		}
	}
	for i, r := range firsts {
		res := results[i]
		r.done <- res
		for _, rep := range repeats[orderKey{r.o.CustomerID, r.o.RequestID}] {
			if res.err == nil {
				rep.done <- placeResult{stored: res.stored, existed: true}
			} else {
				rep.done <- placeResult{err: res.err}
			}
		}
	}
}

// placeTx runs the batch's transaction, filling results (index-aligned with
// rs, whose keys are distinct and sorted). An error fails the whole batch.
//
// The transaction takes two round trips: BEGIN, the party locks and the
// claim go as one pipeline (a third reads the orders of keys already
// stored, when a batch has retries); the outcomes, the removal of failed
// orders and COMMIT as another. Under load, every round
// trip is a wait for both processes to be scheduled, so it is worth more
// than the statements it carries.
func (s *Store) placeTx(ctx context.Context, rs []*placeRequest, results []placeResult) (err error) {
	st := &s.orders.stats
	st.batches.Add(1)
	st.orders.Add(int64(len(rs)))
	t0 := time.Now()
	lap := func(a *atomic.Int64) {
		now := time.Now()
		a.Add(int64(now.Sub(t0)))
		t0 = now
	}

	n := len(rs)
	var (
		ids                              []int64
		cust, amount, counter, recipient = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		req, kind                        = make([]string, n), make([]string, n)
		trade, confirm                   = make([]pgtype.Date, n), make([]pgtype.Date, n)
		created                          = make([]time.Time, n)
	)
	for i, r := range rs {
		o := r.o
		for _, p := range r.parties {
			ids = append(ids, int64(p))
		}
		if len(r.parties) > 1 {
			recipient[i] = int64(r.parties[1])
		}
		cust[i], req[i], kind[i], amount[i], counter[i] = int64(o.CustomerID), o.RequestID, string(o.Kind), o.Amount, o.Counterparty
		trade[i], confirm[i], created[i] = dateOrNull(o.TradeDate), dateOrNull(o.ConfirmDate), o.CreatedAt
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)

	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("orders: acquire connection: %w", err)
	}
	defer conn.Release()
	lap(&st.begin)
	inTx := false
	defer func() {
		if inTx {
			// Not committed: roll back, or drop the connection if even that
			// fails (the pool must not hand out one inside a transaction).
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if _, rerr := conn.Exec(rctx, "ROLLBACK"); rerr != nil {
				_ = conn.Conn().Close(rctx)
			}
		}
	}()

	b := &pgx.Batch{}
	b.Queue("BEGIN")
	// Lock every party for share, in id order: orders never block each
	// other, but a freeze or close waits for the batch (and it for them).
	b.Queue(`SELECT `+customerColumns+` FROM customers WHERE id = ANY($1) ORDER BY id FOR SHARE`, ids)
	// Claim the keys of the orders whose parties exist (the rows are
	// locked above). A concurrent placement of one of these keys (another
	// writer, another process) makes this insert wait for its transaction,
	// then skip the key.
	b.Queue(`
		INSERT INTO orders (customer_id, request_id, kind, amount, counterparty, trade_date, confirm_date, status, created_at)
		SELECT customer_id, request_id, kind, amount, counterparty, trade_date, confirm_date, 'placing', created_at
		FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::date[], $7::date[],
			$8::timestamptz[], $9::bigint[])
			WITH ORDINALITY AS t(customer_id, request_id, kind, amount, counterparty, trade_date, confirm_date, created_at,
				recipient, n)
		WHERE EXISTS (SELECT 1 FROM customers c WHERE c.id = t.customer_id)
			AND (t.recipient = 0 OR EXISTS (SELECT 1 FROM customers c WHERE c.id = t.recipient))
		ORDER BY n
		ON CONFLICT (customer_id, request_id) DO NOTHING
		RETURNING id, customer_id, request_id`,
		cust, req, kind, amount, counter, trade, confirm, created, recipient)
	inTx = true
	br := conn.SendBatch(ctx, b)
	byID, newID, err := readClaim(br)
	if cerr := br.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("claim orders: %w", cerr)
	}
	if err != nil {
		return err
	}
	// The keys that were not claimed are stored already (retries): one more
	// round trip, only when there are any.
	var oldCust []int64
	var oldReq []string
	for i, r := range rs {
		if _, isNew := newID[orderKey{r.o.CustomerID, r.o.RequestID}]; !isNew {
			oldCust, oldReq = append(oldCust, cust[i]), append(oldReq, req[i])
		}
	}
	old := map[orderKey]accounts.Order{}
	if len(oldCust) > 0 {
		// Only outcomes are ever committed, so 'placing' rows are this
		// transaction's own.
		rows, err := conn.Query(ctx, `SELECT `+orderColumns+` FROM orders
			WHERE (customer_id, request_id) IN (SELECT * FROM unnest($1::bigint[], $2::text[])) AND status <> 'placing'`,
			oldCust, oldReq)
		if err != nil {
			return fmt.Errorf("read stored orders: %w", err)
		}
		stored, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (accounts.Order, error) { return scanOrder(r) })
		if err != nil {
			return fmt.Errorf("read stored orders: %w", err)
		}
		for _, o := range stored {
			old[orderKey{o.CustomerID, o.RequestID}] = o
		}
	}
	lap(&st.claim)

	// Sort the requests out: parties missing, stored before, or new.
	parties := make([][]accounts.Customer, n)
	var placed []int
	for i, r := range rs {
		ps := make([]accounts.Customer, len(r.parties))
		missing := false
		for j, id := range r.parties {
			c, ok := byID[id]
			if !ok {
				missing = true
				if j == 0 {
					results[i] = placeResult{err: accounts.ErrCustomerNotFound}
				} else {
					results[i] = placeResult{err: fmt.Errorf("recipient %d: %w", id, accounts.ErrCustomerNotFound)}
				}
				break
			}
			ps[j] = c
		}
		if missing {
			continue
		}
		k := orderKey{r.o.CustomerID, r.o.RequestID}
		if id, ok := newID[k]; ok {
			r.o.ID = id
			parties[i] = ps
			placed = append(placed, i)
		} else if stored, ok := old[k]; ok {
			results[i] = placeResult{stored: stored, existed: true}
		} else {
			return fmt.Errorf("order %d/%s neither inserted nor found", r.o.CustomerID, r.o.RequestID)
		}
	}

	// Apply the new orders concurrently: their ledger calls meet in the
	// ledger's batches.
	var wg sync.WaitGroup
	applied := make([]error, n)
	for _, i := range placed {
		wg.Add(1)
		go func() {
			defer wg.Done()
			applied[i] = rs[i].apply(rs[i].ctx, parties[i])
		}()
	}
	wg.Wait()
	lap(&st.apply)

	var (
		doneIDs, failedIDs []int64
		statuses, reasons  []string
	)
	for _, i := range placed {
		o := rs[i].o
		err := applied[i]
		if err == nil && (o.Status == "" || o.Status == "placing") {
			err = fmt.Errorf("order %s: apply set no outcome", o.RequestID)
		}
		if err != nil {
			failedIDs = append(failedIDs, o.ID)
			results[i] = placeResult{err: err}
			continue
		}
		doneIDs = append(doneIDs, o.ID)
		statuses = append(statuses, string(o.Status))
		reasons = append(reasons, o.Reason)
	}
	b = &pgx.Batch{}
	if len(doneIDs) > 0 {
		b.Queue(`UPDATE orders SET status = u.status, reason = u.reason
			FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u(id, status, reason) WHERE orders.id = u.id`,
			doneIDs, statuses, reasons)
	}
	if len(failedIDs) > 0 {
		// Rows of this transaction that were never committed: removing
		// them is not rewriting history.
		b.Queue(`DELETE FROM orders WHERE id = ANY($1)`, failedIDs)
	}
	b.Queue("COMMIT")
	lap(&st.record)
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("record and commit orders: %w", err)
	}
	inTx = false
	lap(&st.commit)
	for _, i := range placed {
		if results[i].err == nil {
			results[i] = placeResult{stored: *rs[i].o}
		}
	}
	return nil
}

// readClaim reads the results of the claim pipeline: the locked customers
// and the ids of the orders inserted.
func readClaim(br pgx.BatchResults) (map[accounts.CustomerID]accounts.Customer, map[orderKey]int64, error) {
	if _, err := br.Exec(); err != nil {
		return nil, nil, fmt.Errorf("begin orders: %w", err)
	}
	rows, err := br.Query()
	if err != nil {
		return nil, nil, fmt.Errorf("lock customers: %w", err)
	}
	locked, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (accounts.Customer, error) { return scanCustomer(r) })
	if err != nil {
		return nil, nil, fmt.Errorf("lock customers: %w", err)
	}
	byID := make(map[accounts.CustomerID]accounts.Customer, len(locked))
	for _, c := range locked {
		byID[c.ID] = c
	}
	rows, err = br.Query()
	if err != nil {
		return nil, nil, fmt.Errorf("insert orders: %w", err)
	}
	newID := map[orderKey]int64{}
	var (
		id, c int64
		rid   string
	)
	if _, err := pgx.ForEachRow(rows, []any{&id, &c, &rid}, func() error {
		newID[orderKey{accounts.CustomerID(c), rid}] = id
		return nil
	}); err != nil {
		return nil, nil, fmt.Errorf("insert orders: %w", err)
	}
	return byID, newID, nil
}
