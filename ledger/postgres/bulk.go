package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/fundplatform/fund/ledger"
)

// A writer other than the shard's sequencer (the nightly settlement run)
// books a shard's entries here set-based, instead of sending ten million
// transfers through a sequencer: the lease it holds fences every sequencer
// (ledger_fence refuses their commits), so while it holds it, it is the
// shard's single writer. ShardTx keeps every rule the sequencer keeps: each
// entry balances (one debit, one credit, same asset, checked by the
// caller's construction and the accounts' asset in Verify); its id goes into
// transfer_ids (a repeat fails the transaction); balances change in the
// same transaction as the journal and are checked by the accounts table's
// constraints (no available balance below zero); timestamps continue the
// shard's, strictly increasing; the outbox gets the entries for the relay;
// the fence advances last_timestamp and, since every balance is then
// current, the checkpoint with it. When the lease goes back, a sequencer
// loads the shard from these tables.

// outboxEventsMax bounds the events packed into one outbox row.
const outboxEventsMax = 10_000

// progressEvery is how many journal rows pass between progress reports.
const progressEvery = 10_000

// ShardTx is one transaction on a shard's ledger tables for a writer that
// holds the shard's lease (TakeLease) and is not its sequencer. Get one from
// InShard; it is valid only inside InShard's function and is not safe for
// concurrent use.
type ShardTx struct {
	store            *Store
	tx               pgx.Tx
	shard            int
	epoch            int64
	last, checkpoint int64
	wrote, fenced    bool
}

// InShard runs fn in one transaction on the shard's ledger tables, for a
// caller holding the shard's lease at epoch, and commits when fn returns
// nil. It first takes the shard's row lock (the one every batch commit and
// ledger_fence take), so nothing else writes the shard until the commit,
// and the epoch cannot change meanwhile. If fn wrote through w and its
// writes did not fence already, the fence runs after fn: a lost lease fails
// the transaction with ledger.ErrFenced and nothing of it is written.
//
// The caller's own statements (its tables, such as a step marker that
// must commit with the entries or not at all) go through w.Tx(). Both are
// Postgres adapters of the same database, so lending the transaction to
// the caller's function is the simple way to one atomic commit; the ledger
// keeps the transaction's bounds, the lock and the fence, and its tables
// are written only by the methods of ShardTx (internal/archtest's
// TestOneWriter checks that no other package writes them).
func (s *Store) InShard(ctx context.Context, shard int, epoch int64, fn func(ctx context.Context, w *ShardTx) error) error {
	// Entries get timestamps of now (the store's clock); their partitions
	// must exist before the transaction inserts (creating one locks the
	// parent table).
	today := ledger.BusinessDate(s.now().UnixNano())
	if err := s.EnsurePartitions(ctx, today, today.AddDate(0, 0, 1)); err != nil {
		return err
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	w := &ShardTx{store: s, tx: tx, shard: shard, epoch: epoch}
	if err := tx.QueryRow(ctx, `SELECT last_timestamp, checkpoint_ts FROM ledger_shards WHERE shard = $1 FOR UPDATE`,
		shard).Scan(&w.last, &w.checkpoint); err != nil {
		return fmt.Errorf("shard %d: %w", shard, err)
	}
	if err := fn(ctx, w); err != nil {
		return err
	}
	if w.wrote && !w.fenced {
		if _, err := tx.Exec(ctx, `SELECT ledger_fence($1, $2, $3, $3)`, shard, epoch, w.last); err != nil {
			return w.fenceErr(err)
		}
	}
	return tx.Commit(ctx)
}

// Tx is the transaction, for the caller's own tables only.
func (w *ShardTx) Tx() pgx.Tx { return w.tx }

// LastTimestamp is the shard's last journal timestamp: as stored when the
// transaction began, then the last entry written in it.
func (w *ShardTx) LastTimestamp() int64 { return w.last }

func (w *ShardTx) fenceErr(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == fencedCode {
		return fmt.Errorf("shard %d epoch %d: %w: %v", w.shard, w.epoch, ledger.ErrFenced, err)
	}
	return fmt.Errorf("fence shard %d: %w", w.shard, err)
}

// CatchUp brings every stored balance of the shard up to its journal: a
// writer that stopped without flushing its balances leaves the effects of
// its last entries in the journal only (Load replays them in memory).
func (w *ShardTx) CatchUp(ctx context.Context) error {
	if w.checkpoint >= w.last {
		return nil
	}
	w.wrote = true
	if _, err := w.tx.Exec(ctx, catchUpSQL(), w.shard, w.checkpoint, ledger.BusinessDate(w.checkpoint), w.last); err != nil {
		return fmt.Errorf("catch up shard %d: %w", w.shard, err)
	}
	w.checkpoint = w.last
	return nil
}

// catchUpSQL adds to each account of a shard the effects of the journal
// entries after its balance_ts (journalEffects, as Load replays them) and
// moves its balance_ts to the shard's last timestamp ($4).
func catchUpSQL() string {
	return `WITH e AS (` + journalEffectsSQL("shard = $1 AND ts > $2 AND business_date >= $3", ">") + `
	), s AS (
		SELECT id,
			coalesce(sum(posted) FILTER (WHERE debit), 0)::bigint AS dpost,
			coalesce(sum(posted) FILTER (WHERE NOT debit), 0)::bigint AS cpost,
			coalesce(sum(pending) FILTER (WHERE debit), 0)::bigint AS dpend,
			coalesce(sum(pending) FILTER (WHERE NOT debit), 0)::bigint AS cpend
		FROM e GROUP BY id
	)
	UPDATE accounts a SET debits_posted = a.debits_posted + s.dpost, credits_posted = a.credits_posted + s.cpost,
		debits_pending = a.debits_pending + s.dpend, credits_pending = a.credits_pending + s.cpend, balance_ts = $4
	FROM s WHERE a.id = s.id`
}

// EnsureAccounts creates the accounts of the shard that do not exist yet,
// with zero balances as of the shard's last timestamp; existing ones are
// left as they are.
func (w *ShardTx) EnsureAccounts(ctx context.Context, accts []ledger.Account) error {
	if len(accts) == 0 {
		return nil
	}
	w.wrote = true
	n := len(accts)
	ids, assets, codes, flags := make([]int64, n), make([]int16, n), make([]int32, n), make([]int32, n)
	for i, a := range accts {
		ids[i], assets[i], codes[i], flags[i] = int64(a.ID), int16(a.Asset), int32(a.Code), int32(a.Flags)
	}
	if _, err := w.tx.Exec(ctx, `INSERT INTO accounts (id, shard, asset, code, flags, created_ts, balance_ts)
		SELECT u.id, $1, u.asset, u.code, u.flags, $2, $2
		FROM unnest($3::bigint[], $4::smallint[], $5::int[], $6::int[]) AS u(id, asset, code, flags)
		ON CONFLICT (id) DO NOTHING`, w.shard, w.last, ids, assets, codes, flags); err != nil {
		return fmt.Errorf("accounts of shard %d: %w", w.shard, err)
	}
	return nil
}

// CountAccounts returns how many of ids (each counted once) are accounts of
// the shard in asset.
func (w *ShardTx) CountAccounts(ctx context.Context, ids []ledger.AccountID, asset ledger.Asset) (int, error) {
	want := make([]int64, len(ids))
	for i, id := range ids {
		want[i] = int64(id)
	}
	var found int
	if err := w.tx.QueryRow(ctx, `SELECT count(*) FROM accounts WHERE id = ANY($1) AND shard = $2 AND asset = $3`,
		want, w.shard, int16(asset)).Scan(&found); err != nil {
		return 0, fmt.Errorf("accounts of shard %d: %w", w.shard, err)
	}
	return found, nil
}

// Pending returns the shard's pending transfers among ids, in any state.
func (w *ShardTx) Pending(ctx context.Context, ids []ledger.TransferID) ([]ledger.PendingTransfer, error) {
	rows, err := w.tx.Query(ctx, `SELECT id, debit_account_id, credit_account_id, amount, asset, expires_at, state
		FROM pending_transfers WHERE id = ANY($1) AND shard = $2`, uuids(ids), w.shard)
	if err != nil {
		return nil, fmt.Errorf("pending transfers: %w", err)
	}
	var (
		out []ledger.PendingTransfer
		p   ledger.PendingTransfer
		pid pgtype.UUID
	)
	if _, err := pgx.ForEachRow(rows, []any{&pid, &p.DebitAccountID, &p.CreditAccountID, &p.Amount, &p.Asset,
		&p.ExpiresAt, &p.State}, func() error {
		p.ID = pid.Bytes
		out = append(out, p)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("pending transfers: %w", err)
	}
	return out, nil
}

// ResolvePending moves the shard's open pending transfers ids to state
// (posted or voided), as a set; the entries that post or void them are the
// caller's, written with WriteEntries in the same transaction. A transfer
// that is not open is ledger.ErrInvariantBroke.
func (w *ShardTx) ResolvePending(ctx context.Context, ids []ledger.TransferID, state ledger.PendingState) error {
	if len(ids) == 0 {
		return nil
	}
	w.wrote = true
	tag, err := w.tx.Exec(ctx, `UPDATE pending_transfers SET state = $2 WHERE id = ANY($1) AND shard = $3 AND state = $4`,
		uuids(ids), int16(state), w.shard, int16(ledger.PendingOpen))
	if err != nil {
		return fmt.Errorf("resolve pending transfers: %w", err)
	}
	if int(tag.RowsAffected()) != len(ids) {
		return fmt.Errorf("%w: resolved %d of %d pending transfers", ledger.ErrInvariantBroke, tag.RowsAffected(), len(ids))
	}
	return nil
}

// WriteOptions tune WriteEntries.
type WriteOptions struct {
	// Progress, when set, is told how many journal rows were sent so far,
	// every progressEvery rows and at the end.
	Progress func(n int64)
	// Trace, when set, is called after each stage (journal, ids, balances,
	// outbox, done) with its name.
	Trace func(stage string)
}

// WriteEntries books entries on the shard: timestamps after the shard's
// last (set in entries), the journal (COPY), the idempotency records
// (COPY, in id order so the index fills in order), the balances they
// change (one UPDATE from a staged delta table), the outbox, and the fence,
// which also fails the transaction if the lease was lost. Entries are
// plain or PostPending transfers (each post with its PendingAmount); the
// pending transfers they post are resolved with ResolvePending.
func (w *ShardTx) WriteEntries(ctx context.Context, entries []ledger.Transfer, opt WriteOptions) error {
	if len(entries) == 0 {
		return nil
	}
	trace := opt.Trace
	if trace == nil {
		trace = func(string) {}
	}
	defer trace("done")
	w.wrote = true
	base := max(w.store.now().UnixNano(), w.last)
	for i := range entries {
		entries[i].Timestamp = base + 1 + int64(i)
	}
	lastTS := entries[len(entries)-1].Timestamp
	first, lastDate := ledger.BusinessDate(entries[0].Timestamp), ledger.BusinessDate(lastTS)
	if !first.Equal(lastDate) || !first.Equal(ledger.BusinessDate(w.store.now().UnixNano())) {
		// Rare (a run across midnight): make sure the partitions exist. The
		// partition for today was made before the transaction began.
		if err := w.store.EnsurePartitions(ctx, first, lastDate); err != nil {
			return err
		}
	}
	if err := w.copyJournal(ctx, entries, opt.Progress, trace); err != nil {
		return err
	}
	if err := w.addBalances(ctx, entries, lastTS); err != nil {
		return err
	}
	trace("balances")
	var ob pgx.Batch
	for i := 0; i < len(entries); i += outboxEventsMax {
		chunk := entries[i:min(i+outboxEventsMax, len(entries))]
		ob.Queue(`INSERT INTO ledger_outbox (shard, last_ts, events, payload) VALUES ($1, $2, $3, $4)`,
			w.shard, chunk[len(chunk)-1].Timestamp, len(chunk), ledger.EncodeEntries(chunk))
	}
	ob.Queue(`SELECT ledger_fence($1, $2, $3, $3)`, w.shard, w.epoch, lastTS)
	if err := w.tx.SendBatch(ctx, &ob).Close(); err != nil {
		if err := w.fenceErr(err); errors.Is(err, ledger.ErrFenced) {
			return err
		}
		return fmt.Errorf("outbox and fence of shard %d: %w", w.shard, err)
	}
	w.last, w.checkpoint, w.fenced = lastTS, lastTS, true
	trace("outbox")
	return nil
}

// copyJournal writes the entries and their ids.
func (w *ShardTx) copyJournal(ctx context.Context, entries []ledger.Transfer, progress func(int64), trace func(string)) error {
	src := &journalRows{entries: entries, shard: int32(w.shard), progress: progress}
	if _, err := w.tx.CopyFrom(ctx, pgx.Identifier{"transfers"}, journalColumns, src); err != nil {
		return fmt.Errorf("write journal of shard %d: %w", w.shard, err)
	}
	trace("journal")
	if src.pending > 0 && progress != nil {
		progress(src.pending)
	}
	if _, err := w.tx.CopyFrom(ctx, pgx.Identifier{"transfer_ids"}, idColumns,
		&idRows{entries: entries, order: idOrder(entries), shard: int32(w.shard)}); err != nil {
		return fmt.Errorf("record transfer ids of shard %d: %w", w.shard, err)
	}
	trace("ids")
	return nil
}

var (
	journalColumns = []string{"id", "shard", "ts", "business_date", "debit_account_id", "credit_account_id", "amount",
		"pending_amount", "asset", "kind", "flags", "pending_id", "timeout_ns", "user_data"}
	idColumns = []string{"id", "shard", "business_date", "fingerprint"}
)

// idOrder returns the entries' indexes in ascending id order.
func idOrder(entries []ledger.Transfer) []int32 {
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
	return order
}

// addBalances adds what entries do to their accounts' balances, as of
// lastTS: the deltas are staged in a temporary table by COPY and applied
// by one UPDATE. Every account must exist on the shard and be open.
func (w *ShardTx) addBalances(ctx context.Context, entries []ledger.Transfer, lastTS int64) error {
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
		dr, cr := get(t.DebitAccountID), get(t.CreditAccountID)
		if t.Flags&ledger.PostPending != 0 {
			dr.dpend -= t.PendingAmount
			cr.cpend -= t.PendingAmount
		}
		dr.dpost += t.Amount
		cr.cpost += t.Amount
	}
	if _, err := w.tx.Exec(ctx, `CREATE TEMP TABLE ledger_deltas (id bigint, dpend bigint, dpost bigint, cpend bigint, cpost bigint)
		ON COMMIT DROP`); err != nil {
		return err
	}
	ids := make([]ledger.AccountID, 0, len(deltas))
	for id := range deltas {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if _, err := w.tx.CopyFrom(ctx, pgx.Identifier{"ledger_deltas"}, []string{"id", "dpend", "dpost", "cpend", "cpost"},
		pgx.CopyFromSlice(len(ids), func(i int) ([]any, error) {
			d := deltas[ids[i]]
			return []any{int64(ids[i]), d.dpend, d.dpost, d.cpend, d.cpost}, nil
		})); err != nil {
		return fmt.Errorf("stage balances of shard %d: %w", w.shard, err)
	}
	// Statistics let the planner probe the accounts key per staged row
	// rather than scan the whole table.
	if _, err := w.tx.Exec(ctx, `ANALYZE ledger_deltas`); err != nil {
		return err
	}
	tag, err := w.tx.Exec(ctx, `UPDATE accounts a SET debits_pending = a.debits_pending + d.dpend,
			debits_posted = a.debits_posted + d.dpost, credits_pending = a.credits_pending + d.cpend,
			credits_posted = a.credits_posted + d.cpost, balance_ts = $2
		FROM ledger_deltas d WHERE a.id = d.id AND a.shard = $1 AND NOT a.closed`, w.shard, lastTS)
	if err != nil {
		// The accounts table's checks refuse a balance below zero.
		return fmt.Errorf("update balances of shard %d: %w", w.shard, err)
	}
	if int(tag.RowsAffected()) != len(ids) {
		return fmt.Errorf("%w: %d of %d accounts of shard %d updated (missing or closed)", ledger.ErrInvariantBroke,
			tag.RowsAffected(), len(ids), w.shard)
	}
	// A second WriteEntries in the same transaction stages afresh.
	if _, err := w.tx.Exec(ctx, `DROP TABLE ledger_deltas`); err != nil {
		return err
	}
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
	// Dates change at most once or twice per call; skip the calendar
	// arithmetic for the other rows.
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
