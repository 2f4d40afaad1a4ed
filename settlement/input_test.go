package settlement

import (
	"errors"
	"testing"
)

// TestParseInput: what an operator may type, and the clear errors for the
// rest.
func TestParseInput(t *testing.T) {
	ok := []struct {
		date, income, per10k string
		want                 Input
	}{
		{"2026-11-11", "123.45", "", Input{IncomeTotal: 12345}},
		{"2026-11-11", "-0.01", "", Input{IncomeTotal: -1}},
		{"2026-11-11", "0", "", Input{}},
		{"2026-11-11", "7", "", Input{IncomeTotal: 700}},
		{"2026-11-11", "1.50", "", Input{IncomeTotal: 150}},
		{"2026-11-11", "100000000000.00", "", Input{IncomeTotal: IncomeTotalMaxFen}},
		{"2026-11-11", "", "0.6543", Input{PerTenK: true, IncomePer10k: 6543}},
		{"2026-11-11", "", "-1.2", Input{PerTenK: true, IncomePer10k: -12000}},
		{"2026-11-11", "", "100.0000", Input{PerTenK: true, IncomePer10k: 1_000_000}},
	}
	for _, c := range ok {
		got, err := ParseInput(c.date, c.income, c.per10k)
		if err != nil {
			t.Errorf("%q %q %q: %v", c.date, c.income, c.per10k, err)
			continue
		}
		c.want.Date = got.Date
		if got != c.want || got.Date.Format("2006-01-02") != c.date {
			t.Errorf("%q %q %q: %+v, want %+v", c.date, c.income, c.per10k, got, c.want)
		}
	}
	bad := []struct {
		date, income, per10k string
		want                 error
	}{
		{"", "1", "", ErrInvalidDate},
		{"2026-13-01", "1", "", ErrInvalidDate},
		{"2026-02-30", "1", "", ErrInvalidDate},
		{"11/11/2026", "1", "", ErrInvalidDate},
		{"1999-12-31", "1", "", ErrInvalidDate},
		{"2026-11-11", "", "", ErrIncomeForm},
		{"2026-11-11", "1.00", "0.6543", ErrIncomeForm},
		{"2026-11-11", "1.001", "", ErrInvalidIncome},
		{"2026-11-11", "", "0.65431", ErrInvalidIncome},
		{"2026-11-11", "abc", "", ErrInvalidIncome},
		{"2026-11-11", "1e5", "", ErrInvalidIncome},
		{"2026-11-11", "+1", "", ErrInvalidIncome},
		{"2026-11-11", "1.", "", ErrInvalidIncome},
		{"2026-11-11", ".5", "", ErrInvalidIncome},
		{"2026-11-11", "--1", "", ErrInvalidIncome},
		{"2026-11-11", "1,000.00", "", ErrInvalidIncome},
		{"2026-11-11", "100000000000.01", "", ErrInvalidIncome},
		{"2026-11-11", "99999999999999999999999", "", ErrInvalidIncome},
		{"2026-11-11", "", "100.0001", ErrInvalidIncome},
		{"2026-11-11", "", "-100.0001", ErrInvalidIncome},
		{"2026-11-11", "", "9223372036854775808", ErrInvalidIncome},
		{"2026-11-11", "1234567890123456789012345678901234.5", "", ErrInvalidIncome},
	}
	for _, c := range bad {
		_, err := ParseInput(c.date, c.income, c.per10k)
		if !errors.Is(err, c.want) {
			t.Errorf("%q %q %q: %v, want %v", c.date, c.income, c.per10k, err, c.want)
		} else {
			t.Logf("%q %q %q: %v", c.date, c.income, c.per10k, err)
		}
	}
}

func TestPer10kFromTotal(t *testing.T) {
	if got := Per10kFromTotal(7, 100000); got != 7000 {
		t.Errorf("0.07 over 1000.00: %d", got)
	}
	if got := Per10kFromTotal(-50, 96117); got != -52020 {
		t.Errorf("-0.50 over 961.17: %d", got)
	}
	// 1.00 over 200,000,000.00 shares: 100 x 10^8 / 2 x 10^10 = 0.5 -> 1
	// (halves away from zero), and -0.5 -> -1.
	if got := Per10kFromTotal(100, 200_000_000_00); got != 1 {
		t.Errorf("half: %d", got)
	}
	if got := Per10kFromTotal(-100, 200_000_000_00); got != -1 {
		t.Errorf("negative half: %d", got)
	}
	if got := Per10kFromTotal(5, 0); got != 0 {
		t.Errorf("no shares: %d", got)
	}
}
