package server

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// A shared database's readiness check keeps the gateway ready through an
// outage shorter than a request's deadline (the requests wait it out), and
// fails once the outage lasts longer; a check that hangs is cut short and
// counts as failing, not as a probe that timed out.
func TestReadinessToleratesAnOutageShorterThanTheDeadline(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 11, 11, 0, 0, 0, 0, time.UTC)
	var down, hang bool
	check := func(ctx context.Context) error {
		mu.Lock()
		d, h := down, hang
		mu.Unlock()
		if h {
			<-ctx.Done()
			return ctx.Err()
		}
		if d {
			return errors.New("connection refused")
		}
		return nil
	}
	o := newOutageTolerant("accounts databases", 10*time.Second, check)
	o.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	step := func(d time.Duration, isDown, isHung bool) {
		mu.Lock()
		now, down, hang = now.Add(d), isDown, isHung
		mu.Unlock()
	}
	ctx := context.Background()
	if err := o.Check(ctx); err != nil {
		t.Fatalf("healthy: %v", err)
	}
	// A restart: refused, then hanging, for 9 s in all: still ready.
	step(time.Second, true, false)
	if err := o.Check(ctx); err != nil {
		t.Fatalf("1 s into an outage: %v", err)
	}
	step(4*time.Second, false, true)
	began := time.Now()
	if err := o.Check(ctx); err != nil || time.Since(began) > 2*readyCheckTimeout {
		t.Fatalf("5 s into an outage, hanging: %v after %s", err, time.Since(began))
	}
	step(4*time.Second, true, false)
	if err := o.Check(ctx); err != nil {
		t.Fatalf("9 s into an outage: %v", err)
	}
	// Back: the next outage counts from its own start.
	step(time.Second, false, false)
	if err := o.Check(ctx); err != nil {
		t.Fatalf("back: %v", err)
	}
	step(time.Second, true, false)
	if err := o.Check(ctx); err != nil {
		t.Fatalf("a new outage: %v", err)
	}
	// Longer than a request's deadline: not ready.
	step(10*time.Second+time.Millisecond, true, false)
	if err := o.Check(ctx); err == nil {
		t.Fatal("ready after an outage longer than a request's deadline")
	}
	step(time.Second, false, false)
	if err := o.Check(ctx); err != nil {
		t.Fatalf("back after a long outage: %v", err)
	}
}

// The shared databases are checked together: two that hang cost the
// probe one readyCheckTimeout, not two, and a failure of either fails the
// check.
func TestReadinessChecksTheDatabasesTogether(t *testing.T) {
	hang := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	ctx, cancel := context.WithTimeout(context.Background(), readyCheckTimeout)
	defer cancel()
	began := time.Now()
	err := allOf(hang, hang)(ctx)
	if took := time.Since(began); err == nil || took > readyCheckTimeout*3/2 {
		t.Fatalf("two hanging databases: %v after %s, want a failure within %s", err, took, readyCheckTimeout)
	}
	down := errors.New("down")
	ok := func(context.Context) error { return nil }
	if err := allOf(ok, func(context.Context) error { return down })(context.Background()); !errors.Is(err, down) {
		t.Fatalf("one database down: %v", err)
	}
}
