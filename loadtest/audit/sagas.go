package audit

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/xshard"
	"github.com/fundplatform/fund/loadtest"
)

// A transfer between customers on two shards is a saga (ledger/xshard):
// leg 1 (the order's leg 0, kind xshard.KindOut) moves the payer's cash
// into the in-transit account of its shard, and the ledger owners'
// consumers then write leg 2 on the payee's shard or, when that shard
// refuses, the compensation on the payer's; the order row is pending until
// the accounts service learns which, then completed or refunded. The audit
// waits (bounded) for the pending ones, then judges every saga whose leg 1
// is on the run's business dates by the journal: exactly one of leg 2 and
// the compensation, agreeing with the order row; and the in-transit
// accounts of all shards net to zero.

// pendingPollMax bounds the pending transfer rows one poll of the wait
// looks at.
const pendingPollMax = 1000

// saga is leg 1 of a cross-shard transfer, as the journal holds it.
type saga struct {
	id       ledger.TransferID
	customer int64
	request  string // may be cut to fit beside the payee (xshard.Leg1)
	cut      bool
	in, back bool   // leg 2 / the compensation is in the journal
	status   string // the order row's; "" = no row (an orphan, counted there)
}

// checkSagas waits for the pending transfers, then classifies every saga
// of the run's dates and sums the in-transit accounts.
func checkSagas(ctx context.Context, db *databases, sc scope, wait time.Duration, a *loadtest.Audit, problem func(string, ...any)) error {
	if sc.anyOrders() {
		if err := waitSagas(ctx, db, sc, wait); err != nil {
			return fmt.Errorf("%w: wait for sagas: %w", ErrAudit, err)
		}
	}
	if !sc.first.IsZero() {
		sagas, err := readSagas(ctx, db, sc)
		if err != nil {
			return fmt.Errorf("%w: read sagas: %w", ErrAudit, err)
		}
		if err := sagaRows(ctx, db, sagas); err != nil {
			return fmt.Errorf("%w: sagas' orders: %w", ErrAudit, err)
		}
		classifySagas(sagas, a, problem)
	}
	net, err := inTransitNet(ctx, db)
	if err != nil {
		return fmt.Errorf("%w: in-transit net: %w", ErrAudit, err)
	}
	a.InTransitNet = net
	assets := make([]string, 0, len(net))
	for asset := range net {
		assets = append(assets, asset)
	}
	sort.Strings(assets)
	for _, asset := range assets {
		if net[asset] != 0 {
			problem("in transit: the in-transit accounts of %s net to %d, not 0", asset, net[asset])
		}
	}
	return nil
}

func inTransitZero(a *loadtest.Audit) bool {
	for _, n := range a.InTransitNet {
		if n != 0 {
			return false
		}
	}
	return true
}

// waitSagas returns once no transfer order stored since the run's first is
// pending with its saga still open in the journal (a pending row whose saga
// ended is resolved when read), or after wait.
func waitSagas(ctx context.Context, db *databases, sc scope, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		pending, full, err := pendingTransfers(ctx, db, sc)
		if err != nil {
			return err
		}
		if len(pending) == 0 {
			return nil
		}
		if err := closings(ctx, db, pending); err != nil {
			return err
		}
		open := 0
		for _, p := range pending {
			if !p.in && !p.back {
				open++
			}
		}
		if (open == 0 && !full) || !time.Now().Before(deadline) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(sagaPollEvery):
		}
	}
}

// pendingTransfers reads the transfer orders stored since the run's first
// that are pending, up to pendingPollMax from each accounts database; full
// reports whether one of them had more.
func pendingTransfers(ctx context.Context, db *databases, sc scope) (pending []*saga, full bool, err error) {
	for d, adb := range db.accounts {
		if sc.minOrderIDs[d] == 0 {
			continue
		}
		rows, err := adb.pool.Query(ctx, `SELECT customer_id, request_id FROM orders
			WHERE id >= $1 AND kind = $2 AND status = $3 LIMIT $4`,
			sc.minOrderIDs[d], string(accounts.KindTransfer), string(accounts.OrderPending), pendingPollMax)
		if err != nil {
			return nil, false, err
		}
		var s saga
		n, err := pgx.ForEachRow(rows, []any{&s.customer, &s.request}, func() error {
			p := s
			p.id = LegID(p.customer, p.request, 0)
			pending = append(pending, &p)
			return nil
		})
		if err != nil {
			return nil, false, err
		}
		full = full || n.RowsAffected() >= pendingPollMax
	}
	return pending, full, nil
}

// readSagas reads leg 1 of every saga paid by a customer on the run's
// business dates, from every ledger database, and whether each has ended.
func readSagas(ctx context.Context, db *databases, sc scope) ([]*saga, error) {
	var out []*saga
	// A leg 1 in the journal twice is one saga (the copy is caught as
	// duplicated and in the in-transit net).
	seen := map[ledger.TransferID]bool{}
	for _, l := range db.ledgers {
		rows, err := l.pool.Query(ctx, `SELECT t.id::text, t.debit_account_id, t.user_data FROM transfers t
			WHERE t.kind = $1 AND t.debit_account_id < $2 AND t.business_date BETWEEN $3 AND $4`,
			int32(sagaOutKind), int64(customerAccountsEnd), sc.first, sc.last)
		if err != nil {
			return nil, err
		}
		var (
			id, data string
			payer    ledger.AccountID
		)
		_, err = pgx.ForEachRow(rows, []any{&id, &payer, &data}, func() error {
			tid, err := ledger.ParseTransferID(id)
			if err != nil || seen[tid] {
				return err
			}
			seen[tid] = true
			s := &saga{id: tid, customer: ledger.HomeOf(payer), cut: len(data) >= ledger.MaxUserDataLen}
			// "x:<payee>:<kind>:<data>" (xshard.Leg1); the data is the
			// request id, or its start.
			if parts := strings.SplitN(data, ":", 4); len(parts) == 4 {
				s.request = parts[3]
			}
			out = append(out, s)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, closings(ctx, db, out)
}

// closings sets in and back of each saga: whether some ledger database
// holds its leg 2 or its compensation.
func closings(ctx context.Context, db *databases, sagas []*saga) error {
	for start := 0; start < len(sagas); start += queryBatch {
		batch := sagas[start:min(start+queryBatch, len(sagas))]
		ids := make([]string, 0, 2*len(batch))
		which := make(map[string]func(), 2*len(batch))
		for _, s := range batch {
			in, back := xshard.ClosingIDs(s.id)
			ids = append(ids, in.String(), back.String())
			which[in.String()] = func() { s.in = true }
			which[back.String()] = func() { s.back = true }
		}
		for _, l := range db.ledgers {
			rows, err := l.pool.Query(ctx, `SELECT id::text FROM transfer_ids WHERE id = ANY($1::uuid[])`, ids)
			if err != nil {
				return err
			}
			found, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return err
			}
			for _, id := range found {
				if set := which[id]; set != nil {
					set()
				}
			}
		}
	}
	return nil
}

// sagaRows sets each saga's order row status: the row of its payer whose
// request id it carries (or, cut, starts) and whose leg-0 id is the
// saga's, in the payer's accounts database.
func sagaRows(ctx context.Context, db *databases, sagas []*saga) error {
	byDB := make([][]*saga, len(db.accounts))
	for _, s := range sagas {
		d := db.accountsOf(s.customer)
		byDB[d] = append(byDB[d], s)
	}
	for d, adb := range db.accounts {
		if err := sagaRowsIn(ctx, adb.pool, byDB[d]); err != nil {
			return err
		}
	}
	return nil
}

// sagaRowsIn sets the order row status of sagas whose payers are in the
// accounts database p.
func sagaRowsIn(ctx context.Context, p *pgxpool.Pool, sagas []*saga) error {
	for start := 0; start < len(sagas); start += queryBatch {
		batch := sagas[start:min(start+queryBatch, len(sagas))]
		cs := make([]int64, len(batch))
		reqs := make([]string, len(batch))
		cuts := make([]bool, len(batch))
		for i, s := range batch {
			cs[i], reqs[i], cuts[i] = s.customer, s.request, s.cut
		}
		rows, err := p.Query(ctx, `SELECT k.i, o.request_id, o.status
			FROM unnest($1::bigint[], $2::text[], $3::boolean[]) WITH ORDINALITY AS k(customer_id, request_id, cut, i)
			JOIN orders o ON o.customer_id = k.customer_id
				AND (o.request_id = k.request_id OR (k.cut AND starts_with(o.request_id, k.request_id)))`, cs, reqs, cuts)
		if err != nil {
			return err
		}
		var (
			i           int64
			req, status string
		)
		_, err = pgx.ForEachRow(rows, []any{&i, &req, &status}, func() error {
			if s := batch[i-1]; LegID(s.customer, req, 0) == s.id {
				s.request, s.status = req, status
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// classifySagas counts how the sagas ended and names the few that did not
// end well.
func classifySagas(sagas []*saga, a *loadtest.Audit, problem func(string, ...any)) {
	named := 0
	bad := func(format string, args ...any) {
		if named < samplesMax {
			named++
			problem(format, args...)
		}
	}
	for _, s := range sagas {
		what := fmt.Sprintf("transfer %s of customer %d (leg 1 %s)", s.request, s.customer, s.id)
		var want accounts.OrderStatus
		switch {
		case s.in && s.back:
			a.SagasWrong++
			bad("saga: %s has both leg 2 and the compensation", what)
			continue
		case s.in:
			a.SagasCompleted++
			want = accounts.OrderCompleted
		case s.back:
			a.SagasRefunded++
			want = accounts.OrderRefunded
		default:
			a.SagasOpen++
			bad("saga: %s has neither leg 2 nor the compensation: its money is still in transit (%s)", what, rowState(s.status != "", order{status: s.status}))
			continue
		}
		switch accounts.OrderStatus(s.status) {
		case want, "": // no row: an orphan, counted by the orphan check
		case accounts.OrderPending:
			a.SagasUnresolved++
		default:
			a.SagasWrong++
			bad("saga: %s ended %s in the journal but its order row says %s", what, want, s.status)
		}
	}
}

// inTransitNet sums, per asset, the posted balance (credits less debits)
// of every in-transit account (xshard creates them with code
// xshard.KindOut) over every ledger database, from the journal, so that a
// running shard's unflushed balances count too. The in-transit ids share
// one range, far from every other account's, which lets the scan skip the
// rest before comparing ids.
func inTransitNet(ctx context.Context, db *databases) (map[string]int64, error) {
	net := map[string]int64{}
	for _, l := range db.ledgers {
		rows, err := l.pool.Query(ctx, `
			WITH it AS (SELECT array_agg(id) AS ids, min(id) AS lo, max(id) AS hi FROM accounts WHERE code = $1)
			SELECT t.asset, (coalesce(sum(t.amount) FILTER (WHERE t.credit_account_id = ANY(it.ids)), 0)
				- coalesce(sum(t.amount) FILTER (WHERE t.debit_account_id = ANY(it.ids)), 0))::bigint
			FROM transfers t, it
			WHERE (t.credit_account_id BETWEEN it.lo AND it.hi OR t.debit_account_id BETWEEN it.lo AND it.hi)
				AND t.flags & $2 = 0
			GROUP BY t.asset`, int32(xshard.KindOut), int32(ledger.Pending|ledger.VoidPending))
		if err != nil {
			return nil, err
		}
		var (
			asset int16
			n     int64
		)
		_, err = pgx.ForEachRow(rows, []any{&asset, &n}, func() error {
			net[ledger.Asset(asset).String()] += n
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return net, nil
}
