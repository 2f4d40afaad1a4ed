package loadtest

import (
	"fmt"
	"strconv"
	"strings"
)

// PartsMax bounds how many generator processes one run is split over.
const PartsMax = 1024

// Part is this generator's piece of a run split over several processes
// (one generator on one core cannot drive a cluster): part Index of Count,
// from 1. Part i takes the customers whose setup index is i-1 modulo Count
// and sends 1/Count of the profile's rate for them, under idempotency keys
// of its own; the parts together make the profile's rate over all the
// customers, and no two parts ever send the same key or act for the same
// customer. The zero Part is the whole run.
type Part struct {
	Index int `json:"index"`
	Count int `json:"count"`
}

// Whole is the run in one process.
var Whole = Part{Index: 1, Count: 1}

// ParsePart reads "i/n" (1 <= i <= n <= PartsMax); "" is Whole.
func ParsePart(s string) (Part, error) {
	if s == "" {
		return Whole, nil
	}
	a, b, ok := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(strings.TrimSpace(a))
	n, err2 := strconv.Atoi(strings.TrimSpace(b))
	p := Part{Index: i, Count: n}
	if !ok || err1 != nil || err2 != nil {
		return Part{}, fmt.Errorf("part %q: want i/n, e.g. 2/4", s)
	}
	return p, p.Validate()
}

// Validate checks 1 <= Index <= Count <= PartsMax.
func (p Part) Validate() error {
	if p.Count < 1 || p.Count > PartsMax || p.Index < 1 || p.Index > p.Count {
		return fmt.Errorf("part %d/%d: want 1 <= i <= n <= %d", p.Index, p.Count, PartsMax)
	}
	return nil
}

func (p Part) norm() Part {
	if p.Count == 0 {
		return Whole
	}
	return p
}

// String is "i/n".
func (p Part) String() string { p = p.norm(); return fmt.Sprintf("%d/%d", p.Index, p.Count) }

// Owns reports whether setup index i (from 0) belongs to this part.
func (p Part) Owns(i int) bool { p = p.norm(); return i%p.Count == p.Index-1 }

// Size is how many of total setup indices the part owns.
func (p Part) Size(total int) int {
	p = p.norm()
	if total < p.Index {
		return 0
	}
	return (total-p.Index)/p.Count + 1
}

// Share scales a profile to the part's rate: every point's rate / Count.
func (p Part) Share(prof Profile) Profile {
	p = p.norm()
	if p.Count == 1 {
		return prof
	}
	out := Profile{Name: prof.Name, Points: make([]Point, len(prof.Points))}
	for i, pt := range prof.Points {
		out.Points[i] = Point{At: pt.At, RPS: pt.RPS / float64(p.Count)}
	}
	return out
}

// RunID is the prefix of the part's idempotency keys: the run's id, with
// the part when there are several, so that keys never collide.
func (p Part) RunID(run string) string {
	p = p.norm()
	if p.Count == 1 {
		return run
	}
	return fmt.Sprintf("%s-p%dof%d", run, p.Index, p.Count)
}

// Seed is the part's seed: the run's for a whole run, else a different one
// per part (so that the parts' arrivals are independent), all derived from
// the run's seed so that the split run replays.
func (p Part) Seed(seed uint64) uint64 {
	p = p.norm()
	if p.Count == 1 {
		return seed
	}
	// splitmix64 of seed+index: well spread, never the same for two parts.
	z := seed + uint64(p.Index)*0x9E3779B97F4A7C15
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}
