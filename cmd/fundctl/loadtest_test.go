package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fundplatform/fund/internal/devstack"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
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
	for _, re := range []string{`lost\s+0\n`, `duplicated\s+0\n`, `orders sent\s+[1-9]`, `ledger verify\s+true`} {
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
