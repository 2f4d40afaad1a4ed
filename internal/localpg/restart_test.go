package localpg_test

import (
	"testing"

	"github.com/fundplatform/fund/internal/localpg"
)

// An immediate restart cuts every connection, keeps committed data and
// the port, and the server accepts connections when Restart returns; a
// mode pg_ctl does not know is refused before anything happens.
func TestRestartImmediate(t *testing.T) {
	srv := startServer(t, localpg.Options{})
	ctx := t.Context()
	dsn, err := srv.CreateDatabase(ctx, "restarted")
	if err != nil {
		t.Fatal(err)
	}
	conn := connect(t, dsn)
	if _, err := conn.Exec(ctx, `CREATE TABLE t (v int); INSERT INTO t VALUES (42)`); err != nil {
		t.Fatal(err)
	}
	if err := srv.Restart(ctx, "sideways"); err == nil {
		t.Fatal("restart mode sideways accepted")
	}
	if err := srv.Restart(ctx, "immediate"); err != nil {
		t.Fatal(err)
	}
	if err := conn.Ping(ctx); err == nil {
		t.Error("a connection from before the immediate restart still works")
	}
	var v int
	if err := connect(t, dsn).QueryRow(ctx, `SELECT v FROM t`).Scan(&v); err != nil || v != 42 {
		t.Fatalf("after the restart: %d, %v; want 42", v, err)
	}
}
