package supervise

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"
)

func TestGroupFirstFailureStopsAll(t *testing.T) {
	var g Group
	ctx := g.Start(context.Background())
	boom := errors.New("boom")
	g.Run("waits", func(ctx context.Context) error { <-ctx.Done(); return errors.New("late, not reported") })
	g.Run("fails", func(context.Context) error { return boom })
	<-ctx.Done()
	if err := g.Wait(); !errors.Is(err, boom) || err.Error() != "fails: boom" {
		t.Fatalf("Wait: %v, want fails: boom", err)
	}
}

func TestGroupStopIsClean(t *testing.T) {
	var g Group
	g.Start(context.Background())
	g.Run("waits", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	g.Stop()
	if err := g.Wait(); err != nil {
		t.Fatalf("Wait after Stop: %v", err)
	}
}

func TestKeepRunningIsBounded(t *testing.T) {
	p := restartPolicy{pause: time.Millisecond, healthy: time.Hour, max: 3}
	runs := 0
	err := keepRunning(p, slog.New(slog.DiscardHandler), "part", func(context.Context) error {
		runs++
		return errors.New("down")
	})(context.Background())
	if err == nil || runs != 4 {
		t.Fatalf("%d runs, err %v; want 4 runs (1 + 3 restarts) and an error", runs, err)
	}
	runs = 0
	err = keepRunning(p, slog.New(slog.DiscardHandler), "part", func(context.Context) error {
		if runs++; runs < 3 {
			return errors.New("down")
		}
		return nil
	})(context.Background())
	if err != nil || runs != 3 {
		t.Fatalf("%d runs, err %v; want it to recover on the third", runs, err)
	}
}

func TestServeUntilStopsServe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- ServeUntil(ctx, func() error { <-stopped; return nil }, func() { close(stopped) })
	}()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeUntil did not return after ctx ended")
	}
}
