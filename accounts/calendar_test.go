package accounts_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/internal/testseed"
	"github.com/fundplatform/fund/ledger"
)

func day(s string) time.Time {
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return d
}

func cst(s string) time.Time {
	t, err := time.ParseInLocation(time.DateTime, s, ledger.BusinessZone())
	if err != nil {
		panic(err)
	}
	return t
}

// testCalendar: 2026-10-01..07 is the National Day holiday (Thu 1st to Wed 7th).
func testCalendar() *accounts.Calendar {
	var hs []accounts.Holiday
	for d := 1; d <= 7; d++ {
		hs = append(hs, accounts.Holiday{Date: time.Date(2026, 10, d, 0, 0, 0, 0, time.UTC), Name: "National Day"})
	}
	return accounts.NewCalendar(hs)
}

func TestTradeDate(t *testing.T) {
	t.Parallel()
	cal := testCalendar()
	tests := []struct {
		name, at, trade, confirm string
	}{
		{"before cut-off", "2026-11-18 14:59:59", "2026-11-18", "2026-11-19"}, // Wednesday
		{"at cut-off", "2026-11-18 15:00:00", "2026-11-19", "2026-11-20"},
		{"morning", "2026-11-18 00:00:00", "2026-11-18", "2026-11-19"},
		{"Thursday after cut-off", "2026-11-19 15:00:00", "2026-11-20", "2026-11-23"},
		{"Friday before cut-off", "2026-11-20 14:59:59", "2026-11-20", "2026-11-23"},
		{"Friday after cut-off", "2026-11-20 15:00:00", "2026-11-23", "2026-11-24"},
		{"Saturday", "2026-11-21 10:00:00", "2026-11-23", "2026-11-24"},
		{"Sunday late", "2026-11-22 23:59:59", "2026-11-23", "2026-11-24"},
		{"eve of holiday after cut-off", "2026-09-30 15:00:00", "2026-10-08", "2026-10-09"},
		{"eve of holiday before cut-off", "2026-09-30 09:30:00", "2026-09-30", "2026-10-08"},
		{"holiday", "2026-10-05 10:00:00", "2026-10-08", "2026-10-09"},
		{"holiday weekend", "2026-10-03 10:00:00", "2026-10-08", "2026-10-09"},
	}
	for _, tc := range tests {
		trade := cal.TradeDate(cst(tc.at))
		confirm := cal.ConfirmDate(trade)
		if !trade.Equal(day(tc.trade)) || !confirm.Equal(day(tc.confirm)) {
			t.Errorf("%s: order at %s: trade %s confirm %s; want %s and %s", tc.name, tc.at,
				trade.Format(time.DateOnly), confirm.Format(time.DateOnly), tc.trade, tc.confirm)
		}
	}
	// The same instant given in UTC is judged in China Standard Time.
	utc := cst("2026-11-18 15:00:00").UTC() // 07:00 UTC
	if got := cal.TradeDate(utc); !got.Equal(day("2026-11-19")) {
		t.Errorf("15:00 CST given as UTC: trade %s", got.Format(time.DateOnly))
	}
}

// TestTradeDateProperties checks random instants against the rules: the
// trade date is a trading day, never before the order's day, and no trading
// day lies between (a trading day before 15:00 is taken itself).
func TestTradeDateProperties(t *testing.T) {
	t.Parallel()
	seed := testseed.Seed(t)
	r := rand.New(rand.NewPCG(seed, seed))
	cal := testCalendar()
	start := cst("2026-01-01 00:00:00")
	for i := 0; i < 20_000; i++ {
		at := start.Add(time.Duration(r.Int64N(int64(365 * 24 * time.Hour))))
		trade := cal.TradeDate(at)
		d := accounts.NaturalDay(at)
		if !cal.IsTradingDay(trade) || trade.Before(d) {
			t.Fatalf("order at %s: trade date %s", at, trade)
		}
		beforeCutOff := at.In(ledger.BusinessZone()).Hour() < accounts.CutOffHour
		if cal.IsTradingDay(d) && beforeCutOff {
			if !trade.Equal(d) {
				t.Fatalf("order at %s on a trading day before the cut-off: trade date %s", at, trade)
			}
			continue
		}
		for x := d.AddDate(0, 0, 1); x.Before(trade); x = x.AddDate(0, 0, 1) {
			if cal.IsTradingDay(x) {
				t.Fatalf("order at %s: trade date %s skips trading day %s", at, trade, x)
			}
		}
		if trade.Equal(d) {
			t.Fatalf("order at %s after the cut-off or on a non-trading day kept its own day", at)
		}
	}
}
