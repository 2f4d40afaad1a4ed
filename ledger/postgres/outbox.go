package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/fundplatform/fund/ledger"
)

// OutboxPending returns up to limit unpublished batches of a shard, oldest
// first.
func (s *Store) OutboxPending(ctx context.Context, shard, limit int) ([]ledger.OutboxBatch, error) {
	rows, err := s.pool.Query(ctx, `SELECT last_ts, payload FROM ledger_outbox
		WHERE shard = $1 ORDER BY last_ts LIMIT $2`, shard, limit)
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	var (
		out     []ledger.OutboxBatch
		lastTS  int64
		payload []byte
	)
	_, err = pgx.ForEachRow(rows, []any{&lastTS, &payload}, func() error {
		ts, err := ledger.DecodeEntries(payload)
		if err != nil {
			return fmt.Errorf("outbox row %d/%d: %w", shard, lastTS, err)
		}
		b := ledger.OutboxBatch{Shard: shard, LastTS: lastTS, Events: make([]ledger.Event, len(ts))}
		for i := range ts {
			b.Events[i] = ledger.EventOf(shard, &ts[i])
		}
		out = append(out, b)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// OutboxAck removes a shard's batches up to and including lastTS, once
// their events are published.
func (s *Store) OutboxAck(ctx context.Context, shard int, lastTS int64) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM ledger_outbox WHERE shard = $1 AND last_ts <= $2`, shard, lastTS); err != nil {
		return fmt.Errorf("ack outbox: %w", err)
	}
	return nil
}

// OutboxLag returns how many batches and events of a shard wait in the
// outbox.
func (s *Store) OutboxLag(ctx context.Context, shard int) (batches, events int64, err error) {
	err = s.pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(events), 0) FROM ledger_outbox WHERE shard = $1`, shard).
		Scan(&batches, &events)
	return batches, events, err
}
