package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fundplatform/fund/internal/pgmigrate"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/xshard"
	"github.com/fundplatform/fund/settlement/recon"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationLockID keeps reconciliation's migrations from waiting on the
// ledger's (goose's default lock) when both start together.
const migrationLockID = 0x7265636f6e // "recon"

// Limits.
const (
	breaksListMax     = 10_000
	breaksListDefault = 1_000
	breaksMaxDefault  = 10_000
)

// Config for Open.
type Config struct {
	DSN      string
	ConnsMax int32 // pool size; 0 = 4
}

// Store is the Postgres implementation of recon.Store. Its tables live in
// the ledger's database (the comparison joins them with the journal inside
// one snapshot); it writes only its own.
type Store struct {
	pool *pgxpool.Pool
}

var _ recon.Store = (*Store)(nil)

// Open connects and applies reconciliation's migrations.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	pcfg, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("parse dsn: %w", err)
	}
	if cfg.ConnsMax == 0 {
		cfg.ConnsMax = 4
	}
	pcfg.MaxConns = cfg.ConnsMax
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	if err := pgmigrate.Up(ctx, pool, migrations, pgmigrate.Options{Table: "recon_goose_db_version", LockID: migrationLockID}); err != nil {
		pool.Close()
		return nil, err
	}
	return &Store{pool: pool}, nil
}

// compareLockID is the advisory lock CompareLock takes.
const compareLockID = 0x7265636f6e02

// CompareLock takes a session advisory lock on this database without
// waiting, for recon.WorkerConfig.CompareLock: ok is false when another
// worker holds it. The lock holds one connection until unlock; a worker
// that dies loses it with its session.
func (s *Store) CompareLock(ctx context.Context) (unlock func(), ok bool, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("compare lock: %w", err)
	}
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, int64(compareLockID)).Scan(&ok); err != nil || !ok {
		conn.Release()
		if err != nil {
			return nil, false, fmt.Errorf("compare lock: %w", err)
		}
		return nil, false, nil
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, int64(compareLockID)); err != nil {
			// The session may still hold the lock: close it rather than
			// hand it back to the pool.
			_ = conn.Conn().Close(uctx)
		}
		conn.Release()
	}, true, nil
}

// Close closes the pool.
func (s *Store) Close() { s.pool.Close() }

// row is an event as stored.
type row struct {
	id                 ledger.TransferID
	shard              int32
	ts                 int64
	debit, credit      int64
	amount, pendingAmt int64
	asset              int16
	kind, flags        int32
	pendingID          pgtype.UUID
	userData           string
}

func rowOf(e *ledger.Event) (row, error) {
	r := row{id: e.ID, shard: int32(e.Shard), ts: e.Timestamp, debit: int64(e.DebitAccountID), credit: int64(e.CreditAccountID),
		amount: e.Amount, pendingAmt: e.PendingAmount, asset: int16(e.Asset), kind: int32(e.Kind), flags: int32(e.Flags),
		userData: e.UserData}
	if e.PendingID != "" {
		pid, err := ledger.ParseTransferID(e.PendingID)
		if err != nil {
			return r, fmt.Errorf("event %s: pending id: %w", e.ID, err)
		}
		r.pendingID = pgtype.UUID{Bytes: pid, Valid: true}
	}
	return r, nil
}

func (r *row) String() string {
	pid := ""
	if r.pendingID.Valid {
		pid = ledger.TransferID(r.pendingID.Bytes).String()
	}
	return fmt.Sprintf("shard %d ts %d %d->%d amount %d pending_amount %d asset %d kind %d flags %d pending_id %q user_data %q",
		r.shard, r.ts, r.debit, r.credit, r.amount, r.pendingAmt, r.asset, r.kind, r.flags, pid, r.userData)
}

// Apply implements recon.Store: one transaction per call, set-based (the
// events go in as arrays; totals are summed in SQL per day, shard and
// account, so a hot account costs one row update per batch). Its steps:
// record the events and the new ones' totals (one statement), sort the
// outcomes out (the events seen before are compared with what is stored),
// record the new sagas and the breaks, commit.
func (s *Store) Apply(ctx context.Context, events []ledger.Event) ([]recon.Outcome, error) {
	if len(events) == 0 {
		return nil, nil
	}
	b, err := newEventBatch(events)
	if err != nil {
		return nil, err
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx)

	inserted, err := b.record(ctx, tx)
	if err != nil {
		return nil, err
	}
	breaks, err := b.sortOut(ctx, tx, inserted)
	if err != nil {
		return nil, err
	}
	if b.applied > 0 {
		if err := addSagas(ctx, tx, b.rows, b.outs); err != nil {
			return nil, err
		}
	}
	if err := upsertBreaks(ctx, tx, breaks); err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	return b.outs, nil
}

// eventBatch is the events of one Apply call as rows, as the columns that
// recordEventsSQL takes (index-aligned with the rows), and with each
// event's outcome once sortOut has found it.
type eventBatch struct {
	rows    []row
	outs    []recon.Outcome
	applied int // outcomes Applied

	ids               []pgtype.UUID
	shards            []int32
	stamps            []int64
	dates             []pgtype.Date
	debits, credits   []int64
	amounts, released []int64
	assets            []int16
	kinds, flags      []int32
	pendings          []pgtype.UUID
	userDatas         []string
}

// newEventBatch converts the events; one that cannot be stored (a bad
// pending id) is a broken invariant of the ledger's.
func newEventBatch(events []ledger.Event) (*eventBatch, error) {
	n := len(events)
	b := &eventBatch{rows: make([]row, n), outs: make([]recon.Outcome, n),
		ids: make([]pgtype.UUID, n), shards: make([]int32, n), stamps: make([]int64, n), dates: make([]pgtype.Date, n),
		debits: make([]int64, n), credits: make([]int64, n), amounts: make([]int64, n), released: make([]int64, n),
		assets: make([]int16, n), kinds: make([]int32, n), flags: make([]int32, n), pendings: make([]pgtype.UUID, n),
		userDatas: make([]string, n)}
	for i := range events {
		r, err := rowOf(&events[i])
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ledger.ErrInvariantBroke, err)
		}
		b.rows[i] = r
		b.ids[i] = pgtype.UUID{Bytes: r.id, Valid: true}
		b.shards[i], b.stamps[i] = r.shard, r.ts
		b.dates[i] = pgtype.Date{Time: ledger.BusinessDate(r.ts), Valid: true}
		b.debits[i], b.credits[i], b.amounts[i], b.released[i] = r.debit, r.credit, r.amount, r.pendingAmt
		b.assets[i], b.kinds[i], b.flags[i], b.pendings[i], b.userDatas[i] = r.asset, r.kind, r.flags, r.pendingID, r.userData
	}
	return b, nil
}

// recordEventsSQL records the events and adds the new ones (only those:
// RETURNING leaves out the ids already there) to the day and account
// totals, in one statement. Totals rows are upserted in key order, so that
// two writers (a group rebalance) take their row locks in the same order.
const recordEventsSQL = `
		WITH ins AS (
			INSERT INTO recon_events (id, shard, ts, business_date, debit_account_id, credit_account_id, amount,
				pending_amount, asset, kind, flags, pending_id, user_data)
			SELECT * FROM unnest($1::uuid[], $2::int[], $3::bigint[], $4::date[], $5::bigint[], $6::bigint[], $7::bigint[],
				$8::bigint[], $9::smallint[], $10::int[], $11::int[], $12::uuid[], $13::text[])
			ON CONFLICT (id) DO NOTHING
			RETURNING id, shard, business_date, debit_account_id, credit_account_id, amount, asset, flags, digest
		), day AS (
			INSERT INTO recon_day_totals AS t (business_date, shard, asset, entries, amount, digest)
			SELECT business_date, shard, asset, count(*), sum(amount), sum(digest)
			FROM ins GROUP BY business_date, shard, asset ORDER BY business_date, shard, asset
			ON CONFLICT (business_date, shard, asset) DO UPDATE SET entries = t.entries + excluded.entries,
				amount = t.amount + excluded.amount, digest = t.digest + excluded.digest
		), sides AS (
			SELECT business_date, shard, debit_account_id AS account_id, asset, 1 AS d,
				CASE WHEN flags & 10 = 0 THEN amount ELSE 0 END AS dp, 0 AS c, 0::bigint AS cp FROM ins
			UNION ALL
			SELECT business_date, shard, credit_account_id, asset, 0, 0, 1,
				CASE WHEN flags & 10 = 0 THEN amount ELSE 0 END FROM ins
		), acct AS (
			INSERT INTO recon_account_totals AS t (business_date, shard, account_id, asset, debits, debits_posted,
				credits, credits_posted)
			SELECT business_date, shard, account_id, asset, sum(d), sum(dp), sum(c), sum(cp)
			FROM sides GROUP BY business_date, shard, account_id, asset ORDER BY business_date, shard, account_id, asset
			ON CONFLICT (business_date, shard, account_id, asset) DO UPDATE SET
				debits = t.debits + excluded.debits, debits_posted = t.debits_posted + excluded.debits_posted,
				credits = t.credits + excluded.credits, credits_posted = t.credits_posted + excluded.credits_posted
		)
		SELECT id FROM ins`

// record runs recordEventsSQL and returns the ids it inserted.
func (b *eventBatch) record(ctx context.Context, tx pgx.Tx) (map[ledger.TransferID]bool, error) {
	inserted := map[ledger.TransferID]bool{}
	irows, err := tx.Query(ctx, recordEventsSQL, b.ids, b.shards, b.stamps, b.dates, b.debits, b.credits, b.amounts,
		b.released, b.assets, b.kinds, b.flags, b.pendings, b.userDatas)
	if err != nil {
		return nil, fmt.Errorf("record events: %w", err)
	}
	var id ledger.TransferID
	if _, err := pgx.ForEachRow(irows, []any{&id}, func() error { inserted[id] = true; return nil }); err != nil {
		return nil, fmt.Errorf("record events: %w", err)
	}
	return inserted, nil
}

// sortOut sets every event's outcome: Applied for the first of the batch
// with an id just inserted; for the others (stored before, or repeated in
// the batch) Redelivered when the stored event is the same, else Conflict,
// with a break for each conflict.
func (b *eventBatch) sortOut(ctx context.Context, tx pgx.Tx, inserted map[ledger.TransferID]bool) ([]recon.Break, error) {
	var seenIDs []pgtype.UUID
	first := map[ledger.TransferID]bool{}
	for i := range b.rows {
		if inserted[b.rows[i].id] && !first[b.rows[i].id] {
			first[b.rows[i].id] = true
			b.outs[i] = recon.Applied
			b.applied++
			continue
		}
		seenIDs = append(seenIDs, b.ids[i])
	}
	if len(seenIDs) == 0 {
		return nil, nil
	}
	stored, err := storedRows(ctx, tx, seenIDs)
	if err != nil {
		return nil, err
	}
	var breaks []recon.Break
	for i := range b.rows {
		if b.outs[i] != 0 {
			continue
		}
		was, ok := stored[b.rows[i].id]
		if !ok {
			return nil, fmt.Errorf("%w: event %s neither inserted nor stored", ledger.ErrInvariantBroke, b.rows[i].id)
		}
		if was == b.rows[i] {
			b.outs[i] = recon.Redelivered
			continue
		}
		b.outs[i] = recon.Conflict
		breaks = append(breaks, conflictBreak(&was, &b.rows[i]))
	}
	return breaks, nil
}

func storedRows(ctx context.Context, tx pgx.Tx, ids []pgtype.UUID) (map[ledger.TransferID]row, error) {
	rs, err := tx.Query(ctx, `
		SELECT id, shard, ts, debit_account_id, credit_account_id, amount, pending_amount, asset, kind, flags,
			pending_id, user_data
		FROM recon_events WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("read stored events: %w", err)
	}
	out := map[ledger.TransferID]row{}
	var r row
	_, err = pgx.ForEachRow(rs, []any{&r.id, &r.shard, &r.ts, &r.debit, &r.credit, &r.amount, &r.pendingAmt,
		&r.asset, &r.kind, &r.flags, &r.pendingID, &r.userData}, func() error {
		out[r.id] = r
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read stored events: %w", err)
	}
	return out, nil
}

// conflictBreak is a redelivery whose content differs from the first
// delivery: one break per distinct content.
func conflictBreak(was, now *row) recon.Break {
	h := fnv.New64a()
	h.Write([]byte(now.String()))
	shard := int(now.shard)
	id := now.id
	other := now.amount
	return recon.Break{
		Key:          fmt.Sprintf("duplicate/stream/%s/%x", now.id, h.Sum64()),
		Kind:         recon.Duplicate,
		Source:       recon.SourceStream,
		Shard:        &shard,
		BusinessDate: ledger.BusinessDate(was.ts).Format(time.DateOnly),
		TransferID:   &id,
		Asset:        ledger.Asset(now.asset).String(),
		Other:        recon.Amount(other).Ptr(),
		Detail:       fmt.Sprintf("transfer id delivered again with other content: first %s; now %s", was, now),
	}
}

// addSagas records leg 1 of every new cross-shard saga with the ids of the
// two legs that can close it (derived by xshard from leg 1's id).
func addSagas(ctx context.Context, tx pgx.Tx, rows []row, outs []recon.Outcome) error {
	var ids, ins, backs []pgtype.UUID
	var shards []int32
	var stamps, amounts []int64
	var assets []int16
	for i := range rows {
		r := &rows[i]
		if outs[i] != recon.Applied || uint16(r.kind) != xshard.KindOut || r.flags != 0 {
			continue
		}
		in, back := recon.SagaClosingIDs(r.id)
		ids = append(ids, pgtype.UUID{Bytes: r.id, Valid: true})
		ins = append(ins, pgtype.UUID{Bytes: in, Valid: true})
		backs = append(backs, pgtype.UUID{Bytes: back, Valid: true})
		shards, stamps, amounts, assets = append(shards, r.shard), append(stamps, r.ts), append(amounts, r.amount), append(assets, r.asset)
	}
	if len(ids) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO recon_sagas (id, shard, ts, asset, amount, in_id, back_id)
		SELECT * FROM unnest($1::uuid[], $2::int[], $3::bigint[], $4::smallint[], $5::bigint[], $6::uuid[], $7::uuid[])
		ON CONFLICT (id) DO NOTHING`, ids, shards, stamps, assets, amounts, ins, backs); err != nil {
		return fmt.Errorf("record sagas: %w", err)
	}
	return nil
}

// upsertBreaks stores breaks by key: new ones are inserted, known ones are
// refreshed and reopened.
func upsertBreaks(ctx context.Context, tx pgx.Tx, bs []recon.Break) error {
	if len(bs) == 0 {
		return nil
	}
	var q pgx.Batch
	for i := range bs {
		b := &bs[i]
		var date pgtype.Date
		if b.BusinessDate != "" {
			d, err := time.Parse(time.DateOnly, b.BusinessDate)
			if err != nil {
				return fmt.Errorf("break %s: %w", b.Key, err)
			}
			date = pgtype.Date{Time: d, Valid: true}
		}
		var tid pgtype.UUID
		if b.TransferID != nil {
			tid = pgtype.UUID{Bytes: *b.TransferID, Valid: true}
		}
		var asset *int16
		if b.Asset != "" {
			a := assetCode(b.Asset)
			asset = &a
		}
		var ref *string
		if b.Reference != "" {
			ref = &b.Reference
		}
		q.Queue(`
			INSERT INTO recon_breaks (key, kind, source, shard, business_date, transfer_id, account_id, asset,
				reference, journal, other, detail)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
			ON CONFLICT (key) DO UPDATE SET last_seen = now(), resolved_at = NULL, detail = excluded.detail,
				journal = excluded.journal, other = excluded.other`,
			b.Key, string(b.Kind), b.Source, b.Shard, date, tid, b.AccountID, asset, ref, minorOrNil(b.Journal), minorOrNil(b.Other), b.Detail)
	}
	if err := tx.SendBatch(ctx, &q).Close(); err != nil {
		return fmt.Errorf("store breaks: %w", err)
	}
	return nil
}

func minorOrNil(a *recon.Amount) *int64 {
	if a == nil {
		return nil
	}
	v := int64(*a)
	return &v
}

func assetCode(name string) int16 {
	for _, a := range []ledger.Asset{ledger.AssetCNY, ledger.AssetFundShares, ledger.AssetQuota} {
		if a.String() == name {
			return int16(a)
		}
	}
	return 0
}

// Breaks implements recon.Store.
func (s *Store) Breaks(ctx context.Context, f recon.BreakFilter) ([]recon.Break, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = breaksListDefault
	}
	limit = min(limit, breaksListMax)
	var date pgtype.Date
	if f.BusinessDate != nil {
		date = pgtype.Date{Time: *f.BusinessDate, Valid: true}
	}
	rs, err := s.pool.Query(ctx, `
		SELECT id, key, kind, source, shard, business_date, transfer_id, account_id, asset, coalesce(reference, ''),
			journal, other, detail, first_seen, last_seen, resolved_at
		FROM recon_breaks
		WHERE ($1 OR resolved_at IS NULL) AND ($2 = '' OR kind = $2) AND ($3::date IS NULL OR business_date = $3)
		ORDER BY id DESC LIMIT $4`, f.IncludeResolved, string(f.Kind), date, limit)
	if err != nil {
		return nil, fmt.Errorf("list breaks: %w", err)
	}
	var (
		out   []recon.Break
		b     recon.Break
		kind  string
		shard *int32
		bd    pgtype.Date
		tid   pgtype.UUID
		acct  *int64
		asset *int16
		jour  *int64
		other *int64
	)
	_, err = pgx.ForEachRow(rs, []any{&b.ID, &b.Key, &kind, &b.Source, &shard, &bd, &tid, &acct, &asset, &b.Reference,
		&jour, &other, &b.Detail, &b.FirstSeen, &b.LastSeen, &b.ResolvedAt}, func() error {
		c := b
		c.Kind = recon.BreakKind(kind)
		if shard != nil {
			v := int(*shard)
			c.Shard = &v
		}
		if bd.Valid {
			c.BusinessDate = bd.Time.Format(time.DateOnly)
		}
		if tid.Valid {
			v := ledger.TransferID(tid.Bytes)
			c.TransferID = &v
		}
		if acct != nil {
			v := ledger.AccountID(*acct)
			c.AccountID = &v
		}
		if asset != nil {
			c.Asset = ledger.Asset(*asset).String()
		}
		if jour != nil {
			c.Journal = recon.Amount(*jour).Ptr()
		}
		if other != nil {
			c.Other = recon.Amount(*other).Ptr()
		}
		if b.ResolvedAt != nil {
			v := *b.ResolvedAt
			c.ResolvedAt = &v
		}
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list breaks: %w", err)
	}
	return out, nil
}

// OpenBreaks implements recon.Store.
func (s *Store) OpenBreaks(ctx context.Context) (map[recon.BreakKind]int64, error) {
	rs, err := s.pool.Query(ctx, `SELECT kind, count(*) FROM recon_breaks WHERE resolved_at IS NULL GROUP BY kind`)
	if err != nil {
		return nil, fmt.Errorf("count breaks: %w", err)
	}
	out := map[recon.BreakKind]int64{}
	var kind string
	var n int64
	_, err = pgx.ForEachRow(rs, []any{&kind, &n}, func() error {
		out[recon.BreakKind(kind)] = n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count breaks: %w", err)
	}
	return out, nil
}

var errNoJournal = errors.New("the ledger's journal (table transfers) is not in this database")
