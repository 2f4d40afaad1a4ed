package audit

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/loadtest"
)

// The orphan check does not trust the load generator's records: a client
// that gave up, or another client altogether, leaves no record, yet an
// order's money and its row must still agree. So it reads the databases:
//
//   - every journal entry of a customer order (the accounts service's kinds,
//     TopUp to Withdraw, and leg 1 of a saga paid by a customer; not quota
//     grants, settlement's entries, nor a saga's leg 2 or compensation)
//     written on the run's business dates has its order row, completed,
//     pending or refunded, under the customer its customer-side account
//     belongs to and the request id it carries (so it shows in the
//     customer's history, which lists those rows);
//   - every order row stored since the run's first, completed, pending or
//     refunded, has its leg-0 entry (LegID(customer, request, 0)) in the
//     journal.
//
// Both directions run once per accounts database, over the customers it
// holds (their shards). Where the accounts' tables share a database with
// the journal, as they do when the customers are spread over the ledger's
// databases, each direction is one statement there; the journal's date
// partitions keep it to the run's days. Another ledger database sends its
// candidate entries of those customers' shards to the accounts database
// (COPY; none when it holds none of them) and is asked about the row ids.

// appliedStatuses are the order statuses that say the money moved.
var appliedStatuses = []string{string(accounts.OrderCompleted), string(accounts.OrderPending), string(accounts.OrderRefunded)}

// entriesSQL selects the journal entries of customer orders on business
// dates $1..$2 on the shards $3 (a customer's orders are booked on its
// shard): id, customer, request id, and whether the request id was
// cut to fit beside a saga's payee (xshard.Leg1), so that only its start
// is known. The customer is the one whose account the entry touches (the
// payer, for a transfer between customers). Leg 2 of a saga carries the
// transfer's kind but is debited to an in-transit account: it is the
// saga's, not an order's, and left out.
var entriesSQL = fmt.Sprintf(`SELECT t.id, %[1]s AS customer_id,
		CASE WHEN t.kind = %[2]d THEN substring(t.user_data FROM '^x:[^:]*:[^:]*:(.*)$') ELSE t.user_data END,
		t.kind = %[2]d AND octet_length(t.user_data) >= %[3]d
	FROM transfers t
	WHERE t.business_date BETWEEN $1 AND $2 AND t.shard = ANY($3::int[])
		AND ((t.kind BETWEEN %[4]d AND %[5]d AND (%[6]s OR %[7]s) AND (t.kind <> %[9]d OR %[6]s))
			OR (t.kind = %[2]d AND t.debit_account_id < %[8]d))`,
	fmt.Sprintf(homeSQL, "CASE WHEN "+customerSideSQL("t.debit_account_id")+" THEN t.debit_account_id ELSE t.credit_account_id END"),
	sagaOutKind, ledger.MaxUserDataLen, orderKindFirst, orderKindLast,
	customerSideSQL("t.debit_account_id"), customerSideSQL("t.credit_account_id"), int64(customerAccountsEnd),
	accounts.TransferCustomerToCustomer)

// checkOrphans counts orphans both ways into a, naming a few, in each
// accounts database.
func checkOrphans(ctx context.Context, db *databases, sc scope, a *loadtest.Audit, problem func(string, ...any)) error {
	for d, adb := range db.accounts {
		if err := checkOrphansIn(ctx, db, adb, sc.minOrderIDs[d], sc, a, problem); err != nil {
			return fmt.Errorf("%w: orphans: %w", ErrAudit, err)
		}
	}
	a.OrphansChecked = true
	return nil
}

// checkOrphansIn counts the orphans of the customers of accounts database
// adb; minOrderID is the run's first order row there (0 = none).
func checkOrphansIn(ctx context.Context, db *databases, adb accountsDB, minOrderID int64, sc scope, a *loadtest.Audit,
	problem func(string, ...any)) error {
	tx, err := adb.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if !sc.first.IsZero() {
		if err := entriesWithoutRow(ctx, tx, db, adb, sc, a, problem); err != nil {
			return fmt.Errorf("entries without order row: %w", err)
		}
	}
	if minOrderID > 0 {
		if err := rowsWithoutEntry(ctx, tx, db, adb.dsn, minOrderID, sc, a, problem); err != nil {
			return fmt.Errorf("order rows without entry: %w", err)
		}
	}
	return tx.Commit(ctx)
}

// entriesWithoutRow gathers the entries of the orders of adb's customers
// from every ledger database into a temporary table of adb (tx) and
// anti-joins it with the order rows.
func entriesWithoutRow(ctx context.Context, tx pgx.Tx, db *databases, adb accountsDB, sc scope, a *loadtest.Audit,
	problem func(string, ...any)) error {
	if _, err := tx.Exec(ctx, `CREATE TEMPORARY TABLE audit_entries
		(id uuid, customer_id bigint, request_id text, cut boolean) ON COMMIT DROP`); err != nil {
		return err
	}
	for _, l := range db.ledgers {
		if l.dsn == adb.dsn {
			if _, err := tx.Exec(ctx, `INSERT INTO audit_entries `+entriesSQL, sc.first, sc.last, adb.shards); err != nil {
				return err
			}
			continue
		}
		if err := copyEntries(ctx, l.pool, tx, sc, adb.shards); err != nil {
			return err
		}
	}
	// A cut request id (rare: only one longer than a saga's user data
	// leaves room for) matches the row whose request id it starts.
	rows, err := tx.Query(ctx, `SELECT e.id::text, e.customer_id, e.request_id, count(*) OVER (),
			(SELECT count(*) FROM audit_entries)
		FROM audit_entries e
		WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = e.customer_id AND o.request_id = e.request_id
				AND o.status = ANY($1))
			AND (NOT e.cut OR NOT EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = e.customer_id
				AND starts_with(o.request_id, e.request_id) AND o.status = ANY($1)))
		ORDER BY e.customer_id, e.request_id
		LIMIT $2`, appliedStatuses, samplesMax)
	if err != nil {
		return err
	}
	var (
		id, req       string
		customer      int64
		orphans, seen int64
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &customer, &req, &orphans, &seen}, func() error {
		problem("orphan: journal entry %s of customer %d's order %s has no order row (not in the history)", id, customer, req)
		return nil
	})
	if err != nil {
		return err
	}
	if orphans == 0 {
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM audit_entries`).Scan(&seen); err != nil {
			return err
		}
	}
	a.EntriesWithoutRow += orphans
	a.EntriesScanned += seen
	return nil
}

// copyEntries streams the customer orders' entries on shards of a ledger
// database other than the accounts database into its audit_entries.
func copyEntries(ctx context.Context, from *pgxpool.Pool, to pgx.Tx, sc scope, shards []int32) error {
	rows, err := from.Query(ctx, entriesSQL, sc.first, sc.last, shards)
	if err != nil {
		return err
	}
	defer rows.Close()
	_, err = to.CopyFrom(ctx, pgx.Identifier{"audit_entries"}, []string{"id", "customer_id", "request_id", "cut"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if !rows.Next() {
				return nil, rows.Err()
			}
			return rows.Values()
		}))
	return err
}

// rowsWithoutEntry derives the leg-0 id of every order row of the
// accounts database (tx; its DSN accountsDSN) stored since minOrderID whose
// money moved, in a temporary table, and marks those some ledger database
// has.
func rowsWithoutEntry(ctx context.Context, tx pgx.Tx, db *databases, accountsDSN string, minOrderID int64, sc scope,
	a *loadtest.Audit, problem func(string, ...any)) error {
	if _, err := tx.Exec(ctx, `CREATE TEMPORARY TABLE audit_rows ON COMMIT DROP AS
		SELECT o.customer_id, o.request_id, o.kind, `+idSQL("d.h")+` AS id, false AS found
		FROM orders o CROSS JOIN LATERAL (SELECT `+legZeroHashSQL("o.customer_id", "o.request_id")+` AS h) d
		WHERE o.id >= $1 AND o.status = ANY($2)`, minOrderID, appliedStatuses); err != nil {
		return err
	}
	// A row's entry was committed about when the row was stored, so on or
	// after the run's first date (less a day, for an entry written just
	// before a midnight that its row came after): the journal is searched
	// from there on.
	since := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	if !sc.first.IsZero() {
		since = sc.first.AddDate(0, 0, -1)
	}
	for _, l := range db.ledgers {
		if l.dsn == accountsDSN {
			if _, err := tx.Exec(ctx, `UPDATE audit_rows r SET found = true
				FROM transfers t WHERE t.id = r.id AND t.business_date >= $1`, since); err != nil {
				return err
			}
			continue
		}
		if err := markFound(ctx, tx, l.pool, since); err != nil {
			return err
		}
	}
	rows, err := tx.Query(ctx, `SELECT customer_id, request_id, kind, count(*) OVER (), (SELECT count(*) FROM audit_rows)
		FROM audit_rows WHERE NOT found ORDER BY customer_id, request_id LIMIT $1`, samplesMax)
	if err != nil {
		return err
	}
	var (
		customer      int64
		req, kind     string
		orphans, seen int64
	)
	_, err = pgx.ForEachRow(rows, []any{&customer, &req, &kind, &orphans, &seen}, func() error {
		problem("orphan: order row %s %s of customer %d has no journal entry", kind, req, customer)
		return nil
	})
	if err != nil {
		return err
	}
	if orphans == 0 {
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM audit_rows`).Scan(&seen); err != nil {
			return err
		}
	}
	a.RowsWithoutEntry += orphans
	a.RowsScanned += seen
	return nil
}

// markFound asks a ledger database without order rows which of the rows'
// ids not found yet its journal holds (from since on), in one join.
func markFound(ctx context.Context, tx pgx.Tx, ledgerPool *pgxpool.Pool, since time.Time) error {
	rows, err := tx.Query(ctx, `SELECT id FROM audit_rows WHERE NOT found`)
	if err != nil {
		return err
	}
	ids, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]any, error) { return r.Values() })
	if err != nil {
		return err
	}
	ltx, err := ledgerPool.Begin(ctx)
	if err != nil {
		return err
	}
	defer ltx.Rollback(ctx)
	if _, err := ltx.Exec(ctx, `CREATE TEMPORARY TABLE audit_row_ids (id uuid) ON COMMIT DROP`); err != nil {
		return err
	}
	if _, err := ltx.CopyFrom(ctx, pgx.Identifier{"audit_row_ids"}, []string{"id"}, pgx.CopyFromRows(ids)); err != nil {
		return err
	}
	rows, err = ltx.Query(ctx, `SELECT DISTINCT t.id::text FROM transfers t JOIN audit_row_ids USING (id)
		WHERE t.business_date >= $1`, since)
	if err != nil {
		return err
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for start := 0; start < len(found); start += queryBatch {
		batch := found[start:min(start+queryBatch, len(found))]
		if _, err := tx.Exec(ctx, `UPDATE audit_rows SET found = true WHERE id = ANY($1::uuid[])`, batch); err != nil {
			return err
		}
	}
	return ltx.Commit(ctx)
}
