package local_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fundplatform/fund/deploy/local"
)

// The checked-in default schedule has every fault once and fits a run of
// its own length, the peak faults at the Double-11 profile's midnight
// (41% to 60% of the run).
func TestDefaultSchedule(t *testing.T) {
	s := local.DefaultSchedule()
	plan, err := s.Plan(time.Duration(s.Duration))
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[local.FaultKind]time.Duration{}
	for _, p := range plan {
		kinds[p.Kind] = p.At
	}
	run := time.Duration(s.Duration)
	for _, k := range []local.FaultKind{local.FaultKillOwner, local.FaultKillGateway, local.FaultPostgresRestart,
		local.FaultStopOwner, local.FaultStopRecon, local.FaultKillSettle, local.FaultBrokerDown} {
		at, ok := kinds[k]
		if !ok {
			t.Errorf("no %s in the default schedule", k)
		}
		peak := k == local.FaultKillOwner || k == local.FaultStopOwner || k == local.FaultPostgresRestart || k == local.FaultKillGateway
		if peak && (at < run*41/100 || at > run*60/100) {
			t.Errorf("%s at %s: not at the peak of a %s run", k, at, run)
		}
	}
	// A stop-owner's freeze outlasts the cluster's lease.
	for _, p := range plan {
		if p.Kind == local.FaultStopOwner && time.Duration(p.For) <= local.LeaseTTLDefault {
			t.Errorf("stop-owner for %s: not past the %s lease", time.Duration(p.For), local.LeaseTTLDefault)
		}
	}
	if _, err := s.Plan(run / 3); err == nil {
		t.Error("the default schedule fits a third of its run")
	}
}

func TestParseSchedule(t *testing.T) {
	s, err := local.ParseSchedule(strings.NewReader(`{"tail": "5s", "faults": [
		{"kind": "kill-gateway", "at": "20s", "target": "gateway-1", "name": "gw"},
		{"kind": "broker-down", "at": "10%", "for": "3s"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	plan, err := s.Plan(40 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// In order of their start: 10% of 40 s is 4 s.
	if len(plan) != 2 || plan[0].Kind != local.FaultBrokerDown || plan[0].At != 4*time.Second ||
		plan[0].Expected != 3*time.Second || plan[1].Label() != "gw" || plan[1].At != 20*time.Second || plan[1].Target != "gateway-1" {
		t.Fatalf("plan %+v", plan)
	}
	// 20 s + 2 s + 5 s of tail is past a 25 s run.
	if _, err := s.Plan(25 * time.Second); err == nil || !strings.Contains(err.Error(), "ends after the run") {
		t.Fatalf("plan of a short run: %v", err)
	}
}

// Bad schedules are refused with an error that says what is wrong.
func TestParseScheduleErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{"faults": []}`, "no faults"},
		{`{"faults": [{"kind": "kill-everything", "at": "1s"}]}`, `unknown kind "kill-everything": want one of broker-down, kill-gateway`},
		{`{"faults": [{"kind": "broker-down", "at": "1s"}]}`, `broker-down needs "for"`},
		{`{"faults": [{"kind": "kill-gateway", "at": "1s", "for": "3s"}]}`, `kill-gateway takes no "for"`},
		{`{"faults": [{"kind": "stop-owner", "at": "1s", "for": "1h"}]}`, "for 1h0m0s: at most 5m0s"},
		{`{"faults": [{"kind": "kill-owner", "at": "soon"}]}`, `offset "soon": want a duration`},
		{`{"faults": [{"kind": "kill-owner", "at": "120%"}]}`, `offset "120%": want a share of the run in [0, 100)%`},
		{`{"faults": [{"kind": "kill-owner", "at": 5}]}`, `offset 5: want a string`},
		{`{"faults": [{"kind": "broker-down", "at": "1s", "for": "-3s"}]}`, `duration "-3s": negative`},
		{`{"faults": [{"kind": "kill-owner", "at": "1s", "target": "gateway-1"}]}`, `kill-owner takes no "target"`},
		{`{"faults": [{"kind": "kill-gateway", "at": "1s", "target": "ledger-1"}]}`, `target "ledger-1": want a gateway's name`},
		{`{"faults": [{"kind": "kill-owner", "at": "1s", "when": "now"}]}`, `unknown field "when"`},
		{`{"faults": [{"kind": "kill-owner", "at": "1s"}]} {}`, "more than one JSON value"},
		{`{"faults": [`, "unexpected EOF"},
	} {
		_, err := local.ParseSchedule(strings.NewReader(c.in))
		if err == nil || !errors.Is(err, local.ErrSchedule) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an ErrSchedule saying %q", c.in, err, c.want)
		}
	}
	// Two faults whose windows overlap cannot be told apart.
	s, err := local.ParseSchedule(strings.NewReader(`{"faults": [
		{"kind": "kill-owner", "at": "10s"}, {"kind": "broker-down", "at": "20s", "for": "5s"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Plan(time.Minute); err == nil || !strings.Contains(err.Error(), "kill-owner at 10s (window to about 26s) overlaps broker-down at 20s") {
		t.Fatalf("overlapping windows: %v", err)
	}
}
