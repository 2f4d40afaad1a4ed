package postgres

import (
	"context"
	"fmt"
	"iter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fundplatform/fund/accounts"
)

// SeedCustomers creates customers 1 to n, active, created at created
// (request ids "seed-<id>", names "holder <id>"), in one statement, for
// benchmarks and tests on a database that holds no customers yet; later
// customers get ids after n. Their ledger accounts are the caller's
// (ledger/postgres Store.Seed).
func SeedCustomers(ctx context.Context, pool *pgxpool.Pool, n int64, created time.Time) error {
	if _, err := pool.Exec(ctx, `INSERT INTO customers (id, request_id, name, status, created_at) OVERRIDING SYSTEM VALUE
		SELECT g, 'seed-' || g, 'holder ' || g, $3, $2 FROM generate_series(1, $1::bigint) g`,
		n, created, string(accounts.StatusActive)); err != nil {
		return fmt.Errorf("seed customers: %w", err)
	}
	if _, err := pool.Exec(ctx, `SELECT setval(pg_get_serial_sequence('customers', 'id'), $1)`, max(n, 1)); err != nil {
		return fmt.Errorf("seed customer ids: %w", err)
	}
	return nil
}

// SeedOrders writes orders as they are stored (kind, amount, dates,
// status, creation time; ids are assigned in order), by COPY, for
// benchmarks and tests. The money they move is the caller's to seed in the
// ledger.
func SeedOrders(ctx context.Context, pool *pgxpool.Pool, orders iter.Seq[accounts.Order]) error {
	next, stop := iter.Pull(orders)
	defer stop()
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"orders"}, []string{"customer_id", "request_id", "kind", "amount",
		"counterparty", "trade_date", "confirm_date", "status", "reason", "created_at"}, &orderSeed{next: next}); err != nil {
		return fmt.Errorf("seed orders: %w", err)
	}
	return nil
}

type orderSeed struct {
	next func() (accounts.Order, bool)
	cur  accounts.Order
}

func (r *orderSeed) Next() bool {
	o, ok := r.next()
	r.cur = o
	return ok
}

func (r *orderSeed) Values() ([]any, error) {
	o := &r.cur
	return []any{int64(o.CustomerID), o.RequestID, string(o.Kind), o.Amount, o.Counterparty, o.TradeDate,
		dateOrNull(o.ConfirmDate), string(o.Status), o.Reason, o.CreatedAt}, nil
}

func (r *orderSeed) Err() error { return nil }
