package prometheus

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fundplatform/fund/ledger"
)

// Config says where the scrape-time values come from.
type Config struct {
	Shards int
	// Serving reports whether this process owns and serves shard now.
	Serving func(shard int) bool
	// OutboxLag returns how many events of shard wait in its outbox; nil
	// leaves fund_outbox_lag_events out.
	OutboxLag func(ctx context.Context, shard int) (int64, error)
	// LagTimeout bounds the outbox reads of one scrape (default 2 s).
	LagTimeout time.Duration
}

// Metrics holds the ledger's metrics for one process.
type Metrics struct {
	cfg       Config
	batches   prometheus.Counter
	transfers prometheus.Counter
	commit    prometheus.Histogram
	owned     *prometheus.Desc
	lag       *prometheus.Desc
}

// New creates the metrics and registers them with reg.
func New(reg prometheus.Registerer, cfg Config) (*Metrics, error) {
	if cfg.LagTimeout == 0 {
		cfg.LagTimeout = 2 * time.Second
	}
	m := &Metrics{
		cfg: cfg,
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fund_ledger_batches_total", Help: "Batches committed by this process's sequencers.",
		}),
		transfers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fund_ledger_transfers_total", Help: "Journal entries committed by this process's sequencers.",
		}),
		// Commits take one round trip and one WAL flush: about a
		// millisecond on a local disk, tens under load or across zones.
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "fund_ledger_commit_duration_seconds", Help: "Duration of one batch commit to Postgres.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14), // 0.5 ms .. 4 s
		}),
		owned: prometheus.NewDesc("fund_ledger_shard_owned", "1 when this process owns and serves the shard, else 0.", []string{"shard"}, nil),
		lag:   prometheus.NewDesc("fund_outbox_lag_events", "Events of a served shard waiting in its outbox to be published.", []string{"shard"}, nil),
	}
	for _, c := range []prometheus.Collector{m.batches, m.transfers, m.commit, m} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// ObserveBatch is a ledger.SequencerConfig.BatchObserver.
func (m *Metrics) ObserveBatch(b *ledger.Batch, took time.Duration) {
	m.batches.Inc()
	m.transfers.Add(float64(len(b.Transfers)))
	m.commit.Observe(took.Seconds())
}

// Describe implements prometheus.Collector for the scrape-time metrics.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.owned
	if m.cfg.OutboxLag != nil {
		ch <- m.lag
	}
}

// Collect implements prometheus.Collector: ownership of every shard (so
// that a shard nobody serves shows as zero everywhere) and the outbox lag
// of the shards served here (each shard reported once, by its owner).
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	var served []int
	for s := 0; s < m.cfg.Shards; s++ {
		v := 0.0
		if m.cfg.Serving(s) {
			v = 1
			served = append(served, s)
		}
		ch <- prometheus.MustNewConstMetric(m.owned, prometheus.GaugeValue, v, strconv.Itoa(s))
	}
	if m.cfg.OutboxLag == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.LagTimeout)
	defer cancel()
	for _, s := range served {
		n, err := m.cfg.OutboxLag(ctx, s)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(m.lag, err)
			return
		}
		ch <- prometheus.MustNewConstMetric(m.lag, prometheus.GaugeValue, float64(n), strconv.Itoa(s))
	}
}
