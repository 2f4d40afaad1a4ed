// Package kafka is the ledger's event transport on Kafka: a publisher of
// ledger events with segmentio/kafka-go (acks from all in-sync replicas,
// keyed by shard so that a shard's events, and so every account's, stay in
// order), used by the outbox relay (ledger/outbox), and a consumer-group
// reader that commits an offset only after its handler succeeded for that
// event and every one before it, used by the cross-shard saga
// (ledger/xshard) and by reconciliation (settlement/recon). Tests and the
// dev stack point it at an in-process broker (internal/kafkabroker);
// production at a list of real brokers.
//
// A healthy consumer logs nothing above DEBUG, idle or busy: kafka-go's
// own error log (every try it retries) goes to DEBUG, and Consume reports
// what an operator must act on once, with its end at INFO: brokers
// unreachable for 5 s, a reader that leaves events waiting for 20 s
// (replaced), a handler that keeps failing for 5 s. Fetches long-poll the
// broker for up to 2 s, so an idle consumer costs next to nothing.
//
// Each message repeats its event's kind in the KindHeader header, so a
// consumer that acts on a few kinds (the cross-shard saga's, which wants
// only leg 1) passes over the rest without decoding them:
//
//	kafka.Consume(ctx, kafka.ConsumerConfig{Brokers: b, Topic: t, Group: g,
//		Wants: router.Wants}, router.Handle)
package kafka
