package postgres_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/settlement"
)

// TestSettlementGolden walks four nights of a small fund through the real
// accounts service, with every figure worked out by hand in the comments
// (shares and income in fen / 0.01 share; q = the truncated amount, r the
// remainder compared for the leftover cents).
func TestSettlementGolden(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()

	// Tue 2026-11-17 10:00: A, B, C subscribe 600, 300, 100 (confirmed
	// Wed 11-18); D only tops up: a customer with no shares.
	w.clock.Set(cst("2026-11-17 10:00:00"))
	a, b, c, d := w.open("A"), w.open("B"), w.open("C"), w.open("D")
	w.must(w.svc.TopUp(ctx, a, "t", 100000))
	w.must(w.svc.TopUp(ctx, b, "t", 30000))
	w.must(w.svc.TopUp(ctx, c, "t", 10000))
	w.must(w.svc.TopUp(ctx, d, "t", 5000))
	w.must(w.svc.Subscribe(ctx, a, "s", 60000))
	w.must(w.svc.Subscribe(ctx, b, "s", 30000))
	w.must(w.svc.Subscribe(ctx, c, "s", 10000))

	// Night of 11-17, 0.6543 per 10k: nobody holds confirmed shares, so
	// the fund income is floor(0 x 0.6543) = 0 and nothing is booked.
	w.clock.Set(cst("2026-11-17 23:00:00"))
	s := w.settle(perTenK("2026-11-17", 6543))
	if s.FundIncome != 0 || s.IncomeEntries != 0 || s.Holders != 0 || s.Subscriptions != 0 {
		t.Fatalf("11-17: %+v", s)
	}

	// Night of 11-18, total 0.07: A, B, C confirmed (600/300/100), 1000.00
	// eligible = 100,000. A 7x60000/100000 = 4 r 20000, B 2 r 10000, C 0 r
	// 70000; 1 cent left -> C. Income per 10k 7x10^8/100000 = 0.7000.
	w.clock.Set(cst("2026-11-18 23:00:00"))
	s = w.settle(total("2026-11-18", 7))
	wantSummary(t, s, 100000, 7, 7000)
	if s.Subscriptions != 3 || s.SubscribedShares != 100000 {
		t.Fatalf("11-18 confirmations: %+v", s)
	}
	wantIncome(t, w, "2026-11-18", map[accounts.CustomerID]int64{a: 4, b: 2, c: 1})

	// Thu 11-19 10:00: C redeems 40.00 standard (paid Fri 11-20); E
	// subscribes 1.00 (confirmed Fri). C still earns on the 19th.
	w.clock.Set(cst("2026-11-19 10:00:00"))
	e := w.open("E")
	w.must(w.svc.StandardRedeem(ctx, c, "r1", 4000))
	w.must(w.svc.TopUp(ctx, e, "t", 100))
	w.must(w.svc.Subscribe(ctx, e, "s", 100))

	// Night of 11-19, 1.0000 per 10k: A 600.04, B 300.02, C 100.01 =
	// 100,007. Fund income floor(100007 x 10000 / 10^8) = 10.
	// A 10x60004 = 600040 = 5x100007 + 100005 -> 5 r 100005;
	// B 300020 = 2x100007 + 100006 -> 2 r 100006; C 100010 -> 1 r 3.
	// 2 cents left -> B, then A: A 6, B 3, C 1.
	w.clock.Set(cst("2026-11-19 23:00:00"))
	s = w.settle(perTenK("2026-11-19", 10000))
	wantSummary(t, s, 100007, 10, 10000)
	wantIncome(t, w, "2026-11-19", map[accounts.CustomerID]int64{a: 6, b: 3, c: 1})

	// Fri 11-20 10:00: C redeems everything it may: 100.02 - 40.00 held =
	// 60.02 (paid Mon 11-23).
	w.clock.Set(cst("2026-11-20 10:00:00"))
	w.must(w.svc.StandardRedeem(ctx, c, "r2", 6002))

	// Night of 11-20, total -0.50 (a losing day). First E is confirmed and
	// C's 40.00 is paid (C: 100.02 - 40.00 = 60.02 posted, all of it held
	// by r2, made today: it still earns today but can give up nothing).
	// Eligible A 60010, B 30005, C 6002, E 100 = 96,117.
	// A 50x60010 = 3000500 = 31x96117 + 20873; B 1500250 = 15x96117 +
	// 58495; C 300100 = 3x96117 + 11749; E 5000 = 0 r 5000. 1 cent left ->
	// B: A -31, B -16, C -3, E 0. C can bear 0: its 3 are absorbed by the
	// fund through the rounding account. Per 10k: -50x10^8/96117 =
	// -52019.93 (96117 x 52020 = 5,000,006,340 > 5x10^9) -> -5.2020.
	w.clock.Set(cst("2026-11-20 23:00:00"))
	s = w.settle(total("2026-11-20", -50))
	wantSummary(t, s, 96117, -50, -52020)
	if s.IncomeDeducted != 47 || s.Absorbed != 3 || s.Redemptions != 1 || s.RedeemedCash != 4000 || s.Subscriptions != 1 {
		t.Fatalf("11-20: %+v", s)
	}
	wantIncome(t, w, "2026-11-20", map[accounts.CustomerID]int64{a: -31, b: -16})

	// Balances: A 600 + .04 + .06 - .31 = 599.79; B 300 + .02 + .03 - .16
	// = 299.89; C 100 + .01 + .01 - 40 = 60.02, all held; E 1.00; D none.
	for _, x := range []struct {
		c                  accounts.CustomerID
		shares, held, cash int64
	}{{a, 59979, 0, 40000}, {b, 29989, 0, 0}, {c, 6002, 6002, 4000}, {d, 0, 0, 5000}, {e, 100, 0, 0}} {
		sh, cash := w.account(accounts.SharesAccount(x.c)), w.account(accounts.CashAccount(x.c))
		if bal(sh) != x.shares || sh.DebitsPending != x.held || sh.CreditsPending != 0 || bal(cash) != x.cash {
			t.Errorf("customer %d: shares %d held %d awaiting %d cash %d, want %d %d 0 %d", x.c, bal(sh),
				sh.DebitsPending, sh.CreditsPending, bal(cash), x.shares, x.held, x.cash)
		}
	}
	// The fund: income 0.07 + 0.10 - 0.50 = -0.33 over the days; the
	// income account was credited 47 + 3 more than debited 7 + 10.
	if got := bal(w.account(accounts.IncomeDistribution)); got != 33 {
		t.Errorf("income distribution balance %d, want 33", got)
	}
	if got := bal(w.account(accounts.Rounding)); got != -3 {
		t.Errorf("rounding balance %d, want -3", got)
	}

	// The holdings view on Saturday: yesterday's income and the sum.
	w.clock.Set(cst("2026-11-21 09:00:00"))
	for _, x := range []struct {
		c                     accounts.CustomerID
		yesterday, cumulative int64
	}{{a, -31, -21}, {b, -16, -11}, {c, 0, 2}, {d, 0, 0}, {e, 0, 0}} {
		h, err := w.svc.Holdings(ctx, x.c)
		if err != nil {
			t.Fatal(err)
		}
		if h.YesterdayIncome != x.yesterday || h.CumulativeIncome != x.cumulative {
			t.Errorf("customer %d: yesterday %d cumulative %d, want %d %d", x.c, h.YesterdayIncome, h.CumulativeIncome,
				x.yesterday, x.cumulative)
		}
	}
	// Orders: every subscription and r1 completed, r2 still pending.
	if n := w.count(`SELECT count(*) FROM orders WHERE status = 'pending'`); n != 1 {
		t.Errorf("%d pending orders, want 1 (r2)", n)
	}

	// The custodian file of 11-20, line by line.
	f := w.file("20261120")
	wantLines := []string{
		"record,customer_id,subscriptions_confirmed,redemptions_paid,income",
		"H,2026-11-20,income,-0.50,-0.50,-5.2020,961.17",
		"D," + id(a) + ",0.00,0.00,-0.31",
		"D," + id(b) + ",0.00,0.00,-0.16",
		"D," + id(c) + ",0.00,40.00,0.00",
		"D," + id(e) + ",1.00,0.00,0.00",
		"T,4,1.00,40.00,-0.47",
	}
	lines := strings.Split(strings.TrimSpace(f), "\n")
	if len(lines) != len(wantLines)+1 || strings.Join(lines[:len(wantLines)], "\n") != strings.Join(wantLines, "\n") {
		t.Errorf("custodian file:\n%s\nwant first lines:\n%s", f, strings.Join(wantLines, "\n"))
	}
	if !strings.HasPrefix(lines[len(lines)-1], "C,SHA-256,"+s.FileSHA256) {
		t.Errorf("checksum line %q, summary digest %s", lines[len(lines)-1], s.FileSHA256)
	}
	if _, err := settlement.VerifyCustodianFile(strings.NewReader(f)); err != nil {
		t.Errorf("verify file: %v", err)
	}
	tampered := strings.Replace(f, "-0.31", "-0.30", 1)
	if _, err := settlement.VerifyCustodianFile(strings.NewReader(tampered)); !isErr(err, settlement.ErrBadChecksum) {
		t.Errorf("tampered file: %v, want ErrBadChecksum", err)
	}

	if b, err := os.ReadFile(filepath.Join(w.dir, "settlement-20261120.summary.json")); err != nil ||
		!strings.Contains(string(b), `"fund_income": -50`) {
		t.Errorf("summary file: %v\n%s", err, b)
	}

	// Re-running a finished date writes nothing and returns its summary;
	// another income for it is refused; a gap is refused.
	journal := w.count(`SELECT count(*) FROM transfers`)
	again := w.settle(total("2026-11-20", -50))
	if again.FileSHA256 != s.FileSHA256 || again.FundIncome != s.FundIncome {
		t.Errorf("re-run summary %+v, first %+v", again, s)
	}
	w.stopLedger()
	w.clock.Set(cst("2026-11-23 09:00:00"))
	if _, err := w.runner.Run(ctx, total("2026-11-20", -51), nil); !isErr(err, settlement.ErrRunConflict) {
		t.Errorf("other income: %v, want ErrRunConflict", err)
	}
	if _, err := w.runner.Run(ctx, total("2026-11-22", 1), nil); !isErr(err, settlement.ErrOutOfOrder) {
		t.Errorf("gap: %v, want ErrOutOfOrder", err)
	}
	w.startLedger()
	// Each of the four nights published its shard and completion events
	// once; the re-runs published nothing.
	if len(w.events.events) != 8 || w.events.events[7].Type != "settlement.completed" || w.events.events[7].Income != -50 {
		t.Errorf("events: %+v", w.events.events)
	}
	if n := w.count(`SELECT count(*) FROM transfers`); n != journal {
		t.Errorf("journal grew from %d to %d entries on re-runs", journal, n)
	}
	w.verify()

	// The ledger writes again after settlement, at the new epoch.
	w.clock.Set(cst("2026-11-21 10:00:00"))
	w.must(w.svc.FastRedeem(ctx, a, "f1", 100))
	w.verify()
}

// bal is a credit-normal posted balance.
func bal(a ledger.Account) int64 { return a.CreditsPosted - a.DebitsPosted }

func id(c accounts.CustomerID) string { return strconv.FormatInt(int64(c), 10) }

func wantSummary(t *testing.T, s settlement.Summary, shares, income, per10k int64) {
	t.Helper()
	if s.TotalShares != shares || s.FundIncome != income || s.IncomePer10k != per10k {
		t.Fatalf("%s: eligible %d income %d per 10k %d, want %d %d %d", s.Date, s.TotalShares, s.FundIncome, s.IncomePer10k,
			shares, income, per10k)
	}
}

// wantIncome checks the customer income recorded for a date.
func wantIncome(t *testing.T, w *world, date string, want map[accounts.CustomerID]int64) {
	t.Helper()
	rows, err := w.pool.Query(context.Background(), `SELECT customer_id, amount FROM customer_income WHERE date = $1`, day(date))
	if err != nil {
		t.Fatal(err)
	}
	got := map[accounts.CustomerID]int64{}
	for rows.Next() {
		var c accounts.CustomerID
		var v int64
		if err := rows.Scan(&c, &v); err != nil {
			t.Fatal(err)
		}
		got[c] = v
	}
	if len(got) != len(want) {
		t.Errorf("%s income %v, want %v", date, got, want)
	}
	for c, v := range want {
		if got[c] != v {
			t.Errorf("%s income of %d: %d, want %d", date, c, got[c], v)
		}
	}
}

// TestSevenDayYieldAfterAWeek settles seven nights at 1.0000 per 10,000
// shares for one holder: the yield appears on the seventh, and is 3.717%
// ((1.0001)^365 - 1 = 3.71724%, worked out in accounts' golden test).
func TestSevenDayYieldAfterAWeek(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.clock.Set(cst("2026-11-02 10:00:00")) // a Monday
	a := w.open("A")
	w.must(w.svc.TopUp(ctx, a, "t", 1_000_000_00))
	w.must(w.svc.Subscribe(ctx, a, "s", 1_000_000_00))
	for i := 0; i < 7; i++ {
		d := day("2026-11-03").AddDate(0, 0, i)
		w.clock.Set(d.Add(16 * 3600e9))
		s := w.settle(settlement.Input{Date: d, PerTenK: true, IncomePer10k: 10000})
		// 1,000,000.00 shares confirmed on the 3rd, then growing by the
		// income: day 1 pays floor(10^8 x 10^4 / 10^8) = 100.00.
		if i == 0 && s.FundIncome != 10000 {
			t.Fatalf("day 1 income %d, want 10000", s.FundIncome)
		}
		if (i < 6) != (s.SevenDayYield == "") {
			t.Fatalf("day %d: seven-day yield %q", i+1, s.SevenDayYield)
		}
		if i == 6 && s.SevenDayYield != "3.717" {
			t.Fatalf("seven-day yield %q, want 3.717", s.SevenDayYield)
		}
	}
	h, err := w.svc.Holdings(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if h.SevenDayYield != "3.717" {
		t.Errorf("holdings show %q", h.SevenDayYield)
	}
	w.verify()
}

// TestBadInputChangesNothing: input the run refuses leaves the databases as
// they were, with a clear error; an income refused once the shares are
// known (too large for the fund) books no income and may be corrected.
func TestBadInputChangesNothing(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.clock.Set(cst("2026-11-17 10:00:00"))
	a := w.open("A")
	w.must(w.svc.TopUp(ctx, a, "t", 10000))
	w.must(w.svc.Subscribe(ctx, a, "s", 10000))
	w.clock.Set(cst("2026-11-18 23:00:00"))
	w.settle(perTenK("2026-11-17", 1000))
	w.stopLedger()
	state := func() string {
		return digestOne(t, w)
	}
	before := state()
	for _, c := range []struct {
		in   settlement.Input
		want error
	}{
		{settlement.Input{}, settlement.ErrInvalidDate},
		{perTenK("2026-11-18", 100_0001), settlement.ErrInvalidIncome},
		{perTenK("2026-11-18", -100_0001), settlement.ErrInvalidIncome},
		{total("2026-11-18", settlement.IncomeTotalMaxFen+1), settlement.ErrInvalidIncome},
		{total("2026-11-19", 1), settlement.ErrTooEarly},    // its 15:00 has not come yet
		{total("2026-11-20", 1), settlement.ErrTooEarly},    // the future
		{total("2026-11-17", 5), settlement.ErrRunConflict}, // finished with 0.1000 per 10k
		{total("2026-11-16", 5), settlement.ErrOutOfOrder},  // before the first date
	} {
		_, err := w.runner.Run(ctx, c.in, nil)
		if !isErr(err, c.want) {
			t.Errorf("%s: %v, want %v", c.in, err, c.want)
			continue
		}
		t.Logf("%s: %v", c.in, err)
		if after := state(); after != before {
			t.Errorf("%s changed the databases", c.in)
		}
	}
	// A run over another shard count than the ledger's would look for
	// accounts on the wrong shards.
	two := settlement.NewRunner(settlement.Config{Shards: 2, FileDir: w.dir, Now: w.clock.Now}, w.store, w.svc, nil, nil)
	if _, err := two.Run(ctx, total("2026-11-18", 1), nil); !isErr(err, settlement.ErrShardCount) {
		t.Errorf("two shards: %v, want ErrShardCount", err)
	} else if after := state(); after != before {
		t.Errorf("the two-shard run changed the databases")
	}
	// 100.00 CNY of income on the 100.00 shares confirmed on the 18th is
	// 10,000 CNY per 10,000 shares: refused once the shares are known,
	// before any income is booked; the corrected income then runs.
	_, err := w.runner.Run(ctx, total("2026-11-18", 10000), nil)
	if !isErr(err, settlement.ErrInvalidIncome) {
		t.Fatalf("too much income: %v", err)
	}
	t.Logf("too much income: %v", err)
	if n := w.count(`SELECT count(*) FROM transfers WHERE kind IN (7004, 7005)`); n != 0 {
		t.Fatalf("%d income entries, want none", n)
	}
	sum, err := w.runner.Run(ctx, total("2026-11-18", 1), nil)
	if err != nil || sum.FundIncome != 1 {
		t.Fatalf("corrected income: %+v %v", sum, err)
	}
	w.startLedger()
	w.verify()
}

func digestOne(t *testing.T, w *world) string {
	t.Helper()
	var v string
	if err := w.pool.QueryRow(context.Background(), `SELECT concat_ws(' ',
		(SELECT count(*) FROM transfers), (SELECT count(*) FROM settlement_runs), (SELECT count(*) FROM settlement_steps),
		(SELECT count(*) FROM customer_income), (SELECT count(*) FROM fund_yields), (SELECT count(*) FROM settlement_cuts),
		(SELECT string_agg(concat_ws(',', id, credits_posted, debits_posted, credits_pending, debits_pending), ';' ORDER BY id) FROM accounts),
		(SELECT string_agg(concat_ws(',', shard, epoch, last_timestamp), ';' ORDER BY shard) FROM ledger_shards))`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestSettleFencesARunningLedger: a run with TakeShards takes the shard from
// a sequencer that is still serving, whose latest balances are not flushed
// yet: the run brings them up from the journal, the old writer is fenced
// (its next commit fails), and a writer started at the new epoch carries
// on; journal and balances agree throughout.
func TestSettleFencesARunningLedger(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.clock.Set(cst("2026-11-17 10:00:00"))
	a := w.open("A")
	w.must(w.svc.TopUp(ctx, a, "t", 50000))
	w.must(w.svc.Subscribe(ctx, a, "s", 30000))
	w.clock.Set(cst("2026-11-18 10:00:00"))
	w.must(w.svc.TopUp(ctx, a, "t2", 100)) // unflushed: within the checkpoint interval
	var last, checkpoint int64
	if err := w.pool.QueryRow(ctx, `SELECT last_timestamp, checkpoint_ts FROM ledger_shards WHERE shard = 0`).Scan(&last, &checkpoint); err != nil {
		t.Fatal(err)
	}
	t.Logf("before the run: last %d, checkpoint %d (behind by %d ns)", last, checkpoint, last-checkpoint)

	w.clock.Set(cst("2026-11-18 23:00:00"))
	take := settlement.NewRunner(settlement.Config{Shards: 1, FileDir: w.dir, Now: w.clock.Now, TakeShards: true,
		Owner: "settle-test"}, w.store, w.svc, nil, nil)
	s, err := take.Run(ctx, total("2026-11-18", 3), nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.FundIncome != 3 || s.TotalShares != 30000 {
		t.Fatalf("summary %+v", s)
	}
	// The old sequencer still runs but may no longer commit.
	if _, err := w.svc.TopUp(ctx, a, "t3", 100); !isErr(err, ledger.ErrFenced) {
		t.Fatalf("top-up through the fenced writer: %v, want ErrFenced", err)
	}
	_ = w.stop() // it stopped on the fence; its error is expected
	w.stop = nil
	w.startLedger()
	w.must(w.svc.TopUp(ctx, a, "t3", 100))
	cash, shares := w.account(accounts.CashAccount(a)), w.account(accounts.SharesAccount(a))
	if bal(cash) != 20200 || bal(shares) != 30003 {
		t.Errorf("cash %d shares %d, want 20200 30003", bal(cash), bal(shares))
	}
	w.verify()
}

// TestQuiesceHook: with Config.Quiesce a process that holds its own ledger
// writer (fundd dev) has it stopped for the run and started again at the
// new epoch afterwards, with no fenced writer left behind.
func TestQuiesceHook(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.clock.Set(cst("2026-11-17 10:00:00"))
	a := w.open("A")
	w.must(w.svc.TopUp(ctx, a, "t", 1000))
	w.must(w.svc.Subscribe(ctx, a, "s", 1000))
	w.clock.Set(cst("2026-11-18 23:00:00"))
	calls := 0
	r := settlement.NewRunner(settlement.Config{Shards: 1, FileDir: w.dir, Now: w.clock.Now,
		Quiesce: func(context.Context) (func(context.Context) error, error) {
			calls++
			w.stopLedger()
			return func(context.Context) error { w.startLedger(); return nil }, nil
		}}, w.store, w.svc, nil, nil)
	if _, err := r.Run(ctx, total("2026-11-17", 0), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Run(ctx, total("2026-11-18", 1), nil); err != nil {
		t.Fatal(err)
	}
	w.must(w.svc.TopUp(ctx, a, "t2", 100)) // the restarted writer commits
	if calls != 2 || bal(w.account(accounts.SharesAccount(a))) != 1001 {
		t.Errorf("quiesced %d times, shares %d", calls, bal(w.account(accounts.SharesAccount(a))))
	}
	w.verify()
}
