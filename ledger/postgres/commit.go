package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/fundplatform/fund/ledger"
)

// fencedCode is the SQLSTATE ledger_fence raises for a stale epoch.
const fencedCode = "LF001"

// Commit implements ledger.Store. The whole batch goes to Postgres as one
// pipeline of set-based statements (arrays unnested server-side, never a
// statement per transfer) that runs as one implicit transaction: one round
// trip and one WAL flush per batch, whatever its size. Any failing statement
// (the fence above all) aborts everything.
func (s *Store) Commit(ctx context.Context, b *ledger.Batch) error {
	if err := s.ensureBatchPartitions(ctx, b); err != nil {
		return err
	}
	var q pgx.Batch
	q.Queue(`SELECT ledger_fence($1, $2, $3, $4)`, b.Shard, b.Epoch, b.LastTimestamp, b.CheckpointTS)
	if len(b.NewAccounts) > 0 {
		queueNewAccounts(&q, b)
	}
	if len(b.Transfers) > 0 {
		queueTransfers(&q, b)
		if !s.noOutbox {
			q.Queue(`INSERT INTO ledger_outbox (shard, last_ts, events, payload) VALUES ($1, $2, $3, $4)`,
				b.Shard, b.LastTimestamp, len(b.Transfers), ledger.EncodeEntries(b.Transfers))
		}
	}
	if len(b.Accounts) > 0 {
		queueFlush(&q, b.Accounts, b.LastTimestamp)
	}
	if len(b.Closed) > 0 {
		ids := make([]int64, len(b.Closed))
		for i, id := range b.Closed {
			ids[i] = int64(id)
		}
		q.Queue(`UPDATE accounts SET closed = true WHERE id = ANY($1)`, ids)
	}
	if len(b.PendingNew) > 0 {
		queuePendingNew(&q, b)
	}
	if len(b.PendingResolved) > 0 {
		ids := make([]pgtype.UUID, len(b.PendingResolved))
		states := make([]int16, len(b.PendingResolved))
		for i := range b.PendingResolved {
			ids[i] = pgtype.UUID{Bytes: b.PendingResolved[i].ID, Valid: true}
			states[i] = int16(b.PendingResolved[i].State)
		}
		q.Queue(`UPDATE pending_transfers p SET state = u.state
			FROM unnest($1::uuid[], $2::smallint[]) AS u(id, state) WHERE p.id = u.id`, ids, states)
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire: %w", err)
	}
	defer conn.Release()
	if err := conn.SendBatch(ctx, &q).Close(); err != nil {
		var pe *pgconn.PgError
		switch {
		case errors.As(err, &pe) && pe.Code == fencedCode:
			return fmt.Errorf("shard %d epoch %d: %w", b.Shard, b.Epoch, ledger.ErrFenced)
		case errors.As(err, &pe) && pe.ConstraintName == "transfer_ids_pkey":
			return fmt.Errorf("%w: transfer id written twice: %v", ledger.ErrInvariantBroke, err)
		}
		// A broken connection may leave the outcome unknown; the pool must
		// not hand it out again.
		if !errors.As(err, &pe) {
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
		}
		return fmt.Errorf("commit batch: %w", err)
	}
	return nil
}

func queueNewAccounts(q *pgx.Batch, b *ledger.Batch) {
	n := len(b.NewAccounts)
	ids, ts := make([]int64, n), make([]int64, n)
	assets, codes, flags := make([]int16, n), make([]int32, n), make([]int32, n)
	for i := range b.NewAccounts {
		a := &b.NewAccounts[i]
		ids[i], ts[i], assets[i], codes[i], flags[i] = int64(a.ID), a.Timestamp, int16(a.Asset), int32(a.Code), int32(a.Flags)
	}
	// Zero balances as of creation: entries are replayed on top until the
	// account's balances are flushed.
	q.Queue(`INSERT INTO accounts (id, shard, asset, code, flags, created_ts, balance_ts)
		SELECT u.id, $1, u.asset, u.code, u.flags, u.ts, u.ts
		FROM unnest($2::bigint[], $3::smallint[], $4::int[], $5::int[], $6::bigint[]) AS u(id, asset, code, flags, ts)`,
		b.Shard, ids, assets, codes, flags, ts)
}

func queueTransfers(q *pgx.Batch, b *ledger.Batch) {
	ts := b.Transfers
	n := len(ts)
	var (
		ids              = make([]pgtype.UUID, n)
		pendingIDs       = make([]pgtype.UUID, n)
		stamps           = make([]int64, n)
		dates            = make([]pgtype.Date, n)
		debits           = make([]int64, n)
		credits          = make([]int64, n)
		amounts          = make([]int64, n)
		released         = make([]int64, n)
		assets           = make([]int16, n)
		kinds            = make([]int32, n)
		flags            = make([]int32, n)
		timeouts         = make([]int64, n)
		userData         = make([]string, n)
		prevDay    int64 = -1
		prevDate   pgtype.Date
	)
	for i := range ts {
		t := &ts[i]
		// Dates change at most once or twice per batch; skip the calendar
		// arithmetic for the other rows.
		if day := (t.Timestamp + 8*int64(time.Hour)) / int64(24*time.Hour); day != prevDay {
			prevDay, prevDate = day, pgtype.Date{Time: ledger.BusinessDate(t.Timestamp), Valid: true}
		}
		ids[i] = pgtype.UUID{Bytes: t.ID, Valid: true}
		pendingIDs[i] = pgtype.UUID{Bytes: t.PendingID, Valid: !t.PendingID.IsZero()}
		stamps[i], dates[i] = t.Timestamp, prevDate
		debits[i], credits[i], amounts[i], released[i] = int64(t.DebitAccountID), int64(t.CreditAccountID), t.Amount, t.PendingAmount
		assets[i], kinds[i], flags[i], timeouts[i], userData[i] = int16(t.Asset), int32(t.Kind), int32(t.Flags), int64(t.Timeout), t.UserData
	}
	q.Queue(`INSERT INTO transfers (id, shard, ts, business_date, debit_account_id, credit_account_id, amount,
			pending_amount, asset, kind, flags, pending_id, timeout_ns, user_data)
		SELECT u.id, $1, u.ts, u.d, u.dr, u.cr, u.amount, u.released, u.asset, u.kind, u.flags, u.pid, u.timeout, u.ud
		FROM unnest($2::uuid[], $3::bigint[], $4::date[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[],
			$9::smallint[], $10::int[], $11::int[], $12::uuid[], $13::bigint[], $14::text[])
			AS u(id, ts, d, dr, cr, amount, released, asset, kind, flags, pid, timeout, ud)`,
		b.Shard, ids, stamps, dates, debits, credits, amounts, released, assets, kinds, flags, pendingIDs, timeouts, userData)
	q.Queue(`INSERT INTO transfer_ids (id, shard, business_date, fingerprint)
		SELECT u.id, $1, u.d, u.fp FROM unnest($2::uuid[], $3::date[], $4::bigint[]) AS u(id, d, fp)`,
		b.Shard, ids, dates, b.Fingerprints)
}

// queueFlush stores balances as of the batch's last timestamp. Absolute
// values, not increments: the writer owns the shard, so its in-memory
// balances are the truth being made durable.
func queueFlush(q *pgx.Batch, accts []ledger.Account, asOf int64) {
	n := len(accts)
	ids := make([]int64, n)
	dpend, dpost, cpend, cpost := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	for i := range accts {
		a := &accts[i]
		ids[i], dpend[i], dpost[i], cpend[i], cpost[i] =
			int64(a.ID), a.DebitsPending, a.DebitsPosted, a.CreditsPending, a.CreditsPosted
	}
	q.Queue(`
		UPDATE accounts a SET debits_pending = u.dpend, debits_posted = u.dpost,
			credits_pending = u.cpend, credits_posted = u.cpost, balance_ts = $6
		FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])
			AS u(id, dpend, dpost, cpend, cpost)
		WHERE a.id = u.id`, ids, dpend, dpost, cpend, cpost, asOf).Exec(func(tag pgconn.CommandTag) error {
		if int(tag.RowsAffected()) != n {
			return fmt.Errorf("%w: flush updated %d of %d accounts", ledger.ErrInvariantBroke, tag.RowsAffected(), n)
		}
		return nil
	})
}

func queuePendingNew(q *pgx.Batch, b *ledger.Batch) {
	n := len(b.PendingNew)
	ids := make([]pgtype.UUID, n)
	debits, credits, amounts, expires := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	assets, states := make([]int16, n), make([]int16, n)
	for i := range b.PendingNew {
		p := &b.PendingNew[i]
		ids[i] = pgtype.UUID{Bytes: p.ID, Valid: true}
		debits[i], credits[i], amounts[i], expires[i] = int64(p.DebitAccountID), int64(p.CreditAccountID), p.Amount, p.ExpiresAt
		assets[i], states[i] = int16(p.Asset), int16(p.State)
	}
	q.Queue(`INSERT INTO pending_transfers (id, shard, debit_account_id, credit_account_id, amount, asset, expires_at, state)
		SELECT u.id, $1, u.dr, u.cr, u.amount, u.asset, u.exp, u.state
		FROM unnest($2::uuid[], $3::bigint[], $4::bigint[], $5::bigint[], $6::smallint[], $7::bigint[], $8::smallint[])
			AS u(id, dr, cr, amount, asset, exp, state)`,
		b.Shard, ids, debits, credits, amounts, assets, expires, states)
}
