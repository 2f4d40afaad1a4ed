package accounts_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/internal/testseed"
)

func TestParseAmount(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int64
		err  error
	}{
		{"1", 100, nil},
		{"12.3", 1230, nil},
		{"12.30", 1230, nil},
		{"0.01", 1, nil},
		{"+5", 500, nil},
		{"007.5", 750, nil},
		{"10000.00", 1_000_000, nil},
		{"100000000.00", accounts.AmountMaxFen, nil},
		{"0", 0, accounts.ErrAmountNotPositive},
		{"0.00", 0, accounts.ErrAmountNotPositive},
		{"-1", 0, accounts.ErrAmountNotPositive},
		{"-0.01", 0, accounts.ErrAmountNotPositive},
		{"0.001", 0, accounts.ErrAmountTooPrecise},
		{"1.500", 0, accounts.ErrAmountTooPrecise},
		{"1e3", 0, accounts.ErrAmountSyntax},
		{"1E3", 0, accounts.ErrAmountSyntax},
		{"NaN", 0, accounts.ErrAmountSyntax},
		{"Inf", 0, accounts.ErrAmountSyntax},
		{"", 0, accounts.ErrAmountEmpty},
		{" 1", 0, accounts.ErrAmountSyntax},
		{"1 ", 0, accounts.ErrAmountSyntax},
		{"1.", 0, accounts.ErrAmountSyntax},
		{".5", 0, accounts.ErrAmountSyntax},
		{"1,000", 0, accounts.ErrAmountSyntax},
		{"0x10", 0, accounts.ErrAmountSyntax},
		{"--1", 0, accounts.ErrAmountSyntax},
		{"100000000.01", 0, accounts.ErrAmountTooLarge},
		{"99999999999999999999", 0, accounts.ErrAmountTooLarge},
		{"92233720368547758.08", 0, accounts.ErrAmountTooLarge},
		{"999999999999999999999999999999999999999999", 0, accounts.ErrAmountTooLarge},
		{"-999999999999999999999999999999999999999999", 0, accounts.ErrAmountNotPositive},
		{"1.0000000000000000000000000000000000000000001", 0, accounts.ErrAmountTooPrecise},
	}
	for _, tc := range tests {
		got, err := accounts.ParseAmount(tc.in)
		if tc.err == nil {
			if err != nil || got != tc.want {
				t.Errorf("ParseAmount(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
			continue
		}
		if !errors.Is(err, tc.err) || !errors.Is(err, accounts.ErrInvalidAmount) || got != 0 {
			t.Errorf("ParseAmount(%q) = %d, %v; want error %v", tc.in, got, err, tc.err)
		}
		var ae *accounts.AmountError
		if !errors.As(err, &ae) || ae.Input != tc.in {
			t.Errorf("ParseAmount(%q): error %v is not an *AmountError naming the input", tc.in, err)
		}
	}
}

func TestFormatAmount(t *testing.T) {
	t.Parallel()
	for fen, want := range map[int64]string{0: "0.00", 1: "0.01", 1230: "12.30", 1_000_000: "10000.00",
		-5: "-0.05", math.MaxInt64: "92233720368547758.07"} {
		if got := accounts.FormatAmount(fen); got != want {
			t.Errorf("FormatAmount(%d) = %q, want %q", fen, got, want)
		}
	}
}

// TestAmountRoundTrip: every valid amount survives Format then Parse.
func TestAmountRoundTrip(t *testing.T) {
	t.Parallel()
	seed := testseed.Seed(t)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := 0; i < 10_000; i++ {
		fen := 1 + r.Int64N(accounts.AmountMaxFen)
		got, err := accounts.ParseAmount(accounts.FormatAmount(fen))
		if err != nil || got != fen {
			t.Fatalf("round trip of %d: %d, %v", fen, got, err)
		}
	}
}

// FormatAmount agrees with decimal's fixed-point formatting everywhere:
// the edges of int64, small values of both signs, and random ones.
func TestFormatAmountMatchesDecimal(t *testing.T) {
	t.Parallel()
	seed := testseed.Seed(t)
	rng := rand.New(rand.NewPCG(seed, 1))
	check := func(fen int64) {
		if got, want := accounts.FormatAmount(fen), decimal.New(fen, -2).StringFixed(2); got != want {
			t.Fatalf("FormatAmount(%d) = %q, decimal says %q (seed %d)", fen, got, want, seed)
		}
	}
	for _, fen := range []int64{0, 1, -1, 9, -9, 10, -10, 99, -99, 100, -100, 101, math.MaxInt64, math.MinInt64,
		math.MaxInt64 - 1, math.MinInt64 + 1, accounts.AmountMaxFen, -accounts.AmountMaxFen} {
		check(fen)
	}
	for range 100_000 {
		fen := rng.Int64() >> rng.IntN(63)
		if rng.IntN(2) == 0 {
			fen = -fen
		}
		check(fen)
	}
}
