package postgres

import (
	"context"
	"slices"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fundplatform/fund/internal/pgmigrate"
)

// servicePrivileges are what the platform's processes need on the ledger's
// objects, read off the statements of this package: the journal and the
// idempotency records are SELECT and INSERT only (history is appended,
// never rewritten); balances, pending transfers and leases are updated;
// the outbox's rows are deleted once published. No TRUNCATE, REFERENCES or
// TRIGGER anywhere, and partitions are created through the owner's
// ledger_create_partition, never by the service itself. The temporary
// table of a bulk write (ledger_deltas, bulk.go) needs the database's
// TEMP privilege, which every role has by default (PUBLIC).
var servicePrivileges = []pgmigrate.Privilege{
	{Privileges: "SELECT, INSERT", On: "TABLE transfers, transfer_ids"},
	{Privileges: "SELECT, INSERT, UPDATE", On: "TABLE ledger_shards, accounts, pending_transfers"},
	{Privileges: "SELECT, INSERT, DELETE", On: "TABLE ledger_outbox"},
	// A host's heartbeat row is inserted, renewed and deleted on a clean
	// stop (lease.go).
	{Privileges: "SELECT, INSERT, UPDATE, DELETE", On: "TABLE ledger_hosts"},
	// Open runs Migrate, which reads the version table to find nothing
	// pending.
	{Privileges: "SELECT", On: "TABLE goose_db_version"},
	{Privileges: "EXECUTE", On: "FUNCTION ledger_create_partition(date), " +
		"ledger_fence(integer, bigint, bigint, bigint)"},
}

// ServicePrivileges returns what the service role needs on the ledger's
// objects (for pgmigrate.Grant, with the other components' of the same
// database).
func ServicePrivileges() []pgmigrate.Privilege { return slices.Clone(servicePrivileges) }

// GrantService gives role, the service role the platform's processes
// connect as, what they need on a database that holds the ledger alone,
// and nothing more. Run it as the owner role after Migrate; it does nothing
// when role is the owner itself (one role for both, the dev default).
func GrantService(ctx context.Context, pool *pgxpool.Pool, role string) error {
	return pgmigrate.Grant(ctx, pool, role, servicePrivileges)
}
