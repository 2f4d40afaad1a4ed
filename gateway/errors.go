package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/sony/gobreaker/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/gateway/auth"
	"github.com/fundplatform/fund/internal/clock"
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

// The gateway's own refusals, each the error of a row of the table: the
// gateway answers them itself (gatewayError, by the row's reason), with a
// message that says what exactly was wrong.
var (
	errInvalidArgument   = errors.New("invalid request fields")
	errMalformedJSON     = errors.New("the request body is not well-formed JSON")
	errInvalidBody       = errors.New("the JSON body does not fit the call")
	errIncompleteBody    = errors.New("the request body could not be read in full")
	errBodyTooLarge      = errors.New("the request body is too large")
	errUnsupportedMedia  = errors.New("the request body is not application/json")
	errInvalidPathParam  = errors.New("a path parameter does not fit its type")
	errInvalidQueryParam = errors.New("a query parameter does not fit its type")
	errMalformedPath     = errors.New("the URL path is malformed")
	errRouteNotFound     = errors.New("no route has this path")
	errMethodNotAllowed  = errors.New("the path does not take this method")
	errForbidden         = errors.New("the token may not make this call")
	errRateLimited       = errors.New("too many requests for this customer")
	errOverloaded        = errors.New("the gateway is at capacity")
	errShardUnreachable  = errors.New("the ledger shard's owner cannot be reached")
	errDependencyDown    = errors.New("a dependency failed")
	errInternal          = errors.New("internal error")
)

// errorMapping is one row of the error table: one ErrorInfo reason.
type errorMapping struct {
	// err is the error the row maps (errors.Is): a domain's, or one of the
	// gateway's own refusals.
	err    error
	code   codes.Code
	reason string // ErrorInfo reason, SCREAMING_SNAKE
	field  string // for InvalidArgument: the request field at fault
	// when says when the reason is answered, for the documentation
	// (docs/api-errors.md) and, where the error's own text is not for the
	// API's user (see showsErrorText), as the message.
	when string
	// http is the HTTP status when HTTP's semantics need another than the
	// code's (413, 415, 405); 0 = httpStatus(code).
	http int
}

// Reasons the gateway answers itself, by name: each is a row of the table.
const (
	reasonInvalidArgument   = "INVALID_ARGUMENT"
	reasonMalformedJSON     = "MALFORMED_JSON"
	reasonInvalidBody       = "INVALID_BODY"
	reasonIncompleteBody    = "INCOMPLETE_BODY"
	reasonBodyTooLarge      = "BODY_TOO_LARGE"
	reasonUnsupportedMedia  = "UNSUPPORTED_MEDIA_TYPE"
	reasonInvalidPathParam  = "INVALID_PATH_PARAMETER"
	reasonInvalidQueryParam = "INVALID_QUERY_PARAMETER"
	reasonMalformedPath     = "MALFORMED_PATH"
	reasonRouteNotFound     = "ROUTE_NOT_FOUND"
	reasonMethodNotAllowed  = "METHOD_NOT_ALLOWED"
	reasonForbidden         = "FORBIDDEN"
	reasonRateLimited       = "RATE_LIMITED"
	reasonOverloaded        = "OVERLOADED"
	reasonShardUnreachable  = "SHARD_UNREACHABLE"
	reasonDependencyDown    = "DEPENDENCY_UNAVAILABLE"
	reasonDeadlineExceeded  = "DEADLINE_EXCEEDED"
	reasonInternal          = "INTERNAL"
)

// retryAfterDefault is the Retry-After of an answer that knows no better.
const retryAfterDefault = time.Second

// errorTable is the one list of the reasons the API answers with, and the
// one place where domain errors become gRPC codes, and so (through
// httpStatus) HTTP statuses: InvalidArgument 400, Unauthenticated 401,
// PermissionDenied 403, NotFound 404, AlreadyExists 409,
// FailedPrecondition 422, ResourceExhausted 429, Unimplemented 501,
// Unavailable 503, DeadlineExceeded 504 (413, 415 and 405 where HTTP needs
// them). The first row whose error matches (errors.Is) wins, so the more
// specific rows come first. An error no row matches is classified by
// transientStatus (a dependency that failed: 503 or 504) or else is a bug:
// 500 INTERNAL, logged, its text not shown. docs/api-errors.md lists the
// rows (TestErrorReasonsDocumented keeps it in step).
var errorTable = [...]errorMapping{
	// The client's input: 400, with a BadRequest naming the field.
	{accounts.ErrInvalidAmount, codes.InvalidArgument, "INVALID_AMOUNT", "amount", "The amount is not a positive decimal with at most two places within the per-order maximum.", 0},
	{accounts.ErrInvalidRequestID, codes.InvalidArgument, "INVALID_REQUEST_ID", "request_id", "The request id (Idempotency-Key) is not 1 to 64 printable ASCII characters.", 0},
	{accounts.ErrInvalidName, codes.InvalidArgument, "INVALID_NAME", "name", "The customer's name is not 1 to 100 characters.", 0},
	{accounts.ErrInvalidCursor, codes.InvalidArgument, "INVALID_PAGE_TOKEN", "page_token", "The page token is not one this API gave out.", 0},
	{accounts.ErrSameCustomer, codes.InvalidArgument, "SAME_CUSTOMER", "to_customer_id", "A transfer names its own customer as the recipient.", 0},
	{accounts.ErrIncomePer10kRange, codes.InvalidArgument, "INCOME_PER_10K_RANGE", "income_per_10k", "The income per 10,000 shares is out of range.", 0},
	// A settlement's input ("income" is the request's oneof of income and
	// income_per_10k).
	{settlement.ErrInvalidDate, codes.InvalidArgument, "SETTLEMENT_INVALID_DATE", "date", "The settlement date is not a valid business date.", 0},
	{settlement.ErrIncomeForm, codes.InvalidArgument, "SETTLEMENT_INCOME_FORM", "income", "The settlement gives neither or both of income and income_per_10k.", 0},
	{settlement.ErrInvalidIncome, codes.InvalidArgument, "SETTLEMENT_INVALID_INCOME", "income", "The settlement's income is not a valid amount.", 0},
	{settlement.ErrIncomeOverflow, codes.InvalidArgument, "SETTLEMENT_INCOME_OVERFLOW", "income", "The settlement's income would overflow the fund's totals.", 0},
	// A move of the sandbox's test clock to before its time.
	{clock.ErrBackwards, codes.InvalidArgument, "CLOCK_BACKWARDS", "to", "The test clock only moves forward: to is before its time.", 0},
	// The request's form, checked by the gateway before any service runs.
	{errInvalidArgument, codes.InvalidArgument, reasonInvalidArgument, "", "One or more fields are invalid; the BadRequest detail names each with what is wrong.", 0},
	{errMalformedJSON, codes.InvalidArgument, reasonMalformedJSON, "body", "The request body is not well-formed JSON.", 0},
	{errInvalidBody, codes.InvalidArgument, reasonInvalidBody, "body", "The JSON body does not fit the call: an unknown field, a field of the wrong type, a field given twice, or two fields of which only one may be given; the BadRequest detail names the field.", 0},
	{errIncompleteBody, codes.InvalidArgument, reasonIncompleteBody, "body", "The request body could not be read in full.", 0},
	{errBodyTooLarge, codes.InvalidArgument, reasonBodyTooLarge, "body", "The request body is larger than the gateway accepts (16 KiB by default).", http.StatusRequestEntityTooLarge},
	{errUnsupportedMedia, codes.InvalidArgument, reasonUnsupportedMedia, "", "A request with a body does not say Content-Type: application/json.", http.StatusUnsupportedMediaType},
	{errInvalidPathParam, codes.InvalidArgument, reasonInvalidPathParam, "", "A path parameter does not fit its type (customer_id must be a whole number); the BadRequest detail names it.", 0},
	{errInvalidQueryParam, codes.InvalidArgument, reasonInvalidQueryParam, "", "A query parameter does not fit its type, or the query string is malformed; the BadRequest detail names it.", 0},
	{errMalformedPath, codes.InvalidArgument, reasonMalformedPath, "", "The URL path is malformed (a bad percent escape).", 0},
	// Authentication: every token problem is a 401. The message does not
	// say more than the reason: why a token failed is for the logs.
	{auth.ErrNoToken, codes.Unauthenticated, "NO_TOKEN", "", "No bearer token: send Authorization: Bearer <token>.", 0},
	{auth.ErrExpired, codes.Unauthenticated, "TOKEN_EXPIRED", "", "The bearer token has expired: get a new one.", 0},
	{auth.ErrInvalidToken, codes.Unauthenticated, "INVALID_TOKEN", "", "The bearer token is not valid: malformed, badly signed, signed by an unknown key, or naming no customer and no admin scope.", 0},
	{errForbidden, codes.PermissionDenied, reasonForbidden, "", "The token may not make this call: a customer's token acts only on its own customer, admin calls need the admin scope.", 0},
	// What does not exist.
	{accounts.ErrCustomerNotFound, codes.NotFound, "CUSTOMER_NOT_FOUND", "", "The customer (or a transfer's recipient) does not exist.", 0},
	{accounts.ErrOrderNotFound, codes.NotFound, "ORDER_NOT_FOUND", "", "No order with that request id for that customer.", 0},
	{accounts.ErrMerchantNotFound, codes.NotFound, "MERCHANT_NOT_FOUND", "", "The merchant is not registered.", 0},
	{ErrSettlementNotFound, codes.NotFound, "SETTLEMENT_NOT_FOUND", "", "No settlement run for that date.", 0},
	{ErrTestClockDisabled, codes.NotFound, "TEST_CLOCK_DISABLED", "", "The process runs on the wall clock: only a sandbox started with a test clock (fundd dev --test-clock) moves business time.", 0},
	{errRouteNotFound, codes.NotFound, reasonRouteNotFound, "", "No route of the API has that path.", 0},
	{errMethodNotAllowed, codes.Unimplemented, reasonMethodNotAllowed, "", "The path exists, but not with that HTTP method.", http.StatusMethodNotAllowed},
	// Idempotency: a request id reused for something else.
	{accounts.ErrIdempotencyConflict, codes.AlreadyExists, "IDEMPOTENCY_CONFLICT", "", "The request id was used before for a different request; the stored order is in the details.", 0},
	{accounts.ErrRecordConflict, codes.AlreadyExists, "RECORD_CONFLICT", "", "A different income or yield is already recorded for that day.", 0},
	{settlement.ErrRunConflict, codes.AlreadyExists, "SETTLEMENT_RUN_CONFLICT", "", "The date was settled (or is settling) with other input.", 0},
	// Refused by the state of the money or the customer: 422.
	{accounts.ErrInsufficientFunds, codes.FailedPrecondition, "INSUFFICIENT_FUNDS", "", "The available balance does not cover the order; the REJECTED order is in the details, and a retry gets the same.", 0},
	{accounts.ErrFastRedeemLimit, codes.FailedPrecondition, "FAST_REDEEM_LIMIT", "", "The fast redemption would pass the customer's daily limit; the REJECTED order is in the details.", 0},
	{accounts.ErrCustomerFrozen, codes.FailedPrecondition, "CUSTOMER_FROZEN", "", "The customer is frozen: money cannot move out.", 0},
	{accounts.ErrCustomerClosed, codes.FailedPrecondition, "CUSTOMER_CLOSED", "", "The customer (or a transfer's recipient) is closed.", 0},
	{accounts.ErrBalanceNotZero, codes.FailedPrecondition, "BALANCE_NOT_ZERO", "", "The customer still holds cash or shares and cannot be closed.", 0},
	{accounts.ErrInvalidTransition, codes.FailedPrecondition, "INVALID_TRANSITION", "", "The customer's status does not allow this change.", 0},
	{accounts.ErrYieldGap, codes.FailedPrecondition, "YIELD_GAP", "", "Fund yields must be recorded one natural day after another.", 0},
	// A settlement the state of the ledger or of earlier runs refuses:
	// too early (the date's cut-off has not passed), out of order (a gap:
	// an earlier date is unsettled or a later one already ran), income
	// with no eligible shares to pay it to, a shard a live ledger process
	// owns (the run was not allowed to take it), the ledger's shard count
	// not the run's. Settlement's other errors (overflowing or negative
	// shares, a changed snapshot, a missing pending transfer) are broken
	// invariants: no row, so a 500 that is logged.
	{settlement.ErrTooEarly, codes.FailedPrecondition, "SETTLEMENT_TOO_EARLY", "", "The date's cut-off has not passed yet.", 0},
	{settlement.ErrOutOfOrder, codes.FailedPrecondition, "SETTLEMENT_OUT_OF_ORDER", "", "An earlier date is not settled yet, or a later one already is.", 0},
	{settlement.ErrNoShares, codes.FailedPrecondition, "SETTLEMENT_NO_ELIGIBLE_SHARES", "", "The date has income but no eligible shares to pay it to.", 0},
	{settlement.ErrShardBusy, codes.FailedPrecondition, "SETTLEMENT_SHARD_BUSY", "", "A live ledger process owns a shard the run was not allowed to take.", 0},
	{settlement.ErrShardCount, codes.FailedPrecondition, "SETTLEMENT_SHARD_COUNT", "", "The ledger's shard count is not the run's.", 0},
	// Limits: 429 with Retry-After.
	{errRateLimited, codes.ResourceExhausted, reasonRateLimited, "", "The customer sent more requests than its rate limit allows; retry after Retry-After. Admin calls do not count.", 0},
	{errOverloaded, codes.ResourceExhausted, reasonOverloaded, "", "The gateway is at its concurrency limit and shed the request at once; retry after Retry-After.", 0},
	// A dependency that cannot answer now: 503 with Retry-After, safe to
	// retry with the same request id (nothing was acknowledged).
	{gobreaker.ErrOpenState, codes.Unavailable, "BREAKER_OPEN", "", "The customer's ledger shard failed repeatedly and is given time to recover; retry with the same request id after Retry-After.", 0},
	{gobreaker.ErrTooManyRequests, codes.Unavailable, "BREAKER_HALF_OPEN", "", "The customer's ledger shard is being probed after failures; retry with the same request id after Retry-After.", 0},
	{ledger.ErrClosed, codes.Unavailable, "SHARD_UNAVAILABLE", "", "The customer's ledger shard is not being served right now; retry with the same request id after Retry-After.", 0},
	{ledger.ErrFenced, codes.Unavailable, "SHARD_MOVED", "", "The customer's ledger shard is moving to another owner; retry with the same request id after Retry-After.", 0},
	{ledger.ErrCommitFailed, codes.Unavailable, "COMMIT_FAILED", "", "The ledger could not commit the order's batch; nothing was applied; retry with the same request id after Retry-After.", 0},
	{ledger.ErrNoOwner, codes.Unavailable, "SHARD_NO_OWNER", "", "No ledger process owns the customer's shard right now; retry with the same request id after Retry-After.", 0},
	{ledger.ErrNotOwner, codes.Unavailable, "SHARD_MOVED", "", "The customer's ledger shard is moving to another owner; retry with the same request id after Retry-After.", 0},
	{ledgergrpc.ErrUnreachable, codes.Unavailable, "SHARD_FAILING_OVER", "", "The customer's ledger shard did not answer within the request's deadline: its owner is failing over. The order applied whole or not at all; retry with the same request id after Retry-After.", 0},
	{ledgergrpc.ErrClientClosed, codes.Unavailable, "SHUTTING_DOWN", "", "This gateway is shutting down; retry (another serves) with the same request id.", 0},
	{accounts.ErrUnavailable, codes.Unavailable, "DATABASE_UNAVAILABLE", "", "The accounts database cannot be reached or is restarting; nothing was stored; retry with the same request id after Retry-After.", 0},
	{errShardUnreachable, codes.Unavailable, reasonShardUnreachable, "", "The customer's ledger shard owner cannot be reached; retry with the same request id after Retry-After.", 0},
	{errDependencyDown, codes.Unavailable, reasonDependencyDown, "", "A service behind the gateway failed in a way that may pass; retry with the same request id after Retry-After.", 0},
	{ErrNotConfigured, codes.Unimplemented, "NOT_CONFIGURED", "", "This gateway process runs no settlement or reconciliation worker for the call.", 0},
	{context.DeadlineExceeded, codes.DeadlineExceeded, reasonDeadlineExceeded, "", "The request did not finish within its deadline; it may or may not have been applied: retry with the same request id, which applies it at most once.", 0},
	{context.Canceled, codes.Canceled, "CANCELED", "", "The client went away before the answer (HTTP 499, seen only in logs).", 0},
	{errInternal, codes.Internal, reasonInternal, "", "internal error: a bug, which the gateway logged; a retry with the same request id is safe (it applies at most once).", 0},
}

// showsErrorText reports whether the row's answers carry the error's own
// text as their message. A client error's text is written for the API's
// user (the domain's sentinels, with what was wrong); a token's failure,
// a dependency's failure or a bug carries a driver's, a library's or the
// server's text, so those answer with the row's own sentence and the
// error goes to the log.
func (m *errorMapping) showsErrorText() bool {
	switch m.code {
	case codes.Unauthenticated, codes.Unavailable, codes.DeadlineExceeded, codes.Canceled,
		codes.Unimplemented, codes.Internal, codes.Unknown:
		return false
	}
	return true
}

// httpStatus is the row's HTTP status.
func (m *errorMapping) httpStatus() int {
	if m.http != 0 {
		return m.http
	}
	return httpStatus(m.code)
}

// retries reports whether the row's answers carry Retry-After (RetryInfo
// for gRPC clients): the limits (429) and a dependency that cannot answer
// now (503, 504).
func (m *errorMapping) retries() bool {
	return m.code == codes.ResourceExhausted || m.code == codes.Unavailable || m.code == codes.DeadlineExceeded
}

// rowOf returns the table's row of reason (nil when there is none).
func rowOf(reason string) *errorMapping {
	for i := range errorTable {
		if errorTable[i].reason == reason {
			return &errorTable[i]
		}
	}
	return nil
}

// Reason is one ErrorInfo reason of the API, as docs/api-errors.md lists
// it.
type Reason struct {
	Reason string
	Code   codes.Code
	HTTP   int
	Field  string // the BadRequest field it names, when it is always the same
	When   string
}

// Reasons returns the API's error reasons, each once, in the table's order:
// for documentation (docs/api-errors.md, the OpenAPI document) and clients'
// tests.
func Reasons() []Reason {
	var out []Reason
	seen := map[string]bool{}
	for i := range errorTable {
		m := &errorTable[i]
		if seen[m.reason] {
			continue
		}
		seen[m.reason] = true
		out = append(out, Reason{Reason: m.reason, Code: m.code, HTTP: m.httpStatus(), Field: m.field, When: m.when})
	}
	return out
}

// errorInfo is the ErrorInfo detail of reason.
func errorInfo(reason string) *errdetails.ErrorInfo {
	return &errdetails.ErrorInfo{Reason: reason, Domain: errorDomain}
}

// retryInfo is the RetryInfo detail asking to retry after d (at least the
// second Retry-After can say).
func retryInfo(d time.Duration) *errdetails.RetryInfo {
	return &errdetails.RetryInfo{RetryDelay: durationpb.New(max(d, retryAfterDefault))}
}

// gatewayError is an answer of the gateway's own, by its reason's row: the
// row's code, the ErrorInfo, then details (a BadRequest, a RetryInfo...).
// A row that retries gets a RetryInfo of a second unless details carry one.
func gatewayError(reason, msg string, details ...proto.Message) *status.Status {
	m := rowOf(reason)
	if m == nil {
		// A reason missing from the table is a bug of this package
		// (TestGatewayReasonsAreInTheTable): still one shape.
		m = rowOf(reasonInternal)
		reason = reasonInternal
	}
	ds := append([]proto.Message{errorInfo(reason)}, details...)
	if m.retries() && !hasRetryInfo(details) {
		ds = append(ds, retryInfo(retryAfterDefault))
	}
	return withDetails(m.code, msg, ds...)
}

func hasRetryInfo(details []proto.Message) bool {
	for _, d := range details {
		if _, ok := d.(*errdetails.RetryInfo); ok {
			return true
		}
	}
	return false
}

// fieldError is a gateway answer naming one field at fault.
func fieldError(reason, field, description string) *status.Status {
	return gatewayError(reason, field+": "+description, &errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: description}},
	})
}

// statusOf turns an error of the domain (or of the gateway) into a gRPC
// status by the table, with an ErrorInfo and, for input errors, a
// BadRequest field violation; 503 and 504 carry a RetryInfo. extra details
// (such as a rejected order) are appended.
func statusOf(err error, logger *slog.Logger, extra ...proto.Message) error {
	if err == nil {
		return nil
	}
	for i := range errorTable {
		m := &errorTable[i]
		if !errors.Is(err, m.err) {
			continue
		}
		details := []proto.Message{errorInfo(m.reason)}
		if m.code == codes.InvalidArgument && m.field != "" {
			details = append(details, &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
				{Field: m.field, Description: err.Error()},
			}})
		}
		if m.retries() {
			details = append(details, retryInfo(retryAfterDefault))
		}
		details = append(details, extra...)
		msg := err.Error()
		if !m.showsErrorText() {
			msg = m.when
			logCause(logger, m, err)
		}
		return withDetails(m.code, msg, details...).Err()
	}
	if st := transientStatus(err); st != nil {
		if logger != nil {
			logger.Warn("dependency failed", "reason", reasonOf(st), "err", err)
		}
		return st.Err()
	}
	if logger != nil {
		logger.Error("unmapped error", "err", err)
	}
	return gatewayError(reasonInternal, rowOf(reasonInternal).when).Err()
}

// logCause logs the error behind an answer that does not show it. An open
// breaker's answer has no cause beyond the breaker (its opening is logged
// and counted where it happens), and a client that left is not news.
func logCause(logger *slog.Logger, m *errorMapping, err error) {
	if logger == nil || m.err == gobreaker.ErrOpenState || m.err == gobreaker.ErrTooManyRequests || m.code == codes.Canceled {
		return
	}
	logger.Warn("request failed", "reason", m.reason, "err", err)
}

// transientStatus is the answer to an error no row maps that is
// recognisably a dependency failing in a way that may pass: a bare gRPC
// status from a ledger owner's transport (Unavailable: unreachable;
// DeadlineExceeded: 504; Aborted, ResourceExhausted, or Canceled while the
// request itself goes on: 503), or a network error. nil for anything else.
// Database errors are classified by the store's adapter, which wraps them
// as accounts.ErrUnavailable (a row), so the gateway needs no driver.
func transientStatus(err error) *status.Status {
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.Unavailable:
			return gatewayError(reasonShardUnreachable, rowOf(reasonShardUnreachable).when)
		case codes.DeadlineExceeded:
			return gatewayError(reasonDeadlineExceeded, rowOf(reasonDeadlineExceeded).when)
		case codes.Aborted, codes.ResourceExhausted, codes.Canceled:
			return gatewayError(reasonDependencyDown, rowOf(reasonDependencyDown).when)
		}
		return nil
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return gatewayError(reasonDependencyDown, rowOf(reasonDependencyDown).when)
	}
	return nil
}

func withDetails(code codes.Code, msg string, details ...proto.Message) *status.Status {
	st := status.New(code, msg)
	ds := make([]protoadapt.MessageV1, len(details))
	for i, d := range details {
		ds[i] = protoadapt.MessageV1Of(d)
	}
	if s, err := st.WithDetails(ds...); err == nil {
		return s
	}
	return st
}

// reasonOf returns the ErrorInfo reason of st ("" when it has none).
func reasonOf(st *status.Status) string {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
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
	return gatewayError(reasonInvalidArgument, msg, &errdetails.BadRequest{FieldViolations: v}).Err()
}

// forbidden is the gateway's refusal of a token that may not make the call.
func forbidden(msg string) error {
	return gatewayError(reasonForbidden, msg).Err()
}
