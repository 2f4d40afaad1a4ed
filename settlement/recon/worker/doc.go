// Package worker is the reconciliation role (`fundd recon`): a member of a
// Kafka consumer group on the ledger's events. It records every event once
// in its own tables (redeliveries are ignored; the same id with other
// content is a break), keeps totals per business day, shard and account,
// and commits offsets only after its writes. Every Config.CompareEvery it
// compares today with the journal up to Config.Grace ago, and the days
// before once after they closed, and stores the breaks (fundctl recon
// report lists them). Run as many as the topic has partitions; they share
// them through the consumer group, and one at a time compares (an
// advisory lock in the first database).
//
//	err := worker.Run(ctx, worker.Config{DSNs: dsns, Shards: 64, Brokers: brokers})
//
// OpenEmbedded is the same worker for a process that runs every role (the
// dev stack), on its databases, broker and metrics registry.
package worker
