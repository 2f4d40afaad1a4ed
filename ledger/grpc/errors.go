package grpc

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fundplatform/fund/ledger"
)

// errorDomain is the ErrorInfo domain of the ledger service's errors.
const errorDomain = "ledger.fund"

// errorTable is the one place domain errors meet gRPC codes. The reason
// travels in a google.rpc.ErrorInfo detail, so the client turns a status
// back into the same sentinel without reading message text. retry marks
// the errors after which the request was not acknowledged and another
// attempt can succeed: the shard is being served elsewhere or again soon,
// or the attempt merely ran out of time (the caller's own context is
// checked before retrying).
var errorTable = [...]struct {
	err    error
	code   codes.Code
	reason string
	retry  bool
}{
	{ledger.ErrNotOwner, codes.FailedPrecondition, "SHARD_NOT_OWNED", true},
	{ledger.ErrClosed, codes.Unavailable, "SHARD_CLOSED", true},
	{ledger.ErrFenced, codes.Unavailable, "SHARD_FENCED", true},
	{ledger.ErrCommitFailed, codes.Unavailable, "COMMIT_FAILED", true},
	{ledger.ErrNoOwner, codes.Unavailable, "NO_OWNER", true},
	{ledger.ErrTooManyEvents, codes.InvalidArgument, "TOO_MANY_EVENTS", false},
	{ledger.ErrEmptyRequest, codes.InvalidArgument, "EMPTY_REQUEST", false},
	{ledger.ErrAttachmentTooLarge, codes.InvalidArgument, "ATTACHMENT_TOO_LARGE", false},
	{ledger.ErrCrossShard, codes.InvalidArgument, "CROSS_SHARD", false},
	{ledger.ErrShardUnknown, codes.InvalidArgument, "SHARD_UNKNOWN", false},
	{ledger.ErrShardMapMismatch, codes.FailedPrecondition, "SHARD_MAP_MISMATCH", false},
	{ledger.ErrInvariantBroke, codes.Internal, "INVARIANT_BROKEN", false},
	{errBadRequest, codes.InvalidArgument, "BAD_REQUEST", false},
	// An attempt's own timeout (the caller's context is checked first).
	{context.DeadlineExceeded, codes.DeadlineExceeded, "DEADLINE_EXCEEDED", true},
	{context.Canceled, codes.Canceled, "CANCELED", true},
}

// errBadRequest: a field on the wire does not fit the domain type.
var errBadRequest = errors.New("ledger: malformed request")

// toStatus turns a domain error into a gRPC status error.
func toStatus(err error) error {
	var bf *errBadField
	if errors.As(err, &bf) {
		err = fmt.Errorf("%w: %s", errBadRequest, bf.Error())
	}
	for _, e := range errorTable {
		if errors.Is(err, e.err) {
			st := status.New(e.code, err.Error())
			if d, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: e.reason, Domain: errorDomain}); derr == nil {
				st = d
			}
			return st.Err()
		}
	}
	return status.Error(codes.Unknown, err.Error())
}

// fromStatus turns a status error from a server back into the domain
// sentinel it came from (wrapped, with the server's message). An error
// without a ledger reason is a transport error and comes back as is.
func fromStatus(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.Domain != errorDomain {
			continue
		}
		for _, e := range errorTable {
			if e.reason == info.Reason {
				return &remoteError{sentinel: e.err, msg: st.Message()}
			}
		}
	}
	return err
}

// remoteError is a domain error that a server reported.
type remoteError struct {
	sentinel error
	msg      string
}

func (e *remoteError) Error() string { return "server: " + e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

// retryable reports whether err (as fromStatus returned it) leaves the
// request unacknowledged in a way that another attempt, possibly at
// another owner, can fix.
func retryable(err error) bool {
	if errors.Is(err, errOwnerRefused) {
		return true // the lease may move to an owner with a closed breaker
	}
	for _, e := range errorTable {
		if e.retry && errors.Is(err, e.err) {
			return true
		}
	}
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.Unavailable: // owner unreachable: dead, restarting, or the connection broke
			return true
		case codes.Canceled, codes.DeadlineExceeded:
			// The attempt's own timeout, or its connection was closed
			// because the owner moved; the caller's context is checked
			// separately before this.
			return true
		}
	}
	return false
}
