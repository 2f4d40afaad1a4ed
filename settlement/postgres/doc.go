// Package postgres is the settlement run's Postgres store
// (settlement.Store): its own tables (runs, cuts, steps, movements; goose
// migrations in settlement_goose_db_version) and the set-based booking of
// the shards it owns for a run, straight into the ledger's tables: COPY
// into the journal and the idempotency records, one UPDATE of the balances
// from a staged delta table, the outbox, and the ledger's own fence, all in
// one transaction per shard and step. It needs the ledger's and the
// accounts' tables in the same database.
//
//	store, yields, closeStore, err := postgres.OpenForRunner(ctx, dsn, 2)
//	defer closeStore()
//	runner := settlement.NewRunner(settlement.Config{Shards: 8}, store, yields, nil, logger)
package postgres
