package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// readyCheckTimeout bounds the check of the shared dependencies (run
// together: allOf), well under the 1 s a prober usually gives /readyz: a
// database that hangs while it restarts must read as "failing", which is
// tolerated, not as a probe that timed out, which takes the gateway out
// of service.
const readyCheckTimeout = 500 * time.Millisecond

// outageTolerant is a readiness check on a dependency that every replica
// of the gateway shares (the accounts databases, the lease tables). It
// passes while the dependency answers, and keeps passing while it has
// been failing for no longer than grace: a request's deadline, within
// which the requests ride the outage out themselves (the accounts store's
// and the ledger client's retries). Failing at once would take every
// replica out of service together (the front, a Kubernetes Service,
// routes to none) and answer 503 for a database restart of a second or
// two that the requests would have waited out as latency. After grace
// the gateway is not ready: nothing it serves could succeed.
type outageTolerant struct {
	name  string
	check func(context.Context) error
	grace time.Duration
	now   func() time.Time

	mu           sync.Mutex
	failingSince time.Time // zero while the dependency answers
}

func newOutageTolerant(name string, grace time.Duration, check func(context.Context) error) *outageTolerant {
	return &outageTolerant{name: name, check: check, grace: grace, now: time.Now}
}

// Check is the readiness check (gateway.Config.Ready).
func (o *outageTolerant) Check(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, readyCheckTimeout)
	err := o.check(cctx)
	cancel()
	o.mu.Lock()
	defer o.mu.Unlock()
	if err == nil {
		o.failingSince = time.Time{}
		return nil
	}
	now := o.now()
	if o.failingSince.IsZero() {
		o.failingSince = now
	}
	if down := now.Sub(o.failingSince); down > o.grace {
		return fmt.Errorf("%s failing for %s (more than a request's deadline, %s): %w",
			o.name, down.Round(time.Millisecond), o.grace, err)
	}
	return nil
}

// allOf runs the checks concurrently, so that their time is the slowest
// one's rather than the sum, and joins their errors.
func allOf(checks ...func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		errs := make([]error, len(checks))
		var wg sync.WaitGroup
		for i, check := range checks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = check(ctx)
			}()
		}
		wg.Wait()
		return errors.Join(errs...)
	}
}
