package accounts

import (
	"context"
	"time"
)

// Store keeps customers, orders and the trading calendar. Implementations:
// accounts/postgres. Money itself lives only in the ledger.
type Store interface {
	// CreateCustomer stores a new active customer and, inside the same
	// transaction, calls setup with it (to create its ledger accounts). When
	// setup fails nothing is stored.
	CreateCustomer(ctx context.Context, name string, now time.Time, setup func(context.Context, Customer) error) (Customer, error)
	// Customer returns one customer or ErrCustomerNotFound.
	Customer(ctx context.Context, id CustomerID) (Customer, error)
	// UpdateCustomer locks the customer's row, waiting for every order in
	// flight on it, calls change with it and stores the status change set.
	// When change fails nothing is stored. Errors: ErrCustomerNotFound,
	// change's error.
	UpdateCustomer(ctx context.Context, id CustomerID, change func(context.Context, *Customer) error) (Customer, error)

	// PlaceOrder places o once per (CustomerID, RequestID), forever. When an
	// order with that key is stored it returns it and existed = true without
	// calling apply. Otherwise, in one transaction, it locks the parties'
	// rows for share (so no status change can happen until it ends), claims
	// the key (a concurrent placement of the same key waits and then sees
	// this one), calls apply with the parties in the order given, and stores
	// o with the Status and Reason apply set. When apply fails nothing is
	// stored. Errors: ErrCustomerNotFound, apply's error.
	PlaceOrder(ctx context.Context, o *Order, parties []CustomerID,
		apply func(ctx context.Context, parties []Customer) error) (stored Order, existed bool, err error)
	// Order returns one order by its request id or ErrOrderNotFound.
	Order(ctx context.Context, c CustomerID, requestID string) (Order, error)
	// History returns up to limit orders of q.CustomerID (its own and the
	// transfers it received) with id < beforeID (0 = no bound), newest
	// first, filtered by q.Kinds, q.From and q.To.
	History(ctx context.Context, q HistoryQuery, beforeID int64, limit int) ([]Order, error)

	// Holidays returns the configured non-trading weekdays.
	Holidays(ctx context.Context) ([]Holiday, error)
	// AddHoliday stores a holiday (or renames an existing one).
	AddHoliday(ctx context.Context, h Holiday) error
	// RemoveHoliday deletes a holiday, if present.
	RemoveHoliday(ctx context.Context, date time.Time) error
}
