package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fundplatform/fund/accounts"
)

// Orders are placed in batches. A request waits in a bounded queue; one of
// a few writers takes what has queued up (up to OrderBatchMax) and places
// the whole batch in one transaction: it takes advisory locks on the
// parties (shared) and on the keys (exclusive) with one statement, reads
// the parties and the orders already stored under those keys, runs the new
// orders' apply callbacks concurrently (so that their ledger calls share
// the ledger's batches too), inserts the outcomes with one INSERT and
// commits once. A placed order costs a share of a few statements, one row
// written once, and one WAL flush per batch, instead of six round trips and
// a flush per order; under load that is the difference between hundreds and
// thousands of orders a second.
//
// Where the ledger carries attachments (accounts.OrderRow), the rows are
// not inserted here: each order's ledger request carries its row, which
// the ledger's commit writes with the entries (OrderRowsWriter), and this
// transaction reads it back and, having written nothing, commits without a
// WAL flush. An order then costs one durable commit, and no client giving
// up between two commits can leave money moved without its row.
//
// What a caller sees is what PlaceOrder promised one order at a time: an
// order is stored only with its outcome, only if its apply succeeded, and
// is acknowledged only after the commit; a stored key answers its stored
// order; a key given twice at once, to one writer or to two processes, is
// placed once (the second waits for the first's key lock, then finds its
// row and answers it as existing). See locks.go for the locks.

// Defaults of the order writers.
const (
	orderBatchMaxDefault = 256
	// Three writers: fewer, bigger batches cost Postgres less per order
	// (BenchmarkPlaceOrders, store alone, on a shared machine: 27-34 µs
	// with 2 writers and batches of ~78, 37 µs with 3 and ~50, 47-50 µs
	// with 8 and ~18), and the gateway bench's p99 did not tell 2, 3, 4
	// and 8 apart; the third keeps a batch filling and one committing
	// while another waits for a slow apply.
	orderWritersDefault  = 3
	orderQueueMaxDefault = 8192
	// orderBatchTimeout bounds a batch's transaction: the applies have
	// their own (the service's ledger timeout), this catches a stuck
	// database.
	orderBatchTimeout = time.Minute
)

// OrderStats say where the order writers' time went, since Open.
type OrderStats struct {
	Batches, Orders int64
	// Queued is how many orders wait for a writer now.
	Queued int
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
	return OrderStats{Batches: st.batches.Load(), Orders: st.orders.Load(), Queued: len(s.orders.queue), Begin: d(&st.begin),
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
	apply func(context.Context, []accounts.Customer) error) (_ accounts.Order, _ bool, err error) {
	defer markUnavailable(&err)
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
// rs, whose keys are distinct). An error fails the whole batch.
//
// The transaction is an orderTx taken through its steps in order: claim,
// apply, record, commit (then answer). It takes two round trips: BEGIN, the
// locks, and the reads of the parties and of the keys already stored go as
// one pipeline (claim); the outcomes and COMMIT as another (record, sent by
// commit). Under load, every round trip is a wait for both processes to be
// scheduled, so it is worth more than the statements it carries.
//
// Each order row is written once, with its outcome: the key is claimed by
// an advisory lock instead of a placeholder row that an UPDATE would then
// rewrite (a second tuple and a second set of index entries per order).
// The parties are held by shared advisory locks instead of row locks, which
// would write every customer tuple (and its WAL) once per batch.
func (s *Store) placeTx(ctx context.Context, rs []*placeRequest, results []placeResult) error {
	st := &s.orders.stats
	st.batches.Add(1)
	st.orders.Add(int64(len(rs)))
	t := newOrderTx(s, rs, results)

	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("orders: acquire connection: %w", err)
	}
	defer conn.Release()
	t.conn = conn
	t.lap(&st.begin)
	defer t.rollback(ctx)

	if err := t.claim(ctx); err != nil {
		return err
	}
	t.lap(&st.claim)
	t.apply()
	t.lap(&st.apply)
	b := t.record()
	t.lap(&st.record)
	if err := t.commit(ctx, b); err != nil {
		return err
	}
	t.lap(&st.commit)
	return t.answer(ctx)
}

// orderTx is one batch's transaction on one connection. Its steps run in
// order, each reading what the one before left in its fields:
//
//   - claim: BEGIN, the advisory locks on the parties and the keys, and the
//     reads of the parties and of the orders already stored under the keys;
//   - apply: sort the requests out (stored before, a party missing, or new)
//     and run the new orders' applies (their ledger transfers);
//   - record: the rows of the orders applied with an outcome (or, for those
//     whose row the ledger committed, the read of it), and COMMIT, queued
//     as one pipeline;
//   - commit: send it (again under the same locks if a writer that does not
//     take them stored one of the keys meanwhile);
//   - answer: the stored orders, with their new ids.
//
// A step that fails fails the batch; rollback, deferred by placeTx, ends a
// transaction that did not commit.
type orderTx struct {
	s       *Store
	rs      []*placeRequest
	results []placeResult // index-aligned with rs
	conn    *pgxpool.Conn
	inTx    bool      // BEGIN sent, and neither COMMIT nor ROLLBACK done
	t0      time.Time // start of the step being timed (OrderStats)

	// The claim: parties (ascending, distinct), keys (index-aligned with
	// rs), and the locks as lockSQL's arguments, which a retry of the
	// record after a key conflict takes again.
	ids          []int64
	cust         []int64
	req          []string
	lockA, lockB []int32
	lockShared   []bool
	byID         map[accounts.CustomerID]accounts.Customer
	old          map[orderKey]accounts.Order
	parties      [][]accounts.Customer // the parties of each new order
	placed, done []int                 // indexes in rs: new orders; applied with an outcome
	// done split: rows this transaction inserts, rows the ledger's commit
	// wrote with the entries (accounts.Order.RowCommitted), read back.
	inserted, committed []int
	rows                orderRows                   // the rows of inserted
	newID               map[orderKey]int64          // ids of the rows inserted
	readBack            map[orderKey]accounts.Order // the rows of committed, as stored
}

// newOrderTx computes the batch's keys and locks; no I/O.
func newOrderTx(s *Store, rs []*placeRequest, results []placeResult) *orderTx {
	t := &orderTx{s: s, rs: rs, results: results, t0: time.Now()}
	n := len(rs)
	t.cust, t.req = make([]int64, n), make([]string, n)
	for i, r := range rs {
		for _, p := range r.parties {
			t.ids = append(t.ids, int64(p))
		}
		t.cust[i], t.req[i] = int64(r.o.CustomerID), r.o.RequestID
	}
	slices.Sort(t.ids)
	t.ids = slices.Compact(t.ids)
	locks := make([]advisoryLock, 0, len(t.ids)+n)
	for _, id := range t.ids {
		locks = append(locks, advisoryLock{key: customerLockKey(accounts.CustomerID(id)), shared: true})
	}
	for _, r := range rs {
		locks = append(locks, advisoryLock{key: orderLockKey(s.keyHash(r.o.CustomerID, r.o.RequestID))})
	}
	t.lockA, t.lockB, t.lockShared = lockArgs(locks)
	return t
}

// lap adds the time since the last lap to a step's counter.
func (t *orderTx) lap(a *atomic.Int64) {
	now := time.Now()
	a.Add(int64(now.Sub(t.t0)))
	t.t0 = now
}

// rollback ends a transaction that did not commit: ROLLBACK, or drop the
// connection if even that fails (the pool must not hand out one inside a
// transaction).
func (t *orderTx) rollback(ctx context.Context) {
	if !t.inTx {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, rerr := t.conn.Exec(rctx, "ROLLBACK"); rerr != nil {
		_ = t.conn.Conn().Close(rctx)
	}
}

// claim begins the transaction, takes the locks and reads the parties and
// the orders already stored under the keys, in one pipeline.
func (t *orderTx) claim(ctx context.Context) error {
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	// Shared locks on the parties (orders never block each other, but a
	// status change, which takes the exclusive one, waits for the batch
	// and the batch for it) and exclusive ones on the keys (a concurrent
	// placement of one of these keys, by another writer or process, waits
	// here for this transaction and then finds its row).
	b.Queue(lockSQL, t.lockA, t.lockB, t.lockShared)
	// The reads are statements of their own, after the locks: each takes
	// its snapshot when it starts, so they see what the transactions they
	// waited for committed.
	b.Queue(`SELECT `+customerColumns+` FROM customers WHERE id = ANY($1)`, t.ids)
	b.Queue(storedOrdersSQL, t.cust, t.req)
	t.inTx = true
	br := t.conn.SendBatch(ctx, b)
	var err error
	t.byID, t.old, err = readClaim(br)
	if cerr := br.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("claim orders: %w", cerr)
	}
	return err
}

// apply sorts the requests out and runs the new orders' applies
// concurrently: their ledger calls meet in the ledger's batches.
func (t *orderTx) apply() {
	t.sortOut()
	var wg sync.WaitGroup
	applied := make([]error, len(t.rs))
	for _, i := range t.placed {
		wg.Add(1)
		go func() {
			defer wg.Done()
			applied[i] = t.rs[i].apply(t.rs[i].ctx, t.parties[i])
		}()
	}
	wg.Wait()
	// Keep the orders applied with an outcome; the others fail alone.
	for _, i := range t.placed {
		o := t.rs[i].o
		err := applied[i]
		if err == nil && !validOutcome(o.Status) {
			err = fmt.Errorf("order %s: apply set no outcome (status %q)", o.RequestID, o.Status)
		}
		if err != nil {
			t.results[i] = placeResult{err: err}
			continue
		}
		t.done = append(t.done, i)
	}
}

// sortOut answers the requests whose key is stored already and those with a
// party missing, and lists the others in placed, with their parties.
func (t *orderTx) sortOut() {
	t.parties = make([][]accounts.Customer, len(t.rs))
	for i, r := range t.rs {
		if stored, ok := t.old[orderKey{r.o.CustomerID, r.o.RequestID}]; ok {
			t.results[i] = placeResult{stored: stored, existed: true}
			continue
		}
		ps := make([]accounts.Customer, len(r.parties))
		missing := false
		for j, id := range r.parties {
			c, ok := t.byID[id]
			if !ok {
				missing = true
				if j == 0 {
					t.results[i] = placeResult{err: accounts.ErrCustomerNotFound}
				} else {
					t.results[i] = placeResult{err: fmt.Errorf("recipient %d: %w", id, accounts.ErrCustomerNotFound)}
				}
				break
			}
			ps[j] = c
		}
		if !missing {
			t.parties[i] = ps
			t.placed = append(t.placed, i)
		}
	}
}

// record queues the rows of the orders applied and COMMIT. The rows the
// ledger's commit wrote are read back instead (their ids, and what a
// retried attempt stored): then the transaction writes nothing, and its
// COMMIT flushes no WAL (a transaction without a transaction id, which
// advisory locks and reads do not take, writes no commit record). The
// locks still had their use: they held a freeze or close of a party, and
// any other placement of the keys, until the orders were applied.
func (t *orderTx) record() *pgx.Batch {
	for _, i := range t.done {
		if t.rs[i].o.RowCommitted {
			t.committed = append(t.committed, i)
			continue
		}
		t.inserted = append(t.inserted, i)
		t.rows.add(t.rs[i].o)
	}
	b := &pgx.Batch{}
	t.queueOutcomes(b, false)
	b.Queue("COMMIT")
	return b
}

// queueOutcomes queues the INSERT of the rows inserted (skipStored: see
// queueInsert) and the read of the rows the ledger committed.
func (t *orderTx) queueOutcomes(b *pgx.Batch, skipStored bool) {
	if len(t.inserted) > 0 {
		t.rows.queueInsert(b, skipStored)
	}
	if len(t.committed) > 0 {
		cust, req := make([]int64, len(t.committed)), make([]string, len(t.committed))
		for j, i := range t.committed {
			cust[j], req[j] = int64(t.rs[i].o.CustomerID), t.rs[i].o.RequestID
		}
		b.Queue(storedOrdersSQL, cust, req)
	}
}

// commit sends the record pipeline and keeps the ids of the rows inserted
// and the rows read back.
func (t *orderTx) commit(ctx context.Context, b *pgx.Batch) error {
	newID, readBack, err := sendRecord(ctx, t.conn, b, 0, len(t.inserted) > 0, len(t.committed) > 0)
	if isKeyConflict(err) {
		// The keys are locked, so no writer that takes the locks can have
		// stored one of them; one that does not (this store from before
		// the locks, during a rolling upgrade) can. Store the outcomes in a
		// new transaction under the same locks, skipping the keys stored
		// meanwhile, which are answered with what is stored.
		if _, err := t.conn.Exec(ctx, "ROLLBACK"); err != nil {
			return fmt.Errorf("roll back orders after a key conflict: %w", err)
		}
		b = &pgx.Batch{}
		b.Queue("BEGIN")
		b.Queue(lockSQL, t.lockA, t.lockB, t.lockShared)
		t.queueOutcomes(b, true)
		b.Queue("COMMIT")
		newID, readBack, err = sendRecord(ctx, t.conn, b, 2, true, len(t.committed) > 0)
	}
	if err != nil {
		return err
	}
	t.inTx = false
	t.newID, t.readBack = newID, readBack
	return nil
}

// answer fills the results of the orders recorded: with their new ids, or,
// for keys another writer stored first, with what it stored; those the
// ledger committed with what was read back.
func (t *orderTx) answer(ctx context.Context) error {
	if err := t.answerInserted(ctx); err != nil {
		return err
	}
	var missing []int
	for _, i := range t.committed {
		o := t.rs[i].o
		stored, ok := t.readBack[orderKey{o.CustomerID, o.RequestID}]
		if !ok {
			missing = append(missing, i)
			continue
		}
		t.results[i] = placeResult{stored: stored}
	}
	if len(missing) == 0 {
		return nil
	}
	if err := t.insertMissing(ctx, missing); err != nil {
		return err
	}
	return t.answerInserted(ctx)
}

// answerInserted fills the results of the orders inserted.
func (t *orderTx) answerInserted(ctx context.Context) error {
	var lost []int
	for _, i := range t.inserted {
		o := t.rs[i].o
		id, ok := t.newID[orderKey{o.CustomerID, o.RequestID}]
		if !ok {
			lost = append(lost, i)
			continue
		}
		o.ID = id
		t.results[i] = placeResult{stored: *o}
	}
	if len(lost) > 0 {
		return t.s.answerStored(ctx, t.conn, t.rs, lost, t.results)
	}
	return nil
}

// insertMissing stores the rows of orders whose ledger commit was said to
// write them but that this database does not hold: a ledger whose
// databases are not the customers' (a configuration error, which the
// ledger cannot see) wrote them elsewhere. They are inserted here as
// without attachments, in a transaction of their own under the batch's
// locks; the money is committed already, so the row must be.
func (t *orderTx) insertMissing(ctx context.Context, idx []int) error {
	t.inserted, t.committed, t.rows = idx, nil, orderRows{}
	for _, i := range idx {
		t.rs[i].o.RowCommitted = false
		t.rows.add(t.rs[i].o)
	}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(lockSQL, t.lockA, t.lockB, t.lockShared)
	t.queueOutcomes(b, true)
	b.Queue("COMMIT")
	t.inTx = true
	newID, _, err := sendRecord(ctx, t.conn, b, 2, true, false)
	if err != nil {
		return err
	}
	t.inTx = false
	t.newID = newID
	return nil
}

// storedOrdersSQL reads the orders stored under the keys ($1 customer ids,
// $2 request ids, index-aligned): one probe of orders_request per key.
//
// The probe is a LATERAL subquery with LIMIT 1 (the key is unique, so the
// limit changes no answer) because the plain join left the choice to the
// planner: with a batch of a few hundred keys and orders' size from its last
// analyse (half the real one, mid-bench), it costed the probes above one
// sequential scan and hashed the whole table, 6-34 ms a batch at 60,000
// orders, where the probes take well under one. The LIMIT keeps the
// subquery from being flattened into a join, so no plan can do that.
const storedOrdersSQL = `SELECT ` + orderColumnsO + ` FROM unnest($1::bigint[], $2::text[]) AS k(customer_id, request_id)
	CROSS JOIN LATERAL (SELECT * FROM orders WHERE customer_id = k.customer_id AND request_id = k.request_id LIMIT 1) o`

// orderRows are the columns of the orders a batch inserts.
type orderRows struct {
	cust, amount, counter        []int64
	req, kind, statuses, reasons []string
	trade, confirm               []pgtype.Date
	created                      []time.Time
}

func (r *orderRows) add(o *accounts.Order) {
	r.cust, r.req, r.kind = append(r.cust, int64(o.CustomerID)), append(r.req, o.RequestID), append(r.kind, string(o.Kind))
	r.amount, r.counter = append(r.amount, o.Amount), append(r.counter, o.Counterparty)
	r.trade, r.confirm = append(r.trade, dateOrNull(o.TradeDate)), append(r.confirm, dateOrNull(o.ConfirmDate))
	r.statuses, r.reasons = append(r.statuses, string(o.Status)), append(r.reasons, o.Reason)
	r.created = append(r.created, o.CreatedAt)
}

// queueInsert queues the INSERT of the rows, returning their ids. A plain
// INSERT unless skipStored: the speculative insertion behind ON CONFLICT DO
// NOTHING probes the unique index once more and writes one more WAL record
// per row, against conflicts that the key locks rule out.
func (r *orderRows) queueInsert(b *pgx.Batch, skipStored bool) {
	conflict := ""
	if skipStored {
		conflict = "ON CONFLICT (customer_id, request_id) DO NOTHING"
	}
	b.Queue(`
		INSERT INTO orders (customer_id, request_id, kind, amount, counterparty, trade_date, confirm_date, status,
			reason, created_at)
		SELECT customer_id, request_id, kind, amount, counterparty, trade_date, confirm_date, status, reason, created_at
		FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::date[], $7::date[],
			$8::text[], $9::text[], $10::timestamptz[])
			WITH ORDINALITY AS t(customer_id, request_id, kind, amount, counterparty, trade_date, confirm_date, status,
				reason, created_at, n)
		ORDER BY n `+conflict+`
		RETURNING id, customer_id, request_id`,
		r.cust, r.req, r.kind, r.amount, r.counter, r.trade, r.confirm, r.statuses, r.reasons, r.created)
}

// sendRecord sends a batch of lead statements, the INSERT (when insert),
// the read of rows stored (when read) and COMMIT, and returns the ids of
// the orders inserted and the orders read.
func sendRecord(ctx context.Context, conn *pgxpool.Conn, b *pgx.Batch, lead int, insert, read bool) (map[orderKey]int64, map[orderKey]accounts.Order, error) {
	newID := map[orderKey]int64{}
	var stored map[orderKey]accounts.Order
	br := conn.SendBatch(ctx, b)
	var err error
	for range lead {
		if _, err = br.Exec(); err != nil {
			err = fmt.Errorf("lock orders: %w", err)
			break
		}
	}
	if err == nil && insert {
		err = readInserted(br, newID)
	}
	if err == nil && read {
		stored, err = readStored(br)
	}
	if cerr := br.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("record and commit orders: %w", cerr)
	}
	return newID, stored, err
}

// isKeyConflict tells whether err is a violation of the orders' key.
func isKeyConflict(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "orders_request"
}

// answerStored answers the orders at idx, whose keys another writer stored
// while this batch applied them, with the stored orders.
func (s *Store) answerStored(ctx context.Context, conn *pgxpool.Conn, rs []*placeRequest, idx []int, results []placeResult) error {
	cust, req := make([]int64, len(idx)), make([]string, len(idx))
	for j, i := range idx {
		cust[j], req[j] = int64(rs[i].o.CustomerID), rs[i].o.RequestID
	}
	rows, err := conn.Query(ctx, storedOrdersSQL, cust, req)
	if err != nil {
		return fmt.Errorf("read concurrent orders: %w", err)
	}
	stored, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (accounts.Order, error) { return scanOrder(r) })
	if err != nil {
		return fmt.Errorf("read concurrent orders: %w", err)
	}
	byKey := make(map[orderKey]accounts.Order, len(stored))
	for _, o := range stored {
		byKey[orderKey{o.CustomerID, o.RequestID}] = o
	}
	for _, i := range idx {
		o, ok := byKey[orderKey{rs[i].o.CustomerID, rs[i].o.RequestID}]
		if !ok {
			return fmt.Errorf("order %d/%s neither inserted nor found", rs[i].o.CustomerID, rs[i].o.RequestID)
		}
		results[i] = placeResult{stored: o, existed: true}
	}
	return nil
}

func validOutcome(s accounts.OrderStatus) bool {
	switch s {
	case accounts.OrderCompleted, accounts.OrderPending, accounts.OrderRejected:
		return true
	}
	return false
}

// readClaim reads the results of the claim pipeline: the parties and the
// orders already stored.
func readClaim(br pgx.BatchResults) (map[accounts.CustomerID]accounts.Customer, map[orderKey]accounts.Order, error) {
	if _, err := br.Exec(); err != nil {
		return nil, nil, fmt.Errorf("begin orders: %w", err)
	}
	if _, err := br.Exec(); err != nil {
		return nil, nil, fmt.Errorf("lock orders: %w", err)
	}
	rows, err := br.Query()
	if err != nil {
		return nil, nil, fmt.Errorf("read customers: %w", err)
	}
	cs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (accounts.Customer, error) { return scanCustomer(r) })
	if err != nil {
		return nil, nil, fmt.Errorf("read customers: %w", err)
	}
	byID := make(map[accounts.CustomerID]accounts.Customer, len(cs))
	for _, c := range cs {
		byID[c.ID] = c
	}
	old, err := readStored(br)
	if err != nil {
		return nil, nil, err
	}
	return byID, old, nil
}

// readStored reads the result of storedOrdersSQL, by key.
func readStored(br pgx.BatchResults) (map[orderKey]accounts.Order, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("read stored orders: %w", err)
	}
	stored, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (accounts.Order, error) { return scanOrder(r) })
	if err != nil {
		return nil, fmt.Errorf("read stored orders: %w", err)
	}
	byKey := make(map[orderKey]accounts.Order, len(stored))
	for _, o := range stored {
		byKey[orderKey{o.CustomerID, o.RequestID}] = o
	}
	return byKey, nil
}

// readInserted reads the ids of the orders inserted.
func readInserted(br pgx.BatchResults, newID map[orderKey]int64) error {
	rows, err := br.Query()
	if err != nil {
		return fmt.Errorf("insert orders: %w", err)
	}
	var (
		id, c int64
		rid   string
	)
	if _, err := pgx.ForEachRow(rows, []any{&id, &c, &rid}, func() error {
		newID[orderKey{accounts.CustomerID(c), rid}] = id
		return nil
	}); err != nil {
		return fmt.Errorf("insert orders: %w", err)
	}
	return nil
}
