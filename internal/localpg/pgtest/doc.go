// Package pgtest gives each test its own fresh PostgreSQL database on one
// private server per test binary, started by package localpg.
//
// A test package opts in once, then asks for a database in each test:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestTransfer(t *testing.T) {
//		t.Parallel()
//		dsn := pgtest.NewDatabase(t)
//		pool, err := pgxpool.New(t.Context(), dsn)
//		...
//	}
//
// Main hands the server to NewDatabase through the FUND_PG_DSN environment
// variable rather than a package variable: the handover is then the same
// whether Main started the server or the developer pointed FUND_PG_DSN at
// one of their own (see package localpg), and subprocesses of a test
// inherit it too.
//
// Databases are dropped WITH (FORCE) when their test ends, so a test that
// leaks connections does not block the cleanup. The server favours
// creating many small databases quickly (small shared_buffers) but keeps
// fsync on, so tests exercise the same durability path as production.
package pgtest
