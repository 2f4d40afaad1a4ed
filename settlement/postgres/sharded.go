package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/ledger"
	ledgerpg "github.com/fundplatform/fund/ledger/postgres"
	"github.com/fundplatform/fund/settlement"
)

// The ledger's shards sit on several databases (ledger.ShardMap), and
// each shard's customers' rows and orders sit in the same database as the
// shard (accounts/postgres.Sharded). Sharded runs settlement over all of
// them, one Store per database:
//
//   - the run-level records (runs, failures, the whole-run steps file and
//     publish, the allocation's totals) are the first database's;
//   - every per-shard step (the lease, prepare and cut, settling the due
//     orders, the snapshot, booking the income with the customers' income
//     rows) runs in the shard's database, so each step's one transaction
//     still holds its ledger entries, its accounts rows and its marker;
//   - completing the due orders runs once per database, for the orders of
//     that database's customers, each in one transaction with its
//     movements and its own "orders" marker (shard -1 of that database);
//   - due orders and movements are merged from every database.
//
// The other databases keep a copy of the run's row (mirrorRun), which
// their cuts and steps refer to and their steps read the shard count
// from; the first database's row is the record.
//
// With one database every call goes to its Store unchanged.

// ShardedConfig for OpenSharded.
type ShardedConfig struct {
	// DSNs are the shard databases in shard-map order, the list the
	// ledger owners are given.
	DSNs []string
	// Shards is the number of logical ledger shards; 0 = as many as the
	// databases' tables show (which needs a ledger already created).
	Shards int
	// ConnsMax is each database's pool; 0 = Config's default.
	ConnsMax int32
	// Now is the business clock (Config.Now).
	Now func() time.Time
}

// Sharded implements settlement.Store over the shard databases.
type Sharded struct {
	m   ledger.ShardMap
	dbs []*Store
}

var _ settlement.Store = (*Sharded)(nil)

// OpenSharded opens every database (applying the ledger's, the accounts'
// and settlement's migrations to each) and checks that each holds only
// shards the map places on it. The caller must Close it.
func OpenSharded(ctx context.Context, cfg ShardedConfig) (_ *Sharded, err error) {
	if len(cfg.DSNs) == 0 {
		return nil, errors.New("settlement store: no database given")
	}
	s := &Sharded{}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	for i, dsn := range cfg.DSNs {
		st, err := Open(ctx, Config{DSN: dsn, ConnsMax: cfg.ConnsMax, Now: cfg.Now})
		if err != nil {
			return nil, fmt.Errorf("database %d of %d: %w", i+1, len(cfg.DSNs), err)
		}
		s.dbs = append(s.dbs, st)
	}
	s.dbs[0].peers = s.dbs[1:]
	shards := cfg.Shards
	if shards == 0 {
		if shards, err = s.Shards(ctx); err != nil {
			return nil, err
		}
		shards = max(shards, 1)
	}
	if s.m, err = ledger.NewShardMap(shards, len(s.dbs)); err != nil {
		return nil, err
	}
	return s, s.checkPlacement(ctx)
}

// checkPlacement refuses databases given in another order (or another
// count) than the ledger's: a database holding a shard the map places
// elsewhere.
func (s *Sharded) checkPlacement(ctx context.Context) error {
	if len(s.dbs) == 1 {
		return nil
	}
	for d, st := range s.dbs {
		var shards []int
		err := st.pool.QueryRow(ctx, `SELECT coalesce(array_agg(shard), '{}') FROM (
			SELECT DISTINCT shard FROM ledger_shards) x`).Scan(&shards)
		if err != nil {
			return fmt.Errorf("shards of database %d: %w", d+1, err)
		}
		for _, shard := range shards {
			if shard >= s.m.Shards || s.m.DatabaseOf(shard) != d {
				return fmt.Errorf("database %d of %d holds shard %d, which %d shards on %d databases place elsewhere: "+
					"give the databases in the ledger's order: %w", d+1, len(s.dbs), shard, s.m.Shards, len(s.dbs),
					settlement.ErrShardCount)
			}
		}
	}
	return nil
}

// Close closes every database's store.
func (s *Sharded) Close() {
	for _, st := range s.dbs {
		st.Close()
	}
}

// Databases returns how many databases the store spans.
func (s *Sharded) Databases() int { return len(s.dbs) }

// Database returns the store of database i (shard-map order).
func (s *Sharded) Database(i int) *Store { return s.dbs[i] }

// LedgerOf returns the ledger store of the database holding shard (Verify).
func (s *Sharded) LedgerOf(shard int) *ledgerpg.Store { return s.of(shard).ledger }

// SetFailpoint sets every database's Store.Failpoint.
func (s *Sharded) SetFailpoint(f func(point string) error) {
	for _, st := range s.dbs {
		st.Failpoint = f
	}
}

// SetTrace sets every database's Store.Trace.
func (s *Sharded) SetTrace(w io.Writer) {
	for _, st := range s.dbs {
		st.Trace = w
	}
}

// of returns the store of the database holding shard.
func (s *Sharded) of(shard int) *Store { return s.dbs[s.m.DatabaseOf(shard)] }

// OpenRun implements settlement.Store on the first database, then copies
// the run's row to the others.
func (s *Sharded) OpenRun(ctx context.Context, in settlement.Input, shards int) (settlement.RunState, error) {
	if len(s.dbs) > 1 && shards != s.m.Shards {
		return settlement.RunState{}, fmt.Errorf("the databases hold %d shards, the run %d: %w", s.m.Shards, shards,
			settlement.ErrShardCount)
	}
	st, err := s.dbs[0].OpenRun(ctx, in, shards)
	if err != nil || st.Completed {
		return st, err
	}
	for d, p := range s.dbs[1:] {
		if err := p.mirrorRun(ctx, st); err != nil {
			return st, fmt.Errorf("database %d: %w", d+2, err)
		}
	}
	return st, nil
}

// mirrorRun copies the run's row into this database (not the first).
func (s *Store) mirrorRun(ctx context.Context, st settlement.RunState) error {
	in := st.Input
	_, err := s.pool.Exec(ctx, `INSERT INTO settlement_runs (date, per_10k, income_value, shards, started_at)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (date) DO UPDATE SET per_10k = excluded.per_10k, income_value = excluded.income_value
		WHERE NOT settlement_runs.completed`, in.Date, in.PerTenK, incomeValue(in), st.Shards, st.StartedAt)
	if err != nil {
		return fmt.Errorf("copy run: %w", err)
	}
	return nil
}

// runShardCount is shardCount over this database (in tx) and its peers.
func (s *Store) runShardCount(ctx context.Context, tx querier) (int, error) {
	n, err := shardCount(ctx, tx)
	if err != nil {
		return 0, err
	}
	for _, p := range s.peers {
		m, err := shardCount(ctx, p.pool)
		if err != nil {
			return 0, err
		}
		n = max(n, m)
	}
	return n, nil
}

// peersBookedIncome reports whether a peer booked any income of date.
func (s *Store) peersBookedIncome(ctx context.Context, date time.Time) (bool, error) {
	for _, p := range s.peers {
		var booked bool
		if err := p.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM settlement_steps WHERE date = $1 AND step = 'income')`,
			date).Scan(&booked); err != nil {
			return false, fmt.Errorf("income booked: %w", err)
		}
		if booked {
			return true, nil
		}
	}
	return false, nil
}

// FailRun implements settlement.Store.
func (s *Sharded) FailRun(ctx context.Context, date time.Time, f settlement.RunFailure) error {
	return s.dbs[0].FailRun(ctx, date, f)
}

// Shards implements settlement.Store: the count over every database.
func (s *Sharded) Shards(ctx context.Context) (int, error) {
	return s.dbs[0].runShardCount(ctx, s.dbs[0].pool)
}

// TakeShard implements settlement.Store.
func (s *Sharded) TakeShard(ctx context.Context, shard int, owner string, ttl, handOff time.Duration, force bool) (settlement.Lease, error) {
	return s.of(shard).TakeShard(ctx, shard, owner, ttl, handOff, force)
}

// RenewShard implements settlement.Store.
func (s *Sharded) RenewShard(ctx context.Context, l settlement.Lease, ttl time.Duration) error {
	return s.of(l.Shard).RenewShard(ctx, l, ttl)
}

// ReleaseShard implements settlement.Store.
func (s *Sharded) ReleaseShard(ctx context.Context, l settlement.Lease) error {
	return s.of(l.Shard).ReleaseShard(ctx, l)
}

// Prepare implements settlement.Store.
func (s *Sharded) Prepare(ctx context.Context, l settlement.Lease, date time.Time) (int64, error) {
	return s.of(l.Shard).Prepare(ctx, l, date)
}

// DueOrders implements settlement.Store: every database's, in one order.
func (s *Sharded) DueOrders(ctx context.Context, date time.Time) ([]settlement.DueOrder, error) {
	var out []settlement.DueOrder
	for d, st := range s.dbs {
		part, err := st.DueOrders(ctx, date)
		if err != nil {
			return nil, fmt.Errorf("database %d: %w", d+1, err)
		}
		out = append(out, part...)
	}
	if len(s.dbs) > 1 {
		slices.SortFunc(out, func(a, b settlement.DueOrder) int {
			return cmp.Or(cmp.Compare(a.Customer, b.Customer), cmp.Compare(a.RequestID, b.RequestID))
		})
	}
	return out, nil
}

// SettleOrders implements settlement.Store.
func (s *Sharded) SettleOrders(ctx context.Context, l settlement.Lease, date time.Time, orders []settlement.DueOrder) (settlement.StepResult, error) {
	return s.of(l.Shard).SettleOrders(ctx, l, date, orders)
}

// CompleteOrders implements settlement.Store: each database completes the
// orders of its customers, once.
func (s *Sharded) CompleteOrders(ctx context.Context, date time.Time, orders []settlement.DueOrder) error {
	parts := make([][]settlement.DueOrder, len(s.dbs))
	for _, o := range orders {
		d := s.m.DatabaseOf(accounts.ShardOf(o.Customer, s.m.Shards))
		parts[d] = append(parts[d], o)
	}
	for d, st := range s.dbs {
		if err := st.CompleteOrders(ctx, date, parts[d]); err != nil {
			return fmt.Errorf("database %d: %w", d+1, err)
		}
	}
	return nil
}

// Holdings implements settlement.Store.
func (s *Sharded) Holdings(ctx context.Context, shard int, date time.Time, cut int64) ([]settlement.Holder, error) {
	return s.of(shard).Holdings(ctx, shard, date, cut)
}

// FixAllocation implements settlement.Store.
func (s *Sharded) FixAllocation(ctx context.Context, date time.Time, a settlement.AllocationTotals) error {
	return s.dbs[0].FixAllocation(ctx, date, a)
}

// BookIncome implements settlement.Store.
func (s *Sharded) BookIncome(ctx context.Context, l settlement.Lease, date time.Time, b settlement.IncomeBook,
	progress func(int64)) (settlement.StepResult, error) {
	return s.of(l.Shard).BookIncome(ctx, l, date, b, progress)
}

// Step implements settlement.Store: a shard's in its database, a whole-run
// step's in the first.
func (s *Sharded) Step(ctx context.Context, date time.Time, shard int, step string) (settlement.StepResult, bool, error) {
	if shard < 0 {
		return s.dbs[0].Step(ctx, date, shard, step)
	}
	return s.of(shard).Step(ctx, date, shard, step)
}

// MarkStep implements settlement.Store.
func (s *Sharded) MarkStep(ctx context.Context, date time.Time, step string, r settlement.StepResult) error {
	return s.dbs[0].MarkStep(ctx, date, step, r)
}

// Movements implements settlement.Store: every database's customers, in
// one order (a customer's movements are all in its database).
func (s *Sharded) Movements(ctx context.Context, date time.Time) ([]settlement.CustomerLine, error) {
	var out []settlement.CustomerLine
	for d, st := range s.dbs {
		part, err := st.Movements(ctx, date)
		if err != nil {
			return nil, fmt.Errorf("database %d: %w", d+1, err)
		}
		out = append(out, part...)
	}
	if len(s.dbs) > 1 {
		slices.SortFunc(out, func(a, b settlement.CustomerLine) int { return cmp.Compare(a.Customer, b.Customer) })
	}
	return out, nil
}

// FinishRun implements settlement.Store: the copies first, then the
// record, so that a run completed on the first database is completed
// everywhere.
func (s *Sharded) FinishRun(ctx context.Context, sum settlement.Summary) error {
	for d, p := range s.dbs[1:] {
		if err := p.FinishRun(ctx, sum); err != nil {
			return fmt.Errorf("database %d: %w", d+2, err)
		}
	}
	return s.dbs[0].FinishRun(ctx, sum)
}

// Run implements settlement.Store.
func (s *Sharded) Run(ctx context.Context, date time.Time) (settlement.RunState, bool, error) {
	return s.dbs[0].Run(ctx, date)
}
