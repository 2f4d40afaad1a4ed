// Package kafka measures how far reconciliation's consumer group trails
// the ledger's event topic, for the fund_recon_consumer_lag_messages gauge
// (and, in a cluster, for scaling the workers on lag).
//
//	probe := kafka.NewLagProbe(brokers, "ledger-events", "fund-recon")
//	lag, err := probe.Lag(ctx) // messages not yet committed by the group
package kafka
