// Package prometheus exports a ledger process's metrics (the names of the
// shared metric contract): which shards it serves, committed batches and
// journal entries, commit latency, and each served shard's outbox lag.
//
// It fits between ledger.Host and a Prometheus registry: the counters and
// the histogram are fed by the sequencers' BatchObserver hook; shard
// ownership and outbox lag are read when scraped, so they are never stale.
//
//	m, err := ledgerprom.New(reg, ledgerprom.Config{Shards: 64, Serving: served, OutboxLag: lag})
//	hostCfg.Sequencer.BatchObserver = m.ObserveBatch
package prometheus
