package loadtest

import (
	"math"
	"sort"
	"strconv"
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds from 1 µs to latencyMax, 3
// significant digits.
const (
	latencyMax    = 10 * time.Minute
	latencyDigits = 3
)

func newHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, latencyMax.Microseconds(), latencyDigits)
}

// Outcome is how one request ended, as the client saw it.
type Outcome string

// Outcomes.
const (
	// Accepted: a 2xx answer; for an order, status COMPLETED, PENDING or
	// REFUNDED (acknowledged: the money moved, is held, is in transit to
	// another shard, or came back when that shard refused it).
	Accepted Outcome = "accepted"
	// Rejected: the order was refused by a business rule (422, or 200 with
	// status REJECTED): acknowledged, nothing moved.
	Rejected Outcome = "rejected"
	// Shed: 429, the gateway refused to take it on.
	Shed Outcome = "shed"
	// Failed: any other answer, or none (timeout after the retries,
	// connection error): not acknowledged, it may or may not have applied.
	Failed Outcome = "failed"
	// Dropped: the generator never sent it because MaxInFlight requests
	// were already out.
	Dropped Outcome = "dropped"
)

// Counts are request counts by outcome.
type Counts struct {
	Offered  int64 `json:"offered"` // scheduled by the profile
	Sent     int64 `json:"sent"`
	Dropped  int64 `json:"dropped_by_generator"`
	Accepted int64 `json:"accepted"`
	Rejected int64 `json:"rejected"`
	Shed     int64 `json:"shed"`
	Failed   int64 `json:"failed"`
	Retries  int64 `json:"retries"` // extra attempts after timeouts, same key
}

func (c *Counts) add(o Outcome) {
	switch o {
	case Accepted:
		c.Accepted++
	case Rejected:
		c.Rejected++
	case Shed:
		c.Shed++
	case Failed:
		c.Failed++
	case Dropped:
		c.Dropped++
	}
}

// Latency is a latency summary in milliseconds.
type Latency struct {
	Count  int64   `json:"count"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p999_ms"`
	MaxMs  float64 `json:"max_ms"`
	MeanMs float64 `json:"mean_ms"`
}

func summarize(h *hdrhistogram.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	ms := func(us int64) float64 { return math.Round(float64(us)) / 1000 }
	return Latency{
		Count: h.TotalCount(),
		P50Ms: ms(h.ValueAtQuantile(50)), P90Ms: ms(h.ValueAtQuantile(90)),
		P99Ms: ms(h.ValueAtQuantile(99)), P999Ms: ms(h.ValueAtQuantile(99.9)),
		MaxMs: ms(h.Max()), MeanMs: math.Round(h.Mean()) / 1000,
	}
}

// Second is one second of the run: what was scheduled in it (offered,
// sent, dropped) and what finished in it (the outcomes, their latency and
// the answer codes).
type Second struct {
	T int `json:"t"` // seconds from the start
	Counts
	Latency Latency          `json:"latency"`
	Codes   map[string]int64 `json:"codes"`
}

// Bucket is one bar of the latency distribution.
type Bucket struct {
	FromMs float64 `json:"from_ms"`
	ToMs   float64 `json:"to_ms"`
	Count  int64   `json:"count"`
}

// stats gathers everything under one mutex; a request touches it twice.
type stats struct {
	mu      sync.Mutex
	total   Counts
	orders  Counts
	byOp    map[Op]*Counts
	refused map[Op]map[string]int64 // business-rule refusals by reason
	opHist  map[Op]*hdrhistogram.Histogram
	all     *hdrhistogram.Histogram
	codes   map[string]int64
	seconds []*secondAcc
	closed  int // seconds before this one have no histogram any more
	// window is the latency of the last progress interval.
	window *hdrhistogram.Histogram
	wcodes map[string]int64
}

type secondAcc struct {
	Counts
	// hist collects the latencies of the answers that came in this second
	// until the clock moves on; then it is summarised into lat and
	// dropped (kept encoded, a few hundred bytes, for a merge), so a long
	// run holds one histogram, not one per second.
	hist  *hdrhistogram.Histogram
	lat   Latency
	enc   string
	codes map[string]int64
}

func newStats(secondsMax int) *stats {
	s := &stats{
		byOp: map[Op]*Counts{}, refused: map[Op]map[string]int64{}, opHist: map[Op]*hdrhistogram.Histogram{},
		all: newHist(), codes: map[string]int64{}, window: newHist(), wcodes: map[string]int64{},
		seconds: make([]*secondAcc, secondsMax),
	}
	for _, op := range Ops {
		s.byOp[op] = &Counts{}
	}
	return s
}

// second returns the accumulator of second i, clamped to the last one (a
// late answer after the profile ended counts in the final second).
func (s *stats) second(i int) *secondAcc {
	i = max(0, min(i, len(s.seconds)-1))
	if s.seconds[i] == nil {
		s.seconds[i] = &secondAcc{codes: map[string]int64{}}
	}
	return s.seconds[i]
}

// closeBefore summarises and drops the histograms of the seconds before
// sec: answers are filed by the second they arrive in, so none can still
// come for those.
func (s *stats) closeBefore(sec int) {
	for ; s.closed < min(sec, len(s.seconds)-1); s.closed++ {
		if acc := s.seconds[s.closed]; acc != nil && acc.hist != nil {
			acc.lat = summarize(acc.hist)
			acc.enc = encodeHist(acc.hist)
			acc.hist = nil
		}
	}
}

func (s *stats) scheduled(sec int, op Op, dropped bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	acc := s.second(sec)
	for _, c := range []*Counts{&s.total, s.byOp[op], &acc.Counts} {
		c.Offered++
		if dropped {
			c.Dropped++
		} else {
			c.Sent++
		}
	}
	if op.IsOrder() {
		s.orders.Offered++
		if dropped {
			s.orders.Dropped++
		} else {
			s.orders.Sent++
		}
	}
}

// finished files an answer; reason is why a rejected order was refused.
func (s *stats) finished(sec int, op Op, o Outcome, code, reason string, lat time.Duration, retries int) {
	us := max(lat.Microseconds(), 1)
	us = min(us, latencyMax.Microseconds())
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeBefore(sec)
	acc := s.second(sec)
	if acc.hist == nil {
		acc.hist = newHist()
	}
	cs := []*Counts{&s.total, s.byOp[op], &acc.Counts}
	if op.IsOrder() {
		cs = append(cs, &s.orders)
	}
	for _, c := range cs {
		c.add(o)
		c.Retries += int64(retries)
	}
	if o == Rejected {
		if s.refused[op] == nil {
			s.refused[op] = map[string]int64{}
		}
		s.refused[op][reason]++
	}
	s.codes[code]++
	acc.codes[code]++
	s.wcodes[code]++
	_ = acc.hist.RecordValue(us)
	_ = s.all.RecordValue(us)
	_ = s.window.RecordValue(us)
	h := s.opHist[op]
	if h == nil {
		h = newHist()
		s.opHist[op] = h
	}
	_ = h.RecordValue(us)
}

// takeWindow returns the last interval's p99 and answer codes and starts a
// new interval.
func (s *stats) takeWindow() (p99 time.Duration, codes map[string]int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p99 = time.Duration(s.window.ValueAtQuantile(99)) * time.Microsecond
	s.window.Reset()
	codes, s.wcodes = s.wcodes, map[string]int64{}
	return p99, codes
}

func (s *stats) snapshot() (total, orders Counts) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total, s.orders
}

// timeline returns the seconds up to and including the last one used.
func (s *stats) timeline() []Second {
	s.mu.Lock()
	defer s.mu.Unlock()
	last := -1
	for i, acc := range s.seconds {
		if acc != nil {
			last = i
		}
	}
	out := make([]Second, 0, last+1)
	for i := 0; i <= last; i++ {
		sec := Second{T: i, Codes: map[string]int64{}}
		if acc := s.seconds[i]; acc != nil {
			sec.Counts = acc.Counts
			sec.Latency = acc.lat
			if acc.hist != nil {
				sec.Latency = summarize(acc.hist)
			}
			for k, v := range acc.codes {
				sec.Codes[k] = v
			}
		}
		out = append(out, sec)
	}
	return out
}

// distribution turns the overall histogram into bars whose width doubles
// every few bars (a log scale), at most a few dozen of them.
func distribution(h *hdrhistogram.Histogram) []Bucket {
	if h.TotalCount() == 0 {
		return nil
	}
	// Edges in µs: 1, 1.5, 2, 3, 5, 7, 10, ... up to past the max.
	var edges []int64
	for dec := int64(1); dec <= latencyMax.Microseconds()*10; dec *= 10 {
		for _, m := range []int64{10, 15, 20, 30, 50, 70} {
			edges = append(edges, dec*m/10)
		}
	}
	counts := make([]int64, len(edges))
	for _, bar := range h.Distribution() {
		if bar.Count == 0 {
			continue
		}
		i := sort.Search(len(edges), func(i int) bool { return edges[i] > bar.From }) - 1
		counts[max(i, 0)] += bar.Count
	}
	first, last := -1, -1
	for i, c := range counts {
		if c > 0 {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	var out []Bucket
	for i := first; i <= last && i+1 < len(edges); i++ {
		out = append(out, Bucket{FromMs: float64(edges[i]) / 1000, ToMs: float64(edges[i+1]) / 1000, Count: counts[i]})
	}
	return out
}

// codeOf names an answer: its HTTP status, or what went wrong without one.
func codeOf(a answer) string {
	switch {
	case a.Err == nil || a.Status != 0:
		return strconv.Itoa(a.Status)
	case a.timedOut():
		return "timeout"
	default:
		return "transport"
	}
}

func sortedKeys(m map[string]int64) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
