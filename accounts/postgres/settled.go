package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/ledger"
)

// What the nightly settlement run records in the accounts tables. The run
// must write these rows in its own transaction, the one that books its
// ledger entries and its step markers, so that a step is done once or not
// at all; so these functions take the caller's transaction instead of
// opening one on the Store's pool. Lending a pgx.Tx between two Postgres
// adapters of the same database (settlement/postgres to this package) is
// the same choice ledger/postgres made with ShardTx.Tx(): the transaction
// stays inside the adapters, and this package stays the only writer of
// its tables. The caller begins, commits and rolls back.

// IncomeProgressEvery is how many customer income rows RecordIncomeTx
// copies between calls of its progress function.
const IncomeProgressEvery = 10_000

// RecordIncomeTx appends the customers' income of date (customer_income,
// written once and never changed) by COPY in tx, n rows, row i being
// row(i), in that order. progress, if not nil, is called with
// IncomeProgressEvery after every IncomeProgressEvery rows sent (not at
// the end: the caller knows n). A row already stored fails the COPY (its
// primary key), and so the caller's transaction.
func RecordIncomeTx(ctx context.Context, tx pgx.Tx, date time.Time, n int,
	row func(i int) (accounts.CustomerID, int64), progress func(rows int64)) error {
	src := &incomeRows{n: n, row: row, date: date, progress: progress}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"customer_income"}, []string{"customer_id", "date", "amount"},
		src); err != nil {
		return fmt.Errorf("record customer income: %w", err)
	}
	return nil
}

// incomeRows is the pgx.CopyFromSource of RecordIncomeTx.
type incomeRows struct {
	n        int
	row      func(i int) (accounts.CustomerID, int64)
	date     time.Time
	i        int
	progress func(int64)
}

func (r *incomeRows) Next() bool {
	r.i++
	if r.i <= r.n && r.i%IncomeProgressEvery == 0 && r.progress != nil {
		r.progress(IncomeProgressEvery)
	}
	return r.i <= r.n
}

func (r *incomeRows) Values() ([]any, error) {
	c, amount := r.row(r.i - 1)
	return []any{int64(c), r.date, amount}, nil
}

func (r *incomeRows) Err() error { return nil }

// CompleteOrdersTx marks the pending orders keyed by customers[i] and
// requestIDs[i] completed (their status only) in tx. Every one must be
// pending: an order missing or no longer pending is a broken invariant
// (ledger.ErrInvariantBroke), and the caller's transaction must not commit.
func CompleteOrdersTx(ctx context.Context, tx pgx.Tx, customers []int64, requestIDs []string) error {
	tag, err := tx.Exec(ctx, `UPDATE orders o SET status = 'completed'
		FROM unnest($1::bigint[], $2::text[]) AS u(customer_id, request_id)
		WHERE o.customer_id = u.customer_id AND o.request_id = u.request_id AND o.status = 'pending'`,
		customers, requestIDs)
	if err != nil {
		return fmt.Errorf("complete orders: %w", err)
	}
	if n := len(customers); int(tag.RowsAffected()) != n {
		return fmt.Errorf("%w: completed %d of %d due orders", ledger.ErrInvariantBroke, tag.RowsAffected(), n)
	}
	return nil
}
