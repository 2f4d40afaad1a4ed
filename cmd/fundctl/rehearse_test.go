package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fundplatform/fund/deploy/local"
	"github.com/fundplatform/fund/loadtest"
)

// judgeFaults turns each fault into a marker and a judged window, and a
// fault that could not be injected fails its window whatever the orders
// did; faultsVerdict names every window outside the bounds.
func TestJudgeFaults(t *testing.T) {
	start := time.Date(2026, 11, 10, 23, 59, 0, 0, time.UTC)
	res := &loadtest.Result{StartedAt: start}
	for s := range 40 {
		for i := range 100 {
			due := start.Add(time.Duration(s)*time.Second + time.Duration(i)*10*time.Millisecond)
			o, code := loadtest.Accepted, "200"
			if s == 5 && i < 3 {
				o, code = loadtest.Failed, "503"
			}
			res.Records = append(res.Records, loadtest.Record{Outcome: o, Code: code, Due: due, Ended: due.Add(20 * time.Millisecond)})
		}
	}
	events := []local.FaultEvent{
		{Name: "kill-gateway", Detail: "kill -9 of gateway-0", Start: start.Add(4 * time.Second), End: start.Add(6 * time.Second)},
		{Name: "broker-down", Start: start.Add(20 * time.Second), End: start.Add(23 * time.Second)},
		{Name: "kill-settle", Start: start.Add(30 * time.Second), End: start.Add(30 * time.Second), Err: "nothing killed"},
	}
	judgeFaults(res, events, 5*time.Second)
	if len(res.Markers) != 3 || res.Markers[0].StartS != 4 || res.Markers[0].EndS != 6 || res.Markers[2].Detail != "FAILED: nothing killed" {
		t.Fatalf("markers %+v", res.Markers)
	}
	w := res.Windows
	if w[0].Errors != 3 || w[0].Pass || w[0].RecoveryS != 2 || !w[1].Pass || w[2].Pass || w[2].Why != "not injected as planned" {
		t.Fatalf("windows %+v", w)
	}
	err := faultsVerdict(res)
	if err == nil || !strings.Contains(err.Error(), "2 of 3 faults outside the bounds") ||
		!strings.Contains(err.Error(), "kill-gateway (errors above the bound: 3 of 703 orders") {
		t.Fatalf("verdict %v", err)
	}
}

// TestRehearseCommand runs `fundctl rehearse` end to end on a short
// schedule of two cheap faults (the broker away for 3 s, a gateway killed)
// under a few seconds of load: the cluster starts, the setup confirms its
// shares on the test clock, the faults are injected at their offsets, the
// audit (with reconciliation of every business date) passes, and the
// report has both faults on its charts and in its table. Whether each
// window kept the bounds is the rehearsal's verdict, not this test's: a
// verdict outside them is logged with its figures, any other failure fails.
func TestRehearseCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds fundd and starts a cluster of processes")
	}
	dir := t.TempDir()
	faults := filepath.Join(dir, "faults.json")
	if err := os.WriteFile(faults, []byte(`{"tail": "5s", "faults": [
		{"kind": "broker-down", "at": "3s", "for": "3s"},
		{"kind": "kill-gateway", "at": "13s", "target": "gateway-1"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "rehearsal")
	text, err := fundctl(t, "rehearse", "--faults", faults, "--rate", "40", "--duration", "25s", "--customers", "40",
		"--merchants", "5", "--seed", "16", "--out", out)
	t.Log(text)
	if err != nil && !strings.Contains(err.Error(), "faults outside the bounds") {
		t.Fatal(err)
	} else if err != nil {
		t.Logf("the rehearsal's verdict: %v", err)
	}
	for _, re := range []string{`lost\s+0\n`, `duplicated\s+0\n`, `half-applied\s+0 `, `reconciliation\s+0 breaks`,
		`broker-down\s+3\.\d-`, `kill-gateway\s+1\d\.\d-`, `fault kill-gateway\s+kill -9 of gateway-1 \(pid \d+\); restarted as pid \d+ and ready`,
		`supervisor restarts: map\[gateway-1:1\]`} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Errorf("output lacks %q", re)
		}
	}
	page, err := os.ReadFile(filepath.Join(out, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(page), `class="fault-band"`); n != 6 {
		t.Errorf("%d fault bands in the report, want 2 on each of 3 charts", n)
	}
	var res loadtest.Result
	b, err := os.ReadFile(filepath.Join(out, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Windows) != 2 || res.Windows[0].Sent == 0 || !res.Windows[1].Judged || res.Audit == nil || !res.Audit.ReconRan {
		t.Fatalf("report.json: windows %+v, audit %+v", res.Windows, res.Audit)
	}
	if _, err := os.Stat(filepath.Join(out, "cluster", "gateway-1.log")); err != nil {
		t.Errorf("the cluster's logs are not kept: %v", err)
	}
}
