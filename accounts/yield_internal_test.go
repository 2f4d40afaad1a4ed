package accounts

import (
	"math/big"
	"testing"
)

func TestRoundHalfUp(t *testing.T) {
	// x / 10, halves towards +infinity.
	for x, want := range map[int64]int64{0: 0, 4: 0, 5: 1, 6: 1, 15: 2, 25: 3, -4: 0, -5: 0, -6: -1, -15: -1, -25: -2, -26: -3} {
		if got := roundHalfUp(big.NewInt(x), big.NewInt(10)); got.Int64() != want {
			t.Errorf("roundHalfUp(%d, 10) = %s, want %d", x, got, want)
		}
	}
}

// TestFloor7thRoot checks r^7 <= x < (r+1)^7 around exact powers and for
// numbers of the size SevenDayYield takes roots of.
func TestFloor7thRoot(t *testing.T) {
	var xs []*big.Int
	for _, r := range []int64{0, 1, 2, 3, 10, 127, 128, 1000, 123456} {
		p := new(big.Int).Exp(big.NewInt(r), big.NewInt(7), nil)
		for _, d := range []int64{-1, 0, 1} {
			if x := new(big.Int).Add(p, big.NewInt(d)); x.Sign() >= 0 {
				xs = append(xs, x)
			}
		}
	}
	for e := int64(60); e <= 80; e++ {
		x := pow10(e)
		xs = append(xs, x, new(big.Int).Sub(x, big.NewInt(1)), new(big.Int).Mul(x, big.NewInt(37)))
	}
	seven := big.NewInt(7)
	for _, x := range xs {
		r := floor7thRoot(x)
		lo := new(big.Int).Exp(r, seven, nil)
		hi := new(big.Int).Exp(new(big.Int).Add(r, big.NewInt(1)), seven, nil)
		if lo.Cmp(x) > 0 || hi.Cmp(x) <= 0 {
			t.Errorf("floor7thRoot(%s) = %s", x, r)
		}
	}
}
