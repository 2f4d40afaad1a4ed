package gateway

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

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

// BreakerGone drops a breaker's series; pass it to NewOwnerBreakers.
func (m *Metrics) BreakerGone(target string) {
	m.BreakerState.DeleteLabelValues(target)
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

// routeMetrics are one route's series: the duration histogram and the
// request counters by status, looked up once (the first request with a
// status) instead of hashing the label values on every request. The
// children stay valid because nothing deletes or resets the gateway's
// series.
type routeMetrics struct {
	m        *Metrics
	name     string // the route label: method and pattern
	method   string
	duration prometheus.Observer
	byCode   [statusCodeMax - statusCodeMin]atomic.Pointer[counterRef]
}

// HTTP statuses whose counters are kept in routeMetrics.byCode; others are
// looked up every time.
const (
	statusCodeMin = 100
	statusCodeMax = 600
)

type counterRef struct{ c prometheus.Counter }

func (rm *routeMetrics) observe(code int, elapsed time.Duration) {
	rm.duration.Observe(elapsed.Seconds())
	if code < statusCodeMin || code >= statusCodeMax {
		rm.m.Requests.WithLabelValues(rm.name, strconv.Itoa(code)).Inc()
		return
	}
	slot := &rm.byCode[code-statusCodeMin]
	ref := slot.Load()
	if ref == nil {
		ref = &counterRef{c: rm.m.Requests.WithLabelValues(rm.name, strconv.Itoa(code))}
		slot.Store(ref) // a racing request stores the same child
	}
	ref.c.Inc()
}

// routeSet holds the routes' metrics by route label.
type routeSet struct {
	m         *Metrics
	unmatched *routeMetrics // requests no route matched

	mu     sync.Mutex
	routes map[string]*routeMetrics
}

func newRouteSet(m *Metrics) *routeSet {
	s := &routeSet{m: m, routes: make(map[string]*routeMetrics)}
	s.unmatched = s.newRoute("unmatched", "")
	return s
}

func (s *routeSet) newRoute(name, method string) *routeMetrics {
	return &routeMetrics{m: s.m, name: name, method: method, duration: s.m.Duration.WithLabelValues(name)}
}

// get returns the metrics of the route of method and pattern.
func (s *routeSet) get(method, pattern string) *routeMetrics {
	name := method + " " + pattern
	s.mu.Lock()
	defer s.mu.Unlock()
	rm, ok := s.routes[name]
	if !ok {
		rm = s.newRoute(name, method)
		s.routes[name] = rm
	}
	return rm
}
