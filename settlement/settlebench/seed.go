package settlebench

import (
	"context"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fundplatform/fund/accounts"
	accountspg "github.com/fundplatform/fund/accounts/postgres"
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

// Seed writes the day: the customers and their orders through
// accounts/postgres, the accounts, opening entries and pending transfers
// through ledger/postgres (each package writes its own tables). The
// database must be migrated (settlement/postgres Open) and hold no
// customers yet.
func Seed(ctx context.Context, pool *pgxpool.Pool, ls *ledgerpg.Store, cfg SeedConfig) (Seeded, error) {
	start := time.Now()
	p := newSeedPlan(cfg)
	out := Seeded{Customers: cfg.Customers}
	for _, o := range p.orders {
		if o.Kind == accounts.KindSubscribe {
			out.Subscriptions++
		} else {
			out.Redemptions++
		}
	}
	if err := accountspg.SeedCustomers(ctx, pool, p.n, p.created); err != nil {
		return out, err
	}
	if err := accountspg.SeedOrders(ctx, pool, slices.Values(p.orders)); err != nil {
		return out, err
	}
	if err := ls.Seed(ctx, ledgerpg.SeedConfig{Shards: p.shards, Accounts: p.ledgerAccounts(), Entries: p.entries(),
		AsOf: p.asOf()}); err != nil {
		return out, fmt.Errorf("seed ledger: %w", err)
	}
	if _, err := pool.Exec(ctx, `ANALYZE`); err != nil {
		return out, fmt.Errorf("seed analyze: %w", err)
	}
	out.Took = time.Since(start)
	return out, nil
}

// seedPlan is the day Seed writes, derived from its config.
type seedPlan struct {
	n      int64
	shards int
	salt   int64
	d0     time.Time // the day before the date: shares bought, orders placed
	// t0: the day before, 10:00 CST; customer g's opening entry is at
	// t0 + g µs, the k-th order's pending entry after all of them.
	t0      int64
	created time.Time
	orders  []accounts.Order
}

func newSeedPlan(cfg SeedConfig) *seedPlan {
	d0 := cfg.Date.AddDate(0, 0, -1)
	t0 := time.Date(d0.Year(), d0.Month(), d0.Day(), 10, 0, 0, 0, ledger.BusinessZone()).UnixNano()
	p := &seedPlan{n: cfg.Customers, shards: max(cfg.Shards, 1), salt: cfg.Salt, d0: d0, t0: t0,
		created: time.Unix(0, t0).UTC()}
	p.planOrders(cfg)
	return p
}

// shares is customer g's opening shares: between 0.01 and 10,000.00,
// spread by a hash of g and the salt.
func (p *seedPlan) shares(g int64) int64 {
	x := uint64(g^p.salt) + 0x9e3779b97f4a7c15 // splitmix64
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return 1 + int64((x^x>>31)%1_000_000)
}

// planOrders lists the pending orders: subscriptions and standard
// redemptions placed the day before and due on the date, then the
// redemptions of all remaining shares placed on the date.
func (p *seedPlan) planOrders(cfg SeedConfig) {
	order := func(g int64, req string, kind accounts.OrderKind, amount int64, trade time.Time, created time.Time) {
		p.orders = append(p.orders, accounts.Order{CustomerID: accounts.CustomerID(g), RequestID: req, Kind: kind,
			Amount: amount, TradeDate: trade, ConfirmDate: trade.AddDate(0, 0, 1), Status: accounts.OrderPending,
			CreatedAt: created})
	}
	for g := cfg.SubscribeEvery; cfg.SubscribeEvery > 0 && g <= p.n; g += cfg.SubscribeEvery {
		order(g, "seed-sub", accounts.KindSubscribe, 1000+g%100000, p.d0, p.created)
	}
	for g := cfg.RedeemEvery; cfg.RedeemEvery > 0 && g <= p.n; g += cfg.RedeemEvery {
		order(g, "seed-red", accounts.KindStandardRedeem, max(p.shares(g)/2, 1), p.d0, p.created)
	}
	late := time.Date(cfg.Date.Year(), cfg.Date.Month(), cfg.Date.Day(), 10, 0, 0, 0, ledger.BusinessZone()).UTC()
	for g := int64(2); cfg.LateRedeemEvery > 0 && g <= p.n; g += cfg.LateRedeemEvery {
		a := p.shares(g)
		if cfg.RedeemEvery > 0 && g%cfg.RedeemEvery == 0 {
			a -= max(a/2, 1) // what its earlier redemption left
		}
		if a > 0 {
			order(g, "seed-late", accounts.KindStandardRedeem, a, cfg.Date, late)
		}
	}
}

// asOf is the shards' last timestamp: after every entry.
func (p *seedPlan) asOf() int64 {
	return max(p.t0+3*p.n*1000, p.t0+(p.n+1+int64(len(p.orders)))*1000) + 1000
}

func (p *seedPlan) omnibusShares(id ledger.AccountID) ledger.AccountID {
	return accounts.SystemAccountOn(accounts.FundOmnibusShares, ledger.ShardOf(id, p.shards), p.shards)
}

// ledgerAccounts yields the fund's accounts on every shard, every
// customer's shares account and the redeeming customers' cash accounts.
func (p *seedPlan) ledgerAccounts() iter.Seq[ledger.Account] {
	return func(yield func(ledger.Account) bool) {
		for s := range p.shards {
			for canonical, asset := range settlement.SystemAccounts() {
				if !yield(ledger.Account{ID: accounts.SystemAccountOn(canonical, s, p.shards), Asset: asset,
					Code: accounts.CodeSystem, Timestamp: p.t0}) {
					return
				}
			}
		}
		for g := int64(1); g <= p.n; g++ {
			if !yield(ledger.Account{ID: accounts.SharesAccount(accounts.CustomerID(g)), Asset: ledger.AssetFundShares,
				Code: accounts.CodeCustomerShares, Flags: ledger.DebitsMustNotExceedCredits, Timestamp: p.t0}) {
				return
			}
		}
		seen := map[accounts.CustomerID]bool{}
		for _, o := range p.orders {
			if o.Kind != accounts.KindStandardRedeem || seen[o.CustomerID] {
				continue
			}
			seen[o.CustomerID] = true
			if !yield(ledger.Account{ID: accounts.CashAccount(o.CustomerID), Asset: ledger.AssetCNY,
				Code: accounts.CodeCustomerCash, Flags: ledger.DebitsMustNotExceedCredits, Timestamp: p.t0}) {
				return
			}
		}
	}
}

// entries yields each customer's opening shares, bought from the fund's
// omnibus shares account, then the pending transfers of the orders as the
// accounts service writes them: subscription leg 1 (omnibus -> holder),
// redemption leg 0 (holder -> omnibus).
func (p *seedPlan) entries() iter.Seq[ledger.Transfer] {
	return func(yield func(ledger.Transfer) bool) {
		for g := int64(1); g <= p.n; g++ {
			acct := accounts.SharesAccount(accounts.CustomerID(g))
			if !yield(ledger.Transfer{ID: ledger.DeriveTransferID("seed/open", strconv.FormatInt(g, 10)),
				DebitAccountID: p.omnibusShares(acct), CreditAccountID: acct, Amount: p.shares(g),
				Asset: ledger.AssetFundShares, Kind: accounts.TransferSubscribeShares, UserData: "seed-open",
				Timestamp: p.t0 + g*1000}) {
				return
			}
		}
		for k, o := range p.orders {
			acct := accounts.SharesAccount(o.CustomerID)
			t := ledger.Transfer{DebitAccountID: acct, CreditAccountID: p.omnibusShares(acct), Amount: o.Amount,
				Asset: ledger.AssetFundShares, Kind: accounts.TransferStandardRedeem, Flags: ledger.Pending,
				UserData: o.RequestID, Timestamp: p.t0 + (p.n+1)*1000 + int64(k+1)*1000}
			leg := 0
			if o.Kind == accounts.KindSubscribe {
				leg = 1
				t.DebitAccountID, t.CreditAccountID, t.Kind = t.CreditAccountID, t.DebitAccountID, accounts.TransferSubscribeShares
			}
			t.ID = settlement.OrderTransferID(o.CustomerID, o.RequestID, leg)
			if !yield(t) {
				return
			}
		}
	}
}
