// Package kafka publishes the settlement run's events (one per shard
// settled, one per completed run) to a Kafka topic with kafka-go: the
// settlement.EventPublisher of production and of `fundctl settle run
// --kafka`. Ledger entries reach Kafka separately, through the ledger's
// outbox relay (ledger/outbox, ledger/kafka).
//
//	pub := kafka.NewPublisher([]string{"127.0.0.1:9092"}, kafka.TopicDefault)
//	defer pub.Close()
//	runner := settlement.NewRunner(cfg, store, yields, pub, logger)
package kafka
