package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/internal/testseed"
	"github.com/fundplatform/fund/ledger"
)

const yuan = 100 // fen

func TestOpenCustomerCreatesAccounts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, accounts.Config{})
	ctx := context.Background()
	c := e.open("Alice")
	cash, shares := e.account(accounts.CashAccount(c)), e.account(accounts.SharesAccount(c))
	if cash.Asset != ledger.AssetCNY || shares.Asset != ledger.AssetFundShares ||
		cash.Flags&ledger.DebitsMustNotExceedCredits == 0 || shares.Flags&ledger.DebitsMustNotExceedCredits == 0 {
		t.Fatalf("accounts: cash %+v shares %+v", cash, shares)
	}
	for _, id := range []ledger.AccountID{accounts.BankSettlement, accounts.FundOmnibusCash, accounts.FundOmnibusShares,
		accounts.InTransitCash, accounts.IncomeDistribution, accounts.Rounding} {
		e.account(id)
	}
	// A second service on the same ledger finds the system accounts there.
	if _, err := accounts.NewService(ctx, accounts.Config{}, e.store, e.seq, nil); err != nil {
		t.Fatalf("second service start: %v", err)
	}
	if _, err := e.svc.OpenCustomer(ctx, "open-empty", ""); !errors.Is(err, accounts.ErrInvalidName) {
		t.Fatalf("empty name: %v", err)
	}
	if _, err := e.svc.Holdings(ctx, 999); !errors.Is(err, accounts.ErrCustomerNotFound) {
		t.Fatalf("holdings of unknown customer: %v", err)
	}
	if _, err := e.svc.TopUp(ctx, 999, "r1", 100); !errors.Is(err, accounts.ErrCustomerNotFound) {
		t.Fatalf("top up of unknown customer: %v", err)
	}
}

// TestOpenCustomerIdempotent: one customer per request id, forever.
// Identical retries, sequential and concurrent, get the same customer;
// conflicting ones are refused; bad input writes nothing.
func TestOpenCustomerIdempotent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, accounts.Config{})
	ctx := context.Background()
	first, err := e.svc.OpenCustomer(ctx, "open-alice", "Alice")
	if err != nil {
		t.Fatal(err)
	}
	if first.RequestID != "open-alice" || first.Name != "Alice" || first.Status != accounts.StatusActive {
		t.Fatalf("opened %+v", first)
	}
	before := e.counts()
	// A retry a day later still gets the same customer.
	e.clock.Add(24 * time.Hour)
	if again, err := e.svc.OpenCustomer(ctx, "open-alice", "Alice"); err != nil || again != first {
		t.Fatalf("retry: %+v, %v; first %+v", again, err, first)
	}
	// Another name under the same request id: refused, and the caller
	// learns which customer holds the id.
	if got, err := e.svc.OpenCustomer(ctx, "open-alice", "Mallory"); !errors.Is(err, accounts.ErrIdempotencyConflict) ||
		got.ID != first.ID || got.Name != "Alice" {
		t.Fatalf("conflicting retry: %+v, %v", got, err)
	}
	// Bad input: a clear error and nothing written.
	for _, id := range []string{"", " ", "a b", "é", string(make([]byte, 65))} {
		if _, err := e.svc.OpenCustomer(ctx, id, "Bob"); !errors.Is(err, accounts.ErrInvalidRequestID) {
			t.Errorf("request id %q: %v", id, err)
		}
	}
	for _, name := range []string{"", string(make([]rune, 101)), "\xff"} {
		if _, err := e.svc.OpenCustomer(ctx, "open-bad-name", name); !errors.Is(err, accounts.ErrInvalidName) {
			t.Errorf("name %q: %v", name, err)
		}
	}
	if got := e.counts(); got != before {
		t.Fatalf("retries and refused opens wrote rows: %+v -> %+v", before, got)
	}

	// Concurrent identical opens of a new request id: one customer, every
	// caller the same answer.
	const n = 20
	custs := make([]accounts.Customer, n)
	errs := make([]error, n)
	parallel(n, func(i int) { custs[i], errs[i] = e.svc.OpenCustomer(ctx, "open-bob", "Bob") })
	for i := range custs {
		if errs[i] != nil || custs[i] != custs[0] {
			t.Fatalf("caller %d: %+v, %v; caller 0 %+v", i, custs[i], errs[i], custs[0])
		}
	}
	bob := custs[0]
	// Concurrent opens of one request id with two names: one customer;
	// the callers with the other name are refused.
	parallel(n, func(i int) { custs[i], errs[i] = e.svc.OpenCustomer(ctx, "open-carol", fmt.Sprintf("Carol%d", i%2)) })
	winner := custs[0].Name
	if errs[0] != nil {
		winner = "Carol1"
	}
	for i := range custs {
		name := fmt.Sprintf("Carol%d", i%2)
		if custs[i].ID == 0 || custs[i].ID != custs[0].ID || custs[i].Name != winner ||
			(name == winner) != (errs[i] == nil) || (errs[i] != nil && !errors.Is(errs[i], accounts.ErrIdempotencyConflict)) {
			t.Fatalf("caller %d (%s): %+v, %v; winner %s", i, name, custs[i], errs[i], winner)
		}
	}
	if got := e.counts(); got.Customers != before.Customers+2 {
		t.Fatalf("%d customers after opening two, want %d", got.Customers, before.Customers+2)
	}
	// The customer is usable, and a retry after it changed returns it as
	// it is now.
	if _, err := e.svc.TopUp(ctx, bob.ID, "t1", 5*yuan); err != nil {
		t.Fatal(err)
	}
	if h := e.holdings(bob.ID); h.AvailableCash != 5*yuan {
		t.Fatalf("holdings %+v", h)
	}
	if _, err := e.svc.Freeze(ctx, bob.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := e.svc.OpenCustomer(ctx, "open-bob", "Bob"); err != nil || got.ID != bob.ID || got.Status != accounts.StatusFrozen {
		t.Fatalf("retry after freeze: %+v, %v", got, err)
	}
	e.verify()
}

// TestCutOffAndCalendar places subscriptions and standard redemptions
// around the cut-off, on a Friday and on a holiday, and checks the dates
// recorded with each order.
func TestCutOffAndCalendar(t *testing.T) {
	t.Parallel()
	e := newEnv(t, accounts.Config{})
	ctx := context.Background()
	c := e.fund("Bob", 1000*yuan, 1000*yuan)
	tests := []struct {
		at, trade, confirm string
	}{
		{"2026-11-18 14:59:59", "2026-11-18", "2026-11-19"},
		{"2026-11-18 15:00:00", "2026-11-19", "2026-11-20"},
		{"2026-11-20 15:00:01", "2026-11-23", "2026-11-24"}, // Friday after the cut-off -> Monday
		{"2026-11-21 11:00:00", "2026-11-23", "2026-11-24"}, // Saturday
		{"2026-09-30 16:00:00", "2026-10-08", "2026-10-09"}, // eve of the holiday, after the cut-off
		{"2026-10-02 09:00:00", "2026-10-08", "2026-10-09"}, // a holiday (Friday)
	}
	for i, tc := range tests {
		e.clock.Set(cst(tc.at))
		for _, kind := range []accounts.OrderKind{accounts.KindSubscribe, accounts.KindStandardRedeem} {
			id := fmt.Sprintf("%s-%d", kind, i)
			var o accounts.Order
			var err error
			if kind == accounts.KindSubscribe {
				o, err = e.svc.Subscribe(ctx, c, id, 10*yuan)
			} else {
				o, err = e.svc.StandardRedeem(ctx, c, id, 10*yuan)
			}
			if err != nil {
				t.Fatalf("%s at %s: %v", kind, tc.at, err)
			}
			stored, err := e.svc.OrderStatus(ctx, c, id)
			if err != nil {
				t.Fatal(err)
			}
			for _, got := range []accounts.Order{o, stored} {
				if !got.TradeDate.Equal(day(tc.trade)) || !got.ConfirmDate.Equal(day(tc.confirm)) || got.Status != accounts.OrderPending {
					t.Errorf("%s at %s: trade %s confirm %s status %s; want %s, %s, pending", kind, tc.at,
						got.TradeDate.Format(time.DateOnly), got.ConfirmDate.Format(time.DateOnly), got.Status, tc.trade, tc.confirm)
				}
			}
		}
	}
	h := e.holdings(c)
	n := int64(len(tests))
	if h.SharesAwaitingConfirmation != n*10*yuan || h.SharesAwaitingPayout != n*10*yuan ||
		h.Shares != 1000*yuan-n*10*yuan || h.AvailableCash != 1000*yuan-n*10*yuan {
		t.Fatalf("holdings %+v", h)
	}
	e.verify()
}

func TestFastRedeemDailyCap(t *testing.T) {
	t.Parallel()
	e := newEnv(t, accounts.Config{})
	ctx := context.Background()
	a := e.fund("Carol", 0, 30_000*yuan)
	b := e.fund("Dave", 0, 30_000*yuan)

	// Exactly 10,000.00 in one go fits; one fen more that day does not.
	if _, err := e.svc.FastRedeem(ctx, a, "r1", 10_000*yuan); err != nil {
		t.Fatalf("fast redeem 10,000.00: %v", err)
	}
	o, err := e.svc.FastRedeem(ctx, a, "r2", 1)
	if !errors.Is(err, accounts.ErrFastRedeemLimit) || o.Status != accounts.OrderRejected {
		t.Fatalf("fast redeem 0.01 over the cap: %+v, %v", o, err)
	}
	// 10,000.01 in one go does not fit.
	if _, err := e.svc.FastRedeem(ctx, b, "r1", 10_000*yuan+1); !errors.Is(err, accounts.ErrFastRedeemLimit) {
		t.Fatalf("fast redeem 10,000.01: %v", err)
	}
	// Split over a day it fits up to the cap.
	if _, err := e.svc.FastRedeem(ctx, b, "r2", 9_999*yuan+99); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.FastRedeem(ctx, b, "r3", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.FastRedeem(ctx, b, "r4", 1); !errors.Is(err, accounts.ErrFastRedeemLimit) {
		t.Fatalf("one fen over: %v", err)
	}
	// The cap is per natural day: 23:59:59 is still today, 00:00 is a new
	// day (a Thursday; natural days, not trading days).
	e.clock.Set(cst("2026-11-18 23:59:59"))
	if _, err := e.svc.FastRedeem(ctx, a, "r3", 1); !errors.Is(err, accounts.ErrFastRedeemLimit) {
		t.Fatalf("same day, late: %v", err)
	}
	e.clock.Set(cst("2026-11-19 00:00:00"))
	if _, err := e.svc.FastRedeem(ctx, a, "r4", 10_000*yuan); err != nil {
		t.Fatalf("next day: %v", err)
	}
	// Standard redemption has no cap; payment does not count against it.
	if _, err := e.svc.StandardRedeem(ctx, a, "r5", 5_000*yuan); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.RegisterMerchant(ctx, 7); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Pay(ctx, a, "r6", 7, 1000*yuan); err != nil {
		t.Fatal(err)
	}
	h := e.holdings(a)
	if h.AvailableCash != 20_000*yuan || h.Shares != 30_000*yuan-20_000*yuan-5_000*yuan-1000*yuan ||
		h.SharesAwaitingPayout != 5_000*yuan {
		t.Fatalf("holdings %+v", h)
	}
	if m := e.account(accounts.MerchantAccountOn(7, 0, 1)); m.Balance() != 1000*yuan {
		t.Fatalf("merchant balance %d", m.Balance())
	}
	// A configured cap.
	e2 := newEnv(t, accounts.Config{FastRedeemDailyMax: 500 * yuan})
	c := e2.fund("Erin", 0, 1000*yuan)
	if _, err := e2.svc.FastRedeem(ctx, c, "r1", 500*yuan+1); !errors.Is(err, accounts.ErrFastRedeemLimit) {
		t.Fatalf("configured cap: %v", err)
	}
	if _, err := e2.svc.FastRedeem(ctx, c, "r2", 500*yuan); err != nil {
		t.Fatal(err)
	}
	e.verify()
}

// TestQuotaIsNotMoney: the fast-redemption quota lives in its own asset,
// so granting and using it leaves the CNY totals alone.
func TestQuotaIsNotMoney(t *testing.T) {
	t.Parallel()
	e := newEnv(t, accounts.Config{})
	ctx := context.Background()
	c := e.fund("Quinn", 0, 100*yuan) // top-up 100.00 CNY, subscribe 100.00 CNY
	if _, err := e.svc.FastRedeem(ctx, c, "fast", 30*yuan); err != nil {
		t.Fatal(err)
	}
	for _, id := range []ledger.AccountID{accounts.QuotaIssuer, accounts.QuotaUsed,
		accounts.QuotaAccount(c, accounts.NaturalDay(e.clock.Now()))} {
		if a := e.account(id); a.Asset != ledger.AssetQuota {
			t.Fatalf("account %d holds %s, want %s", id, a.Asset, ledger.AssetQuota)
		}
	}
	rep := e.verify()
	// CNY moved: top-up 100.00 + subscription 100.00 + redemption 30.00.
	// Quota moved: the day's grant 10,000.00 + 30.00 used.
	want := map[ledger.Asset]int64{
		ledger.AssetCNY:   230 * yuan,
		ledger.AssetQuota: accounts.FastRedeemDailyMaxDefault + 30*yuan,
	}
	for asset, fen := range want {
		if rep.TotalDebits[asset] != fen || rep.TotalCredits[asset] != fen {
			t.Errorf("%s: debits %d credits %d, want %d", asset, rep.TotalDebits[asset], rep.TotalCredits[asset], fen)
		}
	}
}

// TestFastRedeemConcurrentCap fires 50 concurrent fast redemptions that
// together exceed the cap: exactly the ones that fit succeed, whatever
// order the ledger applied them in.
func TestFastRedeemConcurrentCap(t *testing.T) {
	t.Parallel()
	seed := testseed.Seed(t)
	r := newRand(seed)
	e := newEnv(t, accounts.Config{})
	ctx := context.Background()
	const n = 50
	capFen := accounts.FastRedeemDailyMaxDefault
	for round, amountOf := range []func(int) int64{
		func(int) int64 { return 250 * yuan }, // 12,500.00 in all: exactly 40 fit
		func(int) int64 { return 1 + r.Int64N(500*yuan) },
	} {
		c := e.fund(fmt.Sprintf("Frank%d", round), 0, 50_000*yuan)
		amounts := make([]int64, n)
		var total int64
		for i := range amounts {
			amounts[i] = amountOf(i)
			total += amounts[i]
		}
		if total <= capFen {
			amounts[0] += capFen - total + 1
		}
		errs := make([]error, n)
		parallel(n, func(i int) {
			_, errs[i] = e.svc.FastRedeem(ctx, c, fmt.Sprintf("fast-%d", i), amounts[i])
		})
		var used int64
		var ok int
		for i, err := range errs {
			switch {
			case err == nil:
				used += amounts[i]
				ok++
			case !errors.Is(err, accounts.ErrFastRedeemLimit):
				t.Fatalf("round %d: fast redeem %d of %d: %v", round, i, amounts[i], err)
			}
		}
		if used > capFen {
			t.Fatalf("round %d: %d fen redeemed, cap %d", round, used, capFen)
		}
		// A refused one did not fit when it was applied, and the used sum
		// only grows, so it does not fit the final sum either.
		for i, err := range errs {
			if err != nil && used+amounts[i] <= capFen {
				t.Fatalf("round %d: %d fen refused though %d of %d were used", round, amounts[i], used, capFen)
			}
		}
		if round == 0 && ok != 40 {
			t.Fatalf("round 0: %d of 50 redemptions of 250.00 succeeded, want 40", ok)
		}
		h := e.holdings(c)
		if h.AvailableCash != used || h.Shares != 50_000*yuan-used {
			t.Fatalf("round %d: holdings %+v after %d redeemed", round, h, used)
		}
		if q := e.account(accounts.QuotaAccount(c, accounts.NaturalDay(e.clock.Now()))); q.Available() != capFen-used {
			t.Fatalf("round %d: quota left %d, want %d", round, q.Available(), capFen-used)
		}
		t.Logf("round %d: %d of %d succeeded, %s of %s used", round, ok, n, accounts.FormatAmount(used), accounts.FormatAmount(capFen))
	}
	e.verify()
}

func TestFrozenAndClosed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, accounts.Config{})
	ctx := context.Background()
	a := e.fund("Grace", 100*yuan, 100*yuan)
	b := e.fund("Heidi", 100*yuan, 0)
	if err := e.svc.RegisterMerchant(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Freeze(ctx, a); err != nil {
		t.Fatal(err)
	}
	before := e.counts()
	outs := map[string]func(id string) (accounts.Order, error){
		"withdraw":  func(id string) (accounts.Order, error) { return e.svc.Withdraw(ctx, a, id, yuan) },
		"subscribe": func(id string) (accounts.Order, error) { return e.svc.Subscribe(ctx, a, id, yuan) },
		"fast":      func(id string) (accounts.Order, error) { return e.svc.FastRedeem(ctx, a, id, yuan) },
		"standard":  func(id string) (accounts.Order, error) { return e.svc.StandardRedeem(ctx, a, id, yuan) },
		"transfer":  func(id string) (accounts.Order, error) { return e.svc.Transfer(ctx, a, id, b, yuan) },
		"pay":       func(id string) (accounts.Order, error) { return e.svc.Pay(ctx, a, id, 1, yuan) },
	}
	for name, op := range outs {
		if _, err := op("frozen-" + name); !errors.Is(err, accounts.ErrCustomerFrozen) {
			t.Errorf("%s while frozen: %v", name, err)
		}
	}
	if got := e.counts(); got != before {
		t.Fatalf("refused orders wrote rows: %+v -> %+v", before, got)
	}
	// Money still comes in.
	if _, err := e.svc.TopUp(ctx, a, "frozen-topup", yuan); err != nil {
		t.Fatalf("top up while frozen: %v", err)
	}
	if _, err := e.svc.Transfer(ctx, b, "to-frozen", a, yuan); err != nil {
		t.Fatalf("transfer to a frozen customer: %v", err)
	}
	h := e.holdings(a)
	if h.Status != accounts.StatusFrozen || h.FrozenCash != 102*yuan || h.FrozenShares != 100*yuan {
		t.Fatalf("frozen holdings %+v", h)
	}
	if _, err := e.svc.Close(ctx, a); !errors.Is(err, accounts.ErrCustomerFrozen) {
		t.Fatalf("close while frozen: %v", err)
	}
	if _, err := e.svc.Unfreeze(ctx, a); err != nil {
		t.Fatal(err)
	}
	for name, op := range outs {
		if _, err := op("thawed-" + name); err != nil {
			t.Errorf("%s after unfreeze: %v", name, err)
		}
	}

	// Close needs zero balances, pending ones included.
	if _, err := e.svc.Close(ctx, a); !errors.Is(err, accounts.ErrBalanceNotZero) {
		t.Fatalf("close with money: %v", err)
	}
	c := e.fund("Ivan", 10*yuan, 0)
	if _, err := e.svc.Subscribe(ctx, c, "sub", 10*yuan); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Close(ctx, c); !errors.Is(err, accounts.ErrBalanceNotZero) {
		t.Fatalf("close with shares awaiting confirmation: %v", err)
	}
	e.confirm(c, "sub", 10*yuan)
	if _, err := e.svc.FastRedeem(ctx, c, "out1", 10*yuan); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Withdraw(ctx, c, "out2", 10*yuan); err != nil {
		t.Fatal(err)
	}
	if got, err := e.svc.Close(ctx, c); err != nil || got.Status != accounts.StatusClosed {
		t.Fatalf("close at zero: %+v, %v", got, err)
	}
	if _, err := e.svc.Close(ctx, c); err != nil {
		t.Fatalf("close again: %v", err)
	}
	if !e.account(accounts.CashAccount(c)).Closed || !e.account(accounts.SharesAccount(c)).Closed {
		t.Fatal("ledger accounts not closed")
	}
	before = e.counts()
	closedOps := []func() error{
		func() error { _, err := e.svc.TopUp(ctx, c, "closed-1", yuan); return err },
		func() error { _, err := e.svc.Withdraw(ctx, c, "closed-2", yuan); return err },
		func() error { _, err := e.svc.FastRedeem(ctx, c, "closed-3", yuan); return err },
		func() error { _, err := e.svc.Freeze(ctx, c); return err },
		func() error { _, err := e.svc.Unfreeze(ctx, c); return err },
	}
	for i, op := range closedOps {
		if err := op(); !errors.Is(err, accounts.ErrCustomerClosed) {
			t.Errorf("op %d on a closed customer: %v", i, err)
		}
	}
	if _, err := e.svc.Transfer(ctx, b, "to-closed", c, yuan); !errors.Is(err, accounts.ErrCustomerClosed) {
		t.Errorf("transfer to a closed customer: %v", err)
	}
	if got := e.counts(); got != before {
		t.Fatalf("refused orders wrote rows: %+v -> %+v", before, got)
	}
	// A retry of an order placed before the close still gets its result.
	if o, err := e.svc.Withdraw(ctx, c, "out2", 10*yuan); err != nil || o.Status != accounts.OrderCompleted {
		t.Fatalf("retry after close: %+v, %v", o, err)
	}
	e.verify()
}

// TestIdempotency: identical retries return the original order, moving
// money once; conflicting retries are refused; a retry whose order row was
// lost is recognised by the ledger through the derived transfer ids.
func TestIdempotency(t *testing.T) {
	t.Parallel()
	e := newEnv(t, accounts.Config{})
	ctx := context.Background()
	a := e.fund("Judy", 1000*yuan, 1000*yuan)
	b := e.open("Karl")
	if err := e.svc.RegisterMerchant(ctx, 3); err != nil {
		t.Fatal(err)
	}
	ops := []struct {
		name     string
		do       func(amount int64) (accounts.Order, error)
		conflict func() (accounts.Order, error)
	}{
		{"top up", func(x int64) (accounts.Order, error) { return e.svc.TopUp(ctx, a, "top", x) },
			func() (accounts.Order, error) { return e.svc.Withdraw(ctx, a, "top", 10*yuan) }},
		{"subscribe", func(x int64) (accounts.Order, error) { return e.svc.Subscribe(ctx, a, "sub", x) },
			func() (accounts.Order, error) { return e.svc.Subscribe(ctx, a, "sub", 11*yuan) }},
		{"fast", func(x int64) (accounts.Order, error) { return e.svc.FastRedeem(ctx, a, "fast", x) },
			func() (accounts.Order, error) { return e.svc.StandardRedeem(ctx, a, "fast", 10*yuan) }},
		{"standard", func(x int64) (accounts.Order, error) { return e.svc.StandardRedeem(ctx, a, "std", x) },
			func() (accounts.Order, error) { return e.svc.StandardRedeem(ctx, a, "std", 1) }},
		{"transfer", func(x int64) (accounts.Order, error) { return e.svc.Transfer(ctx, a, "xfer", b, x) },
			func() (accounts.Order, error) {
				c := e.open("Other")
				return e.svc.Transfer(ctx, a, "xfer", c, 10*yuan)
			}},
		{"pay", func(x int64) (accounts.Order, error) { return e.svc.Pay(ctx, a, "pay", 3, x) },
			func() (accounts.Order, error) { return e.svc.Pay(ctx, a, "pay", 4, 10*yuan) }},
		{"withdraw", func(x int64) (accounts.Order, error) { return e.svc.Withdraw(ctx, a, "wd", x) },
			func() (accounts.Order, error) { return e.svc.Withdraw(ctx, a, "wd", 10*yuan+1) }},
	}
	for _, op := range ops {
		first, err := op.do(10 * yuan)
		if err != nil {
			t.Fatalf("%s: %v", op.name, err)
		}
		h, n := e.holdings(a), e.counts()
		// Retries, sequential and concurrent, and one a day later.
		e.clock.Add(24 * time.Hour)
		retries := make([]accounts.Order, 8)
		errs := make([]error, 8)
		parallel(8, func(i int) { retries[i], errs[i] = op.do(10 * yuan) })
		e.clock.Add(-24 * time.Hour)
		for i := range retries {
			if errs[i] != nil || retries[i] != first {
				t.Fatalf("%s: retry %d: %+v, %v; first %+v", op.name, i, retries[i], errs[i], first)
			}
		}
		if got, err := op.conflict(); !errors.Is(err, accounts.ErrIdempotencyConflict) || got.ID != first.ID {
			t.Fatalf("%s: conflicting retry: %+v, %v", op.name, got, err)
		}
		if e.holdings(a) != h || e.counts().Transfers != n.Transfers {
			t.Fatalf("%s: retries moved money: %+v -> %+v", op.name, h, e.holdings(a))
		}
	}

	// A rejected order stays rejected for its request id, even once it
	// would fit.
	if _, err := e.svc.Withdraw(ctx, b, "big", 100*yuan); !errors.Is(err, accounts.ErrInsufficientFunds) {
		t.Fatalf("withdraw beyond balance: %v", err)
	}
	if _, err := e.svc.TopUp(ctx, b, "fill", 1000*yuan); err != nil {
		t.Fatal(err)
	}
	if o, err := e.svc.Withdraw(ctx, b, "big", 100*yuan); !errors.Is(err, accounts.ErrInsufficientFunds) || o.Status != accounts.OrderRejected {
		t.Fatalf("retry of a rejected withdrawal: %+v, %v", o, err)
	}

	// The order row is lost after the ledger applied the money (as if the
	// commit of the orders table failed): the retry is recognised by the
	// ledger and the money moves once.
	before := e.holdings(b)
	if _, err := e.svc.Withdraw(ctx, b, "lost", 7*yuan); err != nil {
		t.Fatal(err)
	}
	if _, err := e.pool.Exec(ctx, `DELETE FROM orders WHERE customer_id = $1 AND request_id = 'lost'`, b); err != nil {
		t.Fatal(err)
	}
	if o, err := e.svc.Withdraw(ctx, b, "lost", 7*yuan); err != nil || o.Status != accounts.OrderCompleted {
		t.Fatalf("retry with its order row lost: %+v, %v", o, err)
	}
	if got := e.holdings(b).AvailableCash; got != before.AvailableCash-7*yuan {
		t.Fatalf("cash %d, want %d", got, before.AvailableCash-7*yuan)
	}
	if _, err := e.pool.Exec(ctx, `DELETE FROM orders WHERE customer_id = $1 AND request_id = 'lost'`, b); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Withdraw(ctx, b, "lost", 8*yuan); !errors.Is(err, accounts.ErrIdempotencyConflict) {
		t.Fatalf("conflicting retry with its order row lost: %v", err)
	}
	e.verify()
}

// TestBadInputWritesNothing: every refused amount and request id is a
// clear error, and no row appears in the orders table or the journal.
func TestBadInputWritesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, accounts.Config{})
	ctx := context.Background()
	a := e.fund("Lena", 100*yuan, 100*yuan)
	b := e.open("Mike")
	before := e.counts()
	ops := map[string]func(amount int64) (accounts.Order, error){
		"top up":    func(x int64) (accounts.Order, error) { return e.svc.TopUp(ctx, a, "bad", x) },
		"subscribe": func(x int64) (accounts.Order, error) { return e.svc.Subscribe(ctx, a, "bad", x) },
		"fast":      func(x int64) (accounts.Order, error) { return e.svc.FastRedeem(ctx, a, "bad", x) },
		"standard":  func(x int64) (accounts.Order, error) { return e.svc.StandardRedeem(ctx, a, "bad", x) },
		"transfer":  func(x int64) (accounts.Order, error) { return e.svc.Transfer(ctx, a, "bad", b, x) },
		"pay":       func(x int64) (accounts.Order, error) { return e.svc.Pay(ctx, a, "bad", 1, x) },
		"withdraw":  func(x int64) (accounts.Order, error) { return e.svc.Withdraw(ctx, a, "bad", x) },
	}
	// Text as it arrives at the edge: ParseAmount refuses it, so no
	// operation is called.
	for _, s := range []string{"0", "-1", "0.001", "1e3", "NaN", "", " 1", "99999999999999999999", "100000000.01"} {
		if fen, err := accounts.ParseAmount(s); !errors.Is(err, accounts.ErrInvalidAmount) {
			t.Errorf("ParseAmount(%q) = %d, %v", s, fen, err)
		} else {
			t.Logf("%-24q -> %v", s, err)
		}
	}
	// Fen handed to the service directly are checked again.
	for name, op := range ops {
		for _, fen := range []int64{0, -1, -100, accounts.AmountMaxFen + 1, 1 << 62} {
			if _, err := op(fen); !errors.Is(err, accounts.ErrInvalidAmount) {
				t.Errorf("%s of %d fen: %v", name, fen, err)
			}
		}
	}
	for _, id := range []string{"", " ", "a b", "é", string(make([]byte, 65))} {
		if _, err := e.svc.TopUp(ctx, a, id, yuan); !errors.Is(err, accounts.ErrInvalidRequestID) {
			t.Errorf("request id %q: %v", id, err)
		}
	}
	if _, err := e.svc.Transfer(ctx, a, "self", a, yuan); !errors.Is(err, accounts.ErrSameCustomer) {
		t.Errorf("transfer to oneself: %v", err)
	}
	if _, err := e.svc.Transfer(ctx, a, "nobody", 12345, yuan); !errors.Is(err, accounts.ErrCustomerNotFound) {
		t.Errorf("transfer to nobody: %v", err)
	}
	if _, err := e.svc.Pay(ctx, a, "no-merchant", 99, yuan); !errors.Is(err, accounts.ErrMerchantNotFound) {
		t.Errorf("pay an unknown merchant: %v", err)
	}
	if got := e.counts(); got != before {
		t.Fatalf("refused input wrote rows: %+v -> %+v", before, got)
	}
	if h := e.holdings(a); h.AvailableCash != 100*yuan || h.Shares != 100*yuan {
		t.Fatalf("holdings changed: %+v", h)
	}
	e.verify()
}

func TestHistory(t *testing.T) {
	t.Parallel()
	e := newEnv(t, accounts.Config{})
	ctx := context.Background()
	a := e.open("Nina")
	b := e.open("Omar")
	if err := e.svc.RegisterMerchant(ctx, 5); err != nil {
		t.Fatal(err)
	}
	step := func(at string, f func() (accounts.Order, error)) {
		t.Helper()
		e.clock.Set(cst(at))
		if _, err := f(); err != nil {
			t.Fatalf("at %s: %v", at, err)
		}
	}
	step("2026-11-16 10:00:00", func() (accounts.Order, error) { return e.svc.TopUp(ctx, a, "h1", 500*yuan) })
	step("2026-11-16 11:00:00", func() (accounts.Order, error) { return e.svc.Subscribe(ctx, a, "h2", 300*yuan) })
	step("2026-11-17 10:00:00", func() (accounts.Order, error) { return e.svc.Transfer(ctx, a, "h3", b, 50*yuan) })
	step("2026-11-17 16:00:00", func() (accounts.Order, error) { return e.svc.TopUp(ctx, b, "h4", 10*yuan) })
	step("2026-11-18 10:00:00", func() (accounts.Order, error) { return e.svc.Transfer(ctx, b, "h5", a, 20*yuan) })
	step("2026-11-18 11:00:00", func() (accounts.Order, error) { return e.svc.Withdraw(ctx, a, "h6", 70*yuan) })
	e.confirm(a, "h2", 300*yuan)
	step("2026-11-19 10:00:00", func() (accounts.Order, error) { return e.svc.Pay(ctx, a, "h7", 5, 30*yuan) })
	step("2026-11-19 11:00:00", func() (accounts.Order, error) { return e.svc.FastRedeem(ctx, a, "h8", 40*yuan) })

	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("pagination does not end")
		}
		page, err := e.svc.History(ctx, accounts.HistoryQuery{CustomerID: a, Limit: 3, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, en := range page.Entries {
			s := en.RequestID
			if en.Incoming {
				s += "<"
			}
			got = append(got, s)
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	if want := "[h8 h7 h6 h5< h3 h2 h1]"; fmt.Sprint(got) != want {
		t.Fatalf("history %v, want %s", got, want)
	}
	page, err := e.svc.History(ctx, accounts.HistoryQuery{CustomerID: a,
		Kinds: []accounts.OrderKind{accounts.KindTransfer, accounts.KindTopUp}, From: day("2026-11-17"), To: day("2026-11-18")})
	if err != nil {
		t.Fatal(err)
	}
	got = got[:0]
	for _, en := range page.Entries {
		got = append(got, en.RequestID)
	}
	if want := "[h5 h3]"; fmt.Sprint(got) != want || page.NextCursor != "" {
		t.Fatalf("filtered history %v (next %q), want %s", got, page.NextCursor, want)
	}
	if _, err := e.svc.History(ctx, accounts.HistoryQuery{CustomerID: a, Cursor: "x"}); !errors.Is(err, accounts.ErrInvalidCursor) {
		t.Fatalf("bad cursor: %v", err)
	}
	h := e.holdings(a)
	want := accounts.Holdings{CustomerID: a, Status: accounts.StatusActive,
		AvailableCash: 500*yuan - 300*yuan - 50*yuan + 20*yuan - 70*yuan + 40*yuan, Shares: 300*yuan - 30*yuan - 40*yuan}
	if h != want {
		t.Fatalf("holdings %+v, want %+v", h, want)
	}
	if _, err := e.svc.OrderStatus(ctx, a, "nope"); !errors.Is(err, accounts.ErrOrderNotFound) {
		t.Fatalf("unknown order: %v", err)
	}
	e.verify()
}

// TestConcurrentSameRequest places one new request id from 20 goroutines
// at once: one order, money moved once, every caller the same answer.
func TestConcurrentSameRequest(t *testing.T) {
	t.Parallel()
	e := newEnv(t, accounts.Config{})
	ctx := context.Background()
	a := e.fund("Pat", 0, 100*yuan)
	for round, amount := range []int64{60 * yuan, 60 * yuan} { // the second does not fit
		req := fmt.Sprintf("same-%d", round)
		orders := make([]accounts.Order, 20)
		errs := make([]error, 20)
		parallel(20, func(i int) { orders[i], errs[i] = e.svc.FastRedeem(ctx, a, req, amount) })
		for i := range orders {
			if orders[i] != orders[0] || !sameErr(errs[i], errs[0]) {
				t.Fatalf("round %d: caller %d got %+v, %v; caller 0 %+v, %v", round, i, orders[i], errs[i], orders[0], errs[0])
			}
		}
		if round == 1 && !errors.Is(errs[0], accounts.ErrInsufficientFunds) {
			t.Fatalf("round 1: %v", errs[0])
		}
	}
	if h := e.holdings(a); h.AvailableCash != 60*yuan || h.Shares != 40*yuan {
		t.Fatalf("holdings %+v", h)
	}
	var n int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM orders WHERE customer_id = $1 AND request_id LIKE 'same-%'`, a).Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d orders, %v", n, err)
	}
	e.verify()
}
