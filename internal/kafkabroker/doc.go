// Package kafkabroker is an in-process broker speaking the real Kafka
// protocol (franz-go's kfake) on loopback, for tests, benches and the dev
// stack. Production never links it: `fundd` roles take broker addresses
// from their configuration. Down and Up simulate an outage as clients see
// it (connections closed, data kept); Hiccup a broker that leaves a few
// fetches unanswered (clients time out and reconnect).
//
//	b, err := kafkabroker.Start(0, 8, "ledger-events")
//	defer b.Close()
//	pub := kafka.NewPublisher(b.Addrs(), "ledger-events")
package kafkabroker
