package postgres

import (
	"context"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/fundplatform/fund/accounts"
)

// A database of several (Sharded) gives out only customer ids whose shard
// it holds (Config.AcceptID): it draws ids from its own sequence and skips
// the others, so ids never collide across databases and each customer's
// id says where it lives. With D databases about one id in D fits; the
// others are simply never used (ids stay far below 2^40 for any
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

// idSpares keeps the fitting ids a draw brought back beyond the one it
// needed, oldest first, for the next creations. Giving out every fitting
// id in sequence order is what spreads customers evenly over the
// database's shards: keeping the first fit of each draw and dropping the
// rest did not (the shard hash of consecutive ids follows a fixed pattern,
// so the first fit of each draw fell on the same few shards; 64 shards on
// 4 databases came out 8x apart). Ids left here when the process stops are
// never used, like any skipped sequence value.
type idSpares struct {
	mu  sync.Mutex
	ids []accounts.CustomerID
}

func (sp *idSpares) take() (accounts.CustomerID, bool) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if len(sp.ids) == 0 {
		return 0, false
	}
	id := sp.ids[0]
	sp.ids = sp.ids[1:]
	return id, true
}

func (sp *idSpares) add(ids []accounts.CustomerID) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.ids = append(sp.ids, ids...)
}

// drawCustomerID gives out the oldest spare fitting id, or draws ids from
// the customers' sequence until AcceptID takes some. Outside the
// creation's transaction: a sequence hands out each value once whatever
// becomes of the transaction.
func (s *Store) drawCustomerID(ctx context.Context) (accounts.CustomerID, error) {
	for range idRoundsMax {
		if id, ok := s.spares.take(); ok {
			return id, nil
		}
		rows, err := s.pool.Query(ctx, `SELECT nextval(pg_get_serial_sequence('customers', 'id'))
			FROM generate_series(1, $1)`, idCandidates)
		if err != nil {
			return 0, fmt.Errorf("draw customer id: %w", err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return 0, fmt.Errorf("draw customer id: %w", err)
		}
		var fit []accounts.CustomerID
		for _, id := range ids {
			if c := accounts.CustomerID(id); s.acceptID(c) {
				fit = append(fit, c)
			}
		}
		s.spares.add(fit)
	}
	return 0, fmt.Errorf("draw customer id: none of %d drawn fits this database", idCandidates*idRoundsMax)
}
