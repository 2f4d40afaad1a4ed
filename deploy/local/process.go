package local

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Bounds of a child process's life.
const (
	stopGrace       = 15 * time.Second       // SIGTERM to SIGKILL
	probeTimeout    = time.Second            // one /readyz request
	probeInterval   = 100 * time.Millisecond // between /readyz polls while waiting
	logTailBytesMax = 4 << 10                // of a failed process's log, in errors
	quitWait        = 2 * time.Second        // for the goroutine dump after SIGQUIT
)

// Errors of a process's life.
var (
	// ErrExited: the process ended while it was waited for.
	ErrExited = errors.New("local: process exited")
	// ErrStopTimeout: the process did not stop within the grace period
	// after SIGTERM and was killed (its goroutine dump is in its log).
	ErrStopTimeout = errors.New("local: process did not stop in time and was killed")
)

// Process is one child process of the cluster: a fundd role or the
// broker.
type Process struct {
	Name     string   // ledger-0, gateway-1, ...
	Args     []string // fundd's arguments (no credentials: those are in its environment)
	HTTPAddr string   // host:port of /healthz, /readyz and /metrics (and REST on a gateway)
	LogPath  string   // its stdout and stderr

	mu      sync.Mutex
	bin     string   // the binary, kept for a restart
	env     []string // added to the environment, kept for a restart
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has been waited for
	err     error         // its exit status, once done
	started time.Time     // of the current run
	ended   time.Time     // of the last run, once done
	// stopped: Stop was called, so the process ended on purpose and the
	// supervisor leaves it down. Kill does not set it: a SIGKILL is a
	// fault, and the supervisor restarts the process as Kubernetes would.
	stopped bool
	// downUntil: KillFor keeps the process down until then.
	downUntil time.Time
}

// errStopped: a restart of a process that was stopped on purpose.
var errStopped = errors.New("local: process was stopped")

// start runs the process with env added to this process's environment.
func (p *Process) start(bin string, env []string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bin, p.env = bin, env
	return p.startLocked()
}

// restart runs the process again with the same binary, arguments and
// environment (so at the same addresses), unless it was stopped on purpose
// or is still running. Its output is appended to the same log.
func (p *Process) restart() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return errStopped
	}
	if p.done != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("%s: restart: still running", p.Name)
		}
	}
	return p.startLocked()
}

// startLocked starts the process; p.mu is held, so that a Stop either
// comes before (and the start is refused) or sees the new process.
func (p *Process) startLocked() error {
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("%s: log: %w", p.Name, err)
	}
	cmd := exec.Command(p.bin, p.Args...)
	cmd.Env = append(os.Environ(), p.env...) // later entries win
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a Ctrl-C in the terminal reaches the cluster
	// process, which stops the children in order, not all at once.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("%s: start: %w", p.Name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.err, p.started = cmd, done, nil, time.Now()
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.mu.Lock()
		p.err, p.ended = err, time.Now()
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// Pid returns the process id, 0 before start.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Running reports whether the process has started and not exited.
func (p *Process) Running() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL, as a crash or a lost machine would, and waits until
// the process is gone. It is a fault, not a stop: the cluster's supervisor
// restarts the process (as Kubernetes restarts a killed container).
func (p *Process) Kill() error {
	return p.signalAndWait(context.Background(), syscall.SIGKILL)
}

// KillFor sends SIGKILL like Kill, and the supervisor restarts the
// process no sooner than d later: a lost machine, whose pod comes back
// elsewhere only after a while. A ledger owner killed so does not take its
// shards back at once; the other owners take them once its leases expire.
func (p *Process) KillFor(d time.Duration) error {
	p.mu.Lock()
	p.downUntil = time.Now().Add(d)
	p.mu.Unlock()
	return p.Kill()
}

// downFor is how much longer KillFor keeps the process down (0 or less:
// no longer).
func (p *Process) downFor() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return time.Until(p.downUntil)
}

// Stop sends SIGTERM (a clean stop: a ledger owner releases its leases, a
// gateway finishes its requests) and waits; after stopGrace or when ctx
// ends it kills the process.
//
// A stopped process stays down: the cluster's supervisor restarts only
// processes that ended without Stop (a crash, or Kill).
func (p *Process) Stop(ctx context.Context) error {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, stopGrace)
	defer cancel()
	return p.signalAndWait(ctx, syscall.SIGTERM)
}

// Signal sends sig to the process without waiting (SIGSTOP and SIGCONT
// freeze and thaw it). It is not a stop: a process ended by a signal sent
// this way is restarted by the supervisor.
func (p *Process) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("%s: not started", p.Name)
	}
	if err := cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: %v: %w", p.Name, sig, err)
	}
	return nil
}

// isStopped reports whether Stop was called.
func (p *Process) isStopped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopped
}

// uptime is how long the last run lasted (so far, if it is running).
func (p *Process) uptime() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended.Before(p.started) {
		return time.Since(p.started)
	}
	return p.ended.Sub(p.started)
}

func (p *Process) signalAndWait(ctx context.Context, sig syscall.Signal) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-done:
		return nil // already gone
	default:
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("%s: %v: %w", p.Name, sig, err)
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	// SIGQUIT first: the Go runtime writes every goroutine's stack to the
	// log, which says where the stop hung; then SIGKILL.
	_ = cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-done:
	case <-time.After(quitWait):
		_ = cmd.Process.Kill()
		<-done
	}
	return fmt.Errorf("%s: %w on %v (goroutine dump in %s)", p.Name, ErrStopTimeout, sig, p.LogPath)
}

// Exited returns a channel closed when the process has ended and its exit
// error (nil for a clean exit, or when it is still running).
func (p *Process) Exited() (<-chan struct{}, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done, p.err
}

// waitReady polls http://HTTPAddr/readyz until it answers 200, the process
// exits, or ctx ends.
func (p *Process) waitReady(ctx context.Context, client *http.Client) error {
	url := "http://" + p.HTTPAddr + "/readyz"
	for {
		if ready(ctx, client, url) {
			return nil
		}
		done, _ := p.Exited()
		select {
		case <-done:
			_, err := p.Exited()
			return fmt.Errorf("%s: %w (%v) before it was ready; log %s:\n%s", p.Name, ErrExited, err, p.LogPath, tail(p.LogPath))
		case <-ctx.Done():
			return fmt.Errorf("%s: not ready: %w; log %s:\n%s", p.Name, ctx.Err(), p.LogPath, tail(p.LogPath))
		case <-time.After(probeInterval):
		}
	}
}

// ready reports whether url answers 200 within probeTimeout.
func ready(ctx context.Context, client *http.Client, url string) bool {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// tail returns the end of a log file, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > logTailBytesMax {
		b = b[len(b)-logTailBytesMax:]
	}
	return string(b)
}

// freeAddr returns a loopback address with a port that was free a moment
// ago. A child process binds it soon after; another program taking it in
// between makes that child fail to start with a clear error.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(l.Addr().(*net.TCPAddr).Port)), nil
}
