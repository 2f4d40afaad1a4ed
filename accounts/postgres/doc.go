// Package postgres is the Postgres store of the accounts domain: customers,
// orders, the trading calendar, and the daily income and fund yields that
// settlement records (accounts.Store). Money lives in the ledger, not here.
// Its tables can share a database with the ledger's: the migrations are
// tracked in their own goose table (accounts_goose_db_version) under their
// own advisory lock.
//
// It is the only writer of its tables (internal/archtest's TestOneWriter).
// What the settlement run writes in them, the customers' income and the
// completion of the due orders, it writes through RecordIncomeTx and
// CompleteOrdersTx (settled.go), in settlement's transaction, so that they
// commit with the run's ledger entries and step markers.
//
// Orders are placed in batches (orders.go): per batch one transaction takes
// advisory locks on the parties (shared) and the order keys (exclusive),
// reads the parties and the keys already stored, runs the applies, inserts
// each new order once with its outcome, and commits. Status changes take
// the customer's lock exclusively, so they wait for orders in flight and
// orders wait for them. The locks use the two-int4 advisory key space with
// first keys 0x6163xxxx (locks.go); nothing else in the repository uses
// that form.
//
// With the ledger's shards on several databases, each customer's row,
// orders and income live in its shard's database: Sharded (sharded.go) is
// accounts.Store over them, a Store per database, routing by customer id;
// with one database it is that database's Store.
//
//	store, err := postgres.Open(ctx, postgres.Config{DSN: dsn})
//	defer store.Close()
//	svc, err := accounts.NewService(ctx, accounts.Config{}, store, ledgerClient, logger)
package postgres
