package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fundplatform/fund/internal/clock"
	"github.com/fundplatform/fund/internal/devstack"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/loadtest"
)

// TestLoadtestCommand drives a running stack with `fundctl loadtest` from a
// profile file, audits it and checks the summary and the report files.
func TestLoadtestCommand(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	st, err := devstack.Start(context.Background(), devstack.Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Stop(context.Background())
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	prof := filepath.Join(dir, "night.csv")
	if err := os.WriteFile(keyFile, st.JWTKey, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(prof, []byte("seconds,rps\n0,10\n1,40\n2,10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "report")
	text, err := fundctl(t, "loadtest", "--target", st.HTTPURL, "--profile", prof, "--customers", "15",
		"--jwt-key-file", keyFile, "--audit", "--dsn", dsn, "--out", out, "--recon-wait", "0", "--seed", "5")
	t.Log(text)
	if err != nil {
		t.Fatal(err)
	}
	// On the wall clock the setup's shares stay pending: the run says so.
	for _, re := range []string{`lost\s+0\n`, `duplicated\s+0\n`, `orders sent\s+[1-9]`, `ledger verify\s+true`,
		`wall clock: the setup's subscriptions stay unconfirmed`} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Fatalf("summary lacks %q", re)
		}
	}
	for _, f := range []string{"report.html", "report.json", "rate.png", "latency.png", "errors.png", "distribution.png"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Fatal(err)
		}
	}
	// Only loopback targets without --allow-remote.
	if _, err := fundctl(t, "loadtest", "--target", "http://192.0.2.1:80", "--jwt-key-file", keyFile); err == nil ||
		!strings.Contains(err.Error(), "loopback") {
		t.Fatalf("remote target: %v", err)
	}
}

// TestLoadtestOnTestClock runs the default mix against a sandbox with a
// test clock: the setup confirms its shares (the clock moved past the
// confirm date, the dates between settled, holdings checked), and then
// every operation has accepted orders and at most 2 % of the orders are
// refused by a business rule; the audit finds every order once.
func TestLoadtestOnTestClock(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	start := time.Date(2026, 11, 9, 10, 0, 0, 0, time.FixedZone("CST", 8*3600))
	st, err := devstack.Start(context.Background(), devstack.Options{DSN: dsn, Clock: clock.NewTest(start),
		Settle: &devstack.SettleOptions{FileDir: t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Stop(context.Background())
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, st.JWTKey, 0o600); err != nil {
		t.Fatal(err)
	}
	text, err := fundctl(t, "loadtest", "--target", st.HTTPURL, "--profile", "constant", "--duration", "4s",
		"--peak-rps", "60", "--customers", "40", "--merchants", "5", "--jwt-key-file", keyFile, "--audit", "--dsn", dsn,
		"--out", filepath.Join(dir, "report"), "--recon-wait", "0", "--seed", "16")
	t.Log(text)
	if err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{`shares confirmed: settled 2026-11-09, 2026-11-10 on the test clock, now 2026-11-10T15:30:00\+08:00; 3 customers' holdings checked`,
		`lost\s+0\n`, `duplicated\s+0\n`, `poisson arrivals, seed 16`} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Fatalf("output lacks %q", re)
		}
	}
	m := regexp.MustCompile(`rejected by a business rule (\d+) = ([\d.]+)% of those sent`).FindStringSubmatch(text)
	if m == nil {
		t.Fatal("no refusal count")
	}
	if pct, _ := strconv.ParseFloat(m[2], 64); pct > 2 {
		t.Fatalf("%s%% refused by a business rule, want at most 2%%", m[2])
	}
	for _, op := range loadtest.Ops {
		row := regexp.MustCompile(`\s` + string(op) + `\s+(\d+)\s+(\d+)`).FindStringSubmatch(text)
		if row == nil || row[2] == "0" {
			t.Fatalf("operation %s: no accepted orders (%v)", op, row)
		}
	}
}

// TestDemoSmall runs `fundctl demo` end to end at a small scale: stack up,
// customers (each subscribing during setup), settlement of the day those
// are confirmed, a Double-11 profile, settlement of the next day (the
// night's orders), reconciliation, audit, report, stack down.
func TestDemoSmall(t *testing.T) {
	out := filepath.Join(t.TempDir(), "demo")
	text, err := fundctl(t, "demo", "--customers", "40", "--duration", "4s", "--peak-rps", "40", "--out", out,
		"--subscribe", "100.00")
	t.Log(text)
	if err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{`lost\s+0\n`, `duplicated\s+0\n`, `report\s+\S+report\.html`, `\] done in`,
		`settlement\s+\S+: 40 customers' subscriptions confirmed`, `settlement\s+\S+: \d+ customers' subscriptions confirmed`,
		`settled once\s+\d+`, `reconciliation\s+0 breaks \(\d+ events consumed`} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Fatalf("demo output lacks %q", re)
		}
	}
}
