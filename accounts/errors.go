package accounts

import "errors"

// Errors of the Service. Amount errors are in amount.go.
var (
	ErrCustomerNotFound    = errors.New("customer not found")
	ErrCustomerFrozen      = errors.New("customer is frozen: money cannot move out")
	ErrCustomerClosed      = errors.New("customer is closed")
	ErrBalanceNotZero      = errors.New("customer still holds cash or shares")
	ErrInvalidTransition   = errors.New("customer status does not allow this")
	ErrInvalidRequestID    = errors.New("request id must be 1 to 64 printable ASCII characters")
	ErrIdempotencyConflict = errors.New("request id already used for a different request")
	ErrOrderNotFound       = errors.New("order not found")
	ErrInsufficientFunds   = errors.New("insufficient available balance")
	ErrFastRedeemLimit     = errors.New("fast redemption daily limit reached")
	ErrMerchantNotFound    = errors.New("merchant not found")
	ErrSameCustomer        = errors.New("cannot transfer to oneself")
	ErrInvalidCursor       = errors.New("invalid history cursor")
	ErrInvalidName         = errors.New("name must be 1 to 100 characters")
	// Settlement's records: income and yields.
	ErrIncomePer10kRange = errors.New("income per 10,000 shares out of range")
	ErrRecordConflict    = errors.New("a different value is already recorded for that day")
	ErrYieldGap          = errors.New("fund yields must be published one natural day after another")
	// ErrLedger wraps a ledger outcome the service does not expect; it is a
	// bug or a misconfiguration, never a customer's mistake.
	ErrLedger = errors.New("ledger refused the operation")
	// ErrUnavailable marks a store error after which nothing was stored
	// and a retry with the same request id can succeed: the database is
	// down, restarting, out of connections, or the connection broke. The
	// store's adapter decides what is transient (accounts/postgres:
	// Transient); the gateway answers it 503 with Retry-After.
	ErrUnavailable = errors.New("accounts store unavailable")
)

// Reasons recorded with a rejected order, so that a retry of the same
// request id returns the same error.
const (
	reasonInsufficientFunds = "insufficient_funds"
	reasonFastRedeemLimit   = "fast_redeem_limit"
)

func reasonError(reason string) error {
	switch reason {
	case reasonInsufficientFunds:
		return ErrInsufficientFunds
	case reasonFastRedeemLimit:
		return ErrFastRedeemLimit
	}
	return errors.New("order rejected: " + reason)
}
