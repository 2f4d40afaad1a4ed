package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/internal/testseed"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/xshard"
)

// Transfers between customers on two shards (accounts/saga.go). The tests
// play the ledger owners' consumer group themselves: they read leg 1 of
// each saga from the journal (legOnes) and call the router's Handle on it,
// when and as often as they choose.

// openOn opens a customer on shard s (customer ids are handed out in
// order, and their shards spread evenly, so a few opens find one).
func (e *env) openOn(s int, name string) accounts.CustomerID {
	e.t.Helper()
	for range 64 * e.shards {
		if c := e.open(name); accounts.ShardOf(c, e.shards) == s {
			return c
		}
	}
	e.t.Fatalf("no customer on shard %d after %d opens", s, 64*e.shards)
	return 0
}

// legOnes returns the events of every saga leg 1 in the journal, as the
// ledger's outbox publishes them.
func (e *env) legOnes() []ledger.Event {
	e.t.Helper()
	rows, err := e.pool.Query(context.Background(), `SELECT shard, id::text, debit_account_id, credit_account_id,
		amount, asset, kind, flags, user_data FROM transfers WHERE kind = $1 ORDER BY ts`, int32(xshard.KindOut))
	if err != nil {
		e.t.Fatal(err)
	}
	var (
		out []ledger.Event
		id  string
	)
	var ev ledger.Event
	_, err = pgx.ForEachRow(rows, []any{&ev.Shard, &id, &ev.DebitAccountID, &ev.CreditAccountID, &ev.Amount,
		&ev.Asset, &ev.Kind, &ev.Flags, &ev.UserData}, func() error {
		tid, err := ledger.ParseTransferID(id)
		ev.ID, ev.Version = tid, ledger.EventVersion
		out = append(out, ev)
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// deliver hands every leg 1 in the journal to the saga's consumer.
func (e *env) deliver() {
	e.t.Helper()
	for _, ev := range e.legOnes() {
		if err := e.router.Handle(context.Background(), ev); err != nil {
			e.t.Fatalf("handle %s: %v", ev.ID, err)
		}
	}
}

func (e *env) cash(c accounts.CustomerID) int64 {
	e.t.Helper()
	a := e.account(accounts.CashAccount(c))
	return a.Balance()
}

func (e *env) orderStatus(c accounts.CustomerID, requestID string) accounts.Order {
	e.t.Helper()
	o, err := e.svc.OrderStatus(context.Background(), c, requestID)
	if err != nil {
		e.t.Fatalf("order %d/%s: %v", c, requestID, err)
	}
	return o
}

// incoming returns the request ids of the transfers c's history shows as
// received.
func (e *env) incoming(c accounts.CustomerID) []string {
	e.t.Helper()
	page, err := e.svc.History(context.Background(), accounts.HistoryQuery{CustomerID: c, Limit: accounts.HistoryLimitMax})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, h := range page.Entries {
		if h.Incoming {
			out = append(out, h.RequestID)
		}
	}
	return out
}

func (e *env) inTransitNet() int64 {
	e.t.Helper()
	net, err := e.router.InTransitNet(context.Background(), ledger.AssetCNY)
	if err != nil {
		e.t.Fatal(err)
	}
	return net[ledger.AssetCNY]
}

// A transfer to a customer on another shard is PENDING until the payee's
// leg lands, then COMPLETED; retries while pending and after never move
// money twice and answer the same order; the payee's history shows it once
// credited; a transfer within a shard completes at once.
func TestCrossShardTransferCompletes(t *testing.T) {
	t.Parallel()
	e := newShardedEnv(t, 2, "")
	ctx := context.Background()
	payer, payee, neighbour := e.openOn(0, "Payer"), e.openOn(1, "Payee"), e.openOn(0, "Neighbour")
	if _, err := e.svc.TopUp(ctx, payer, "top", 100*yuan); err != nil {
		t.Fatal(err)
	}

	o, err := e.svc.Transfer(ctx, payer, "x1", payee, 30*yuan)
	if err != nil || o.Status != accounts.OrderPending || o.ID == 0 {
		t.Fatalf("transfer across shards: %+v, %v", o, err)
	}
	if got := e.orderStatus(payer, "x1"); got != o {
		t.Fatalf("order while in transit: %+v, want %+v", got, o)
	}
	if e.cash(payer) != 70*yuan || e.cash(payee) != 0 || e.inTransitNet() != 30*yuan {
		t.Fatalf("in transit: payer %d payee %d in transit %d", e.cash(payer), e.cash(payee), e.inTransitNet())
	}
	if in := e.incoming(payee); len(in) != 0 {
		t.Fatalf("payee's history shows %v before the money arrived", in)
	}
	// A retry while pending: the same order, no money.
	before := e.counts()
	if again, err := e.svc.Transfer(ctx, payer, "x1", payee, 30*yuan); err != nil || again != o {
		t.Fatalf("retry while pending: %+v, %v; want %+v", again, err, o)
	}
	if _, err := e.svc.Transfer(ctx, payer, "x1", payee, 31*yuan); !errors.Is(err, accounts.ErrIdempotencyConflict) {
		t.Fatalf("retry with another amount: %v", err)
	}
	if got := e.counts(); got != before {
		t.Fatalf("retries wrote rows: %+v -> %+v", before, got)
	}
	// The payer cannot close while its money is in flight.
	if _, err := e.svc.Withdraw(ctx, payer, "w", 70*yuan); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Close(ctx, payer); !errors.Is(err, accounts.ErrBalanceNotZero) {
		t.Fatalf("close with a transfer in flight: %v", err)
	}

	// Leg 2 lands (delivered twice, as a consumer may).
	e.deliver()
	e.deliver()
	done := e.orderStatus(payer, "x1")
	if done.Status != accounts.OrderCompleted || done.Reason != "" || done.ID != o.ID {
		t.Fatalf("order after leg 2: %+v", done)
	}
	if e.cash(payer) != 0 || e.cash(payee) != 30*yuan || e.inTransitNet() != 0 {
		t.Fatalf("after leg 2: payer %d payee %d in transit %d", e.cash(payer), e.cash(payee), e.inTransitNet())
	}
	if in := e.incoming(payee); len(in) != 1 || in[0] != "x1" {
		t.Fatalf("payee's history shows %v, want [x1]", in)
	}
	if again, err := e.svc.Transfer(ctx, payer, "x1", payee, 30*yuan); err != nil || again != done {
		t.Fatalf("retry after completion: %+v, %v; want %+v", again, err, done)
	}
	if e.cash(payer) != 0 || e.cash(payee) != 30*yuan {
		t.Fatal("a retry moved money")
	}
	if _, err := e.svc.Close(ctx, payer); err != nil {
		t.Fatalf("close once the transfer completed: %v", err)
	}

	// Within a shard: one chain, completed at once.
	if _, err := e.svc.TopUp(ctx, neighbour, "top", 10*yuan); err != nil {
		t.Fatal(err)
	}
	local := e.openOn(0, "Local")
	if o, err := e.svc.Transfer(ctx, neighbour, "l1", local, 4*yuan); err != nil || o.Status != accounts.OrderCompleted {
		t.Fatalf("transfer within a shard: %+v, %v", o, err)
	}
	if e.cash(neighbour) != 6*yuan || e.cash(local) != 4*yuan || len(e.legOnes()) != 1 {
		t.Fatalf("within a shard: %d %d, %d sagas", e.cash(neighbour), e.cash(local), len(e.legOnes()))
	}
	if n, err := e.svc.ResolvePendingTransfers(ctx, 10); err != nil || n != 0 {
		t.Fatalf("sweep with nothing pending: %d, %v", n, err)
	}
	e.verify()
}

// A transfer whose payee's accounts refuse it on the other shard ends
// REFUNDED with its reason, the payer's money back exactly once; so does
// one to a customer whose ledger accounts were never created. A frozen
// payee may receive (the product rule), across shards too.
func TestCrossShardTransferRefunded(t *testing.T) {
	t.Parallel()
	crossShardRefunds(t, "")
}

// TestCrossShardTransferRefundedAsServiceRole: the service role's grants
// let it resolve transfers (status and reason).
func TestCrossShardTransferRefundedAsServiceRole(t *testing.T) {
	t.Parallel()
	crossShardRefunds(t, serviceDSN(t))
}

func crossShardRefunds(t *testing.T, dsn string) {
	e := newShardedEnv(t, 2, dsn)
	ctx := context.Background()
	payer := e.openOn(0, "Payer")
	closing, frozen, refusing := e.openOn(1, "Closing"), e.openOn(1, "Frozen"), e.openOn(1, "Refusing")
	if _, err := e.svc.TopUp(ctx, payer, "top", 100*yuan); err != nil {
		t.Fatal(err)
	}
	// A customer row without ledger accounts (as if its opening had been
	// lost half-way): the order checks pass, the payee's shard refuses.
	var ghost accounts.CustomerID
	for i := 0; ghost == 0 || accounts.ShardOf(ghost, 2) != 1; i++ {
		if i == 64 {
			t.Fatal("no ghost customer on shard 1")
		}
		if err := e.pool.QueryRow(ctx, `INSERT INTO customers (request_id, name, created_at)
			VALUES ('ghost-' || $1, 'Ghost', now()) RETURNING id`, fmt.Sprint(i)).Scan(&ghost); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.svc.Freeze(ctx, frozen); err != nil {
		t.Fatal(err)
	}
	for i, to := range []accounts.CustomerID{closing, frozen, refusing, ghost} {
		if o, err := e.svc.Transfer(ctx, payer, fmt.Sprint("x", i), to, 10*yuan); err != nil || o.Status != accounts.OrderPending {
			t.Fatalf("transfer %d: %+v, %v", i, o, err)
		}
	}
	// Meanwhile the payee closes (nothing received yet), and another's
	// ledger accounts are closed behind the service's back.
	if _, err := e.svc.Close(ctx, closing); err != nil {
		t.Fatal(err)
	}
	if rs, err := e.lc.CloseAccounts(ctx, []ledger.AccountID{accounts.CashAccount(refusing)}); err != nil ||
		rs[0].Result != ledger.ResultOK {
		t.Fatalf("close the refusing payee's cash account: %v %v", rs, err)
	}
	if e.cash(payer) != 60*yuan {
		t.Fatalf("payer %d in transit", e.cash(payer))
	}
	e.deliver()
	e.deliver() // redelivered: no second refund
	want := []struct {
		status accounts.OrderStatus
		reason string
	}{
		{accounts.OrderRefunded, accounts.ReasonPayeeClosed},
		{accounts.OrderCompleted, ""},
		{accounts.OrderRefunded, accounts.ReasonPayeeRefused},
		{accounts.OrderRefunded, accounts.ReasonPayeeRefused},
	}
	// The sweep resolves two; the reads the others.
	if n, err := e.svc.ResolvePendingTransfers(ctx, 2); err != nil || n != 2 {
		t.Fatalf("sweep: %d, %v", n, err)
	}
	for i, w := range want {
		o := e.orderStatus(payer, fmt.Sprint("x", i))
		if o.Status != w.status || o.Reason != w.reason || o.Err() != nil {
			t.Errorf("transfer %d: %s %q, want %s %q", i, o.Status, o.Reason, w.status, w.reason)
		}
	}
	if e.cash(payer) != 90*yuan || e.cash(frozen) != 10*yuan || e.inTransitNet() != 0 {
		t.Fatalf("after the refunds: payer %d frozen payee %d in transit %d", e.cash(payer), e.cash(frozen), e.inTransitNet())
	}
	// Retries: the stored order, no money.
	for i, to := range []accounts.CustomerID{closing, frozen, refusing, ghost} {
		o, err := e.svc.Transfer(ctx, payer, fmt.Sprint("x", i), to, 10*yuan)
		if err != nil || o.Status != want[i].status || o.Reason != want[i].reason {
			t.Fatalf("retry of transfer %d: %+v, %v", i, o, err)
		}
	}
	e.deliver()
	if e.cash(payer) != 90*yuan || len(e.incoming(closing))+len(e.incoming(refusing))+len(e.incoming(ghost)) != 0 ||
		len(e.incoming(frozen)) != 1 {
		t.Fatalf("after retries: payer %d; incoming %v %v %v %v", e.cash(payer), e.incoming(closing), e.incoming(frozen),
			e.incoming(refusing), e.incoming(ghost))
	}
	e.verify()
}

// Many transfers among customers on 2-4 shards, some retried, some short
// of funds, some to payees whose accounts are closed; leg 1's events
// are handled in a random order, some twice, some concurrently, with
// sweeps between. At the end every transfer is completed, refunded or
// rejected, the balances are what the orders say, money is conserved and
// the in-transit accounts net to zero.
func TestCrossShardTransfersRandomised(t *testing.T) {
	t.Parallel()
	seed := testseed.Seed(t)
	rng := newRand(seed)
	shards := 2 + rng.IntN(3)
	e := newShardedEnv(t, shards, "")
	ctx := context.Background()
	const customers, transfers, topUp = 12, 160, 50 * yuan
	cs := make([]accounts.CustomerID, customers)
	for i := range cs {
		cs[i] = e.openOn(i%shards, fmt.Sprint("C", i))
	}
	// Two customers have empty cash accounts that are closed behind the
	// service's back (the ledger refuses to close one holding money), so
	// that the transfers to them across shards come back. They send
	// nothing: the service keeps a customer with money in flight from
	// closing, which this bypasses.
	closed := map[accounts.CustomerID]bool{cs[0]: true, cs[1+rng.IntN(customers-1)]: true}
	topUps := map[accounts.CustomerID]int64{}
	for _, c := range cs {
		if closed[c] {
			if rs, err := e.lc.CloseAccounts(ctx, []ledger.AccountID{accounts.CashAccount(c)}); err != nil || rs[0].Result != ledger.ResultOK {
				t.Fatalf("close %d: %v %v", c, rs, err)
			}
			continue
		}
		if _, err := e.svc.TopUp(ctx, c, "top", topUp); err != nil {
			t.Fatal(err)
		}
		topUps[c] = topUp
	}
	type req struct {
		from, to accounts.CustomerID
		id       string
		amount   int64
	}
	reqs := make([]req, transfers)
	for i := range reqs {
		from, to := rng.IntN(customers), rng.IntN(customers-1)
		for closed[cs[from]] {
			from = rng.IntN(customers)
		}
		if to >= from {
			to++
		}
		reqs[i] = req{cs[from], cs[to], fmt.Sprint("t", i), int64(1 + rng.IntN(15*yuan))}
	}
	place := func(r req) {
		o, err := e.svc.Transfer(ctx, r.from, r.id, r.to, r.amount)
		switch {
		case err == nil, errors.Is(err, accounts.ErrInsufficientFunds), closed[r.to] && errors.Is(err, accounts.ErrCustomerClosed):
		default:
			t.Errorf("transfer %s: %+v, %v", r.id, o, err)
		}
	}
	parallel(8, func(w int) {
		for i := w; i < transfers/2; i += 8 {
			place(reqs[i])
		}
	})
	handle := func(evs []ledger.Event) {
		var mu sync.Mutex
		parallel(4, func(w int) {
			for i := w; i < len(evs); i += 4 {
				if err := e.router.Handle(ctx, evs[i]); err != nil {
					mu.Lock()
					t.Errorf("handle %s: %v", evs[i].ID, err)
					mu.Unlock()
				}
			}
		})
	}
	shuffled := func() []ledger.Event {
		evs := e.legOnes()
		rng.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
		return evs[:len(evs)*(1+rng.IntN(3))/3] // some of them
	}
	handle(shuffled())
	if _, err := e.svc.ResolvePendingTransfers(ctx, 7); err != nil {
		t.Fatal(err)
	}
	parallel(8, func(w int) {
		for i := transfers/2 + w; i < transfers; i += 8 {
			place(reqs[i])
			if rng := newRand(seed + uint64(i)); rng.IntN(4) == 0 {
				place(reqs[i]) // a retry
			}
		}
	})
	handle(shuffled())
	handle(e.legOnes())
	handle(shuffled()) // redelivered
	for range transfers {
		if n, err := e.svc.ResolvePendingTransfers(ctx, 25); err != nil {
			t.Fatal(err)
		} else if n == 0 {
			break
		}
	}
	checkTransfers(t, e, cs, topUps)
	e.verify()
}

// checkTransfers checks that no transfer is pending, that each customer's
// cash is its top-up plus what the orders say it received, less what they
// say it sent, and that the in-transit accounts net to zero.
func checkTransfers(t *testing.T, e *env, cs []accounts.CustomerID, topUps map[accounts.CustomerID]int64) {
	t.Helper()
	want := map[accounts.CustomerID]int64{}
	var moved, refunded, sagas int
	for _, c := range cs {
		want[c] += topUps[c]
		page, err := e.svc.History(context.Background(), accounts.HistoryQuery{CustomerID: c,
			Kinds: []accounts.OrderKind{accounts.KindTransfer}, Limit: accounts.HistoryLimitMax})
		if err != nil || page.NextCursor != "" {
			t.Fatalf("history of %d: %v (more pages: %q)", c, err, page.NextCursor)
		}
		for _, h := range page.Entries {
			switch {
			case h.Incoming:
				continue // counted from the payer's side
			case h.Status == accounts.OrderCompleted:
				want[c] -= h.Amount
				want[accounts.CustomerID(h.Counterparty)] += h.Amount
				moved++
			case h.Status == accounts.OrderRefunded:
				refunded++
			case h.Status == accounts.OrderRejected:
			default:
				t.Errorf("transfer %d/%s still %s", c, h.RequestID, h.Status)
			}
			if h.Status != accounts.OrderRejected && accounts.ShardOf(c, e.shards) != accounts.ShardOf(accounts.CustomerID(h.Counterparty), e.shards) {
				sagas++
			}
		}
	}
	// Every saga ended exactly once: leg 2 or the refund, never both.
	ids := map[ledger.TransferID]bool{}
	rows, err := e.pool.Query(context.Background(), `SELECT id::text FROM transfers`)
	if err != nil {
		t.Fatal(err)
	}
	var id string
	if _, err := pgx.ForEachRow(rows, []any{&id}, func() error {
		tid, err := ledger.ParseTransferID(id)
		ids[tid] = true
		return err
	}); err != nil {
		t.Fatal(err)
	}
	legs := e.legOnes()
	for _, ev := range legs {
		in, back := xshard.ClosingIDs(ev.ID)
		if ids[in] == ids[back] {
			t.Errorf("saga %s: leg 2 %v, refund %v", ev.ID, ids[in], ids[back])
		}
	}
	if len(legs) != sagas {
		t.Errorf("%d sagas in the journal, %d transfer orders across shards", len(legs), sagas)
	}
	var total, topped int64
	for _, c := range cs {
		topped += topUps[c]
		got := e.cash(c)
		total += got
		if got != want[c] {
			t.Errorf("customer %d: cash %d, the orders say %d", c, got, want[c])
		}
	}
	if total != topped || e.inTransitNet() != 0 {
		t.Errorf("customers hold %d of %d, in transit %d", total, topped, e.inTransitNet())
	}
	t.Logf("%d transfers completed, %d of %d sagas refunded", moved, refunded, sagas)
}
