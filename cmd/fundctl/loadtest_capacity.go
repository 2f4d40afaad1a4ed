package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"

	"github.com/fundplatform/fund/loadtest"
	"github.com/fundplatform/fund/loadtest/audit"
)

// capacityOpts are the flags of `fundctl loadtest --find-capacity`.
type capacityOpts struct {
	enabled  bool
	startRPS float64
	factor   float64
	steps    int
	stepDur  time.Duration
	timeMax  time.Duration
	slo      time.Duration
	shedMax  float64
}

func (c *capacityOpts) flags(f *pflag.FlagSet) {
	f.BoolVar(&c.enabled, "find-capacity", false, "step the offered rate (constant steps, the mix and customers as usual) until p99 passes --slo or more than --shed-max is not served; report the knee")
	f.Float64Var(&c.startRPS, "capacity-start-rps", loadtest.CapacityStartRPSDefault, "--find-capacity: rate of the first step, requests/s")
	f.Float64Var(&c.factor, "capacity-step", loadtest.CapacityStepFactorDefault, "--find-capacity: each step's rate is the one before times this")
	f.IntVar(&c.steps, "capacity-steps", loadtest.CapacityStepsDefault, fmt.Sprintf("--find-capacity: at most this many steps (1..%d)", loadtest.CapacityStepsMax))
	f.DurationVar(&c.stepDur, "capacity-step-duration", loadtest.CapacityStepDurationDefault, "--find-capacity: length of each step")
	f.DurationVar(&c.timeMax, "capacity-time-max", loadtest.CapacityTimeMaxDefault, "--find-capacity: all steps together at most this long")
	f.DurationVar(&c.slo, "slo", loadtest.CapacitySLODefault, "--find-capacity: the p99 latency a step must stay within")
	f.Float64Var(&c.shedMax, "shed-max", loadtest.CapacityShedMaxDefault, "--find-capacity: the fraction of a step's requests that may be shed, failed or dropped")
}

func (c *capacityOpts) config(progress io.Writer) loadtest.CapacityConfig {
	return loadtest.CapacityConfig{StartRPS: c.startRPS, StepFactor: c.factor, StepsMax: c.steps, StepDuration: c.stepDur,
		TimeMax: c.timeMax, SLO: c.slo, ShedMax: c.shedMax, OnStep: func(s loadtest.CapacityStep) {
			verdict := "held"
			if !s.OK {
				verdict = "broke: " + s.Why
			}
			fmt.Fprintf(progress, "capacity step %d: offered %.0f/s, served %.0f/s, p50 %.1f ms, p99 %.1f ms, not served %.2f%%: %s\n",
				s.Step, s.OfferedRPS, s.ThroughputRPS, s.P50Ms, s.P99Ms, 100*s.NotServed, verdict)
		}}
}

// expected is how many requests the search sends at most: what the
// setup's balances are sized for.
func (c *capacityOpts) expected() float64 {
	n, rate, elapsed := 0.0, c.startRPS, time.Duration(0)
	for i := 0; i < c.steps && i < loadtest.CapacityStepsMax && elapsed+c.stepDur <= c.timeMax; i++ {
		n += rate * c.stepDur.Seconds()
		rate *= c.factor
		elapsed += c.stepDur
	}
	return n
}

// findCapacity is `fundctl loadtest --find-capacity` after the setup: the
// search, its table, capacity.json, and the audit of every step's orders.
func (p *loadPlan) findCapacity(ctx context.Context, customers, merchants []int64, progress, out io.Writer) error {
	o := p.o
	fmt.Fprintf(progress, "capacity: steps of %s from %.0f/s, x%.2f each, at most %d steps and %s; SLO p99 %s, at most %.2f%% not served; %s arrivals, seed %d\n",
		o.capacity.stepDur, o.capacity.startRPS, o.capacity.factor, o.capacity.steps, o.capacity.timeMax, o.capacity.slo,
		100*o.capacity.shedMax, p.arrivals, o.seed)
	c, err := loadtest.FindCapacity(ctx, loadtest.Config{
		Target: o.target, Mix: p.mix, Customers: customers, Merchants: merchants, HotMerchants: o.hotMerchants,
		ZipfSkew: o.zipf, Tokens: p.tokens, MaxInFlight: o.maxInFlight, RequestTimeout: o.timeout,
		TimeoutRetries: o.retries, Seed: o.seed, RunID: o.runID, Arrivals: p.arrivals,
	}, o.capacity.config(progress))
	if err != nil {
		return err
	}
	var auditErr error
	var a *loadtest.Audit
	if o.doAudit {
		fmt.Fprintf(progress, "audit: %d order records of every step against the books...\n", len(c.Records))
		admin := p.tokens.Admin()
		a, auditErr = audit.Run(ctx, auditConfig(*o, func(ctx context.Context) (string, int64, error) {
			return reconFromAPI(ctx, o.target, admin, o.reconWait)
		}), c.Records)
		if auditErr != nil {
			return auditErr
		}
	}
	dir := o.out
	if dir == "" {
		dir = "loadtest-" + o.runID
	}
	path := filepath.Join(dir, "capacity.json")
	if err := writeCapacity(path, c, a); err != nil {
		return err
	}
	printCapacity(out, c, path)
	if a != nil {
		printAudit(out, a)
		if !a.OK {
			return fmt.Errorf("audit failed: lost %d, duplicated %d, half-applied %d, wrong %d", a.Lost, a.Duplicated, a.HalfApplied, a.Wrong)
		}
	}
	if c.Knee == nil {
		return errors.New("capacity: the first step did not hold; start lower (--capacity-start-rps)")
	}
	return nil
}

func writeCapacity(path string, c *loadtest.Capacity, a *loadtest.Audit) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(struct {
		*loadtest.Capacity
		Audit *loadtest.Audit `json:"audit,omitempty"`
	}{c, a}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func printCapacity(w io.Writer, c *loadtest.Capacity, path string) {
	fmt.Fprintf(w, "\n== capacity search: SLO p99 %.0f ms, at most %.2f%% not served ==\n", c.SLOMs, 100*c.ShedMax)
	fmt.Fprintf(w, "%4s %10s %10s %8s %8s %8s %8s %8s %8s %10s  %s\n", "step", "offered/s", "served/s", "sent", "refused", "shed", "failed",
		"dropped", "p50 ms", "p99 ms", "")
	for _, s := range c.Steps {
		v := "held"
		if !s.OK {
			v = "broke: " + s.Why
		}
		fmt.Fprintf(w, "%4d %10.0f %10.0f %8d %8d %8d %8d %8d %8.1f %10.1f  %s\n", s.Step, s.OfferedRPS, s.ThroughputRPS, s.Sent,
			s.Rejected, s.Shed, s.Failed, s.Dropped, s.P50Ms, s.P99Ms, v)
	}
	if k := c.Knee; k != nil {
		fmt.Fprintf(w, "knee               %.0f requests/s offered, %.0f/s served, p50 %.1f ms, p99 %.1f ms, %.2f%% not served (step %d)\n",
			k.OfferedRPS, k.ThroughputRPS, k.P50Ms, k.P99Ms, 100*k.NotServed, k.Step)
	} else {
		fmt.Fprintf(w, "knee               none: the first step did not hold\n")
	}
	fmt.Fprintf(w, "stopped            %s\n", c.Stopped)
	fmt.Fprintf(w, "capacity.json      %s\n", path)
}
