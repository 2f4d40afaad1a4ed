package loadtest

import (
	"math"
	"time"
)

// Schedule yields the send times of a profile: the n-th request (from 1) is
// due when the area under the rate reaches n - 1/2, so the arrivals follow the rate exactly
// and do not depend on how fast anything answers (an open loop).
type Schedule struct {
	p    Profile
	seg  int     // current segment: Points[seg] .. Points[seg+1]
	area float64 // area of the finished segments
	n    int64   // arrivals handed out
}

// NewSchedule starts a schedule at the beginning of p, which must be valid.
func NewSchedule(p Profile) *Schedule { return &Schedule{p: p} }

// Next returns the offset from the start of the run of the next arrival,
// and false once the profile is over.
func (s *Schedule) Next() (time.Duration, bool) {
	target := float64(s.n) + 0.5
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
