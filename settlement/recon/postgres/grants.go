package postgres

import (
	"context"
	"slices"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fundplatform/fund/internal/pgmigrate"
)

// gooseTable records reconciliation's migrations.
const gooseTable = "recon_goose_db_version"

// Migrate applies reconciliation's migrations, each in its own
// transaction, under an advisory lock. Open applies them too.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return pgmigrate.Up(ctx, pool, migrations, pgmigrate.Options{Table: gooseTable, LockID: migrationLockID})
}

// servicePrivileges are what the recon role needs on its tables, read off
// this package's statements: events are appended once; the day's and the
// accounts' totals are upserted; sagas are closed and breaks resolved or
// reopened (UPDATE); statements are appended. bigserial ids need their
// sequences. The journal it compares with is read under the ledger's
// grants.
var servicePrivileges = []pgmigrate.Privilege{
	{Privileges: "SELECT, INSERT", On: "TABLE recon_events, recon_statements"},
	{Privileges: "SELECT, INSERT, UPDATE", On: "TABLE recon_day_totals, recon_account_totals, recon_sagas, recon_breaks"},
	{Privileges: "USAGE", On: "SEQUENCE recon_breaks_id_seq, recon_statements_id_seq"},
	{Privileges: "SELECT", On: "TABLE " + gooseTable},
}

// ServicePrivileges returns what the service role needs on
// reconciliation's tables (for pgmigrate.Grant, with the other
// components' of the same database).
func ServicePrivileges() []pgmigrate.Privilege { return slices.Clone(servicePrivileges) }
