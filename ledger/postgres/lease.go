package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fundplatform/fund/ledger"
)

// AcquireLease makes owner the shard's owner if nobody holds an unexpired
// lease on it, and returns the new fencing epoch: strictly greater than any
// epoch before it, so a batch committed under an older epoch is refused
// (ledger_fence). ok is false when someone else holds the lease. addr is
// advertised with the lease (owner_addr) for clients to find the owner.
func (s *Store) AcquireLease(ctx context.Context, shard int, owner, addr string, ttl time.Duration) (epoch int64, ok bool, err error) {
	return s.TakeLease(ctx, shard, owner, addr, ttl, false)
}

// TakeLease is AcquireLease that, with force, also takes a lease another
// owner still holds: that owner is fenced at once (its next commit fails
// with ledger.ErrFenced). The settlement run forces when told to fence the
// ledger hosts; it serves no calls, so it advertises no address.
func (s *Store) TakeLease(ctx context.Context, shard int, owner, addr string, ttl time.Duration, force bool) (epoch int64, ok bool, err error) {
	if _, err := s.pool.Exec(ctx, `INSERT INTO ledger_shards (shard) VALUES ($1) ON CONFLICT (shard) DO NOTHING`, shard); err != nil {
		return 0, false, fmt.Errorf("register shard: %w", err)
	}
	err = s.pool.QueryRow(ctx, `
		UPDATE ledger_shards SET epoch = epoch + 1, owner = $2, owner_addr = $4, lease_expires_at = now() + $3::interval
		WHERE shard = $1 AND ($5 OR owner = '' OR owner = $2 OR lease_expires_at IS NULL OR lease_expires_at < now())
		RETURNING epoch`, shard, owner, ttl.String(), addr, force).Scan(&epoch)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("acquire lease on shard %d: %w", shard, err)
	}
	return epoch, true, nil
}

// RenewLease extends owner's lease at epoch. It returns ledger.ErrFenced
// when the lease was taken over: the owner must stop writing at once (its
// commits would be refused anyway).
func (s *Store) RenewLease(ctx context.Context, shard int, owner string, epoch int64, ttl time.Duration) error {
	tag, err := s.pool.Exec(ctx, `
		UPDATE ledger_shards SET lease_expires_at = now() + $4::interval
		WHERE shard = $1 AND owner = $2 AND epoch = $3`, shard, owner, epoch, ttl.String())
	if err != nil {
		return fmt.Errorf("renew lease on shard %d: %w", shard, err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("shard %d epoch %d: %w", shard, epoch, ledger.ErrFenced)
	}
	return nil
}

// ReleaseLease gives the shard up after a clean stop, so another owner can
// take it without waiting for the lease to expire.
func (s *Store) ReleaseLease(ctx context.Context, shard int, owner string, epoch int64) error {
	if _, err := s.pool.Exec(ctx, `
		UPDATE ledger_shards SET owner = '', owner_addr = '', lease_expires_at = NULL
		WHERE shard = $1 AND owner = $2 AND epoch = $3`, shard, owner, epoch); err != nil {
		return fmt.Errorf("release lease on shard %d: %w", shard, err)
	}
	return nil
}

// Lease describes who owns a shard.
type Lease struct {
	Shard     int
	Owner     string
	Addr      string // where the owner serves calls; empty when it serves none
	Epoch     int64
	ExpiresAt time.Time // zero when released
	Live      bool      // held and unexpired by the database's clock
}

// Leases lists every shard's lease.
func (s *Store) Leases(ctx context.Context) ([]Lease, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT shard, owner, owner_addr, epoch, coalesce(lease_expires_at, 'epoch'),
			owner <> '' AND coalesce(lease_expires_at > now(), false)
		FROM ledger_shards ORDER BY shard`)
	if err != nil {
		return nil, fmt.Errorf("read leases: %w", err)
	}
	var out []Lease
	var l Lease
	_, err = pgx.ForEachRow(rows, []any{&l.Shard, &l.Owner, &l.Addr, &l.Epoch, &l.ExpiresAt, &l.Live}, func() error {
		out = append(out, l)
		return nil
	})
	return out, err
}
