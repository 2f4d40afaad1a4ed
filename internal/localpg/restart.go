package localpg

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
)

// ErrExternal: the server is FUND_PG_DSN's, not ours to restart.
var ErrExternal = errors.New("localpg: the server is external (FUND_PG_DSN)")

// restartModes are pg_ctl's shutdown modes.
var restartModes = []string{"smart", "fast", "immediate"}

// Restart restarts the server with pg_ctl restart -m mode, on the same port
// with the same settings, and returns once it accepts connections again.
// Mode "immediate" is a crash as the clients see it: every connection is
// cut at once, nothing is checkpointed, and the server replays its WAL on
// the way up, which is what a rehearsal of a database failover wants.
func (s *Server) Restart(ctx context.Context, mode string) error {
	if s.external != nil {
		return ErrExternal
	}
	if !slices.Contains(restartModes, mode) {
		return fmt.Errorf("localpg: restart mode %q: want one of %v", mode, restartModes)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errors.New("localpg: restart of a stopped server")
	}
	logPath := filepath.Join(s.dataDir, logFileName)
	logStart := fileSize(logPath)
	if out, err := s.pgCtl(ctx, "restart", "-D", s.dataDir, "-m", mode, "-l", logPath, "-w", "-t", pgCtlWaitSeconds); err != nil {
		return fmt.Errorf("localpg: pg_ctl restart -m %s: %w\n%s\nserver log (%s):\n%s", mode, err, out, logPath, s.logTail(logStart))
	}
	if err := s.ping(ctx); err != nil {
		return fmt.Errorf("localpg: server on port %d does not accept connections after a restart: %w", s.port, err)
	}
	s.logger.Info("postgres restarted", "port", s.port, "mode", mode)
	return nil
}
