package postgres

import (
	"context"
	"slices"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fundplatform/fund/internal/pgmigrate"
)

// Migrate applies settlement's own migrations (after the ledger's and the
// accounts', whose tables they refer to), each in its own transaction,
// under an advisory lock. Open applies all three.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return pgmigrate.Up(ctx, pool, migrations, pgmigrate.Options{Table: gooseTable, LockID: migrationLockID})
}

// servicePrivileges are what the settle role needs on settlement's tables,
// read off this package's statements: runs are opened, corrected, failed
// and completed; cuts, steps and movements are appended. What it writes
// in the accounts' tables (the orders it completes, the customers' income)
// is written through accounts/postgres, under the accounts' grants; its
// entries are booked through ledger/postgres's InShard, under the
// ledger's grants.
var servicePrivileges = []pgmigrate.Privilege{
	{Privileges: "SELECT, INSERT, UPDATE", On: "TABLE settlement_runs"},
	{Privileges: "SELECT, INSERT", On: "TABLE settlement_cuts, settlement_steps, settlement_movements"},
	{Privileges: "SELECT", On: "TABLE " + gooseTable},
}

// ServicePrivileges returns what the service role needs on settlement's
// tables (for pgmigrate.Grant, with the other components' of the same
// database).
func ServicePrivileges() []pgmigrate.Privilege { return slices.Clone(servicePrivileges) }
