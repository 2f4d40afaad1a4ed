package gateway

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/shopspring/decimal"

	"github.com/fundplatform/fund/accounts"
	fundv1 "github.com/fundplatform/fund/gateway/api/fund/v1"
)

// Settler runs the nightly settlement for the admin API. The settlement
// service implements it; a gateway without one answers 501.
type Settler interface {
	// Run settles a business date (idempotently: a re-run returns the
	// stored run). Errors the gateway maps: settlement's (ErrTooEarly,
	// ErrOutOfOrder, ErrRunConflict, ErrNoShares, the input's errors...)
	// and accounts' by the table, ErrSettlementNotFound; anything else is
	// a 500.
	Run(ctx context.Context, req SettlementRequest) (SettlementRun, error)
	// Get returns a date's run or ErrSettlementNotFound.
	Get(ctx context.Context, date time.Time) (SettlementRun, error)
}

// SettlementRequest asks for a date's settlement with the fund's income,
// either as the fund total (Income, fen; may be negative) or per 10,000
// shares (IncomePer10k in 0.0001 CNY, when HasIncomePer10k).
type SettlementRequest struct {
	Date            time.Time
	Income          int64
	IncomePer10k    int64
	HasIncomePer10k bool
	RequestID       string
}

// SettlementRun is a date's settlement as the admin API shows it; amounts
// in minor units.
type SettlementRun struct {
	Date            time.Time
	Status          string // e.g. RUNNING, COMPLETED, FAILED
	Income          int64  // fund total distributed, fen
	IncomePer10k    int64  // 0.0001 CNY
	HasIncomePer10k bool
	TotalShares     int64 // 0.01 shares eligible
	Accounts        int64
	SevenDayYield   string // percent, 3 decimals; "" when none
	StartedAt       time.Time
	FinishedAt      time.Time
	Message         string
}

// Reconciler reports reconciliation's view for the admin API. The
// reconciliation workers implement it; a gateway without one answers 501.
type Reconciler interface {
	Report(ctx context.Context) (ReconReport, error)
}

// ReconReport is reconciliation's current view; amounts in minor units.
type ReconReport struct {
	GeneratedAt      time.Time
	Breaks           []ReconBreak
	EventsProcessed  int64
	ConsumerLag      int64
	OpenBreaksByKind map[string]int64
}

// ReconBreak is one difference found.
type ReconBreak struct {
	Kind       string
	Ref        string
	Detail     string
	Amount     int64 // fen, may be negative
	DetectedAt time.Time
}

// adminServer implements fundv1.AdminServiceServer: admin scope only.
type adminServer struct {
	fundv1.UnimplementedAdminServiceServer
	g      *Gateway
	clocks clockMoves // the test clock's moves by request id
}

func (s *adminServer) OpenCustomer(ctx context.Context, r *fundv1.OpenCustomerRequest) (*fundv1.Customer, error) {
	if _, err := s.g.admin(ctx); err != nil {
		return nil, err
	}
	var v violations
	rid := requestID(ctx, r.GetRequestId(), &v)
	// Control characters (NUL above all, which Postgres text cannot hold)
	// are no part of a name: refused here as input, not failed as storage.
	if strings.IndexFunc(r.GetName(), unicode.IsControl) >= 0 {
		v.add("name", "must not contain control characters")
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	c, err := s.g.accts.OpenCustomer(ctx, rid, r.GetName())
	if err != nil {
		return nil, statusOf(err, s.g.log)
	}
	return customerMsg(c), nil
}

func (s *adminServer) status(ctx context.Context, r *fundv1.CustomerAction,
	change func(context.Context, accounts.CustomerID) (accounts.Customer, error)) (*fundv1.Customer, error) {
	if _, err := s.g.admin(ctx); err != nil {
		return nil, err
	}
	if r.GetCustomerId() <= 0 {
		var v violations
		v.add("customer_id", "must be a positive customer id")
		return nil, v.err()
	}
	c, err := change(ctx, accounts.CustomerID(r.GetCustomerId()))
	if err != nil {
		return nil, statusOf(err, s.g.log)
	}
	return customerMsg(c), nil
}

func (s *adminServer) FreezeCustomer(ctx context.Context, r *fundv1.CustomerAction) (*fundv1.Customer, error) {
	return s.status(ctx, r, s.g.accts.Freeze)
}

func (s *adminServer) UnfreezeCustomer(ctx context.Context, r *fundv1.CustomerAction) (*fundv1.Customer, error) {
	return s.status(ctx, r, s.g.accts.Unfreeze)
}

func (s *adminServer) CloseCustomer(ctx context.Context, r *fundv1.CustomerAction) (*fundv1.Customer, error) {
	return s.status(ctx, r, s.g.accts.Close)
}

func (s *adminServer) RegisterMerchant(ctx context.Context, r *fundv1.RegisterMerchantRequest) (*fundv1.Merchant, error) {
	if _, err := s.g.admin(ctx); err != nil {
		return nil, err
	}
	if m := r.GetMerchantId(); m <= 0 || m >= int64(accounts.MerchantIDMax) {
		var v violations
		v.add("merchant_id", fmt.Sprintf("must be 1..%d", int64(accounts.MerchantIDMax)-1))
		return nil, v.err()
	}
	if err := s.g.accts.RegisterMerchant(ctx, accounts.MerchantID(r.GetMerchantId())); err != nil {
		return nil, statusOf(err, s.g.log)
	}
	return &fundv1.Merchant{MerchantId: r.GetMerchantId()}, nil
}

// parseSignedFixed parses a signed decimal with at most places decimals
// into units of 10^-places, within ±max.
func parseSignedFixed(s string, places int32, max int64) (int64, error) {
	if s == "" || len(s) > 32 || strings.ContainsAny(s, "eE_ \t") {
		return 0, fmt.Errorf("%q: want a decimal number with at most %d decimals", s, places)
	}
	d, err := decimal.NewFromString(s)
	if err != nil {
		return 0, fmt.Errorf("%q: want a decimal number with at most %d decimals", s, places)
	}
	u := d.Shift(places)
	if !u.IsInteger() {
		return 0, fmt.Errorf("%q: more than %d decimals", s, places)
	}
	if u.Abs().GreaterThan(decimal.NewFromInt(max)) {
		return 0, fmt.Errorf("%q: beyond ±%s", s, decimal.New(max, -places).StringFixed(places))
	}
	return u.IntPart(), nil
}

func parseDate(field, s string, v *violations) time.Time {
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		v.add(field, "want a date YYYY-MM-DD")
	}
	return d
}

func (s *adminServer) RunSettlement(ctx context.Context, r *fundv1.RunSettlementRequest) (*fundv1.Settlement, error) {
	if _, err := s.g.admin(ctx); err != nil {
		return nil, err
	}
	var v violations
	req := SettlementRequest{Date: parseDate("date", r.GetDate(), &v)}
	req.RequestID = strings.TrimSpace(firstMD(ctx, mdIdempotencyKey))
	if req.RequestID == "" {
		req.RequestID = r.GetRequestId()
	}
	switch in := r.GetIncomeInput().(type) {
	case *fundv1.RunSettlementRequest_Income:
		fen, err := parseSignedFixed(in.Income, 2, accounts.AmountMaxFen)
		if err != nil {
			v.add("income", err.Error())
		}
		req.Income = fen
	case *fundv1.RunSettlementRequest_IncomePer_10K:
		u, err := parseSignedFixed(in.IncomePer_10K, 4, accounts.IncomePer10kMax)
		if err != nil {
			v.add("income_per_10k", err.Error())
		}
		req.IncomePer10k, req.HasIncomePer10k = u, true
	default:
		v.add("income", "give income or income_per_10k")
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	if s.g.cfg.Settler == nil {
		return nil, statusOf(fmt.Errorf("settlement: %w", ErrNotConfigured), s.g.log)
	}
	run, err := s.g.cfg.Settler.Run(ctx, req)
	if err != nil {
		return nil, statusOf(err, s.g.log)
	}
	return settlementMsg(run), nil
}

func (s *adminServer) GetSettlement(ctx context.Context, r *fundv1.GetSettlementRequest) (*fundv1.Settlement, error) {
	if _, err := s.g.admin(ctx); err != nil {
		return nil, err
	}
	var v violations
	date := parseDate("date", r.GetDate(), &v)
	if err := v.err(); err != nil {
		return nil, err
	}
	if s.g.cfg.Settler == nil {
		return nil, statusOf(fmt.Errorf("settlement: %w", ErrNotConfigured), s.g.log)
	}
	run, err := s.g.cfg.Settler.Get(ctx, date)
	if err != nil {
		return nil, statusOf(err, s.g.log)
	}
	return settlementMsg(run), nil
}

func (s *adminServer) GetReconReport(ctx context.Context, _ *fundv1.GetReconReportRequest) (*fundv1.ReconReport, error) {
	if _, err := s.g.admin(ctx); err != nil {
		return nil, err
	}
	if s.g.cfg.Reconciler == nil {
		return nil, statusOf(fmt.Errorf("reconciliation: %w", ErrNotConfigured), s.g.log)
	}
	rep, err := s.g.cfg.Reconciler.Report(ctx)
	if err != nil {
		return nil, statusOf(err, s.g.log)
	}
	out := &fundv1.ReconReport{GeneratedAt: timestamp(rep.GeneratedAt), EventsProcessed: rep.EventsProcessed,
		ConsumerLag: rep.ConsumerLag, OpenBreaksByKind: rep.OpenBreaksByKind, Ok: len(rep.Breaks) == 0}
	for _, b := range rep.Breaks {
		out.Breaks = append(out.Breaks, &fundv1.ReconBreak{Kind: b.Kind, Ref: b.Ref, Detail: b.Detail,
			Amount: signedAmount(b.Amount), DetectedAt: timestamp(b.DetectedAt)})
	}
	return out, nil
}

func signedAmount(fen int64) string { return decimal.New(fen, -2).StringFixed(2) }

func settlementMsg(r SettlementRun) *fundv1.Settlement {
	m := &fundv1.Settlement{Date: dateString(r.Date), Status: r.Status, Income: signedAmount(r.Income),
		TotalShares: signedAmount(r.TotalShares), Accounts: r.Accounts, SevenDayYield: r.SevenDayYield,
		StartedAt: timestamp(r.StartedAt), FinishedAt: timestamp(r.FinishedAt), Message: r.Message}
	if r.HasIncomePer10k {
		m.IncomePer_10K = accounts.FormatIncomePer10k(r.IncomePer10k)
	}
	return m
}
