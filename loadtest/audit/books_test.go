package audit

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fundplatform/fund/accounts"
	accountspg "github.com/fundplatform/fund/accounts/postgres"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/ledger"
	ledgerpg "github.com/fundplatform/fund/ledger/postgres"
	"github.com/fundplatform/fund/ledger/xshard"
	"github.com/fundplatform/fund/loadtest"
	"github.com/fundplatform/fund/settlement"
)

// The database-wide checks (orphans, sagas, in-transit) run here on books
// written by hand: the tables as the ledger and the accounts service leave
// them, on 8 shards, with the customers of a saga on two of them.

const worldShards = 8

// world writes hand-built books: ledger tables into the database of each
// entry's shard, order rows into the accounts database, or, with the
// accounts sharded, into the database of the customer's shard.
type world struct {
	t        *testing.T
	ctx      context.Context
	ledgers  []string // DSNs; shard s is in ledgers[s*len/worldShards]
	accounts string   // "" = sharded: each ledger database holds its shards' customers
	pools    map[string]*pgxpool.Pool
	ts       int64
	day      time.Time
	records  []loadtest.Record
}

// accountsLayout is where a world keeps the accounts' tables.
type accountsLayout int

const (
	accountsFirst   accountsLayout = iota // in the first ledger database
	accountsApart                         // in a database of their own
	accountsSharded                       // in every ledger database, each customer in its shard's
)

// newWorld migrates the ledger's tables into each of ledgerDBs fresh
// databases and the accounts' as layout says.
func newWorld(t *testing.T, ledgerDBs int, layout accountsLayout) *world {
	t.Helper()
	w := &world{t: t, ctx: context.Background(), pools: map[string]*pgxpool.Pool{}, ts: time.Now().UnixNano()}
	w.day = ledger.BusinessDate(w.ts)
	for range ledgerDBs {
		dsn := pgtest.NewDatabase(t)
		w.ledgers = append(w.ledgers, dsn)
		if err := ledgerpg.Migrate(w.ctx, w.pool(dsn)); err != nil {
			t.Fatal(err)
		}
		if _, err := w.pool(dsn).Exec(w.ctx, `SELECT ledger_create_partition($1::date)`, w.day); err != nil {
			t.Fatal(err)
		}
	}
	accountsDBs := w.ledgers
	switch layout {
	case accountsFirst:
		w.accounts = w.ledgers[0]
		accountsDBs = w.ledgers[:1]
	case accountsApart:
		w.accounts = pgtest.NewDatabase(t)
		accountsDBs = []string{w.accounts}
	}
	for _, dsn := range accountsDBs {
		if err := accountspg.Migrate(w.ctx, w.pool(dsn)); err != nil {
			t.Fatal(err)
		}
	}
	for s := range worldShards {
		w.exec(w.ledgerOf(s), `INSERT INTO ledger_shards (shard) VALUES ($1)`, s)
	}
	return w
}

func (w *world) pool(dsn string) *pgxpool.Pool {
	if p := w.pools[dsn]; p != nil {
		return p
	}
	p, err := pgxpool.New(w.ctx, dsn)
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(p.Close)
	w.pools[dsn] = p
	return p
}

func (w *world) ledgerOf(shard int) string { return w.ledgers[shard*len(w.ledgers)/worldShards] }

func (w *world) exec(dsn, sql string, args ...any) {
	w.t.Helper()
	if _, err := w.pool(dsn).Exec(w.ctx, sql, args...); err != nil {
		w.t.Fatalf("%s: %v", sql, err)
	}
}

// account creates a ledger account (customer accounts let the shard count
// be derived; in-transit ones are what the net sums).
func (w *world) account(id ledger.AccountID, asset ledger.Asset, code uint16) {
	s := ledger.ShardOf(id, worldShards)
	w.exec(w.ledgerOf(s), `INSERT INTO accounts (id, shard, asset, code, flags, created_ts, balance_ts)
		VALUES ($1, $2, $3, $4, 0, $5, $5) ON CONFLICT DO NOTHING`, id, s, int16(asset), int32(code), w.ts)
}

// entry journals one transfer on the shard of its account on (the entry's
// own shard: the debit's for most, the credit's for a saga's leg 2).
func (w *world) entry(id ledger.TransferID, on, debit, credit ledger.AccountID, amount int64, kind uint16, data string) {
	w.t.Helper()
	s := ledger.ShardOf(on, worldShards)
	w.ts++
	w.exec(w.ledgerOf(s), `INSERT INTO transfers (id, shard, ts, business_date, debit_account_id, credit_account_id,
		amount, asset, kind, flags, user_data) VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, 1, $8, 0, $9)`,
		id.String(), s, w.ts, w.day, debit, credit, amount, int32(kind), data)
	w.exec(w.ledgerOf(s), `INSERT INTO transfer_ids (id, shard, business_date, fingerprint) VALUES ($1::uuid, $2, $3, 0)`,
		id.String(), s, w.day)
}

func (w *world) row(c int64, req string, kind accounts.OrderKind, amount, counterparty int64, status accounts.OrderStatus) {
	dsn := w.accounts
	if dsn == "" {
		dsn = w.ledgerOf(accounts.ShardOf(accounts.CustomerID(c), worldShards))
	}
	w.exec(dsn, `INSERT INTO orders (customer_id, request_id, kind, amount, counterparty, trade_date, status, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, now())`, c, req, string(kind), amount, counterparty, w.day, string(status))
}

// transfer books customer from's transfer req to customer to: one entry
// on a shard, or a saga's leg 1 and, when end is completed or refunded,
// its leg 2 (of amount in) or compensation; and the order row with
// status. It is one of the run's records, acknowledged.
func (w *world) transfer(from, to int64, req string, amount, in int64, end, status accounts.OrderStatus) ledger.TransferID {
	r := loadtest.Record{Op: loadtest.OpTransfer, Customer: from, Counterparty: to, Amount: amount, Key: req,
		Outcome: loadtest.Accepted, Attempts: 1}
	w.records = append(w.records, r)
	id := LegID(from, req, 0)
	payer, payee := accounts.CashAccount(accounts.CustomerID(from)), accounts.CashAccount(accounts.CustomerID(to))
	src, dst := ledger.ShardOf(payer, worldShards), ledger.ShardOf(payee, worldShards)
	if src == dst {
		w.entry(id, payer, payer, payee, amount, accounts.TransferCustomerToCustomer, req)
		w.row(from, req, accounts.KindTransfer, amount, to, status)
		return id
	}
	out, back := xshard.InTransitAccount(src, dst, worldShards, ledger.AssetCNY), xshard.InTransitAccount(dst, src, worldShards, ledger.AssetCNY)
	w.account(out, ledger.AssetCNY, xshard.KindOut)
	w.account(back, ledger.AssetCNY, xshard.KindOut)
	leg1 := xshard.Leg1(ledger.Transfer{ID: id, DebitAccountID: payer, CreditAccountID: payee, Amount: amount,
		Asset: ledger.AssetCNY, Kind: accounts.TransferCustomerToCustomer, UserData: req}, worldShards)
	w.entry(id, payer, payer, out, amount, xshard.KindOut, leg1.UserData)
	inID, backID := xshard.ClosingIDs(id)
	switch end {
	case accounts.OrderCompleted:
		w.entry(inID, payee, back, payee, in, accounts.TransferCustomerToCustomer, req)
	case accounts.OrderRefunded:
		w.entry(backID, payer, out, payer, amount, xshard.KindBack, "")
	}
	w.row(from, req, accounts.KindTransfer, amount, to, status)
	return id
}

// customers on the world's shards: a payer, one on its shard, one on
// a shard of the other half (so in the other database when there are
// two). The loop ends: ids spread over every shard within a few dozen.
func worldCustomers() (payer, near, far int64) {
	payer = 7
	half := func(c int64) int { return accounts.ShardOf(accounts.CustomerID(c), worldShards) * 2 / worldShards }
	shard := func(c int64) int { return accounts.ShardOf(accounts.CustomerID(c), worldShards) }
	for c := payer + 1; (near == 0 || far == 0) && c < payer+1000; c++ {
		switch {
		case shard(c) == shard(payer) && near == 0:
			near = c
		case half(c) != half(payer) && far == 0:
			far = c
		}
	}
	return payer, near, far
}

// clean books the run: a transfer on one shard, a saga completed and a
// saga refunded (both with the rows resolved), plus what the audit must
// pass over or find in the databases alone: a top-up of another customer
// with its row, a quota grant and a settlement entry (no order rows).
func (w *world) clean() {
	payer, near, far := worldCustomers()
	for _, c := range []int64{payer, near, far, 40} {
		w.account(accounts.CashAccount(accounts.CustomerID(c)), ledger.AssetCNY, accounts.CodeCustomerCash)
	}
	w.transfer(payer, near, "run-1", 100, 0, accounts.OrderCompleted, accounts.OrderCompleted)
	w.transfer(payer, far, "run-2", 200, 200, accounts.OrderCompleted, accounts.OrderCompleted)
	w.transfer(payer, far, "run-3", 300, 0, accounts.OrderRefunded, accounts.OrderRefunded)
	cash40 := accounts.CashAccount(40)
	bank := accounts.SystemAccountOn(accounts.BankSettlement, accounts.ShardOf(40, worldShards), worldShards)
	w.entry(LegID(40, "other-1", 0), cash40, bank, cash40, 5000, accounts.TransferTopUp, "other-1")
	w.row(40, "other-1", accounts.KindTopUp, 5000, 0, accounts.OrderCompleted)
	quota := accounts.QuotaAccount(40, w.day)
	w.entry(ledger.DeriveTransferID("test/quota", "40"), quota,
		accounts.SystemAccountOn(accounts.QuotaIssuer, accounts.ShardOf(40, worldShards), worldShards), quota, 1_000_000,
		accounts.TransferQuotaGrant, "")
	w.entry(ledger.DeriveTransferID("test/income", "40"), cash40, bank, cash40, 7, settlement.KindIncome, "income")
}

func (w *world) audit(shards int) *loadtest.Audit {
	w.t.Helper()
	cfg := Config{LedgerDSNs: w.ledgers, AccountsDSN: w.accounts, Shards: shards, SkipVerify: true, SagaWait: time.Second}
	a, err := Run(w.ctx, cfg, w.records)
	if err != nil {
		w.t.Fatal(err)
	}
	return a
}

// TestBooksOrphansAndSagas audits hand-built books: clean ones pass with
// every count as booked, and each planted fault fails the audit and is
// named, on one database, on a shard map over two with the accounts in a
// third, and on a shard map over two with the customers spread over them
// (the accounts databases derived from the ledger's).
func TestBooksOrphansAndSagas(t *testing.T) {
	layouts := []struct {
		name     string
		dbs      int
		accounts accountsLayout
	}{
		{"one database", 1, accountsFirst},
		{"two ledger databases, accounts apart", 2, accountsApart},
		{"two databases, accounts sharded", 2, accountsSharded},
	}
	payer, _, far := worldCustomers()
	cases := []struct {
		name  string
		plant func(w *world)
		check func(a *loadtest.Audit) bool
		named string
	}{
		{"clean", func(*world) {}, func(a *loadtest.Audit) bool {
			return a.OK && a.OrphansChecked && a.EntriesScanned == 4 && a.RowsScanned == 4 && a.SagasCompleted == 1 &&
				a.SagasRefunded == 1 && a.SagasOpen == 0 && a.Applied == 3 && a.InTransitNet["CNY"] == 0 && len(a.InTransitNet) == 1
		}, ""},
		{"entry without its order row", func(w *world) {
			cash := accounts.CashAccount(40)
			w.entry(LegID(40, "other-2", 0), cash, accounts.SystemAccountOn(accounts.BankSettlement, accounts.ShardOf(40, worldShards), worldShards),
				cash, 10, accounts.TransferTopUp, "other-2")
		}, func(a *loadtest.Audit) bool { return !a.OK && a.EntriesWithoutRow == 1 && a.RowsWithoutEntry == 0 }, "other-2"},
		{"order row without its entry", func(w *world) {
			w.row(40, "other-3", accounts.KindWithdraw, 10, 0, accounts.OrderCompleted)
			w.row(40, "other-4", accounts.KindWithdraw, 10, 0, accounts.OrderRejected) // nothing moved: fine
		}, func(a *loadtest.Audit) bool { return !a.OK && a.RowsWithoutEntry == 1 && a.EntriesWithoutRow == 0 }, "other-3"},
		{"saga with neither leg 2 nor compensation", func(w *world) {
			w.transfer(payer, far, "run-4", 400, 0, accounts.OrderPending, accounts.OrderPending)
		}, func(a *loadtest.Audit) bool {
			return !a.OK && a.SagasOpen == 1 && a.InTransitNet["CNY"] == 400 && a.Lost == 0 && a.EntriesWithoutRow == 0
		}, "run-4"},
		{"saga ended but the row says otherwise", func(w *world) {
			w.transfer(payer, far, "run-5", 500, 500, accounts.OrderCompleted, accounts.OrderRefunded)
		}, func(a *loadtest.Audit) bool { return !a.OK && a.SagasWrong == 1 && a.SagasCompleted == 2 }, "run-5"},
		{"ended saga whose row is not resolved yet", func(w *world) {
			w.transfer(payer, far, "run-6", 600, 600, accounts.OrderCompleted, accounts.OrderPending)
		}, func(a *loadtest.Audit) bool { return a.OK && a.SagasUnresolved == 1 }, ""},
		{"in transit not zero", func(w *world) {
			// Leg 2 credits more than leg 1 took in.
			w.transfer(payer, far, "run-7", 700, 701, accounts.OrderCompleted, accounts.OrderCompleted)
		}, func(a *loadtest.Audit) bool { return !a.OK && a.InTransitNet["CNY"] == -1 && a.SagasOpen == 0 }, "in transit"},
	}
	for _, l := range layouts {
		for _, c := range cases {
			t.Run(l.name+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				w := newWorld(t, l.dbs, l.accounts)
				w.clean()
				c.plant(w)
				start := time.Now()
				a := w.audit(0)
				if !c.check(a) {
					t.Errorf("audit: %+v", *a)
				}
				if a.ShardCount != worldShards {
					t.Errorf("derived %d shards, want %d", a.ShardCount, worldShards)
				}
				if c.named != "" && !strings.Contains(strings.Join(a.Problems, "\n"), c.named) {
					t.Errorf("problems do not name %q: %v", c.named, a.Problems)
				}
				t.Logf("%s: %+v (%s)", c.name, *a, time.Since(start).Round(time.Millisecond))
			})
		}
	}
}

// TestDerivedIDSQL: the ids the set-based checks derive in SQL are the
// ones Go derives (ledger.DeriveTransferID through LegID and
// xshard.ClosingIDs).
func TestDerivedIDSQL(t *testing.T) {
	ctx := context.Background()
	p, err := pgxpool.New(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, k := range []struct {
		customer int64
		request  string
	}{{1, "a"}, {7, "run-42"}, {1 << 39, strings.Repeat("~", 64)}} {
		var got string
		if err := p.QueryRow(ctx, `SELECT `+idSQL("d.h")+`::text FROM (SELECT `+legZeroHashSQL("$1::bigint", "$2::text")+` AS h) d`,
			k.customer, k.request).Scan(&got); err != nil {
			t.Fatal(err)
		}
		leg := LegID(k.customer, k.request, 0)
		if got != leg.String() {
			t.Errorf("leg 0 of %d/%s: SQL %s, Go %s", k.customer, k.request, got, leg)
		}
		wantIn, _ := xshard.ClosingIDs(leg)
		if err := p.QueryRow(ctx, `SELECT `+idSQL("d.h")+`::text FROM (SELECT `+hashSQL("'xshard.in'", "$1::text")+` AS h) d`,
			leg.String()).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != wantIn.String() {
			t.Errorf("leg 2 of %s: SQL %s, Go %s", leg, got, wantIn)
		}
	}
	// The kinds the orphan check takes for orders' leave out the others.
	if k := accounts.TransferQuotaGrant; k >= orderKindFirst && k <= orderKindLast {
		t.Error("quota grants fall among the orders' kinds")
	}
	if settlement.IsSettlementKind(orderKindFirst) || settlement.IsSettlementKind(orderKindLast) || settlement.IsSettlementKind(sagaOutKind) {
		t.Error("settlement's kinds fall among the orders' kinds")
	}
}
