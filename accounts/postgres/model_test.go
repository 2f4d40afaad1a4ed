package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/internal/testseed"
)

// model is the reference the randomised test compares the service with.
type model struct {
	cash, shares, awaitConf, awaitPay map[accounts.CustomerID]int64
	frozen                            map[accounts.CustomerID]bool
	quotaUsed                         map[string]int64 // customer/day
	subs                              map[accounts.CustomerID][]sub
	done                              map[string]modelOrder // customer/request -> what was placed
	merchant                          int64
}

type sub struct {
	requestID string
	amount    int64
}

type modelOrder struct {
	op     string
	amount int64
	to     accounts.CustomerID
	err    error
}

// TestRandomisedAgainstModel runs random orders, retries, conflicting
// retries, freezes, confirmations and clock moves against the service and
// a small model, comparing every outcome and, at the end, every holding.
func TestRandomisedAgainstModel(t *testing.T) {
	t.Parallel()
	randomisedAgainstModel(t, pgtest.NewDatabase(t))
}

// randomisedAgainstModel is TestRandomisedAgainstModel on the database of
// dsn.
func randomisedAgainstModel(t *testing.T, dsn string) {
	seed := testseed.Seed(t)
	r := newRand(seed)
	const (
		customers = 4
		steps     = 400
		capFen    = 200 * yuan
	)
	e := newEnvOn(t, accounts.Config{FastRedeemDailyMax: capFen}, dsn)
	ctx := context.Background()
	if err := e.svc.RegisterMerchant(ctx, 1); err != nil {
		t.Fatal(err)
	}
	m := &model{cash: map[accounts.CustomerID]int64{}, shares: map[accounts.CustomerID]int64{},
		awaitConf: map[accounts.CustomerID]int64{}, awaitPay: map[accounts.CustomerID]int64{},
		frozen: map[accounts.CustomerID]bool{}, quotaUsed: map[string]int64{}, subs: map[accounts.CustomerID][]sub{},
		done: map[string]modelOrder{}}
	ids := make([]accounts.CustomerID, customers)
	for i := range ids {
		ids[i] = e.open(fmt.Sprintf("c%d", i))
	}
	ops := []string{"top_up", "withdraw", "subscribe", "fast", "standard", "transfer", "pay"}
	var placed []string // keys of placed orders, for retries
	outcomes := map[string]int{}
	for step := 0; step < steps; step++ {
		c := ids[r.IntN(customers)]
		switch x := r.IntN(100); {
		case x < 4:
			e.clock.Add(time.Duration(r.Int64N(int64(30 * time.Hour))))
			continue
		case x < 7 || (m.frozen[c] && r.IntN(3) == 0):
			var err error
			if m.frozen[c] {
				_, err = e.svc.Unfreeze(ctx, c)
			} else {
				_, err = e.svc.Freeze(ctx, c)
			}
			if err != nil {
				t.Fatalf("step %d: freeze/unfreeze %d: %v", step, c, err)
			}
			m.frozen[c] = !m.frozen[c]
			continue
		case x < 20:
			// Settlement confirms the customer's subscriptions.
			for _, s := range m.subs[c] {
				e.confirm(c, s.requestID, s.amount)
				m.awaitConf[c] -= s.amount
				m.shares[c] += s.amount
			}
			m.subs[c] = nil
			continue
		case x < 30 && len(placed) > 0:
			// Retry an earlier order, sometimes with a different amount.
			key := placed[r.IntN(len(placed))]
			var cust accounts.CustomerID
			var req string
			fmt.Sscanf(key, "%d/%s", &cust, &req)
			mo := m.done[key]
			amount := mo.amount
			conflict := r.IntN(2) == 0
			if conflict {
				amount++
			}
			_, err := e.do(ctx, mo.op, cust, req, mo.to, amount)
			want := mo.err
			if conflict {
				want = accounts.ErrIdempotencyConflict
			}
			if !sameErr(err, want) {
				t.Fatalf("step %d: retry %s %s (conflict %v): %v, want %v", step, mo.op, key, conflict, err, want)
			}
			continue
		}
		op := ops[r.IntN(len(ops))]
		amount := 1 + r.Int64N(300*yuan)
		switch op {
		case "top_up", "subscribe":
			amount = 1 + r.Int64N(1000*yuan)
		case "fast":
			amount = 1 + r.Int64N(150*yuan)
		}
		to := ids[r.IntN(customers)]
		for to == c {
			to = ids[r.IntN(customers)]
		}
		req := fmt.Sprintf("s%d", step)
		want := m.apply(op, c, to, req, amount, accounts.NaturalDay(e.clock.Now()).Format(time.DateOnly), capFen)
		_, err := e.do(ctx, op, c, req, to, amount)
		if !sameErr(err, want) {
			t.Fatalf("step %d: %s of %s by %d: %v, want %v", step, op, accounts.FormatAmount(amount), c, err, want)
		}
		outcomes[fmt.Sprintf("%s: %v", op, err)]++
		if !errors.Is(want, accounts.ErrCustomerFrozen) {
			key := fmt.Sprintf("%d/%s", c, req)
			m.done[key] = modelOrder{op: op, amount: amount, to: to, err: want}
			placed = append(placed, key)
		}
	}
	t.Logf("outcomes: %v", outcomes)
	for _, c := range ids {
		h := e.holdings(c)
		got := [4]int64{h.AvailableCash, h.Shares, h.SharesAwaitingConfirmation, h.SharesAwaitingPayout}
		want := [4]int64{m.cash[c], m.shares[c], m.awaitConf[c], m.awaitPay[c]}
		if got != want {
			t.Errorf("customer %d: cash, shares, awaiting confirmation, awaiting payout = %v, model %v", c, got, want)
		}
	}
	if merchant := e.account(accounts.MerchantAccountOn(1, 0, 1)); merchant.Balance() != m.merchant {
		t.Errorf("merchant %d, model %d", merchant.Balance(), m.merchant)
	}
	e.verify()
}

// apply runs an order on the model and returns the error the service
// should answer with.
func (m *model) apply(op string, c, to accounts.CustomerID, req string, amount int64, today string, capFen int64) error {
	if op != "top_up" && m.frozen[c] {
		return accounts.ErrCustomerFrozen
	}
	switch op {
	case "top_up":
		m.cash[c] += amount
	case "withdraw", "transfer", "subscribe":
		if m.cash[c] < amount {
			return accounts.ErrInsufficientFunds
		}
		m.cash[c] -= amount
		switch op {
		case "transfer":
			m.cash[to] += amount
		case "subscribe":
			m.awaitConf[c] += amount
			m.subs[c] = append(m.subs[c], sub{req, amount})
		}
	case "fast", "standard", "pay":
		if m.shares[c] < amount {
			return accounts.ErrInsufficientFunds
		}
		key := fmt.Sprintf("%d/%s", c, today)
		if op == "fast" && m.quotaUsed[key]+amount > capFen {
			return accounts.ErrFastRedeemLimit
		}
		m.shares[c] -= amount
		switch op {
		case "fast":
			m.quotaUsed[key] += amount
			m.cash[c] += amount
		case "standard":
			m.awaitPay[c] += amount
		case "pay":
			m.merchant += amount
		}
	}
	return nil
}

func (e *env) do(ctx context.Context, op string, c accounts.CustomerID, req string, to accounts.CustomerID, amount int64) (accounts.Order, error) {
	switch op {
	case "top_up":
		return e.svc.TopUp(ctx, c, req, amount)
	case "withdraw":
		return e.svc.Withdraw(ctx, c, req, amount)
	case "subscribe":
		return e.svc.Subscribe(ctx, c, req, amount)
	case "fast":
		return e.svc.FastRedeem(ctx, c, req, amount)
	case "standard":
		return e.svc.StandardRedeem(ctx, c, req, amount)
	case "transfer":
		return e.svc.Transfer(ctx, c, req, to, amount)
	case "pay":
		return e.svc.Pay(ctx, c, req, 1, amount)
	}
	panic("unknown op " + op)
}

func sameErr(got, want error) bool {
	if want == nil {
		return got == nil
	}
	return errors.Is(got, want)
}
