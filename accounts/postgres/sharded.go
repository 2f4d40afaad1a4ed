package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/ledger"
)

// A customer lives on one ledger shard (accounts.ShardOf), and its row,
// orders and income live in the database of that shard (ledger.ShardMap):
// Sharded is accounts.Store over the shard databases, one Store per
// database, routing each call by the customer id. No directory is needed:
// the id says the shard, the shard map says the database.
//
//   - CreateCustomer picks the database by a hash of the request id, so a
//     retry finds the customer where the first attempt stored it (request
//     ids are unique per database, and a request id always hashes to the
//     same one). The id comes from that database's sequence, keeping only
//     ids whose shard lives there (Config.AcceptID): ids never collide
//     across databases, since each keeps only ids that map to itself.
//   - Orders are placed in the customer's database. A transfer's payee on
//     another database is read there without a lock (see PlaceOrder).
//   - Order ids are per database; the ids this store hands out are
//     local*D + d (D databases, d the order's database), unique over all of
//     them, so History's and PendingTransfers' cursors stay one int64 and
//     page exactly over the union. With one database they are the stored
//     ids.
//   - The fund-wide rows (fund yields, the trading calendar) are the first
//     database's.
//
// With one database every call goes to that database's Store unchanged.

// ShardedConfig for OpenSharded.
type ShardedConfig struct {
	// DSNs are the shard databases in shard-map order, the same list the
	// ledger owners are given (ledger/postgres.OpenDatabases).
	DSNs []string
	// Shards is the number of logical ledger shards; 0 = 1.
	Shards int
	// ConnsMax is each database's pool; 0 = Config's default.
	ConnsMax int32
	// OrderWriters, OrderBatchMax and OrderQueueMax are each database's
	// order writers (Config); 0 = the defaults, except that with several
	// databases each gets orderWritersEach writers.
	OrderWriters, OrderBatchMax, OrderQueueMax int
	// OnNotice as in Config.
	OnNotice func(*pgconn.Notice)
}

// orderWritersEach is each database's order writers when there are
// several. A database sees only its share of the orders in flight, so its
// batches are smaller than one database's, and with the single-database
// default of 3 writers the third mostly split them further. Gateway bench,
// 8 shards on 2 databases, 256 clients, 4 interleaved pairs: 2 writers a
// database made batches of ~36 orders instead of ~25; Postgres CPU per
// order 0.81-1.02x of 3 writers' (median 0.92), Go 0.84-1.06x, orders a
// second 0.94-1.18x (median 1.04), p99 91-120 ms against 101-122.
const orderWritersEach = 2

// Sharded implements accounts.Store over the shard databases.
type Sharded struct {
	m      ledger.ShardMap
	shards int
	dbs    []*Store
}

var _ accounts.Store = (*Sharded)(nil)

// OpenSharded opens (and migrates) every database. The caller must Close
// it.
func OpenSharded(ctx context.Context, cfg ShardedConfig) (*Sharded, error) {
	shards := max(cfg.Shards, 1)
	m, err := ledger.NewShardMap(shards, len(cfg.DSNs))
	if err != nil {
		return nil, err
	}
	s := &Sharded{m: m, shards: shards}
	writers := cfg.OrderWriters
	if writers == 0 && len(cfg.DSNs) > 1 {
		writers = orderWritersEach
	}
	for i, dsn := range cfg.DSNs {
		scfg := Config{DSN: dsn, ConnsMax: cfg.ConnsMax, OrderWriters: writers, OrderBatchMax: cfg.OrderBatchMax,
			OrderQueueMax: cfg.OrderQueueMax, OnNotice: cfg.OnNotice}
		if len(cfg.DSNs) > 1 {
			scfg.AcceptID = func(c accounts.CustomerID) bool { return s.databaseOf(c) == i }
		}
		st, err := Open(ctx, scfg)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("accounts database %d of %d: %w", i+1, len(cfg.DSNs), err)
		}
		s.dbs = append(s.dbs, st)
	}
	return s, nil
}

// Close closes every database's store.
func (s *Sharded) Close() {
	for _, st := range s.dbs {
		st.Close()
	}
}

// Databases returns how many databases the store spans.
func (s *Sharded) Databases() int { return len(s.dbs) }

// Database returns the store of database i (shard-map order): the first
// holds the fund-wide rows.
func (s *Sharded) Database(i int) *Store { return s.dbs[i] }

// DatabaseOf returns the index of the database that holds customer c.
func (s *Sharded) DatabaseOf(c accounts.CustomerID) int { return s.databaseOf(c) }

func (s *Sharded) databaseOf(c accounts.CustomerID) int {
	return s.m.DatabaseOf(accounts.ShardOf(c, s.shards))
}

func (s *Sharded) storeOf(c accounts.CustomerID) (*Store, int) {
	d := s.databaseOf(c)
	return s.dbs[d], d
}

// Ping checks every database (readiness).
func (s *Sharded) Ping(ctx context.Context) error {
	for i, st := range s.dbs {
		if err := st.Pool().Ping(ctx); err != nil {
			return fmt.Errorf("accounts database %d of %d: %w", i+1, len(s.dbs), err)
		}
	}
	return nil
}

// OrderStats sums the order writers' counters of every database.
func (s *Sharded) OrderStats() OrderStats {
	var sum OrderStats
	for _, st := range s.dbs {
		o := st.OrderStats()
		sum.Batches, sum.Orders, sum.Queued = sum.Batches+o.Batches, sum.Orders+o.Orders, sum.Queued+o.Queued
		sum.Begin, sum.Claim, sum.Apply = sum.Begin+o.Begin, sum.Claim+o.Claim, sum.Apply+o.Apply
		sum.Record, sum.Commit = sum.Record+o.Record, sum.Commit+o.Commit
	}
	return sum
}

// Order ids across databases: local*D + d. localBefore and localAfter turn
// a bound on those ids into a bound on database d's own.

func (s *Sharded) globalID(local int64, d int) int64 {
	if local == 0 {
		return 0 // no order
	}
	return local*int64(len(s.dbs)) + int64(d)
}

func (s *Sharded) globalize(os []accounts.Order, d int) {
	for i := range os {
		os[i].ID = s.globalID(os[i].ID, d)
	}
}

// localBefore returns the bound on database d's ids that keeps exactly its
// orders with global id < before (0 = no bound), and false when none can.
func (s *Sharded) localBefore(before int64, d int) (int64, bool) {
	if before == 0 {
		return 0, true
	}
	q, n := before-int64(d), int64(len(s.dbs))
	if q <= 0 {
		return 0, false
	}
	return (q + n - 1) / n, true // local < ceil(q/n) <=> local*n + d < before
}

// localAfter returns the bound on database d's ids that keeps exactly its
// orders with global id > after.
func (s *Sharded) localAfter(after int64, d int) int64 {
	return max(after-int64(d), 0) / int64(len(s.dbs)) // local > floor((after-d)/n)
}

// requestDatabase is the database a customer with this creation request id
// is created in (FNV-1a of the id): the same for every retry.
func (s *Sharded) requestDatabase(requestID string) int {
	if len(s.dbs) == 1 {
		return 0
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(requestID))
	return int(h.Sum64() % uint64(len(s.dbs)))
}

// CreateCustomer implements accounts.Store in the database the request id
// hashes to, with an id whose shard lives there.
func (s *Sharded) CreateCustomer(ctx context.Context, c accounts.Customer,
	setup func(context.Context, accounts.Customer) error) (accounts.Customer, bool, error) {
	return s.dbs[s.requestDatabase(c.RequestID)].CreateCustomer(ctx, c, setup)
}

// Customer implements accounts.Store.
func (s *Sharded) Customer(ctx context.Context, id accounts.CustomerID) (accounts.Customer, error) {
	st, _ := s.storeOf(id)
	return st.Customer(ctx, id)
}

// UpdateCustomer implements accounts.Store in the customer's database.
func (s *Sharded) UpdateCustomer(ctx context.Context, id accounts.CustomerID,
	change func(context.Context, *accounts.Customer) error) (accounts.Customer, error) {
	st, _ := s.storeOf(id)
	return st.UpdateCustomer(ctx, id, change)
}

// PlaceOrder implements accounts.Store in the customer's database. A party
// in another database (the payee of a transfer to a customer on another
// shard) is read from there when the order is applied, without a lock: it
// can change status (close) before the money reaches it. That is
// acceptable because a payee on another database is on another shard, so
// the transfer is a saga: its money reaches the payee through the payee's
// ledger accounts, which refuse it once closed, and the saga then refunds
// the payer. The lock only keeps a same-shard transfer, which is one
// chain, from crediting a customer that closed meanwhile.
func (s *Sharded) PlaceOrder(ctx context.Context, o *accounts.Order, parties []accounts.CustomerID,
	apply func(ctx context.Context, parties []accounts.Customer) error) (accounts.Order, bool, error) {
	st, d := s.storeOf(o.CustomerID)
	local := make([]accounts.CustomerID, 0, len(parties))
	for _, p := range parties {
		if s.databaseOf(p) == d {
			local = append(local, p)
		}
	}
	run := apply
	if len(local) < len(parties) {
		run = func(ctx context.Context, got []accounts.Customer) error {
			all, err := s.withRemoteParties(ctx, parties, d, got)
			if err != nil {
				return err
			}
			return apply(ctx, all)
		}
	}
	stored, existed, err := st.PlaceOrder(ctx, o, local, run)
	if err != nil {
		return stored, existed, err
	}
	stored.ID = s.globalID(stored.ID, d)
	o.ID = stored.ID
	return stored, existed, nil
}

// withRemoteParties returns the parties in their order: those of database
// d from got (the store's, in the same order), the others read from their
// own databases.
func (s *Sharded) withRemoteParties(ctx context.Context, parties []accounts.CustomerID, d int,
	got []accounts.Customer) ([]accounts.Customer, error) {
	all := make([]accounts.Customer, len(parties))
	k := 0
	for i, p := range parties {
		if s.databaseOf(p) == d {
			all[i] = got[k]
			k++
			continue
		}
		c, err := s.Customer(ctx, p)
		if errors.Is(err, accounts.ErrCustomerNotFound) {
			return nil, fmt.Errorf("recipient %d: %w", p, accounts.ErrCustomerNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("recipient %d: %w", p, err)
		}
		all[i] = c
	}
	return all, nil
}

// Order implements accounts.Store.
func (s *Sharded) Order(ctx context.Context, c accounts.CustomerID, requestID string) (accounts.Order, error) {
	st, d := s.storeOf(c)
	o, err := st.Order(ctx, c, requestID)
	o.ID = s.globalID(o.ID, d)
	return o, err
}

// eachDatabase runs fn on every database at once and returns the first
// error.
func (s *Sharded) eachDatabase(fn func(d int, st *Store) error) error {
	if len(s.dbs) == 1 {
		return fn(0, s.dbs[0])
	}
	errs := make([]error, len(s.dbs))
	var wg sync.WaitGroup
	for d, st := range s.dbs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[d] = fn(d, st)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// History implements accounts.Store: the customer's own orders are in its
// database, the transfers it received in the payers' (any database), so
// every database is asked for its part below the bound and the parts are
// merged by id. Ids order the orders of one database by time; across
// databases they interleave by their databases' counts of orders, close to
// time when the shards take similar traffic, and always one total order,
// so the pages neither repeat nor skip an order.
func (s *Sharded) History(ctx context.Context, q accounts.HistoryQuery, beforeID int64, limit int) ([]accounts.Order, error) {
	parts := make([][]accounts.Order, len(s.dbs))
	err := s.eachDatabase(func(d int, st *Store) error {
		before, any := s.localBefore(beforeID, d)
		if !any {
			return nil
		}
		os, err := st.History(ctx, q, before, limit)
		s.globalize(os, d)
		parts[d] = os
		return err
	})
	if err != nil {
		return nil, err
	}
	return mergeByID(parts, limit, true), nil
}

// PendingTransfers implements accounts.Store: a customer's are in its
// database, everyone's merged from all of them by id (see History).
func (s *Sharded) PendingTransfers(ctx context.Context, c accounts.CustomerID, afterID int64, limit int) ([]accounts.Order, error) {
	if c != 0 {
		st, d := s.storeOf(c)
		os, err := st.PendingTransfers(ctx, c, s.localAfter(afterID, d), limit)
		s.globalize(os, d)
		return os, err
	}
	parts := make([][]accounts.Order, len(s.dbs))
	err := s.eachDatabase(func(d int, st *Store) error {
		os, err := st.PendingTransfers(ctx, 0, s.localAfter(afterID, d), limit)
		s.globalize(os, d)
		parts[d] = os
		return err
	})
	if err != nil {
		return nil, err
	}
	return mergeByID(parts, limit, false), nil
}

// mergeByID merges the databases' parts of a page into its first limit
// orders by id, newest first or oldest first.
func mergeByID(parts [][]accounts.Order, limit int, newestFirst bool) []accounts.Order {
	out := slices.Concat(parts...)
	slices.SortFunc(out, func(a, b accounts.Order) int {
		if newestFirst {
			return cmp.Compare(b.ID, a.ID)
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out[:min(len(out), limit)]
}

// ResolveTransfer implements accounts.Store in the payer's database.
func (s *Sharded) ResolveTransfer(ctx context.Context, c accounts.CustomerID, requestID string, status accounts.OrderStatus,
	reason string) (accounts.Order, error) {
	st, d := s.storeOf(c)
	o, err := st.ResolveTransfer(ctx, c, requestID, status, reason)
	o.ID = s.globalID(o.ID, d)
	return o, err
}

// RecordDailyIncome implements accounts.Store, each customer's income in
// its database. Every database's part is checked for a conflicting stored
// income before any is written, so a conflict fails the call with nothing
// written, as with one database; only a conflicting call racing this one
// could leave one database's part written and another's refused, and
// since each income is written once and a repeat of the same amount is a
// no-op, a retry of the same batch then completes it.
func (s *Sharded) RecordDailyIncome(ctx context.Context, incomes []accounts.DailyIncome) error {
	if len(s.dbs) == 1 {
		return s.dbs[0].RecordDailyIncome(ctx, incomes)
	}
	parts := make([][]accounts.DailyIncome, len(s.dbs))
	for _, in := range incomes {
		d := s.databaseOf(in.CustomerID)
		parts[d] = append(parts[d], in)
	}
	if err := s.eachDatabase(func(d int, st *Store) error { return st.checkIncome(ctx, parts[d]) }); err != nil {
		return err
	}
	for d, part := range parts {
		if len(part) == 0 {
			continue
		}
		if err := s.dbs[d].RecordDailyIncome(ctx, part); err != nil {
			return err
		}
	}
	return nil
}

// checkIncome fails with accounts.ErrRecordConflict when one of incomes is
// stored with another amount; it writes nothing.
func (s *Store) checkIncome(ctx context.Context, incomes []accounts.DailyIncome) (err error) {
	defer markUnavailable(&err)
	if len(incomes) == 0 {
		return nil
	}
	ids, dates, amounts := make([]int64, len(incomes)), make([]time.Time, len(incomes)), make([]int64, len(incomes))
	for i, in := range incomes {
		ids[i], dates[i], amounts[i] = int64(in.CustomerID), accounts.DateOf(in.Date), in.Amount
	}
	var customer, stored, given int64
	var date time.Time
	err = s.pool.QueryRow(ctx, `SELECT t.customer_id, t.date, i.amount, t.amount
		FROM unnest($1::bigint[], $2::date[], $3::bigint[]) AS t(customer_id, date, amount)
		JOIN customer_income i ON i.customer_id = t.customer_id AND i.date = t.date
		WHERE i.amount <> t.amount LIMIT 1`, ids, dates, amounts).Scan(&customer, &date, &stored, &given)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check income: %w", err)
	}
	return fmt.Errorf("income of customer %d on %s is %s, not %s: %w", customer, date.Format(time.DateOnly),
		accounts.FormatAmount(stored), accounts.FormatAmount(given), accounts.ErrRecordConflict)
}

// Income implements accounts.Store.
func (s *Sharded) Income(ctx context.Context, c accounts.CustomerID, date time.Time) (day, cumulative int64, err error) {
	st, _ := s.storeOf(c)
	return st.Income(ctx, c, date)
}

// The fund-wide rows are the first database's.

// RecordFundYield implements accounts.Store.
func (s *Sharded) RecordFundYield(ctx context.Context, y accounts.FundYield) error {
	return s.dbs[0].RecordFundYield(ctx, y)
}

// FundYields implements accounts.Store.
func (s *Sharded) FundYields(ctx context.Context, from, to time.Time) ([]accounts.FundYield, error) {
	return s.dbs[0].FundYields(ctx, from, to)
}

// LatestFundYield implements accounts.Store.
func (s *Sharded) LatestFundYield(ctx context.Context) (accounts.FundYield, bool, error) {
	return s.dbs[0].LatestFundYield(ctx)
}

// Holidays implements accounts.Store.
func (s *Sharded) Holidays(ctx context.Context) ([]accounts.Holiday, error) {
	return s.dbs[0].Holidays(ctx)
}

// AddHoliday implements accounts.Store.
func (s *Sharded) AddHoliday(ctx context.Context, h accounts.Holiday) error {
	return s.dbs[0].AddHoliday(ctx, h)
}

// RemoveHoliday implements accounts.Store.
func (s *Sharded) RemoveHoliday(ctx context.Context, date time.Time) error {
	return s.dbs[0].RemoveHoliday(ctx, date)
}
