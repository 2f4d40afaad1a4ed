// Package kafka is the Kafka adapter of settlement: a publisher of ledger
// events with segmentio/kafka-go (acks from all in-sync replicas, keyed by
// shard so that a shard's events, and so every account's, stay in order),
// a consumer-group reader that commits an offset only after its handler
// succeeded for that event and every one before it, and an in-process
// broker speaking the real Kafka protocol (franz-go's kfake) for tests and
// `fundd dev`. Production points the same publisher at a list of real
// brokers.
//
// Each message repeats its event's kind in the KindHeader header, so a
// consumer that acts on a few kinds (the cross-shard saga's, which wants
// only leg 1) passes over the rest without decoding them:
//
//	kafka.Consume(ctx, kafka.ConsumerConfig{Brokers: b, Topic: t, Group: g,
//		Wants: router.Wants}, router.Handle)
package kafka
