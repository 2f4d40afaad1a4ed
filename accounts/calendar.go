package accounts

import (
	"fmt"
	"sort"
	"time"

	"github.com/fundplatform/fund/ledger"
)

// CutOffHour is the hour (China Standard Time) from which an order counts
// for the next trading day.
const CutOffHour = 15

// Calendar is the trading calendar: weekends plus configured holidays are
// non-trading days. It is data (loaded from the holidays table), not code.
// Dates are calendar dates in ledger.BusinessZone(), carried as midnight UTC
// like ledger.BusinessDate returns them. A Calendar is immutable.
type Calendar struct {
	holidays map[time.Time]string
}

// Holiday is one configured non-trading weekday.
type Holiday struct {
	Date time.Time // midnight UTC of the calendar date
	Name string
}

// NewCalendar builds a calendar from its holidays.
func NewCalendar(holidays []Holiday) *Calendar {
	c := &Calendar{holidays: make(map[time.Time]string, len(holidays))}
	for _, h := range holidays {
		c.holidays[DateOf(h.Date)] = h.Name
	}
	return c
}

// Holidays returns the configured holidays in date order.
func (c *Calendar) Holidays() []Holiday {
	out := make([]Holiday, 0, len(c.holidays))
	for d, n := range c.holidays {
		out = append(out, Holiday{Date: d, Name: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Date.Before(out[j].Date) })
	return out
}

// DateOf truncates a date to midnight UTC of the same year, month and day
// (the form every date in this package takes).
func DateOf(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// NaturalDay is the calendar date in ledger.BusinessZone() of an instant.
func NaturalDay(t time.Time) time.Time { return DateOf(t.In(ledger.BusinessZone())) }

// IsTradingDay reports whether date (any time of that calendar day) is a
// trading day.
func (c *Calendar) IsTradingDay(date time.Time) bool {
	d := DateOf(date)
	if wd := d.Weekday(); wd == time.Saturday || wd == time.Sunday {
		return false
	}
	_, holiday := c.holidays[d]
	return !holiday
}

// NextTradingDay is the first trading day strictly after date.
func (c *Calendar) NextTradingDay(date time.Time) time.Time {
	d := DateOf(date)
	// A run of non-trading days of length k holds at least 5k/7-2 weekdays,
	// all holidays, so it is shorter than 2*len(holidays)+3 days.
	limit := 2*len(c.holidays) + 3
	for i := 0; i < limit; i++ {
		d = d.AddDate(0, 0, 1)
		if c.IsTradingDay(d) {
			return d
		}
	}
	panic(fmt.Sprintf("calendar: no trading day within %d days after %s", limit, date.Format(time.DateOnly)))
}

// TradeDate is the business date an order placed at t counts for: the day
// itself when it is a trading day and t is before 15:00 China Standard
// Time; otherwise the next trading day.
func (c *Calendar) TradeDate(t time.Time) time.Time {
	local := t.In(ledger.BusinessZone())
	d := DateOf(local)
	if c.IsTradingDay(d) && local.Hour() < CutOffHour {
		return d
	}
	return c.NextTradingDay(d)
}

// ConfirmDate is when settlement confirms a subscription (or pays a
// standard redemption) made for tradeDate: the next trading day after it.
func (c *Calendar) ConfirmDate(tradeDate time.Time) time.Time { return c.NextTradingDay(tradeDate) }
