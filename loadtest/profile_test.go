package loadtest

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestDouble11Shape(t *testing.T) {
	p := Double11(100*time.Second, 1500, 15)
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	base, peak := p.Rate(10*time.Second), p.Rate(50*time.Second)
	if base != 100 || peak != 1500 {
		t.Fatalf("baseline %v peak %v: want 100 and 1500", base, peak)
	}
	if r := peak / base; r < 10 || r > 20 {
		t.Fatalf("peak is %vx the baseline: want 10..20", r)
	}
	// Sharp: from baseline-ish to peak within 1 % of the run.
	if p.Rate(40*time.Second) > 2*base || p.Rate(41*time.Second) != peak {
		t.Fatalf("spike not sharp: %v at 40s, %v at 41s", p.Rate(40*time.Second), p.Rate(41*time.Second))
	}
	// Decays after the hold.
	if !(p.Rate(65*time.Second) < peak && p.Rate(90*time.Second) < p.Rate(65*time.Second)) {
		t.Fatal("no decay after the peak")
	}
}

func TestScheduleFollowsRate(t *testing.T) {
	for _, p := range []Profile{
		Double11(20*time.Second, 300, 15),
		Constant(3*time.Second, 7),
		Ramp(10*time.Second, 100),
		{Name: "steps", Points: []Point{{0, 0}, {time.Second, 0}, {time.Second, 50}, {3 * time.Second, 50}, {4 * time.Second, 0}}},
	} {
		s := NewSchedule(p)
		var n int64
		last := time.Duration(-1)
		perSecond := map[int]int{}
		for {
			at, ok := s.Next()
			if !ok {
				break
			}
			if at < last || at > p.Duration() {
				t.Fatalf("%s: arrival %d at %s after %s (length %s)", p.Name, n, at, last, p.Duration())
			}
			last = at
			perSecond[int(at/time.Second)]++
			n++
		}
		if want := p.Expected(); math.Abs(float64(n)-want) > 1 {
			t.Fatalf("%s: %d arrivals, want %.1f", p.Name, n, want)
		}
		if p.Name == "constant" && (perSecond[0] != 7 || perSecond[1] != 7) {
			t.Fatalf("constant 7/s: per second %v", perSecond)
		}
		if p.Name == "steps" && (perSecond[0] != 0 || perSecond[1] != 50 || perSecond[2] != 50) {
			t.Fatalf("steps: per second %v", perSecond)
		}
	}
}

func TestReadProfile(t *testing.T) {
	dir := t.TempDir()
	js := filepath.Join(dir, "night.json")
	csvPath := filepath.Join(dir, "night.csv")
	if err := os.WriteFile(js, []byte(`[{"seconds":0,"rps":10},{"seconds":5,"rps":200},{"seconds":10,"rps":10}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(csvPath, []byte("seconds,rps\n0,10\n5,200\n10,10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{js, csvPath} {
		p, err := ReadProfile(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if p.Duration() != 10*time.Second || p.Rate(5*time.Second) != 200 || p.Name != "night" {
			t.Fatalf("%s: %+v", path, p)
		}
	}
	bad := filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(bad, []byte("0,10\n5,-3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadProfile(bad); err == nil {
		t.Fatal("negative rate accepted")
	}
}
