package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fundplatform/fund/ledger"
)

// leaseChannel is the channel of the NOTIFY sent when a shard's lease is
// asked for (a hand-off request), released or taken; the payload is the
// shard. Renewals notify nobody, so an idle cluster is quiet.
const leaseChannel = "ledger_leases"

// hostsForgetAfter is how long a dead host's row stays in ledger_hosts
// (only live rows count; this merely keeps the table small when owner
// names change with every restart).
const hostsForgetAfter = time.Hour

var (
	_ ledger.HostRegistry = (*Store)(nil)
	_ ledger.LeaseWatcher = (*Store)(nil)
)

// AcquireLease makes owner the shard's owner if nobody holds an unexpired
// lease on it, and returns the new fencing epoch: strictly greater than any
// epoch before it, so a batch committed under an older epoch is refused
// (ledger_fence). ok is false when someone else holds the lease, or when a
// released lease is still reserved for the party that asked for its
// hand-off. addr is advertised with the lease (owner_addr) for clients to
// find the owner.
func (s *Store) AcquireLease(ctx context.Context, shard int, owner, addr string, ttl time.Duration) (epoch int64, ok bool, err error) {
	return s.TakeLease(ctx, shard, owner, addr, ttl, false)
}

// TakeLease is AcquireLease that, with force, also takes a lease another
// owner still holds: that owner is fenced at once (its next commit fails
// with ledger.ErrFenced). The settlement run forces only when a holder did
// not answer a hand-off (HandOffLease); it serves no calls, so it
// advertises no address. Taking the lease clears any hand-off request.
func (s *Store) TakeLease(ctx context.Context, shard int, owner, addr string, ttl time.Duration, force bool) (epoch int64, ok bool, err error) {
	if _, err := s.pool.Exec(ctx, `INSERT INTO ledger_shards (shard) VALUES ($1) ON CONFLICT (shard) DO NOTHING`, shard); err != nil {
		return 0, false, fmt.Errorf("register shard: %w", err)
	}
	err = s.pool.QueryRow(ctx, `
		WITH t AS (
			UPDATE ledger_shards SET epoch = epoch + 1, owner = $2, owner_addr = $4, lease_expires_at = now() + $3::interval,
				handoff_to = '', handoff_until = NULL
			WHERE shard = $1 AND ($5 OR (
				(owner = '' OR owner = $2 OR lease_expires_at IS NULL OR lease_expires_at < now())
				AND (handoff_to IN ('', $2) OR handoff_until IS NULL OR handoff_until < now())))
			RETURNING shard, epoch)
		SELECT epoch FROM t, pg_notify('`+leaseChannel+`', t.shard::text)`, shard, owner, ttl.String(), addr, force).Scan(&epoch)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("acquire lease on shard %d: %w", shard, err)
	}
	return epoch, true, nil
}

// RenewLease extends owner's lease at epoch and returns who asked for a
// hand-off of the shard ("" when nobody did, or the request lapsed): the
// holder should then drain and release it (ledger.Host does). It returns
// ledger.ErrFenced when the lease was taken over: the owner must stop
// writing at once (its commits would be refused anyway).
func (s *Store) RenewLease(ctx context.Context, shard int, owner string, epoch int64, ttl time.Duration) (handoffTo string, err error) {
	err = s.pool.QueryRow(ctx, `
		UPDATE ledger_shards SET lease_expires_at = now() + $4::interval
		WHERE shard = $1 AND owner = $2 AND epoch = $3
		RETURNING CASE WHEN handoff_until > now() THEN handoff_to ELSE '' END`,
		shard, owner, epoch, ttl.String()).Scan(&handoffTo)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("shard %d epoch %d: %w", shard, epoch, ledger.ErrFenced)
	}
	if err != nil {
		return "", fmt.Errorf("renew lease on shard %d: %w", shard, err)
	}
	return handoffTo, nil
}

// ReleaseLease gives the shard up (a clean stop, or a hand-off once the
// holder drained), so another owner can take it without waiting for the
// lease to expire. A pending hand-off request stays: the released lease is
// then reserved for the requester until the request lapses. The release is
// notified (WatchLeases), so that the requester, or any host when nobody
// asked, takes the shard at once.
func (s *Store) ReleaseLease(ctx context.Context, shard int, owner string, epoch int64) error {
	if _, err := s.pool.Exec(ctx, `
		WITH r AS (
			UPDATE ledger_shards SET owner = '', owner_addr = '', lease_expires_at = NULL
			WHERE shard = $1 AND owner = $2 AND epoch = $3 RETURNING shard)
		SELECT pg_notify('`+leaseChannel+`', shard::text) FROM r`, shard, owner, epoch); err != nil {
		return fmt.Errorf("release lease on shard %d: %w", shard, err)
	}
	return nil
}

// RequestHandoff asks the holder of shard to hand it to "to": recorded on
// the lease until hold has passed, and notified. A request of another
// party still pending is left alone unless override (the settlement run
// overrides a host's rebalancing request, never the reverse). ok is false
// when the request was not recorded (another one pending, or "to" holds
// the shard already).
func (s *Store) RequestHandoff(ctx context.Context, shard int, to string, hold time.Duration, override bool) (ok bool, err error) {
	if _, err := s.pool.Exec(ctx, `INSERT INTO ledger_shards (shard) VALUES ($1) ON CONFLICT (shard) DO NOTHING`, shard); err != nil {
		return false, fmt.Errorf("register shard: %w", err)
	}
	var n int
	err = s.pool.QueryRow(ctx, `
		WITH r AS (
			UPDATE ledger_shards SET handoff_to = $2, handoff_until = now() + $3::interval
			WHERE shard = $1 AND owner <> $2
				AND ($4 OR handoff_to IN ('', $2) OR handoff_until IS NULL OR handoff_until < now())
			RETURNING shard)
		SELECT count(pg_notify('`+leaseChannel+`', shard::text)) FROM r`, shard, to, hold.String(), override).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("request hand-off of shard %d: %w", shard, err)
	}
	return n == 1, nil
}

// handOffPoll is how often HandOffLease tries to take the shard while it
// waits for the holder to release it.
const handOffPoll = 10 * time.Millisecond

// HandOffLease takes the shard for owner without fencing a live holder: it
// takes a free lease at once, and otherwise asks the holder for a hand-off
// (overriding a host's pending request) and takes the lease as soon as the
// holder released it, waiting at most wait. ok is false when the holder
// did not hand the shard over in time (a frozen or dead holder, or one
// that does not answer hand-offs): the caller may then force (TakeLease),
// or wait for the lease to expire. from is the owner the shard was taken
// from ("" when it was free).
func (s *Store) HandOffLease(ctx context.Context, shard int, owner string, ttl, wait time.Duration) (epoch int64, from string, ok bool, err error) {
	var l Lease
	if err := s.pool.QueryRow(ctx, `SELECT owner, owner <> '' AND coalesce(lease_expires_at > now(), false)
		FROM ledger_shards WHERE shard = $1`, shard).Scan(&l.Owner, &l.Live); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return 0, "", false, fmt.Errorf("read lease of shard %d: %w", shard, err)
	}
	if l.Live && l.Owner != owner {
		from = l.Owner
	}
	if epoch, ok, err = s.AcquireLease(ctx, shard, owner, "", ttl); err != nil || ok {
		return epoch, from, ok, err
	}
	// The request outlives the wait a little, so that a holder releasing
	// at the last moment still finds the shard reserved for this owner.
	if _, err := s.RequestHandoff(ctx, shard, owner, wait+time.Second, true); err != nil {
		return 0, from, false, err
	}
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return 0, from, false, ctx.Err()
		case <-time.After(handOffPoll):
		}
		if epoch, ok, err = s.AcquireLease(ctx, shard, owner, "", ttl); err != nil || ok {
			return epoch, from, ok, err
		}
	}
	return 0, from, false, nil
}

// WatchLeases calls changed with the shard of every lease released, asked
// for or taken, in this database, until ctx ends or the connection fails. It
// listens on a connection of its own, outside the pool.
func (s *Store) WatchLeases(ctx context.Context, changed func(shard int)) error {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("connect to watch leases: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+leaseChannel); err != nil {
		return fmt.Errorf("listen for leases: %w", err)
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("watch leases: %w", err)
		}
		if shard, err := strconv.Atoi(n.Payload); err == nil {
			changed(shard)
		}
	}
}

// Heartbeat records owner (serving at addr) as a live ledger host for ttl
// more.
func (s *Store) Heartbeat(ctx context.Context, owner, addr string, ttl time.Duration) error {
	if _, err := s.pool.Exec(ctx, `
		WITH gone AS (DELETE FROM ledger_hosts WHERE expires_at < now() - $4::interval)
		INSERT INTO ledger_hosts (owner, addr, expires_at) VALUES ($1, $2, now() + $3::interval)
		ON CONFLICT (owner) DO UPDATE SET addr = excluded.addr, expires_at = excluded.expires_at`,
		owner, addr, ttl.String(), hostsForgetAfter.String()); err != nil {
		return fmt.Errorf("host heartbeat: %w", err)
	}
	return nil
}

// LeaveHosts removes owner from the live hosts (a clean stop), so that the
// others count it gone at once.
func (s *Store) LeaveHosts(ctx context.Context, owner string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM ledger_hosts WHERE owner = $1`, owner); err != nil {
		return fmt.Errorf("leave hosts: %w", err)
	}
	return nil
}

// LiveHosts returns the hosts whose heartbeat has not expired, by name.
func (s *Store) LiveHosts(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT owner FROM ledger_hosts WHERE expires_at > now() ORDER BY owner`)
	if err != nil {
		return nil, fmt.Errorf("read hosts: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read hosts: %w", err)
	}
	return out, nil
}

// ShardOwners implements ledger.Directory for a ledger on this database
// alone: every shard with a lease row, with its live owner.
func (s *Store) ShardOwners(ctx context.Context) ([]ledger.ShardOwner, error) {
	ls, err := s.Leases(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]ledger.ShardOwner, 0, len(ls))
	for _, l := range ls {
		out = append(out, l.shardOwner())
	}
	return out, nil
}

// Lease describes who owns a shard.
type Lease struct {
	Shard     int
	Owner     string
	Addr      string // where the owner serves calls; empty when it serves none
	Epoch     int64
	ExpiresAt time.Time // zero when released
	Live      bool      // held and unexpired by the database's clock
	// HandoffTo asked for the shard (or, once released, has it reserved)
	// while the request lasts; "" when nobody did.
	HandoffTo string
}

// shardOwner is what the lease tells a ledger.Directory.
func (l Lease) shardOwner() ledger.ShardOwner {
	o := ledger.ShardOwner{Shard: l.Shard, Epoch: l.Epoch}
	if l.Live {
		o.Owner, o.Addr = l.Owner, l.Addr
	} else {
		o.ReservedFor = l.HandoffTo
	}
	return o
}

// Leases lists every shard's lease.
func (s *Store) Leases(ctx context.Context) ([]Lease, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT shard, owner, owner_addr, epoch, coalesce(lease_expires_at, 'epoch'),
			owner <> '' AND coalesce(lease_expires_at > now(), false),
			CASE WHEN handoff_until > now() THEN handoff_to ELSE '' END
		FROM ledger_shards ORDER BY shard`)
	if err != nil {
		return nil, fmt.Errorf("read leases: %w", err)
	}
	var out []Lease
	var l Lease
	_, err = pgx.ForEachRow(rows, []any{&l.Shard, &l.Owner, &l.Addr, &l.Epoch, &l.ExpiresAt, &l.Live, &l.HandoffTo}, func() error {
		out = append(out, l)
		return nil
	})
	return out, err
}
