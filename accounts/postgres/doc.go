// Package postgres is the Postgres store of the accounts domain: customers,
// orders, the trading calendar, and the daily income and fund yields that
// settlement records (accounts.Store). Money lives in the ledger, not here.
// Its tables can share a database with the ledger's: the migrations are
// tracked in their own goose table (accounts_goose_db_version) under their
// own advisory lock.
//
//	store, err := postgres.Open(ctx, postgres.Config{DSN: dsn})
//	defer store.Close()
//	svc, err := accounts.NewService(ctx, accounts.Config{}, store, ledgerClient, logger)
package postgres
