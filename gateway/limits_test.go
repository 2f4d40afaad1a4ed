package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/gateway/auth"
	"github.com/fundplatform/fund/ledger"
)

func TestRateLimiterBucketsAndEviction(t *testing.T) {
	now := time.Unix(1_000, 0)
	l := NewRateLimiter(1, 2, 3)
	for i := 0; i < 2; i++ {
		if ok, _ := l.Allow(1, now); !ok {
			t.Fatalf("request %d of the burst refused", i)
		}
	}
	ok, wait := l.Allow(1, now)
	if ok || wait <= 0 || wait > time.Second {
		t.Fatalf("third request: ok %v wait %s, want refused with a wait up to 1s", ok, wait)
	}
	if ok, _ := l.Allow(1, now.Add(time.Second)); !ok {
		t.Fatal("refused after the bucket refilled")
	}
	// Other customers have their own buckets; the map stays bounded and
	// drops the least recently used.
	for c := int64(2); c <= 10; c++ {
		if ok, _ := l.Allow(c, now); !ok {
			t.Fatalf("customer %d refused", c)
		}
	}
	if n := l.Len(); n != 3 {
		t.Fatalf("%d buckets kept, want 3", n)
	}
}

func TestConcurrencyLimiterFixed(t *testing.T) {
	l := NewAdaptiveLimiter(0, 1, 2)
	if !l.TryAcquire() || !l.TryAcquire() {
		t.Fatal("free slots refused")
	}
	if l.TryAcquire() {
		t.Fatal("a third slot granted")
	}
	l.Release(time.Hour) // no target: slowness changes nothing
	if !l.TryAcquire() {
		t.Fatal("a released slot refused")
	}
	for range 1000 {
		l.Release(time.Hour)
		l.TryAcquire()
	}
	if limit, _ := l.Limit(); limit != 2 {
		t.Fatalf("fixed limit moved to %d", limit)
	}
}

func TestConcurrencyLimiterFollowsLatency(t *testing.T) {
	l := NewAdaptiveLimiter(100*time.Millisecond, 10, 100)
	round := func(latency time.Duration) {
		for range adaptiveWindow {
			if !l.TryAcquire() {
				t.Fatal("refused with nothing in flight")
			}
			l.Release(latency)
		}
	}
	// Slow answers shrink the limit a tenth per window, down to the floor.
	round(time.Second)
	if limit, _ := l.Limit(); limit != 90 {
		t.Fatalf("limit %d after a slow window, want 90", limit)
	}
	for range 50 {
		round(time.Second)
	}
	if limit, _ := l.Limit(); limit != 10 {
		t.Fatalf("limit %d after many slow windows, want the floor 10", limit)
	}
	// Fast answers grow it back by one per window, up to the ceiling.
	round(time.Millisecond)
	if limit, _ := l.Limit(); limit != 11 {
		t.Fatalf("limit %d after a fast window, want 11", limit)
	}
	for range 200 {
		round(time.Millisecond)
	}
	if limit, _ := l.Limit(); limit != 100 {
		t.Fatalf("limit %d, want the ceiling 100", limit)
	}
	// Refusal is immediate once the limit is reached.
	for range 100 {
		l.TryAcquire()
	}
	if l.TryAcquire() {
		t.Fatal("admitted beyond the limit")
	}
}

// deadLedger fails every call as a shard that is gone does.
type deadLedger struct{ calls int }

func (d *deadLedger) CreateAccounts(context.Context, []ledger.Account) ([]ledger.AccountResult, error) {
	d.calls++
	return nil, ledger.ErrClosed
}
func (d *deadLedger) CreateTransfers(context.Context, []ledger.Transfer) ([]ledger.TransferResult, error) {
	d.calls++
	return nil, ledger.ErrClosed
}
func (d *deadLedger) CloseAccounts(context.Context, []ledger.AccountID) ([]ledger.AccountResult, error) {
	d.calls++
	return nil, ledger.ErrClosed
}
func (d *deadLedger) LookupAccounts(ctx context.Context, _ []ledger.AccountID) ([]ledger.Account, error) {
	d.calls++
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return nil, ledger.ErrClosed
}

func TestBreakerOpensOnADeadTargetAndFailsFast(t *testing.T) {
	dead := &deadLedger{}
	var states []string
	b := NewBreakerClient("shard-7", dead, BreakerConfig{ConsecutiveFailures: 3, OpenFor: time.Hour},
		func(target string, from, to gobreaker.State) { states = append(states, target+":"+to.String()) })
	ctx := context.Background()
	// A caller that gave up is not the shard's fault.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	for i := 0; i < 5; i++ {
		if _, err := b.LookupAccounts(cctx, nil); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled call: %v", err)
		}
	}
	if b.State() != gobreaker.StateClosed {
		t.Fatalf("cancelled calls opened the breaker")
	}
	for i := 0; i < 3; i++ {
		if _, err := b.CreateTransfers(ctx, nil); !errors.Is(err, ledger.ErrClosed) {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if b.State() != gobreaker.StateOpen {
		t.Fatalf("state %s after 3 failures, want open", b.State())
	}
	before := dead.calls
	_, err := b.CreateTransfers(ctx, nil)
	if !errors.Is(err, gobreaker.ErrOpenState) || dead.calls != before {
		t.Fatalf("open breaker: err %v, target called %d more times", err, dead.calls-before)
	}
	// Wrapped as the accounts service wraps it, it is a 503.
	st := status.Convert(statusOf(fmt.Errorf("ledger: %w", err), nil))
	if st.Code() != codes.Unavailable || httpStatus(st.Code()) != http.StatusServiceUnavailable {
		t.Fatalf("open breaker maps to %s", st.Code())
	}
	if fmt.Sprint(states) != "[shard-7:open]" {
		t.Fatalf("state changes %v", states)
	}
}

func TestErrorTable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		http int
	}{
		{&accounts.AmountError{Input: "x", Reason: accounts.ErrAmountSyntax}, 400},
		{accounts.ErrInvalidRequestID, 400},
		{auth.ErrExpired, 401},
		{fmt.Errorf("%w: bad signature", auth.ErrInvalidToken), 401},
		{fmt.Errorf("recipient 5: %w", accounts.ErrCustomerNotFound), 404},
		{accounts.ErrIdempotencyConflict, 409},
		{accounts.ErrInsufficientFunds, 422},
		{accounts.ErrFastRedeemLimit, 422},
		{accounts.ErrCustomerFrozen, 422},
		{fmt.Errorf("ledger: %w", ledger.ErrFenced), 503},
		{fmt.Errorf("ledger: %w", context.DeadlineExceeded), 504},
		{ErrNotConfigured, 501},
		{errors.New("disk on fire"), 500},
	} {
		st := status.Convert(statusOf(tc.err, nil))
		if got := httpStatus(st.Code()); got != tc.http {
			t.Errorf("%v: HTTP %d, want %d", tc.err, got, tc.http)
		}
		if tc.http == 500 && strings.Contains(st.Message(), "disk") {
			t.Errorf("an unmapped error leaks its text: %q", st.Message())
		}
	}
	// Input errors name the field.
	st := status.Convert(statusOf(&accounts.AmountError{Input: "x", Reason: accounts.ErrAmountSyntax}, nil))
	if !hasFieldViolation(st, "amount") {
		t.Fatalf("amount error without a field violation: %v", st.Details())
	}
	if got := retrySeconds(retryInfoOf(status.Convert(exhausted(reasonRateLimited, "slow down", 2500*time.Millisecond)))); got != "3" {
		t.Fatalf("Retry-After %s, want 3", got)
	}
}

// retryInfoOf returns st's RetryInfo (nil when it has none).
func retryInfoOf(st *status.Status) *errdetails.RetryInfo {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri
		}
	}
	return nil
}

// hasFieldViolation reports whether st names field in a BadRequest.
func hasFieldViolation(st *status.Status, field string) bool {
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				if v.GetField() == field {
					return true
				}
			}
		}
	}
	return false
}
