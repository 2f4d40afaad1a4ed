package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fundplatform/fund/internal/localpg"
)

const (
	// startTimeout bounds initdb plus server start; both take a few
	// seconds even on a busy CI machine.
	startTimeout = 2 * time.Minute
	stopTimeout  = time.Minute
	// dbOpTimeout bounds CREATE and DROP DATABASE, which copy and remove
	// a small template database.
	dbOpTimeout = time.Minute
	// testNameBytesMax keeps database names under PostgreSQL's 63-byte
	// identifier limit: "t_" + name + "_" + 16 hex digits.
	testNameBytesMax = 40
)

// testSettings favour many small databases over a big cache; fsync stays on.
func testSettings() map[string]string {
	return map[string]string{"shared_buffers": "128MB"}
}

// Main starts a server (unless FUND_PG_DSN names one), runs the tests, stops
// the server and exits with the tests' code. Use it as
// func TestMain(m *testing.M) { pgtest.Main(m) }.
func Main(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	srv, err := localpg.Start(ctx, localpg.Options{Settings: testSettings()})
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: start postgres: %v\n", err)
		return 1
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stop postgres: %v\n", err)
		}
	}()
	if os.Getenv(localpg.EnvDSN) == "" {
		if err := os.Setenv(localpg.EnvDSN, srv.DSN("postgres")); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
			return 1
		}
		defer os.Unsetenv(localpg.EnvDSN)
	}
	return m.Run()
}

// NewDatabase creates a fresh, uniquely named database for t and returns its
// DSN; the database is dropped when t ends. It needs pgtest.Main in TestMain
// (or FUND_PG_DSN set) and is safe for parallel tests.
func NewDatabase(t testing.TB) string {
	t.Helper()
	return newDatabase(t, func(ctx context.Context, srv *localpg.Server, name string) (string, error) {
		return srv.CreateDatabase(ctx, name)
	})
}

// NewDatabaseWithRoles is NewDatabase for a database owned by the owner
// role, with the service role beside it (localpg.CreateDatabaseWithRoles):
// a test migrates as the owner, grants, and then works as the service, as
// the platform does in production.
func NewDatabaseWithRoles(t testing.TB) localpg.Roles {
	t.Helper()
	return newDatabase(t, func(ctx context.Context, srv *localpg.Server, name string) (localpg.Roles, error) {
		return srv.CreateDatabaseWithRoles(ctx, name)
	})
}

// newDatabase creates t's database with create on the server FUND_PG_DSN
// names and drops it when t ends.
func newDatabase[T any](t testing.TB, create func(ctx context.Context, srv *localpg.Server, name string) (T, error)) T {
	t.Helper()
	if os.Getenv(localpg.EnvDSN) == "" {
		t.Fatalf("pgtest: %s is not set; add func TestMain(m *testing.M) { pgtest.Main(m) } to the package", localpg.EnvDSN)
	}
	// With FUND_PG_DSN set, Start only parses it: no server is started.
	srv, err := localpg.Start(context.Background(), localpg.Options{})
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	name := databaseName(t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), dbOpTimeout)
	defer cancel()
	db, err := create(ctx, srv, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), dbOpTimeout)
		defer cancel()
		if err := srv.DropDatabase(ctx, name); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return db
}

// databaseName makes a name that says which test owns the database, for
// whoever looks at a server left behind, and is unique without shared state.
func databaseName(testName string) string {
	var b strings.Builder
	b.WriteString("t_")
	for _, r := range strings.ToLower(testName) {
		if b.Len() >= 2+testNameBytesMax {
			break
		}
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String() + "_" + randomHex(8)
}

func randomHex(n int) string {
	buf := make([]byte, n)
	_, _ = rand.Read(buf) // crypto/rand.Read never returns an error
	return hex.EncodeToString(buf)
}
