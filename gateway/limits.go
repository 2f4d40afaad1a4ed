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

// ConcurrencyLimiter admits at most a fixed number of requests at once and
// refuses the rest immediately: under overload a quick "try again" beats a
// queue whose every entry ends in a timeout.
type ConcurrencyLimiter struct {
	slots chan struct{}
}

// NewConcurrencyLimiter admits up to n requests at once.
func NewConcurrencyLimiter(n int) *ConcurrencyLimiter {
	return &ConcurrencyLimiter{slots: make(chan struct{}, n)}
}

// TryAcquire takes a slot if one is free; the caller must Release it.
func (l *ConcurrencyLimiter) TryAcquire() bool {
	select {
	case l.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

// Release frees a slot taken by TryAcquire.
func (l *ConcurrencyLimiter) Release() { <-l.slots }

// InFlight returns how many slots are taken.
func (l *ConcurrencyLimiter) InFlight() int { return len(l.slots) }
