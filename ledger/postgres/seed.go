package postgres

import (
	"context"
	"fmt"
	"iter"
	"math"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/fundplatform/fund/ledger"
)

// SeedConfig is what Seed writes.
type SeedConfig struct {
	// Shards places each account with ledger.ShardOf over this count.
	Shards int
	// Accounts are created with zero balances as of their Timestamp.
	Accounts iter.Seq[ledger.Account]
	// Entries are journal entries with their Timestamp set: each after its
	// accounts' creation, strictly increasing per shard, and both accounts
	// on one shard. Pending entries open a pending transfer (no timeout).
	// Entries is iterated more than once; it must yield the same each time.
	Entries iter.Seq[ledger.Transfer]
	// AsOf becomes every shard's last timestamp and checkpoint; it must not
	// be before the last entry.
	AsOf int64
}

// Seed writes a ledger in bulk for benchmarks and tests, bypassing the
// sequencer, on a database no writer is using: the accounts, the journal
// entries (COPY), their ids, the pending transfers the pending entries
// open, every account's balances from the journal (the replay of CatchUp,
// so that Verify agrees) and the shards' timestamps at cfg.AsOf, in one
// transaction. It checks only what the set-based writes check (keys, the
// accounts' balance limits); the caller builds balanced entries.
func (s *Store) Seed(ctx context.Context, cfg SeedConfig) error {
	shards := max(cfg.Shards, 1)
	first, last := int64(math.MaxInt64), int64(math.MinInt64)
	for t := range cfg.Entries {
		first, last = min(first, t.Timestamp), max(last, t.Timestamp)
	}
	if first <= last {
		if last > cfg.AsOf {
			return fmt.Errorf("seed: entry at %d after AsOf %d", last, cfg.AsOf)
		}
		if err := s.EnsurePartitions(ctx, ledger.BusinessDate(first), ledger.BusinessDate(last)); err != nil {
			return err
		}
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if err := copySeq(ctx, tx, "accounts", []string{"id", "shard", "asset", "code", "flags", "created_ts", "balance_ts"},
		cfg.Accounts, func(a ledger.Account) ([]any, error) {
			return []any{int64(a.ID), int32(ledger.ShardOf(a.ID, shards)), int16(a.Asset), int32(a.Code), int32(a.Flags),
				a.Timestamp, a.Timestamp}, nil
		}); err != nil {
		return fmt.Errorf("seed accounts: %w", err)
	}
	if err := seedEntries(ctx, tx, cfg.Entries, shards); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO ledger_shards (shard, last_timestamp, checkpoint_ts)
		SELECT s, $2, $2 FROM generate_series(0, $1 - 1) s
		ON CONFLICT (shard) DO UPDATE SET last_timestamp = excluded.last_timestamp, checkpoint_ts = excluded.checkpoint_ts`,
		shards, cfg.AsOf); err != nil {
		return fmt.Errorf("seed shards: %w", err)
	}
	if first <= last {
		for shard := range shards {
			if _, err := tx.Exec(ctx, catchUpSQL(), shard, first-1, ledger.BusinessDate(first-1), cfg.AsOf); err != nil {
				return fmt.Errorf("seed balances of shard %d: %w", shard, err)
			}
		}
	}
	return tx.Commit(ctx)
}

// seedEntries writes the journal, the ids and the pending transfers.
func seedEntries(ctx context.Context, tx pgx.Tx, entries iter.Seq[ledger.Transfer], shards int) error {
	shardOf := func(t *ledger.Transfer) (int32, error) {
		s := ledger.ShardOf(t.DebitAccountID, shards)
		if c := ledger.ShardOf(t.CreditAccountID, shards); c != s {
			return 0, fmt.Errorf("%w: seed entry %s between shards %d and %d", ledger.ErrInvariantBroke, t.ID, s, c)
		}
		return int32(s), nil
	}
	if err := copySeq(ctx, tx, "transfers", journalColumns, entries, func(t ledger.Transfer) ([]any, error) {
		s, err := shardOf(&t)
		pid := pgtype.UUID{Bytes: t.PendingID, Valid: !t.PendingID.IsZero()}
		return []any{pgtype.UUID{Bytes: t.ID, Valid: true}, s, t.Timestamp, ledger.BusinessDate(t.Timestamp),
			int64(t.DebitAccountID), int64(t.CreditAccountID), t.Amount, t.PendingAmount, int16(t.Asset), int32(t.Kind),
			int32(t.Flags), pid, int64(t.Timeout), t.UserData}, err
	}); err != nil {
		return fmt.Errorf("seed journal: %w", err)
	}
	if err := copySeq(ctx, tx, "transfer_ids", idColumns, entries, func(t ledger.Transfer) ([]any, error) {
		s, err := shardOf(&t)
		return []any{pgtype.UUID{Bytes: t.ID, Valid: true}, s, ledger.BusinessDate(t.Timestamp), t.Fingerprint()}, err
	}); err != nil {
		return fmt.Errorf("seed transfer ids: %w", err)
	}
	pending := func(yield func(ledger.Transfer) bool) {
		for t := range entries {
			if t.Flags&ledger.Pending != 0 && !yield(t) {
				return
			}
		}
	}
	if err := copySeq(ctx, tx, "pending_transfers",
		[]string{"id", "shard", "debit_account_id", "credit_account_id", "amount", "asset", "state"},
		pending, func(t ledger.Transfer) ([]any, error) {
			s, err := shardOf(&t)
			return []any{pgtype.UUID{Bytes: t.ID, Valid: true}, s, int64(t.DebitAccountID), int64(t.CreditAccountID),
				t.Amount, int16(t.Asset), int16(ledger.PendingOpen)}, err
		}); err != nil {
		return fmt.Errorf("seed pending transfers: %w", err)
	}
	return nil
}

// copySeq streams seq into table by COPY, one row per element.
func copySeq[T any](ctx context.Context, tx pgx.Tx, table string, columns []string, seq iter.Seq[T],
	row func(T) ([]any, error)) error {
	next, stop := iter.Pull(seq)
	defer stop()
	_, err := tx.CopyFrom(ctx, pgx.Identifier{table}, columns, &pulledRows[T]{next: next, row: row})
	return err
}

type pulledRows[T any] struct {
	next func() (T, bool)
	row  func(T) ([]any, error)
	cur  T
}

func (r *pulledRows[T]) Next() bool {
	v, ok := r.next()
	r.cur = v
	return ok
}

func (r *pulledRows[T]) Values() ([]any, error) { return r.row(r.cur) }
func (r *pulledRows[T]) Err() error             { return nil }
