// Package outbox moves the ledger's events from its transactional outbox
// (rows written in the same Postgres transaction as the entries, by
// ledger/postgres) to a broker (ledger/kafka). The Relay reads each
// shard's pending batches oldest first, publishes them, and only after the
// broker acknowledged deletes them: an event may be published twice after
// a crash (consumers are idempotent by transfer id) but never lost. While
// every outbox stays empty it polls slowly (IdlePoll); rounds that keep
// failing are reported once, and their end.
//
//	relay := outbox.NewRelay(outbox.RelayConfig{Shards: []int{0}}, store, publisher, logger)
//	go relay.Run(ctx)
package outbox
