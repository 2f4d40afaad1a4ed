package gateway

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/fundplatform/fund/ledger"
	ledgergrpc "github.com/fundplatform/fund/ledger/grpc"
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

var (
	_ ledger.Client          = (*BreakerClient)(nil)
	_ ledger.AttachingClient = (*BreakerClient)(nil)
)

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
			return err == nil || errors.Is(err, ledger.ErrEmptyRequest) || errors.Is(err, ledger.ErrTooManyEvents) ||
				errors.Is(err, ledger.ErrAttachmentTooLarge)
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

// CreateTransfersAttached implements ledger.AttachingClient: the
// attachment goes on when the target's client carries it (else attached
// is false, as ledger.CreateTransfersAttached says).
func (b *BreakerClient) CreateTransfersAttached(ctx context.Context, ts []ledger.Transfer, attachment []byte) ([]ledger.TransferResult, bool, error) {
	type answer struct {
		rs       []ledger.TransferResult
		attached bool
	}
	a, err := call(b, func() (answer, error) {
		rs, attached, err := ledger.CreateTransfersAttached(ctx, b.next, ts, attachment)
		return answer{rs, attached}, err
	})
	return a.rs, a.attached, err
}

// CloseAccounts implements ledger.Client.
func (b *BreakerClient) CloseAccounts(ctx context.Context, ids []ledger.AccountID) ([]ledger.AccountResult, error) {
	return call(b, func() ([]ledger.AccountResult, error) { return b.next.CloseAccounts(ctx, ids) })
}

// LookupAccounts implements ledger.Client.
func (b *BreakerClient) LookupAccounts(ctx context.Context, ids []ledger.AccountID) ([]ledger.Account, error) {
	return call(b, func() ([]ledger.Account, error) { return b.next.LookupAccounts(ctx, ids) })
}

// OwnerBreakers are circuit breakers per ledger owner address, for the
// routing client (ledger/grpc ClientConfig.Breakers), which asks the
// owner's breaker before each attempt. A breaker per owner rather than per
// shard is what lets a failover show as latency: the dead owner's breaker
// opens and spares it the calls, while the request, still within its
// deadline, waits for the lease to move and goes to the new owner, whose
// breaker is fresh. (A breaker per shard above the routing client would
// stay open over the new owner too, and answer the whole failover with fast
// 503s.) Targets are named "owner <addr>". Safe for concurrent use.
type OwnerBreakers struct {
	cfg      BreakerConfig
	onState  func(target string, from, to gobreaker.State)
	onForget func(target string)

	mu sync.Mutex
	by map[string]ownerBreaker // by address; the routing client forgets addresses no shard is owned at
}

// ownerBreaker adapts gobreaker's two-step breaker, told an error, to the
// routing client's, told whether the owner answered.
type ownerBreaker struct {
	cb *gobreaker.TwoStepCircuitBreaker[any]
}

// errOwnerFailed stands for an attempt the owner did not answer.
var errOwnerFailed = errors.New("ledger owner did not answer")

func (b ownerBreaker) Allow() (func(healthy bool), error) {
	done, err := b.cb.Allow()
	if err != nil {
		return nil, err
	}
	return func(healthy bool) {
		if healthy {
			done(nil)
		} else {
			done(errOwnerFailed)
		}
	}, nil
}

var _ ledgergrpc.Breakers = (*OwnerBreakers)(nil)

// NewOwnerBreakers returns breakers tuned by cfg. onState (may be nil) is
// told every state change and onForget (may be nil) every breaker dropped,
// for metrics.
func NewOwnerBreakers(cfg BreakerConfig, onState func(target string, from, to gobreaker.State), onForget func(target string)) *OwnerBreakers {
	cfg.setDefaults()
	return &OwnerBreakers{cfg: cfg, onState: onState, onForget: onForget, by: map[string]ownerBreaker{}}
}

func ownerTarget(addr string) string { return "owner " + addr }

// For implements ledgergrpc.Breakers.
func (o *OwnerBreakers) For(addr string) ledgergrpc.Breaker {
	o.mu.Lock()
	defer o.mu.Unlock()
	if b, ok := o.by[addr]; ok {
		return b
	}
	st := gobreaker.Settings{
		Name:        ownerTarget(addr),
		MaxRequests: o.cfg.HalfOpenProbes,
		Timeout:     o.cfg.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= o.cfg.ConsecutiveFailures },
	}
	if o.onState != nil {
		st.OnStateChange = func(name string, from, to gobreaker.State) { o.onState(name, from, to) }
	}
	b := ownerBreaker{cb: gobreaker.NewTwoStepCircuitBreaker[any](st)}
	o.by[addr] = b
	return b
}

// Forget implements ledgergrpc.Breakers.
func (o *OwnerBreakers) Forget(addr string) {
	o.mu.Lock()
	_, ok := o.by[addr]
	delete(o.by, addr)
	o.mu.Unlock()
	if ok && o.onForget != nil {
		o.onForget(ownerTarget(addr))
	}
}

// State returns the state of addr's breaker, and false when it has none.
func (o *OwnerBreakers) State(addr string) (gobreaker.State, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	b, ok := o.by[addr]
	if !ok {
		return gobreaker.StateClosed, false
	}
	return b.cb.State(), true
}
