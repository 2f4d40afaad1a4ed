// Package ledger is the double-entry core of the fund platform.
//
// Accounts hold one asset each (CNY cash, fund shares) and keep their balance
// as four running sums: debits and credits, each posted and pending. A
// transfer moves an integer amount of minor units from one account (debited)
// to another (credited) of the same asset, so every journal entry balances by
// construction.
//
// Accounts are spread over logical shards (ShardOf). Each shard is served by
// exactly one Sequencer: a single writer that queues requests, applies a
// whole batch of them in memory, strictly in order and with an exact result
// per transfer, writes the batch to its Store in one transaction, and only
// then answers. Because nothing but the sequencer ever writes a shard's rows,
// there is no row-lock contention: an account that every subscription
// credits (the fund's omnibus account) costs no more than any other.
//
// Shards are placed on databases by a ShardMap (contiguous ranges of
// shards per database) and owned by processes through leases: a Host takes
// free shards, renews its leases, runs one Sequencer per owned shard and
// stops a shard the moment its lease is lost; the fencing epoch checked by
// every commit keeps a stale owner from writing. Hosts with a HostRegistry
// spread the shards evenly among themselves by hand-offs (the holder
// drains the shard and releases it to the requester, who takes it at
// once), and so does the settlement run take each shard for a step. Each lease advertises its
// owner's address, so a Directory tells callers where every shard is
// served; a request touches one shard (ShardOfTransfers refuses one that
// spans shards with ErrCrossShard; ledger/xshard moves money between
// shards as a saga).
//
// The package holds the domain types, the in-memory Book that applies
// transfers, the Sequencer, the Host and the Store, LeaseStore and
// Directory interfaces; adapters such as ledger/postgres (storage),
// ledger/grpc (serving and routing) and ledger/prometheus (metrics)
// implement or use them and import this package, never the reverse.
//
// A short example:
//
//	seq := ledger.NewSequencer(ledger.SequencerConfig{Shard: 0}, store, logger)
//	go seq.Run(ctx)
//	results, err := seq.CreateTransfers(ctx, []ledger.Transfer{{
//		ID: ledger.NewTransferID(), DebitAccountID: alice, CreditAccountID: omnibus,
//		Amount: 10_000, Asset: ledger.AssetCNY, Kind: 1,
//	}})
package ledger
