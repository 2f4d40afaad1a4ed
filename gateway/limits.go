package gateway

import (
	"container/list"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// RateLimiter gives each customer a token bucket. It keeps at most
// customersMax buckets: when a new customer comes and the map is full, the
// least recently used bucket is dropped (that customer starts again with a
// full bucket, which errs on the customer's side). Safe for concurrent use.
type RateLimiter struct {
	perSec       rate.Limit
	burst        int
	customersMax int

	mu      sync.Mutex
	buckets map[int64]*list.Element // of *bucket
	lru     list.List               // front = most recently used
}

type bucket struct {
	customer int64
	lim      *rate.Limiter
}

// NewRateLimiter allows each customer perSec requests a second with bursts
// of burst, remembering at most customersMax customers.
func NewRateLimiter(perSec float64, burst, customersMax int) *RateLimiter {
	return &RateLimiter{perSec: rate.Limit(perSec), burst: burst, customersMax: customersMax,
		buckets: make(map[int64]*list.Element)}
}

// Allow takes a token of customer c's bucket at now. When there is none it
// returns false and how long until there will be one.
func (l *RateLimiter) Allow(c int64, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b *bucket
	if e, ok := l.buckets[c]; ok {
		l.lru.MoveToFront(e)
		b = e.Value.(*bucket)
	} else {
		if l.lru.Len() >= l.customersMax {
			oldest := l.lru.Back()
			l.lru.Remove(oldest)
			delete(l.buckets, oldest.Value.(*bucket).customer)
		}
		b = &bucket{customer: c, lim: rate.NewLimiter(l.perSec, l.burst)}
		l.buckets[c] = l.lru.PushFront(b)
	}
	if b.lim.AllowN(now, 1) {
		return true, 0
	}
	r := b.lim.ReserveN(now, 1)
	wait := r.DelayFrom(now)
	r.CancelAt(now)
	return false, wait
}

// Len returns how many customers' buckets are kept.
func (l *RateLimiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}

// AdaptiveLimiter is the gateway's global concurrency limit: it admits up
// to limit requests at once and refuses the rest immediately (under
// overload a quick "try again" beats a queue whose every entry ends in a
// timeout). With a target of 0 the limit is fixed at max. With a target, it
// follows the latency: every window of completions it lowers the limit by a tenth when more
// than 1% of them took longer than target (multiplicative decrease), or
// raises it by one otherwise (additive increase), within [min, max]. Under
// overload the limit settles where the accepted requests' p99 is about the
// target, whatever the machine can do, so that what is accepted is served
// in time and the rest is told to retry at once. Safe for concurrent use.
type AdaptiveLimiter struct {
	target   time.Duration
	min, max float64
	window   int

	mu       sync.Mutex
	limit    float64
	inflight int
	n, slow  int
}

// adaptiveWindow is how many completions each adjustment looks at.
const adaptiveWindow = 200

// NewAdaptiveLimiter starts at max and keeps the limit within [min, max];
// target 0 keeps it at max.
func NewAdaptiveLimiter(target time.Duration, min, max int) *AdaptiveLimiter {
	return &AdaptiveLimiter{target: target, min: float64(min), max: float64(max), window: adaptiveWindow, limit: float64(max)}
}

// TryAcquire admits a request if fewer than the limit are in flight; the
// caller must Release it with its latency.
func (l *AdaptiveLimiter) TryAcquire() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inflight >= int(l.limit) {
		return false
	}
	l.inflight++
	return true
}

// Release ends an admitted request that took latency.
func (l *AdaptiveLimiter) Release(latency time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inflight--
	l.n++
	if latency > l.target {
		l.slow++
	}
	if l.target == 0 || l.n < l.window {
		return
	}
	if l.slow*100 > l.n {
		l.limit = max(l.min, l.limit*0.9)
	} else {
		l.limit = min(l.max, l.limit+1)
	}
	l.n, l.slow = 0, 0
}

// Limit returns the current limit and how many requests are in flight.
func (l *AdaptiveLimiter) Limit() (limit, inflight int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int(l.limit), l.inflight
}
