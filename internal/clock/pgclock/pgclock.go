package pgclock

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fundplatform/fund/internal/clock"
)

// Bounds of a shared test clock.
const (
	// RefreshEveryDefault is how often a process reads the shared instant:
	// a move reaches every process within about this long.
	RefreshEveryDefault = 200 * time.Millisecond
	// queryTimeout bounds one read or one move (a move waits for the row's
	// lock behind another move, which takes milliseconds).
	queryTimeout = 5 * time.Second
	// movesKeptMax is how many moves are remembered by request id (the
	// newest; as the dev stack's gateway remembers in memory).
	movesKeptMax = 1024
	connsMax     = 2
)

// ErrNotStarted: the database has no test clock row. Open makes it, so
// this means the row was deleted under a running process.
var ErrNotStarted = errors.New("the shared test clock has no row (start a process with --test-clock)")

// Config for Open.
type Config struct {
	// DSN of the database holding the clock (required): the cluster's
	// shard group 0, the same for every process.
	DSN string
	// Start is where the clock starts if no process started it yet; zero
	// = the wall clock now. A clock already started keeps its time.
	Start time.Time
	// RefreshEvery is how often the shared instant is read; 0 =
	// RefreshEveryDefault.
	RefreshEvery time.Duration
	// Logger; nil = discard.
	Logger *slog.Logger
}

// Clock is a process's view of the shared test clock: the last instant it
// read, refreshed in the background, read fresh by Refresh and moved by
// Set, Advance and their keyed forms. It is safe for concurrent use, and
// its Now never goes back.
type Clock struct {
	pool *pgxpool.Pool
	log  *slog.Logger

	mu  sync.Mutex
	now time.Time

	stop context.CancelFunc
	done chan struct{}
}

var _ clock.Clock = (*Clock)(nil)

// Open connects, applies the migrations (nothing pending: a read of the
// version table), starts the clock at cfg.Start unless it was started,
// and refreshes it in the background until Close.
func Open(ctx context.Context, cfg Config) (_ *Clock, err error) {
	if cfg.DSN == "" {
		return nil, errors.New("pgclock: no database (DSN) given")
	}
	pcfg, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("pgclock: parse dsn: %w", err)
	}
	pcfg.MaxConns = connsMax
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("pgclock: connect: %w", err)
	}
	defer func() {
		if err != nil {
			pool.Close()
		}
	}()
	if err := Migrate(ctx, pool); err != nil {
		return nil, fmt.Errorf("pgclock: %w", err)
	}
	start := cfg.Start
	if start.IsZero() {
		start = time.Now()
	}
	start = start.Round(0).Truncate(time.Microsecond) // what timestamptz keeps
	tag, err := pool.Exec(ctx, `INSERT INTO test_clock (now_at) VALUES ($1) ON CONFLICT (id) DO NOTHING`, start)
	if err != nil {
		return nil, fmt.Errorf("pgclock: start: %w", err)
	}
	c := &Clock{pool: pool, log: cfg.Logger, done: make(chan struct{})}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	now, err := c.Refresh(ctx)
	if err != nil {
		return nil, err
	}
	if tag.RowsAffected() == 1 {
		c.log.Info("shared test clock started", "now", now)
	} else if !cfg.Start.IsZero() && !now.Equal(start) {
		c.log.Info("shared test clock was started before; its time stands, not the start asked", "now", now, "start", start)
	}
	rctx, cancel := context.WithCancel(context.Background())
	c.stop = cancel
	go c.refreshLoop(rctx, cmp.Or(cfg.RefreshEvery, RefreshEveryDefault))
	return c, nil
}

// Close stops the refresh and closes the pool.
func (c *Clock) Close() {
	c.stop()
	<-c.done
	c.pool.Close()
}

// Now returns the last instant read or moved to: at most a refresh
// interval behind the shared clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Refresh reads the shared instant now and returns it; call it before
// anything that must not act on a stale time (a settlement's cut-off
// check).
func (c *Clock) Refresh(ctx context.Context) (time.Time, error) {
	var now time.Time
	err := c.pool.QueryRow(ctx, `SELECT now_at FROM test_clock WHERE id = 1`).Scan(&now)
	if errors.Is(err, pgx.ErrNoRows) {
		return c.Now(), ErrNotStarted
	}
	if err != nil {
		return c.Now(), fmt.Errorf("pgclock: read: %w", err)
	}
	return c.observe(now), nil
}

// observe takes t as the clock's time unless an earlier read or move
// already saw a later one (reads may overtake each other), and returns
// the time.
func (c *Clock) observe(t time.Time) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.now) {
		c.now = t
	}
	return c.now
}

// refreshLoop reads the shared instant every interval until ctx ends. A
// failed read keeps the last value; the first failure of a streak is
// logged, and the recovery.
func (c *Clock) refreshLoop(ctx context.Context, every time.Duration) {
	defer close(c.done)
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, queryTimeout)
		_, err := c.Refresh(rctx)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			failing = true
			c.log.Warn("shared test clock: refresh failed; keeping the last time read", "now", c.Now(), "err", err)
		case err == nil && failing:
			failing = false
			c.log.Info("shared test clock: refreshing again", "now", c.Now())
		}
	}
}

// Set moves the clock to to (clock.ErrBackwards if before its time; its
// time itself is a no-op) and returns the new time. It remembers no
// request id: see SetOnce.
func (c *Clock) Set(to time.Time) (time.Time, error) {
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	return c.SetOnce(ctx, "", to)
}

// Advance moves the clock forward by d (d < 0 is clock.ErrBackwards) and
// returns the new time. It remembers no request id: see AdvanceOnce.
func (c *Clock) Advance(d time.Duration) (time.Time, error) {
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	return c.AdvanceOnce(ctx, "", d)
}

// SetOnce is Set applied once per request id, whichever process is asked:
// a repeat of the id with the same instant returns the time that first
// move left, with another move clock.ErrMoveConflict. "" = no id.
func (c *Clock) SetOnce(ctx context.Context, requestID string, to time.Time) (time.Time, error) {
	to = to.Round(0).Truncate(time.Microsecond)
	return c.move(ctx, requestID, "to "+to.Format(time.RFC3339Nano), func(now time.Time) (time.Time, error) {
		if to.Before(now) {
			return now, fmt.Errorf("to %s is before the clock's %s: %w",
				to.Format(time.RFC3339Nano), now.Format(time.RFC3339Nano), clock.ErrBackwards)
		}
		return to, nil
	})
}

// AdvanceOnce is Advance applied once per request id, whichever process
// is asked: the duration is turned into an instant from the clock's time
// in the move's transaction, so a retry of "by 36h" moves 36 hours once.
// A repeat of the id with the same duration returns the time that first
// move left, with another move clock.ErrMoveConflict. "" = no id.
func (c *Clock) AdvanceOnce(ctx context.Context, requestID string, by time.Duration) (time.Time, error) {
	return c.move(ctx, requestID, "by "+by.String(), func(now time.Time) (time.Time, error) {
		if by < 0 {
			return now, fmt.Errorf("by %s: %w", by, clock.ErrBackwards)
		}
		return now.Add(by).Truncate(time.Microsecond), nil
	})
}

// move moves the clock in one transaction: the row is locked, so moves
// from several processes apply one after another; a request id seen
// before answers its first result; target turns the clock's time into the
// instant to move to; the update keeps the later of the two, so even a
// move computed elsewhere could never take the clock back.
func (c *Clock) move(ctx context.Context, requestID, ask string, target func(now time.Time) (time.Time, error)) (time.Time, error) {
	tx, err := c.pool.Begin(ctx)
	if err != nil {
		return c.Now(), fmt.Errorf("pgclock: move: %w", err)
	}
	defer tx.Rollback(ctx)
	var now time.Time
	err = tx.QueryRow(ctx, `SELECT now_at FROM test_clock WHERE id = 1 FOR UPDATE`).Scan(&now)
	if errors.Is(err, pgx.ErrNoRows) {
		return c.Now(), ErrNotStarted
	}
	if err != nil {
		return c.Now(), fmt.Errorf("pgclock: move: %w", err)
	}
	c.observe(now)
	if requestID != "" {
		var (
			prevAsk string
			prevTo  time.Time
		)
		err := tx.QueryRow(ctx, `SELECT ask, moved_to FROM test_clock_moves WHERE request_id = $1`, requestID).
			Scan(&prevAsk, &prevTo)
		switch {
		case err == nil && prevAsk != ask:
			return c.Now(), fmt.Errorf("request id %q moved the clock with %s, now %s: %w",
				requestID, prevAsk, ask, clock.ErrMoveConflict)
		case err == nil:
			return prevTo, nil
		case !errors.Is(err, pgx.ErrNoRows):
			return c.Now(), fmt.Errorf("pgclock: move: %w", err)
		}
	}
	to, err := target(now)
	if err != nil {
		return c.Now(), err
	}
	if err := tx.QueryRow(ctx, `UPDATE test_clock SET now_at = greatest(now_at, $1), moved_at = now()
		WHERE id = 1 RETURNING now_at`, to).Scan(&now); err != nil {
		return c.Now(), fmt.Errorf("pgclock: move: %w", err)
	}
	if requestID != "" {
		if _, err := tx.Exec(ctx, `INSERT INTO test_clock_moves (request_id, ask, moved_to) VALUES ($1, $2, $3)`,
			requestID, ask, now); err != nil {
			return c.Now(), fmt.Errorf("pgclock: move: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM test_clock_moves WHERE request_id IN (
			SELECT request_id FROM test_clock_moves ORDER BY moved_at DESC, request_id OFFSET $1)`, movesKeptMax); err != nil {
			return c.Now(), fmt.Errorf("pgclock: move: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return c.Now(), fmt.Errorf("pgclock: move: %w", err)
	}
	return c.observe(now), nil
}
