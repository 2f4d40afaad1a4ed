package server

import (
	"context"
	"fmt"
	"time"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/gateway"
	"github.com/fundplatform/fund/settlement"
)

// Settler serves the gateway's admin settlement calls with a
// settlement.Settler (the settlement's Runner). Settlement's errors pass
// through unchanged: the gateway's error table has a row for each.
type Settler struct{ s settlement.Settler }

var _ gateway.Settler = Settler{}

// NewSettler adapts s to the admin API.
func NewSettler(s settlement.Settler) Settler { return Settler{s: s} }

// Run implements gateway.Settler.
func (g Settler) Run(ctx context.Context, req gateway.SettlementRequest) (gateway.SettlementRun, error) {
	in := settlement.Input{Date: accounts.DateOf(req.Date), PerTenK: req.HasIncomePer10k, IncomeTotal: req.Income,
		IncomePer10k: req.IncomePer10k}
	if req.HasIncomePer10k {
		in.IncomeTotal = 0
	}
	started := time.Now()
	sum, err := g.s.Settle(ctx, in)
	if err != nil {
		return gateway.SettlementRun{}, err
	}
	return runOf(sum, started), nil
}

// Get implements gateway.Settler.
func (g Settler) Get(ctx context.Context, date time.Time) (gateway.SettlementRun, error) {
	st, ok, err := g.s.Status(ctx, date)
	if err != nil {
		return gateway.SettlementRun{}, err
	}
	if !ok {
		return gateway.SettlementRun{}, fmt.Errorf("%s: %w", date.Format(time.DateOnly), gateway.ErrSettlementNotFound)
	}
	if !st.Completed {
		// A run that stopped says why and how to resume it (FAILED with
		// its note); one in progress is RUNNING.
		return gateway.SettlementRun{Date: accounts.DateOf(date), Status: st.Status(), Message: st.Note(),
			HasIncomePer10k: st.Input.PerTenK, Income: st.Input.IncomeTotal, IncomePer10k: st.Input.IncomePer10k,
			StartedAt: st.StartedAt}, nil
	}
	return runOf(st.Summary, time.Time{}), nil
}

// runOf is a finished run as the admin API shows it; started is zero when
// not known (a run looked up rather than made).
func runOf(s settlement.Summary, started time.Time) gateway.SettlementRun {
	d, _ := time.Parse(time.DateOnly, s.Date)
	r := gateway.SettlementRun{Date: d, Status: "COMPLETED", Income: s.FundIncome, IncomePer10k: s.IncomePer10k,
		HasIncomePer10k: true, TotalShares: s.TotalShares, Accounts: s.Holders, SevenDayYield: s.SevenDayYield,
		Message: fmt.Sprintf("custodian file %s (SHA-256 %s)", s.File, s.FileSHA256)}
	if !started.IsZero() {
		r.StartedAt, r.FinishedAt = started, started.Add(s.Took)
	}
	return r
}
