package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/fundplatform/fund/accounts"
)

// A database of several (Sharded) gives out only customer ids whose shard
// it holds (Config.AcceptID): it draws ids from its own sequence and skips
// the others, so ids never collide across databases and each customer's
// id says where it lives. With D databases about one id in D fits; the
// skipped ones are simply never used (ids stay far below 2^40 for any
// number of customers a fund can have).

// Limits of drawing a fitting id.
const (
	// idCandidates are drawn per round trip: with 2 databases one in 256
	// rounds comes back empty, with 8 one in 3.
	idCandidates = 8
	// idRoundsMax bounds the round trips: 512 candidates miss with
	// probability (1-1/D)^512, below 1e-7 for any D up to 32.
	idRoundsMax = 64
)

// customerInsert returns the statement that claims c's request id and
// stores c (RETURNING customerColumns, no row when the request id is
// taken), and its arguments: with the id the sequence gives, or, with
// Config.AcceptID, with an id drawn here that it accepts.
func (s *Store) customerInsert(ctx context.Context, c accounts.Customer) (string, []any, error) {
	if s.acceptID == nil {
		return `INSERT INTO customers (request_id, name, created_at) VALUES ($1, $2, $3)
			ON CONFLICT (request_id) DO NOTHING
			RETURNING ` + customerColumns, []any{c.RequestID, c.Name, c.CreatedAt}, nil
	}
	id, err := s.drawCustomerID(ctx)
	if err != nil {
		return "", nil, err
	}
	return `INSERT INTO customers (id, request_id, name, created_at) OVERRIDING SYSTEM VALUE VALUES ($4, $1, $2, $3)
		ON CONFLICT (request_id) DO NOTHING
		RETURNING ` + customerColumns, []any{c.RequestID, c.Name, c.CreatedAt, id}, nil
}

// drawCustomerID draws ids from the customers' sequence until AcceptID
// takes one. Outside the creation's transaction: a sequence hands out
// each value once whatever becomes of the transaction.
func (s *Store) drawCustomerID(ctx context.Context) (accounts.CustomerID, error) {
	for range idRoundsMax {
		rows, err := s.pool.Query(ctx, `SELECT nextval(pg_get_serial_sequence('customers', 'id'))
			FROM generate_series(1, $1)`, idCandidates)
		if err != nil {
			return 0, fmt.Errorf("draw customer id: %w", err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return 0, fmt.Errorf("draw customer id: %w", err)
		}
		for _, id := range ids {
			if c := accounts.CustomerID(id); s.acceptID(c) {
				return c, nil
			}
		}
	}
	return 0, fmt.Errorf("draw customer id: none of %d drawn fits this database", idCandidates*idRoundsMax)
}
