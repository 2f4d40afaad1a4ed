package clock

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// Clock tells the business time.
type Clock interface {
	Now() time.Time
}

// Wall is the machine's clock: production's business clock.
type Wall struct{}

// Now returns time.Now().
func (Wall) Now() time.Time { return time.Now() }

// ErrBackwards is returned for a move of a Test clock to before its
// present: business time never runs backwards, since journal timestamps,
// settled dates and daily quotas were taken from it.
var ErrBackwards = errors.New("the test clock only moves forward")

// ErrMoveConflict is returned for a move under a request id that moved a
// shared test clock before with another move (pgclock): a retried move
// applies once, and a reused id is refused rather than guessed at.
var ErrMoveConflict = errors.New("the request id moved the test clock before with another move")

// Test is a clock that stands still until moved forward. It is safe for
// concurrent use; readers see either the time before a move or after it.
type Test struct {
	mu  sync.Mutex
	now time.Time
}

// NewTest returns a test clock standing at start.
func NewTest(start time.Time) *Test {
	return &Test{now: start.Round(0)} // Round(0) drops the monotonic reading
}

// Now returns the clock's time.
func (t *Test) Now() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.now
}

// Set moves the clock to to and returns it; to equal to the present is a
// no-op (so a repeated Set is idempotent), to before it is ErrBackwards.
func (t *Test) Set(to time.Time) (time.Time, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if to.Before(t.now) {
		return t.now, fmt.Errorf("to %s is before the clock's %s: %w",
			to.Format(time.RFC3339Nano), t.now.Format(time.RFC3339Nano), ErrBackwards)
	}
	t.now = to.Round(0)
	return t.now, nil
}

// Advance moves the clock forward by d (d < 0 is ErrBackwards) and returns
// the new time.
func (t *Test) Advance(d time.Duration) (time.Time, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if d < 0 {
		return t.now, fmt.Errorf("by %s: %w", d, ErrBackwards)
	}
	t.now = t.now.Add(d)
	return t.now, nil
}
