// Package recon reconciles the ledger with what it published and with the
// outside world.
//
// Three checks, each writing what it finds as a Break:
//
//   - The stream: a Worker consumes the ledger's events (ledger.Event, one
//     per journal entry, published through the outbox relay) as a Kafka
//     consumer group and keeps its own record in its own tables: every
//     transfer id applied, totals per business day and shard, totals per
//     business day and account, and the cross-shard sagas seen. A
//     redelivered event (same id, same content) is ignored; the same id with
//     different content is a Break of kind duplicate. The offset of an event
//     is committed only after its batch is written (settlement/kafka.Consume
//     does the committing; the Worker answers once the write is done).
//   - The journal: Store.Compare sets one business day of that record
//     against the journal, shard by shard: totals first (count, sum and a
//     digest of every field), and only where they differ entry by entry
//     (missing events, unexpected events, duplicated ids, amount and content
//     mismatches) and account by account. Sagas whose leg 1 put money in
//     transit with no leg 2 nor refund seen are in-transit breaks: in-transit
//     accounts must net to zero across shards.
//   - Statements: ParseStatement reads a bank or custodian statement (CSV,
//     columns documented there) and Match pairs its lines one to one, by
//     reference, direction and amount, with the movements of the bank
//     settlement account on that date in the journal.
//
// A Set holds one Store per ledger database (shards placed by
// ledger.ShardMap) and follows sagas across them.
//
// The domain imports no database or broker code: the Postgres adapter is
// settlement/recon/postgres, the group-lag probe settlement/recon/kafka.
//
//	store, _ := reconpg.Open(ctx, reconpg.Config{DSN: dsn}) // one per ledger database
//	w, _ := recon.NewWorker(recon.WorkerConfig{
//		Consume: func(ctx context.Context, h func(context.Context, ledger.Event) error) error {
//			return kafka.Consume(ctx, kafka.ConsumerConfig{Brokers: b, Topic: "ledger-events",
//				Group: "fund-recon", InFlightMax: 4096}, h)
//		},
//		Registerer: prometheus.DefaultRegisterer,
//	}, recon.Single(store), logger) // or recon.NewSet(shardMap, stores...)
//	err := w.Run(ctx) // until ctx ends
package recon
