package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fundplatform/fund/accounts"
)

// Transient reports whether err, returned by a call of this store, says
// the database could not answer now rather than that the call was wrong:
// the server is down, restarting or refusing connections, it ran out of
// resources, the connection broke, or it cancelled the statement. After
// such an error nothing the call was asked to store is acknowledged, and
// the same call with the same request id may succeed later (every write
// here is idempotent by its key).
//
// The caller's own deadline or cancellation is not transient here: the
// caller knows it gave up, and the gateway answers those itself (504, or
// nothing for a client that left).
func Transient(err error) bool {
	switch {
	case err == nil, errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	case errors.Is(err, ErrClosed):
		return true // this process is shutting down; another one serves the retry
	}
	// No connection could be made, whatever the server said (it is
	// starting, or refuses connections to the database): before the
	// server errors, which a failed connect carries too.
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return transientCode(pgErr.Code)
	}
	var netErr net.Error
	switch {
	case errors.As(err, &netErr):
		return true
	case pgconn.SafeToRetry(err):
		return true // failed before anything was sent
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return true // the server closed the connection mid-conversation
	}
	return false
}

// transientCode reports whether a server error's SQLSTATE is one of a
// server that cannot serve now, whatever the statement.
func transientCode(code string) bool {
	switch {
	case strings.HasPrefix(code, "08"): // connection exception
		return true
	case strings.HasPrefix(code, "53"): // insufficient resources: connections, memory, disk
		return true
	}
	switch code {
	case "57P01", "57P02", "57P03": // admin shutdown, crash shutdown, cannot connect now (starting, recovering)
		return true
	case "57014": // query cancelled: a statement timeout, or the cancel pgx sends when a context ends
		return true
	case "40001", "40P01": // serialization failure, deadlock: the transaction rolled back whole
		return true
	}
	return false
}

// unavailable marks a transient error as accounts.ErrUnavailable, keeping
// the error itself in the chain (errors.Is finds both).
func unavailable(err error) error {
	if !Transient(err) || errors.Is(err, accounts.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", accounts.ErrUnavailable, err)
}

// markUnavailable is unavailable for a method's named error result, as a
// deferred call: every accounts.Store method of Store ends with it, so that
// no driver error leaves the store unclassified.
func markUnavailable(err *error) { *err = unavailable(*err) }
