package gateway

import (
	"context"
	"errors"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/fundplatform/fund/ledger"
)

// BreakerConfig tunes the circuit breaker in front of one ledger target.
type BreakerConfig struct {
	// ConsecutiveFailures that open the breaker; 0 = 5.
	ConsecutiveFailures uint32
	// OpenFor is how long an open breaker refuses before it lets probes
	// through (half-open); 0 = 2s.
	OpenFor time.Duration
	// HalfOpenProbes is how many calls a half-open breaker lets through;
	// 0 = 3.
	HalfOpenProbes uint32
}

func (c *BreakerConfig) setDefaults() {
	if c.ConsecutiveFailures == 0 {
		c.ConsecutiveFailures = 5
	}
	if c.OpenFor == 0 {
		c.OpenFor = 2 * time.Second
	}
	if c.HalfOpenProbes == 0 {
		c.HalfOpenProbes = 3
	}
}

// BreakerClient is a ledger.Client in front of one ledger target (a shard
// owner) with a circuit breaker: when the target keeps failing, calls fail
// at once with gobreaker.ErrOpenState (503 at the edge) instead of each
// waiting for its timeout, so a dead shard costs its own customers a fast
// "try again" and costs nobody else a thread. Safe for concurrent use.
type BreakerClient struct {
	target string
	next   ledger.Client
	cb     *gobreaker.CircuitBreaker[any]
}

var _ ledger.Client = (*BreakerClient)(nil)

// NewBreakerClient wraps next, the client of target. onState (may be nil)
// is told every state change, for metrics and logs.
func NewBreakerClient(target string, next ledger.Client, cfg BreakerConfig, onState func(target string, from, to gobreaker.State)) *BreakerClient {
	cfg.setDefaults()
	st := gobreaker.Settings{
		Name:        target,
		MaxRequests: cfg.HalfOpenProbes,
		Timeout:     cfg.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= cfg.ConsecutiveFailures },
		// Errors of the request itself say nothing about the target's
		// health.
		IsSuccessful: func(err error) bool {
			return err == nil || errors.Is(err, ledger.ErrEmptyRequest) || errors.Is(err, ledger.ErrTooManyEvents)
		},
		// A caller that gave up says nothing either way.
		IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
	}
	if onState != nil {
		st.OnStateChange = func(name string, from, to gobreaker.State) { onState(name, from, to) }
	}
	return &BreakerClient{target: target, next: next, cb: gobreaker.NewCircuitBreaker[any](st)}
}

// Target names the ledger target.
func (b *BreakerClient) Target() string { return b.target }

// State returns the breaker's state.
func (b *BreakerClient) State() gobreaker.State { return b.cb.State() }

func call[T any](b *BreakerClient, fn func() (T, error)) (T, error) {
	v, err := b.cb.Execute(func() (any, error) { return fn() })
	if err != nil {
		var zero T
		if r, ok := v.(T); ok {
			return r, err
		}
		return zero, err
	}
	return v.(T), nil
}

// CreateAccounts implements ledger.Client.
func (b *BreakerClient) CreateAccounts(ctx context.Context, as []ledger.Account) ([]ledger.AccountResult, error) {
	return call(b, func() ([]ledger.AccountResult, error) { return b.next.CreateAccounts(ctx, as) })
}

// CreateTransfers implements ledger.Client.
func (b *BreakerClient) CreateTransfers(ctx context.Context, ts []ledger.Transfer) ([]ledger.TransferResult, error) {
	return call(b, func() ([]ledger.TransferResult, error) { return b.next.CreateTransfers(ctx, ts) })
}

// CloseAccounts implements ledger.Client.
func (b *BreakerClient) CloseAccounts(ctx context.Context, ids []ledger.AccountID) ([]ledger.AccountResult, error) {
	return call(b, func() ([]ledger.AccountResult, error) { return b.next.CloseAccounts(ctx, ids) })
}

// LookupAccounts implements ledger.Client.
func (b *BreakerClient) LookupAccounts(ctx context.Context, ids []ledger.AccountID) ([]ledger.Account, error) {
	return call(b, func() ([]ledger.Account, error) { return b.next.LookupAccounts(ctx, ids) })
}
