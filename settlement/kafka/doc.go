// Package kafka is the Kafka adapter of settlement: a publisher of ledger
// events with segmentio/kafka-go (acks from all in-sync replicas, keyed by
// shard so that a shard's events, and so every account's, stay in order),
// and an in-process broker speaking the real Kafka protocol (franz-go's
// kfake) for tests and `fundd dev`. Production points the same publisher at
// a list of real brokers.
package kafka
