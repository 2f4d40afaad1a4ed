package postgres_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fundplatform/fund/accounts"
	accountspg "github.com/fundplatform/fund/accounts/postgres"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/internal/testseed"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/ledgertest"
	ledgerpg "github.com/fundplatform/fund/ledger/postgres"
	"github.com/fundplatform/fund/settlement"
	settlepg "github.com/fundplatform/fund/settlement/postgres"
	"github.com/fundplatform/fund/settlement/schema"
)

// TestSameNightsOnOneAndEightShards places the same randomised orders (seed
// logged; FUND_TEST_SEED replays it) through the accounts service on a
// ledger of 1 shard and on one of 8 shards, where every customer's accounts
// and orders live on the customer's own shard (accounts.ShardOf) with that
// shard's copies of the fund's accounts, and settles the same nights on
// both: a week with a weekend and a holiday, subscriptions confirming,
// standard redemptions paid, fast redemptions, payments to merchants,
// same-shard transfers, losing days (some absorbed by the fund). Every
// order's outcome, every night's summary, the income per customer, the
// fund's yields, the custodian file (byte for byte) and the holdings views
// must be the same; so must the fund's accounts once summed over shards
// (grouped by accounts.Canonical).
//
// Both ledgers live in one database each, so 8 shards here means 8 shards
// on 1 database (TestTwoDatabasesSettleAsOne spreads shards over two).
// The nights' inputs are always possible ones (a fund total in fen only
// when someone holds eligible shares), so every night must settle, and
// the two ledgers are judged only after both ran it.
func TestSameNightsOnOneAndEightShards(t *testing.T) {
	seed := testseed.Seed(t)
	rng := rand.New(rand.NewPCG(seed, seed^0x5851F42D4C957F2D))
	// Wed 2026-11-18 is a holiday: orders placed on Tue after 15:00 and on
	// Wed count for Thu.
	cal := accounts.NewCalendar([]accounts.Holiday{{Date: day("2026-11-18"), Name: "test holiday"}})
	clk := &clock{}
	one, eight := newShardedWorld(t, 1, clk, cal), newShardedWorld(t, 8, clk, cal)
	worlds := []*shardedWorld{one, eight}
	ctx := context.Background()

	merchants := []accounts.MerchantID{7, 4242}
	for _, w := range worlds {
		for _, m := range merchants {
			if err := w.svc.RegisterMerchant(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	var customers []accounts.CustomerID
	open := func(name string) {
		var ids []accounts.CustomerID
		for _, w := range worlds {
			c, err := w.svc.OpenCustomer(ctx, "open-"+name, name)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, c.ID)
		}
		if ids[0] != ids[1] {
			t.Fatalf("customer %s is %d on one shard, %d on eight", name, ids[0], ids[1])
		}
		customers = append(customers, ids[0])
	}

	first := day("2026-11-16") // a Monday
	const nights = 9           // Mon 16th to Tue 24th: the 7-day yield shows from the 22nd
	orders := 0
	var seen settlement.Summary // what the nights exercised, summed
	for n := 0; n < nights; n++ {
		date := first.AddDate(0, 0, n)
		d := date.Format(time.DateOnly)
		// New customers arrive on the first days, topping up and
		// subscribing at once (before the cut-off: Monday's confirm on
		// Tuesday, so every night from the 17th has holders). Each order
		// has its own request id, and both must go through: the
		// subscription is at most the cash just topped up.
		if n < 3 {
			clk.Set(cst(d + " 09:00:00"))
			for i := 0; i < 12+rng.IntN(8); i++ {
				name := fmt.Sprintf("c%d-%d", n, i)
				open(name)
				c, cash := customers[len(customers)-1], 1000_00+rng.Int64N(50_000_00)
				sub := 1 + rng.Int64N(cash)
				placeOnBoth(t, worlds, &shardOp{name: "open " + name, place: func(w *shardedWorld) (accounts.Order, error) {
					if o, err := w.svc.TopUp(ctx, c, "first-top-up", cash); err != nil || o.Status != accounts.OrderCompleted {
						t.Fatalf("%d shards: open %s: top-up %s: %v", w.shards, name, o.Status, err)
					}
					o, err := w.svc.Subscribe(ctx, c, "first-subscribe", sub)
					if err != nil || o.Status != accounts.OrderPending {
						t.Fatalf("%d shards: open %s: subscribe %s: %v", w.shards, name, o.Status, err)
					}
					return o, err
				}})
			}
		}
		// Orders before and after the 15:00 cut-off.
		for _, hour := range []string{" 10:00:00", " 16:30:00"} {
			clk.Set(cst(d + hour))
			for _, c := range customers {
				for k := rng.IntN(3); k > 0; k-- {
					op := randomOp(rng, c, customers, merchants, fmt.Sprintf("%s%s-%d", d[5:], hour[1:3], k), one)
					if op == nil {
						continue
					}
					orders++
					placeOnBoth(t, worlds, op)
				}
			}
		}
		// The night: mostly income per 10,000 shares (a losing one now
		// and then), sometimes the fund's total in fen. The night before
		// last loses 25.0000 per 10,000 shares, after a few holders
		// redeemed all they had on the day: they still earn (lose) on it
		// but can give nothing up, so the fund absorbs their share.
		if n == nights-2 {
			clk.Set(cst(d + " 11:00:00"))
			redeemed := 0
			for _, c := range customers {
				h, err := one.svc.Holdings(ctx, c)
				if err != nil {
					t.Fatal(err)
				}
				if h.Shares > 0 && redeemed < 4 {
					redeemed++
					placeOnBoth(t, worlds, &shardOp{name: fmt.Sprintf("redeem all %d", c), place: func(w *shardedWorld) (accounts.Order, error) {
						return w.svc.StandardRedeem(ctx, c, "all", h.Shares)
					}})
				}
			}
		}
		clk.Set(cst(d + " 23:00:00"))
		// The fund's total in fen needs someone to pay it to (settlement
		// refuses it otherwise, settlement.ErrNoShares): it is drawn only
		// on a night the test knows has eligible shares.
		var in settlement.Input
		switch r := rng.IntN(10); {
		case n == nights-2:
			in = settlement.Input{Date: date, PerTenK: true, IncomePer10k: -25_0000}
		case n == 0 || r < 6:
			in = settlement.Input{Date: date, PerTenK: true, IncomePer10k: int64(rng.IntN(32000)) - 4000}
		case r < 8 && one.someoneEarns(customers, date):
			in = settlement.Input{Date: date, IncomeTotal: int64(rng.IntN(300)) - 40}
		default:
			in = settlement.Input{Date: date, PerTenK: true, IncomePer10k: -int64(5000 + rng.IntN(50_000))}
		}
		// Both ledgers run the night before either verdict is judged, so
		// that a refusal on one and not the other shows as such.
		s1, err1 := one.settle(in)
		s8, err8 := eight.settle(in)
		if err1 != nil || err8 != nil {
			t.Fatalf("%s: settle %s:\n1 shard:  %v\n8 shards: %v", d, in, err1, err8)
		}
		t.Logf("%s %s: %d holders, %s shares, income %s (%d entries, %s deducted, %s absorbed), %d subscriptions, %d redemptions, 7-day %q",
			d, in.IncomeText(), s1.Holders, settlement.FormatFen(s1.TotalShares), settlement.FormatFen(s1.FundIncome),
			s1.IncomeEntries, settlement.FormatFen(s1.IncomeDeducted), settlement.FormatFen(s1.Absorbed),
			s1.Subscriptions, s1.Redemptions, s1.SevenDayYield)
		seen.Subscriptions += s1.Subscriptions
		seen.Redemptions += s1.Redemptions
		seen.IncomeDeducted += s1.IncomeDeducted
		seen.Absorbed += s1.Absorbed
		if a, b := layoutFree(s1), layoutFree(s8); a != b {
			t.Fatalf("%s summaries differ:\n1 shard:  %+v\n8 shards: %+v", d, a, b)
		}
		if f1, f8 := one.file(date), eight.file(date); f1 != f8 {
			t.Fatalf("%s custodian files differ:\n1 shard:\n%s\n8 shards:\n%s", d, f1, f8)
		}
		for _, q := range []string{
			`SELECT coalesce(string_agg(customer_id || ':' || amount, ',' ORDER BY customer_id), '') FROM customer_income WHERE date = $1`,
			`SELECT coalesce(string_agg(date || ':' || income_per_10k || ':' || coalesce(seven_day_yield::text, '-'), ',' ORDER BY date), '')
				FROM fund_yields WHERE date <= $1`,
		} {
			if a, b := one.text(q, date), eight.text(q, date); a != b {
				t.Fatalf("%s differs:\n1 shard:  %s\n8 shards: %s", q, a, b)
			}
		}
	}

	// The next morning every customer sees the same holdings (yesterday's
	// and cumulative income, the 7-day yield, what is held and awaited).
	clk.Set(cst("2026-11-25 09:00:00"))
	for _, c := range customers {
		h1, err1 := one.svc.Holdings(ctx, c)
		h8, err8 := eight.svc.Holdings(ctx, c)
		if err1 != nil || err8 != nil || !reflect.DeepEqual(h1, h8) {
			t.Fatalf("customer %d holdings:\n1 shard:  %+v %v\n8 shards: %+v %v", c, h1, err1, h8, err8)
		}
	}
	var active [8]int
	for _, c := range customers {
		active[accounts.ShardOf(c, 8)]++
	}
	t.Logf("%d customers (per shard of 8: %v), %d orders placed on each ledger", len(customers), active, orders)
	if seen.Subscriptions == 0 || seen.Redemptions == 0 || seen.IncomeDeducted == 0 || seen.Absorbed == 0 {
		t.Errorf("the nights should confirm subscriptions, pay redemptions, deduct and absorb: %+v", seen)
	}
	if n := one.count(`SELECT count(*) FROM orders WHERE kind = $1 AND status = 'completed'`, string(accounts.KindFastRedeem)); n == 0 {
		t.Error("no fast redemption went through")
	}

	// The fund's position: each system and merchant account summed over
	// the 8 shards is the one shard's account.
	for _, w := range worlds {
		w.stopLedger()
		w.verify()
	}
	if a, b := one.fundFigures(), eight.fundFigures(); !reflect.DeepEqual(a, b) {
		t.Fatalf("fund accounts summed over shards differ:\n1 shard:  %v\n8 shards: %v", a, b)
	}
	if n := eight.count(`SELECT count(DISTINCT shard) FROM accounts WHERE code = $1`, int32(accounts.CodeCustomerShares)); n != 8 {
		t.Errorf("customers' shares on %d shards of 8", n)
	}
}

// layoutFree is a summary without what differs by layout or run: the shard
// count, the file's directory and the timings.
func layoutFree(s settlement.Summary) settlement.Summary {
	s.Shards, s.File, s.Took, s.TookIncomeBooking = 0, "", 0, 0
	return s
}

// shardedWorld is the platform over one database holding shards ledger
// shards: a sequencer per shard behind a client that sends each call to
// its accounts' shard, the accounts service booking every order on the
// customer's shard (accounts.Config.Shards), and the settlement runner
// over all shards.
type shardedWorld struct {
	t      *testing.T
	shards int
	clock  *clock
	store  *settlepg.Store
	acc    *accountspg.Store
	// routes sends each call to the shard its accounts live on, to the
	// sequencer in seqs now (startLedger replaces them, under mu).
	routes *ledgertest.Routes
	mu     sync.Mutex
	seqs   []*ledger.Sequencer
	stops  []func() error
	svc    *accounts.Service
	runner *settlement.Runner
	dir    string
}

func newShardedWorld(t *testing.T, shards int, clk *clock, cal *accounts.Calendar) *shardedWorld {
	t.Helper()
	ctx := context.Background()
	roles := pgtest.NewDatabaseWithRoles(t)
	if err := schema.Migrate(ctx, schema.Config{DSNs: []string{roles.Owner}, ServiceRole: roles.ServiceRole}); err != nil {
		t.Fatal(err)
	}
	w := &shardedWorld{t: t, shards: shards, clock: clk, dir: t.TempDir(),
		seqs: make([]*ledger.Sequencer, shards)}
	w.routes = ledgertest.NewRoutes(shards, func(s int) ledger.Client { return w.on(s) })
	var err error
	if w.store, err = settlepg.Open(ctx, settlepg.Config{DSN: roles.Service}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.store.Close)
	if w.acc, err = accountspg.Open(ctx, accountspg.Config{DSN: roles.Service, ConnsMax: 4}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.acc.Close)
	w.startLedger()
	t.Cleanup(w.stopLedger)
	// The service keeps its client across settlement nights: the routes
	// are pointed at each night's new sequencers.
	cfg := accounts.Config{Now: clk.Now, Calendar: cal, Shards: shards,
		ShardClient: func(s int) ledger.Client { return w.on(s) }}
	if w.svc, err = accounts.NewService(ctx, cfg, w.acc, w.routes, nil); err != nil {
		t.Fatal(err)
	}
	w.runner = settlement.NewRunner(settlement.Config{Shards: shards, FileDir: w.dir, Now: clk.Now,
		Owner: fmt.Sprintf("settle-%d-shards", shards)}, w.store, w.svc, nil, nil)
	return w
}

// startLedger starts every shard's sequencer at the shard's current epoch.
func (w *shardedWorld) startLedger() {
	w.t.Helper()
	ctx := context.Background()
	w.mu.Lock()
	defer w.mu.Unlock()
	for s := range w.shards {
		var epoch int64
		if err := w.store.Pool().QueryRow(ctx, `SELECT coalesce(max(epoch), 0) FROM ledger_shards WHERE shard = $1`, s).
			Scan(&epoch); err != nil {
			w.t.Fatal(err)
		}
		seq := ledger.NewSequencer(ledger.SequencerConfig{Shard: s, Shards: w.shards, Epoch: epoch}, w.store.Ledger(), nil)
		stop, err := seq.Start(ctx, readyTimeout)
		if err != nil {
			w.t.Fatal(err)
		}
		w.seqs[s] = seq
		w.stops = append(w.stops, stop)
	}
}

func (w *shardedWorld) stopLedger() {
	for _, stop := range w.stops {
		if err := stop(); err != nil {
			w.t.Errorf("sequencer: %v", err)
		}
	}
	w.stops = nil
}

// settle runs a night with the writers stopped, as operations do.
func (w *shardedWorld) settle(in settlement.Input) (settlement.Summary, error) {
	w.t.Helper()
	w.stopLedger()
	defer w.startLedger()
	return w.runner.Run(context.Background(), in, nil)
}

// verify checks every shard's journal against its balances, and that
// every account is stored under its own shard (the ledger store is told
// the shard count for that); the sequencers must be stopped.
func (w *shardedWorld) verify() {
	w.t.Helper()
	ctx := context.Background()
	ls, err := ledgerpg.Open(ctx, ledgerpg.Config{DSN: w.store.Pool().Config().ConnString(), ConnsMax: 2, Shards: w.shards})
	if err != nil {
		w.t.Fatal(err)
	}
	defer ls.Close()
	for s := range w.shards {
		rep, err := ls.Verify(ctx, s)
		if err != nil {
			w.t.Fatal(err)
		}
		if !rep.OK() {
			w.t.Fatalf("%d shards: shard %d: %d differences %+v, problems %q", w.shards, s, len(rep.Differences),
				rep.Differences, rep.Problems)
		}
	}
}

// someoneEarns reports whether some customer surely holds eligible shares
// at the end of date (the clock on that evening): confirmed shares no
// redemption holds, or a subscription confirming by date. It may miss
// shares redeemed on the day (they still earn on it), never the reverse.
func (w *shardedWorld) someoneEarns(customers []accounts.CustomerID, date time.Time) bool {
	w.t.Helper()
	if w.count(`SELECT count(*) FROM orders WHERE kind = $1 AND status = $2 AND confirm_date <= $3`,
		string(accounts.KindSubscribe), string(accounts.OrderPending), date) > 0 {
		return true
	}
	for _, c := range customers {
		h, err := w.svc.Holdings(context.Background(), c)
		if err != nil {
			w.t.Fatal(err)
		}
		if h.Shares > 0 {
			return true
		}
	}
	return false
}

func (w *shardedWorld) file(date time.Time) string {
	w.t.Helper()
	b, err := os.ReadFile(filepath.Join(w.dir, "settlement-"+date.Format("20060102")+".csv"))
	if err != nil {
		w.t.Fatal(err)
	}
	return string(b)
}

func (w *shardedWorld) text(sql string, args ...any) string {
	w.t.Helper()
	var v string
	if err := w.store.Pool().QueryRow(context.Background(), sql, args...).Scan(&v); err != nil {
		w.t.Fatalf("%s: %v", sql, err)
	}
	return v
}

func (w *shardedWorld) count(sql string, args ...any) int64 {
	w.t.Helper()
	var n int64
	if err := w.store.Pool().QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		w.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// fundFigures sums the posted balances (credits less debits) of the fund's
// system accounts and the merchants' accounts over every shard, by the
// account each copy stands for (accounts.Canonical). The ledger must be
// stopped (its balances flushed).
func (w *shardedWorld) fundFigures() map[ledger.AccountID]int64 {
	w.t.Helper()
	rows, err := w.store.Pool().Query(context.Background(), `SELECT id, credits_posted - debits_posted FROM accounts
		WHERE code IN ($1, $2)`, int32(accounts.CodeSystem), int32(accounts.CodeMerchant))
	if err != nil {
		w.t.Fatal(err)
	}
	defer rows.Close()
	out := map[ledger.AccountID]int64{}
	copies := map[ledger.AccountID]int{}
	for rows.Next() {
		var id ledger.AccountID
		var net int64
		if err := rows.Scan(&id, &net); err != nil {
			w.t.Fatal(err)
		}
		out[accounts.Canonical(id)] += net
		copies[accounts.Canonical(id)]++
	}
	if err := rows.Err(); err != nil {
		w.t.Fatal(err)
	}
	for c, n := range copies {
		if n != w.shards {
			w.t.Errorf("%d shards: account %d has %d copies", w.shards, c, n)
		}
	}
	return out
}

// on returns the sequencer serving shard now.
func (w *shardedWorld) on(shard int) *ledger.Sequencer {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seqs[shard]
}

// shardOp is one customer order, placed the same way on every world.
type shardOp struct {
	name  string
	place func(w *shardedWorld) (accounts.Order, error)
}

// randomOp draws an order of customer c. Amounts that need a balance are
// drawn from c's holdings on ref (both worlds hold the same, or the test
// has failed already), so that most orders go through and some are
// refused. Transfers go only to a customer on c's shard among 8: a
// transfer between shards is a saga, which the accounts service does not
// book yet. nil = nothing to do.
func randomOp(rng *rand.Rand, c accounts.CustomerID, all []accounts.CustomerID, merchants []accounts.MerchantID,
	req string, ref *shardedWorld) *shardOp {
	ctx := context.Background()
	h, err := ref.svc.Holdings(ctx, c)
	if err != nil {
		ref.t.Fatal(err)
	}
	part := func(of int64) int64 { // 1..of, now and then more than of
		if of <= 0 || rng.IntN(12) == 0 {
			return 1 + int64(rng.IntN(50_000_00))
		}
		return 1 + rng.Int64N(of)
	}
	op := func(kind string, f func(s *accounts.Service) (accounts.Order, error)) *shardOp {
		return &shardOp{name: fmt.Sprintf("%s %d %s", kind, c, req),
			place: func(w *shardedWorld) (accounts.Order, error) { return f(w.svc) }}
	}
	switch r := rng.IntN(20); {
	case r < 5:
		a := 100_00 + rng.Int64N(20_000_00)
		return op("top-up", func(s *accounts.Service) (accounts.Order, error) { return s.TopUp(ctx, c, "t"+req, a) })
	case r < 10:
		a := part(h.AvailableCash)
		return op("subscribe", func(s *accounts.Service) (accounts.Order, error) { return s.Subscribe(ctx, c, "s"+req, a) })
	case r < 12:
		a := part(h.Shares / 2)
		return op("standard redeem", func(s *accounts.Service) (accounts.Order, error) {
			return s.StandardRedeem(ctx, c, "r"+req, a)
		})
	case r == 12 && h.Shares > 0:
		// Everything left: on a losing day the fund absorbs its share.
		a := h.Shares
		return op("redeem all", func(s *accounts.Service) (accounts.Order, error) { return s.StandardRedeem(ctx, c, "R"+req, a) })
	case r < 15:
		a := part(min(h.Shares, 12_000_00))
		return op("fast redeem", func(s *accounts.Service) (accounts.Order, error) { return s.FastRedeem(ctx, c, "f"+req, a) })
	case r < 17:
		m, a := merchants[rng.IntN(len(merchants))], part(h.Shares/4)
		return op("pay", func(s *accounts.Service) (accounts.Order, error) { return s.Pay(ctx, c, "p"+req, m, a) })
	case r < 18:
		a := part(h.AvailableCash / 3)
		return op("withdraw", func(s *accounts.Service) (accounts.Order, error) { return s.Withdraw(ctx, c, "w"+req, a) })
	default:
		var peers []accounts.CustomerID
		for _, p := range all {
			if p != c && accounts.ShardOf(p, 8) == accounts.ShardOf(c, 8) {
				peers = append(peers, p)
			}
		}
		if len(peers) == 0 {
			return nil
		}
		to, a := peers[rng.IntN(len(peers))], part(h.AvailableCash/2)
		return op("transfer", func(s *accounts.Service) (accounts.Order, error) { return s.Transfer(ctx, c, "x"+req, to, a) })
	}
}

// placeOnBoth places op on every world and requires the same outcome.
func placeOnBoth(t *testing.T, worlds []*shardedWorld, op *shardOp) {
	t.Helper()
	var outcomes []string
	for _, w := range worlds {
		o, err := op.place(w)
		// The outcome without what differs by layout or by database: the
		// order's store id and time, and an error's text (which may name
		// a per-shard system account).
		outcome := fmt.Sprintf("%s %d %s %q trade %s confirm %s", o.Kind, o.Amount, o.Status, o.Reason,
			o.TradeDate.Format(time.DateOnly), o.ConfirmDate.Format(time.DateOnly))
		if err != nil && o.Status == "" {
			outcome = "error " + strings.SplitN(err.Error(), ":", 2)[0]
		}
		outcomes = append(outcomes, outcome)
	}
	if outcomes[0] != outcomes[1] {
		t.Fatalf("%s: 1 shard: %s; 8 shards: %s", op.name, outcomes[0], outcomes[1])
	}
}
