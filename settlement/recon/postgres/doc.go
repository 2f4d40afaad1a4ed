// Package postgres is the Postgres adapter of settlement/recon: its own
// tables (recon_*, embedded goose migrations applied by deploy/pgmigrate
// with their own version table) in the ledger's database, the set-based
// writes of the consumer (one transaction per batch of events, totals
// summed in SQL) and the comparison with the journal.
//
// Reading the journal: reconciliation is the one component whose job is to
// check the ledger's tables rather than trust its interface, so Compare and
// BankMovements read the ledger's transfers table directly (read-only,
// inside one snapshot with reconciliation's own tables). Nothing here
// writes a ledger table.
//
//	store, err := postgres.Open(ctx, postgres.Config{DSN: dsn})
//	rep, err := store.Compare(ctx, day, recon.CompareOptions{Cutoff: time.Now().Add(-2 * time.Minute)})
package postgres
