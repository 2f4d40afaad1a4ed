package loadtest

import (
	"math"
)

// The amounts the generator draws, in fen, per operation (uniform in
// [lo, hi]); Budget sizes the setup's balances against them.
var opAmounts = map[Op][2]int64{
	OpSubscribe:      {100, 10_000}, // 1.00 .. 100.00
	OpFastRedeem:     {1, 2_000},
	OpStandardRedeem: {1, 2_000},
	OpTransfer:       {1, 5_000},
	OpPay:            {1, 3_000},
}

// FastRedeemDailyCap is the platform's default fast-redemption limit per
// customer per natural day (10,000.00 CNY, the 2018 rule), in fen.
const FastRedeemDailyCap = 1_000_000

// budgetSigmas is how far above its mean the busiest customer's count of
// each operation may come by chance and still be covered.
const budgetSigmas = 5

// Budget is what the busiest customer of a run needs so that none of its
// orders is refused for want of money: Cash for its subscriptions and
// transfers, Shares (confirmed) for its redemptions and payments, and the
// fast redemptions it sends in the run's one business day.
type Budget struct {
	Cash, Shares int64 // fen
	FastRedeem   int64 // fen, to compare with FastRedeemDailyCap
	// BusiestShare is the busiest customer's share of the requests.
	BusiestShare float64
}

// BudgetFor sizes the busiest customer's needs in a run of expected
// requests (Profile.Expected, of the part) over customers drawn with Zipf
// skew s: each operation's count bounded at its mean + budgetSigmas
// standard deviations (a Poisson count), times the operation's largest
// amount. Money the customer receives (transfers in) is not counted: the
// budget errs on the safe side.
func BudgetFor(expected float64, mix Mix, customers int, skew float64) Budget {
	if customers < 1 {
		return Budget{}
	}
	if skew == 0 {
		skew = ZipfSkewDefault
	}
	// rand.Zipf: P(k) ∝ (zipfOffset + k)^-s for k in [0, customers).
	sum := 0.0
	for k := 0; k < customers; k++ {
		sum += math.Pow(zipfOffset+float64(k), -skew)
	}
	b := Budget{BusiestShare: math.Pow(zipfOffset, -skew) / sum}
	total := 0
	for _, w := range mix {
		total += w
	}
	if total == 0 {
		return b
	}
	for op, w := range mix {
		amt, ok := opAmounts[op]
		if !ok || w == 0 {
			continue
		}
		mean := expected * b.BusiestShare * float64(w) / float64(total)
		count := int64(math.Ceil(mean + budgetSigmas*math.Sqrt(mean)))
		need := count * amt[1]
		switch op {
		case OpSubscribe, OpTransfer:
			b.Cash += need
		default:
			b.Shares += need
		}
		if op == OpFastRedeem {
			b.FastRedeem = need
		}
	}
	return b
}
