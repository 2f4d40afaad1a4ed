package accounts

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/shopspring/decimal"
)

// AmountMaxFen is the largest amount one order may carry: 100,000,000.00 CNY.
// Far above any saver's order, far below int64 overflow, so that sums of a
// few orders can never overflow either.
const AmountMaxFen int64 = 100_000_000_00

// amountTextMax bounds the input the parser looks at; the largest valid
// amount has 9 integer digits, a point and 2 decimals.
const amountTextMax = 32

// Amount errors. Every error ParseAmount returns is an *AmountError that
// matches ErrInvalidAmount and exactly one of the reasons below.
var (
	ErrInvalidAmount     = errors.New("invalid amount")
	ErrAmountEmpty       = errors.New("amount is empty")
	ErrAmountSyntax      = errors.New("amount must be plain decimal digits with an optional point, like 12.30")
	ErrAmountNotPositive = errors.New("amount must be greater than zero")
	ErrAmountTooPrecise  = errors.New("amount has more than two decimal places")
	ErrAmountTooLarge    = errors.New("amount exceeds the per-order maximum of 100,000,000.00")
)

// AmountError is a refused amount: the text as given and why.
type AmountError struct {
	Input  string
	Reason error
}

func (e *AmountError) Error() string { return fmt.Sprintf("amount %q: %v", e.Input, e.Reason) }

// Unwrap lets errors.Is match both ErrInvalidAmount and the reason.
func (e *AmountError) Unwrap() []error { return []error{ErrInvalidAmount, e.Reason} }

// ParseAmount turns a decimal string such as "12.3" into minor units (fen or
// 0.01 share). It accepts only digits with at most one point and at most two
// decimals, optionally signed (so that "-1" is reported as not positive
// rather than as bad syntax); no spaces, exponents, NaN or infinities. The
// amount must be > 0 and <= AmountMaxFen.
func ParseAmount(s string) (int64, error) {
	fail := func(reason error) (int64, error) { return 0, &AmountError{Input: s, Reason: reason} }
	if s == "" {
		return fail(ErrAmountEmpty)
	}
	if len(s) > amountTextMax {
		// Too long to be a valid amount; say which way it is wrong if we can.
		if isPlainDecimal(s) {
			if strings.HasPrefix(s, "-") {
				return fail(ErrAmountNotPositive)
			}
			if dot := strings.IndexByte(s, '.'); dot >= 0 && len(s)-dot-1 > 2 {
				return fail(ErrAmountTooPrecise)
			}
			return fail(ErrAmountTooLarge)
		}
		return fail(ErrAmountSyntax)
	}
	if !isPlainDecimal(s) {
		return fail(ErrAmountSyntax)
	}
	d, err := decimal.NewFromString(s)
	if err != nil {
		return fail(ErrAmountSyntax)
	}
	if d.Sign() <= 0 {
		return fail(ErrAmountNotPositive)
	}
	if dot := strings.IndexByte(s, '.'); dot >= 0 && len(s)-dot-1 > 2 {
		return fail(ErrAmountTooPrecise)
	}
	fen := d.Shift(2)
	if fen.GreaterThan(decimal.NewFromInt(AmountMaxFen)) {
		return fail(ErrAmountTooLarge)
	}
	if !fen.IsInteger() || fen.GreaterThan(decimal.NewFromInt(math.MaxInt64)) {
		// Unreachable after the checks above; a broken invariant, not input.
		panic(fmt.Sprintf("ParseAmount(%q): %s fen is not a bounded integer", s, fen))
	}
	return fen.IntPart(), nil
}

// isPlainDecimal reports whether s is [+-]digits[.digits] with at least
// one digit on each side of a point that is present.
func isPlainDecimal(s string) bool {
	if s[0] == '-' || s[0] == '+' {
		s = s[1:]
	}
	intPart, frac, hasDot := strings.Cut(s, ".")
	if intPart == "" || (hasDot && frac == "") {
		return false
	}
	return allDigits(intPart) && allDigits(frac)
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// FormatAmount prints minor units with exactly two decimals: 1230 -> "12.30",
// -5 -> "-0.05". Integer arithmetic: every answer formats amounts, and
// going through decimal (a big.Int each) cost more than the rest of the
// answer's encoding.
func FormatAmount(fen int64) string {
	u := uint64(fen)
	var b []byte
	if fen < 0 {
		u = -u // two's complement: right for math.MinInt64 too
		b = append(make([]byte, 0, 24), '-')
	} else {
		b = make([]byte, 0, 24)
	}
	b = strconv.AppendUint(b, u/100, 10)
	cents := u % 100
	return string(append(b, '.', byte('0'+cents/10), byte('0'+cents%10)))
}
