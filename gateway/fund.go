package gateway

import (
	"context"

	"google.golang.org/protobuf/proto"

	"github.com/fundplatform/fund/accounts"
	fundv1 "github.com/fundplatform/fund/gateway/api/fund/v1"
)

// fundServer implements fundv1.FundServiceServer on top of accounts.Service.
// Every method authorises the caller first (the same code runs for native
// gRPC and for REST), then validates, then calls the service, and maps the
// outcome through the error table.
type fundServer struct {
	fundv1.UnimplementedFundServiceServer
	g *Gateway
}

// parseAmount validates an amount field into v.
func parseAmount(s string, v *violations) int64 {
	fen, err := accounts.ParseAmount(s)
	if err != nil {
		v.add("amount", err.Error())
	}
	return fen
}

// orderResult answers an order: the order, or the error with the order in
// its details when there is one (a rejected order, or the stored order of
// an idempotency conflict). A rejected order is a 422 (FailedPrecondition
// with reason INSUFFICIENT_FUNDS or FAST_REDEEM_LIMIT) carrying the order
// with status REJECTED; a retry with the same request id gets the same.
func (s *fundServer) orderResult(o accounts.Order, err error) (*fundv1.Order, error) {
	if err == nil {
		return orderMsg(o), nil
	}
	var extra []proto.Message
	if o.RequestID != "" {
		extra = append(extra, orderMsg(o))
	}
	return nil, statusOf(err, s.g.log, extra...)
}

func (s *fundServer) GetCustomer(ctx context.Context, r *fundv1.GetCustomerRequest) (*fundv1.Customer, error) {
	if _, err := s.g.actOn(ctx, r.GetCustomerId()); err != nil {
		return nil, err
	}
	c, err := s.g.accts.Customer(ctx, accounts.CustomerID(r.GetCustomerId()))
	if err != nil {
		return nil, statusOf(err, s.g.log)
	}
	return customerMsg(c), nil
}

func (s *fundServer) GetHoldings(ctx context.Context, r *fundv1.GetHoldingsRequest) (*fundv1.Holdings, error) {
	if _, err := s.g.actOn(ctx, r.GetCustomerId()); err != nil {
		return nil, err
	}
	c := accounts.CustomerID(r.GetCustomerId())
	h, err := s.g.accts.Holdings(ctx, c)
	if err != nil {
		return nil, statusOf(err, s.g.log)
	}
	left, err := s.g.accts.FastRedeemLeft(ctx, c)
	if err != nil {
		return nil, statusOf(err, s.g.log)
	}
	return holdingsMsg(h, left), nil
}

// simpleOrder is the shape of top-up, subscribe and withdraw.
func (s *fundServer) simpleOrder(ctx context.Context, r *fundv1.OrderRequest,
	place func(context.Context, accounts.CustomerID, string, int64) (accounts.Order, error)) (*fundv1.Order, error) {
	if _, err := s.g.actOn(ctx, r.GetCustomerId()); err != nil {
		return nil, err
	}
	var v violations
	rid := requestID(ctx, r.GetRequestId(), &v)
	amount := parseAmount(r.GetAmount(), &v)
	if err := v.err(); err != nil {
		return nil, err
	}
	return s.orderResult(place(ctx, accounts.CustomerID(r.GetCustomerId()), rid, amount))
}

func (s *fundServer) TopUp(ctx context.Context, r *fundv1.OrderRequest) (*fundv1.Order, error) {
	return s.simpleOrder(ctx, r, s.g.accts.TopUp)
}

func (s *fundServer) Subscribe(ctx context.Context, r *fundv1.OrderRequest) (*fundv1.Order, error) {
	return s.simpleOrder(ctx, r, s.g.accts.Subscribe)
}

func (s *fundServer) Withdraw(ctx context.Context, r *fundv1.OrderRequest) (*fundv1.Order, error) {
	return s.simpleOrder(ctx, r, s.g.accts.Withdraw)
}

func (s *fundServer) Redeem(ctx context.Context, r *fundv1.RedeemRequest) (*fundv1.Order, error) {
	if _, err := s.g.actOn(ctx, r.GetCustomerId()); err != nil {
		return nil, err
	}
	var v violations
	rid := requestID(ctx, r.GetRequestId(), &v)
	amount := parseAmount(r.GetAmount(), &v)
	place := s.g.accts.FastRedeem
	switch r.GetMode() {
	case fundv1.RedeemMode_FAST:
	case fundv1.RedeemMode_STANDARD:
		place = s.g.accts.StandardRedeem
	default:
		v.add("mode", "must be FAST or STANDARD")
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	return s.orderResult(place(ctx, accounts.CustomerID(r.GetCustomerId()), rid, amount))
}

func (s *fundServer) Transfer(ctx context.Context, r *fundv1.TransferRequest) (*fundv1.Order, error) {
	if _, err := s.g.actOn(ctx, r.GetCustomerId()); err != nil {
		return nil, err
	}
	var v violations
	rid := requestID(ctx, r.GetRequestId(), &v)
	amount := parseAmount(r.GetAmount(), &v)
	to := r.GetToCustomerId()
	switch {
	case to <= 0:
		v.add("to_customer_id", "must be a positive customer id")
	case to == r.GetCustomerId():
		v.add("to_customer_id", accounts.ErrSameCustomer.Error())
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	return s.orderResult(s.g.accts.Transfer(ctx, accounts.CustomerID(r.GetCustomerId()), rid, accounts.CustomerID(to), amount))
}

func (s *fundServer) Pay(ctx context.Context, r *fundv1.PayRequest) (*fundv1.Order, error) {
	if _, err := s.g.actOn(ctx, r.GetCustomerId()); err != nil {
		return nil, err
	}
	var v violations
	rid := requestID(ctx, r.GetRequestId(), &v)
	amount := parseAmount(r.GetAmount(), &v)
	if r.GetMerchantId() <= 0 {
		v.add("merchant_id", "must be a positive merchant id")
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	return s.orderResult(s.g.accts.Pay(ctx, accounts.CustomerID(r.GetCustomerId()), rid, accounts.MerchantID(r.GetMerchantId()), amount))
}

func (s *fundServer) ListTransactions(ctx context.Context, r *fundv1.ListTransactionsRequest) (*fundv1.ListTransactionsResponse, error) {
	if _, err := s.g.actOn(ctx, r.GetCustomerId()); err != nil {
		return nil, err
	}
	if n := r.GetPageSize(); n < 0 || n > accounts.HistoryLimitMax {
		var v violations
		v.add("page_size", "must be 1..200 (0 = 20)")
		return nil, v.err()
	}
	page, err := s.g.accts.History(ctx, accounts.HistoryQuery{
		CustomerID: accounts.CustomerID(r.GetCustomerId()), Cursor: r.GetPageToken(), Limit: int(r.GetPageSize()),
	})
	if err != nil {
		return nil, statusOf(err, s.g.log)
	}
	out := &fundv1.ListTransactionsResponse{NextPageToken: page.NextCursor,
		Transactions: make([]*fundv1.Order, len(page.Entries))}
	for i, e := range page.Entries {
		out.Transactions[i] = orderMsg(e.Order)
		out.Transactions[i].Incoming = e.Incoming
	}
	return out, nil
}

func (s *fundServer) GetOrder(ctx context.Context, r *fundv1.GetOrderRequest) (*fundv1.Order, error) {
	c := r.GetCustomerId()
	if c == 0 {
		p, err := s.g.principal(ctx)
		if err != nil {
			return nil, err
		}
		if c = p.Customer; c == 0 {
			var v violations
			v.add("customer_id", "required with a token that names no customer")
			return nil, v.err()
		}
	}
	if _, err := s.g.actOn(ctx, c); err != nil {
		return nil, err
	}
	o, err := s.g.accts.OrderStatus(ctx, accounts.CustomerID(c), r.GetRequestId())
	if err != nil {
		return nil, statusOf(err, s.g.log)
	}
	return orderMsg(o), nil
}
