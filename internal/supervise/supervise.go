package supervise

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Group runs a process's parts; the first to fail (or the parent context
// ending) stops all of them, and Wait returns the first error. Start it
// before Run; the zero value is otherwise ready.
type Group struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	err    error
}

// Start derives the parts' context from parent and returns it: it ends
// when parent does, when a part ends, or on Stop.
func (g *Group) Start(parent context.Context) context.Context {
	g.ctx, g.cancel = context.WithCancel(parent)
	return g.ctx
}

// Run starts part on a goroutine the group owns. Any part ending ends all
// of them; an error it returns before that is the group's (named after
// the part).
func (g *Group) Run(name string, part func(context.Context) error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		err := part(g.ctx)
		if err != nil && g.ctx.Err() == nil {
			g.once.Do(func() { g.err = fmt.Errorf("%s: %w", name, err) })
		}
		g.cancel() // any part ending ends the process
	}()
}

// Stop ends every part and waits for them.
func (g *Group) Stop() { g.cancel(); g.wg.Wait() }

// Wait waits for every part to end and returns the first failure.
func (g *Group) Wait() error {
	g.wg.Wait()
	return g.err
}

// Restarts of a part that failed: a pause apart, at most restartsMax times
// in a row (with the relay's own two minutes of retries per run, that rides
// out an outage of more than a day) before the process gives up.
const (
	restartPause = 5 * time.Second
	restartsMax  = 1000
	healthyRun   = 10 * time.Minute // a run this long resets the count
)

// restartPolicy bounds KeepRunning; tests shorten it.
type restartPolicy struct {
	pause, healthy time.Duration
	max            int
}

var defaultRestarts = restartPolicy{pause: restartPause, healthy: healthyRun, max: restartsMax}

// KeepRunning starts part again after it fails, until ctx ends or it failed
// restartsMax (1000) times in a row, 5 s apart; a run of 10 minutes or
// more counts as recovered and resets the count.
func KeepRunning(log *slog.Logger, name string, part func(context.Context) error) func(context.Context) error {
	return keepRunning(defaultRestarts, log, name, part)
}

func keepRunning(p restartPolicy, log *slog.Logger, name string, part func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		for restart := 0; ; restart++ {
			began := time.Now()
			err := part(ctx)
			if err == nil || ctx.Err() != nil {
				return err
			}
			if time.Since(began) > p.healthy {
				restart = 0 // it had recovered: count this failure afresh
			}
			if restart >= p.max {
				return fmt.Errorf("failed %d times in a row: %w", restart+1, err)
			}
			log.Error(name+" failed; starting it again", "restart", restart+1, "pause", p.pause, "err", err)
			t := time.NewTimer(p.pause)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
	}
}

// ServeUntil runs serve until it fails or ctx ends; then it calls stop
// and waits for serve to return, so no goroutine outlives the part.
func ServeUntil(ctx context.Context, serve func() error, stop func()) error {
	errc := make(chan error, 1)
	go func() { errc <- serve() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	stop()
	return <-errc
}
