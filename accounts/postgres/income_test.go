package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fundplatform/fund/accounts"
)

// TestDailyIncome records income the way settlement will and reads it back
// through the holdings: yesterday's income, the cumulative sum, re-runs,
// conflicts and bad batches that store nothing.
func TestDailyIncome(t *testing.T) {
	t.Parallel()
	e := newEnv(t, accounts.Config{}) // today is 2026-11-18 (CST)
	ctx := context.Background()
	a := e.open("Rita")
	b := e.open("Sam")
	if h := e.holdings(a); h.YesterdayIncome != 0 || h.CumulativeIncome != 0 || h.SevenDayYield != "" || !h.SevenDayYieldDate.IsZero() {
		t.Fatalf("holdings before any income: %+v", h)
	}
	inc := func(c accounts.CustomerID, date string, fen int64) accounts.DailyIncome {
		return accounts.DailyIncome{CustomerID: c, Date: day(date), Amount: fen}
	}
	batch := []accounts.DailyIncome{
		inc(a, "2026-11-15", 120), inc(a, "2026-11-16", -30), inc(a, "2026-11-17", 95), inc(b, "2026-11-17", 7),
	}
	check := func(c accounts.CustomerID, yesterday, cumulative int64) {
		t.Helper()
		if h := e.holdings(c); h.YesterdayIncome != yesterday || h.CumulativeIncome != cumulative {
			t.Fatalf("customer %d: yesterday %d cumulative %d, want %d and %d", c, h.YesterdayIncome, h.CumulativeIncome,
				yesterday, cumulative)
		}
	}
	rows := func() int64 {
		t.Helper()
		var n int64
		if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM customer_income`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if err := e.svc.RecordDailyIncome(ctx, batch); err != nil {
		t.Fatal(err)
	}
	check(a, 95, 185)
	check(b, 7, 7)
	// A settlement re-run records the same again: nothing changes.
	if err := e.svc.RecordDailyIncome(ctx, batch); err != nil {
		t.Fatalf("re-run: %v", err)
	}
	if n := rows(); n != 4 {
		t.Fatalf("%d income rows after a re-run, want 4", n)
	}
	// Refused batches store none of their rows.
	refused := []struct {
		name  string
		batch []accounts.DailyIncome
		want  error
	}{
		{"another amount for a stored day", []accounts.DailyIncome{inc(b, "2026-11-18", 5), inc(a, "2026-11-17", 96)},
			accounts.ErrRecordConflict},
		{"one day twice with two amounts", []accounts.DailyIncome{inc(b, "2026-11-19", 1), inc(b, "2026-11-19", 2)},
			accounts.ErrRecordConflict},
		{"unknown customer", []accounts.DailyIncome{inc(b, "2026-11-18", 5), inc(999, "2026-11-18", 5)},
			accounts.ErrCustomerNotFound},
		{"customer id out of range", []accounts.DailyIncome{inc(0, "2026-11-18", 5)}, accounts.ErrCustomerNotFound},
		{"amount too large", []accounts.DailyIncome{inc(b, "2026-11-18", accounts.AmountMaxFen+1)}, accounts.ErrInvalidAmount},
		{"loss too large", []accounts.DailyIncome{inc(b, "2026-11-18", -accounts.AmountMaxFen-1)}, accounts.ErrInvalidAmount},
	}
	for _, tc := range refused {
		if err := e.svc.RecordDailyIncome(ctx, tc.batch); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		} else {
			t.Logf("%s: %v", tc.name, err)
		}
	}
	if err := e.svc.RecordDailyIncome(ctx, make([]accounts.DailyIncome, accounts.IncomeBatchMax+1)); err == nil {
		t.Error("oversized batch accepted")
	}
	if n := rows(); n != 4 {
		t.Fatalf("%d income rows after refused batches, want 4", n)
	}
	// The same day twice with one amount is fine.
	if err := e.svc.RecordDailyIncome(ctx, []accounts.DailyIncome{inc(b, "2026-11-18", -3), inc(b, "2026-11-18", -3)}); err != nil {
		t.Fatal(err)
	}
	// Tomorrow, yesterday is the 18th.
	e.clock.Set(cst("2026-11-19 08:00:00"))
	check(a, 0, 185)
	check(b, -3, 4)
	// Just before midnight it is still the 19th; at midnight the 20th.
	e.clock.Set(cst("2026-11-19 23:59:59"))
	check(b, -3, 4)
	e.clock.Set(cst("2026-11-20 00:00:00"))
	check(b, 0, 4)
}

// ordinaryWeek is a week of an ordinary fund's income per 10,000 shares;
// its 7-day yield is 2.398% (worked out in accounts' yield_test.go).
var ordinaryWeek = [7]int64{6512, 6498, 6530, 6475, 6455, 6470, 6501}

// TestFundYields publishes the fund's daily income and checks the 7-day
// yield each day gets, the order days must come in, re-runs and conflicts,
// and the yield the holdings show.
func TestFundYields(t *testing.T) {
	t.Parallel()
	e := newEnv(t, accounts.Config{})
	ctx := context.Background()
	c := e.open("Tina")
	first := day("2026-11-05")
	publish := func(d time.Time, per10k int64) accounts.FundYield {
		t.Helper()
		y, err := e.svc.PublishFundYield(ctx, d, per10k)
		if err != nil {
			t.Fatalf("publish %s: %v", d.Format(time.DateOnly), err)
		}
		return y
	}
	// The fund's first six days have no 7-day yield, and the holdings
	// show none.
	for i := 0; i < 6; i++ {
		d := first.AddDate(0, 0, i)
		if y := publish(d, ordinaryWeek[i]); y.HasSevenDayYield || !y.Date.Equal(d) || y.IncomePer10k != ordinaryWeek[i] {
			t.Fatalf("day %d: %+v", i+1, y)
		}
	}
	if h := e.holdings(c); h.SevenDayYield != "" || !h.SevenDayYieldDate.IsZero() {
		t.Fatalf("holdings in the fund's first week: %+v", h)
	}
	// The seventh day has the week's yield.
	seventh := first.AddDate(0, 0, 6)
	y := publish(seventh, ordinaryWeek[6])
	if !y.HasSevenDayYield || y.SevenDayYield != 2398 {
		t.Fatalf("seventh day: %+v, want a 7-day yield of 2.398", y)
	}
	if h := e.holdings(c); h.SevenDayYield != "2.398" || !h.SevenDayYieldDate.Equal(seventh) {
		t.Fatalf("holdings: yield %q of %s", h.SevenDayYield, h.SevenDayYieldDate.Format(time.DateOnly))
	}
	// Each later day's window is the seven days ending on it: the first
	// day drops out.
	eighth := seventh.AddDate(0, 0, 1)
	y = publish(eighth, 10000)
	want, err := accounts.SevenDayYield([7]int64{6498, 6530, 6475, 6455, 6470, 6501, 10000})
	if err != nil || !y.HasSevenDayYield || y.SevenDayYield != want {
		t.Fatalf("eighth day: %+v, want %d (%v)", y, want, err)
	}
	// A re-run of any published day returns what was stored; another
	// income for it is refused.
	if again := publish(seventh, ordinaryWeek[6]); again != (accounts.FundYield{Date: seventh, IncomePer10k: ordinaryWeek[6],
		SevenDayYield: 2398, HasSevenDayYield: true}) {
		t.Fatalf("re-run of the seventh day: %+v", again)
	}
	if again := publish(first, ordinaryWeek[0]); again.HasSevenDayYield {
		t.Fatalf("re-run of the first day: %+v", again)
	}
	if _, err := e.svc.PublishFundYield(ctx, seventh, 6502); !errors.Is(err, accounts.ErrRecordConflict) {
		t.Fatalf("another income for a published day: %v", err)
	}
	// Days come one after another.
	for _, d := range []time.Time{eighth.AddDate(0, 0, 2), first.AddDate(0, 0, -1)} {
		if _, err := e.svc.PublishFundYield(ctx, d, 6500); !errors.Is(err, accounts.ErrYieldGap) {
			t.Fatalf("publish %s: %v, want ErrYieldGap", d.Format(time.DateOnly), err)
		}
	}
	for _, r := range []int64{accounts.IncomePer10kMax + 1, -accounts.IncomePer10kMax - 1} {
		if _, err := e.svc.PublishFundYield(ctx, eighth.AddDate(0, 0, 1), r); !errors.Is(err, accounts.ErrIncomePer10kRange) {
			t.Fatalf("income per 10,000 of %d: %v", r, err)
		}
	}
	// Concurrent publications of the next day store it once.
	ninth := eighth.AddDate(0, 0, 1)
	const n = 8
	ys := make([]accounts.FundYield, n)
	errs := make([]error, n)
	parallel(n, func(i int) { ys[i], errs[i] = e.svc.PublishFundYield(ctx, ninth, -2500) })
	for i := range ys {
		if errs[i] != nil || ys[i] != ys[0] || !ys[0].HasSevenDayYield {
			t.Fatalf("caller %d: %+v, %v; caller 0 %+v", i, ys[i], errs[i], ys[0])
		}
	}
	stored, err := e.store.FundYields(ctx, first, ninth)
	if err != nil || len(stored) != 9 || stored[8] != ys[0] {
		t.Fatalf("stored yields %+v, %v", stored, err)
	}
	if h := e.holdings(c); h.SevenDayYield != accounts.FormatYield(ys[0].SevenDayYield) || !h.SevenDayYieldDate.Equal(ninth) {
		t.Fatalf("holdings: yield %q of %s, want %s of %s", h.SevenDayYield, h.SevenDayYieldDate.Format(time.DateOnly),
			accounts.FormatYield(ys[0].SevenDayYield), ninth.Format(time.DateOnly))
	}
}
