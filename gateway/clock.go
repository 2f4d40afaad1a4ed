package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/fundplatform/fund/accounts"
	fundv1 "github.com/fundplatform/fund/gateway/api/fund/v1"
	"github.com/fundplatform/fund/internal/clock"
	"github.com/fundplatform/fund/ledger"
)

// TestClock is a sandbox's business clock (internal/clock.Test, or a
// rehearsal cluster's shared clock, a SharedTestClock), which the admin API
// moves. The process gives the same clock to everything that reads
// business time (accounts, the ledger, settlement); the gateway's own
// Config.Now (token expiry, rate limits) stays on real time.
type TestClock interface {
	Now() time.Time
	// Set moves the clock to an instant, Advance by a duration; both
	// refuse to go back (clock.ErrBackwards) and return the new time.
	Set(to time.Time) (time.Time, error)
	Advance(d time.Duration) (time.Time, error)
}

// SharedTestClock is a test clock that several processes share (a
// rehearsal cluster's, internal/clock/pgclock): it remembers its moves by
// request id itself, so that a retry sent to another gateway moves it
// once, and GET /v1/admin/clock reads it fresh. Config.TestClock is used
// through these methods when it has them.
type SharedTestClock interface {
	TestClock
	// Refresh reads the shared time now.
	Refresh(ctx context.Context) (time.Time, error)
	// SetOnce and AdvanceOnce are Set and Advance applied once per
	// request id: a repeat returns the first result, the id with another
	// move is clock.ErrMoveConflict.
	SetOnce(ctx context.Context, requestID string, to time.Time) (time.Time, error)
	AdvanceOnce(ctx context.Context, requestID string, by time.Duration) (time.Time, error)
}

// ErrTestClockDisabled: the clock calls need a test clock, and this process
// runs on the wall clock.
var ErrTestClockDisabled = errors.New("this process runs on the wall clock, not a test clock: start it with fundd dev --test-clock (or a rehearsal cluster's processes with --test-clock) to move business time")

// clockMovesMax bounds the request ids of clock moves remembered, so that
// a retry of a `by` moves the clock once (oldest forgotten first).
const clockMovesMax = 1024

// clockMoves remembers the answers of recent clock moves by request id.
// The zero value is ready.
type clockMoves struct {
	mu    sync.Mutex
	byKey map[string]clockMove
	order []string // keys, oldest first
}

// clockMove is one move: what was asked, and where it left the clock.
type clockMove struct {
	ask string
	to  time.Time
}

// move applies fn once per key: a repeat of the key with the same ask gets
// the first result, with another ask accounts.ErrIdempotencyConflict. The
// lock is held across fn: moves are rare, and two moves at once must not
// both apply a retried key.
func (c *clockMoves) move(key, ask string, fn func() (time.Time, error)) (time.Time, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m, ok := c.byKey[key]; ok {
		if m.ask != ask {
			return time.Time{}, fmt.Errorf("request id %q moved the clock with %s, now %s: %w",
				key, m.ask, ask, accounts.ErrIdempotencyConflict)
		}
		return m.to, nil
	}
	to, err := fn()
	if err != nil {
		return to, err
	}
	if c.byKey == nil {
		c.byKey = map[string]clockMove{}
	}
	if len(c.order) >= clockMovesMax {
		delete(c.byKey, c.order[0])
		c.order = c.order[1:]
	}
	c.byKey[key] = clockMove{ask: ask, to: to}
	c.order = append(c.order, key)
	return to, nil
}

// AdvanceClock implements fundv1.AdminServiceServer.
func (s *adminServer) AdvanceClock(ctx context.Context, r *fundv1.AdvanceClockRequest) (*fundv1.Clock, error) {
	if _, err := s.g.admin(ctx); err != nil {
		return nil, err
	}
	var v violations
	rid := requestID(ctx, r.GetRequestId(), &v)
	if rid != "" && !printableID(rid) {
		v.add("request_id", "must be 1 to 64 printable ASCII characters")
	}
	var (
		ask    string
		apply  func(TestClock) (time.Time, error)
		shared func(SharedTestClock) (time.Time, error)
	)
	switch m := r.GetMove().(type) {
	case *fundv1.AdvanceClockRequest_To:
		to, err := time.Parse(time.RFC3339, strings.TrimSpace(m.To))
		if err != nil {
			v.add("to", "want an instant in RFC 3339, e.g. 2026-11-10T15:30:00+08:00")
		}
		ask = "to " + to.Format(time.RFC3339Nano)
		apply = func(c TestClock) (time.Time, error) { return c.Set(to) }
		shared = func(c SharedTestClock) (time.Time, error) { return c.SetOnce(ctx, rid, to) }
	case *fundv1.AdvanceClockRequest_By:
		by, err := time.ParseDuration(strings.TrimSpace(m.By))
		if err != nil || by <= 0 {
			v.add("by", "want a positive duration such as 36h, 90m or 24h30m")
		}
		ask = "by " + by.String()
		apply = func(c TestClock) (time.Time, error) { return c.Advance(by) }
		shared = func(c SharedTestClock) (time.Time, error) { return c.AdvanceOnce(ctx, rid, by) }
	default:
		v.add("to", "give to (an instant) or by (a duration)")
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	c := s.g.cfg.TestClock
	if c == nil {
		return nil, statusOf(ErrTestClockDisabled, s.g.log)
	}
	var (
		now time.Time
		err error
	)
	if sc, ok := c.(SharedTestClock); ok {
		now, err = shared(sc)
		err = sharedClockError(ctx, err)
	} else {
		now, err = s.clocks.move(rid, ask, func() (time.Time, error) { return apply(c) })
	}
	if err != nil {
		return nil, statusOf(err, s.g.log)
	}
	s.g.log.Info("test clock moved", "ask", ask, "now", now)
	return clockMsg(now, true, s.g.accts.Calendar()), nil
}

// GetClock implements fundv1.AdminServiceServer.
func (s *adminServer) GetClock(ctx context.Context, _ *fundv1.GetClockRequest) (*fundv1.Clock, error) {
	if _, err := s.g.admin(ctx); err != nil {
		return nil, err
	}
	if c := s.g.cfg.TestClock; c != nil {
		now := c.Now()
		if sc, ok := c.(SharedTestClock); ok {
			var err error
			if now, err = sc.Refresh(ctx); err != nil {
				return nil, statusOf(sharedClockError(ctx, err), s.g.log)
			}
		}
		return clockMsg(now, true, s.g.accts.Calendar()), nil
	}
	return clockMsg(time.Now(), false, s.g.accts.Calendar()), nil
}

// sharedClockError maps a shared test clock's error onto the error table:
// a reused request id is the idempotency conflict of any other call, and
// a database that could not answer is the accounts database's 503 (the
// clock's row lives there); a move back, or a request that ended, stays.
func sharedClockError(ctx context.Context, err error) error {
	switch {
	case err == nil, errors.Is(err, clock.ErrBackwards), ctx.Err() != nil:
		return err
	case errors.Is(err, clock.ErrMoveConflict):
		return fmt.Errorf("%w: %w", err, accounts.ErrIdempotencyConflict)
	}
	return fmt.Errorf("shared test clock: %w: %w", err, accounts.ErrUnavailable)
}

// clockMsg is the business time now and what follows from it: the natural
// day, the trade date of an order placed now, the next cut-off and the
// newest date a settlement may run for (its 15:00 cut-off passed:
// settlement.Runner's rule, which holds for every natural day).
func clockMsg(now time.Time, test bool, cal *accounts.Calendar) *fundv1.Clock {
	zone := ledger.BusinessZone()
	local := now.In(zone)
	cutoff := time.Date(local.Year(), local.Month(), local.Day(), accounts.CutOffHour, 0, 0, 0, zone)
	settleable := cutoff.AddDate(0, 0, -1)
	if !local.Before(cutoff) {
		settleable = cutoff
		cutoff = cutoff.AddDate(0, 0, 1)
	}
	return &fundv1.Clock{
		Now:               local.Format(time.RFC3339),
		TestClock:         test,
		BusinessDate:      local.Format(time.DateOnly),
		TradeDate:         cal.TradeDate(now).Format(time.DateOnly),
		NextCutoff:        cutoff.Format(time.RFC3339),
		SettleableThrough: settleable.Format(time.DateOnly),
	}
}

// printableID reports whether id is a request id as the accounts service
// takes them: 1 to 64 printable ASCII characters, no space.
func printableID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < '!' || id[i] > '~' {
			return false
		}
	}
	return true
}
