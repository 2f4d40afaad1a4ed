// Package settlement moves what the ledger committed onward: the outbox
// relay that publishes ledger events to Kafka, and (as the platform grows)
// reconciliation workers and the nightly fund settlement.
//
// The relay reads each shard's transactional outbox in commit order,
// publishes every event (at least once; consumers are idempotent by
// transfer id), and only then removes the batch from the outbox, so nothing
// leaves the outbox unpublished. A broker outage is ridden out with bounded,
// backed-off retries.
//
//	relay := settlement.NewRelay(settlement.RelayConfig{Shards: []int{0}}, store, publisher, logger)
//	err := relay.Run(ctx)
package settlement
