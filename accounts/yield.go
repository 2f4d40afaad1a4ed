package accounts

import (
	"fmt"
	"math/big"
	"time"

	"github.com/shopspring/decimal"
)

// DailyIncome is what the settlement run paid one customer for one natural
// day (as new shares, so 0.01 share = 1 fen). It may be negative: a day's
// income can be a loss.
type DailyIncome struct {
	CustomerID CustomerID
	// Date is the natural day the income was earned on (midnight UTC of the
	// date, like every date in this package). The run for date D records D;
	// on D+1 the customer sees it as yesterday's income.
	Date   time.Time
	Amount int64 // fen
}

// FundYield is what the fund published for one natural day.
type FundYield struct {
	Date time.Time
	// IncomePer10k is the income per 10,000 shares in units of 0.0001 CNY
	// (4 decimals): 0.6512 CNY is 6512. It may be negative.
	IncomePer10k int64
	// SevenDayYield is the annualised yield of the 7 calendar days ending on
	// Date (see SevenDayYield) in thousandths of a percent (3 decimals):
	// 2.398% is 2398. Set only when HasSevenDayYield: the fund's first six
	// days have no seven-day history.
	SevenDayYield    int64
	HasSevenDayYield bool
}

// Limits of income and yields.
const (
	// IncomePer10kMax bounds a day's income per 10,000 shares either way:
	// 100.0000 CNY, 1% a day, some fifty times any money-market fund's
	// day. Seven such days annualise to 3,678.343%, so no valid input can
	// overflow the yield.
	IncomePer10kMax int64 = 100_0000
	// IncomeBatchMax bounds the incomes one RecordDailyIncome call takes.
	IncomeBatchMax = 10_000
	// SevenDayYieldDays is the window of the 7-day annualised yield.
	SevenDayYieldDays = 7
	// FundYieldsMax bounds the yields one Store.FundYields call returns.
	FundYieldsMax = 366
)

// Scales of the 7-day yield computation: the income per 10,000 shares has
// 4 decimals, so 1 + r/10,000 has 8; the yield is in thousandths of a
// percent, 10^-5 of the growth factor.
var (
	factorScale = big.NewInt(100_000_000) // 10^8
	yieldScale  = big.NewInt(100_000)     // 10^5
)

// rootGuardDigits are the decimals beyond the yield's last digit to which
// the growth factor is computed. Any number of at least one is exact: see
// SevenDayYield.
const rootGuardDigits = 5

// SevenDayYield is the fund's 7-day annualised yield, in thousandths of a
// percent, from the income per 10,000 shares (units of 0.0001 CNY) of the
// last 7 calendar days:
//
//	((product over i of (1 + r_i/10,000))^(365/7) - 1) x 100%
//
// rounded to 3 decimals, halves towards +infinity (roundHalfUp).
//
// It uses exact integer arithmetic, no floats and no series: with
// P = N / 10^56, where N = product of (10^8 + n_i) for the integer inputs
// n_i, the growth factor is Q = P^(365/7), and
//
//	floor(Q x 10^k) = floor7thRoot(floor(N^365 x 10^(7k) / 10^(56 x 365)))
//
// exactly (flooring before a 7th root does not change the root's floor).
// With k = 5 + rootGuardDigits, V = floor(Q x 10^k) pins (Q - 1) x 10^5 to
// an interval [a, a+1) / 10^rootGuardDigits with a integer, and no rounding
// boundary of the yield lies strictly inside it, so the rounded yield
// follows from V alone. Errors: ErrIncomePer10kRange.
func SevenDayYield(incomePer10k [SevenDayYieldDays]int64) (int64, error) {
	n := big.NewInt(1)
	for i, r := range incomePer10k {
		if r < -IncomePer10kMax || r > IncomePer10kMax {
			return 0, fmt.Errorf("day %d of 7: %w", i+1, &Per10kError{IncomePer10k: r})
		}
		n.Mul(n, new(big.Int).Add(factorScale, big.NewInt(r)))
	}
	// P^365 = N^365 / 10^(8 x 7 x 365); scale by 10^(7k) before the root.
	const days = 365
	k := int64(5 + rootGuardDigits)
	num := new(big.Int).Exp(n, big.NewInt(days), nil)
	num.Mul(num, pow10(7*k))
	num.Quo(num, pow10(8*SevenDayYieldDays*days))
	v := floor7thRoot(num) // floor(Q x 10^k)
	// (Q - 1) x 10^5 = (V - 10^k) / 10^rootGuardDigits, rounded.
	v.Sub(v, pow10(k))
	y := roundHalfUp(v, pow10(rootGuardDigits))
	if !y.IsInt64() {
		// Unreachable within IncomePer10kMax: the yield is below 10^7 %.
		panic(fmt.Sprintf("seven-day yield %s out of range for %v", y, incomePer10k))
	}
	return y.Int64(), nil
}

// Per10kError is an income per 10,000 shares outside the bounds.
type Per10kError struct{ IncomePer10k int64 }

func (e *Per10kError) Error() string {
	return fmt.Sprintf("income per 10,000 shares %s: want -%s..%s", FormatIncomePer10k(e.IncomePer10k),
		FormatIncomePer10k(IncomePer10kMax), FormatIncomePer10k(IncomePer10kMax))
}

// Unwrap lets errors.Is match ErrIncomePer10kRange.
func (e *Per10kError) Unwrap() error { return ErrIncomePer10kRange }

func pow10(n int64) *big.Int { return new(big.Int).Exp(big.NewInt(10), big.NewInt(n), nil) }

// roundHalfUp returns x / d rounded to the nearest integer, halves towards
// +infinity (so 2.5 -> 3 and -2.5 -> -2), for d > 0 and even. It is
// floor((x + d/2) / d); big.Int.Div is Euclidean, which for d > 0 is floor.
func roundHalfUp(x, d *big.Int) *big.Int {
	if d.Sign() <= 0 || d.Bit(0) != 0 {
		panic(fmt.Sprintf("roundHalfUp: divisor %s must be positive and even", d))
	}
	half := new(big.Int).Rsh(d, 1)
	return new(big.Int).Div(new(big.Int).Add(x, half), d)
}

// floor7thRoot returns floor(x^(1/7)) for x >= 0 by Newton's method on
// integers, which decreases strictly from any start above the root until it
// reaches the floor.
func floor7thRoot(x *big.Int) *big.Int {
	if x.Sign() < 0 {
		panic("floor7thRoot of a negative number")
	}
	if x.Sign() == 0 {
		return new(big.Int)
	}
	// 2^ceil(bits/7) > x^(1/7).
	r := new(big.Int).Lsh(big.NewInt(1), uint(x.BitLen()+6)/7)
	seven, six := big.NewInt(7), big.NewInt(6)
	// From a start below twice the root the error shrinks by at least a
	// sixth per step, and quadratically near the root: the bit length is a
	// generous bound.
	stepsMax := x.BitLen() + 8
	for i := 0; i < stepsMax; i++ {
		// next = (6r + x / r^6) / 7
		next := new(big.Int).Exp(r, six, nil)
		next.Quo(x, next)
		next.Add(next, new(big.Int).Mul(r, six))
		next.Quo(next, seven)
		if next.Cmp(r) >= 0 {
			return r
		}
		r = next
	}
	panic(fmt.Sprintf("floor7thRoot: no convergence in %d steps", stepsMax))
}

// FormatYield prints a yield in thousandths of a percent with 3 decimals:
// 2398 -> "2.398".
func FormatYield(thousandths int64) string { return decimal.New(thousandths, -3).StringFixed(3) }

// FormatIncomePer10k prints an income per 10,000 shares with 4 decimals:
// 6512 -> "0.6512".
func FormatIncomePer10k(v int64) string { return decimal.New(v, -4).StringFixed(4) }
