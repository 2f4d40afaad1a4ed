package postgres

import (
	"github.com/jackc/pgx/v5"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/ledger"
)

// OrderRowsWriter writes the order rows that orders' ledger requests carry
// (accounts.OrderRow, encoded as ledger attachments) in the ledger's batch
// transaction: it is the ledger store's attachment writer (ledger/postgres
// Config.Attachments), given to the ledger owner by its composition (fundd
// ledger, the dev stack). The orders table must be in the ledger's
// database, as it is wherever the customers share their shard's database
// (schema.Migrate puts both schemas in every database).
//
// Each row's status is the rule's outcome of its request's results, the
// one the service answers with; a request whose outcome is an error gets
// no row. One INSERT for every row of the transaction, whatever their
// number. A key written already is left as it is (a request retried after
// its commit carries its row again), except a rejected row whose key's
// chain has now applied: the entries this transaction writes are the
// truth, and the row must say so. (That happens only when a caller gave up
// on a first attempt that was then rejected, and a retry overtook its
// row's commit with the money there by then.)
//
// An attachment it cannot decode fails the transaction: it is a bug of
// the service that encoded it, and writing the batch without that row
// would leave money moved without an order.
func OrderRowsWriter(q *pgx.Batch, as []ledger.Attached) error {
	var rows orderRows
	at := make(map[orderKey]int, len(as)) // a key's row in rows: one per key and statement
	for _, a := range as {
		r, err := accounts.DecodeOrderRow(a.Data)
		if err != nil {
			return err
		}
		status, reason, err := r.Outcome(a.Results)
		if err != nil {
			continue
		}
		o := r.Order
		o.Status, o.Reason = status, reason
		k := orderKey{o.CustomerID, o.RequestID}
		if i, ok := at[k]; ok {
			// The same key twice in one transaction (a retry sent while
			// its first attempt waited): keep the applied outcome.
			if rows.statuses[i] == string(accounts.OrderRejected) && status != accounts.OrderRejected {
				rows.statuses[i], rows.reasons[i] = string(status), reason
			}
			continue
		}
		at[k] = len(rows.cust)
		rows.add(&o)
	}
	if len(rows.cust) > 0 {
		q.Queue(`
			INSERT INTO orders AS o (customer_id, request_id, kind, amount, counterparty, trade_date, confirm_date, status,
				reason, created_at)
			SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::date[], $7::date[],
				$8::text[], $9::text[], $10::timestamptz[])
			ON CONFLICT (customer_id, request_id) DO UPDATE SET status = EXCLUDED.status, reason = EXCLUDED.reason
				WHERE o.status = 'rejected' AND EXCLUDED.status <> 'rejected'`,
			rows.cust, rows.req, rows.kind, rows.amount, rows.counter, rows.trade, rows.confirm, rows.statuses, rows.reasons,
			rows.created)
	}
	return nil
}
