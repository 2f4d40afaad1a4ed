package accounts_test

import (
	"errors"
	"testing"

	"github.com/fundplatform/fund/accounts"
)

// TestSevenDayYieldGolden checks the 7-day annualised yield against values
// worked out by hand. With x_i = r_i / 10,000 (r_i in CNY per 10,000 shares),
// z = (365/7) x sum of ln(1 + x_i) and Q = e^z, the yield is (Q - 1) x 100%;
// ln(1 + x) = x - x^2/2 + x^3/3 - ..., e^z = 1 + z + z^2/2 + z^3/6 + z^4/24 +
// .... Each comment carries enough digits to show which way the third
// decimal rounds (halves go up).
func TestSevenDayYieldGolden(t *testing.T) {
	tests := []struct {
		name string
		in   [7]int64 // income per 10,000 shares, units of 0.0001 CNY
		want int64    // thousandths of a percent
	}{
		// No income: Q = 1^(365/7) = 1, yield 0.000%.
		{"no income", [7]int64{}, 0},
		// 1.0000 a day: x = 0.0001, ln(1.0001) = 0.0001 - 0.000000005 +
		// 0.00000000000033 = 0.00009999500033; z = 365 x that =
		// 0.036498175122 (seven days times 365/7 is 365 days);
		// e^z = 1 + 0.036498175122 + 0.000666058394 + 0.000008103305 +
		// 0.000000073939 + 0.00000000054 = 1.0371724113; yield 3.71724% -> 3.717.
		{"1.0000 a day", [7]int64{10000, 10000, 10000, 10000, 10000, 10000, 10000}, 3717},
		// A week of an ordinary fund: 0.6512, 0.6498, 0.6530, 0.6475, 0.6455,
		// 0.6470, 0.6501. The r_i sum to 4.5441, so the x_i sum to
		// 0.00045441; the n_i^2 sum to 294,987,599, so the x_i^2/2 sum to
		// 0.0000000147494; the x_i^3/3 sum to 0.00000000000064. Sum of ln =
		// 0.00045441 - 0.0000000147494 + 0.0000000000006 = 0.0004543952512;
		// z = 365/7 x that = 0.02369346667; e^z = 1 + 0.02369346667 +
		// 0.00028069018 + 0.00000221684 + 0.00000001313 + 0.00000000006 =
		// 1.02397638688; yield 2.39764% -> 2.398.
		{"ordinary week", [7]int64{6512, 6498, 6530, 6475, 6455, 6470, 6501}, 2398},
		// Order does not matter: the product is the same.
		{"ordinary week reversed", [7]int64{6501, 6470, 6455, 6475, 6530, 6498, 6512}, 2398},
		// -0.5000 a day: x = -0.00005, ln(0.99995) = -0.00005 - 0.00000000125 -
		// 0.0000000000000417 = -0.0000500012500417; z = 365 x that =
		// -0.01825045626522; e^z = 1 - 0.01825045626522 + 0.00016653957694 -
		// 0.00000101314109 + 0.00000000462257 - 0.00000000001687 =
		// 0.98191507477633; yield -1.80849% -> -1.808.
		{"-0.5000 a day", [7]int64{-5000, -5000, -5000, -5000, -5000, -5000, -5000}, -1808},
		// A losing day among gains: 1.2000, 0.9000, -0.3000, 0.8000, 0.7000,
		// 0, 1.0000. Sum of x = 0.00043; sum of x^2/2 = (1.44 + 0.81 + 0.09 +
		// 0.64 + 0.49 + 1.00) x 1e-8 / 2 = 2.235e-8; sum of x^3/3 =
		// (1.728 + 0.729 - 0.027 + 0.512 + 0.343 + 1) x 1e-12 / 3 = 1.43e-12:
		// sum of ln = 0.00043 - 0.00000002235 + 0.0000000000014 =
		// 0.0004299776514; z = 0.02242026325; e^z = 1 + 0.02242026325 +
		// 0.00025133410 + 0.00000187833 + 0.00000001053 + 0.00000000005 =
		// 1.02267348626; yield 2.26735% -> 2.267.
		{"a losing day", [7]int64{12000, 9000, -3000, 8000, 7000, 0, 10000}, 2267},
		// The largest income allowed every day: 1.01^365. ln(1.01) =
		// 0.00995033085; z = 365 x that = 3.6318707614; e^z =
		// e^3.6 x e^0.0318707614 = 36.598234444 x 1.032384073 = 37.7834343;
		// yield 3,678.34343% -> 3678.343.
		{"largest income", [7]int64{1000000, 1000000, 1000000, 1000000, 1000000, 1000000, 1000000}, 3678343},
		// The largest loss allowed every day: 0.99^365. ln(0.99) =
		// -0.01005033585; z = -3.6683725865; e^z = e^-3.6 x e^-0.0683725865 =
		// 0.0273237224 x 0.9339124456 = 0.0255179645; yield -97.448204% -> -97.448.
		{"largest loss", [7]int64{-1000000, -1000000, -1000000, -1000000, -1000000, -1000000, -1000000}, -97448},
		// One day of 0.0001: x = 1e-8, z = 365/7 x 1e-8 = 5.2142857e-7;
		// yield 0.0000521% -> 0.000.
		{"smallest income", [7]int64{1}, 0},
		// Rounding just below a half: one day of 0.0163, x = 0.00000163,
		// ln = 0.00000163 - 0.0000000000013285 = 0.0000016299986715;
		// z = 365/7 x that = 0.00008499278787; e^z - 1 = z + z^2/2 =
		// 0.00008499278787 + 0.00000000361189 = 0.00008499639976 (z^3/6 ~ 1e-13);
		// yield 0.0084996% -> 0.008.
		{"just below a half", [7]int64{163}, 8},
		// Rounding just above a half: one day of 0.7341, x = 0.00007341,
		// ln = 0.00007341 - 0.0000000026945 + 0.00000000000013 =
		// 0.00007340730562; z = 0.00382766665007; e^z - 1 = z + z^2/2 + z^3/6 +
		// z^4/24 = 0.00382766665007 + 0.00000732551599 + 0.00000000934654 +
		// 0.00000000000894 = 0.00383500152154; yield 0.38350015% -> 0.384.
		{"just above a half", [7]int64{7341}, 384},
		// A loss just short of a half: one day of -0.0374, x = -0.00000374,
		// ln = -0.00000374 - 0.0000000000069938 = -0.0000037400069938;
		// z = -0.00019501465039; e^z - 1 = z + z^2/2 + z^3/6 =
		// -0.00019501465039 + 0.00000001901536 - 0.00000000000124 =
		// -0.00019499563627; yield -0.0194996% -> -0.019.
		{"loss just short of a half", [7]int64{-374}, -19},
		// A loss just past a half: one day of -0.1199, x = -0.00001199,
		// ln = -0.00001199 - 0.0000000000718801 - 0.0000000000000006 =
		// -0.0000119900718807; z = -0.00062519660520; e^z - 1 = z + z^2/2 +
		// z^3/6 = -0.00062519660520 + 0.00000019543540 - 0.00000000004073 =
		// -0.00062500121053; yield -0.062500121% -> -0.063 (nearest, not a tie).
		{"loss just past a half", [7]int64{-1199}, -63},
	}
	for _, tc := range tests {
		got, err := accounts.SevenDayYield(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("%s: SevenDayYield(%v) = %s, %v; want %s", tc.name, tc.in,
				accounts.FormatYield(got), err, accounts.FormatYield(tc.want))
		}
	}
}

func TestSevenDayYieldRange(t *testing.T) {
	for _, r := range []int64{accounts.IncomePer10kMax + 1, -accounts.IncomePer10kMax - 1, 1 << 62, -1 << 62} {
		in := [7]int64{6512, 6512, r, 6512, 6512, 6512, 6512}
		if y, err := accounts.SevenDayYield(in); !errors.Is(err, accounts.ErrIncomePer10kRange) {
			t.Errorf("SevenDayYield(%v) = %d, %v; want ErrIncomePer10kRange", in, y, err)
		} else {
			t.Logf("%d: %v", r, err)
		}
	}
}

func TestFormatYield(t *testing.T) {
	for v, want := range map[int64]string{0: "0.000", 2398: "2.398", -19: "-0.019", 3678343: "3678.343", 5: "0.005"} {
		if got := accounts.FormatYield(v); got != want {
			t.Errorf("FormatYield(%d) = %q, want %q", v, got, want)
		}
	}
	for v, want := range map[int64]string{0: "0.0000", 6512: "0.6512", -5000: "-0.5000", 1000000: "100.0000"} {
		if got := accounts.FormatIncomePer10k(v); got != want {
			t.Errorf("FormatIncomePer10k(%d) = %q, want %q", v, got, want)
		}
	}
}
