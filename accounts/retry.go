package accounts

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// RetryConfig tunes RetryStore.
type RetryConfig struct {
	// AttemptsMax bounds the attempts of one call, the first included;
	// 0 = 24: with the default backoff at least 9.8 s of waiting (about
	// 15 s on average), so that a caller with a request's deadline (10 s
	// at the gateway) retries until that deadline, which is what ends the
	// retries of an outage too long to ride out. (8, about 4 s, answered
	// 503 in the middle of a Postgres restart that took 7 s on a busy
	// machine, with 5 s of the deadline left.)
	AttemptsMax int
	// BackoffMin is the wait before the second attempt, doubling up to
	// BackoffMax (half fixed, half random); 0 = 50ms and 1s.
	BackoffMin, BackoffMax time.Duration
	// DeadlineReserve is kept back from the caller's deadline: no attempt
	// starts unless this much would be left after its backoff, so that the
	// caller answers 503 (the last ErrUnavailable) rather than running into
	// its own deadline; 0 = 200ms.
	DeadlineReserve time.Duration
	// Retryable reports whether a failed call may be made again; nil =
	// errors.Is(err, ErrUnavailable). (A store that is closing marks its
	// refusals unavailable too, for another process to serve; its adapter
	// can say not to retry those here.)
	Retryable func(error) bool
}

// retryAttemptsDefault is RetryConfig.AttemptsMax's default.
const retryAttemptsDefault = 24

func (c *RetryConfig) setDefaults() {
	if c.AttemptsMax <= 0 {
		c.AttemptsMax = retryAttemptsDefault
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = 50 * time.Millisecond
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = time.Second
	}
	if c.DeadlineReserve <= 0 {
		c.DeadlineReserve = 200 * time.Millisecond
	}
	if c.Retryable == nil {
		c.Retryable = func(err error) bool { return errors.Is(err, ErrUnavailable) }
	}
}

// RetryStore is a Store that makes a call again, backed off and within
// the caller's deadline, when the store could not answer (ErrUnavailable:
// the database restarting, a connection broken), so that a database
// restart shorter than a request's deadline is latency, not an error.
//
// What it retries, and why that is safe: the reads; PlaceOrder, which
// places an order once per key forever (a retry after an attempt that did
// commit finds the stored order and answers it; one after an attempt that
// did not calls apply again, whose ledger transfers have ids derived from
// the key, so the ledger answers "exists" for what an earlier attempt
// applied); CreateCustomer, once per request id the same way (its setup
// creates ledger accounts, "exists" being success); and the settlement's
// records and the calendar's changes, each idempotent by its date; and
// ResolveTransfer, which changes a pending order once.
// UpdateCustomer is not retried: its change (closing the customer's ledger
// accounts) does not answer a repeat as it answered the first.
type RetryStore struct {
	next Store
	cfg  RetryConfig
}

var _ Store = (*RetryStore)(nil)

// NewRetryStore wraps next.
func NewRetryStore(next Store, cfg RetryConfig) *RetryStore {
	cfg.setDefaults()
	return &RetryStore{next: next, cfg: cfg}
}

// retry calls fn until it succeeds, fails for good, or another attempt
// would not fit the attempts or the caller's deadline (then the last error
// is returned as it was).
func retry[T any](ctx context.Context, r *RetryStore, fn func() (T, error)) (T, error) {
	deadline, hasDeadline := ctx.Deadline()
	backoff := r.cfg.BackoffMin
	for attempt := 1; ; attempt++ {
		v, err := fn()
		if err == nil || !r.cfg.Retryable(err) || ctx.Err() != nil || attempt >= r.cfg.AttemptsMax {
			return v, err
		}
		d := backoff/2 + rand.N(backoff/2+1)
		if hasDeadline && time.Until(deadline) < d+r.cfg.DeadlineReserve {
			return v, err
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, fmt.Errorf("%w (waiting to retry: %w)", err, ctx.Err())
		case <-t.C:
		}
		backoff = min(2*backoff, r.cfg.BackoffMax)
	}
}

func retryErr(ctx context.Context, r *RetryStore, fn func() error) error {
	_, err := retry(ctx, r, func() (struct{}, error) { return struct{}{}, fn() })
	return err
}

// CreateCustomer implements Store, retried.
func (r *RetryStore) CreateCustomer(ctx context.Context, c Customer, setup func(context.Context, Customer) error) (Customer, bool, error) {
	var existed bool
	stored, err := retry(ctx, r, func() (Customer, error) {
		s, e, err := r.next.CreateCustomer(ctx, c, setup)
		existed = e
		return s, err
	})
	return stored, existed, err
}

// Customer implements Store, retried.
func (r *RetryStore) Customer(ctx context.Context, id CustomerID) (Customer, error) {
	return retry(ctx, r, func() (Customer, error) { return r.next.Customer(ctx, id) })
}

// UpdateCustomer implements Store, not retried (see RetryStore).
func (r *RetryStore) UpdateCustomer(ctx context.Context, id CustomerID, change func(context.Context, *Customer) error) (Customer, error) {
	return r.next.UpdateCustomer(ctx, id, change)
}

// PlaceOrder implements Store, retried.
func (r *RetryStore) PlaceOrder(ctx context.Context, o *Order, parties []CustomerID,
	apply func(ctx context.Context, parties []Customer) error) (Order, bool, error) {
	var existed bool
	stored, err := retry(ctx, r, func() (Order, error) {
		// o goes to every attempt as it is: apply (the caller's) sets its
		// outcome, again on each attempt that calls it.
		s, e, err := r.next.PlaceOrder(ctx, o, parties, apply)
		existed = e
		return s, err
	})
	return stored, existed, err
}

// Order implements Store, retried.
func (r *RetryStore) Order(ctx context.Context, c CustomerID, requestID string) (Order, error) {
	return retry(ctx, r, func() (Order, error) { return r.next.Order(ctx, c, requestID) })
}

// History implements Store, retried.
func (r *RetryStore) History(ctx context.Context, q HistoryQuery, beforeID int64, limit int) ([]Order, error) {
	return retry(ctx, r, func() ([]Order, error) { return r.next.History(ctx, q, beforeID, limit) })
}

// PendingTransfers implements Store, retried.
func (r *RetryStore) PendingTransfers(ctx context.Context, c CustomerID, afterID int64, limit int) ([]Order, error) {
	return retry(ctx, r, func() ([]Order, error) { return r.next.PendingTransfers(ctx, c, afterID, limit) })
}

// ResolveTransfer implements Store, retried: it changes a pending order
// once and answers a repeat with the stored order.
func (r *RetryStore) ResolveTransfer(ctx context.Context, c CustomerID, requestID string, status OrderStatus, reason string) (Order, error) {
	return retry(ctx, r, func() (Order, error) { return r.next.ResolveTransfer(ctx, c, requestID, status, reason) })
}

// RecordDailyIncome implements Store, retried.
func (r *RetryStore) RecordDailyIncome(ctx context.Context, incomes []DailyIncome) error {
	return retryErr(ctx, r, func() error { return r.next.RecordDailyIncome(ctx, incomes) })
}

// Income implements Store, retried.
func (r *RetryStore) Income(ctx context.Context, c CustomerID, date time.Time) (int64, int64, error) {
	var cumulative int64
	day, err := retry(ctx, r, func() (int64, error) {
		d, cum, err := r.next.Income(ctx, c, date)
		cumulative = cum
		return d, err
	})
	return day, cumulative, err
}

// RecordFundYield implements Store, retried.
func (r *RetryStore) RecordFundYield(ctx context.Context, y FundYield) error {
	return retryErr(ctx, r, func() error { return r.next.RecordFundYield(ctx, y) })
}

// FundYields implements Store, retried.
func (r *RetryStore) FundYields(ctx context.Context, from, to time.Time) ([]FundYield, error) {
	return retry(ctx, r, func() ([]FundYield, error) { return r.next.FundYields(ctx, from, to) })
}

// LatestFundYield implements Store, retried.
func (r *RetryStore) LatestFundYield(ctx context.Context) (FundYield, bool, error) {
	var ok bool
	y, err := retry(ctx, r, func() (FundYield, error) {
		y, found, err := r.next.LatestFundYield(ctx)
		ok = found
		return y, err
	})
	return y, ok, err
}

// Holidays implements Store, retried.
func (r *RetryStore) Holidays(ctx context.Context) ([]Holiday, error) {
	return retry(ctx, r, func() ([]Holiday, error) { return r.next.Holidays(ctx) })
}

// AddHoliday implements Store, retried.
func (r *RetryStore) AddHoliday(ctx context.Context, h Holiday) error {
	return retryErr(ctx, r, func() error { return r.next.AddHoliday(ctx, h) })
}

// RemoveHoliday implements Store, retried.
func (r *RetryStore) RemoveHoliday(ctx context.Context, date time.Time) error {
	return retryErr(ctx, r, func() error { return r.next.RemoveHoliday(ctx, date) })
}
