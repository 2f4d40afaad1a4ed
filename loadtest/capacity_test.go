package loadtest

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestFindCapacity steps against a fake gateway that slows down past the
// SLO from step 3 on (and one that sheds from step 2): the search stops
// there and names the step before as the knee.
func TestFindCapacity(t *testing.T) {
	slowFrom3 := func(w http.ResponseWriter, r *http.Request, _ int) {
		if strings.Contains(r.Header.Get("Idempotency-Key"), "-s3-") {
			time.Sleep(150 * time.Millisecond)
		}
		okOrder(w, r)
	}
	_, srv := newFake(t, slowFrom3)
	cfg := baseConfig(srv.URL, Constant(time.Second, 1))
	cfg.Mix = Mix{OpPay: 1}
	var seen []CapacityStep
	c, err := FindCapacity(context.Background(), cfg, CapacityConfig{StartRPS: 20, StepFactor: 1.5, StepDuration: time.Second,
		SLO: 100 * time.Millisecond, OnStep: func(s CapacityStep) { seen = append(seen, s) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Steps) != 3 || len(seen) != 3 || c.Knee == nil || c.Knee.Step != 2 || c.Knee.OfferedRPS != 30 || c.Steps[2].OK {
		t.Fatalf("steps %+v, knee %+v, stopped %q", c.Steps, c.Knee, c.Stopped)
	}
	if !strings.Contains(c.Stopped, "step 3 at 45/s: p99") || int64(len(c.Records)) != c.Steps[0].Sent+c.Steps[1].Sent+c.Steps[2].Sent {
		t.Fatalf("stopped %q, %d records", c.Stopped, len(c.Records))
	}

	shedFrom2 := func(w http.ResponseWriter, r *http.Request, _ int) {
		if strings.Contains(r.Header.Get("Idempotency-Key"), "-s2-") {
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		okOrder(w, r)
	}
	_, srv = newFake(t, shedFrom2)
	cfg = baseConfig(srv.URL, Constant(time.Second, 1))
	cfg.Mix = Mix{OpPay: 1}
	c, err = FindCapacity(context.Background(), cfg, CapacityConfig{StartRPS: 20, StepDuration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Steps) != 2 || c.Knee == nil || c.Knee.Step != 1 || !strings.Contains(c.Stopped, "not served") {
		t.Fatalf("steps %+v, stopped %q", c.Steps, c.Stopped)
	}

	// Bounded: the time limit ends a search that never breaks.
	_, srv = newFake(t, nil)
	cfg = baseConfig(srv.URL, Constant(time.Second, 1))
	c, err = FindCapacity(context.Background(), cfg, CapacityConfig{StartRPS: 5, StepDuration: time.Second, TimeMax: 2500 * time.Millisecond})
	if err != nil || len(c.Steps) != 2 || !strings.Contains(c.Stopped, "time limit") {
		t.Fatalf("steps %d, stopped %q, %v", len(c.Steps), c.Stopped, err)
	}
}
