package settlement

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/fundplatform/fund/accounts"
)

// Errors of the settlement run's input and life cycle.
var (
	ErrInvalidDate      = errors.New("settlement: invalid business date")
	ErrIncomeForm       = errors.New("settlement: give the day's income either as a fund total or per 10,000 shares, exactly one")
	ErrInvalidIncome    = errors.New("settlement: invalid income")
	ErrRunConflict      = errors.New("settlement: this date was already run with another income")
	ErrOutOfOrder       = errors.New("settlement: dates must be settled one after another")
	ErrTooEarly         = errors.New("settlement: the business date is not past its cut-off yet")
	ErrShardBusy        = errors.New("settlement: shard owned by a live ledger process")
	ErrInjected         = errors.New("settlement: injected failure")
	ErrSnapshotMismatch = errors.New("settlement: holder snapshot differs from the one the run started with")
	ErrPendingMissing   = errors.New("settlement: an order's pending ledger transfer is missing")
	ErrShardCount       = errors.New("settlement: the run's shard count is not the ledger's")
)

// IncomeTotalMaxFen bounds a day's fund income given as a total, either way:
// 100 billion CNY, some hundred times the largest day any money-market fund
// has had, and far from int64 overflow in every sum the run takes.
const IncomeTotalMaxFen int64 = 10_000_000_000_000

// incomeTextMax bounds the length of an income argument before parsing.
const incomeTextMax = 32

// Input is what a settlement run needs for one business date: the date and
// the fund's income for it in exactly one of two forms.
type Input struct {
	// Date is the natural day settled (midnight UTC of the date).
	Date time.Time
	// PerTenK marks the income as given per 10,000 shares (IncomePer10k in
	// units of 0.0001 CNY); otherwise IncomeTotal is the fund's
	// distributable income in fen.
	PerTenK      bool
	IncomeTotal  int64
	IncomePer10k int64
}

// String names the input the way the command line takes it.
func (in Input) String() string {
	if in.PerTenK {
		return fmt.Sprintf("%s income per 10k %s", in.Date.Format(time.DateOnly), accounts.FormatIncomePer10k(in.IncomePer10k))
	}
	return fmt.Sprintf("%s income %s", in.Date.Format(time.DateOnly), FormatFen(in.IncomeTotal))
}

// ParseInput validates a run's arguments as an operator types them:
// date "YYYY-MM-DD"; income a CNY total with at most 2 decimals, or
// incomePer10k with at most 4 decimals; exactly one of the two non-empty.
// Either may be negative (a losing day) or zero.
func ParseInput(date, income, incomePer10k string) (Input, error) {
	var in Input
	d, err := ParseDate(date)
	if err != nil {
		return in, err
	}
	in.Date = d
	income, incomePer10k = strings.TrimSpace(income), strings.TrimSpace(incomePer10k)
	switch {
	case income == "" && incomePer10k == "":
		return in, fmt.Errorf("neither given: %w", ErrIncomeForm)
	case income != "" && incomePer10k != "":
		return in, fmt.Errorf("both given: %w", ErrIncomeForm)
	case income != "":
		v, err := parseScaled(income, 2, IncomeTotalMaxFen)
		if err != nil {
			return in, fmt.Errorf("income %q: %w", income, err)
		}
		in.IncomeTotal = v
	default:
		v, err := parseScaled(incomePer10k, 4, accounts.IncomePer10kMax)
		if err != nil {
			return in, fmt.Errorf("income per 10k %q: %w", incomePer10k, err)
		}
		in.PerTenK, in.IncomePer10k = true, v
	}
	return in, nil
}

// ParseDate parses a business date "YYYY-MM-DD".
func ParseDate(s string) (time.Time, error) {
	d, err := time.Parse(time.DateOnly, strings.TrimSpace(s))
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want YYYY-MM-DD: %w", s, ErrInvalidDate)
	}
	if d.Year() < 2000 || d.Year() > 2999 {
		return time.Time{}, fmt.Errorf("%q: year outside 2000..2999: %w", s, ErrInvalidDate)
	}
	return d, nil
}

// parseScaled parses a plain decimal with at most scale decimals into an
// integer of 10^-scale units, |value| <= max.
func parseScaled(s string, scale int32, max int64) (int64, error) {
	if len(s) > incomeTextMax {
		return 0, fmt.Errorf("longer than %d characters: %w", incomeTextMax, ErrInvalidIncome)
	}
	body := strings.TrimPrefix(s, "-")
	if body == "" || strings.Count(body, ".") > 1 || strings.HasPrefix(body, ".") || strings.HasSuffix(body, ".") {
		return 0, fmt.Errorf("not a plain decimal number: %w", ErrInvalidIncome)
	}
	for _, r := range body {
		if r != '.' && (r < '0' || r > '9') {
			return 0, fmt.Errorf("not a plain decimal number: %w", ErrInvalidIncome)
		}
	}
	v, err := decimal.NewFromString(s)
	if err != nil {
		return 0, fmt.Errorf("%v: %w", err, ErrInvalidIncome)
	}
	if v.Exponent() < -scale && !v.Equal(v.Truncate(scale)) {
		return 0, fmt.Errorf("more than %d decimals: %w", scale, ErrInvalidIncome)
	}
	units := v.Shift(scale)
	limit := decimal.NewFromInt(max)
	if units.Abs().GreaterThan(limit) {
		return 0, fmt.Errorf("beyond ±%s: %w", limit.Shift(-scale).StringFixed(scale), ErrInvalidIncome)
	}
	return units.IntPart(), nil
}

// FormatFen prints minor units with two decimals, either sign: -5 -> "-0.05".
func FormatFen(v int64) string { return decimal.New(v, -2).StringFixed(2) }

// Per10kFromTotal is the published income per 10,000 shares (0.0001 CNY
// units) of a fund total in fen over totalShares (0.01 share units):
// total / (totalShares/100) × 10,000 at 4 decimals, rounded half away from
// zero. Zero when nobody holds shares.
func Per10kFromTotal(totalFen, totalShares int64) int64 {
	if totalShares == 0 {
		return 0
	}
	// fen/100 CNY per share/100 × 10,000 × 10,000 units = fen × 10^8 / shares.
	v := decimal.NewFromInt(totalFen).Shift(8).Div(decimal.NewFromInt(totalShares))
	return v.Round(0).IntPart()
}
