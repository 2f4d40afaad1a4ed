package clienttest_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fundplatform/fund/internal/clock"
	"github.com/fundplatform/fund/internal/devstack"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// projectFiles are the Node project's files the test copies: everything
// but what npm and the build write (node_modules, dist, the generated
// types).
var projectFiles = []string{"package.json", "package-lock.json", "tsconfig.json", "src/cycle.ts"}

// stepTimeout bounds each npm command: npm ci from a warm cache takes
// seconds, a cold one well under a minute.
const stepTimeout = 5 * time.Minute

// A client generated from the served OpenAPI 3 document runs the whole
// money cycle against the dev stack on a test clock (a sandbox).
func TestGeneratedClientCycle(t *testing.T) {
	npm := nodeTools(t)
	st := startStack(t)
	token, err := st.Token(0, true, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := copyProject(t)
	env := append(os.Environ(), "FUND_API_URL="+st.HTTPURL, "FUND_TOKEN="+token,
		"FUND_RUN_ID="+fmt.Sprint(time.Now().UnixNano()), "npm_config_update_notifier=false")
	for _, args := range [][]string{
		{"ci", "--no-audit", "--no-fund", "--prefer-offline"},
		{"run", "generate"},
		{"run", "build"},
		{"run", "cycle"},
	} {
		out := npmRun(t, dir, env, npm, args...)
		t.Logf("npm %s:\n%s", strings.Join(args, " "), out)
	}
}

// nodeTools returns npm's path once node and npm are both on PATH; it
// skips the test without them, or fails it under CI, where a skip would
// hide a missing install.
func nodeTools(t *testing.T) string {
	t.Helper()
	var missing []string
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("%s not found: the generated-client test needs Node.js and npm (make nodejs installs Debian's)",
			strings.Join(missing, " and "))
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	npm, _ := exec.LookPath("npm")
	return npm
}

// sandboxStart is where the test clock starts: a Monday, before the 15:00
// cut-off (China Standard Time), as in the README's walk-through.
var sandboxStart = time.Date(2026, 11, 9, 10, 0, 0, 0, time.FixedZone("CST", 8*3600))

// startStack runs what `fundd dev --test-clock` runs (settlement on demand,
// the business time on a test clock) on a fresh database of the test's
// Postgres.
func startStack(t *testing.T) *devstack.Stack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := devstack.Start(ctx, devstack.Options{DSN: pgtest.NewDatabase(t), Clock: clock.NewTest(sandboxStart),
		Settle: &devstack.SettleOptions{FileDir: t.TempDir()}})
	if err != nil {
		t.Fatalf("devstack: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := st.Stop(ctx); err != nil {
			t.Errorf("stop the dev stack: %v", err)
		}
	})
	return st
}

// copyProject copies the Node project to a temporary directory, so that
// the test writes nothing into the source tree and runs in parallel with
// a developer's own build.
func copyProject(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range projectFiles {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func npmRun(t *testing.T, dir string, env []string, npm string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, args...)
	cmd.Dir, cmd.Env = dir, env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("npm %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}
