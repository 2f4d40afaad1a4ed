package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/fundplatform/fund/ledger"
)

// DatabasesConfig configures OpenDatabases.
type DatabasesConfig struct {
	// DSNs lists the ledger's databases in shard-map order: every process
	// must be given the same list in the same order.
	DSNs   []string
	Shards int // logical shards
	// ConnsMax is each database's pool size; 0 = two per shard it holds
	// plus two (a commit and an id lookup can be in flight per shard, plus
	// lease renewals).
	ConnsMax        int32
	PartitionsAhead int
	NoOutbox        bool
	// Now is the business clock of every database's store (Config.Now).
	Now func() time.Time
	// Attachments is every database's attachment writer (Config.Attachments).
	Attachments AttachmentWriter
}

// Databases is the ledger spread over several databases: shard s lives on
// database Map.DatabaseOf(s), and so do its lease, journal, balances and
// outbox. It implements ledger.Store, ledger.LeaseStore and
// ledger.Directory by handing each call to the shard's database, and the
// relay's outbox interface by splitting the shards by database.
type Databases struct {
	Map    ledger.ShardMap
	stores []*Store
}

var (
	_ ledger.Store           = (*Databases)(nil)
	_ ledger.AttachmentStore = (*Databases)(nil)
	_ ledger.LeaseStore      = (*Databases)(nil)
	_ ledger.Directory       = (*Databases)(nil)
)

// OpenDatabases opens (and migrates) every database of the shard map.
func OpenDatabases(ctx context.Context, cfg DatabasesConfig) (*Databases, error) {
	m, err := ledger.NewShardMap(cfg.Shards, len(cfg.DSNs))
	if err != nil {
		return nil, err
	}
	d := &Databases{Map: m}
	for i, dsn := range cfg.DSNs {
		conns := cfg.ConnsMax
		if conns == 0 {
			conns = int32(2 + 2*len(m.ShardsOn(i)))
		}
		s, err := Open(ctx, Config{DSN: dsn, ConnsMax: conns, PartitionsAhead: cfg.PartitionsAhead, NoOutbox: cfg.NoOutbox,
			Now: cfg.Now, Shards: cfg.Shards, Attachments: cfg.Attachments})
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("database %d of %d: %w", i+1, len(cfg.DSNs), err)
		}
		d.stores = append(d.stores, s)
	}
	return d, nil
}

// Close closes every database's pool.
func (d *Databases) Close() {
	for _, s := range d.stores {
		s.Close()
	}
}

// Store returns the store of database i (in DSN order).
func (d *Databases) Store(i int) *Store { return d.stores[i] }

// Len returns the number of databases.
func (d *Databases) Len() int { return len(d.stores) }

// StoreOf returns the store that holds shard.
func (d *Databases) StoreOf(shard int) *Store { return d.stores[d.Map.DatabaseOf(shard)] }

// Load implements ledger.Store.
func (d *Databases) Load(ctx context.Context, shard int) (*ledger.Snapshot, error) {
	return d.StoreOf(shard).Load(ctx, shard)
}

// Lookup implements ledger.Store.
func (d *Databases) Lookup(ctx context.Context, shard int, ids, pendingIDs []ledger.TransferID) (*ledger.Known, error) {
	return d.StoreOf(shard).Lookup(ctx, shard, ids, pendingIDs)
}

// Commit implements ledger.Store.
func (d *Databases) Commit(ctx context.Context, b *ledger.Batch) error {
	return d.StoreOf(b.Shard).Commit(ctx, b)
}

// WritesAttachments implements ledger.AttachmentStore.
func (d *Databases) WritesAttachments(shard int) bool {
	return d.StoreOf(shard).WritesAttachments(shard)
}

// Verify implements ledger.Store.
func (d *Databases) Verify(ctx context.Context, shard int) (*ledger.VerifyReport, error) {
	return d.StoreOf(shard).Verify(ctx, shard)
}

// AcquireLease implements ledger.LeaseStore: the lease lives in the shard's
// own database, beside the fence its commits check.
func (d *Databases) AcquireLease(ctx context.Context, shard int, owner, addr string, ttl time.Duration) (int64, bool, error) {
	return d.StoreOf(shard).AcquireLease(ctx, shard, owner, addr, ttl)
}

// RenewLease implements ledger.LeaseStore.
func (d *Databases) RenewLease(ctx context.Context, shard int, owner string, epoch int64, ttl time.Duration) (string, error) {
	return d.StoreOf(shard).RenewLease(ctx, shard, owner, epoch, ttl)
}

// ReleaseLease implements ledger.LeaseStore.
func (d *Databases) ReleaseLease(ctx context.Context, shard int, owner string, epoch int64) error {
	return d.StoreOf(shard).ReleaseLease(ctx, shard, owner, epoch)
}

// RequestHandoff implements ledger.HostRegistry in the shard's database.
func (d *Databases) RequestHandoff(ctx context.Context, shard int, to string, hold time.Duration, override bool) (bool, error) {
	return d.StoreOf(shard).RequestHandoff(ctx, shard, to, hold, override)
}

// Heartbeat implements ledger.HostRegistry in the first database.
func (d *Databases) Heartbeat(ctx context.Context, owner, addr string, ttl time.Duration) error {
	return d.stores[0].Heartbeat(ctx, owner, addr, ttl)
}

// LeaveHosts implements ledger.HostRegistry in the first database.
func (d *Databases) LeaveHosts(ctx context.Context, owner string) error {
	return d.stores[0].LeaveHosts(ctx, owner)
}

// LiveHosts implements ledger.HostRegistry from the first database.
func (d *Databases) LiveHosts(ctx context.Context) ([]string, error) {
	return d.stores[0].LiveHosts(ctx)
}

// WatchLeases implements ledger.LeaseWatcher over every database at once.
// When one database's watch fails, the others are stopped too and the
// error returned, for the caller to start the whole watch again.
func (d *Databases) WatchLeases(ctx context.Context, changed func(shard int)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(d.stores))
	var wg sync.WaitGroup
	for i, st := range d.stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = st.WatchLeases(ctx, changed); errs[i] != nil {
				errs[i] = fmt.Errorf("database %d: %w", i+1, errs[i])
				cancel()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Leases lists the leases of every shard of the map, from each shard's own
// database; a shard never leased yet comes back with no owner.
func (d *Databases) Leases(ctx context.Context) ([]Lease, error) {
	out := make([]Lease, d.Map.Shards)
	for s := range out {
		out[s].Shard = s
	}
	for i, st := range d.stores {
		ls, err := st.Leases(ctx)
		if err != nil {
			return nil, fmt.Errorf("database %d: %w", i+1, err)
		}
		for _, l := range ls {
			// A row for a shard the map puts elsewhere is left over from
			// another layout; the shard's own database is the truth.
			if l.Shard >= 0 && l.Shard < d.Map.Shards && d.Map.DatabaseOf(l.Shard) == i {
				out[l.Shard] = l
			}
		}
	}
	return out, nil
}

// ShardOwners implements ledger.Directory from the lease tables, reading
// every database at once: a database that does not answer costs its own
// shards' entries (left out, with its error) and never the others'.
func (d *Databases) ShardOwners(ctx context.Context) ([]ledger.ShardOwner, error) {
	leases := make([][]Lease, len(d.stores))
	errs := make([]error, len(d.stores))
	var wg sync.WaitGroup
	for i, st := range d.stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			leases[i], errs[i] = st.Leases(ctx)
		}()
	}
	wg.Wait()
	var out []ledger.ShardOwner
	for i, ls := range leases {
		if errs[i] != nil {
			errs[i] = fmt.Errorf("database %d: %w", i+1, errs[i])
			continue
		}
		byShard := map[int]Lease{}
		for _, l := range ls {
			byShard[l.Shard] = l
		}
		for _, s := range d.Map.ShardsOn(i) {
			o := ledger.ShardOwner{Shard: s}
			if l, ok := byShard[s]; ok {
				o = l.shardOwner()
			}
			out = append(out, o)
		}
	}
	return out, errors.Join(errs...)
}

// OutboxPending reads the outboxes of the given shards, each from its own
// database, all databases at once (outbox.Store). When a database
// fails, the batches of the others come back together with its error.
func (d *Databases) OutboxPending(ctx context.Context, shards []int, limit int) ([]ledger.OutboxBatch, error) {
	groups := d.split(shards)
	got := make([][]ledger.OutboxBatch, len(groups))
	errs := make([]error, len(groups))
	var wg sync.WaitGroup
	for i, group := range groups {
		if len(group) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = d.stores[i].OutboxPending(ctx, group, limit)
			if errs[i] != nil {
				errs[i] = fmt.Errorf("database %d: %w", i+1, errs[i])
			}
		}()
	}
	wg.Wait()
	var out []ledger.OutboxBatch
	for _, bs := range got {
		out = append(out, bs...)
	}
	return out, errors.Join(errs...)
}

// OutboxAck acknowledges published outbox rows on their databases.
func (d *Databases) OutboxAck(ctx context.Context, upTo map[int]int64) error {
	per := make([]map[int]int64, len(d.stores))
	for shard, ts := range upTo {
		i := d.Map.DatabaseOf(shard)
		if per[i] == nil {
			per[i] = map[int]int64{}
		}
		per[i][shard] = ts
	}
	var errs []error
	for i, m := range per {
		if len(m) > 0 {
			errs = append(errs, d.stores[i].OutboxAck(ctx, m))
		}
	}
	return errors.Join(errs...)
}

// NetByCode sums NetByCode over every database: for the in-transit
// accounts, zero across all shards once no saga is in flight.
func (d *Databases) NetByCode(ctx context.Context, code uint16) (map[ledger.Asset]int64, error) {
	net := map[ledger.Asset]int64{}
	for i, st := range d.stores {
		m, err := st.NetByCode(ctx, code)
		if err != nil {
			return nil, fmt.Errorf("database %d: %w", i+1, err)
		}
		for a, v := range m {
			net[a] += v
		}
	}
	return net, nil
}

// NetsByCode is NetsByCode of every database, in database order.
func (d *Databases) NetsByCode(ctx context.Context, codes []uint16) ([]AccountNet, error) {
	var out []AccountNet
	for i, st := range d.stores {
		ns, err := st.NetsByCode(ctx, codes)
		if err != nil {
			return nil, fmt.Errorf("database %d: %w", i+1, err)
		}
		out = append(out, ns...)
	}
	return out, nil
}

func (d *Databases) split(shards []int) [][]int {
	out := make([][]int, len(d.stores))
	for _, s := range shards {
		i := d.Map.DatabaseOf(s)
		out[i] = append(out[i], s)
	}
	return out
}

// CheckPlacement reports shards whose rows sit on a database the map does
// not put them on: the sign of a DSN list given in another order (or with
// a database added or removed) than the one the data was written with.
// Each problem is one sentence.
func (d *Databases) CheckPlacement(ctx context.Context) ([]string, error) {
	var problems []string
	for i, st := range d.stores {
		ls, err := st.Leases(ctx)
		if err != nil {
			return nil, fmt.Errorf("database %d: %w", i+1, err)
		}
		for _, l := range ls {
			switch {
			case l.Shard < 0 || l.Shard >= d.Map.Shards:
				problems = append(problems, fmt.Sprintf("database %d holds shard %d, beyond the %d shards of the map", i+1, l.Shard, d.Map.Shards))
			case d.Map.DatabaseOf(l.Shard) != i:
				problems = append(problems, fmt.Sprintf("database %d holds shard %d, which the map places on database %d (is the DSN list in its original order?)",
					i+1, l.Shard, d.Map.DatabaseOf(l.Shard)+1))
			}
		}
	}
	return problems, nil
}
