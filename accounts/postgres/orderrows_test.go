package postgres_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/accounts/postgres"
	"github.com/fundplatform/fund/ledger"
)

// leaving is the ledger as a client that gives up sees it: every attached
// request is committed (entries and order row) by the sequencer, and then,
// while armed, the caller leaves: its context is cancelled (cancel), or the
// answer is lost on the way back (an error after the commit).
type leaving struct {
	*ledger.Sequencer
	armed    atomic.Bool
	cancel   atomic.Pointer[context.CancelFunc]
	attached atomic.Int64 // requests whose row the ledger wrote
}

func (l *leaving) CreateTransfersAttached(ctx context.Context, ts []ledger.Transfer, att []byte) ([]ledger.TransferResult, bool, error) {
	rs, attached, err := l.Sequencer.CreateTransfersAttached(ctx, ts, att)
	if attached {
		l.attached.Add(1)
	}
	if err != nil || !l.armed.Load() {
		return rs, attached, err
	}
	if c := l.cancel.Load(); c != nil {
		(*c)()
		return rs, attached, ctx.Err()
	}
	return nil, false, ledger.ErrCommitFailed
}

// orphans counts the journal entries of customer orders (their user data
// is the request id) without an order row, and the order rows of money
// orders without entries (rejected ones move nothing).
func (e *env) orphans() (entries, rows int) {
	e.t.Helper()
	if err := e.pool.QueryRow(context.Background(), `
		SELECT (SELECT count(*) FROM transfers t WHERE t.user_data <> ''
				AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.request_id = t.user_data)),
			(SELECT count(*) FROM orders o WHERE o.status <> 'rejected'
				AND NOT EXISTS (SELECT 1 FROM transfers t WHERE t.user_data = o.request_id))`).Scan(&entries, &rows); err != nil {
		e.t.Fatalf("count orphans: %v", err)
	}
	return entries, rows
}

// A client that leaves right after the ledger call, whether its context
// ends or the ledger's answer never reaches it, still leaves the order's
// entries and its row, both written by the ledger's commit: no orphan
// either way, for an applied order as for a rejected one. A retry with the
// same key then answers the stored order and moves nothing.
func TestOrderRowCommitsWithItsEntries(t *testing.T) {
	t.Parallel()
	e := newEnv(t, accounts.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	l := &leaving{Sequencer: e.seq}
	svc, err := accounts.NewService(ctx, accounts.Config{Now: e.clock.Now}, e.store, l, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := e.open("alice")

	l.armed.Store(true)
	if _, err := svc.TopUp(ctx, c, "lost-answer", 500); !errors.Is(err, ledger.ErrCommitFailed) {
		t.Fatalf("top-up whose answer was lost: %v, want ErrCommitFailed", err)
	}
	cctx, ccancel := context.WithCancel(ctx)
	l.cancel.Store(&ccancel)
	if _, err := svc.Withdraw(cctx, c, "gave-up", 200); !errors.Is(err, context.Canceled) {
		t.Fatalf("withdrawal whose client gave up: %v, want context.Canceled", err)
	}
	l.cancel.Store(nil)
	if _, err := svc.Withdraw(ctx, c, "short-lost", 10_000); !errors.Is(err, ledger.ErrCommitFailed) {
		t.Fatalf("rejected withdrawal whose answer was lost: %v, want ErrCommitFailed", err)
	}
	l.armed.Store(false)
	if n := l.attached.Load(); n != 3 {
		t.Fatalf("the ledger wrote %d rows, want 3", n)
	}
	if entries, rows := e.orphans(); entries != 0 || rows != 0 {
		t.Fatalf("orphans: %d entries without a row, %d rows without entries", entries, rows)
	}
	for req, want := range map[string]accounts.OrderStatus{"lost-answer": accounts.OrderCompleted,
		"gave-up": accounts.OrderCompleted, "short-lost": accounts.OrderRejected} {
		o, err := e.store.Order(ctx, c, req)
		if err != nil || o.Status != want {
			t.Fatalf("order %s: %+v %v, want status %s", req, o, err, want)
		}
	}
	before := e.counts()
	o, err := svc.TopUp(ctx, c, "lost-answer", 500)
	if err != nil || o.Status != accounts.OrderCompleted || o.RowCommitted {
		t.Fatalf("retry of the top-up: %+v %v", o, err)
	}
	if _, err := svc.Withdraw(ctx, c, "short-lost", 10_000); !errors.Is(err, accounts.ErrInsufficientFunds) {
		t.Fatalf("retry of the rejected withdrawal: %v, want ErrInsufficientFunds", err)
	}
	if got := e.counts(); got != before {
		t.Fatalf("retries changed the counts: %+v, then %+v", before, got)
	}
	if got := e.holdings(c).AvailableCash; got != 300 {
		t.Fatalf("cash %d, want 300", got)
	}
	// A fresh order through the ledger's row: answered with its stored id.
	o, err = svc.Withdraw(ctx, c, "plain", 100)
	if err != nil || o.ID == 0 || o.RowCommitted {
		t.Fatalf("withdrawal: %+v %v", o, err)
	}
	if rep := e.verify(); !rep.OK() {
		t.Fatalf("verify: %+v", rep)
	}
}

// The orders' writer leaves a stored row alone when a retry carries it
// again, but a rejected row gives way to the outcome of a chain applied
// in the writer's own transaction: the entries it commits are the truth.
func TestOrderRowsWriterKeepsTheAppliedOutcome(t *testing.T) {
	t.Parallel()
	e := newEnv(t, accounts.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	c := e.open("bob")
	row := func(req string) accounts.OrderRow {
		return accounts.OrderRow{Order: accounts.Order{CustomerID: c, RequestID: req, Kind: accounts.KindWithdraw, Amount: 9,
			TradeDate: accounts.DateOf(e.clock.Now()), CreatedAt: e.clock.Now().UTC()},
			Shortage: map[int]string{0: "insufficient_funds"}}
	}
	write := func(req string, r ledger.Result) {
		t.Helper()
		enc := row(req)
		q := &pgx.Batch{}
		if err := postgres.OrderRowsWriter(q, []ledger.Attached{{Data: enc.Encode(), Results: []ledger.TransferResult{{Result: r}}}}); err != nil {
			t.Fatal(err)
		}
		if err := e.pool.SendBatch(ctx, q).Close(); err != nil {
			t.Fatal(err)
		}
	}
	status := func(req string) accounts.OrderStatus {
		t.Helper()
		o, err := e.store.Order(ctx, c, req)
		if err != nil {
			t.Fatal(err)
		}
		return o.Status
	}
	write("a", ledger.ResultExceedsCredits)
	if s := status("a"); s != accounts.OrderRejected {
		t.Fatalf("a: %s, want rejected", s)
	}
	write("a", ledger.ResultOK)
	write("a", ledger.ResultExceedsCredits) // never back
	if s := status("a"); s != accounts.OrderCompleted {
		t.Fatalf("a after its chain applied: %s, want completed", s)
	}
	write("b", ledger.ResultAccountsMustBeDifferent) // an error: no row
	if _, err := e.store.Order(ctx, c, "b"); !errors.Is(err, accounts.ErrOrderNotFound) {
		t.Fatalf("order whose outcome is an error: %v, want ErrOrderNotFound", err)
	}
	bad := &pgx.Batch{}
	if err := postgres.OrderRowsWriter(bad, []ledger.Attached{{Data: []byte{9}}}); !errors.Is(err, accounts.ErrBadOrderRow) {
		t.Fatalf("undecodable attachment: %v, want ErrBadOrderRow", err)
	}
}
