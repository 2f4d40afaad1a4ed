package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

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

// ensurePartition creates the journal's partition for d through
// ledger_create_partition (migration 00004): the service role may not
// create tables, and a partition it created would be its own to drop or
// detach; the function creates it as the owner role, with the TRUNCATE
// trigger partitions do not inherit (the row triggers they do).
func (s *Store) ensurePartition(ctx context.Context, d time.Time) error {
	d = time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, time.UTC)
	s.mu.Lock()
	known := s.partitions[d]
	s.mu.Unlock()
	if known {
		return nil
	}
	// Two processes may race to create the same partition; the loser's
	// error is a duplicate, which is success. Bounded: two attempts.
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		if _, err = s.pool.Exec(ctx, `SELECT ledger_create_partition($1::date)`, d); err == nil || isDuplicate(err) {
			s.mu.Lock()
			s.partitions[d] = true
			s.mu.Unlock()
			return nil
		}
	}
	return fmt.Errorf("create partition transfers_%s: %w", d.Format("20060102"), err)
}

func isDuplicate(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "42P07" || pe.Code == "23505")
}
