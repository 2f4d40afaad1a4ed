package localpg_test

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/fundplatform/fund/internal/localpg"
)

// startServer starts a real private server for t, ignoring any FUND_PG_DSN
// the developer has set, and stops it when t ends.
func startServer(t *testing.T, opts localpg.Options) *localpg.Server {
	t.Helper()
	t.Setenv(localpg.EnvDSN, "")
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if opts.Settings == nil {
		opts.Settings = map[string]string{"shared_buffers": "128MB"}
	}
	srv, err := localpg.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return srv
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestStartCreateDatabasesStop(t *testing.T) {
	srv := startServer(t, localpg.Options{})
	ctx := t.Context()

	if dsn := srv.DSN("x"); !strings.HasPrefix(dsn, "postgres://postgres@127.0.0.1:") || !strings.HasSuffix(dsn, "/x?sslmode=disable") {
		t.Errorf("DSN(x) = %q", dsn)
	}
	dataDir := srv.DataDir()
	if _, err := os.Stat(filepath.Join(dataDir, "PG_VERSION")); err != nil {
		t.Fatalf("data dir: %v", err)
	}
	// The server's processes are found: the postmaster alone has run
	// initdb's checkpoint and its startup by now, so its CPU is counted.
	if cpu, ok := srv.CPUTime(); !ok || cpu < 0 {
		t.Errorf("CPUTime() = %v, %v; want a count", cpu, ok)
	}
	if _, ok := localpg.ProcessCPU(t.TempDir()); ok {
		t.Error("ProcessCPU of a directory with no postmaster.pid claims a count")
	}

	// Two databases hold separate data.
	for i, name := range []string{"alpha", "beta"} {
		dsn, err := srv.CreateDatabase(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if dsn != srv.DSN(name) {
			t.Errorf("CreateDatabase(%q) dsn = %q, want %q", name, dsn, srv.DSN(name))
		}
		conn := connect(t, dsn)
		if _, err := conn.Exec(ctx, "CREATE TABLE t (n int)"); err != nil {
			t.Fatal(err)
		}
		for range i + 1 {
			if _, err := conn.Exec(ctx, "INSERT INTO t VALUES (1)"); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, name := range []string{"alpha", "beta"} {
		var n int
		var db string
		if err := connect(t, srv.DSN(name)).QueryRow(ctx, "SELECT count(*), current_database() FROM t").Scan(&n, &db); err != nil {
			t.Fatal(err)
		}
		if n != i+1 || db != name {
			t.Errorf("database %s: count %d in %q, want %d", name, n, db, i+1)
		}
	}

	// The durability settings survive the tuning.
	conn := connect(t, srv.DSN("postgres"))
	for setting, want := range map[string]string{
		"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on",
		"shared_buffers": "128MB", "max_connections": "300", "listen_addresses": "127.0.0.1",
		"unix_socket_directories": dataDir,
	} {
		var got string
		if err := conn.QueryRow(ctx, "SELECT current_setting($1)", setting).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}
	if _, err := srv.CreateDatabase(ctx, "alpha"); err == nil {
		t.Error("creating alpha twice succeeded")
	}
	conn.Close(ctx)

	if err := srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(dataDir)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("temp dir %s still there after Stop: %v", filepath.Dir(dataDir), err)
	}
	if err := srv.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestEnvDSNReusesServer(t *testing.T) {
	first := startServer(t, localpg.Options{})
	ctx := t.Context()

	t.Setenv(localpg.EnvDSN, first.DSN("postgres"))
	second, err := localpg.Start(ctx, localpg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if second.DataDir() != "" {
		t.Errorf("second server has data dir %q; want none", second.DataDir())
	}
	if got, want := second.DSN("reused"), first.DSN("reused"); got != want {
		t.Errorf("DSN = %q, want %q", got, want)
	}
	if _, err := second.CreateDatabase(ctx, "reused"); err != nil {
		t.Fatal(err)
	}
	if err := second.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// The first server still runs and holds the database the second made.
	var db string
	if err := connect(t, first.DSN("reused")).QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		t.Fatal(err)
	}
	if db != "reused" {
		t.Errorf("current_database() = %q", db)
	}
	if err := second.DropDatabase(ctx, "reused"); err != nil {
		t.Fatal(err)
	}
}

func TestEnvDSNMustBeURL(t *testing.T) {
	t.Setenv(localpg.EnvDSN, "host=localhost dbname=x")
	if _, err := localpg.Start(t.Context(), localpg.Options{}); err == nil {
		t.Fatal("Start accepted a keyword/value DSN it cannot rewrite")
	}
}

func TestDirKeepsDataAcrossRestarts(t *testing.T) {
	// Not t.TempDir: when the tests run as root its 0700 parents keep
	// out the postgres user, so make a directory that user can enter.
	dir, err := os.MkdirTemp("", "localpg-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	srv := startServer(t, localpg.Options{Dir: filepath.Join(dir, "pg")})
	dsn, err := srv.CreateDatabase(ctx, "kept")
	if err != nil {
		t.Fatal(err)
	}
	conn := connect(t, dsn)
	if _, err := conn.Exec(ctx, "CREATE TABLE t AS SELECT 42 AS n"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if err := srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(srv.DataDir()); err != nil {
		t.Fatalf("chosen data dir removed by Stop: %v", err)
	}

	srv = startServer(t, localpg.Options{Dir: filepath.Join(dir, "pg")})
	var n int
	if err := connect(t, srv.DSN("kept")).QueryRow(ctx, "SELECT n FROM t").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 42 {
		t.Errorf("n = %d after restart, want 42", n)
	}
}

func TestStartFailureReportsLog(t *testing.T) {
	t.Setenv(localpg.EnvDSN, "")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port

	srv, err := localpg.Start(t.Context(), localpg.Options{Port: port})
	if err == nil {
		srv.Stop(context.Background())
		t.Fatalf("Start on taken port %d succeeded", port)
	}
	t.Logf("Start on a taken port: %v", err)
	if !strings.Contains(err.Error(), "already in use") {
		t.Errorf("error does not carry the server log's reason:\n%v", err)
	}
	// The error names the log file, inside the temp dir Start must remove.
	m := regexp.MustCompile(`server log \((\S+)\)`).FindStringSubmatch(err.Error())
	if m == nil {
		t.Fatalf("error does not name the server log:\n%v", err)
	}
	tempDir := filepath.Dir(filepath.Dir(m[1]))
	if _, err := os.Stat(tempDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("failed Start left %s behind: %v", tempDir, err)
	}
}

func TestManagedSettingsRejected(t *testing.T) {
	t.Setenv(localpg.EnvDSN, "")
	for _, k := range []string{"port", "listen_addresses", "unix_socket_directories"} {
		if _, err := localpg.Start(t.Context(), localpg.Options{Settings: map[string]string{k: "x"}}); err == nil {
			t.Errorf("Start accepted setting %s", k)
		}
	}
}

func TestFindBinaries(t *testing.T) {
	dir, err := localpg.FindBinaries()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"initdb", "pg_ctl", "postgres"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Error(err)
		}
	}
}
