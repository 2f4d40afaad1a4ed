package gateway

import (
	"context"
	"errors"
	"log/slog"

	"github.com/sony/gobreaker/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/gateway/auth"
	"github.com/fundplatform/fund/ledger"
	ledgergrpc "github.com/fundplatform/fund/ledger/grpc"
	"github.com/fundplatform/fund/settlement"
)

// errorDomain is the ErrorInfo domain of every error the gateway answers.
const errorDomain = "fund.v1"

// Errors of the gateway itself.
var (
	// ErrSettlementNotFound: no settlement run for the date asked.
	ErrSettlementNotFound = errors.New("settlement not found")
	// ErrNotConfigured: the admin call needs a worker this process has not
	// been given (settlement or reconciliation).
	ErrNotConfigured = errors.New("not configured in this process")
)

// errorMapping is one row of the error table.
type errorMapping struct {
	err    error
	code   codes.Code
	reason string // ErrorInfo reason, SCREAMING_SNAKE
	field  string // for InvalidArgument: the request field at fault
}

// errorTable is the one place where domain errors become gRPC codes, and so
// (through grpc-gateway's mapping plus httpStatus) HTTP statuses:
// InvalidArgument 400, Unauthenticated 401, PermissionDenied 403, NotFound
// 404, AlreadyExists 409, FailedPrecondition 422, ResourceExhausted 429,
// Unavailable 503, DeadlineExceeded 504. The first row whose error matches
// (errors.Is) wins, so the more specific rows come first. An error no row
// matches is a bug: Internal, logged, and its text is not shown.
var errorTable = [...]errorMapping{
	// The client's input.
	{accounts.ErrInvalidAmount, codes.InvalidArgument, "INVALID_AMOUNT", "amount"},
	{accounts.ErrInvalidRequestID, codes.InvalidArgument, "INVALID_REQUEST_ID", "request_id"},
	{accounts.ErrInvalidName, codes.InvalidArgument, "INVALID_NAME", "name"},
	{accounts.ErrInvalidCursor, codes.InvalidArgument, "INVALID_PAGE_TOKEN", "page_token"},
	{accounts.ErrSameCustomer, codes.InvalidArgument, "SAME_CUSTOMER", "to_customer_id"},
	{accounts.ErrIncomePer10kRange, codes.InvalidArgument, "INCOME_PER_10K_RANGE", "income_per_10k"},
	// A settlement's input ("income" is the request's oneof of income and
	// income_per_10k).
	{settlement.ErrInvalidDate, codes.InvalidArgument, "SETTLEMENT_INVALID_DATE", "date"},
	{settlement.ErrIncomeForm, codes.InvalidArgument, "SETTLEMENT_INCOME_FORM", "income"},
	{settlement.ErrInvalidIncome, codes.InvalidArgument, "SETTLEMENT_INVALID_INCOME", "income"},
	{settlement.ErrIncomeOverflow, codes.InvalidArgument, "SETTLEMENT_INCOME_OVERFLOW", "income"},
	// Authentication: every token problem is a 401.
	{auth.ErrNoToken, codes.Unauthenticated, "NO_TOKEN", ""},
	{auth.ErrExpired, codes.Unauthenticated, "TOKEN_EXPIRED", ""},
	{auth.ErrInvalidToken, codes.Unauthenticated, "INVALID_TOKEN", ""},
	// What does not exist.
	{accounts.ErrCustomerNotFound, codes.NotFound, "CUSTOMER_NOT_FOUND", ""},
	{accounts.ErrOrderNotFound, codes.NotFound, "ORDER_NOT_FOUND", ""},
	{accounts.ErrMerchantNotFound, codes.NotFound, "MERCHANT_NOT_FOUND", ""},
	{ErrSettlementNotFound, codes.NotFound, "SETTLEMENT_NOT_FOUND", ""},
	// Idempotency: a request id reused for something else.
	{accounts.ErrIdempotencyConflict, codes.AlreadyExists, "IDEMPOTENCY_CONFLICT", ""},
	{accounts.ErrRecordConflict, codes.AlreadyExists, "RECORD_CONFLICT", ""},
	{settlement.ErrRunConflict, codes.AlreadyExists, "SETTLEMENT_RUN_CONFLICT", ""},
	// Refused by the state of the money or the customer: 422.
	{accounts.ErrInsufficientFunds, codes.FailedPrecondition, "INSUFFICIENT_FUNDS", ""},
	{accounts.ErrFastRedeemLimit, codes.FailedPrecondition, "FAST_REDEEM_LIMIT", ""},
	{accounts.ErrCustomerFrozen, codes.FailedPrecondition, "CUSTOMER_FROZEN", ""},
	{accounts.ErrCustomerClosed, codes.FailedPrecondition, "CUSTOMER_CLOSED", ""},
	{accounts.ErrBalanceNotZero, codes.FailedPrecondition, "BALANCE_NOT_ZERO", ""},
	{accounts.ErrInvalidTransition, codes.FailedPrecondition, "INVALID_TRANSITION", ""},
	{accounts.ErrYieldGap, codes.FailedPrecondition, "YIELD_GAP", ""},
	// A settlement the state of the ledger or of earlier runs refuses:
	// too early (the date's cut-off has not passed), out of order (a gap:
	// an earlier date is unsettled or a later one already ran), income
	// with no eligible shares to pay it to, a shard a live ledger process
	// owns (the run was not allowed to take it), the ledger's shard count
	// not the run's. Settlement's other errors (overflowing or negative
	// shares, a changed snapshot, a missing pending transfer) are broken
	// invariants: no row, so a 500 that is logged.
	{settlement.ErrTooEarly, codes.FailedPrecondition, "SETTLEMENT_TOO_EARLY", ""},
	{settlement.ErrOutOfOrder, codes.FailedPrecondition, "SETTLEMENT_OUT_OF_ORDER", ""},
	{settlement.ErrNoShares, codes.FailedPrecondition, "SETTLEMENT_NO_ELIGIBLE_SHARES", ""},
	{settlement.ErrShardBusy, codes.FailedPrecondition, "SETTLEMENT_SHARD_BUSY", ""},
	{settlement.ErrShardCount, codes.FailedPrecondition, "SETTLEMENT_SHARD_COUNT", ""},
	// A shard that cannot answer now: safe to retry with the same request id.
	{gobreaker.ErrOpenState, codes.Unavailable, "BREAKER_OPEN", ""},
	{gobreaker.ErrTooManyRequests, codes.Unavailable, "BREAKER_HALF_OPEN", ""},
	{ledger.ErrClosed, codes.Unavailable, "SHARD_UNAVAILABLE", ""},
	{ledger.ErrFenced, codes.Unavailable, "SHARD_MOVED", ""},
	{ledger.ErrCommitFailed, codes.Unavailable, "COMMIT_FAILED", ""},
	{ledger.ErrNoOwner, codes.Unavailable, "SHARD_NO_OWNER", ""},
	{ledger.ErrNotOwner, codes.Unavailable, "SHARD_MOVED", ""},
	{ledgergrpc.ErrClientClosed, codes.Unavailable, "SHUTTING_DOWN", ""},
	{ErrNotConfigured, codes.Unimplemented, "NOT_CONFIGURED", ""},
	{context.DeadlineExceeded, codes.DeadlineExceeded, "DEADLINE_EXCEEDED", ""},
	{context.Canceled, codes.Canceled, "CANCELED", ""},
}

// statusOf turns an error of the domain (or of the gateway) into a gRPC
// status by the table, with an ErrorInfo and, for input errors, a
// BadRequest field violation. extra details (such as a rejected order) are
// appended.
func statusOf(err error, logger *slog.Logger, extra ...proto.Message) error {
	if err == nil {
		return nil
	}
	for _, m := range errorTable {
		if !errors.Is(err, m.err) {
			continue
		}
		details := []proto.Message{&errdetails.ErrorInfo{Reason: m.reason, Domain: errorDomain}}
		if m.code == codes.InvalidArgument && m.field != "" {
			details = append(details, &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
				{Field: m.field, Description: err.Error()},
			}})
		}
		details = append(details, extra...)
		return withDetails(status.New(m.code, err.Error()), details...)
	}
	// A transport failure towards a ledger owner (connection refused, reset)
	// comes back as a bare gRPC status: the shard is unreachable.
	if st, ok := status.FromError(err); ok && st.Code() == codes.Unavailable {
		return withDetails(status.New(codes.Unavailable, "ledger shard unreachable; retry with the same request id"),
			&errdetails.ErrorInfo{Reason: "SHARD_UNREACHABLE", Domain: errorDomain})
	}
	if logger != nil {
		logger.Error("unmapped error", "err", err)
	}
	return status.Error(codes.Internal, "internal error")
}

func withDetails(st *status.Status, details ...proto.Message) error {
	ds := make([]protoadapt.MessageV1, len(details))
	for i, d := range details {
		ds[i] = protoadapt.MessageV1Of(d)
	}
	if s, err := st.WithDetails(ds...); err == nil {
		return s.Err()
	}
	return st.Err()
}

// violations collects a request's field violations: every bad field is
// reported at once, not only the first.
type violations []*errdetails.BadRequest_FieldViolation

func (v *violations) add(field, description string) {
	*v = append(*v, &errdetails.BadRequest_FieldViolation{Field: field, Description: description})
}

// err is nil when there are none, InvalidArgument with a BadRequest
// otherwise.
func (v violations) err() error {
	if len(v) == 0 {
		return nil
	}
	msg := v[0].Field + ": " + v[0].Description
	if len(v) > 1 {
		msg += " (and more: see details)"
	}
	return withDetails(status.New(codes.InvalidArgument, msg),
		&errdetails.ErrorInfo{Reason: "INVALID_ARGUMENT", Domain: errorDomain},
		&errdetails.BadRequest{FieldViolations: v})
}

// unauthenticated and forbidden are the gateway's own refusals.
func forbidden(msg string) error {
	return withDetails(status.New(codes.PermissionDenied, msg), &errdetails.ErrorInfo{Reason: "FORBIDDEN", Domain: errorDomain})
}
