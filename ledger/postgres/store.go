package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/fundplatform/fund/ledger"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is the Postgres implementation of ledger.Store. It is safe for
// concurrent use; the sequencer looks up ids while a commit is in flight.
type Store struct {
	pool *pgxpool.Pool

	mu         sync.Mutex
	partitions map[time.Time]bool // journal partitions known to exist
}

// Config for Open.
type Config struct {
	DSN      string
	ConnsMax int32 // pool size; 0 = 8
	// PartitionsAhead is how many daily journal partitions to keep created
	// beyond today.
	PartitionsAhead int
}

// Open connects, applies the migrations and makes sure the journal has
// partitions for today and the days ahead.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	pcfg, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("parse dsn: %w", err)
	}
	if cfg.ConnsMax == 0 {
		cfg.ConnsMax = 8
	}
	if cfg.PartitionsAhead == 0 {
		cfg.PartitionsAhead = 7
	}
	pcfg.MaxConns = cfg.ConnsMax
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	s := &Store{pool: pool, partitions: map[time.Time]bool{}}
	if err := Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	today := ledger.BusinessDate(time.Now().UnixNano())
	if err := s.EnsurePartitions(ctx, today.AddDate(0, 0, -1), today.AddDate(0, 0, cfg.PartitionsAhead)); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Pool exposes the connection pool to other adapters of the same database.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close closes the pool.
func (s *Store) Close() { s.pool.Close() }

// Migrate applies the ledger's embedded migrations, each in its own
// transaction, under a Postgres advisory lock so that several processes
// starting at once do not race.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	dir, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, dir,
		goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// EnsurePartitions creates the daily journal partitions for every date from
// first to last inclusive that does not exist yet.
func (s *Store) EnsurePartitions(ctx context.Context, first, last time.Time) error {
	for d := first; !d.After(last); d = d.AddDate(0, 0, 1) {
		if err := s.ensurePartition(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) ensurePartition(ctx context.Context, d time.Time) error {
	d = time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, time.UTC)
	s.mu.Lock()
	known := s.partitions[d]
	s.mu.Unlock()
	if known {
		return nil
	}
	name := pgx.Identifier{"transfers_" + d.Format("20060102")}.Sanitize()
	sql := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s PARTITION OF transfers FOR VALUES FROM ('%s') TO ('%s')`,
		name, d.Format(time.DateOnly), d.AddDate(0, 0, 1).Format(time.DateOnly))
	// Two processes may race to create the same partition; the loser's
	// error is a duplicate, which is success. Bounded: two attempts.
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		if _, err = s.pool.Exec(ctx, sql); err == nil || isDuplicate(err) {
			s.mu.Lock()
			s.partitions[d] = true
			s.mu.Unlock()
			return nil
		}
	}
	return fmt.Errorf("create partition %s: %w", name, err)
}

func isDuplicate(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "42P07" || pe.Code == "23505")
}

// Load implements ledger.Store.
func (s *Store) Load(ctx context.Context, shard int) (*ledger.Snapshot, error) {
	if _, err := s.pool.Exec(ctx,
		`INSERT INTO ledger_shards (shard) VALUES ($1) ON CONFLICT (shard) DO NOTHING`, shard); err != nil {
		return nil, fmt.Errorf("register shard: %w", err)
	}
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(ctx)
	snap := &ledger.Snapshot{}
	if err := tx.QueryRow(ctx, `SELECT last_timestamp, checkpoint_ts FROM ledger_shards WHERE shard = $1`, shard).
		Scan(&snap.LastTimestamp, &snap.CheckpointTS); err != nil {
		return nil, fmt.Errorf("shard row: %w", err)
	}
	rows, err := tx.Query(ctx, `
		SELECT id, asset, code, flags, closed, debits_pending, debits_posted, credits_pending, credits_posted, created_ts
		FROM accounts WHERE shard = $1`, shard)
	if err != nil {
		return nil, fmt.Errorf("load accounts: %w", err)
	}
	var a ledger.Account
	_, err = pgx.ForEachRow(rows, []any{&a.ID, &a.Asset, &a.Code, &a.Flags, &a.Closed,
		&a.DebitsPending, &a.DebitsPosted, &a.CreditsPending, &a.CreditsPosted, &a.Timestamp}, func() error {
		snap.Accounts = append(snap.Accounts, a)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load accounts: %w", err)
	}
	if snap.CheckpointTS < snap.LastTimestamp {
		if snap.Unsaved, err = replay(ctx, tx, shard, snap.CheckpointTS, snap.Accounts); err != nil {
			return nil, err
		}
	}
	rows, err = tx.Query(ctx, `
		SELECT id, debit_account_id, credit_account_id, amount, asset, expires_at, state
		FROM pending_transfers WHERE shard = $1 AND state = 1`, shard)
	if err != nil {
		return nil, fmt.Errorf("load pending: %w", err)
	}
	var p ledger.PendingTransfer
	var id pgtype.UUID
	_, err = pgx.ForEachRow(rows, []any{&id, &p.DebitAccountID, &p.CreditAccountID, &p.Amount, &p.Asset,
		&p.ExpiresAt, &p.State}, func() error {
		p.ID = id.Bytes
		snap.Pending = append(snap.Pending, p)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load pending: %w", err)
	}
	return snap, tx.Commit(ctx)
}

// journalEffects is the SQL that sums, per account and side, what journal
// entries do to the four balance fields (flags: 2 pending, 4 post, 8 void):
// plain and post entries add amount to posted; pending entries add amount to
// pending; post and void entries release pending_amount from pending.
// %[1]s filters the transfers table; %[2]s compares an entry's ts with its
// account's balance_ts: ">" for entries not yet in the stored balance, "<="
// for those in it.
const journalEffects = `
	SELECT e.id, e.debit,
		coalesce(sum(e.amount) FILTER (WHERE e.flags & 10 = 0), 0)::bigint AS posted,
		(coalesce(sum(e.amount) FILTER (WHERE e.flags & 2 <> 0), 0)
			- coalesce(sum(e.pending_amount) FILTER (WHERE e.flags & 12 <> 0), 0))::bigint AS pending
	FROM (
		SELECT debit_account_id AS id, true AS debit, amount, pending_amount, flags, ts FROM transfers WHERE %[1]s
		UNION ALL
		SELECT credit_account_id, false, amount, pending_amount, flags, ts FROM transfers WHERE %[1]s
	) e JOIN accounts a ON a.id = e.id AND e.ts %[2]s a.balance_ts
	GROUP BY e.id, e.debit`

// replay adds the effects of the journal entries after the checkpoint that
// are not yet in their accounts' stored balances, and returns the accounts
// it changed.
func replay(ctx context.Context, tx pgx.Tx, shard int, after int64, accts []ledger.Account) ([]ledger.AccountID, error) {
	index := make(map[ledger.AccountID]*ledger.Account, len(accts))
	for i := range accts {
		index[accts[i].ID] = &accts[i]
	}
	// The date bound lets Postgres skip older partitions.
	rows, err := tx.Query(ctx, fmt.Sprintf(journalEffects, "shard = $1 AND ts > $2 AND business_date >= $3", ">"),
		shard, after, ledger.BusinessDate(after))
	if err != nil {
		return nil, fmt.Errorf("replay journal: %w", err)
	}
	var (
		id              ledger.AccountID
		debit           bool
		posted, pending int64
		changed         []ledger.AccountID
		seen            = map[ledger.AccountID]bool{}
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &debit, &posted, &pending}, func() error {
		a, ok := index[id]
		if !ok {
			return fmt.Errorf("%w: journal entry for account %d of another shard", ledger.ErrInvariantBroke, id)
		}
		if debit {
			a.DebitsPosted += posted
			a.DebitsPending += pending
		} else {
			a.CreditsPosted += posted
			a.CreditsPending += pending
		}
		if !seen[id] {
			seen[id] = true
			changed = append(changed, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("replay journal: %w", err)
	}
	return changed, nil
}

// Lookup implements ledger.Store: one round trip for both kinds of id.
func (s *Store) Lookup(ctx context.Context, shard int, ids, pendingIDs []ledger.TransferID) (*ledger.Known, error) {
	k := &ledger.Known{Fingerprints: make(map[ledger.TransferID]int64)}
	var b pgx.Batch
	if len(ids) > 0 {
		b.Queue(`SELECT id, fingerprint FROM transfer_ids WHERE id = ANY($1)`, uuids(ids)).Query(
			func(rows pgx.Rows) error {
				var id pgtype.UUID
				var fp int64
				_, err := pgx.ForEachRow(rows, []any{&id, &fp}, func() error {
					k.Fingerprints[id.Bytes] = fp
					return nil
				})
				return err
			})
	}
	if len(pendingIDs) > 0 {
		b.Queue(`SELECT id, debit_account_id, credit_account_id, amount, asset, expires_at, state
			FROM pending_transfers WHERE id = ANY($1) AND shard = $2`, uuids(pendingIDs), shard).Query(
			func(rows pgx.Rows) error {
				var p ledger.PendingTransfer
				var id pgtype.UUID
				_, err := pgx.ForEachRow(rows, []any{&id, &p.DebitAccountID, &p.CreditAccountID, &p.Amount,
					&p.Asset, &p.ExpiresAt, &p.State}, func() error {
					p.ID = id.Bytes
					k.Pending = append(k.Pending, p)
					return nil
				})
				return err
			})
	}
	if b.Len() == 0 {
		return k, nil
	}
	if err := s.pool.SendBatch(ctx, &b).Close(); err != nil {
		return nil, fmt.Errorf("lookup ids: %w", err)
	}
	return k, nil
}

func uuids(ids []ledger.TransferID) []pgtype.UUID {
	out := make([]pgtype.UUID, len(ids))
	for i, id := range ids {
		out[i] = pgtype.UUID{Bytes: id, Valid: true}
	}
	return out
}

// Commit implements ledger.Store: one transaction, bulk statements only (COPY
// for new rows, one UPDATE ... FROM unnest for changed balances), whatever
// the batch size.
func (s *Store) Commit(ctx context.Context, b *ledger.Batch) error {
	if err := s.ensureBatchPartitions(ctx, b); err != nil {
		return err
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx)

	// The fencing check: a writer whose epoch is no longer the shard's
	// cannot write anything. The row lock it takes also serialises any two
	// writers that both believe they own the shard.
	tag, err := tx.Exec(ctx, `UPDATE ledger_shards SET last_timestamp = $3, checkpoint_ts = $4
		WHERE shard = $1 AND epoch = $2`,
		b.Shard, b.Epoch, b.LastTimestamp, b.CheckpointTS)
	if err != nil {
		return fmt.Errorf("fence: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("shard %d epoch %d: %w", b.Shard, b.Epoch, ledger.ErrFenced)
	}
	if len(b.NewAccounts) > 0 {
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"accounts"},
			[]string{"id", "shard", "asset", "code", "flags", "closed", "debits_pending", "debits_posted",
				"credits_pending", "credits_posted", "created_ts", "balance_ts"},
			pgx.CopyFromSlice(len(b.NewAccounts), func(i int) ([]any, error) {
				a := &b.NewAccounts[i]
				return []any{int64(a.ID), int32(b.Shard), int16(a.Asset), int32(a.Code), int32(a.Flags), a.Closed,
					a.DebitsPending, a.DebitsPosted, a.CreditsPending, a.CreditsPosted, a.Timestamp, a.Timestamp}, nil
			}))
		if err != nil {
			return fmt.Errorf("insert accounts: %w", err)
		}
	}
	if len(b.Transfers) > 0 {
		if err := copyTransfers(ctx, tx, b); err != nil {
			return err
		}
	}
	if len(b.Accounts) > 0 {
		if err := writeCheckpoint(ctx, tx, b.Accounts, b.LastTimestamp); err != nil {
			return err
		}
	}
	if len(b.Closed) > 0 {
		ids := make([]int64, len(b.Closed))
		for i, id := range b.Closed {
			ids[i] = int64(id)
		}
		if _, err := tx.Exec(ctx, `UPDATE accounts SET closed = true WHERE id = ANY($1)`, ids); err != nil {
			return fmt.Errorf("close accounts: %w", err)
		}
	}
	if len(b.PendingNew) > 0 {
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"pending_transfers"},
			[]string{"id", "shard", "debit_account_id", "credit_account_id", "amount", "asset", "expires_at", "state"},
			pgx.CopyFromSlice(len(b.PendingNew), func(i int) ([]any, error) {
				p := &b.PendingNew[i]
				return []any{pgtype.UUID{Bytes: p.ID, Valid: true}, int32(b.Shard), int64(p.DebitAccountID),
					int64(p.CreditAccountID), p.Amount, int16(p.Asset), p.ExpiresAt, int16(p.State)}, nil
			}))
		if err != nil {
			return fmt.Errorf("insert pending: %w", err)
		}
	}
	if len(b.PendingResolved) > 0 {
		ids := make([]pgtype.UUID, len(b.PendingResolved))
		states := make([]int16, len(b.PendingResolved))
		for i := range b.PendingResolved {
			ids[i] = pgtype.UUID{Bytes: b.PendingResolved[i].ID, Valid: true}
			states[i] = int16(b.PendingResolved[i].State)
		}
		if _, err := tx.Exec(ctx, `
			UPDATE pending_transfers p SET state = u.state
			FROM unnest($1::uuid[], $2::smallint[]) AS u(id, state) WHERE p.id = u.id`, ids, states); err != nil {
			return fmt.Errorf("resolve pending: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// writeCheckpoint stores balances as of the batch's last timestamp. Absolute
// values, not increments: the writer owns the shard, so its in-memory
// balances are the truth being made durable.
func writeCheckpoint(ctx context.Context, tx pgx.Tx, accts []ledger.Account, asOf int64) error {
	n := len(accts)
	ids := make([]int64, n)
	dpend, dpost, cpend, cpost := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	for i := range accts {
		a := &accts[i]
		ids[i], dpend[i], dpost[i], cpend[i], cpost[i] =
			int64(a.ID), a.DebitsPending, a.DebitsPosted, a.CreditsPending, a.CreditsPosted
	}
	tag, err := tx.Exec(ctx, `
		UPDATE accounts a SET debits_pending = u.dpend, debits_posted = u.dpost,
			credits_pending = u.cpend, credits_posted = u.cpost, balance_ts = $6
		FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])
			AS u(id, dpend, dpost, cpend, cpost)
		WHERE a.id = u.id`, ids, dpend, dpost, cpend, cpost, asOf)
	if err != nil {
		return fmt.Errorf("checkpoint balances: %w", err)
	}
	if int(tag.RowsAffected()) != n {
		return fmt.Errorf("%w: checkpoint updated %d of %d accounts", ledger.ErrInvariantBroke, tag.RowsAffected(), n)
	}
	return nil
}

func (s *Store) ensureBatchPartitions(ctx context.Context, b *ledger.Batch) error {
	if len(b.Transfers) == 0 {
		return nil
	}
	// Timestamps increase through the batch, so its dates are a range.
	first := ledger.BusinessDate(b.Transfers[0].Timestamp)
	last := ledger.BusinessDate(b.Transfers[len(b.Transfers)-1].Timestamp)
	return s.EnsurePartitions(ctx, first, last)
}

func copyTransfers(ctx context.Context, tx pgx.Tx, b *ledger.Batch) error {
	ts := b.Transfers
	shard := int32(b.Shard)
	// One date per row, computed once: both COPYs use it.
	dates := make([]time.Time, len(ts))
	var prevDay int64 = -1
	var prevDate time.Time
	for i := range ts {
		// Dates change at most once or twice per batch; avoid the time
		// arithmetic for every row.
		day := (ts[i].Timestamp + 8*int64(time.Hour)) / int64(24*time.Hour)
		if day != prevDay {
			prevDay, prevDate = day, ledger.BusinessDate(ts[i].Timestamp)
		}
		dates[i] = prevDate
	}
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"transfers"},
		[]string{"id", "shard", "ts", "business_date", "debit_account_id", "credit_account_id", "amount",
			"pending_amount", "asset", "kind", "flags", "pending_id", "timeout_ns", "user_data"},
		pgx.CopyFromSlice(len(ts), func(i int) ([]any, error) {
			t := &ts[i]
			pid := pgtype.UUID{Bytes: t.PendingID, Valid: !t.PendingID.IsZero()}
			return []any{pgtype.UUID{Bytes: t.ID, Valid: true}, shard, t.Timestamp, dates[i],
				int64(t.DebitAccountID), int64(t.CreditAccountID), t.Amount, t.PendingAmount, int16(t.Asset),
				int32(t.Kind), int32(t.Flags), pid, int64(t.Timeout), t.UserData}, nil
		}))
	if err != nil {
		return fmt.Errorf("insert journal: %w", err)
	}
	_, err = tx.CopyFrom(ctx, pgx.Identifier{"transfer_ids"},
		[]string{"id", "shard", "business_date", "fingerprint"},
		pgx.CopyFromSlice(len(ts), func(i int) ([]any, error) {
			return []any{pgtype.UUID{Bytes: ts[i].ID, Valid: true}, shard, dates[i], b.Fingerprints[i]}, nil
		}))
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.ConstraintName == "transfer_ids_pkey" {
			return fmt.Errorf("%w: transfer id written twice: %v", ledger.ErrInvariantBroke, err)
		}
		return fmt.Errorf("insert transfer ids: %w", err)
	}
	return nil
}
