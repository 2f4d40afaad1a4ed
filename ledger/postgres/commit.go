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
// statement per transfer) between BEGIN and COMMIT: one round trip and one
// WAL flush per batch, whatever its size. Any failing statement (the fence
// above all) aborts everything. The transaction is explicit, not the implicit
// one a pipeline gets anyway, because SET LOCAL (see queueFlush) only takes
// effect inside a transaction block: in an implicit one Postgres ignores it
// with a warning.
//
// Batches of several shards of this database that are committed at the
// same time are merged into one such transaction (group commit, see
// groupCommitter): each keeps its own fence check, so a stale shard still
// cannot write, and each is answered only once that transaction committed.
func (s *Store) Commit(ctx context.Context, b *ledger.Batch) error {
	if err := s.ensureBatchPartitions(ctx, b); err != nil {
		return err
	}
	s.active.saw(b.Shard)
	_, err := s.commits.do(ctx, b, s.commitGroup)
	return err
}

// Bounds of one merged commit.
const (
	commitBatchesMax   = 64    // batches (hence shards) in one transaction
	commitTransfersMax = 65536 // journal entries in one transaction, unless one batch alone holds more
)

// commitGroup writes the batches of one group in one transaction. When the
// server refuses it (a stale epoch, say), nothing of it was written and its
// batches are committed one by one again, so that each shard gets its own
// answer and a fenced shard cannot fail the others.
func (s *Store) commitGroup(ctx context.Context, calls []*groupCall[*ledger.Batch, struct{}]) {
	bs := make([]*ledger.Batch, len(calls))
	for i, c := range calls {
		bs[i] = c.in
	}
	refused, err := s.commitBatches(ctx, bs)
	if err != nil && refused && len(calls) > 1 {
		for _, c := range calls {
			_, err := s.commitBatches(ctx, []*ledger.Batch{c.in})
			c.done <- groupResult[struct{}]{err: err}
		}
		return
	}
	for _, c := range calls {
		c.done <- groupResult[struct{}]{err: err}
	}
}

// commitBatches writes batches of distinct shards in one transaction.
// refused reports that the server refused a statement, so that the
// transaction rolled back and nothing of it was written.
func (s *Store) commitBatches(ctx context.Context, bs []*ledger.Batch) (refused bool, err error) {
	var q pgx.Batch
	q.Queue("BEGIN")
	queueFences(&q, bs)
	queueNewAccounts(&q, bs)
	if n := transfersIn(bs); n > 0 {
		queueTransfers(&q, bs, n)
		if !s.noOutbox {
			queueOutbox(&q, bs)
		}
	}
	queueFlush(&q, bs)
	if err := s.queueAttachments(&q, bs); err != nil {
		return true, err // nothing was sent
	}
	queueClosed(&q, bs)
	queuePendingNew(&q, bs)
	queuePendingResolved(&q, bs)
	q.Queue("COMMIT")
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return false, fmt.Errorf("acquire: %w", err)
	}
	defer conn.Release()
	if err := conn.SendBatch(ctx, &q).Close(); err != nil {
		var pe *pgconn.PgError
		if !errors.As(err, &pe) {
			// A broken connection may leave the outcome unknown; the pool
			// must not hand it out again. The server may still be running
			// the transaction, COMMIT included, after we hung up (a
			// cancelled context closes the connection mid-pipeline): wait
			// until its backend is gone, so that whatever the caller reads
			// next (the sequencer reloads the shard) includes the batch if
			// it did commit. Without the wait a reload could miss a late
			// commit and serve balances the journal does not add up to.
			pid := conn.Conn().PgConn().PID()
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
			if werr := s.awaitBackendGone(context.WithoutCancel(ctx), pid); werr != nil {
				return false, fmt.Errorf("commit batch: %w (and its outcome is not settled yet: %v)", err, werr)
			}
			return false, fmt.Errorf("commit batch: %w", err)
		}
		// The server skipped the rest of the pipeline, COMMIT included,
		// and left the transaction aborted: end it so the connection can
		// be reused (the pool drops it if this fails too).
		if conn.Conn().PgConn().TxStatus() != 'I' {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_, _ = conn.Exec(rctx, "ROLLBACK")
			cancel()
		}
		if len(bs) == 1 {
			switch {
			case pe.Code == fencedCode:
				return true, fmt.Errorf("shard %d epoch %d: %w", bs[0].Shard, bs[0].Epoch, ledger.ErrFenced)
			case pe.ConstraintName == "transfer_ids_pkey":
				return true, fmt.Errorf("%w: transfer id written twice: %v", ledger.ErrInvariantBroke, err)
			}
		}
		return true, fmt.Errorf("commit batch: %w", err)
	}
	return false, nil
}

func transfersIn(bs []*ledger.Batch) int {
	n := 0
	for _, b := range bs {
		n += len(b.Transfers)
	}
	return n
}

// queueNewAccounts creates the accounts of every batch in one statement:
// each row carries its shard.
func queueNewAccounts(q *pgx.Batch, bs []*ledger.Batch) {
	var (
		shards, codes, flags []int32
		ids, ts              []int64
		assets               []int16
	)
	for _, b := range bs {
		for i := range b.NewAccounts {
			a := &b.NewAccounts[i]
			shards, ids, ts = append(shards, int32(b.Shard)), append(ids, int64(a.ID)), append(ts, a.Timestamp)
			assets, codes, flags = append(assets, int16(a.Asset)), append(codes, int32(a.Code)), append(flags, int32(a.Flags))
		}
	}
	if len(ids) == 0 {
		return
	}
	// Zero balances as of creation: entries are replayed on top until the
	// account's balances are flushed.
	q.Queue(`INSERT INTO accounts (id, shard, asset, code, flags, created_ts, balance_ts)
		SELECT u.id, u.shard, u.asset, u.code, u.flags, u.ts, u.ts
		FROM unnest($1::int[], $2::bigint[], $3::smallint[], $4::int[], $5::int[], $6::bigint[])
			AS u(shard, id, asset, code, flags, ts)`,
		shards, ids, assets, codes, flags, ts)
}

// queueClosed marks the accounts closed by every batch, in one statement.
func queueClosed(q *pgx.Batch, bs []*ledger.Batch) {
	var ids []int64
	for _, b := range bs {
		for _, id := range b.Closed {
			ids = append(ids, int64(id))
		}
	}
	if len(ids) > 0 {
		q.Queue(`UPDATE accounts SET closed = true WHERE id = ANY($1)`, ids)
	}
}

// queueTransfers writes the journal entries and ids of every batch in two
// statements, whatever the number of batches: each row carries its shard.
func queueTransfers(q *pgx.Batch, bs []*ledger.Batch, n int) {
	var (
		shards           = make([]int32, 0, n)
		fps              = make([]int64, 0, n)
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
	i := -1
	for _, b := range bs {
		shards = append(shards, repeat(int32(b.Shard), len(b.Transfers))...)
		fps = append(fps, b.Fingerprints...)
		for j := range b.Transfers {
			i++
			t := &b.Transfers[j]
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
	}
	q.Queue(`INSERT INTO transfers (id, shard, ts, business_date, debit_account_id, credit_account_id, amount,
			pending_amount, asset, kind, flags, pending_id, timeout_ns, user_data)
		SELECT u.id, u.shard, u.ts, u.d, u.dr, u.cr, u.amount, u.released, u.asset, u.kind, u.flags, u.pid, u.timeout, u.ud
		FROM unnest($1::int[], $2::uuid[], $3::bigint[], $4::date[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[],
			$9::smallint[], $10::int[], $11::int[], $12::uuid[], $13::bigint[], $14::text[])
			AS u(shard, id, ts, d, dr, cr, amount, released, asset, kind, flags, pid, timeout, ud)`,
		shards, ids, stamps, dates, debits, credits, amounts, released, assets, kinds, flags, pendingIDs, timeouts, userData)
	q.Queue(`INSERT INTO transfer_ids (id, shard, business_date, fingerprint)
		SELECT u.id, u.shard, u.d, u.fp FROM unnest($1::int[], $2::uuid[], $3::date[], $4::bigint[]) AS u(shard, id, d, fp)`,
		shards, ids, dates, fps)
}

func repeat(v int32, n int) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// queueFences checks every batch's epoch in one statement: ledger_fence
// raises for the first stale one, which aborts the whole transaction.
func queueFences(q *pgx.Batch, bs []*ledger.Batch) {
	n := len(bs)
	shards, epochs, lasts, checkpoints := make([]int32, n), make([]int64, n), make([]int64, n), make([]int64, n)
	for i, b := range bs {
		shards[i], epochs[i], lasts[i], checkpoints[i] = int32(b.Shard), b.Epoch, b.LastTimestamp, b.CheckpointTS
	}
	q.Queue(`SELECT ledger_fence(u.shard, u.epoch, u.last, u.checkpoint)
		FROM unnest($1::int[], $2::bigint[], $3::bigint[], $4::bigint[]) AS u(shard, epoch, last, checkpoint)`,
		shards, epochs, lasts, checkpoints)
}

// queueOutbox writes one outbox row per batch with transfers (its events
// packed), in one statement.
func queueOutbox(q *pgx.Batch, bs []*ledger.Batch) {
	var (
		shards   []int32
		lasts    []int64
		events   []int32
		payloads [][]byte
	)
	for _, b := range bs {
		if len(b.Transfers) > 0 {
			shards, lasts = append(shards, int32(b.Shard)), append(lasts, b.LastTimestamp)
			events, payloads = append(events, int32(len(b.Transfers))), append(payloads, ledger.EncodeEntries(b.Transfers))
		}
	}
	q.Queue(`INSERT INTO ledger_outbox (shard, last_ts, events, payload)
		SELECT * FROM unnest($1::int[], $2::bigint[], $3::int[], $4::bytea[])`, shards, lasts, events, payloads)
}

// queueFlush stores balances, each as of its batch's last timestamp, in one
// statement. Absolute values, not increments: the writer owns the shard, so
// its in-memory balances are the truth being made durable. An account
// belongs to one shard, so it appears at most once.
func queueFlush(q *pgx.Batch, bs []*ledger.Batch) {
	n := 0
	for _, b := range bs {
		n += len(b.Accounts)
	}
	if n == 0 {
		return
	}
	ids, asOf := make([]int64, 0, n), make([]int64, 0, n)
	dpend, dpost, cpend, cpost := make([]int64, 0, n), make([]int64, 0, n), make([]int64, 0, n), make([]int64, 0, n)
	for _, b := range bs {
		for i := range b.Accounts {
			a := &b.Accounts[i]
			ids, asOf = append(ids, int64(a.ID)), append(asOf, b.LastTimestamp)
			dpend, dpost = append(dpend, a.DebitsPending), append(dpost, a.DebitsPosted)
			cpend, cpost = append(cpend, a.CreditsPending), append(cpost, a.CreditsPosted)
		}
	}
	// Planned with its parameters each time, this statement alone: pgx
	// prepares it once per connection and Postgres then keeps a generic
	// plan costed on the table's size at that moment. On a database that
	// starts empty that plan was a hash join over a sequential scan of
	// accounts, kept as the table grew (until autovacuum's next analyse):
	// every commit read every account. Forcing custom plans for the whole
	// session instead cost the other statements' planning too (~6 µs of
	// Postgres CPU per transfer at 8 shards).
	q.Queue(`SET LOCAL plan_cache_mode = force_custom_plan`)
	defer q.Queue(`SET LOCAL plan_cache_mode TO DEFAULT`)
	q.Queue(`
		UPDATE accounts a SET debits_pending = u.dpend, debits_posted = u.dpost,
			credits_pending = u.cpend, credits_posted = u.cpost, balance_ts = u.asof
		FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[])
			AS u(id, dpend, dpost, cpend, cpost, asof)
		WHERE a.id = u.id`, ids, dpend, dpost, cpend, cpost, asOf).Exec(func(tag pgconn.CommandTag) error {
		if int(tag.RowsAffected()) != n {
			return fmt.Errorf("%w: flush updated %d of %d accounts", ledger.ErrInvariantBroke, tag.RowsAffected(), n)
		}
		return nil
	})
}

// queuePendingNew writes the pending transfers every batch created, in one
// statement: each row carries its shard.
func queuePendingNew(q *pgx.Batch, bs []*ledger.Batch) {
	var (
		shards                            []int32
		ids                               []pgtype.UUID
		debits, credits, amounts, expires []int64
		assets, states                    []int16
	)
	for _, b := range bs {
		for i := range b.PendingNew {
			p := &b.PendingNew[i]
			shards, ids = append(shards, int32(b.Shard)), append(ids, pgtype.UUID{Bytes: p.ID, Valid: true})
			debits, credits = append(debits, int64(p.DebitAccountID)), append(credits, int64(p.CreditAccountID))
			amounts, expires = append(amounts, p.Amount), append(expires, p.ExpiresAt)
			assets, states = append(assets, int16(p.Asset)), append(states, int16(p.State))
		}
	}
	if len(ids) == 0 {
		return
	}
	q.Queue(`INSERT INTO pending_transfers (id, shard, debit_account_id, credit_account_id, amount, asset, expires_at, state)
		SELECT u.id, u.shard, u.dr, u.cr, u.amount, u.asset, u.exp, u.state
		FROM unnest($1::int[], $2::uuid[], $3::bigint[], $4::bigint[], $5::bigint[], $6::smallint[], $7::bigint[], $8::smallint[])
			AS u(shard, id, dr, cr, amount, asset, exp, state)`,
		shards, ids, debits, credits, amounts, assets, expires, states)
}

// queuePendingResolved stores the new state of the pending transfers every
// batch posted, voided or expired, in one statement.
func queuePendingResolved(q *pgx.Batch, bs []*ledger.Batch) {
	var (
		ids    []pgtype.UUID
		states []int16
	)
	for _, b := range bs {
		for i := range b.PendingResolved {
			ids = append(ids, pgtype.UUID{Bytes: b.PendingResolved[i].ID, Valid: true})
			states = append(states, int16(b.PendingResolved[i].State))
		}
	}
	if len(ids) > 0 {
		q.Queue(`UPDATE pending_transfers p SET state = u.state
			FROM unnest($1::uuid[], $2::smallint[]) AS u(id, state) WHERE p.id = u.id`, ids, states)
	}
}

// Bounds of awaitBackendGone.
const (
	backendGoneWaitMax = 10 * time.Second
	backendGonePoll    = 5 * time.Millisecond
)

// awaitBackendGone waits until the server backend pid has exited, so that
// a transaction it was running has either committed or rolled back. It
// gives up after backendGoneWaitMax.
func (s *Store) awaitBackendGone(ctx context.Context, pid uint32) error {
	ctx, cancel := context.WithTimeout(ctx, backendGoneWaitMax)
	defer cancel()
	for {
		var alive bool
		err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)`, int32(pid)).Scan(&alive)
		if err != nil {
			return fmt.Errorf("backend %d: %w", pid, err)
		}
		if !alive {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("backend %d still running: %w", pid, ctx.Err())
		case <-time.After(backendGonePoll):
		}
	}
}
