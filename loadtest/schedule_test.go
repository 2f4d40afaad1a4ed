package loadtest

import (
	"math"
	"testing"
	"time"
)

func arrivals(s *Schedule) []time.Duration {
	var out []time.Duration
	for i := 0; i < 10_000_000; i++ { // bounded: far above any profile here
		at, ok := s.Next()
		if !ok {
			break
		}
		out = append(out, at)
	}
	return out
}

// TestPoissonArrivals checks a seeded Poisson schedule: the count is
// within 4 standard deviations of the profile's expected arrivals (a
// Poisson count's is its mean's square root), the gaps look exponential
// (coefficient of variation near 1, where an even schedule has 0), the
// arrivals are in order within the profile, and the same seed replays the
// same arrivals while another seed does not.
func TestPoissonArrivals(t *testing.T) {
	const seed = 20261111
	t.Logf("seed %d", seed)
	for _, p := range []Profile{Constant(100*time.Second, 200), Double11(60*time.Second, 600, 15), Ramp(30*time.Second, 400)} {
		got := arrivals(NewPoissonSchedule(p, seed))
		mean := p.Expected()
		if d := math.Abs(float64(len(got)) - mean); d > 4*math.Sqrt(mean) {
			t.Errorf("%s: %d arrivals, want %.0f ± %.0f", p.Name, len(got), mean, 4*math.Sqrt(mean))
		}
		for i := 1; i < len(got); i++ {
			if got[i] < got[i-1] || got[i] > p.Duration() {
				t.Fatalf("%s: arrival %d at %s after %s (profile %s)", p.Name, i, got[i], got[i-1], p.Duration())
			}
		}
		again := arrivals(NewPoissonSchedule(p, seed))
		if len(again) != len(got) || again[len(again)/2] != got[len(got)/2] || again[len(again)-1] != got[len(got)-1] {
			t.Errorf("%s: the same seed gave other arrivals", p.Name)
		}
		other := arrivals(NewPoissonSchedule(p, seed+1))
		if len(other) == len(got) && other[len(other)/2] == got[len(got)/2] {
			t.Errorf("%s: another seed gave the same arrivals", p.Name)
		}
	}

	// On a constant rate the gaps are exponential with mean 1/rate: mean
	// within 3 % and a coefficient of variation within 3 % of 1, where
	// the even schedule's is 0.
	p := Constant(100*time.Second, 200)
	for _, c := range []struct {
		s      *Schedule
		cvLo   float64
		cvHigh float64
	}{{NewPoissonSchedule(p, seed), 0.97, 1.03}, {NewSchedule(p), 0, 0.01}} {
		got := arrivals(c.s)
		var sum, sum2 float64
		for i := 1; i < len(got); i++ {
			g := (got[i] - got[i-1]).Seconds()
			sum += g
			sum2 += g * g
		}
		n := float64(len(got) - 1)
		m := sum / n
		cv := math.Sqrt(sum2/n-m*m) / m
		if math.Abs(m-1.0/200)/(1.0/200) > 0.03 || cv < c.cvLo || cv > c.cvHigh {
			t.Errorf("gaps: mean %.6fs (want %.6f), coefficient of variation %.3f (want %.2f..%.2f)", m, 1.0/200, cv, c.cvLo, c.cvHigh)
		}
	}
}

func TestParseArrivals(t *testing.T) {
	for in, want := range map[string]Arrivals{"": ArrivalsPoisson, "poisson": ArrivalsPoisson, "even": ArrivalsEven} {
		if got, err := ParseArrivals(in); err != nil || got != want {
			t.Errorf("ParseArrivals(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseArrivals("uniform"); err == nil {
		t.Error("ParseArrivals(uniform): no error")
	}
}
