package ledger

import (
	"errors"
	"fmt"
)

// Result is the outcome of one transfer or account in a request. Every
// element of a request gets its own result; a failed one changes nothing.
type Result uint8

// Results, in roughly the order they are checked.
const (
	ResultOK Result = iota
	ResultLinkedEventFailed
	ResultLinkedEventChainOpen
	ResultIDMustNotBeZero
	ResultReservedFlag
	ResultFlagsAreMutuallyExclusive
	ResultUserDataTooLong
	ResultExists
	ResultExistsWithDifferentFields
	ResultPendingIDMustBeZero
	ResultPendingIDRequired
	ResultPendingIDMustBeDifferent
	ResultTimeoutReservedForPending
	ResultInvalidAmount
	ResultAccountsMustBeDifferent
	ResultDebitAccountNotFound
	ResultCreditAccountNotFound
	ResultAssetMismatch
	ResultDebitAccountClosed
	ResultCreditAccountClosed
	ResultOverflow
	ResultExceedsCredits
	ResultExceedsDebits
	ResultPendingTransferNotFound
	ResultPendingTransferAlreadyPosted
	ResultPendingTransferAlreadyVoided
	ResultPendingTransferExpired
	ResultPendingTransferHasDifferentDebit
	ResultPendingTransferHasDifferentCredit
	ResultPendingTransferHasDifferentAsset
	ResultExceedsPendingAmount
	ResultVoidAmountMismatch
	// Account results.
	ResultInvalidAsset
	ResultWrongShard
	ResultAccountNotFound
	ResultAccountAlreadyClosed
	ResultAccountBalanceNotZero
	ResultInvalidTimeout
	ResultIDRepeatedInChain
	resultCount
)

var resultNames = [...]string{
	ResultOK:                                "ok",
	ResultLinkedEventFailed:                 "linked_event_failed",
	ResultLinkedEventChainOpen:              "linked_event_chain_open",
	ResultIDMustNotBeZero:                   "id_must_not_be_zero",
	ResultReservedFlag:                      "reserved_flag",
	ResultFlagsAreMutuallyExclusive:         "flags_are_mutually_exclusive",
	ResultUserDataTooLong:                   "user_data_too_long",
	ResultExists:                            "exists",
	ResultExistsWithDifferentFields:         "exists_with_different_fields",
	ResultPendingIDMustBeZero:               "pending_id_must_be_zero",
	ResultPendingIDRequired:                 "pending_id_required",
	ResultPendingIDMustBeDifferent:          "pending_id_must_be_different",
	ResultTimeoutReservedForPending:         "timeout_reserved_for_pending",
	ResultInvalidAmount:                     "invalid_amount",
	ResultAccountsMustBeDifferent:           "accounts_must_be_different",
	ResultDebitAccountNotFound:              "debit_account_not_found",
	ResultCreditAccountNotFound:             "credit_account_not_found",
	ResultAssetMismatch:                     "asset_mismatch",
	ResultDebitAccountClosed:                "debit_account_closed",
	ResultCreditAccountClosed:               "credit_account_closed",
	ResultOverflow:                          "overflow",
	ResultExceedsCredits:                    "insufficient_funds",
	ResultExceedsDebits:                     "exceeds_debits",
	ResultPendingTransferNotFound:           "pending_transfer_not_found",
	ResultPendingTransferAlreadyPosted:      "pending_transfer_already_posted",
	ResultPendingTransferAlreadyVoided:      "pending_transfer_already_voided",
	ResultPendingTransferExpired:            "pending_transfer_expired",
	ResultPendingTransferHasDifferentDebit:  "pending_transfer_has_different_debit_account",
	ResultPendingTransferHasDifferentCredit: "pending_transfer_has_different_credit_account",
	ResultPendingTransferHasDifferentAsset:  "pending_transfer_has_different_asset",
	ResultExceedsPendingAmount:              "exceeds_pending_amount",
	ResultVoidAmountMismatch:                "void_amount_mismatch",
	ResultInvalidAsset:                      "invalid_asset",
	ResultWrongShard:                        "wrong_shard",
	ResultAccountNotFound:                   "account_not_found",
	ResultAccountAlreadyClosed:              "account_already_closed",
	ResultAccountBalanceNotZero:             "account_balance_not_zero",
	ResultInvalidTimeout:                    "invalid_timeout",
	ResultIDRepeatedInChain:                 "id_repeated_in_chain",
}

func (r Result) String() string {
	if int(r) < len(resultNames) && resultNames[r] != "" {
		return resultNames[r]
	}
	return fmt.Sprintf("result(%d)", uint8(r))
}

// Applied reports whether the element took effect now or earlier (an
// identical retry), which is what an idempotent caller wants to know.
func (r Result) Applied() bool { return r == ResultOK || r == ResultExists }

// TransferResult is the outcome of one transfer of a request.
type TransferResult struct {
	Result    Result
	Timestamp int64 // when applied (ResultOK only)
}

// AccountResult is the outcome of one account of a request.
type AccountResult struct {
	Result Result
}

// Errors returned by the Sequencer for a request as a whole. Such a request
// was not acknowledged: it may or may not have been applied, and a retry with
// the same ids is always safe.
var (
	ErrClosed         = errors.New("ledger: sequencer is not running")
	ErrCommitFailed   = errors.New("ledger: batch commit failed")
	ErrTooManyEvents  = errors.New("ledger: too many events in one request")
	ErrEmptyRequest   = errors.New("ledger: empty request")
	ErrFenced         = errors.New("ledger: shard lease lost (fenced)")
	ErrInvariantBroke = errors.New("ledger: invariant broken")
)

// ParseResult returns the result with the given name (as String prints
// it), so results can cross a wire by name and stay correct when results
// are added.
func ParseResult(name string) (Result, bool) {
	for r, n := range resultNames {
		if n == name && n != "" {
			return Result(r), true
		}
	}
	return 0, false
}
