package accounts

import (
	"context"
	"time"
)

// Store keeps customers, orders and the trading calendar. Implementations:
// accounts/postgres. Money itself lives only in the ledger. Any method may
// fail with an error wrapping ErrUnavailable: the store could not answer
// now, nothing was stored, and the same call may succeed later.
type Store interface {
	// CreateCustomer stores c (RequestID, Name and CreatedAt set; the store
	// assigns ID and makes it active) once per RequestID, forever. When a
	// customer with that request id is stored it returns it, in its current
	// state, and existed = true without calling setup. Otherwise, in one
	// transaction, it claims the request id (a concurrent creation with the
	// same id waits and then sees this one), calls setup with the new
	// customer (to create its ledger accounts) and stores it. When setup
	// fails nothing is stored.
	CreateCustomer(ctx context.Context, c Customer,
		setup func(context.Context, Customer) error) (stored Customer, existed bool, err error)
	// Customer returns one customer or ErrCustomerNotFound.
	Customer(ctx context.Context, id CustomerID) (Customer, error)
	// UpdateCustomer locks the customer exclusively, waiting for every order
	// in flight on it (and holding off new ones until it ends), calls change
	// with it and stores the status change set.
	// When change fails nothing is stored. Errors: ErrCustomerNotFound,
	// change's error.
	UpdateCustomer(ctx context.Context, id CustomerID, change func(context.Context, *Customer) error) (Customer, error)

	// PlaceOrder places o once per (CustomerID, RequestID), forever. When an
	// order with that key is stored it returns it and existed = true without
	// calling apply. Otherwise, in one transaction, it locks the parties
	// for share (so no status change can happen until it ends), claims
	// the key (a concurrent placement of the same key waits and then sees
	// this one), calls apply with the parties in the order given, and stores
	// o with the Status and Reason apply set. When apply fails nothing is
	// stored. Errors: ErrCustomerNotFound, apply's error.
	PlaceOrder(ctx context.Context, o *Order, parties []CustomerID,
		apply func(ctx context.Context, parties []Customer) error) (stored Order, existed bool, err error)
	// Order returns one order by its request id or ErrOrderNotFound.
	Order(ctx context.Context, c CustomerID, requestID string) (Order, error)
	// History returns up to limit orders of q.CustomerID (its own, and the
	// transfers to it that are completed or pending) with id < beforeID
	// (0 = no bound), newest first, filtered by q.Kinds, q.From and q.To.
	History(ctx context.Context, q HistoryQuery, beforeID int64, limit int) ([]Order, error)
	// PendingTransfers returns up to limit pending transfer orders (those
	// waiting for a cross-shard saga) with id > afterID, oldest first: of
	// customer c, or of every customer when c is 0.
	PendingTransfers(ctx context.Context, c CustomerID, afterID int64, limit int) ([]Order, error)
	// ResolveTransfer records how a pending transfer order ended: status
	// OrderCompleted, or OrderRefunded with reason. Only a pending transfer
	// changes; an order resolved already is left as it is (the saga ends
	// once, so a second resolution can only agree). It returns the order
	// as stored. Errors: ErrOrderNotFound.
	ResolveTransfer(ctx context.Context, c CustomerID, requestID string, status OrderStatus, reason string) (Order, error)

	// RecordDailyIncome stores customers' income for natural days, each
	// (customer, date) once, forever, and the whole batch or nothing: an
	// income already stored with the same amount is left as it is, one
	// stored with another amount (or given twice with two amounts) fails
	// the call. Errors: ErrRecordConflict, ErrCustomerNotFound.
	RecordDailyIncome(ctx context.Context, incomes []DailyIncome) error
	// Income returns a customer's income on date (0 when none is recorded)
	// and the sum of all its recorded income.
	Income(ctx context.Context, c CustomerID, date time.Time) (day, cumulative int64, err error)
	// RecordFundYield stores a day's yield once, forever; storing the same
	// yield again is a no-op, another one for a stored date fails. Errors:
	// ErrRecordConflict.
	RecordFundYield(ctx context.Context, y FundYield) error
	// FundYields returns the yields stored for dates from..to (inclusive),
	// oldest first, at most FundYieldsMax of them.
	FundYields(ctx context.Context, from, to time.Time) ([]FundYield, error)
	// LatestFundYield returns the yield with the newest date; ok is false
	// when none is stored.
	LatestFundYield(ctx context.Context) (y FundYield, ok bool, err error)

	// Holidays returns the configured non-trading weekdays.
	Holidays(ctx context.Context) ([]Holiday, error)
	// AddHoliday stores a holiday (or renames an existing one).
	AddHoliday(ctx context.Context, h Holiday) error
	// RemoveHoliday deletes a holiday, if present.
	RemoveHoliday(ctx context.Context, date time.Time) error
}
