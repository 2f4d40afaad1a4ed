package loadtest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Arrivals is how requests are spread over time at the profile's rate.
type Arrivals string

// Arrival processes.
const (
	// ArrivalsPoisson: a (non-homogeneous) Poisson process of the profile's
	// rate: independent exponential gaps, as a crowd of app users who do
	// not know of each other arrives. Bursts and lulls happen by chance;
	// the mean rate follows the profile. The default.
	ArrivalsPoisson Arrivals = "poisson"
	// ArrivalsEven: evenly spaced at the rate, the same every run.
	ArrivalsEven Arrivals = "even"
)

// ParseArrivals reads "poisson" or "even".
func ParseArrivals(s string) (Arrivals, error) {
	switch a := Arrivals(s); a {
	case ArrivalsPoisson, ArrivalsEven:
		return a, nil
	case "":
		return ArrivalsPoisson, nil
	}
	return "", fmt.Errorf("arrivals %q: want poisson or even", s)
}

// Schedule yields the send times of a profile, independent of how fast
// anything answers (an open loop). It walks the cumulative rate Λ(t), the
// area under the profile: the n-th arrival (from 1) is due where Λ reaches
// a target. Evenly spaced, the target is n - 1/2. For Poisson arrivals the
// targets are sums of independent Exp(1) draws: a unit-rate Poisson process
// mapped through Λ⁻¹ is a Poisson process of the profile's rate (the
// time-change theorem), exact for any piecewise-linear profile.
type Schedule struct {
	p    Profile
	seg  int     // current segment: Points[seg] .. Points[seg+1]
	area float64 // area of the finished segments
	n    int64   // arrivals handed out
	// rng draws the Exp(1) gaps of a Poisson schedule; nil = even.
	rng    *rand.Rand
	target float64 // Poisson: Λ of the next arrival
}

// NewSchedule starts an evenly spaced schedule at the beginning of p, which
// must be valid.
func NewSchedule(p Profile) *Schedule { return &Schedule{p: p} }

// NewPoissonSchedule starts a Poisson schedule of p's rate; the same seed
// gives the same arrivals.
func NewPoissonSchedule(p Profile, seed uint64) *Schedule {
	// A stream of its own, so that the arrivals do not shift the draws of
	// the requests' contents (and the reverse).
	return &Schedule{p: p, rng: rand.New(rand.NewPCG(seed, seed^0xA0761D6478BD642F))}
}

// NewArrivalSchedule is NewSchedule or NewPoissonSchedule by a.
func NewArrivalSchedule(p Profile, a Arrivals, seed uint64) *Schedule {
	if a == ArrivalsEven {
		return NewSchedule(p)
	}
	return NewPoissonSchedule(p, seed)
}

// Next returns the offset from the start of the run of the next arrival,
// and false once the profile is over. Each call does at most one pass over
// the profile's points.
func (s *Schedule) Next() (time.Duration, bool) {
	var target float64
	if s.rng != nil {
		s.target += s.rng.ExpFloat64()
		target = s.target
	} else {
		target = float64(s.n) + 0.5
	}
	pts := s.p.Points
	for s.seg < len(pts)-1 {
		a, b := pts[s.seg], pts[s.seg+1]
		span := (b.At - a.At).Seconds()
		segArea := (a.RPS + b.RPS) / 2 * span
		need := target - s.area
		if span > 0 && need <= segArea {
			k := (b.RPS - a.RPS) / span // rate slope, per second squared
			// Solve k/2 t² + r0 t = need for t in [0, span]; this form has
			// no cancellation when k is small or negative.
			disc := math.Max(a.RPS*a.RPS+2*k*need, 0)
			den := a.RPS + math.Sqrt(disc)
			t := span
			if den > 0 {
				t = math.Min(2*need/den, span)
			}
			s.n++
			return a.At + time.Duration(t*float64(time.Second)), true
		}
		s.area += segArea
		s.seg++
	}
	return 0, false
}
