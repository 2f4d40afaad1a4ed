package pgtest_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/fundplatform/fund/internal/localpg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestDatabasesAreSeparate runs parallel tests that each write to a table of
// the same name; each must see only its own row.
func TestDatabasesAreSeparate(t *testing.T) {
	for i := range 4 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			dsn := pgtest.NewDatabase(t)
			conn, err := pgx.Connect(t.Context(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			// Left open on purpose: the cleanup's DROP ... WITH (FORCE)
			// must cope with a test that forgets to close.
			_ = conn
			ctx := t.Context()
			if _, err := conn.Exec(ctx, "CREATE TABLE t (n int)"); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Exec(ctx, "INSERT INTO t VALUES ($1)", i); err != nil {
				t.Fatal(err)
			}
			var n, count int
			if err := conn.QueryRow(ctx, "SELECT max(n), count(*) FROM t").Scan(&n, &count); err != nil {
				t.Fatal(err)
			}
			if n != i || count != 1 {
				t.Errorf("got n=%d count=%d, want n=%d count=1", n, count, i)
			}
		})
	}
}

func TestDatabaseDroppedAfterTest(t *testing.T) {
	var dsn string
	t.Run("inner", func(t *testing.T) { dsn = pgtest.NewDatabase(t) })
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	name := cfg.Database
	cfg.Database = "postgres"
	conn, err := pgx.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var exists bool
	if err := conn.QueryRow(t.Context(), "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Errorf("database %s still exists after its test ended", name)
	}
}
