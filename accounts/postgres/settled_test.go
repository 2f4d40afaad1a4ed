package postgres_test

import (
	"context"
	"errors"
	"testing"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/accounts/postgres"
	"github.com/fundplatform/fund/ledger"
)

// TestSettledInCallersTx: what the settlement run records here (income,
// completed orders) is written in the caller's transaction, as the
// service role: nothing is visible before the caller commits, nothing
// after it rolls back, and a due order that is not pending breaks an
// invariant.
func TestSettledInCallersTx(t *testing.T) {
	t.Parallel()
	e := newEnvOn(t, accounts.Config{}, serviceDSN(t))
	ctx := context.Background()
	a, b := e.fund("Rita", 5000, 0), e.fund("Sam", 5000, 0)
	for _, c := range []accounts.CustomerID{a, b} {
		if _, err := e.svc.Subscribe(ctx, c, "sub", 1000); err != nil {
			t.Fatal(err)
		}
	}
	date := day("2026-11-17")
	income := []struct {
		c      accounts.CustomerID
		amount int64
	}{{a, 12}, {b, -3}}
	row := func(i int) (accounts.CustomerID, int64) { return income[i].c, income[i].amount }
	pending := func() (n int64) {
		t.Helper()
		if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM orders WHERE status = 'pending'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	write := func(commit bool, customers []int64, reqs []string) error {
		t.Helper()
		tx, err := e.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if err := postgres.RecordIncomeTx(ctx, tx, date, len(income), row, nil); err != nil {
			return err
		}
		if err := postgres.CompleteOrdersTx(ctx, tx, customers, reqs); err != nil {
			return err
		}
		if !commit {
			return nil
		}
		return tx.Commit(ctx)
	}
	due := []int64{int64(a), int64(b)}
	if err := write(false, due, []string{"sub", "sub"}); err != nil {
		t.Fatal(err)
	}
	if n := pending(); n != 2 || e.holdings(a).YesterdayIncome != 0 {
		t.Fatalf("after a rollback: %d pending orders, yesterday's income %d; want 2 and 0", n,
			e.holdings(a).YesterdayIncome)
	}
	if err := write(true, due, []string{"sub", "missing"}); !errors.Is(err, ledger.ErrInvariantBroke) {
		t.Fatalf("an order that is not pending: %v, want ErrInvariantBroke", err)
	}
	if err := write(true, due, []string{"sub", "sub"}); err != nil {
		t.Fatal(err)
	}
	if n := pending(); n != 0 {
		t.Fatalf("%d pending orders after the commit, want 0", n)
	}
	for _, in := range income {
		if day, _, err := e.store.Income(ctx, in.c, date); err != nil || day != in.amount {
			t.Fatalf("income of %d: %d %v, want %d", in.c, day, err, in.amount)
		}
	}
	// Income is written once: the same rows again fail the COPY.
	if err := write(true, nil, nil); err == nil {
		t.Fatal("the same income recorded twice")
	}
}
