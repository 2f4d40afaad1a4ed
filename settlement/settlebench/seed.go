package settlebench

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/ledger"
	ledgerpg "github.com/fundplatform/fund/ledger/postgres"
	"github.com/fundplatform/fund/settlement"
)

// SeedConfig describes the day to create.
type SeedConfig struct {
	Customers int64
	Shards    int
	// Date is the business date to settle; the holders' shares were bought
	// the day before, the pending orders placed then are due on Date.
	Date time.Time
	// SubscribeEvery and RedeemEvery: every n-th customer has a pending
	// subscription (resp. standard redemption) due on Date; 0 = none.
	SubscribeEvery int64
	RedeemEvery    int64
	// LateRedeemEvery: every n-th customer (from the second) redeems all
	// its remaining shares on Date itself (paid the day after), so it
	// earns on Date but can give nothing up on a losing day; 0 = none.
	LateRedeemEvery int64
	// Salt varies the share amounts between seeds.
	Salt int64
}

// Seeded is what Seed wrote.
type Seeded struct {
	Customers     int64
	Subscriptions int64
	Redemptions   int64
	Took          time.Duration
}

// shardSQL is ledger.ShardOf in SQL: the multiplicative hash in 64-bit
// unsigned arithmetic, done in numeric. TestShardSQL checks it.
const shardSQL = `(div(mod(%[1]s::numeric * 11400714819323198485, 18446744073709551616), 4294967296) %% %[2]d)::int`

// orderIDSQL is accounts' order transfer id (settlement.OrderTransferID):
// SHA-256 of namespace, NUL, request id, NUL, leg; the first 16 bytes with
// the version and variant bits of ledger.DeriveTransferID.
const orderIDSQL = `(SELECT encode(set_byte(set_byte(substring(h from 1 for 16), 6, (get_byte(h, 6) & 15) | 80), 8,
	(get_byte(h, 8) & 63) | 128), 'hex')::uuid
	FROM (SELECT sha256(convert_to('accounts/order/' || %[1]s, 'UTF8') || '\x00'::bytea || convert_to(%[2]s, 'UTF8')
		|| '\x00'::bytea || convert_to(%[3]s, 'UTF8')) AS h) x)`

// Seed writes the day. The database must be migrated (settlement/postgres
// Open) and hold no customers yet.
func Seed(ctx context.Context, pool *pgxpool.Pool, ls *ledgerpg.Store, cfg SeedConfig) (Seeded, error) {
	start := time.Now()
	out := Seeded{Customers: cfg.Customers}
	n, shards := cfg.Customers, max(cfg.Shards, 1)
	d0 := cfg.Date.AddDate(0, 0, -1)
	if err := ls.EnsurePartitions(ctx, d0, cfg.Date); err != nil {
		return out, err
	}
	// Timestamps: the day before, 10:00 CST onwards, one microsecond per
	// customer, unique across shards.
	t0 := time.Date(d0.Year(), d0.Month(), d0.Day(), 10, 0, 0, 0, ledger.BusinessZone()).UnixNano()
	created := time.Unix(0, t0).UTC()
	shard := func(expr string) string { return fmt.Sprintf(shardSQL, expr, shards) }
	subEvery, redEvery := cfg.SubscribeEvery, cfg.RedeemEvery
	if subEvery <= 0 {
		subEvery = n + 1
	}
	if redEvery <= 0 {
		redEvery = n + 1
	}
	lateEvery, lateStart := cfg.LateRedeemEvery, int64(2)
	if lateEvery <= 0 {
		lateEvery, lateStart = 1, n+1 // none
	}
	lateCreated := time.Date(cfg.Date.Year(), cfg.Date.Month(), cfg.Date.Day(), 10, 0, 0, 0, ledger.BusinessZone()).UTC()
	// Shares between 0.01 and 10,000.00, spread by a hash of the id.
	shares := fmt.Sprintf(`(1 + abs(hashint8(g # %d)) %% 1000000)`, cfg.Salt)
	openID := `md5('seed/open/' || g)::uuid`

	var sysIDs []int64
	var sysShard []int32
	var sysAsset []int16
	for s := 0; s < shards; s++ {
		for canonical, asset := range settlement.SystemAccounts() {
			sysIDs = append(sysIDs, int64(settlement.SystemAccountOn(canonical, s, shards)))
			sysShard = append(sysShard, int32(s))
			sysAsset = append(sysAsset, int16(asset))
		}
	}
	omnibus := make([]int64, shards)
	for s := range omnibus {
		omnibus[s] = int64(settlement.SystemAccountOn(accounts.FundOmnibusShares, s, shards))
	}
	steps := []struct {
		name string
		sql  string
		args []any
	}{
		{"customers", `INSERT INTO customers (id, request_id, name, status, created_at) OVERRIDING SYSTEM VALUE
			SELECT g, 'seed-' || g, 'holder ' || g, 'active', $2 FROM generate_series(1, $1::bigint) g`, []any{n, created}},
		{"customer ids", `SELECT setval(pg_get_serial_sequence('customers', 'id'), $1)`, []any{n}},
		{"system accounts", `INSERT INTO accounts (id, shard, asset, code, flags, created_ts, balance_ts)
			SELECT u.id, u.shard, u.asset, $4, 0, $5, $5 FROM unnest($1::bigint[], $2::int[], $3::smallint[]) AS u(id, shard, asset)
			ON CONFLICT (id) DO NOTHING`, []any{sysIDs, sysShard, sysAsset, int32(accounts.CodeSystem), t0}},
		// Customer shares accounts with their opening balance, bought the
		// day before; balances include the pending orders added below.
		{"shares accounts", fmt.Sprintf(`INSERT INTO accounts (id, shard, asset, code, flags, credits_posted, created_ts, balance_ts)
			SELECT g * 16 + 2, %s, 2, 2, 1, %s, $2, $3 FROM generate_series(1, $1::bigint) g`, shard("(g * 16 + 2)"), shares),
			[]any{n, t0, t0 + 3*n*1000 + 1000}},
		{"opening entries", fmt.Sprintf(`INSERT INTO transfers (id, shard, ts, business_date, debit_account_id, credit_account_id,
				amount, asset, kind, flags, user_data)
			SELECT %s, s, $2 + g * 1000, $3, ($4::bigint[])[s + 1], g * 16 + 2, %s, 2, $5, 0, 'seed-open'
			FROM (SELECT g, %s AS s FROM generate_series(1, $1::bigint) g) x`, openID, shares, shard("(g * 16 + 2)")),
			[]any{n, t0, d0, omnibus, int32(accounts.TransferSubscribeShares)}},
		{"opening ids", fmt.Sprintf(`INSERT INTO transfer_ids (id, shard, business_date, fingerprint)
			SELECT %s, %s, $2, 0 FROM generate_series(1, $1::bigint) g ORDER BY 1`, openID, shard("(g * 16 + 2)")), []any{n, d0}},
		// Pending subscriptions due on Date (placed the day before).
		{"subscriptions", `INSERT INTO orders (customer_id, request_id, kind, amount, trade_date, confirm_date, status, created_at)
			SELECT g, 'seed-sub', 'subscribe', 1000 + g % 100000, $3, $4, 'pending', $5
			FROM generate_series($2::bigint, $1::bigint, $2::bigint) g`, []any{n, subEvery, d0, cfg.Date, created}},
		{"redemptions", fmt.Sprintf(`INSERT INTO orders (customer_id, request_id, kind, amount, trade_date, confirm_date, status, created_at)
			SELECT g, 'seed-red', 'standard_redeem', greatest(%s / 2, 1), $3, $4, 'pending', $5
			FROM generate_series($2::bigint, $1::bigint, $2::bigint) g`, shares), []any{n, redEvery, d0, cfg.Date, created}},
		{"late redemptions", fmt.Sprintf(`INSERT INTO orders (customer_id, request_id, kind, amount, trade_date, confirm_date, status, created_at)
			SELECT g, 'seed-late', 'standard_redeem', a, $3, $4, 'pending', $5 FROM (
				SELECT g, CASE WHEN g %% $6 = 0 THEN %[1]s - greatest(%[1]s / 2, 1) ELSE %[1]s END AS a
				FROM generate_series($7::bigint, $1::bigint, $2::bigint) g) x
			WHERE a > 0`, shares), []any{n, lateEvery, cfg.Date, cfg.Date.AddDate(0, 0, 1), lateCreated, redEvery, lateStart}},
		{"redeemers' cash accounts", fmt.Sprintf(`INSERT INTO accounts (id, shard, asset, code, flags, created_ts, balance_ts)
			SELECT DISTINCT customer_id * 16 + 1, %s, 1, 1, 1, $1::bigint, $1::bigint FROM orders WHERE kind = 'standard_redeem'`,
			shard("(customer_id * 16 + 1)")), []any{t0}},
		// The pending transfers of those orders, as the accounts service
		// writes them: subscription leg 1 (omnibus -> holder), redemption
		// leg 0 (holder -> omnibus).
		{"pending entries", fmt.Sprintf(`
			WITH o AS (
				SELECT o.customer_id AS c, o.request_id AS r, o.kind, o.amount, o.id,
					CASE o.kind WHEN 'subscribe' THEN '1' ELSE '0' END AS leg, %s AS s
				FROM orders o WHERE o.request_id IN ('seed-sub', 'seed-red', 'seed-late')
			), p AS (
				SELECT %s AS pid, o.* FROM o
			), ins AS (
				INSERT INTO pending_transfers (id, shard, debit_account_id, credit_account_id, amount, asset, state)
				SELECT pid, s, CASE kind WHEN 'subscribe' THEN ($2::bigint[])[s + 1] ELSE c * 16 + 2 END,
					CASE kind WHEN 'subscribe' THEN c * 16 + 2 ELSE ($2::bigint[])[s + 1] END, amount, 2, 1 FROM p
				RETURNING 1
			), ids AS (
				INSERT INTO transfer_ids (id, shard, business_date, fingerprint) SELECT pid, s, $3, 0 FROM p RETURNING 1
			)
			INSERT INTO transfers (id, shard, ts, business_date, debit_account_id, credit_account_id, amount, asset, kind, flags, user_data)
			SELECT pid, s, $1 + ($4::bigint + 1) * 1000 + id * 1000, $3,
				CASE kind WHEN 'subscribe' THEN ($2::bigint[])[s + 1] ELSE c * 16 + 2 END,
				CASE kind WHEN 'subscribe' THEN c * 16 + 2 ELSE ($2::bigint[])[s + 1] END,
				amount, 2, CASE kind WHEN 'subscribe' THEN $5::int ELSE $6::int END, 2, r FROM p`,
			shard("(o.customer_id * 16 + 2)"), fmt.Sprintf(orderIDSQL, "o.c", "o.r", "o.leg")),
			[]any{t0, omnibus, d0, n, int32(accounts.TransferSubscribeShares), int32(accounts.TransferStandardRedeem)}},
		{"pending balances", `
			WITH d AS (
				SELECT id, sum(dp)::bigint AS dp, sum(cp)::bigint AS cp FROM (
					SELECT debit_account_id AS id, amount AS dp, 0 AS cp FROM pending_transfers WHERE state = 1
					UNION ALL SELECT credit_account_id, 0, amount FROM pending_transfers WHERE state = 1
				) x WHERE id < $1 GROUP BY id
			)
			UPDATE accounts a SET debits_pending = a.debits_pending + d.dp, credits_pending = a.credits_pending + d.cp
			FROM d WHERE a.id = d.id`, []any{int64(1) << 44}},
		// The system accounts' balances, from the journal.
		{"system balances", `
			WITH j AS (
				SELECT debit_account_id AS id, amount, flags, true AS debit FROM transfers WHERE debit_account_id = ANY($1)
				UNION ALL SELECT credit_account_id, amount, flags, false FROM transfers WHERE credit_account_id = ANY($1)
			), b AS (
				SELECT id, coalesce(sum(amount) FILTER (WHERE debit AND flags = 0), 0)::bigint AS dpost,
					coalesce(sum(amount) FILTER (WHERE NOT debit AND flags = 0), 0)::bigint AS cpost,
					coalesce(sum(amount) FILTER (WHERE debit AND flags = 2), 0)::bigint AS dpend,
					coalesce(sum(amount) FILTER (WHERE NOT debit AND flags = 2), 0)::bigint AS cpend
				FROM j GROUP BY id
			)
			UPDATE accounts a SET debits_posted = b.dpost, credits_posted = b.cpost, debits_pending = b.dpend,
				credits_pending = b.cpend, balance_ts = $2 FROM b WHERE a.id = b.id`, []any{sysIDs, t0 + 3*n*1000 + 1000}},
		{"shards", `INSERT INTO ledger_shards (shard, last_timestamp, checkpoint_ts)
			SELECT s, $2, $2 FROM generate_series(0, $1 - 1) s
			ON CONFLICT (shard) DO UPDATE SET last_timestamp = excluded.last_timestamp, checkpoint_ts = excluded.checkpoint_ts`,
			[]any{shards, t0 + 3*n*1000 + 1000}},
		{"analyze", `ANALYZE`, nil},
	}
	for _, st := range steps {
		if _, err := pool.Exec(ctx, st.sql, st.args...); err != nil {
			return out, fmt.Errorf("seed %s: %w", st.name, err)
		}
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE kind = 'subscribe'), count(*) FILTER (WHERE kind = 'standard_redeem')
		FROM orders`).Scan(&out.Subscriptions, &out.Redemptions); err != nil {
		return out, err
	}
	out.Took = time.Since(start)
	return out, nil
}
