// Package postgres is the settlement run's Postgres store
// (settlement.Store). It writes only settlement's own tables: runs, cuts,
// steps and movements (goose migrations in settlement_goose_db_version).
// Everything else it does through the package that owns the table:
//
//   - the ledger's tables (journal, ids, balances, pending transfers,
//     outbox, leases and the fence) through ledger/postgres: the shard
//     leases are the ledger's (HandOffLease, then TakeLease with force for
//     an owner that does not hand over; RenewLease, ReleaseLease), and each
//     booking step runs in a ledger transaction on the shard
//     (ledgerpg.Store.InShard) whose ShardTx catches the balances up,
//     creates the fund's per-shard accounts, posts pending transfers and
//     writes the step's entries set-based (COPY) with their outbox rows and
//     the fence. The step's marker (settlement_steps, settlement_cuts) goes
//     into the same transaction, so a step is done once or not at all.
//   - the accounts' tables through accounts/postgres, in this package's
//     transaction: the customers' daily income rows
//     (accountspg.RecordIncomeTx, by COPY) in the ledger transaction of
//     the income entries (ShardTx.Tx()), and the due orders' completion
//     (accountspg.CompleteOrdersTx) in the transaction of the movements and
//     the orders step's marker. The fund's yields are published through
//     accounts.Service (OpenYieldPublisher).
//
// It reads the ledger's and the accounts' tables where the run needs a
// snapshot (holdings at the cut, due orders), with account ids and transfer
// flags from the accounts and ledger packages, never literals. A Store
// needs the ledger's and the accounts' tables of its shards in its
// database; Sharded (sharded.go) runs settlement over several such
// databases, each shard's steps in its own, the run's records in the
// first.
//
//	store, yields, closeStore, err := postgres.OpenForRunner(ctx, dsns, 8, 2, nil)
//	defer closeStore()
//	runner := settlement.NewRunner(settlement.Config{Shards: 8}, store, yields, nil, logger)
package postgres
