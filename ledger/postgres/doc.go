// Package postgres stores ledger shards in PostgreSQL: it implements
// ledger.Store (load, lookup, one-transaction batch commit, verify),
// ledger.LeaseStore (shard leases with fencing epochs and hand-off
// requests), ledger.HostRegistry (the live hosts' heartbeats in
// ledger_hosts) and ledger.LeaseWatcher (LISTEN/NOTIFY on ledger_leases),
// and holds the transactional outbox the ledger's relay (ledger/outbox)
// publishes.
//
// It is the only writer of these tables (internal/archtest's TestOneWriter
// checks the rest of the module). Writers other than the sequencer use it too: the settlement
// run takes a shard's lease by a hand-off (HandOffLease; TakeLease with
// force fences an owner that did not answer)
// and books its entries set-based in one fenced transaction (InShard and
// ShardTx: catch-up of the balances with Load's replay, accounts, pending
// transfers posted as a set, COPY of the journal with the outbox), adding
// its own statements to that transaction; benchmarks seed a ledger in bulk
// with Seed.
//
// Schema (embedded goose migrations, applied on Open under an advisory
// lock): ledger_shards (one row per shard: lease owner, fencing epoch,
// the owner's advertised address, timestamps), accounts (balances as of a
// checkpoint), transfers (the append-only journal, partitioned by business
// date; triggers refuse UPDATE, DELETE and TRUNCATE), transfer_ids (every
// id ever applied, for idempotency forever), pending_transfers and
// ledger_outbox. Every batch commit calls ledger_fence first, which fails
// the transaction unless the writer's epoch is still the shard's, so an
// owner that lost its lease can never write again.
//
// Roles: the migrations run as an owner role, which owns every table; the
// processes may connect as a service role granted only what ServicePrivileges
// lists (the journal and transfer_ids: SELECT and INSERT), so that no
// service can update, delete, truncate, drop or detach history. Journal
// partitions are created at run time through ledger_create_partition, a
// SECURITY DEFINER function of the owner role, so they belong to the owner
// too. settlement/schema runs the migrations and the grants of the whole
// platform (fundd migrate); with one role for both, Open migrates as today.
//
// One Store is one database. Databases spreads the shards over several
// (ledger.ShardMap: contiguous ranges, in DSN order), keeping each shard's
// lease, journal, balances and outbox in the shard's own database, and
// answers ledger.Directory (who owns which shard, at which address) for
// the routing client in ledger/grpc.
//
//	dbs, err := postgres.OpenDatabases(ctx, postgres.DatabasesConfig{DSNs: []string{dsnA, dsnB}, Shards: 64})
//	host := ledger.NewHost(ledger.HostConfig{Owner: "a", Address: addr, Shards: 64}, dbs, dbs, logger)
//	go host.Run(ctx)
package postgres
