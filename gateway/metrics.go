package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// Metrics are the gateway's Prometheus collectors (names fixed by the
// contract, all prefixed fund_gateway_).
type Metrics struct {
	Requests     *prometheus.CounterVec   // fund_gateway_requests_total{route,code}
	Duration     *prometheus.HistogramVec // fund_gateway_request_duration_seconds{route}
	InFlight     prometheus.Gauge         // fund_gateway_inflight
	Shed         *prometheus.CounterVec   // fund_gateway_shed_total{reason}
	BreakerState *prometheus.GaugeVec     // fund_gateway_breaker_state{target}
}

// NewMetrics creates the collectors and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fund_gateway_requests_total",
			Help: "Requests answered, by route (HTTP method and pattern, or gRPC method) and code (HTTP status, or gRPC code for native gRPC).",
		}, []string{"route", "code"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fund_gateway_request_duration_seconds",
			Help:    "Time from request to answer, by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fund_gateway_inflight",
			Help: "Requests being handled now.",
		}),
		Shed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fund_gateway_shed_total",
			Help: "Requests refused with 429: reason concurrency (global limit) or rate (per-customer limit).",
		}, []string{"reason"}),
		BreakerState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fund_gateway_breaker_state",
			Help: "Circuit breaker state per ledger target: 0 closed, 1 half-open, 2 open.",
		}, []string{"target"}),
	}
	reg.MustRegister(m.Requests, m.Duration, m.InFlight, m.Shed, m.BreakerState)
	m.Shed.WithLabelValues("concurrency")
	m.Shed.WithLabelValues("rate")
	return m
}

// BreakerChanged records a breaker's state; pass it to NewBreakerClient.
func (m *Metrics) BreakerChanged(target string, _, to gobreaker.State) {
	m.BreakerState.WithLabelValues(target).Set(breakerValue(to))
}

func breakerValue(s gobreaker.State) float64 {
	switch s {
	case gobreaker.StateHalfOpen:
		return 1
	case gobreaker.StateOpen:
		return 2
	}
	return 0
}
