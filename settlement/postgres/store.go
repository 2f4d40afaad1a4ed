package postgres

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fundplatform/fund/accounts"
	accountspg "github.com/fundplatform/fund/accounts/postgres"
	"github.com/fundplatform/fund/internal/pgmigrate"
	ledgerpg "github.com/fundplatform/fund/ledger/postgres"
	"github.com/fundplatform/fund/settlement"
)

//go:embed migrations/*.sql
var migrations embed.FS

const (
	gooseTable      = "settlement_goose_db_version"
	migrationLockID = 0x736574746c656d // "settlem"
)

// Store implements settlement.Store on the database that holds the ledger
// shards and the accounts tables (one database; a ledger spread over
// several is not handled yet).
type Store struct {
	pool   *pgxpool.Pool
	ledger *ledgerpg.Store
	// Failpoint, when set, is called inside booking transactions just
	// before they commit ("orders/<shard>/commit", "income/<shard>/commit",
	// "prepare/<shard>/commit"); an error rolls the transaction back, as a
	// crash there would.
	Failpoint func(point string) error
	// Trace, when set, gets a line per stage of each booking with its time.
	Trace io.Writer
	// peers are the other databases of a Sharded store, when this is its
	// first (sharded.go): the run-level checks of OpenRun (shard count,
	// holders, income booked) look at them too.
	peers []*Store
}

var _ settlement.Store = (*Store)(nil)

// Config for Open.
type Config struct {
	DSN      string
	ConnsMax int32 // 0 = 8
	// Now is the business clock of the ledger store the run writes
	// through (ledger/postgres Config.Now); nil = time.Now.
	Now func() time.Time
}

// Open connects and applies the ledger's, the accounts' and its own
// migrations.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.ConnsMax == 0 {
		cfg.ConnsMax = 8
	}
	ls, err := ledgerpg.Open(ctx, ledgerpg.Config{DSN: cfg.DSN, ConnsMax: cfg.ConnsMax, Now: cfg.Now})
	if err != nil {
		return nil, fmt.Errorf("ledger store: %w", err)
	}
	if err := accountspg.Migrate(ctx, ls.Pool()); err != nil {
		ls.Close()
		return nil, fmt.Errorf("accounts migrations: %w", err)
	}
	if err := pgmigrate.Up(ctx, ls.Pool(), migrations, pgmigrate.Options{Table: gooseTable, LockID: migrationLockID}); err != nil {
		ls.Close()
		return nil, fmt.Errorf("settlement migrations: %w", err)
	}
	return &Store{pool: ls.Pool(), ledger: ls}, nil
}

// Close closes the pool.
func (s *Store) Close() { s.ledger.Close() }

// Pool exposes the pool (benchmarks, tests).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ledger is the ledger store on the same database (Verify).
func (s *Store) Ledger() *ledgerpg.Store { return s.ledger }

func (s *Store) fail(point string) error {
	if s.Failpoint == nil {
		return nil
	}
	if err := s.Failpoint(point); err != nil {
		return fmt.Errorf("at %s: %w", point, err)
	}
	return nil
}

// OpenRun implements settlement.Store.
func (s *Store) OpenRun(ctx context.Context, in settlement.Input, shards int) (settlement.RunState, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return settlement.RunState{}, err
	}
	defer tx.Rollback(ctx)
	// One run opens at a time: the order checks below read other rows.
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLockID)); err != nil {
		return settlement.RunState{}, err
	}
	if have, err := s.runShardCount(ctx, tx); err != nil {
		return settlement.RunState{}, err
	} else if have != shards && have != 0 {
		// Accounts are placed by ledger.ShardOf over the ledger's shard
		// count; over another count the run would look for them on the
		// wrong shards.
		return settlement.RunState{}, fmt.Errorf("ledger has %d shards, the run %d: %w", have, shards, settlement.ErrShardCount)
	}
	st, ok, err := runState(ctx, tx, in.Date)
	if err != nil {
		return settlement.RunState{}, err
	}
	if ok {
		if st, err = s.reopenRun(ctx, tx, st, in, shards); err != nil {
			return st, err
		}
		return st, tx.Commit(ctx)
	}
	if err := checkNextDate(ctx, tx, in.Date); err != nil {
		return settlement.RunState{}, err
	}
	if err := s.checkHolders(ctx, tx, in); err != nil {
		return settlement.RunState{}, err
	}
	var started time.Time
	if err := tx.QueryRow(ctx, `INSERT INTO settlement_runs (date, per_10k, income_value, shards) VALUES ($1, $2, $3, $4)
		RETURNING started_at`, in.Date, in.PerTenK, incomeValue(in), shards).Scan(&started); err != nil {
		return settlement.RunState{}, fmt.Errorf("record run: %w", err)
	}
	return settlement.RunState{Input: in, Shards: shards, StartedAt: started}, tx.Commit(ctx)
}

// incomeValue is the income as settlement_runs.income_value keeps it.
func incomeValue(in settlement.Input) int64 {
	if in.PerTenK {
		return in.IncomePer10k
	}
	return in.IncomeTotal
}

// reopenRun opens a date that has a run: a completed one as it is (with
// the same income), an unfinished one to be resumed, with its last
// failure cleared and its income changed if none of it is booked yet (an
// income the run refused, corrected).
func (s *Store) reopenRun(ctx context.Context, tx pgx.Tx, st settlement.RunState, in settlement.Input, shards int) (settlement.RunState, error) {
	date := in.Date.Format(time.DateOnly)
	same := st.Input.PerTenK == in.PerTenK && st.Input.IncomeTotal == in.IncomeTotal &&
		st.Input.IncomePer10k == in.IncomePer10k
	if st.Completed {
		if !same {
			return st, settlement.Refusef(settlement.ErrRunConflict, "%s is settled already, with %s; a settled date "+
				"is never settled again with another income (%s asked)", date, st.Input.IncomeText(), in.IncomeText())
		}
		if st.Shards != shards {
			return st, settlement.Refusef(settlement.ErrRunConflict, "%s was settled over %d shards, not %d", date, st.Shards, shards)
		}
		return st, nil
	}
	if st.Shards != shards {
		return st, settlement.Refusef(settlement.ErrRunConflict, "%s's run was opened over %d shards, not %d: "+
			"resume it over as many", date, st.Shards, shards)
	}
	if !same {
		// The income may be corrected (one the run refused, or an
		// operator's typo) while no shard has booked any of it.
		tag, err := tx.Exec(ctx, `UPDATE settlement_runs SET per_10k = $2, income_value = $3, holders = NULL,
				total_shares = NULL, fund_income = NULL, income_per_10k = NULL
			WHERE date = $1 AND NOT EXISTS (SELECT 1 FROM settlement_steps WHERE date = $1 AND step = 'income')`,
			in.Date, in.PerTenK, incomeValue(in))
		if err != nil {
			return st, fmt.Errorf("correct run income: %w", err)
		}
		peerBooked, err := s.peersBookedIncome(ctx, in.Date)
		if err != nil {
			return st, err
		}
		if tag.RowsAffected() != 1 || peerBooked {
			resume := st.Input
			resume.Date = in.Date
			return st, settlement.Refusef(settlement.ErrRunConflict, "%s's run has booked part of its %s already, "+
				"so it resumes with that income only, not with %s: %s", date, st.Input.IncomeText(), in.IncomeText(),
				settlement.SettleCommand(resume))
		}
		st.Input = in
	}
	if err := s.checkHolders(ctx, tx, in); err != nil {
		return st, err
	}
	if _, err := tx.Exec(ctx, `UPDATE settlement_runs SET failed_at = NULL, failure = NULL, failure_input = false,
		resolve = NULL WHERE date = $1`, in.Date); err != nil {
		return st, fmt.Errorf("reopen run: %w", err)
	}
	st.Failure = nil
	return st, nil
}

// checkNextDate refuses a date that is not the next to settle. Dates
// follow one another without gaps (income is paid every natural day, and
// the 7-day yield needs each), each after the one before is finished.
func checkNextDate(ctx context.Context, tx pgx.Tx, date time.Time) error {
	d := date.Format(time.DateOnly)
	var latest *time.Time
	err := tx.QueryRow(ctx, `SELECT date FROM settlement_runs ORDER BY date DESC LIMIT 1`).Scan(&latest)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("check run order: %w", err)
	}
	if latest != nil {
		last := latest.Format(time.DateOnly)
		st, _, err := runState(ctx, tx, *latest)
		if err != nil {
			return err
		}
		switch next := latest.AddDate(0, 0, 1); {
		case !st.Completed:
			return settlement.Refusef(settlement.ErrOutOfOrder, "%s cannot be settled before %s is: %s", d, last, st.Note())
		case date.Before(next):
			return settlement.Refusef(settlement.ErrOutOfOrder, "%s cannot be settled: %s, a later date, is settled "+
				"already, and dates settle one after another; the next to settle is %s", d, last, next.Format(time.DateOnly))
		case date.After(next):
			return settlement.Refusef(settlement.ErrOutOfOrder, "%s cannot be settled before %s: dates settle one after "+
				"another, and the last settled is %s", d, next.Format(time.DateOnly), last)
		}
	}
	// The fund's published yields must be able to take this date when the
	// run gets there (accounts.Service.PublishFundYield refuses gaps):
	// check now, before anything is booked.
	var lastYield *time.Time
	if err := tx.QueryRow(ctx, `SELECT max(date) FROM fund_yields`).Scan(&lastYield); err != nil {
		return fmt.Errorf("check published yields: %w", err)
	}
	if lastYield != nil && date.After(lastYield.AddDate(0, 0, 1)) {
		return settlement.Refusef(settlement.ErrOutOfOrder, "%s cannot be settled before %s: the fund's yields are "+
			"published one day after another, up to %s so far", d, lastYield.AddDate(0, 0, 1).Format(time.DateOnly),
			lastYield.Format(time.DateOnly))
	}
	return nil
}

// checkHolders refuses a nonzero fund total on a date nobody can hold
// eligible shares on: no customer shares account was ever credited (only
// settlement credits them: confirmations and income) and no subscription
// confirms by the date. There is nobody to pay the income to (or take a
// loss from), so the run is refused before it records anything; income 0
// settles such a date (a fresh fund's first days). A fund whose holders
// all left passes here and is refused by the run once the snapshot shows
// no eligible shares (settlement.ErrNoShares), before any income is
// booked. Income per 10,000 shares over no shares is simply 0.
func (s *Store) checkHolders(ctx context.Context, tx pgx.Tx, in settlement.Input) error {
	if in.PerTenK || in.IncomeTotal == 0 {
		return nil
	}
	may, err := mayHold(ctx, tx, in)
	if err != nil {
		return err
	}
	for _, p := range s.peers {
		if may {
			break
		}
		if may, err = mayHold(ctx, p.pool, in); err != nil {
			return err
		}
	}
	if may {
		return nil
	}
	return settlement.Refusef(settlement.ErrNoShares, "%s has %s to distribute but no eligible shares to pay it to: "+
		"no customer holds fund shares or has a subscription confirming by then. Settle it with income 0 (nothing "+
		"was recorded): %s", in.Date.Format(time.DateOnly), in.IncomeText(),
		settlement.SettleCommand(settlement.Input{Date: in.Date}))
}

// mayHold reports whether a customer shares account of the database was
// ever credited or a subscription confirms there by in.Date.
func mayHold(ctx context.Context, q querier, in settlement.Input) (bool, error) {
	var may bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM accounts WHERE code = $1 AND credits_posted > 0)
		OR EXISTS (SELECT 1 FROM orders WHERE kind = $2 AND status = 'pending' AND confirm_date <= $3)`,
		int32(accounts.CodeCustomerShares), string(accounts.KindSubscribe), in.Date).Scan(&may)
	if err != nil {
		return false, fmt.Errorf("check holders: %w", err)
	}
	return may, nil
}

// Shards implements settlement.Store.
func (s *Store) Shards(ctx context.Context) (int, error) { return shardCount(ctx, s.pool) }

func shardCount(ctx context.Context, q querier) (int, error) {
	var n int
	// max() over the shard index and the small leases table: two index
	// probes, not a scan.
	err := q.QueryRow(ctx, `SELECT greatest(coalesce((SELECT max(shard) FROM accounts), -1),
		coalesce((SELECT max(shard) FROM ledger_shards), -1)) + 1`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count shards: %w", err)
	}
	return n, nil
}

// Run implements settlement.Store.
func (s *Store) Run(ctx context.Context, date time.Time) (settlement.RunState, bool, error) {
	return runState(ctx, s.pool, accounts.DateOf(date))
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func runState(ctx context.Context, q querier, date time.Time) (settlement.RunState, bool, error) {
	var (
		st      settlement.RunState
		value   int64
		summary []byte
	)
	var (
		failedAt         *time.Time
		failure, resolve *string
		failureInput     bool
	)
	err := q.QueryRow(ctx, `SELECT per_10k, income_value, shards, completed, coalesce(summary::text, ''), started_at,
			failed_at, failure, failure_input, resolve
		FROM settlement_runs WHERE date = $1`,
		date).Scan(&st.Input.PerTenK, &value, &st.Shards, &st.Completed, &summary, &st.StartedAt,
		&failedAt, &failure, &failureInput, &resolve)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, false, nil
	}
	if err != nil {
		return st, false, fmt.Errorf("read run: %w", err)
	}
	st.Input.Date = date
	if st.Input.PerTenK {
		st.Input.IncomePer10k = value
	} else {
		st.Input.IncomeTotal = value
	}
	if len(summary) > 0 {
		if err := json.Unmarshal(summary, &st.Summary); err != nil {
			return st, false, fmt.Errorf("read run summary: %w", err)
		}
	}
	if failedAt != nil && !st.Completed {
		st.Failure = &settlement.RunFailure{At: *failedAt, InputRefused: failureInput}
		if failure != nil {
			st.Failure.Error = *failure
		}
		if resolve != nil {
			st.Failure.Resolve = *resolve
		}
	}
	return st, true, nil
}

// FailRun implements settlement.Store.
func (s *Store) FailRun(ctx context.Context, date time.Time, f settlement.RunFailure) error {
	_, err := s.pool.Exec(ctx, `UPDATE settlement_runs SET failed_at = now(), failure = $2, failure_input = $3,
		resolve = $4 WHERE date = $1 AND NOT completed`, date, f.Error, f.InputRefused, f.Resolve)
	if err != nil {
		return fmt.Errorf("record run failure: %w", err)
	}
	return nil
}

// TakeShard implements settlement.Store with the ledger's lease: a
// hand-off first (ledgerpg.Store.HandOffLease), then, with force, a
// takeover (TakeLease). The run serves no calls, so it advertises no
// address.
func (s *Store) TakeShard(ctx context.Context, shard int, owner string, ttl, handOff time.Duration, force bool) (settlement.Lease, error) {
	epoch, from, ok, err := s.ledger.HandOffLease(ctx, shard, owner, ttl, handOff)
	if err != nil {
		return settlement.Lease{}, err
	}
	if !ok && force {
		from = ""
		if epoch, ok, err = s.ledger.TakeLease(ctx, shard, owner, "", ttl, true); err != nil {
			return settlement.Lease{}, err
		}
	}
	if !ok {
		return settlement.Lease{}, fmt.Errorf("shard %d: %w", shard, settlement.ErrShardBusy)
	}
	return settlement.Lease{Shard: shard, Owner: owner, Epoch: epoch, From: from}, nil
}

// RenewShard implements settlement.Store (ledgerpg.Store.RenewLease). A
// hand-off request for the shard is not answered: the run releases each
// shard as soon as its step is done.
func (s *Store) RenewShard(ctx context.Context, l settlement.Lease, ttl time.Duration) error {
	_, err := s.ledger.RenewLease(ctx, l.Shard, l.Owner, l.Epoch, ttl)
	return err
}

// ReleaseShard implements settlement.Store (ledgerpg.Store.ReleaseLease):
// the release is notified, so the ledger hosts take the shard back at once.
func (s *Store) ReleaseShard(ctx context.Context, l settlement.Lease) error {
	return s.ledger.ReleaseLease(ctx, l.Shard, l.Owner, l.Epoch)
}

// Step implements settlement.Store.
func (s *Store) Step(ctx context.Context, date time.Time, shard int, step string) (settlement.StepResult, bool, error) {
	return stepResult(ctx, s.pool, date, shard, step)
}

func stepResult(ctx context.Context, q querier, date time.Time, shard int, step string) (settlement.StepResult, bool, error) {
	var r settlement.StepResult
	err := q.QueryRow(ctx, `SELECT entries, amount, count, detail FROM settlement_steps WHERE date = $1 AND shard = $2 AND step = $3`,
		date, shard, step).Scan(&r.Entries, &r.Amount, &r.Count, &r.Detail)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, false, nil
	}
	if err != nil {
		return r, false, fmt.Errorf("read step %s/%d: %w", step, shard, err)
	}
	return r, true, nil
}

func markStep(ctx context.Context, tx pgx.Tx, date time.Time, shard int, step string, r settlement.StepResult) error {
	_, err := tx.Exec(ctx, `INSERT INTO settlement_steps (date, shard, step, entries, amount, count, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, date, shard, step, r.Entries, r.Amount, r.Count, r.Detail)
	if err != nil {
		return fmt.Errorf("mark step %s/%d: %w", step, shard, err)
	}
	return nil
}

// MarkStep implements settlement.Store.
func (s *Store) MarkStep(ctx context.Context, date time.Time, step string, r settlement.StepResult) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO settlement_steps (date, shard, step, entries, amount, count, detail)
		VALUES ($1, -1, $2, $3, $4, $5, $6) ON CONFLICT (date, shard, step) DO NOTHING`,
		date, step, r.Entries, r.Amount, r.Count, r.Detail)
	if err != nil {
		return fmt.Errorf("mark step %s: %w", step, err)
	}
	return nil
}

// FixAllocation implements settlement.Store.
func (s *Store) FixAllocation(ctx context.Context, date time.Time, a settlement.AllocationTotals) error {
	var got settlement.AllocationTotals
	err := s.pool.QueryRow(ctx, `
		UPDATE settlement_runs SET holders = coalesce(holders, $2), total_shares = coalesce(total_shares, $3),
			fund_income = coalesce(fund_income, $4), income_per_10k = coalesce(income_per_10k, $5)
		WHERE date = $1
		RETURNING holders, total_shares, fund_income, income_per_10k`,
		date, a.Holders, a.TotalShares, a.FundIncome, a.IncomePer10k).Scan(&got.Holders, &got.TotalShares, &got.FundIncome, &got.IncomePer10k)
	if err != nil {
		return fmt.Errorf("fix allocation: %w", err)
	}
	if got != a {
		return fmt.Errorf("%s: snapshot now %+v, first %+v: %w", date.Format(time.DateOnly), a, got, settlement.ErrSnapshotMismatch)
	}
	return nil
}

// FinishRun implements settlement.Store.
func (s *Store) FinishRun(ctx context.Context, sum settlement.Summary) error {
	b, err := json.Marshal(sum)
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, `UPDATE settlement_runs SET completed = true, completed_at = now(), summary = $2
		WHERE date = $1 AND NOT completed`, sum.Date, b)
	if err != nil {
		return fmt.Errorf("finish run: %w", err)
	}
	return nil
}

// DueOrders implements settlement.Store.
func (s *Store) DueOrders(ctx context.Context, date time.Time) ([]settlement.DueOrder, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT customer_id, request_id, kind, amount FROM orders
		WHERE kind IN ('subscribe', 'standard_redeem') AND status = 'pending' AND confirm_date <= $1
		ORDER BY customer_id, request_id`, date)
	if err != nil {
		return nil, fmt.Errorf("due orders: %w", err)
	}
	var (
		out  []settlement.DueOrder
		o    settlement.DueOrder
		kind string
	)
	_, err = pgx.ForEachRow(rows, []any{&o.Customer, &o.RequestID, &kind, &o.Amount}, func() error {
		o.Kind = accounts.OrderKind(kind)
		out = append(out, o)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("due orders: %w", err)
	}
	return out, nil
}

// CompleteOrders implements settlement.Store.
func (s *Store) CompleteOrders(ctx context.Context, date time.Time, orders []settlement.DueOrder) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, done, err := stepResult(ctx, tx, date, -1, "orders"); err != nil || done {
		return err
	}
	n := len(orders)
	ids, reqs, kinds, amounts := make([]int64, n), make([]string, n), make([]string, n), make([]int64, n)
	var total int64
	for i, o := range orders {
		ids[i], reqs[i], kinds[i], amounts[i] = int64(o.Customer), o.RequestID, string(o.Kind), o.Amount
		total += o.Amount
	}
	// The orders' status is the accounts package's to write; it does so in
	// this transaction, with the movements and the step marker.
	if err := accountspg.CompleteOrdersTx(ctx, tx, ids, reqs); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO settlement_movements (date, customer_id, request_id, kind, amount)
		SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::bigint[])`, date, ids, reqs, kinds, amounts); err != nil {
		return fmt.Errorf("record movements: %w", err)
	}
	if err := markStep(ctx, tx, date, -1, "orders", settlement.StepResult{Count: int64(n), Amount: total}); err != nil {
		return err
	}
	if err := s.fail("orders-complete/commit"); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// Movements implements settlement.Store.
func (s *Store) Movements(ctx context.Context, date time.Time) ([]settlement.CustomerLine, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT customer_id, coalesce(sum(amount) FILTER (WHERE kind = 'subscribe'), 0)::bigint,
			coalesce(sum(amount) FILTER (WHERE kind = 'standard_redeem'), 0)::bigint
		FROM settlement_movements WHERE date = $1 GROUP BY customer_id ORDER BY customer_id`, date)
	if err != nil {
		return nil, fmt.Errorf("movements: %w", err)
	}
	var out []settlement.CustomerLine
	var l settlement.CustomerLine
	_, err = pgx.ForEachRow(rows, []any{&l.Customer, &l.Subscriptions, &l.Redemptions}, func() error {
		out = append(out, l)
		return nil
	})
	return out, err
}
