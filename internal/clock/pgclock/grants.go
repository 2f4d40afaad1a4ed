package pgclock

import (
	"context"
	"embed"
	"slices"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fundplatform/fund/internal/pgmigrate"
)

//go:embed migrations/*.sql
var migrations embed.FS

const (
	// gooseTable records the test clock's migrations.
	gooseTable      = "test_clock_goose_db_version"
	migrationLockID = 0x74636c6f636b // "tclock"
)

// Migrate applies the test clock's migrations, each in its own
// transaction, under an advisory lock. The platform's migration step
// (settlement/schema) runs it on every database; Open runs it too (with
// nothing pending that only reads the version table).
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return pgmigrate.Up(ctx, pool, migrations, pgmigrate.Options{Table: gooseTable, LockID: migrationLockID})
}

// servicePrivileges are what a process with a test clock needs, read off
// this package's statements: the first to start inserts the clock's row,
// a move updates it (SELECT ... FOR UPDATE needs UPDATE too) and records
// its request id, pruning the oldest.
var servicePrivileges = []pgmigrate.Privilege{
	{Privileges: "SELECT, INSERT, UPDATE", On: "TABLE test_clock"},
	{Privileges: "SELECT, INSERT, DELETE", On: "TABLE test_clock_moves"},
	{Privileges: "SELECT", On: "TABLE " + gooseTable},
}

// ServicePrivileges returns what the service role needs on the test
// clock's tables (for pgmigrate.Grant, with the other components' of the
// same database).
func ServicePrivileges() []pgmigrate.Privilege { return slices.Clone(servicePrivileges) }
