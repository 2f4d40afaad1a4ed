// Package localpg runs a private PostgreSQL server that the project starts
// and stops itself. Tests (through the pgtest sub-package), `make demo` and
// `fundd dev` use it so that nobody has to install, configure or share a
// system-wide database cluster.
//
// Start runs initdb (once per data directory) and pg_ctl from the newest
// PostgreSQL found by FindBinaries. The cluster trusts every connection, which
// is safe only because it listens on 127.0.0.1 and puts its Unix socket inside
// its own data directory, never in /var/run/postgresql.
//
// The defaults favour a fast but durable ledger: fsync, synchronous_commit and
// full_page_writes stay on; shared memory, WAL buffers and checkpoint spacing
// are raised instead. Options.Settings overrides any of them.
//
// # Running as root
//
// PostgreSQL refuses to run as root. When the calling process is root (CI,
// containers) initdb, pg_ctl and the server run as the unprivileged OS user
// "postgres", which must exist (Debian's postgresql package creates it); the
// data directory is chowned to that user and every directory above it must be
// traversable by it. Directories that Start creates itself are made so.
//
// # Roles
//
// CreateDatabaseWithRoles makes a database the production way: owned by the
// role fund_owner (which runs the migrations and owns the tables), with the
// login role fund_service beside it for the processes, which the migration
// step grants only what they need. Both roles are the server's, shared by
// its databases, and have a fixed local-only password. CreateDatabase
// keeps the one-role setup: the administrator owns and serves.
//
// # Using an existing server: FUND_PG_DSN
//
// When the environment variable FUND_PG_DSN holds a postgres:// URL, Start
// starts nothing. DSN(name) returns that URL with its database replaced by
// name, CreateDatabase creates the database on that server (connecting with
// the URL as given) and Stop does nothing. This lets a developer or CI point
// the whole test suite at one server they already run, in the spirit of pgx's
// PGX_TEST_DATABASE.
//
// # Example
//
//	srv, err := localpg.Start(ctx, localpg.Options{Logger: logger})
//	if err != nil {
//		return err
//	}
//	defer srv.Stop(context.WithoutCancel(ctx))
//	dsn, err := srv.CreateDatabase(ctx, "ledger")
//	if err != nil {
//		return err
//	}
//	pool, err := pgxpool.New(ctx, dsn)
package localpg
