package postgres

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/settlement"
)

// The settlement run writes the ledger's tables of the shards it owns
// directly, set-based, instead of sending ten million transfers through a
// sequencer: the lease it holds fences every sequencer (ledger_fence
// refuses their commits), so for the run it is the shard's single writer.
// It keeps every rule the sequencer keeps: each entry balances (one debit,
// one credit, same asset); its id goes into transfer_ids (a repeat fails
// the transaction); balances change in the same transaction as the journal
// and are checked by the accounts table's constraints (no available balance
// below zero); timestamps continue the shard's, strictly increasing; the
// outbox gets the entries for the relay; the fence advances last_timestamp
// and, since every balance is then current, the checkpoint with it. When
// the lease goes back, a sequencer loads the shard from these tables.

// outboxEventsMax bounds the events packed into one outbox row.
const outboxEventsMax = 10_000

// shardsOf returns the number of shards the date's run was opened with.
func shardsOf(ctx context.Context, q querier, date time.Time) (int, error) {
	var n int
	if err := q.QueryRow(ctx, `SELECT shards FROM settlement_runs WHERE date = $1`, date).Scan(&n); err != nil {
		return 0, fmt.Errorf("run of %s: %w", date.Format(time.DateOnly), err)
	}
	return n, nil
}

// Prepare implements settlement.Store.
func (s *Store) Prepare(ctx context.Context, l settlement.Lease, date time.Time) (int64, error) {
	// Entries get timestamps of now; their partitions must exist before a
	// transaction inserts (creating one locks the parent table).
	today := ledger.BusinessDate(time.Now().UnixNano())
	if err := s.ledger.EnsurePartitions(ctx, today, today.AddDate(0, 0, 1)); err != nil {
		return 0, err
	}
	shards, err := shardsOf(ctx, s.pool, date)
	if err != nil {
		return 0, err
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx)
	var last, checkpoint int64
	if err := tx.QueryRow(ctx, `SELECT last_timestamp, checkpoint_ts FROM ledger_shards WHERE shard = $1 FOR UPDATE`,
		l.Shard).Scan(&last, &checkpoint); err != nil {
		return 0, fmt.Errorf("shard %d: %w", l.Shard, err)
	}
	if checkpoint < last {
		// A writer stopped without flushing every balance: add the journal
		// entries each account's stored balance does not have yet.
		if _, err := tx.Exec(ctx, catchUpSQL, l.Shard, checkpoint, ledger.BusinessDate(checkpoint), last); err != nil {
			return 0, fmt.Errorf("catch up shard %d: %w", l.Shard, err)
		}
	}
	var ids []int64
	var assets []int16
	for canonical, asset := range settlement.SystemAccounts() {
		ids = append(ids, int64(settlement.SystemAccountOn(canonical, l.Shard, shards)))
		assets = append(assets, int16(asset))
	}
	if _, err := tx.Exec(ctx, `INSERT INTO accounts (id, shard, asset, code, flags, created_ts, balance_ts)
		SELECT u.id, $1, u.asset, $4, 0, $2, $2 FROM unnest($3::bigint[], $5::smallint[]) AS u(id, asset)
		ON CONFLICT (id) DO NOTHING`, l.Shard, last, ids, int32(accounts.CodeSystem), assets); err != nil {
		return 0, fmt.Errorf("system accounts of shard %d: %w", l.Shard, err)
	}
	endOfDay := time.Date(date.Year(), date.Month(), date.Day()+1, 0, 0, 0, 0, ledger.BusinessZone()).UnixNano() - 1
	var cut int64
	if err := tx.QueryRow(ctx, `
		WITH ins AS (INSERT INTO settlement_cuts (date, shard, cut_ts) VALUES ($1, $2, $3)
			ON CONFLICT (date, shard) DO NOTHING RETURNING cut_ts)
		SELECT cut_ts FROM ins UNION ALL SELECT cut_ts FROM settlement_cuts WHERE date = $1 AND shard = $2`,
		date, l.Shard, min(last, endOfDay)).Scan(&cut); err != nil {
		return 0, fmt.Errorf("cut of shard %d: %w", l.Shard, err)
	}
	if _, err := tx.Exec(ctx, `SELECT ledger_fence($1, $2, $3, $3)`, l.Shard, l.Epoch, last); err != nil {
		return 0, fenceErr(l, err)
	}
	if err := s.fail("prepare/" + strconv.Itoa(l.Shard) + "/commit"); err != nil {
		return 0, err
	}
	return cut, tx.Commit(ctx)
}

// catchUpSQL adds to each account of a shard the effects of the journal
// entries after its balance_ts (as ledger/postgres replays them on load)
// and moves balance_ts to the shard's last timestamp.
const catchUpSQL = `
	WITH j AS (
		SELECT debit_account_id AS id, true AS debit, amount, pending_amount, flags, ts FROM transfers
			WHERE shard = $1 AND ts > $2 AND business_date >= $3
		UNION ALL
		SELECT credit_account_id, false, amount, pending_amount, flags, ts FROM transfers
			WHERE shard = $1 AND ts > $2 AND business_date >= $3
	), e AS (
		SELECT j.id,
			coalesce(sum(j.amount) FILTER (WHERE j.debit AND j.flags & 10 = 0), 0) AS dpost,
			coalesce(sum(j.amount) FILTER (WHERE NOT j.debit AND j.flags & 10 = 0), 0) AS cpost,
			coalesce(sum(j.amount) FILTER (WHERE j.debit AND j.flags & 2 <> 0), 0)
				- coalesce(sum(j.pending_amount) FILTER (WHERE j.debit AND j.flags & 12 <> 0), 0) AS dpend,
			coalesce(sum(j.amount) FILTER (WHERE NOT j.debit AND j.flags & 2 <> 0), 0)
				- coalesce(sum(j.pending_amount) FILTER (WHERE NOT j.debit AND j.flags & 12 <> 0), 0) AS cpend
		FROM j JOIN accounts a ON a.id = j.id AND j.ts > a.balance_ts
		GROUP BY j.id
	)
	UPDATE accounts a SET debits_posted = a.debits_posted + e.dpost, credits_posted = a.credits_posted + e.cpost,
		debits_pending = a.debits_pending + e.dpend, credits_pending = a.credits_pending + e.cpend, balance_ts = $4
	FROM e WHERE a.id = e.id`

func fenceErr(l settlement.Lease, err error) error {
	return fmt.Errorf("shard %d epoch %d: %w: %v", l.Shard, l.Epoch, ledger.ErrFenced, err)
}

// SettleOrders implements settlement.Store.
func (s *Store) SettleOrders(ctx context.Context, l settlement.Lease, date time.Time, orders []settlement.DueOrder) (settlement.StepResult, error) {
	if r, done, err := stepResult(ctx, s.pool, date, l.Shard, "orders"); err != nil || done {
		return r, err
	}
	shards, err := shardsOf(ctx, s.pool, date)
	if err != nil {
		return settlement.StepResult{}, err
	}
	var posts, cash []settlement.DueOrder
	for _, o := range orders {
		if ledger.ShardOf(accounts.SharesAccount(o.Customer), shards) == l.Shard {
			posts = append(posts, o)
		}
		if o.Kind == accounts.KindStandardRedeem && ledger.ShardOf(accounts.CashAccount(o.Customer), shards) == l.Shard {
			cash = append(cash, o)
		}
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return settlement.StepResult{}, err
	}
	defer tx.Rollback(ctx)
	// Read under the fence's row lock: nothing else writes the shard.
	if _, err := tx.Exec(ctx, `SELECT 1 FROM ledger_shards WHERE shard = $1 FOR UPDATE`, l.Shard); err != nil {
		return settlement.StepResult{}, err
	}
	pendingIDs := make([]pgtype.UUID, len(posts))
	for i, o := range posts {
		pendingIDs[i] = pgtype.UUID{Bytes: o.PendingID(), Valid: true}
	}
	pend := map[ledger.TransferID]ledger.PendingTransfer{}
	rows, err := tx.Query(ctx, `SELECT id, debit_account_id, credit_account_id, amount, asset, state FROM pending_transfers
		WHERE id = ANY($1) AND shard = $2`, pendingIDs, l.Shard)
	if err != nil {
		return settlement.StepResult{}, fmt.Errorf("pending transfers: %w", err)
	}
	var p ledger.PendingTransfer
	var pid pgtype.UUID
	if _, err := pgx.ForEachRow(rows, []any{&pid, &p.DebitAccountID, &p.CreditAccountID, &p.Amount, &p.Asset, &p.State}, func() error {
		p.ID = pid.Bytes
		pend[p.ID] = p
		return nil
	}); err != nil {
		return settlement.StepResult{}, fmt.Errorf("pending transfers: %w", err)
	}
	var entries []ledger.Transfer
	var posted []pgtype.UUID
	var res settlement.StepResult
	for _, o := range posts {
		id := o.PendingID()
		p, ok := pend[id]
		if !ok || p.State != ledger.PendingOpen || p.Amount != o.Amount {
			return res, fmt.Errorf("%s %s of customer %d (pending %s, found %v, state %s): %w",
				o.Kind, o.RequestID, o.Customer, id, ok, p.State, settlement.ErrPendingMissing)
		}
		kind, tid := settlement.KindConfirmSubscription, settlement.ConfirmTransferID(id)
		if o.Kind == accounts.KindStandardRedeem {
			kind = settlement.KindRedeemShares
		}
		entries = append(entries, ledger.Transfer{ID: tid, DebitAccountID: p.DebitAccountID, CreditAccountID: p.CreditAccountID,
			Amount: p.Amount, PendingAmount: p.Amount, Asset: p.Asset, Kind: kind, Flags: ledger.PostPending,
			PendingID: id, UserData: o.RequestID})
		posted = append(posted, pgtype.UUID{Bytes: id, Valid: true})
		res.Count++
		res.Amount += o.Amount
	}
	if len(cash) > 0 {
		want := make([]int64, len(cash))
		for i, o := range cash {
			want[i] = int64(accounts.CashAccount(o.Customer))
		}
		var found int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM accounts WHERE id = ANY($1) AND shard = $2 AND asset = $3`,
			want, l.Shard, int16(ledger.AssetCNY)).Scan(&found); err != nil {
			return res, err
		}
		if distinct := len(slices.Compact(slices.Sorted(slices.Values(want)))); found != distinct {
			return res, fmt.Errorf("%w: %d of %d redeeming customers' cash accounts found on shard %d",
				ledger.ErrInvariantBroke, found, distinct, l.Shard)
		}
		omnibus := settlement.SystemAccountOn(accounts.FundOmnibusCash, l.Shard, shards)
		for _, o := range cash {
			entries = append(entries, ledger.Transfer{ID: settlement.RedeemCashTransferID(o.PendingID()), DebitAccountID: omnibus,
				CreditAccountID: accounts.CashAccount(o.Customer), Amount: o.Amount, Asset: ledger.AssetCNY,
				Kind: settlement.KindRedeemCash, UserData: o.RequestID})
		}
	}
	if len(entries) > 0 {
		if err := s.writeEntries(ctx, tx, l, entries, nil); err != nil {
			return res, err
		}
	}
	if len(posted) > 0 {
		tag, err := tx.Exec(ctx, `UPDATE pending_transfers SET state = $2 WHERE id = ANY($1) AND state = 1`,
			posted, int16(ledger.PendingPosted))
		if err != nil {
			return res, fmt.Errorf("post pending transfers: %w", err)
		}
		if int(tag.RowsAffected()) != len(posted) {
			return res, fmt.Errorf("%w: posted %d of %d pending transfers", ledger.ErrInvariantBroke, tag.RowsAffected(), len(posted))
		}
	}
	res.Entries = int64(len(entries))
	if err := markStep(ctx, tx, date, l.Shard, "orders", res); err != nil {
		return res, err
	}
	if err := s.fail("orders/" + strconv.Itoa(l.Shard) + "/commit"); err != nil {
		return res, err
	}
	return res, tx.Commit(ctx)
}

// Holdings implements settlement.Store. Eligible shares are the posted
// balance at the cut: the current one less what entries after the cut
// changed, except the settlement's own confirmations and payouts (they
// belong to the day: it was closed at the cut) but including this date's
// income if a part of it is booked already (a resumed run); less shares
// held by standard redemptions made before the date and not paid yet.
// Available is what the account can give up, as before this date's income,
// so that a resumed run caps a losing day's deductions as the first did.
func (s *Store) Holdings(ctx context.Context, shard int, date time.Time, cut int64) ([]settlement.Holder, error) {
	dayStart := time.Date(date.Year(), date.Month(), date.Day(), 0, 0, 0, 0, ledger.BusinessZone())
	rows, err := s.pool.Query(ctx, `
		WITH later AS (
			SELECT acct,
				coalesce(sum(delta) FILTER (WHERE kind NOT BETWEEN $5 AND $6), 0)::bigint AS other,
				coalesce(sum(delta) FILTER (WHERE kind IN ($7, $8) AND user_data = $9), 0)::bigint AS income
			FROM (
				SELECT credit_account_id AS acct, amount AS delta, kind, user_data FROM transfers
					WHERE shard = $1 AND ts > $2 AND business_date >= $3 AND flags & 10 = 0
				UNION ALL
				SELECT debit_account_id, -amount, kind, user_data FROM transfers
					WHERE shard = $1 AND ts > $2 AND business_date >= $3 AND flags & 10 = 0
			) x
			GROUP BY acct
		), held AS (
			SELECT customer_id * 16 + 2 AS acct, sum(amount)::bigint AS held FROM orders
			WHERE kind = 'standard_redeem' AND status = 'pending' AND created_at < $10 AND confirm_date > $4
			GROUP BY 1
		)
		SELECT a.id,
			a.credits_posted - a.debits_posted - coalesce(l.other, 0) - coalesce(l.income, 0) - coalesce(h.held, 0),
			a.credits_posted - a.debits_posted - a.debits_pending - coalesce(l.income, 0)
		FROM accounts a LEFT JOIN later l ON l.acct = a.id LEFT JOIN held h ON h.acct = a.id
		WHERE a.shard = $1 AND a.code = $11
		ORDER BY a.id`,
		shard, cut, ledger.BusinessDate(cut), date, int32(settlement.KindConfirmSubscription), int32(settlement.KindRoundingAbsorb),
		int32(settlement.KindIncome), int32(settlement.KindIncomeDeduct), date.Format(time.DateOnly), dayStart,
		int32(accounts.CodeCustomerShares))
	if err != nil {
		return nil, fmt.Errorf("holders of shard %d: %w", shard, err)
	}
	var out []settlement.Holder
	var h settlement.Holder
	_, err = pgx.ForEachRow(rows, []any{&h.Account, &h.Eligible, &h.Available}, func() error {
		if h.Eligible < 0 {
			return fmt.Errorf("%w: account %d has %d eligible shares", ledger.ErrInvariantBroke, h.Account, h.Eligible)
		}
		out = append(out, h)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("holders of shard %d: %w", shard, err)
	}
	return out, nil
}

// BookIncome implements settlement.Store.
func (s *Store) BookIncome(ctx context.Context, l settlement.Lease, date time.Time, b settlement.IncomeBook,
	progress func(int64)) (settlement.StepResult, error) {
	if r, done, err := stepResult(ctx, s.pool, date, l.Shard, "income"); err != nil || done {
		if done && progress != nil {
			progress(r.Count)
		}
		return r, err
	}
	dist := settlement.SystemAccountOn(accounts.IncomeDistribution, l.Shard, b.Shards)
	ud := date.Format(time.DateOnly)
	entries := make([]ledger.Transfer, 0, len(b.Entries)+1)
	var res settlement.StepResult
	for _, e := range b.Entries {
		t := ledger.Transfer{ID: settlement.IncomeTransferID(date, e.Account), Asset: ledger.AssetFundShares, UserData: ud}
		if e.Amount > 0 {
			t.DebitAccountID, t.CreditAccountID, t.Amount, t.Kind = dist, e.Account, e.Amount, settlement.KindIncome
		} else {
			t.DebitAccountID, t.CreditAccountID, t.Amount, t.Kind = e.Account, dist, -e.Amount, settlement.KindIncomeDeduct
		}
		entries = append(entries, t)
		res.Amount += e.Amount
	}
	if b.Absorbed > 0 {
		entries = append(entries, ledger.Transfer{ID: settlement.RoundingTransferID(date, l.Shard),
			DebitAccountID: settlement.SystemAccountOn(accounts.Rounding, l.Shard, b.Shards), CreditAccountID: dist,
			Amount: b.Absorbed, Asset: ledger.AssetFundShares, Kind: settlement.KindRoundingAbsorb, UserData: ud})
	}
	res.Count, res.Entries = int64(len(b.Entries)), int64(len(entries))
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return res, err
	}
	defer tx.Rollback(ctx)
	// Progress counts accounts: half for the journal rows written, half
	// for the customer income rows (the two long COPYs of the step).
	var sent int64
	report := func(n int64) {
		if progress != nil && n > 0 {
			sent += n
			progress(n)
		}
	}
	half := func(n int64) { report(n / 2) }
	if len(entries) > 0 {
		if err := s.writeEntries(ctx, tx, l, entries, half); err != nil {
			return res, err
		}
	}
	// The customers' daily income, for the holdings view (accounts'
	// customer_income, whose rows are written once, never changed).
	tr := s.tracer(l.Shard, len(b.Entries))
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"customer_income"}, []string{"customer_id", "date", "amount"},
		&incomeRows{entries: b.Entries, date: date, progress: report}); err != nil {
		return res, fmt.Errorf("record customer income: %w", err)
	}
	report(int64(len(b.Entries)) - sent) // what the halves left out
	tr("customer income")
	if err := markStep(ctx, tx, date, l.Shard, "income", res); err != nil {
		return res, err
	}
	if err := s.fail("income/" + strconv.Itoa(l.Shard) + "/commit"); err != nil {
		return res, err
	}
	defer tr("commit")
	return res, tx.Commit(ctx)
}

type incomeRows struct {
	entries  []settlement.IncomeEntry
	date     time.Time
	i        int
	progress func(int64)
}

func (r *incomeRows) Next() bool {
	r.i++
	if r.i <= len(r.entries) && r.i%progressEvery == 0 {
		r.progress(progressEvery / 2)
	}
	return r.i <= len(r.entries)
}
func (r *incomeRows) Values() ([]any, error) {
	e := r.entries[r.i-1]
	return []any{int64(e.Account >> 4), r.date, e.Amount}, nil
}
func (r *incomeRows) Err() error { return nil }

// writeEntries writes journal entries of the owned shard, in the caller's
// transaction: timestamps after the shard's last, the journal (COPY), the
// idempotency records (COPY, in id order so the index fills in order), the
// balances they change, the outbox, and the fence, which also fails the
// transaction if the lease was lost meanwhile.
func (s *Store) writeEntries(ctx context.Context, tx pgx.Tx, l settlement.Lease, entries []ledger.Transfer, progress func(int64)) error {
	tr := s.tracer(l.Shard, len(entries))
	defer tr("done")
	var last int64
	if err := tx.QueryRow(ctx, `SELECT last_timestamp FROM ledger_shards WHERE shard = $1 FOR UPDATE`, l.Shard).Scan(&last); err != nil {
		return fmt.Errorf("shard %d: %w", l.Shard, err)
	}
	base := max(time.Now().UnixNano(), last)
	type delta struct{ dpend, dpost, cpend, cpost int64 }
	deltas := make(map[ledger.AccountID]*delta, len(entries)+4)
	get := func(id ledger.AccountID) *delta {
		d, ok := deltas[id]
		if !ok {
			d = &delta{}
			deltas[id] = d
		}
		return d
	}
	for i := range entries {
		t := &entries[i]
		t.Timestamp = base + 1 + int64(i)
		dr, cr := get(t.DebitAccountID), get(t.CreditAccountID)
		if t.Flags&ledger.PostPending != 0 {
			dr.dpend -= t.PendingAmount
			cr.cpend -= t.PendingAmount
		}
		dr.dpost += t.Amount
		cr.cpost += t.Amount
	}
	lastTS := entries[len(entries)-1].Timestamp
	first, lastDate := ledger.BusinessDate(entries[0].Timestamp), ledger.BusinessDate(lastTS)
	if !first.Equal(lastDate) || !first.Equal(ledger.BusinessDate(time.Now().UnixNano())) {
		// Rare (a run across midnight): make sure the partitions exist. The
		// partition for today was made before the transaction began.
		if err := s.ledger.EnsurePartitions(ctx, first, lastDate); err != nil {
			return err
		}
	}
	src := &journalRows{entries: entries, shard: int32(l.Shard), progress: progress}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"transfers"}, []string{"id", "shard", "ts", "business_date",
		"debit_account_id", "credit_account_id", "amount", "pending_amount", "asset", "kind", "flags", "pending_id",
		"timeout_ns", "user_data"}, src); err != nil {
		return fmt.Errorf("write journal of shard %d: %w", l.Shard, err)
	}
	tr("journal")
	if src.pending > 0 && progress != nil {
		progress(src.pending)
	}
	order := make([]int32, len(entries))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int {
		x, y := entries[a].ID, entries[b].ID
		for k := range x {
			if x[k] != y[k] {
				return int(x[k]) - int(y[k])
			}
		}
		return 0
	})
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"transfer_ids"}, []string{"id", "shard", "business_date", "fingerprint"},
		&idRows{entries: entries, order: order, shard: int32(l.Shard)}); err != nil {
		return fmt.Errorf("record transfer ids of shard %d: %w", l.Shard, err)
	}
	tr("ids")
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE settle_deltas (id bigint, dpend bigint, dpost bigint, cpend bigint, cpost bigint)
		ON COMMIT DROP`); err != nil {
		return err
	}
	ids := make([]ledger.AccountID, 0, len(deltas))
	for id := range deltas {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"settle_deltas"}, []string{"id", "dpend", "dpost", "cpend", "cpost"},
		pgx.CopyFromSlice(len(ids), func(i int) ([]any, error) {
			d := deltas[ids[i]]
			return []any{int64(ids[i]), d.dpend, d.dpost, d.cpend, d.cpost}, nil
		})); err != nil {
		return fmt.Errorf("stage balances of shard %d: %w", l.Shard, err)
	}
	// Statistics let the planner probe the accounts key per staged row
	// rather than scan the whole table.
	if _, err := tx.Exec(ctx, `ANALYZE settle_deltas`); err != nil {
		return err
	}
	tag, err := tx.Exec(ctx, `UPDATE accounts a SET debits_pending = a.debits_pending + d.dpend,
			debits_posted = a.debits_posted + d.dpost, credits_pending = a.credits_pending + d.cpend,
			credits_posted = a.credits_posted + d.cpost, balance_ts = $2
		FROM settle_deltas d WHERE a.id = d.id AND a.shard = $1 AND NOT a.closed`, l.Shard, lastTS)
	if err != nil {
		// The accounts table's checks refuse a balance below zero.
		return fmt.Errorf("update balances of shard %d: %w", l.Shard, err)
	}
	if int(tag.RowsAffected()) != len(ids) {
		return fmt.Errorf("%w: %d of %d accounts of shard %d updated (missing or closed)", ledger.ErrInvariantBroke,
			tag.RowsAffected(), len(ids), l.Shard)
	}
	tr("balances")
	var ob pgx.Batch
	for i := 0; i < len(entries); i += outboxEventsMax {
		chunk := entries[i:min(i+outboxEventsMax, len(entries))]
		ob.Queue(`INSERT INTO ledger_outbox (shard, last_ts, events, payload) VALUES ($1, $2, $3, $4)`,
			l.Shard, chunk[len(chunk)-1].Timestamp, len(chunk), ledger.EncodeEntries(chunk))
	}
	ob.Queue(`SELECT ledger_fence($1, $2, $3, $3)`, l.Shard, l.Epoch, lastTS)
	if err := tx.SendBatch(ctx, &ob).Close(); err != nil {
		return fmt.Errorf("outbox and fence of shard %d: %w", l.Shard, err)
	}
	tr("outbox")
	return nil
}

// journalRows streams entries into COPY, reporting progress every
// progressEvery rows.
type journalRows struct {
	entries  []ledger.Transfer
	shard    int32
	i        int
	progress func(int64)
	pending  int64
	day      int64
	date     time.Time
}

const progressEvery = 10_000

func (r *journalRows) Next() bool {
	r.i++
	if r.progress != nil && r.i <= len(r.entries) {
		r.pending++
		if r.pending == progressEvery {
			r.progress(r.pending)
			r.pending = 0
		}
	}
	return r.i <= len(r.entries)
}

func (r *journalRows) Values() ([]any, error) {
	t := &r.entries[r.i-1]
	if d := (t.Timestamp + 8*int64(time.Hour)) / int64(24*time.Hour); d != r.day || r.date.IsZero() {
		r.day, r.date = d, ledger.BusinessDate(t.Timestamp)
	}
	pid := pgtype.UUID{Bytes: t.PendingID, Valid: !t.PendingID.IsZero()}
	return []any{pgtype.UUID{Bytes: t.ID, Valid: true}, r.shard, t.Timestamp, r.date, int64(t.DebitAccountID),
		int64(t.CreditAccountID), t.Amount, t.PendingAmount, int16(t.Asset), int32(t.Kind), int32(t.Flags), pid,
		int64(t.Timeout), t.UserData}, nil
}

func (r *journalRows) Err() error { return nil }

type idRows struct {
	entries []ledger.Transfer
	order   []int32
	shard   int32
	i       int
}

func (r *idRows) Next() bool { r.i++; return r.i <= len(r.order) }
func (r *idRows) Values() ([]any, error) {
	t := &r.entries[r.order[r.i-1]]
	return []any{pgtype.UUID{Bytes: t.ID, Valid: true}, r.shard, ledger.BusinessDate(t.Timestamp), t.Fingerprint()}, nil
}
func (r *idRows) Err() error { return nil }

// tracer returns a function that writes how long each stage of a booking
// took to s.Trace (nothing when it is nil).
func (s *Store) tracer(shard, n int) func(stage string) {
	if s.Trace == nil {
		return func(string) {}
	}
	last := time.Now()
	return func(stage string) {
		now := time.Now()
		fmt.Fprintf(s.Trace, "shard %d (%d entries): %s %s\n", shard, n, stage, now.Sub(last).Round(time.Millisecond))
		last = now
	}
}
