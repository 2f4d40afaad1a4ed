package clock

import (
	"errors"
	"sync"
	"testing"
	"time"
)

func TestTestClockMovesOnlyForward(t *testing.T) {
	start := time.Date(2026, 11, 9, 10, 0, 0, 0, time.FixedZone("CST", 8*3600))
	c := NewTest(start)
	if got := c.Now(); !got.Equal(start) {
		t.Fatalf("Now = %s, want %s", got, start)
	}
	if got, err := c.Advance(36 * time.Hour); err != nil || !got.Equal(start.Add(36*time.Hour)) {
		t.Fatalf("Advance(36h) = %s, %v", got, err)
	}
	to := start.Add(48 * time.Hour)
	for range 2 { // a repeated Set is idempotent
		if got, err := c.Set(to); err != nil || !got.Equal(to) {
			t.Fatalf("Set(%s) = %s, %v", to, got, err)
		}
	}
	if got, err := c.Set(start); !errors.Is(err, ErrBackwards) || !got.Equal(to) {
		t.Fatalf("Set(back) = %s, %v; want ErrBackwards and the clock unchanged", got, err)
	}
	if _, err := c.Advance(-time.Second); !errors.Is(err, ErrBackwards) {
		t.Fatalf("Advance(-1s) = %v, want ErrBackwards", err)
	}
	if !c.Now().Equal(to) {
		t.Fatalf("a refused move changed the clock to %s", c.Now())
	}
}

func TestTestClockConcurrent(t *testing.T) {
	c := NewTest(time.Unix(0, 0))
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := c.Now()
			for range 1000 {
				_, _ = c.Advance(time.Second)
				now := c.Now()
				if now.Before(last) {
					t.Errorf("clock went back from %s to %s", last, now)
					return
				}
				last = now
			}
		}()
	}
	wg.Wait()
	if got, want := c.Now(), time.Unix(8000, 0); !got.Equal(want) {
		t.Fatalf("after 8000 advances of 1s: %s, want %s", got, want)
	}
}

func TestWall(t *testing.T) {
	var c Clock = Wall{}
	if d := time.Since(c.Now()); d < 0 || d > time.Minute {
		t.Fatalf("Wall.Now is %s off", d)
	}
}
