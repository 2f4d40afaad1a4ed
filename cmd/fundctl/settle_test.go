package main

import (
	"context"
	"errors"
	"testing"

	"github.com/fundplatform/fund/settlement"
)

// TestSettleRunRefusesBadInput: the command checks its arguments before it
// opens a database (none is given here), so bad input changes nothing.
func TestSettleRunRefusesBadInput(t *testing.T) {
	for _, c := range []struct {
		args []string
		want error
	}{
		{[]string{"--date", "2026-13-01", "--income", "1.00"}, settlement.ErrInvalidDate},
		{[]string{"--date", "2026-11-11"}, settlement.ErrIncomeForm},
		{[]string{"--date", "2026-11-11", "--income", "1.00", "--income-per-10k", "0.6543"}, settlement.ErrIncomeForm},
		{[]string{"--date", "2026-11-11", "--income", "1.001"}, settlement.ErrInvalidIncome},
		{[]string{"--date", "2026-11-11", "--income-per-10k", "0.65431"}, settlement.ErrInvalidIncome},
		{[]string{"--date", "2026-11-11", "--income", "99999999999999999999"}, settlement.ErrInvalidIncome},
	} {
		err := run(context.Background(), append([]string{"settle", "run", "--dsn", "postgres://nowhere.invalid/x"}, c.args...))
		if !errors.Is(err, c.want) {
			t.Errorf("%v: %v, want %v", c.args, err, c.want)
		} else {
			t.Logf("%v: %v", c.args, err)
		}
	}
}
