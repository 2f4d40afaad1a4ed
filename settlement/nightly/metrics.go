package nightly

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fundplatform/fund/settlement"
)

// Metrics are the settlement's Prometheus metrics (names from the
// contract).
type Metrics struct {
	lastSuccess prometheus.Gauge
	accounts    prometheus.Counter
}

// NewMetrics registers the settlement's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "fund_settlement_last_success_timestamp_seconds",
			Help: "When the last settlement run finished successfully (Unix seconds)."}),
		accounts: prometheus.NewCounter(prometheus.CounterOpts{Name: "fund_settlement_accounts_total",
			Help: "Holders whose income the settlement runs distributed."}),
	}
	reg.MustRegister(m.lastSuccess, m.accounts)
	return m
}

// Observe counts a finished run; it is a settlement.Config.Observe.
func (m *Metrics) Observe(s settlement.Summary) {
	m.lastSuccess.SetToCurrentTime()
	m.accounts.Add(float64(s.Holders))
}
