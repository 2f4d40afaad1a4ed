package loadtest

import (
	"context"
	"fmt"
	"time"
)

// Defaults and limits of a capacity search.
const (
	CapacityStartRPSDefault     = 50
	CapacityStepFactorDefault   = 1.25
	CapacityStepsDefault        = 12
	CapacityStepsMax            = 50
	CapacityStepDurationDefault = 20 * time.Second
	CapacityTimeMaxDefault      = 10 * time.Minute
	CapacityTimeMax             = 2 * time.Hour
	CapacitySLODefault          = 100 * time.Millisecond
	CapacityShedMaxDefault      = 0.01
)

// CapacityConfig is a stepped search for the highest rate the target
// sustains: constant-rate steps, each StepFactor times the one before,
// until a step's p99 passes SLO or more than ShedMax of its requests are
// not served (shed with 429, failed, or not even sent because too many
// were in flight), or StepsMax steps or TimeMax have gone by.
type CapacityConfig struct {
	StartRPS     float64       // 0 = CapacityStartRPSDefault
	StepFactor   float64       // > 1; 0 = CapacityStepFactorDefault
	StepsMax     int           // 0 = CapacityStepsDefault
	StepDuration time.Duration // 0 = CapacityStepDurationDefault
	TimeMax      time.Duration // all steps together; 0 = CapacityTimeMaxDefault
	SLO          time.Duration // p99 bound; 0 = CapacitySLODefault
	ShedMax      float64       // fraction; 0 = CapacityShedMaxDefault
	// OnStep, when set, hears each step's figures as it ends.
	OnStep func(CapacityStep)
}

// CapacityStep is one step's figures.
type CapacityStep struct {
	Step          int     `json:"step"`
	OfferedRPS    float64 `json:"offered_rps"`
	ThroughputRPS float64 `json:"throughput_rps"` // answered (accepted + rejected) per second
	Counts
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	// NotServed is the fraction of the offered requests shed, failed or
	// dropped by the generator.
	NotServed float64 `json:"not_served"`
	OK        bool    `json:"ok"`
	Why       string  `json:"why,omitempty"` // what the step broke
}

// Capacity is a search's outcome.
type Capacity struct {
	SLOMs   float64        `json:"slo_p99_ms"`
	ShedMax float64        `json:"shed_max"`
	Steps   []CapacityStep `json:"steps"`
	// Knee is the last step that held (nil when the first did not).
	Knee *CapacityStep `json:"knee,omitempty"`
	// Stopped says why the search ended: the step that broke, or a limit.
	Stopped string `json:"stopped"`
	// Records are every step's orders, for the audit.
	Records []Record `json:"-"`
}

func (c *CapacityConfig) defaults() error {
	def := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.StartRPS, CapacityStartRPSDefault)
	def(&c.StepFactor, CapacityStepFactorDefault)
	def(&c.ShedMax, CapacityShedMaxDefault)
	if c.StepsMax == 0 {
		c.StepsMax = CapacityStepsDefault
	}
	if c.StepDuration == 0 {
		c.StepDuration = CapacityStepDurationDefault
	}
	if c.TimeMax == 0 {
		c.TimeMax = CapacityTimeMaxDefault
	}
	if c.SLO == 0 {
		c.SLO = CapacitySLODefault
	}
	switch {
	case c.StartRPS <= 0 || c.StartRPS > ProfileRateMax:
		return fmt.Errorf("capacity: start rate %v: want 0..%d", c.StartRPS, ProfileRateMax)
	case c.StepFactor <= 1 || c.StepFactor > 10:
		return fmt.Errorf("capacity: step factor %v: want more than 1, at most 10", c.StepFactor)
	case c.StepsMax < 1 || c.StepsMax > CapacityStepsMax:
		return fmt.Errorf("capacity: %d steps: want 1..%d", c.StepsMax, CapacityStepsMax)
	case c.StepDuration < time.Second || c.StepDuration > c.TimeMax || c.TimeMax > CapacityTimeMax:
		return fmt.Errorf("capacity: steps of %s within %s: want at least 1s, and all within %s", c.StepDuration, c.TimeMax, CapacityTimeMax)
	case c.SLO <= 0 || c.ShedMax <= 0 || c.ShedMax >= 1:
		return fmt.Errorf("capacity: SLO %s, shed max %v: want a positive SLO and 0 < shed max < 1", c.SLO, c.ShedMax)
	}
	return nil
}

// FindCapacity runs the steps with base's customers, mix and limits (its
// Profile is replaced by each step's constant rate; each step has its own
// keys and seed, derived from base's). It stops at the first step that
// breaks the SLO or sheds too much, or at a limit.
func FindCapacity(ctx context.Context, base Config, cc CapacityConfig) (*Capacity, error) {
	if err := cc.defaults(); err != nil {
		return nil, err
	}
	if base.Seed == 0 {
		base.Seed = uint64(time.Now().UnixNano())
	}
	if base.RunID == "" {
		base.RunID = "cap" + fmt.Sprint(base.Seed%(1<<32))
	}
	out := &Capacity{SLOMs: float64(cc.SLO.Microseconds()) / 1000, ShedMax: cc.ShedMax}
	began := time.Now()
	rate := cc.StartRPS
	for i := 1; i <= cc.StepsMax; i++ {
		if time.Since(began)+cc.StepDuration > cc.TimeMax {
			out.Stopped = fmt.Sprintf("time limit: %s would pass %s", time.Since(began).Round(time.Second)+cc.StepDuration, cc.TimeMax)
			return out, nil
		}
		if rate > ProfileRateMax {
			out.Stopped = fmt.Sprintf("rate limit: %.0f/s is past %d/s", rate, ProfileRateMax)
			return out, nil
		}
		cfg := base
		cfg.Profile = Constant(cc.StepDuration, rate)
		cfg.Profile.Name = fmt.Sprintf("capacity step %d", i)
		cfg.RunID = fmt.Sprintf("%s-s%d", base.RunID, i)
		cfg.Seed = base.Seed + uint64(i)
		res, err := Run(ctx, cfg)
		if err != nil {
			return out, err
		}
		out.Records = append(out.Records, res.Records...)
		st := judge(i, rate, res, cc)
		out.Steps = append(out.Steps, st)
		if cc.OnStep != nil {
			cc.OnStep(st)
		}
		if !st.OK {
			out.Stopped = fmt.Sprintf("step %d at %.0f/s: %s", i, rate, st.Why)
			return out, nil
		}
		out.Knee = &out.Steps[len(out.Steps)-1]
		rate *= cc.StepFactor
	}
	out.Stopped = fmt.Sprintf("step limit: %d steps held", cc.StepsMax)
	return out, nil
}

// judge sums up a step and says whether it held.
func judge(i int, rate float64, res *Result, cc CapacityConfig) CapacityStep {
	t := res.Totals
	st := CapacityStep{Step: i, OfferedRPS: rate, Counts: t, P50Ms: res.Latency.P50Ms, P99Ms: res.Latency.P99Ms, OK: true}
	if res.DurationSeconds > 0 {
		st.ThroughputRPS = float64(t.Accepted+t.Rejected) / res.DurationSeconds
	}
	if t.Offered > 0 {
		st.NotServed = float64(t.Shed+t.Failed+t.Dropped) / float64(t.Offered)
	}
	slo := float64(cc.SLO.Microseconds()) / 1000
	switch {
	case st.P99Ms > slo:
		st.OK, st.Why = false, fmt.Sprintf("p99 %.1f ms past the %.0f ms SLO", st.P99Ms, slo)
	case st.NotServed > cc.ShedMax:
		st.OK, st.Why = false, fmt.Sprintf("%.2f%% not served (shed %d, failed %d, dropped %d), more than %.2f%%",
			100*st.NotServed, t.Shed, t.Failed, t.Dropped, 100*cc.ShedMax)
	}
	return st
}
