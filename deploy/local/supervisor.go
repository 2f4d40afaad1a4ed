package local

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"sync"
	"time"
)

// Bounds of the supervisor, after Kubernetes' restart policy (backoff
// from 10 s doubling to 5 min there; shorter here, because a rehearsal
// measures recovery in seconds).
const (
	restartBackoffMin = 200 * time.Millisecond
	restartBackoffMax = 5 * time.Second
	// A run this long counts as healthy: the next crash starts again at
	// the minimum backoff (Kubernetes resets after 10 min).
	restartStableAfter = 30 * time.Second
	// At most restartsMax restarts of one process in restartWindow; past
	// that the process is left down and the supervisor says so at ERROR
	// (Kubernetes would go on in CrashLoopBackOff; a cluster on a laptop
	// that crash-loops wants a person, not more restarts).
	restartsMax   = 10
	restartWindow = 2 * time.Minute
)

// supervisor restarts the cluster's processes that end without being
// stopped (a crash, a SIGKILL), as Kubernetes restarts a pod's container:
// same binary, arguments and addresses, after a backoff. One goroutine per
// process, all ended and waited for by stop.
type supervisor struct {
	log *slog.Logger
	// beforeRestart runs after a process ended and before it is
	// restarted (the cluster notes a dead owner's leases there).
	beforeRestart func(*Process)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	restarts map[string]int // by process name
}

func newSupervisor(log *slog.Logger, beforeRestart func(*Process)) *supervisor {
	ctx, cancel := context.WithCancel(context.Background())
	return &supervisor{log: log, beforeRestart: beforeRestart, ctx: ctx, cancel: cancel,
		restarts: map[string]int{}}
}

// watch supervises p from now on.
func (s *supervisor) watch(p *Process) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.run(p)
	}()
}

// run waits for p to end and restarts it, until p is stopped on purpose,
// it crashed too often, or the supervisor stops.
func (s *supervisor) run(p *Process) {
	backoff := restartBackoffMin
	var recent []time.Time // restarts within restartWindow
	for {
		done, _ := p.Exited()
		select {
		case <-s.ctx.Done():
			return
		case <-done:
		}
		if p.isStopped() {
			return
		}
		_, exitErr := p.Exited()
		if p.uptime() >= restartStableAfter {
			backoff = restartBackoffMin
		}
		now := time.Now()
		for len(recent) > 0 && now.Sub(recent[0]) > restartWindow {
			recent = recent[1:]
		}
		if len(recent) >= restartsMax {
			s.log.Error("supervisor: process keeps ending; left down", "process", p.Name,
				"restarts", len(recent), "window", restartWindow, "exit", exitErr, "log", p.LogPath)
			return
		}
		s.log.Warn("supervisor: process ended; restarting", "process", p.Name, "exit", exitErr,
			"after", backoff, "log", p.LogPath)
		if s.beforeRestart != nil {
			s.beforeRestart(p)
		}
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(max(backoff, p.downFor())):
		}
		recent = append(recent, time.Now())
		backoff = min(2*backoff, restartBackoffMax)
		if err := p.restart(); errors.Is(err, errStopped) {
			return
		} else if err != nil {
			// Counted as a restart: a binary that cannot start at all
			// ends in the give-up branch, not in an endless loop.
			s.log.Error("supervisor: restart failed", "process", p.Name, "err", err)
			continue
		}
		s.mu.Lock()
		s.restarts[p.Name]++
		n := s.restarts[p.Name]
		s.mu.Unlock()
		s.log.Info("supervisor: process restarted", "process", p.Name, "pid", p.Pid(), "restarts", n)
	}
}

// counts returns the restarts so far by process name.
func (s *supervisor) counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.restarts)
}

// stop ends every supervising goroutine and waits for them; the processes
// are left as they are (the cluster stops them next).
func (s *supervisor) stop() {
	s.cancel()
	s.wg.Wait()
}
