package audit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/ledger"
	ledgerpg "github.com/fundplatform/fund/ledger/postgres"
	"github.com/fundplatform/fund/ledger/xshard"
	"github.com/fundplatform/fund/loadtest"
	"github.com/fundplatform/fund/settlement"
)

// Limits of an audit.
const (
	queryBatch      = 5_000 // order keys per query
	problemsMax     = 20    // problems spelled out in the report; all are counted
	samplesMax      = 5     // orphans and sagas named in the problems, per kind of finding
	timeoutMax      = 30 * time.Minute
	sagaWaitDefault = 30 * time.Second
	sagaPollEvery   = 500 * time.Millisecond
	shardsMax       = 4096 // the most shards the audit derives (ledger.OnShard's range is far wider)
)

// Config of an audit.
type Config struct {
	// LedgerDSN is the database of the ledger journal; AccountsDSN that of
	// the customers and their orders when they are all in one database
	// (see AccountsDSNs).
	LedgerDSN, AccountsDSN string
	// LedgerDSNs, when not empty, are every database of the ledger's shard
	// map (LedgerDSN is then not used): a saga's two legs, and the two ends
	// of an in-transit balance, can sit in two of them.
	LedgerDSNs []string
	// AccountsDSNs are the databases the customers and their orders are
	// spread over, in shard-map order, as accounts/postgres.Sharded gets
	// them: a customer's rows are in the one ledger.ShardMap gives its
	// shard (accounts.ShardOf). Empty: AccountsDSN alone, unless it is ""
	// or the first of several ledger databases; then the ledger databases,
	// each holding its own shards' customers, as the gateway role keeps
	// them when the ledger has several (gateway/server).
	AccountsDSNs []string
	// Shards is the number of ledger shards the customers are spread over
	// (accounts.ShardOf); 0 = derive it from the ledger databases (the
	// highest shard they hold plus one, checked against the shards their
	// customer accounts are on).
	Shards int
	// SagaWait bounds how long the audit waits for the cross-shard
	// transfers still pending to end before it judges them; 0 = 30 s,
	// negative = not at all.
	SagaWait time.Duration
	// Recon, when set, asks reconciliation for its view (the fundctl
	// command reads GET /v1/admin/recon/report); its breaks fail the audit.
	Recon func(ctx context.Context) (summary string, breaks int64, err error)
	// SkipVerify leaves out ledger Verify (for tests that break the
	// journal on purpose and only look at the records).
	SkipVerify bool
}

// ErrAudit wraps errors that stopped the audit itself (not findings).
var ErrAudit = errors.New("audit")

// leg is what one transfer of an order's linked chain must look like.
type leg struct {
	debit, credit func(r loadtest.Record) ledger.AccountID // nil: checked by match instead
	match         func(id ledger.AccountID, r loadtest.Record) bool
	asset         ledger.Asset
	pending       bool
}

func fixed(id ledger.AccountID) func(loadtest.Record) ledger.AccountID {
	return func(loadtest.Record) ledger.AccountID { return id }
}
func cash(r loadtest.Record) ledger.AccountID {
	return accounts.CashAccount(accounts.CustomerID(r.Customer))
}
func shares(r loadtest.Record) ledger.AccountID {
	return accounts.SharesAccount(accounts.CustomerID(r.Customer))
}

// isQuota tells a fast-redemption quota account of r's customer
// (accounts.QuotaAccount: 1<<62 | day<<44 | customer<<4 | 3); the day is
// the server's natural day, which the client does not know for sure.
func isQuota(id ledger.AccountID, r loadtest.Record) bool {
	return id>>62 == 1 && ledger.HomeOf(id) == r.Customer && id&0xf == 3
}

// chains mirror the linked chains accounts.Service writes for each order
// kind (accounts/service.go): leg i has the transfer id
// DeriveTransferID("accounts/order/<customer>", requestID, "<i>")
// (accounts/ids.go transferID) and carries the order's amount.
var chains = map[loadtest.Op][]leg{
	loadtest.OpSubscribe: {
		{debit: cash, credit: fixed(accounts.FundOmnibusCash), asset: ledger.AssetCNY},
		{debit: fixed(accounts.FundOmnibusShares), credit: shares, asset: ledger.AssetFundShares, pending: true},
	},
	loadtest.OpStandardRedeem: {
		{debit: shares, credit: fixed(accounts.FundOmnibusShares), asset: ledger.AssetFundShares, pending: true},
	},
	loadtest.OpFastRedeem: {
		{debit: shares, credit: fixed(accounts.FundOmnibusShares), asset: ledger.AssetFundShares},
		{match: func(id ledger.AccountID, r loadtest.Record) bool {
			return isQuota(id, r)
		}, credit: fixed(accounts.QuotaUsed), asset: ledger.AssetQuota},
		{debit: fixed(accounts.FundOmnibusCash), credit: cash, asset: ledger.AssetCNY},
	},
	loadtest.OpTransfer: {
		{debit: cash, credit: func(r loadtest.Record) ledger.AccountID {
			return accounts.CashAccount(accounts.CustomerID(r.Counterparty))
		}, asset: ledger.AssetCNY},
	},
	loadtest.OpPay: {
		{debit: shares, credit: fixed(accounts.FundOmnibusShares), asset: ledger.AssetFundShares},
		{debit: fixed(accounts.FundOmnibusCash), credit: func(r loadtest.Record) ledger.AccountID {
			return accounts.MerchantAccountOn(accounts.MerchantID(r.Counterparty), 0, 1)
		}, asset: ledger.AssetCNY},
	},
}

// sagaChain is what a transfer between customers on two shards writes on
// the payer's shard: leg 1 of the saga (ledger/xshard), the payer's cash to
// the in-transit account for the payee's shard, under the order's leg-0 id.
// Leg 2 and the compensation have ids derived from it (xshard.ClosingIDs);
// the saga check (sagas.go) looks for them.
func sagaChain(shards int) []leg {
	return []leg{{debit: cash, credit: func(r loadtest.Record) ledger.AccountID {
		src := accounts.ShardOf(accounts.CustomerID(r.Customer), shards)
		dst := accounts.ShardOf(accounts.CustomerID(r.Counterparty), shards)
		return xshard.InTransitAccount(src, dst, shards, ledger.AssetCNY)
	}, asset: ledger.AssetCNY}}
}

// crossShard reports whether r is a transfer between customers on two of
// shards: a saga.
func crossShard(r loadtest.Record, shards int) bool {
	return r.Op == loadtest.OpTransfer && shards > 1 &&
		accounts.ShardOf(accounts.CustomerID(r.Customer), shards) != accounts.ShardOf(accounts.CustomerID(r.Counterparty), shards)
}

// chainOf is the chain r's order writes when customers are spread over
// shards.
func chainOf(r loadtest.Record, shards int) []leg {
	if crossShard(r, shards) {
		return sagaChain(shards)
	}
	return chains[r.Op]
}

var orderKinds = map[loadtest.Op]accounts.OrderKind{
	loadtest.OpSubscribe: accounts.KindSubscribe, loadtest.OpStandardRedeem: accounts.KindStandardRedeem,
	loadtest.OpFastRedeem: accounts.KindFastRedeem, loadtest.OpTransfer: accounts.KindTransfer, loadtest.OpPay: accounts.KindPay,
}

// LegID is the ledger id of leg n of customer c's order requestID, derived
// exactly as accounts derives it.
func LegID(c int64, requestID string, n int) ledger.TransferID {
	return ledger.DeriveTransferID("accounts/order/"+strconv.FormatInt(c, 10), requestID, strconv.Itoa(n))
}

// pendingLeg is the leg of an order that settlement posts later: the
// shares awaiting confirmation of a subscription (leg 1), the shares held
// by a standard redemption (leg 0); -1 for orders that complete at once.
func pendingLeg(op loadtest.Op) int {
	switch op {
	case loadtest.OpSubscribe:
		return 1
	case loadtest.OpStandardRedeem:
		return 0
	}
	return -1
}

// followUps are the ids of the entries settlement writes for an order
// (package settlement derives them from the pending leg): the post of the
// pending leg and, for a standard redemption, the cash paid out.
func followUps(r loadtest.Record) (post, cash ledger.TransferID, ok bool) {
	n := pendingLeg(r.Op)
	if n < 0 {
		return post, cash, false
	}
	p := LegID(r.Customer, r.Key, n)
	return settlement.ConfirmTransferID(p), settlement.RedeemCashTransferID(p), true
}

// allIDs lists every journal id the audit looks for on behalf of r: its
// legs, settlement's follow-ups and, for a saga, leg 2 and the
// compensation (leg 2 carries the request id too).
func allIDs(r loadtest.Record, shards int) []ledger.TransferID {
	var ids []ledger.TransferID
	for i := range chainOf(r, shards) {
		ids = append(ids, LegID(r.Customer, r.Key, i))
	}
	if crossShard(r, shards) {
		in, back := xshard.ClosingIDs(ids[0])
		ids = append(ids, in, back)
	}
	if post, cash, ok := followUps(r); ok {
		ids = append(ids, post)
		if r.Op == loadtest.OpStandardRedeem {
			ids = append(ids, cash)
		}
	}
	return ids
}

// entry is one journal row.
type entry struct {
	debit, credit ledger.AccountID
	amount        int64
	asset         ledger.Asset
	flags         ledger.TransferFlags
}

type order struct {
	kind         string
	amount       int64
	counterparty int64
	status       string
}

// applied reports whether an order row says its money moved: completed,
// pending (held for settlement, or a saga in flight) or refunded (a saga
// whose leg 1 moved the money and whose compensation gave it back).
func (o order) applied() bool {
	switch accounts.OrderStatus(o.status) {
	case accounts.OrderCompleted, accounts.OrderPending, accounts.OrderRefunded:
		return true
	}
	return false
}

// Run checks every order record of a run against the books and the books
// against themselves: the records (check), strays, the ledger's Verify,
// then, from the databases alone, orphans both ways (orphans.go), every
// saga's end and the in-transit net (sagas.go), and reconciliation.
// Findings go into the returned Audit (OK false when anything is wrong);
// an error means the audit could not finish.
func Run(ctx context.Context, cfg Config, records []loadtest.Record) (*loadtest.Audit, error) {
	ctx, cancel := context.WithTimeout(ctx, timeoutMax)
	defer cancel()
	db, err := openBooks(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer db.close()

	a := &loadtest.Audit{ShardCount: db.shards}
	problem := func(format string, args ...any) {
		if len(a.Problems) < problemsMax {
			a.Problems = append(a.Problems, fmt.Sprintf(format, args...))
		}
	}
	sc, err := checkRecords(ctx, db, records, a, problem)
	if err != nil {
		return nil, err
	}
	if !cfg.SkipVerify {
		for _, l := range db.ledgers {
			if err := verify(ctx, l.dsn, l.pool, a, problem); err != nil {
				return nil, err
			}
		}
	}
	if err := checkOrphans(ctx, db, sc, a, problem); err != nil {
		return nil, err
	}
	wait := cfg.SagaWait
	if wait == 0 {
		wait = sagaWaitDefault
	}
	if err := checkSagas(ctx, db, sc, max(wait, 0), a, problem); err != nil {
		return nil, err
	}
	if cfg.Recon != nil {
		summary, breaks, err := cfg.Recon(ctx)
		if err != nil {
			a.Recon = "unavailable: " + err.Error()
		} else {
			a.Recon, a.ReconBreaks, a.ReconRan = summary, breaks, true
			if breaks > 0 {
				problem("reconciliation shows %d breaks", breaks)
			}
		}
	}
	a.OK = a.Lost == 0 && a.Duplicated == 0 && a.HalfApplied == 0 && a.Wrong == 0 &&
		(cfg.SkipVerify || a.LedgerVerified) && a.ReconBreaks == 0 &&
		a.EntriesWithoutRow == 0 && a.RowsWithoutEntry == 0 && a.SagasOpen == 0 && a.SagasWrong == 0 && inTransitZero(a)
	return a, nil
}

// checkRecords compares every order record with the books (check) and
// looks for strays; it returns the run's scope in the books for the
// database-wide checks that follow.
func checkRecords(ctx context.Context, db *databases, records []loadtest.Record, a *loadtest.Audit,
	problem func(string, ...any)) (scope, error) {
	var orders []loadtest.Record
	for _, r := range records {
		if r.Op.IsOrder() {
			orders = append(orders, r)
		}
	}
	expected := map[ledger.TransferID]bool{}
	for _, r := range orders {
		for _, id := range allIDs(r, db.shards) {
			expected[id] = true
		}
	}
	var sc scope
	journal := map[ledger.TransferID][]entry{}
	for _, l := range db.ledgers {
		if err := journalEntries(ctx, l.pool, orders, db.shards, journal, &sc); err != nil {
			return sc, err
		}
	}
	sc.minOrderIDs = make([]int64, len(db.accounts))
	for start := 0; start < len(orders); start += queryBatch {
		batch := orders[start:min(start+queryBatch, len(orders))]
		rows, err := orderRows(ctx, db, batch, &sc)
		if err != nil {
			return sc, err
		}
		for _, r := range batch {
			check(a, r, db.shards, journal, rows, problem)
		}
	}

	// Entries that carry one of the run's request ids but are not one of
	// its orders' legs (a second application under another id), and pending
	// legs posted or voided more than once.
	if prefix := runPrefix(orders); prefix != "" {
		for _, l := range db.ledgers {
			extra, err := strayEntries(ctx, l.pool, prefix, expected)
			if err != nil {
				return sc, err
			}
			for _, s := range extra {
				a.Duplicated++
				problem("duplicated: journal entry %s carries request %s but is none of its order's legs", s[0], s[1])
			}
		}
	}
	return sc, nil
}

// scope is where the run left its marks in the books, which bounds the
// database-wide checks: the business dates of its journal entries (the
// journal is partitioned by them) and the first order row it stored in
// each accounts database (order ids grow in each).
type scope struct {
	first, last time.Time // business dates; zero when none of the run's entries is in the journal
	// minOrderIDs by accounts database; 0 where none of its orders is stored
	minOrderIDs []int64
}

func (sc *scope) addDate(d time.Time) {
	if sc.first.IsZero() || d.Before(sc.first) {
		sc.first = d
	}
	if d.After(sc.last) {
		sc.last = d
	}
}

func (sc *scope) addOrder(d int, id int64) {
	if sc.minOrderIDs[d] == 0 || id < sc.minOrderIDs[d] {
		sc.minOrderIDs[d] = id
	}
}

// anyOrders reports whether any of the run's orders is stored.
func (sc *scope) anyOrders() bool {
	for _, id := range sc.minOrderIDs {
		if id > 0 {
			return true
		}
	}
	return false
}

// ledgerDB is one database of the ledger's shard map.
type ledgerDB struct {
	dsn  string
	pool *pgxpool.Pool
}

// accountsDB is one database of the customers and their orders.
type accountsDB struct {
	dsn  string
	pool *pgxpool.Pool
	// shards are the shards whose customers it holds (every shard when it
	// is the only one).
	shards []int32
}

// databases are what an audit reads.
type databases struct {
	ledgers  []ledgerDB
	accounts []accountsDB
	// accountsMap places the customers' shards on accounts.
	accountsMap ledger.ShardMap
	shards      int
	pools       []*pgxpool.Pool // to close
}

// accountsOf returns the index in db.accounts of customer c's database.
func (db *databases) accountsOf(c int64) int {
	return db.accountsMap.DatabaseOf(accounts.ShardOf(accounts.CustomerID(c), db.shards))
}

// accountsDSNs are the databases of the customers and orders cfg names,
// given the ledger's (see Config.AccountsDSNs).
func accountsDSNs(cfg Config, ledgers []string) []string {
	switch {
	case len(cfg.AccountsDSNs) > 0:
		return cfg.AccountsDSNs
	case cfg.AccountsDSN == "" || (len(ledgers) > 1 && cfg.AccountsDSN == ledgers[0]):
		return ledgers
	}
	return []string{cfg.AccountsDSN}
}

func openBooks(ctx context.Context, cfg Config) (_ *databases, err error) {
	dsns := cfg.LedgerDSNs
	if len(dsns) == 0 {
		dsns = []string{cfg.LedgerDSN}
	}
	db := &databases{}
	defer func() {
		if err != nil {
			db.close()
		}
	}()
	// A database that is both a ledger's and the accounts' gets one pool.
	pools := map[string]*pgxpool.Pool{}
	open := func(dsn string) (*pgxpool.Pool, error) {
		if p := pools[dsn]; p != nil {
			return p, nil
		}
		p, err := pool(ctx, dsn)
		if err != nil {
			return nil, err
		}
		pools[dsn] = p
		db.pools = append(db.pools, p)
		return p, nil
	}
	for _, dsn := range dsns {
		p, err := open(dsn)
		if err != nil {
			return nil, err
		}
		db.ledgers = append(db.ledgers, ledgerDB{dsn: dsn, pool: p})
	}
	for _, dsn := range accountsDSNs(cfg, dsns) {
		p, err := open(dsn)
		if err != nil {
			return nil, err
		}
		db.accounts = append(db.accounts, accountsDB{dsn: dsn, pool: p})
	}
	db.shards = cfg.Shards
	if db.shards <= 0 {
		if db.shards, err = deriveShards(ctx, db.ledgers); err != nil {
			return nil, err
		}
	}
	if db.accountsMap, err = ledger.NewShardMap(db.shards, len(db.accounts)); err != nil {
		return nil, fmt.Errorf("%w: accounts databases: %w", ErrAudit, err)
	}
	for i := range db.accounts {
		for _, s := range db.accountsMap.ShardsOn(i) {
			db.accounts[i].shards = append(db.accounts[i].shards, int32(s))
		}
	}
	return db, nil
}

func (db *databases) close() {
	for _, p := range db.pools {
		p.Close()
	}
}

// deriveShards tells the shard count from the ledger databases: the
// highest shard they hold a lease row or an account of, plus one, checked
// against where a sample of customer accounts is (each must be on
// ledger.ShardOf of its id). A shard map whose last shards have neither
// fails the check, and the caller must say Config.Shards.
func deriveShards(ctx context.Context, ls []ledgerDB) (int, error) {
	top := -1
	type placed struct {
		id    ledger.AccountID
		shard int
	}
	var sample []placed
	for _, l := range ls {
		var m int32
		if err := l.pool.QueryRow(ctx, `SELECT coalesce(max(shard), -1) FROM
			(SELECT max(shard) AS shard FROM ledger_shards UNION ALL SELECT max(shard) FROM accounts) s`).Scan(&m); err != nil {
			return 0, fmt.Errorf("%w: shard count: %w", ErrAudit, err)
		}
		top = max(top, int(m))
		rows, err := l.pool.Query(ctx, `SELECT id, shard FROM accounts WHERE id < $1 ORDER BY id LIMIT 1000`, int64(customerAccountsEnd))
		if err != nil {
			return 0, fmt.Errorf("%w: shard count: %w", ErrAudit, err)
		}
		var p placed
		if _, err := pgx.ForEachRow(rows, []any{&p.id, &p.shard}, func() error {
			sample = append(sample, p)
			return nil
		}); err != nil {
			return 0, fmt.Errorf("%w: shard count: %w", ErrAudit, err)
		}
	}
	n := max(top+1, 1)
	if n > shardsMax {
		return 0, fmt.Errorf("%w: the ledger holds shard %d: pass the shard count", ErrAudit, top)
	}
	for _, p := range sample {
		if ledger.ShardOf(p.id, n) != p.shard {
			return 0, fmt.Errorf("%w: account %d is on shard %d, not on %d of %d: pass the shard count",
				ErrAudit, p.id, p.shard, ledger.ShardOf(p.id, n), n)
		}
	}
	return n, nil
}

func pool(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("%w: parse dsn: %w", ErrAudit, err)
	}
	pcfg.MaxConns = 4
	p, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("%w: connect: %w", ErrAudit, err)
	}
	return p, nil
}

// check compares one record with what the books hold for it.
func check(a *loadtest.Audit, r loadtest.Record, shards int, journal map[ledger.TransferID][]entry,
	rows map[string]order, problem func(string, ...any)) {
	a.Checked++
	acked := r.Outcome == loadtest.Accepted || r.Outcome == loadtest.Rejected
	if acked {
		a.Acknowledged++
	}
	chain := chainOf(r, shards)
	present, dup := 0, false
	var wrong []string
	for i, l := range chain {
		es := journal[LegID(r.Customer, r.Key, i)]
		switch {
		case len(es) == 0:
			continue
		case len(es) > 1:
			dup = true
		}
		present++
		e := es[0]
		// System and merchant accounts are compared as the account their
		// per-shard copy stands for: the ledger keeps a chain on one shard.
		debit, credit := accounts.Canonical(e.debit), accounts.Canonical(e.credit)
		debitOK := (l.debit != nil && debit == l.debit(r)) || (l.match != nil && l.match(e.debit, r))
		if !debitOK || credit != l.credit(r) || e.amount != r.Amount || e.asset != l.asset ||
			(e.flags&ledger.Pending != 0) != l.pending {
			wrong = append(wrong, fmt.Sprintf("leg %d: %d -> %d, %d of %s, flags %d", i, e.debit, e.credit, e.amount, e.asset, e.flags))
		}
	}
	row, hasRow := rows[rowKey(r.Customer, r.Key)]
	rowApplied := hasRow && row.applied()
	rowMatches := hasRow && row.kind == string(orderKinds[r.Op]) && row.amount == r.Amount && row.counterparty == r.Counterparty
	all, none := present == len(chain), present == 0
	what := fmt.Sprintf("%s %s of customer %d (%s, %s)", r.Op, r.Key, r.Customer, accounts.FormatAmount(r.Amount), r.Outcome)

	if dup {
		a.Duplicated++
		problem("duplicated: %s has a journal entry more than once", what)
		return
	}
	if postID, cashID, ok := followUps(r); ok {
		posts, paid := journal[postID], journal[cashID]
		if r.Op != loadtest.OpStandardRedeem {
			paid = nil
		}
		switch {
		case len(posts) > 1 || len(paid) > 1:
			a.Duplicated++
			problem("duplicated: %s was settled more than once (%d posts, %d payouts)", what, len(posts), len(paid))
			return
		case len(posts) == 0 && len(paid) == 0:
			// not settled (yet)
		case !all:
			a.Wrong++
			problem("wrong: %s was settled but its own legs are not all in the journal", what)
			return
		case r.Op == loadtest.OpStandardRedeem && len(posts) != len(paid):
			a.HalfApplied++
			problem("half-applied: %s: settlement posted the held shares %d times and paid the cash %d times", what, len(posts), len(paid))
			return
		case posts[0].amount != r.Amount || (len(paid) == 1 && (paid[0].amount != r.Amount || paid[0].credit != cash(r))):
			a.Wrong++
			problem("wrong: %s was settled with other amounts or accounts", what)
			return
		default:
			a.Settled++
		}
	}
	if r.Outcome == loadtest.Accepted {
		switch {
		case all && rowApplied && rowMatches && len(wrong) == 0:
			a.Applied++
		case all && hasRow && (!rowMatches || len(wrong) > 0):
			a.Wrong++
			problem("wrong: %s: order row %s %s to %d; %s", what, row.kind, accounts.FormatAmount(row.amount),
				row.counterparty, strings.Join(wrong, "; "))
		default:
			a.Lost++
			problem("lost: %s was acknowledged but the books hold %d of its %d legs and %s", what, present, len(chain), rowState(hasRow, row))
		}
		return
	}
	if len(wrong) > 0 || (hasRow && !rowMatches) {
		a.Wrong++
		problem("wrong: %s: %s; %s", what, rowState(hasRow, row), strings.Join(wrong, "; "))
		return
	}
	switch r.Outcome {
	case loadtest.Rejected:
		if !none {
			a.Wrong++
			problem("wrong: %s was refused but %d of its legs are in the journal", what, present)
		}
	case loadtest.Dropped:
		if !none || hasRow {
			a.Wrong++
			problem("wrong: %s was never sent but the books hold %d legs and %s", what, present, rowState(hasRow, row))
		}
	default: // shed or failed: not acknowledged, so all or nothing
		switch {
		case all && r.Outcome == loadtest.Shed && r.Attempts == 1:
			// A 429 on the only attempt means the gateway refused to take
			// it on; it must not have applied. (After a timed-out attempt
			// the retry's 429 says nothing about the first one.)
			a.Wrong++
			problem("wrong: %s was shed on its only attempt but applied", what)
		case all && (rowApplied || !hasRow):
			a.UnackedApplied++
		case none && (!hasRow || row.status == string(accounts.OrderRejected)):
		default:
			a.HalfApplied++
			problem("half-applied: %s: %d of %d legs and %s", what, present, len(chain), rowState(hasRow, row))
		}
	}
}

func rowState(has bool, o order) string {
	if !has {
		return "no order row"
	}
	return "order row " + o.status
}

func rowKey(c int64, key string) string { return strconv.FormatInt(c, 10) + "/" + key }

// journalEntries adds to out the journal rows of every leg of rs that
// database p holds, in one pass: the ids go into a temporary table and the
// journal is joined with it (the journal is indexed by time, not by id, so
// one hash join beats thousands of lookups). The business dates of what it
// finds widen sc.
func journalEntries(ctx context.Context, p *pgxpool.Pool, rs []loadtest.Record, shards int,
	out map[ledger.TransferID][]entry, sc *scope) error {
	var ids [][]any
	for _, r := range rs {
		for _, id := range allIDs(r, shards) {
			ids = append(ids, []any{id[:]})
		}
	}
	tx, err := p.Begin(ctx)
	if err != nil {
		return fmt.Errorf("%w: read journal: %w", ErrAudit, err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `CREATE TEMPORARY TABLE audit_legs (id uuid PRIMARY KEY) ON COMMIT DROP`); err != nil {
		return fmt.Errorf("%w: read journal: %w", ErrAudit, err)
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"audit_legs"}, []string{"id"}, pgx.CopyFromRows(ids)); err != nil {
		return fmt.Errorf("%w: read journal: %w", ErrAudit, err)
	}
	rows, err := tx.Query(ctx, `SELECT t.id::text, t.debit_account_id, t.credit_account_id, t.amount, t.asset, t.flags,
			t.business_date
		FROM transfers t JOIN audit_legs USING (id)`)
	if err != nil {
		return fmt.Errorf("%w: read journal: %w", ErrAudit, err)
	}
	var (
		id    string
		e     entry
		flags int32
		asset int16
		date  time.Time
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &e.debit, &e.credit, &e.amount, &asset, &flags, &date}, func() error {
		tid, err := ledger.ParseTransferID(id)
		if err != nil {
			return err
		}
		e.asset, e.flags = ledger.Asset(asset), ledger.TransferFlags(flags)
		out[tid] = append(out[tid], e)
		sc.addDate(date)
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: read journal: %w", ErrAudit, err)
	}
	return tx.Commit(ctx)
}

// orderRows reads the order rows of rs, each from its customer's accounts
// database; the lowest row id it finds in each narrows sc.
func orderRows(ctx context.Context, db *databases, rs []loadtest.Record, sc *scope) (map[string]order, error) {
	cs := make([][]int64, len(db.accounts))
	keys := make([][]string, len(db.accounts))
	for _, r := range rs {
		d := db.accountsOf(r.Customer)
		cs[d], keys[d] = append(cs[d], r.Customer), append(keys[d], r.Key)
	}
	out := map[string]order{}
	for d, adb := range db.accounts {
		if len(cs[d]) == 0 {
			continue
		}
		rows, err := adb.pool.Query(ctx, `SELECT o.id, o.customer_id, o.request_id, o.kind, o.amount, o.counterparty, o.status
			FROM unnest($1::bigint[], $2::text[]) AS k(customer_id, request_id)
			JOIN orders o ON o.customer_id = k.customer_id AND o.request_id = k.request_id`, cs[d], keys[d])
		if err != nil {
			return nil, fmt.Errorf("%w: read orders: %w", ErrAudit, err)
		}
		var (
			rowID, c int64
			key      string
			o        order
		)
		_, err = pgx.ForEachRow(rows, []any{&rowID, &c, &key, &o.kind, &o.amount, &o.counterparty, &o.status}, func() error {
			out[rowKey(c, key)] = o
			sc.addOrder(d, rowID)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("%w: read orders: %w", ErrAudit, err)
		}
	}
	return out, nil
}

// runPrefix is the part every key of the run shares up to its last "-"
// (the generator's keys are RunID-seq), or "" when they share none.
func runPrefix(rs []loadtest.Record) string {
	if len(rs) == 0 {
		return ""
	}
	i := strings.LastIndexByte(rs[0].Key, '-')
	if i <= 0 {
		return ""
	}
	p := rs[0].Key[:i+1]
	for _, r := range rs {
		if !strings.HasPrefix(r.Key, p) {
			return ""
		}
	}
	return p
}

// strayEntries returns [id, request] of journal entries whose user data is
// one of the run's request ids but which are neither an expected leg nor
// settlement's post or void of one, and of pending legs resolved twice.
func strayEntries(ctx context.Context, p *pgxpool.Pool, prefix string, expected map[ledger.TransferID]bool) ([][2]string, error) {
	like := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(prefix) + "%"
	rows, err := p.Query(ctx, `SELECT id::text, user_data FROM transfers
		WHERE user_data LIKE $1 AND flags & 12 = 0`, like)
	if err != nil {
		return nil, fmt.Errorf("%w: scan journal: %w", ErrAudit, err)
	}
	var out [][2]string
	var id, data string
	_, err = pgx.ForEachRow(rows, []any{&id, &data}, func() error {
		tid, err := ledger.ParseTransferID(id)
		if err != nil {
			return err
		}
		if !expected[tid] {
			out = append(out, [2]string{id, data})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: scan journal: %w", ErrAudit, err)
	}
	// A pending leg is posted or voided at most once.
	var pend []string
	for id := range expected {
		pend = append(pend, id.String())
	}
	rows, err = p.Query(ctx, `SELECT pending_id::text, count(*) FROM transfers
		WHERE pending_id = ANY($1::uuid[]) AND flags & 12 <> 0 GROUP BY 1 HAVING count(*) > 1`, pend)
	if err != nil {
		return nil, fmt.Errorf("%w: scan resolutions: %w", ErrAudit, err)
	}
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&id, &n}, func() error {
		out = append(out, [2]string{id, fmt.Sprintf("(pending leg resolved %d times)", n)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: scan resolutions: %w", ErrAudit, err)
	}
	return out, nil
}

// verify runs the ledger's own Verify on every shard the database holds.
func verify(ctx context.Context, dsn string, p *pgxpool.Pool, a *loadtest.Audit, problem func(string, ...any)) error {
	rows, err := p.Query(ctx, `SELECT shard FROM ledger_shards UNION SELECT DISTINCT shard FROM accounts ORDER BY 1`)
	if err != nil {
		return fmt.Errorf("%w: list shards: %w", ErrAudit, err)
	}
	shards, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return fmt.Errorf("%w: list shards: %w", ErrAudit, err)
	}
	store, err := ledgerpg.Open(ctx, ledgerpg.Config{DSN: dsn, ConnsMax: 2})
	if err != nil {
		return fmt.Errorf("%w: open ledger store: %w", ErrAudit, err)
	}
	defer store.Close()
	a.LedgerVerified = true
	for _, s := range shards {
		rep, err := store.Verify(ctx, int(s))
		if err != nil {
			return fmt.Errorf("%w: verify shard %d: %w", ErrAudit, s, err)
		}
		a.Shards = append(a.Shards, int(s))
		if !rep.OK() {
			a.LedgerVerified = false
			problem("ledger verify, shard %d: %d balance differences %s", s, len(rep.Differences), strings.Join(rep.Problems, "; "))
		}
	}
	return nil
}
