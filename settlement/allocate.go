package settlement

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
)

// Errors returned by Allocate and FundIncomeFromPer10k.
var (
	ErrNegativeShares   = errors.New("settlement: negative shares")
	ErrDuplicateAccount = errors.New("settlement: account listed twice")
	ErrNoShares         = errors.New("settlement: nonzero income but no eligible shares")
	ErrSharesOverflow   = errors.New("settlement: total eligible shares overflow int64")
	ErrIncomeOverflow   = errors.New("settlement: fund income overflows int64")
	ErrTooManyHoldings  = errors.New("settlement: too many holdings")
)

// holdingsMax bounds one Allocate call; the candidate index is an int32.
// Two billion holders is several times every MMF there is; a larger run is
// split by shard anyway.
const holdingsMax = math.MaxInt32

// Holding is one holder's eligible shares (minor units, 0.01 share).
type Holding struct {
	AccountID int64
	Shares    int64
}

// Allocation is what one holder gets (minor units; negative on a losing day).
type Allocation struct {
	AccountID int64
	Amount    int64
}

// Allocate splits total (fen, may be negative) over holdings exactly, as the
// DESIGN.md MMF rules say:
//
//  1. holder i first gets trunc(total × shares_i / totalShares) fen, the
//     quotient cut toward zero (on a losing day the deduction is cut toward
//     zero too, so the rule is symmetric around zero);
//  2. the cents the cut left over, |total| − Σ|first amounts|, are handed out
//     one each (+0.01 on a gaining day, −0.01 on a losing day) to the holders
//     whose cut-off fractions were largest, ties going to the lower account
//     id, until the sum equals total to the cent.
//
// Every holder therefore ends within 0.01 of its exact proportional share,
// the sum equals total exactly, and the result depends only on the set of
// (account, shares) pairs, never on the order they are passed in.
//
// The result is aligned with the input: out[i] is holdings[i]'s allocation,
// so holders with zero shares are listed with Amount 0 (callers writing
// entries skip zero amounts). Keeping the alignment lets a caller zip the
// result with its own per-holding data without a lookup.
//
// The products total × shares_i are taken in 128 bits (math/bits), so any
// int64 total and shares are safe; only the sum of all shares must fit in an
// int64 (92 quadrillion shares, ErrSharesOverflow otherwise). The fraction
// cut off from holder i is rem_i / totalShares with the same denominator for
// every holder, so the remainders rem_i are compared directly: no rounding
// anywhere. Cost: one 128-bit multiply and divide per holder, then a
// selection (not a sort) of the leftover count among the holders with a
// nonzero remainder, so O(n) expected.
//
// Errors: ErrNegativeShares, ErrDuplicateAccount (both wrapped with the
// account id), ErrSharesOverflow, ErrTooManyHoldings, and ErrNoShares when
// total != 0 but no holder has shares. A total of 0 gives every holder 0.
func Allocate(total int64, holdings []Holding) ([]Allocation, error) {
	if len(holdings) > holdingsMax {
		return nil, fmt.Errorf("allocate %d holdings, at most %d: %w", len(holdings), holdingsMax, ErrTooManyHoldings)
	}
	totalShares, err := validateHoldings(holdings)
	if err != nil {
		return nil, err
	}
	out := make([]Allocation, len(holdings))
	for i, h := range holdings {
		out[i].AccountID = h.AccountID
	}
	if total == 0 {
		return out, nil
	}
	if totalShares == 0 {
		return nil, fmt.Errorf("allocate %d fen over %d holdings: %w", total, len(holdings), ErrNoShares)
	}

	// Work with magnitudes; the sign is applied when writing out. |MinInt64|
	// is 2^63, which fits in a uint64, and int64(-q) maps it back exactly.
	negative := total < 0
	magnitude := uint64(total)
	if negative {
		magnitude = -magnitude
	}
	denominator := uint64(totalShares)

	// Sized up front: nearly every holder has a remainder, and growing a
	// slice of millions by append costs more than the arithmetic.
	candidates := make([]candidate, 0, len(holdings))
	var paid uint64 // Σ q_i ≤ magnitude, so it cannot overflow
	for i, h := range holdings {
		if h.Shares == 0 {
			continue
		}
		// shares_i ≤ totalShares, so hi < totalShares and Div64 cannot
		// overflow: the quotient is at most magnitude.
		hi, lo := bits.Mul64(magnitude, uint64(h.Shares))
		q, rem := bits.Div64(hi, lo, denominator)
		paid += q
		out[i].Amount = signed(q, negative)
		if rem != 0 {
			candidates = append(candidates, candidate{rem: rem, id: h.AccountID, index: int32(i)})
		}
	}

	// Σ rem_i = leftover × totalShares and every rem_i < totalShares, so more
	// holders have a nonzero remainder than there are cents left over.
	leftover := magnitude - paid
	if leftover > uint64(len(candidates)) {
		panic(fmt.Sprintf("settlement: allocate: %d cents left over for %d candidates", leftover, len(candidates)))
	}
	k := int(leftover)
	selectLargest(candidates, k)
	cent := int64(1)
	if negative {
		cent = -1
	}
	for _, c := range candidates[:k] {
		out[c.index].Amount += cent
	}

	// Every amount has the sign of total and |amount| ≤ |total|, so the
	// running sum stays between 0 and total and cannot overflow.
	var sum int64
	for _, a := range out {
		sum += a.Amount
	}
	if sum != total {
		panic(fmt.Sprintf("settlement: allocate: paid %d of %d fen", sum, total))
	}
	return out, nil
}

// validateHoldings checks shares and account ids and returns the total
// shares.
func validateHoldings(holdings []Holding) (int64, error) {
	var totalShares int64
	ascending := true
	for i, h := range holdings {
		if h.Shares < 0 {
			return 0, fmt.Errorf("account %d holds %d: %w", h.AccountID, h.Shares, ErrNegativeShares)
		}
		if totalShares > math.MaxInt64-h.Shares {
			return 0, fmt.Errorf("account %d: %w", h.AccountID, ErrSharesOverflow)
		}
		totalShares += h.Shares
		if i > 0 && h.AccountID <= holdings[i-1].AccountID {
			ascending = false
		}
	}
	// Holdings read from the database come ordered by account id, and then
	// strictly ascending ids prove uniqueness in one pass. Otherwise sort a
	// copy of the ids.
	if !ascending {
		ids := make([]int64, len(holdings))
		for i, h := range holdings {
			ids[i] = h.AccountID
		}
		slices.Sort(ids)
		for i := 1; i < len(ids); i++ {
			if ids[i] == ids[i-1] {
				return 0, fmt.Errorf("account %d: %w", ids[i], ErrDuplicateAccount)
			}
		}
	}
	return totalShares, nil
}

// signed returns q with the requested sign; q ≤ 2^63 when negative.
func signed(q uint64, negative bool) int64 {
	if negative {
		return int64(-q)
	}
	return int64(q)
}

// candidate is a holder whose first amount had a fraction cut off.
type candidate struct {
	rem   uint64 // cut-off fraction × totalShares
	id    int64
	index int32 // into holdings and the result
}

// before orders candidates for the leftover cents: larger fraction first,
// then lower account id. Account ids are unique, so this is a strict total
// order and the chosen set is unique whatever algorithm picks it.
func (a candidate) before(b candidate) bool {
	if a.rem != b.rem {
		return a.rem > b.rem
	}
	return a.id < b.id
}

func compareCandidates(a, b candidate) int {
	switch {
	case a.before(b):
		return -1
	case b.before(a):
		return 1
	}
	return 0
}

// selectLargest reorders c so that c[:k] holds the k candidates that come
// first in the before order (in no particular order among themselves). It is
// a quickselect with a median-of-three pivot, expected O(len(c)); after
// 2·log2(n) unlucky rounds it sorts what is left, so the worst case is
// O(n log n), never quadratic.
func selectLargest(c []candidate, k int) {
	if k <= 0 || k >= len(c) {
		return
	}
	lo, hi := 0, len(c) // c[:lo] are chosen, c[hi:] are not
	roundsMax := 2 * bits.Len(uint(len(c)))
	for rounds := 0; hi-lo > 12; rounds++ {
		if rounds == roundsMax {
			break
		}
		p := partition(c, lo, hi)
		switch {
		case p == k:
			return
		case p > k:
			hi = p
		default:
			lo = p + 1
		}
	}
	slices.SortFunc(c[lo:hi], compareCandidates)
}

// partition picks a pivot in c[lo:hi], moves every candidate before it to its
// left and every other one to its right, and returns its final position.
func partition(c []candidate, lo, hi int) int {
	mid := lo + (hi-lo)/2
	last := hi - 1
	// Median of three, left at c[last].
	if c[mid].before(c[lo]) {
		c[mid], c[lo] = c[lo], c[mid]
	}
	if c[last].before(c[lo]) {
		c[last], c[lo] = c[lo], c[last]
	}
	if c[mid].before(c[last]) {
		c[mid], c[last] = c[last], c[mid]
	}
	pivot := c[last]
	store := lo
	for i := lo; i < last; i++ {
		if c[i].before(pivot) {
			c[i], c[store] = c[store], c[i]
			store++
		}
	}
	c[store], c[last] = c[last], c[store]
	return store
}

// FundIncomeFromPer10k returns the fund's distributable income for a day, in
// fen, from the published income per 10,000 shares.
//
// Units: totalShares is in minor units (0.01 share, the same as Holding);
// incomePer10kUnits is the published 4-decimal figure in units of 0.0001 CNY
// per 10,000 shares, so "0.6789" is 6789 (negative on a losing day). Then
//
//	income (CNY) = (totalShares/100) × (incomePer10kUnits/10,000) / 10,000
//	income (fen) = totalShares × incomePer10kUnits / 10^8
//
// e.g. 100,000,000.00 shares at 0.6789 per 10k: 10^10 × 6789 / 10^8 =
// 678,900 fen = 6,789.00 CNY.
//
// Rounding: floor, toward minus infinity, at 0.01, on both signs. DESIGN.md
// says "floor", and floor is the reading that keeps the fund safe on either
// sign: on a gaining day it never distributes more than it earned, on a
// losing day it never deducts less than it lost, so the fund's books never
// owe holders a cut-off residue. The residue (under 0.01) stays with the fund
// and is the caller's to book. Note this differs on purpose from the
// per-holder cut in Allocate, which truncates toward zero and then hands the
// leftover cents back so the fund total is paid exactly.
//
// Errors: ErrNegativeShares, ErrIncomeOverflow when the result does not fit
// in an int64 (the product itself is taken in 128 bits and never overflows).
func FundIncomeFromPer10k(totalShares int64, incomePer10kUnits int64) (int64, error) {
	const divisor = 100_000_000 // 100 (share minor units) × 10,000 (4 decimals) × 10,000 (per 10k) / 100 (fen)
	if totalShares < 0 {
		return 0, fmt.Errorf("fund income for %d shares: %w", totalShares, ErrNegativeShares)
	}
	negative := incomePer10kUnits < 0
	rate := uint64(incomePer10kUnits)
	if negative {
		rate = -rate
	}
	hi, lo := bits.Mul64(uint64(totalShares), rate)
	if hi >= divisor {
		return 0, fmt.Errorf("fund income for %d shares at %d per 10k: %w", totalShares, incomePer10kUnits, ErrIncomeOverflow)
	}
	q, rem := bits.Div64(hi, lo, divisor)
	limit := uint64(math.MaxInt64) // largest magnitude an int64 holds
	if negative {
		limit = 1 << 63
	}
	if negative && rem != 0 && q < limit {
		q++ // floor of a negative number is one further from zero
	} else if negative && rem != 0 {
		q = limit + 1 // floored past MinInt64 (q++ itself could wrap at 2^64 − 1)
	}
	if q > limit {
		return 0, fmt.Errorf("fund income for %d shares at %d per 10k: %w", totalShares, incomePer10kUnits, ErrIncomeOverflow)
	}
	return signed(q, negative), nil
}
