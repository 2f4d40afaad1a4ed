package localpg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvDSN names the environment variable that makes Start use an existing
// server instead of starting one; see the package documentation.
const EnvDSN = "FUND_PG_DSN"

const (
	superuser    = "postgres"
	dataSubdir   = "data"
	logFileName  = "server.log"
	confFileName = "localpg.conf"
	// includeLine is appended once to postgresql.conf; being last, the
	// settings in confFileName override initdb's.
	includeLine = "include_if_exists = '" + confFileName + "'"

	// startAttemptsMax bounds retries when the free port we picked was taken
	// by someone else between picking and binding it.
	startAttemptsMax = 5
	// pgCtlWaitSeconds is how long pg_ctl waits for start or stop; a cold
	// start with fsync on takes well under a second on an idle machine.
	pgCtlWaitSeconds = "60"
	// pingAttemptsMax*pingInterval bounds the wait after pg_ctl says the
	// server is up but before it accepts our connection.
	pingAttemptsMax = 50
	pingInterval    = 100 * time.Millisecond
	// cmdWaitDelay bounds how long we wait for a child's output pipes after
	// it exits, in case a grandchild inherited them.
	cmdWaitDelay = 10 * time.Second
	// logTailBytesMax bounds how much of the server log goes into an error.
	logTailBytesMax = 4096
)

// managedSettings are set by Start itself because the DSN and the private
// socket depend on them; Options.Port chooses the port.
var managedSettings = []string{"listen_addresses", "port", "unix_socket_directories"}

// Options configure Start. The zero value starts a throw-away server on a
// free port.
type Options struct {
	Dir    string       // data directory parent; "" = a new temp dir removed on Stop
	Port   int          // 0 = a free loopback port
	Logger *slog.Logger // may be nil
	// Settings are extra postgresql.conf lines, e.g. {"shared_buffers": "1GB"}; they override defaults.
	Settings map[string]string
}

// defaultSettings tune the server for a fast but durable ledger on one
// machine. Durability settings are spelled out so that nobody mistakes
// their absence for an oversight.
func defaultSettings() map[string]string {
	return map[string]string{
		"fsync":              "on",
		"synchronous_commit": "on",
		"full_page_writes":   "on",
		// Group commit happens anyway under concurrency; a delay only adds
		// latency to every commit.
		"commit_delay":    "0",
		"shared_buffers":  "512MB",
		"max_connections": "300",
		"wal_buffers":     "64MB",
		// Few checkpoints mean few full-page images in the WAL, which is
		// why wal_compression is left off: it would cost CPU on every
		// image for little gain, and its PG15 values (pglz, lz4) are not
		// valid on older servers.
		"max_wal_size": "8GB",
		// A fresh cluster has no WAL segments to recycle, so at ledger
		// rates it creates one every second or so; zero-filling each (16 MB
		// written and synced in the commit path) showed up as p99 spikes.
		// Not zero-filling keeps durability: WAL writes are still
		// fdatasync'ed, which persists the blocks they allocate.
		"wal_init_zero":      "off",
		"checkpoint_timeout": "30min",
		// pg_ctl -l already sends the log to a file in the data directory.
		"logging_collector": "off",
		"timezone":          "UTC",
		"log_timezone":      "UTC",
	}
}

// Server is a running private PostgreSQL server, or a handle on the server
// named by FUND_PG_DSN. Its methods are safe for concurrent use.
type Server struct {
	logger *slog.Logger

	// external is the parsed FUND_PG_DSN; nil when we run our own server.
	external    *url.URL
	externalRaw string

	binDir  string
	dataDir string
	tempDir string // removed on Stop; "" when the caller chose the directory
	port    int
	owner   owner

	mu      sync.Mutex
	stopped bool
}

// Start starts a private server, or returns a handle on the server named by
// FUND_PG_DSN when that is set. It returns once the server accepts
// connections. The caller must call Stop.
func Start(ctx context.Context, opts Options) (*Server, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if raw := os.Getenv(EnvDSN); raw != "" {
		return useExternal(raw, logger)
	}
	for _, k := range managedSettings {
		if _, ok := opts.Settings[k]; ok {
			return nil, fmt.Errorf("localpg: setting %q is managed by localpg (use Options.Port for the port)", k)
		}
	}
	settings := defaultSettings()
	maps.Copy(settings, opts.Settings)

	binDir, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	own, err := currentOwner()
	if err != nil {
		return nil, err
	}
	s := &Server{logger: logger, binDir: binDir, owner: own}
	if err := s.prepareDir(opts.Dir); err != nil {
		s.removeTemp()
		return nil, err
	}
	if err := s.initdbOnce(ctx); err != nil {
		s.removeTemp()
		return nil, err
	}
	if err := s.startServer(ctx, opts.Port, settings); err != nil {
		s.removeTemp()
		return nil, err
	}
	if err := s.ping(ctx); err != nil {
		_, _ = s.pgCtl(context.WithoutCancel(ctx), "stop", "-D", s.dataDir, "-m", "immediate", "-w", "-t", pgCtlWaitSeconds)
		err = fmt.Errorf("localpg: server on port %d does not accept connections: %w\n%s", s.port, err, s.logTail(0))
		s.removeTemp()
		return nil, err
	}
	logger.Info("postgres started", "port", s.port, "data_dir", s.dataDir, "bin_dir", binDir, "os_user", own.name)
	return s, nil
}

func useExternal(raw string, logger *slog.Logger) (*Server, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		// Keyword/value DSNs are not supported because DSN must rewrite
		// the database name.
		return nil, fmt.Errorf("localpg: %s must be a postgres://host/... URL", EnvDSN)
	}
	logger.Info("using existing postgres from "+EnvDSN, "host", u.Host)
	return &Server{logger: logger, external: u, externalRaw: raw}, nil
}

// prepareDir creates the data directory's parent and checks that the
// server's OS user can reach it.
func (s *Server) prepareDir(dir string) error {
	if dir == "" {
		tmp, err := os.MkdirTemp("", "localpg-")
		if err != nil {
			return fmt.Errorf("localpg: %w", err)
		}
		s.tempDir = tmp
		dir = tmp
		// MkdirTemp makes it 0700; when we are root the postgres user
		// must be able to pass through it (but need not list it).
		if err := os.Chmod(dir, 0o711); err != nil {
			return fmt.Errorf("localpg: %w", err)
		}
	} else {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return fmt.Errorf("localpg: %w", err)
		}
		dir = abs
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("localpg: %w", err)
		}
	}
	if err := s.owner.checkTraversable(dir); err != nil {
		return fmt.Errorf("localpg: %w", err)
	}
	s.dataDir = filepath.Join(dir, dataSubdir)
	return nil
}

// initdbOnce creates the cluster unless the data directory already holds
// one, so that a chosen Options.Dir keeps its data across runs.
func (s *Server) initdbOnce(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(s.dataDir, "PG_VERSION")); err == nil {
		s.logger.Debug("reusing postgres cluster", "data_dir", s.dataDir)
		return s.ensureInclude()
	}
	// PostgreSQL insists on 0700 (or 0750) for its data directory.
	if err := os.Mkdir(s.dataDir, 0o700); err != nil {
		return fmt.Errorf("localpg: %w", err)
	}
	if err := s.owner.chown(s.dataDir); err != nil {
		return fmt.Errorf("localpg: %w", err)
	}
	args := []string{"-D", s.dataDir, "-U", superuser, "--auth=trust", "-E", "UTF8", "--locale=C"}
	if s.tempDir != "" {
		// A throw-away cluster need not survive a crash during initdb;
		// skipping its fsyncs saves about a second per test binary.
		// The running server still fsyncs as configured.
		args = append(args, "--no-sync")
	}
	start := time.Now()
	if out, err := s.run(ctx, "initdb", args...); err != nil {
		return fmt.Errorf("localpg: initdb: %w\n%s", err, out)
	}
	s.logger.Debug("initdb done", "data_dir", s.dataDir, "elapsed", time.Since(start))
	return s.ensureInclude()
}

// ensureInclude makes postgresql.conf include the file startServer writes.
func (s *Server) ensureInclude() error {
	path := filepath.Join(s.dataDir, "postgresql.conf")
	conf, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("localpg: %w", err)
	}
	if strings.Contains(string(conf), includeLine) {
		return nil
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("localpg: %w", err)
	}
	_, err = fmt.Fprintf(f, "\n# Settings chosen by localpg, rewritten on every start.\n%s\n", includeLine)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("localpg: append to %s: %w", path, err)
	}
	return nil
}

// startServer writes the settings and runs pg_ctl start, picking another
// free port when the one it picked turns out to be taken.
func (s *Server) startServer(ctx context.Context, fixedPort int, settings map[string]string) error {
	logPath := filepath.Join(s.dataDir, logFileName)
	for attempt := 1; ; attempt++ {
		port := fixedPort
		if port == 0 {
			var err error
			if port, err = freePort(); err != nil {
				return fmt.Errorf("localpg: pick a port: %w", err)
			}
		}
		if err := s.writeConf(port, settings); err != nil {
			return err
		}
		logStart := fileSize(logPath)
		out, err := s.pgCtl(ctx, "start", "-D", s.dataDir, "-l", logPath, "-w", "-t", pgCtlWaitSeconds)
		if err == nil {
			s.port = port
			return nil
		}
		tail := s.logTail(logStart)
		if ctx.Err() == nil && fixedPort == 0 && attempt < startAttemptsMax && portTaken(tail) {
			s.logger.Warn("postgres port taken, retrying with another", "port", port, "attempt", attempt)
			continue
		}
		return fmt.Errorf("localpg: pg_ctl start on port %d: %w\n%s\nserver log (%s):\n%s", port, err, out, logPath, tail)
	}
}

func (s *Server) writeConf(port int, settings map[string]string) error {
	var b strings.Builder
	b.WriteString("# Written by localpg on every start; edits here are lost.\n")
	all := maps.Clone(settings)
	all["listen_addresses"] = "127.0.0.1"
	all["port"] = strconv.Itoa(port)
	all["unix_socket_directories"] = s.dataDir
	for _, k := range slices.Sorted(maps.Keys(all)) {
		if !validSettingName(k) {
			return fmt.Errorf("localpg: invalid setting name %q", k)
		}
		// Every postgresql.conf value may be quoted; quoting means values
		// such as paths or lists need no special case.
		fmt.Fprintf(&b, "%s = '%s'\n", k, strings.ReplaceAll(all[k], "'", "''"))
	}
	path := filepath.Join(s.dataDir, confFileName)
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("localpg: %w", err)
	}
	return s.owner.chown(path)
}

func validSettingName(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// portTaken reports whether a server log says the port was in use.
func portTaken(log string) bool {
	return strings.Contains(log, "Address already in use") ||
		strings.Contains(log, "could not bind") ||
		strings.Contains(log, "is another postmaster already running on port")
}

// freePort asks the kernel for a free loopback port. Another process may
// take it before the server binds it; startServer retries in that case.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, err
	}
	return port, nil
}

// ping waits until the server accepts a connection, a bounded number of
// times.
func (s *Server) ping(ctx context.Context) error {
	var lastErr error
	for range pingAttemptsMax {
		lastErr = pingOnce(ctx, s.DSN("postgres"))
		if lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), lastErr)
		case <-time.After(pingInterval):
		}
	}
	return lastErr
}

func pingOnce(ctx context.Context, dsn string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.Ping(ctx)
}

// DSN returns a URL for database on this server:
// postgres://postgres@127.0.0.1:PORT/database?sslmode=disable, or the
// FUND_PG_DSN URL with its database replaced.
func (s *Server) DSN(database string) string {
	if s.external != nil {
		u := *s.external
		u.Path = "/" + database
		u.RawPath = ""
		return u.String()
	}
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(superuser),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// DataDir returns the data directory, or "" when FUND_PG_DSN is in use.
func (s *Server) DataDir() string { return s.dataDir }

// adminDSN is where CREATE and DROP DATABASE run. For FUND_PG_DSN that is
// the URL as given, because the database it names is known to exist and be
// reachable while "postgres" might not be.
func (s *Server) adminDSN() string {
	if s.external != nil {
		return s.externalRaw
	}
	return s.DSN("postgres")
}

// CreateDatabase creates database name and returns its DSN.
func (s *Server) CreateDatabase(ctx context.Context, name string) (dsn string, err error) {
	if name == "" {
		return "", errors.New("localpg: create database: empty name")
	}
	if err := s.exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("localpg: create database %q: %w", name, err)
	}
	return s.DSN(name), nil
}

// DropDatabase drops database name if it exists, disconnecting its
// sessions first (WITH (FORCE), PostgreSQL 13 or later).
func (s *Server) DropDatabase(ctx context.Context, name string) error {
	if err := s.exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("localpg: drop database %q: %w", name, err)
	}
	return nil
}

func (s *Server) exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, s.adminDSN())
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

// Stop stops the server (pg_ctl stop -m fast) and waits for it, then removes
// the data directory if Start created it. Calling it again does nothing;
// with FUND_PG_DSN it does nothing at all.
func (s *Server) Stop(ctx context.Context) error {
	if s.external != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	if out, err := s.pgCtl(ctx, "stop", "-D", s.dataDir, "-m", "fast", "-w", "-t", pgCtlWaitSeconds); err != nil {
		// A server that already died (killed, or its machine rebooted)
		// counts as stopped; pg_ctl status exits with 3 for "not running".
		var exitErr *exec.ExitError
		if _, serr := s.pgCtl(ctx, "status", "-D", s.dataDir); !errors.As(serr, &exitErr) || exitErr.ExitCode() != 3 {
			return fmt.Errorf("localpg: pg_ctl stop: %w\n%s", err, out)
		}
	}
	s.stopped = true
	s.logger.Info("postgres stopped", "port", s.port, "data_dir", s.dataDir)
	if s.tempDir != "" {
		if err := os.RemoveAll(s.tempDir); err != nil {
			return fmt.Errorf("localpg: remove %s: %w", s.tempDir, err)
		}
	}
	return nil
}

// removeTemp cleans up after a failed Start.
func (s *Server) removeTemp() {
	if s.tempDir == "" {
		return
	}
	if err := os.RemoveAll(s.tempDir); err != nil {
		s.logger.Warn("remove temp dir", "dir", s.tempDir, "err", err)
	}
}

func (s *Server) pgCtl(ctx context.Context, args ...string) (string, error) {
	return s.run(ctx, "pg_ctl", args...)
}

// run runs a PostgreSQL program as the server's OS user and returns its
// combined output.
func (s *Server) run(ctx context.Context, program string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(s.binDir, program), args...)
	// The data directory's parent: the server's user can enter it, which
	// is not true of, say, a test's working directory under /root.
	cmd.Dir = filepath.Dir(s.dataDir)
	cmd.Env = serverEnv()
	cmd.SysProcAttr = s.owner.sysProcAttr()
	cmd.WaitDelay = cmdWaitDelay
	s.logger.Debug("run", "cmd", cmd.String())
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// serverEnv is our environment without PG* variables, which initdb, pg_ctl
// and the server would otherwise obey (PGDATA, PGPORT, PGHOST...).
func serverEnv() []string {
	env := os.Environ()
	return slices.DeleteFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "PG") })
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logTail returns up to logTailBytesMax of the server log written after
// offset from.
func (s *Server) logTail(from int64) string {
	f, err := os.Open(filepath.Join(s.dataDir, logFileName))
	if err != nil {
		return fmt.Sprintf("(no server log: %v)", err)
	}
	defer f.Close()
	size := fileSize(f.Name())
	from = max(min(from, size), size-logTailBytesMax, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, from, size-from))
	if err != nil {
		return fmt.Sprintf("(read server log: %v)", err)
	}
	return string(b)
}
