package postgres

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/internal/pgmigrate"
	"github.com/fundplatform/fund/internal/pgwarn"
)

//go:embed migrations/*.sql
var migrations embed.FS

// gooseTable keeps this package's migration versions apart from the
// ledger's (goose_db_version) when both live in one database.
const gooseTable = "accounts_goose_db_version"

// migrationLockID is the advisory lock taken while migrating; distinct from
// goose's default, which the ledger's migrations use.
const migrationLockID int64 = 0x6163636f756e7473 // "accounts"

// Store implements accounts.Store.
type Store struct {
	pool   *pgxpool.Pool
	orders *orderWriters
	// keyHash is orderKeyHash; tests replace it to make keys share locks.
	keyHash func(accounts.CustomerID, string) uint64
	// acceptID is Config.AcceptID; spares the fitting ids drawn but not
	// given out yet (customerids.go).
	acceptID func(accounts.CustomerID) bool
	spares   idSpares
}

var _ accounts.Store = (*Store)(nil)

// Config for Open.
type Config struct {
	DSN      string
	ConnsMax int32 // pool size; 0 = 16
	// OrderWriters place orders in batches of at most OrderBatchMax, each
	// writer one transaction at a time; at most OrderQueueMax orders wait
	// (callers then wait for room until their context ends). 0 = 3, 256
	// and 8192.
	OrderWriters  int
	OrderBatchMax int
	OrderQueueMax int
	// OnNotice receives what the server reports beside results (NOTICE,
	// WARNING). nil = warnings are logged with slog (deploy/pgwarn).
	OnNotice func(*pgconn.Notice)
	// AcceptID, when set, says which new customer ids this database may
	// give out: those of the shards it holds (Sharded). nil = every id.
	AcceptID func(accounts.CustomerID) bool
}

// Open connects and applies the migrations.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	pcfg, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("parse dsn: %w", err)
	}
	if cfg.ConnsMax == 0 {
		cfg.ConnsMax = 16
	}
	pcfg.MaxConns = cfg.ConnsMax
	// Plan every statement with its parameters. pgx prepares statements
	// once per connection, and Postgres then settles on a generic plan
	// after five runs, made from the tables' sizes at that moment: on a
	// fresh database that is a sequential scan of orders, which stayed in
	// use as the table grew (until autovacuum's next analyse) and became
	// most of the database's time per order. Planning these small queries
	// costs some tens of microseconds per batch.
	if _, set := pcfg.ConnConfig.RuntimeParams["plan_cache_mode"]; !set {
		pcfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_custom_plan"
	}
	pcfg.ConnConfig.OnNotice = pgwarn.Handler(cfg.OnNotice, "accounts")
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	if err := Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	st := &Store{pool: pool, keyHash: orderKeyHash, acceptID: cfg.AcceptID}
	st.startOrderWriters(cmp.Or(cfg.OrderWriters, orderWritersDefault), cmp.Or(cfg.OrderBatchMax, orderBatchMaxDefault),
		cmp.Or(cfg.OrderQueueMax, orderQueueMaxDefault))
	return st, nil
}

// Close stops the order writers (orders still queued fail with ErrClosed)
// and closes the pool.
func (s *Store) Close() {
	s.closeOrderWriters()
	s.pool.Close()
}

// Pool exposes the pool, for tests and tools that inspect the tables.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Migrate applies the embedded migrations, each in its own transaction,
// under an advisory lock.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return pgmigrate.Up(ctx, pool, migrations, pgmigrate.Options{Table: gooseTable, LockID: migrationLockID})
}

const customerColumns = `id, request_id, name, status, created_at`

func scanCustomer(row pgx.Row) (accounts.Customer, error) {
	var c accounts.Customer
	err := row.Scan(&c.ID, &c.RequestID, &c.Name, &c.Status, &c.CreatedAt)
	c.CreatedAt = c.CreatedAt.UTC()
	return c, err
}

// CreateCustomer implements accounts.Store.
func (s *Store) CreateCustomer(ctx context.Context, c accounts.Customer,
	setup func(context.Context, accounts.Customer) error) (_ accounts.Customer, _ bool, err error) {
	defer markUnavailable(&err)
	// Stored customers keep their request id forever: answer retries
	// without a transaction.
	if old, err := s.customerByRequest(ctx, c.RequestID); err == nil {
		return old, true, nil
	} else if !errors.Is(err, accounts.ErrCustomerNotFound) {
		return accounts.Customer{}, false, err
	}
	insert, args, err := s.customerInsert(ctx, c)
	if err != nil {
		return accounts.Customer{}, false, err
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return accounts.Customer{}, false, err
	}
	defer tx.Rollback(ctx)
	// Claim the request id. A concurrent creation with the same id waits
	// here for ours to commit or roll back.
	created, err := scanCustomer(tx.QueryRow(ctx, insert, args...))
	if errors.Is(err, pgx.ErrNoRows) {
		_ = tx.Rollback(ctx)
		old, err := s.customerByRequest(ctx, c.RequestID)
		if err != nil {
			return accounts.Customer{}, false, fmt.Errorf("read concurrent customer: %w", err)
		}
		return old, true, nil
	}
	if err != nil {
		return accounts.Customer{}, false, fmt.Errorf("insert customer: %w", err)
	}
	if err := setup(ctx, created); err != nil {
		return accounts.Customer{}, false, err
	}
	if err := tx.Commit(ctx); err != nil {
		return accounts.Customer{}, false, fmt.Errorf("commit customer: %w", err)
	}
	return created, false, nil
}

func (s *Store) customerByRequest(ctx context.Context, requestID string) (accounts.Customer, error) {
	c, err := scanCustomer(s.pool.QueryRow(ctx, `SELECT `+customerColumns+` FROM customers WHERE request_id = $1`, requestID))
	if errors.Is(err, pgx.ErrNoRows) {
		return c, accounts.ErrCustomerNotFound
	}
	if err != nil {
		return c, fmt.Errorf("read customer: %w", err)
	}
	return c, nil
}

// Customer implements accounts.Store.
func (s *Store) Customer(ctx context.Context, id accounts.CustomerID) (_ accounts.Customer, err error) {
	defer markUnavailable(&err)
	c, err := scanCustomer(s.pool.QueryRow(ctx, `SELECT `+customerColumns+` FROM customers WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return c, accounts.ErrCustomerNotFound
	}
	return c, err
}

// UpdateCustomer implements accounts.Store.
func (s *Store) UpdateCustomer(ctx context.Context, id accounts.CustomerID,
	change func(context.Context, *accounts.Customer) error) (_ accounts.Customer, err error) {
	defer markUnavailable(&err)
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return accounts.Customer{}, err
	}
	defer tx.Rollback(ctx)
	// The customer's lock, exclusive: waits for the order batches in
	// flight on it and holds off new ones until the commit (locks.go). The
	// row lock serialises with any writer of the row that takes no
	// advisory lock.
	k := customerLockKey(id)
	if _, err := tx.Exec(ctx, statusLockSQL, k.a, k.b); err != nil {
		return accounts.Customer{}, fmt.Errorf("lock customer: %w", err)
	}
	c, err := scanCustomer(tx.QueryRow(ctx, `SELECT `+customerColumns+` FROM customers WHERE id = $1 FOR UPDATE`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return c, accounts.ErrCustomerNotFound
	}
	if err != nil {
		return c, fmt.Errorf("lock customer: %w", err)
	}
	before := c.Status
	if err := change(ctx, &c); err != nil {
		return accounts.Customer{}, err
	}
	if c.Status != before {
		if _, err := tx.Exec(ctx, `UPDATE customers SET status = $2 WHERE id = $1`, id, c.Status); err != nil {
			return accounts.Customer{}, fmt.Errorf("update customer: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return accounts.Customer{}, fmt.Errorf("commit customer: %w", err)
	}
	return c, nil
}

const orderColumns = `id, customer_id, request_id, kind, amount, counterparty, trade_date, confirm_date,
	status, reason, created_at`

// orderColumnsO is orderColumns of the table aliased o.
const orderColumnsO = `o.id, o.customer_id, o.request_id, o.kind, o.amount, o.counterparty, o.trade_date,
	o.confirm_date, o.status, o.reason, o.created_at`

func scanOrder(row pgx.Row) (accounts.Order, error) {
	var o accounts.Order
	var confirm pgtype.Date
	err := row.Scan(&o.ID, &o.CustomerID, &o.RequestID, &o.Kind, &o.Amount, &o.Counterparty, &o.TradeDate,
		&confirm, &o.Status, &o.Reason, &o.CreatedAt)
	if confirm.Valid {
		o.ConfirmDate = confirm.Time
	}
	o.CreatedAt = o.CreatedAt.UTC()
	return o, err
}

func dateOrNull(t time.Time) pgtype.Date {
	return pgtype.Date{Time: t, Valid: !t.IsZero()}
}

// Order implements accounts.Store.
func (s *Store) Order(ctx context.Context, c accounts.CustomerID, requestID string) (_ accounts.Order, err error) {
	defer markUnavailable(&err)
	o, err := scanOrder(s.pool.QueryRow(ctx,
		`SELECT `+orderColumns+` FROM orders WHERE customer_id = $1 AND request_id = $2`, c, requestID))
	if errors.Is(err, pgx.ErrNoRows) {
		return o, accounts.ErrOrderNotFound
	}
	return o, err
}

// History implements accounts.Store. The customer's own orders and the
// transfers it received are read by two index scans and merged. A transfer
// to it that is pending (a saga in flight) is read too, for the service to
// resolve; one rejected or refunded never reached it.
func (s *Store) History(ctx context.Context, q accounts.HistoryQuery, beforeID int64, limit int) (_ []accounts.Order, err error) {
	defer markUnavailable(&err)
	kinds := make([]string, len(q.Kinds))
	for i, k := range q.Kinds {
		kinds[i] = string(k)
	}
	filter := `($2::bigint = 0 OR id < $2)
		AND (cardinality($3::text[]) = 0 OR kind = ANY($3))
		AND ($4::date IS NULL OR trade_date >= $4)
		AND ($5::date IS NULL OR trade_date <= $5)`
	sql := `
		(SELECT ` + orderColumns + ` FROM orders WHERE customer_id = $1 AND ` + filter + ` ORDER BY id DESC LIMIT $6)
		UNION ALL
		(SELECT ` + orderColumns + ` FROM orders WHERE kind = 'transfer' AND counterparty = $1
			AND status IN ('completed', 'pending')
			AND ` + filter + ` ORDER BY id DESC LIMIT $6)
		ORDER BY id DESC LIMIT $6`
	rows, err := s.pool.Query(ctx, sql, q.CustomerID, beforeID, kinds, dateOrNull(q.From), dateOrNull(q.To), limit)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (accounts.Order, error) { return scanOrder(r) })
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	return out, nil
}

// PendingTransfers implements accounts.Store, by the partial index of the
// pending transfers.
func (s *Store) PendingTransfers(ctx context.Context, c accounts.CustomerID, afterID int64, limit int) (_ []accounts.Order, err error) {
	defer markUnavailable(&err)
	rows, err := s.pool.Query(ctx, `SELECT `+orderColumns+` FROM orders
		WHERE kind = 'transfer' AND status = 'pending' AND id > $1 AND ($2::bigint = 0 OR customer_id = $2)
		ORDER BY id LIMIT $3`, afterID, c, limit)
	if err != nil {
		return nil, fmt.Errorf("pending transfers: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (accounts.Order, error) { return scanOrder(r) })
	if err != nil {
		return nil, fmt.Errorf("pending transfers: %w", err)
	}
	return out, nil
}

// ResolveTransfer implements accounts.Store. The order's status is all
// it changes, and only from pending: the row is otherwise written once.
func (s *Store) ResolveTransfer(ctx context.Context, c accounts.CustomerID, requestID string, status accounts.OrderStatus,
	reason string) (_ accounts.Order, err error) {
	defer markUnavailable(&err)
	switch {
	case status == accounts.OrderCompleted && reason == "", status == accounts.OrderRefunded && reason != "":
	default:
		return accounts.Order{}, fmt.Errorf("resolve transfer %d/%s: status %q with reason %q", c, requestID, status, reason)
	}
	o, err := scanOrder(s.pool.QueryRow(ctx, `UPDATE orders SET status = $3, reason = $4
		WHERE customer_id = $1 AND request_id = $2 AND kind = 'transfer' AND status = 'pending'
		RETURNING `+orderColumns, c, requestID, status, reason))
	if errors.Is(err, pgx.ErrNoRows) {
		// Resolved already (or not a pending transfer): what is stored.
		return s.Order(ctx, c, requestID)
	}
	if err != nil {
		return accounts.Order{}, fmt.Errorf("resolve transfer %d/%s: %w", c, requestID, err)
	}
	return o, nil
}

// RecordDailyIncome implements accounts.Store.
func (s *Store) RecordDailyIncome(ctx context.Context, incomes []accounts.DailyIncome) (err error) {
	defer markUnavailable(&err)
	if len(incomes) == 0 {
		return nil
	}
	ids := make([]int64, len(incomes))
	dates := make([]time.Time, len(incomes))
	amounts := make([]int64, len(incomes))
	for i, in := range incomes {
		ids[i], dates[i], amounts[i] = int64(in.CustomerID), accounts.DateOf(in.Date), in.Amount
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	const input = `unnest($1::bigint[], $2::date[], $3::bigint[]) AS t(customer_id, date, amount)`
	if _, err := tx.Exec(ctx, `INSERT INTO customer_income (customer_id, date, amount)
		SELECT customer_id, date, amount FROM `+input+` ON CONFLICT DO NOTHING`, ids, dates, amounts); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.ConstraintName == "customer_income_customer" {
			return fmt.Errorf("record income: %s: %w", pgErr.Detail, accounts.ErrCustomerNotFound)
		}
		return fmt.Errorf("record income: %w", err)
	}
	// In a statement of its own, so that it also sees rows a concurrent
	// call committed while the insert waited for them.
	var customer int64
	var date time.Time
	var stored, given int64
	err = tx.QueryRow(ctx, `SELECT t.customer_id, t.date, i.amount, t.amount FROM `+input+`
		JOIN customer_income i ON i.customer_id = t.customer_id AND i.date = t.date
		WHERE i.amount <> t.amount LIMIT 1`, ids, dates, amounts).Scan(&customer, &date, &stored, &given)
	if err == nil {
		return fmt.Errorf("income of customer %d on %s is %s, not %s: %w", customer, date.Format(time.DateOnly),
			accounts.FormatAmount(stored), accounts.FormatAmount(given), accounts.ErrRecordConflict)
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("check income: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit income: %w", err)
	}
	return nil
}

// Income implements accounts.Store.
func (s *Store) Income(ctx context.Context, c accounts.CustomerID, date time.Time) (day, cumulative int64, err error) {
	defer markUnavailable(&err)
	err = s.pool.QueryRow(ctx, `
		SELECT coalesce(sum(amount) FILTER (WHERE date = $2), 0)::bigint, coalesce(sum(amount), 0)::bigint
		FROM customer_income WHERE customer_id = $1`, c, accounts.DateOf(date)).Scan(&day, &cumulative)
	if err != nil {
		return 0, 0, fmt.Errorf("income: %w", err)
	}
	return day, cumulative, nil
}

func scanFundYield(row pgx.Row) (accounts.FundYield, error) {
	var y accounts.FundYield
	var seven pgtype.Int8
	err := row.Scan(&y.Date, &y.IncomePer10k, &seven)
	y.SevenDayYield, y.HasSevenDayYield = seven.Int64, seven.Valid
	return y, err
}

// RecordFundYield implements accounts.Store.
func (s *Store) RecordFundYield(ctx context.Context, y accounts.FundYield) (err error) {
	defer markUnavailable(&err)
	seven := pgtype.Int8{Int64: y.SevenDayYield, Valid: y.HasSevenDayYield}
	date := accounts.DateOf(y.Date)
	tag, err := s.pool.Exec(ctx, `INSERT INTO fund_yields (date, income_per_10k, seven_day_yield) VALUES ($1, $2, $3)
		ON CONFLICT (date) DO NOTHING`, date, y.IncomePer10k, seven)
	if err != nil {
		return fmt.Errorf("record fund yield: %w", err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	old, err := scanFundYield(s.pool.QueryRow(ctx,
		`SELECT date, income_per_10k, seven_day_yield FROM fund_yields WHERE date = $1`, date))
	if err != nil {
		return fmt.Errorf("read fund yield: %w", err)
	}
	if old.IncomePer10k != y.IncomePer10k || old.HasSevenDayYield != y.HasSevenDayYield || old.SevenDayYield != y.SevenDayYield {
		return fmt.Errorf("fund yield of %s: %+v stored: %w", date.Format(time.DateOnly), old, accounts.ErrRecordConflict)
	}
	return nil
}

// FundYields implements accounts.Store.
func (s *Store) FundYields(ctx context.Context, from, to time.Time) (_ []accounts.FundYield, err error) {
	defer markUnavailable(&err)
	rows, err := s.pool.Query(ctx, `SELECT date, income_per_10k, seven_day_yield FROM fund_yields
		WHERE date BETWEEN $1 AND $2 ORDER BY date LIMIT $3`, accounts.DateOf(from), accounts.DateOf(to), accounts.FundYieldsMax)
	if err != nil {
		return nil, fmt.Errorf("fund yields: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (accounts.FundYield, error) { return scanFundYield(r) })
	if err != nil {
		return nil, fmt.Errorf("fund yields: %w", err)
	}
	return out, nil
}

// LatestFundYield implements accounts.Store.
func (s *Store) LatestFundYield(ctx context.Context) (_ accounts.FundYield, _ bool, err error) {
	defer markUnavailable(&err)
	y, err := scanFundYield(s.pool.QueryRow(ctx,
		`SELECT date, income_per_10k, seven_day_yield FROM fund_yields ORDER BY date DESC LIMIT 1`))
	if errors.Is(err, pgx.ErrNoRows) {
		return accounts.FundYield{}, false, nil
	}
	if err != nil {
		return accounts.FundYield{}, false, fmt.Errorf("latest fund yield: %w", err)
	}
	return y, true, nil
}

// Holidays implements accounts.Store.
func (s *Store) Holidays(ctx context.Context) (_ []accounts.Holiday, err error) {
	defer markUnavailable(&err)
	rows, err := s.pool.Query(ctx, `SELECT date, name FROM trading_holidays ORDER BY date`)
	if err != nil {
		return nil, fmt.Errorf("holidays: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (accounts.Holiday, error) {
		var h accounts.Holiday
		err := r.Scan(&h.Date, &h.Name)
		return h, err
	})
}

// AddHoliday implements accounts.Store.
func (s *Store) AddHoliday(ctx context.Context, h accounts.Holiday) (err error) {
	defer markUnavailable(&err)
	_, err = s.pool.Exec(ctx, `INSERT INTO trading_holidays (date, name) VALUES ($1, $2)
		ON CONFLICT (date) DO UPDATE SET name = excluded.name`, accounts.DateOf(h.Date), h.Name)
	if err != nil {
		return fmt.Errorf("add holiday: %w", err)
	}
	return nil
}

// RemoveHoliday implements accounts.Store.
func (s *Store) RemoveHoliday(ctx context.Context, date time.Time) (err error) {
	defer markUnavailable(&err)
	if _, err := s.pool.Exec(ctx, `DELETE FROM trading_holidays WHERE date = $1`, accounts.DateOf(date)); err != nil {
		return fmt.Errorf("remove holiday: %w", err)
	}
	return nil
}
