package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/fundplatform/fund/ledger"
)

// OutboxPending returns up to limit unpublished batches per shard of the
// given shards, oldest first within each shard, in one query.
func (s *Store) OutboxPending(ctx context.Context, shards []int, limit int) ([]ledger.OutboxBatch, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT o.shard, o.last_ts, o.payload
		FROM unnest($1::int[]) AS sh(shard)
		CROSS JOIN LATERAL (
			SELECT shard, last_ts, payload FROM ledger_outbox
			WHERE shard = sh.shard ORDER BY last_ts LIMIT $2
		) o
		ORDER BY o.shard, o.last_ts`, shards, limit)
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	var (
		out     []ledger.OutboxBatch
		shard   int
		lastTS  int64
		payload []byte
	)
	_, err = pgx.ForEachRow(rows, []any{&shard, &lastTS, &payload}, func() error {
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

// OutboxAck removes, per shard, the batches up to and including the given
// position, once their events are published; one statement for all.
func (s *Store) OutboxAck(ctx context.Context, upTo map[int]int64) error {
	if len(upTo) == 0 {
		return nil
	}
	shards, positions := make([]int32, 0, len(upTo)), make([]int64, 0, len(upTo))
	for sh, ts := range upTo {
		shards, positions = append(shards, int32(sh)), append(positions, ts)
	}
	if _, err := s.pool.Exec(ctx, `
		DELETE FROM ledger_outbox o USING unnest($1::int[], $2::bigint[]) AS u(shard, last_ts)
		WHERE o.shard = u.shard AND o.last_ts <= u.last_ts`, shards, positions); err != nil {
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
