package accounts_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/fundplatform/fund/accounts"
)

// flaky is a Store whose calls fail with ErrUnavailable until failures run
// out (a database restarting), counting them. Methods it does not
// override panic (the embedded nil Store).
type flaky struct {
	accounts.Store
	failures int
	calls    int
	applies  int
}

func (f *flaky) fail() error {
	f.calls++
	if f.failures > 0 {
		f.failures--
		return fmt.Errorf("%w: connection refused", accounts.ErrUnavailable)
	}
	return nil
}

func (f *flaky) Customer(_ context.Context, id accounts.CustomerID) (accounts.Customer, error) {
	if err := f.fail(); err != nil {
		return accounts.Customer{}, err
	}
	return accounts.Customer{ID: id}, nil
}

func (f *flaky) PlaceOrder(ctx context.Context, o *accounts.Order, _ []accounts.CustomerID,
	apply func(context.Context, []accounts.Customer) error) (accounts.Order, bool, error) {
	f.applies++
	if err := apply(ctx, nil); err != nil {
		return accounts.Order{}, false, err
	}
	if err := f.fail(); err != nil { // the commit failed: nothing stored
		return accounts.Order{}, false, err
	}
	return *o, false, nil
}

func (f *flaky) UpdateCustomer(context.Context, accounts.CustomerID, func(context.Context, *accounts.Customer) error) (accounts.Customer, error) {
	return accounts.Customer{}, f.fail()
}

var fast = accounts.RetryConfig{BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond, DeadlineReserve: time.Millisecond}

// A restart shorter than the attempts is ridden out: the read and the
// order succeed, the order's apply ran once per attempt (its ledger ids
// make the repeats answer "exists"); longer, the last ErrUnavailable comes
// back after AttemptsMax; a refusal and UpdateCustomer are not retried.
func TestRetryStoreRidesOutARestart(t *testing.T) {
	ctx := context.Background()
	f := &flaky{failures: 3}
	r := accounts.NewRetryStore(f, fast)
	if c, err := r.Customer(ctx, 7); err != nil || c.ID != 7 || f.calls != 4 {
		t.Fatalf("read through 3 failures: %+v %v after %d calls", c, err, f.calls)
	}
	f.failures, f.calls = 2, 0
	o := &accounts.Order{RequestID: "r-1"}
	stored, _, err := r.PlaceOrder(ctx, o, nil, func(context.Context, []accounts.Customer) error {
		o.Status = accounts.OrderCompleted
		return nil
	})
	if err != nil || stored.Status != accounts.OrderCompleted || f.applies != 3 {
		t.Fatalf("order through 2 failed commits: %+v %v after %d applies", stored, err, f.applies)
	}

	f.failures, f.calls = 100, 0
	if _, err := r.Customer(ctx, 7); !errors.Is(err, accounts.ErrUnavailable) || f.calls != 24 {
		t.Fatalf("a database down for good: %v after %d calls, want ErrUnavailable after 24", err, f.calls)
	}
	f.failures, f.applies = 0, 0
	refused := errors.New("insufficient")
	if _, _, err := r.PlaceOrder(ctx, o, nil, func(context.Context, []accounts.Customer) error { return refused }); !errors.Is(err, refused) || f.applies != 1 {
		t.Fatalf("a refusal: %v after %d applies, want it at once", err, f.applies)
	}
	f.failures, f.calls = 1, 0
	if _, err := r.UpdateCustomer(ctx, 7, nil); !errors.Is(err, accounts.ErrUnavailable) || f.calls != 1 {
		t.Fatalf("UpdateCustomer: %v after %d calls, want ErrUnavailable at once", err, f.calls)
	}
}

// A caller whose deadline cannot cover another attempt gets the
// ErrUnavailable (503 at the gateway) before its deadline, not its own
// DeadlineExceeded.
func TestRetryStoreKeepsTheDeadline(t *testing.T) {
	f := &flaky{failures: 1000}
	r := accounts.NewRetryStore(f, accounts.RetryConfig{BackoffMin: 20 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
		DeadlineReserve: 50 * time.Millisecond, AttemptsMax: 1000})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := r.Customer(ctx, 7)
	if !errors.Is(err, accounts.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%v, want ErrUnavailable", err)
	}
	if f.calls < 2 {
		t.Fatalf("%d calls, want retries within the deadline", f.calls)
	}
}

// downFor is a Store whose reads fail with ErrUnavailable until a time
// (a database restarting), counting them.
type downFor struct {
	accounts.Store
	until time.Time
	calls int
}

func (d *downFor) Customer(_ context.Context, id accounts.CustomerID) (accounts.Customer, error) {
	d.calls++
	if time.Now().Before(d.until) {
		return accounts.Customer{}, fmt.Errorf("%w: connection refused", accounts.ErrUnavailable)
	}
	return accounts.Customer{ID: id}, nil
}

// With the default attempts and backoff, a request with the gateway's
// 10 s deadline rides out a database down for 7 s (a Postgres immediate
// restart on a busy machine): the attempts outlast the outage, the
// deadline bounds them.
func TestRetryStoreDefaultsRideOutAnOutageWithinTheDeadline(t *testing.T) {
	t.Parallel()
	const outage = 7 * time.Second
	d := &downFor{until: time.Now().Add(outage)}
	r := accounts.NewRetryStore(d, accounts.RetryConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := r.Customer(ctx, 7)
	if err != nil || c.ID != 7 {
		t.Fatalf("a %s outage under a 10 s deadline: %v after %d calls", outage, err, d.calls)
	}
	t.Logf("rode out %s in %d calls", outage, d.calls)
}
