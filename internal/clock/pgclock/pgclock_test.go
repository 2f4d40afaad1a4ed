package pgclock_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fundplatform/fund/internal/clock"
	"github.com/fundplatform/fund/internal/clock/pgclock"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/internal/pgmigrate"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var start = time.Date(2026, 11, 9, 10, 0, 0, 0, time.FixedZone("CST", 8*3600))

// serviceDSN returns a fresh database migrated by the owner role, with the
// service role granted the clock's privileges: the cluster's setup.
func serviceDSN(t *testing.T) string {
	t.Helper()
	roles := pgtest.NewDatabaseWithRoles(t)
	pool, err := pgxpool.New(t.Context(), roles.Owner)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := pgclock.Migrate(t.Context(), pool); err != nil {
		t.Fatal(err)
	}
	if err := pgmigrate.Grant(t.Context(), pool, roles.ServiceRole, pgclock.ServicePrivileges()); err != nil {
		t.Fatal(err)
	}
	return roles.Service
}

func open(t *testing.T, dsn string, cfg pgclock.Config) *pgclock.Clock {
	t.Helper()
	cfg.DSN = dsn
	c, err := pgclock.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// The first process starts the clock; one opened later with another start
// finds it and keeps its time.
func TestStartOnce(t *testing.T) {
	t.Parallel()
	dsn := serviceDSN(t)
	a := open(t, dsn, pgclock.Config{Start: start})
	b := open(t, dsn, pgclock.Config{Start: start.Add(72 * time.Hour)})
	for _, c := range []*pgclock.Clock{a, b} {
		if got := c.Now(); !got.Equal(start) {
			t.Errorf("Now = %s, want %s", got, start)
		}
	}
}

// Two writers (two gateways' clocks) move the clock at once, to random
// instants and by durations: the shared clock and every reader's Now only
// go forward, a move before the clock's time is refused and changes
// nothing, and the clock ends at the latest instant asked or at the sum
// of the advances past it.
func TestForwardOnlyUnderConcurrentWriters(t *testing.T) {
	t.Parallel()
	dsn := serviceDSN(t)
	writers := []*pgclock.Clock{
		open(t, dsn, pgclock.Config{Start: start}),
		open(t, dsn, pgclock.Config{Start: start}),
	}
	reader := open(t, dsn, pgclock.Config{RefreshEvery: 10 * time.Millisecond})
	const movesPerWriter = 40
	seed := rand.Uint64()
	t.Logf("seed %d", seed)

	stop := make(chan struct{})
	var readerWG sync.WaitGroup
	readerWG.Add(1)
	go func() {
		defer readerWG.Done()
		last := reader.Now()
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			now := reader.Now()
			if now.Before(last) {
				t.Errorf("reader's clock went back from %s to %s", last, now)
				return
			}
			last = now
		}
	}()

	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		latest = start
	)
	for w, c := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			last := c.Now()
			for i := range movesPerWriter {
				to := start.Add(time.Duration(rng.IntN(1000)) * time.Minute)
				got, err := c.SetOnce(t.Context(), fmt.Sprintf("w%d-%d", w, i), to)
				switch {
				case errors.Is(err, clock.ErrBackwards):
					if !got.After(to) {
						t.Errorf("Set(%s) refused as backwards at %s", to, got)
					}
				case err != nil:
					t.Error(err)
					return
				default:
					mu.Lock()
					if to.After(latest) {
						latest = to
					}
					mu.Unlock()
				}
				if now := c.Now(); now.Before(last) || now.Before(to) && err == nil {
					t.Errorf("writer %d: Now %s after a move to %s (before: %s)", w, now, to, last)
				}
				last = c.Now()
			}
		}()
	}
	wg.Wait()
	close(stop)
	readerWG.Wait()
	now, err := reader.Refresh(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !now.Equal(latest) {
		t.Fatalf("clock at %s after the moves, want the latest asked, %s", now, latest)
	}

	// Advances from both writers at once, each with its own key, add up.
	wg = sync.WaitGroup{}
	for w, c := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range movesPerWriter {
				if _, err := c.AdvanceOnce(t.Context(), fmt.Sprintf("a%d-%d", w, i), time.Minute); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	want := latest.Add(2 * movesPerWriter * time.Minute)
	if now, err := reader.Refresh(t.Context()); err != nil || !now.Equal(want) {
		t.Fatalf("after %d advances of 1m: %s, %v; want %s", 2*movesPerWriter, now, err, want)
	}
}

// A move by a duration applies once per request id, whichever process is
// asked and however often: a repeat answers the first result, the same id
// with another move is refused, and two processes sending the same id at
// once move the clock once.
func TestIdempotentByRequestID(t *testing.T) {
	t.Parallel()
	dsn := serviceDSN(t)
	a := open(t, dsn, pgclock.Config{Start: start})
	b := open(t, dsn, pgclock.Config{})
	first, err := a.AdvanceOnce(t.Context(), "clock-1", 36*time.Hour)
	if err != nil || !first.Equal(start.Add(36*time.Hour)) {
		t.Fatalf("AdvanceOnce = %s, %v", first, err)
	}
	if got, err := b.AdvanceOnce(t.Context(), "clock-1", 36*time.Hour); err != nil || !got.Equal(first) {
		t.Fatalf("the retry on another process = %s, %v; want %s", got, err, first)
	}
	if _, err := b.AdvanceOnce(t.Context(), "clock-1", time.Hour); !errors.Is(err, clock.ErrMoveConflict) {
		t.Fatalf("the id with another move: %v, want ErrMoveConflict", err)
	}
	if _, err := b.SetOnce(t.Context(), "clock-1", first); !errors.Is(err, clock.ErrMoveConflict) {
		t.Fatalf("the id with a move to an instant: %v, want ErrMoveConflict", err)
	}
	to := first.Add(time.Hour)
	for _, c := range []*pgclock.Clock{a, b} {
		if got, err := c.SetOnce(t.Context(), "clock-2", to); err != nil || !got.Equal(to) {
			t.Fatalf("SetOnce(%s) = %s, %v", to, got, err)
		}
	}

	var wg sync.WaitGroup
	for _, c := range []*pgclock.Clock{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.AdvanceOnce(t.Context(), "clock-3", 24*time.Hour); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	want := to.Add(24 * time.Hour)
	if now, err := a.Refresh(t.Context()); err != nil || !now.Equal(want) {
		t.Fatalf("after one move sent four times: %s, %v; want %s", now, err, want)
	}
}

// A reader sees a move within its refresh interval, and at once after
// Refresh.
func TestReaderSeesMove(t *testing.T) {
	t.Parallel()
	dsn := serviceDSN(t)
	w := open(t, dsn, pgclock.Config{Start: start})
	slow := open(t, dsn, pgclock.Config{RefreshEvery: time.Hour}) // never refreshes by itself here
	r := open(t, dsn, pgclock.Config{RefreshEvery: 50 * time.Millisecond})

	moved, err := w.Advance(36 * time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second) // 100 intervals: a busy machine, not a slow clock
	for !r.Now().Equal(moved) {
		if time.Now().After(deadline) {
			t.Fatalf("reader at %s 5 s after a move to %s", r.Now(), moved)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := slow.Now(); !got.Equal(start) {
		t.Fatalf("a clock that has not refreshed is at %s, want %s", got, start)
	}
	if got, err := slow.Refresh(t.Context()); err != nil || !got.Equal(moved) {
		t.Fatalf("Refresh = %s, %v; want %s", got, err, moved)
	}
	if got := slow.Now(); !got.Equal(moved) {
		t.Fatalf("Now after Refresh = %s, want %s", got, moved)
	}
	if _, err := w.Set(start); !errors.Is(err, clock.ErrBackwards) {
		t.Fatalf("Set back: %v, want ErrBackwards", err)
	}
	if _, err := w.Advance(-time.Second); !errors.Is(err, clock.ErrBackwards) {
		t.Fatalf("Advance(-1s): %v, want ErrBackwards", err)
	}
}

// Open refuses a database without the clock's tables for a role that may
// not create them: the migration step comes first.
func TestServiceRoleNeedsMigrationStep(t *testing.T) {
	t.Parallel()
	roles := pgtest.NewDatabaseWithRoles(t)
	if _, err := pgclock.Open(t.Context(), pgclock.Config{DSN: roles.Service}); err == nil {
		t.Fatal("Open as the service role on an unmigrated database succeeded")
	}
}
