package main

import (
	"context"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/ledger/postgres"
)

// childEnv makes the test binary act as fundd, so the tests run real fundd
// processes without building a second binary.
const childEnv = "FUNDD_TEST_AS_FUNDD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		ctx, stop := signalContext()
		err := run(ctx, os.Args[1:])
		stop()
		if err != nil {
			os.Stderr.WriteString("fundd: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	pgtest.Main(m)
}

func startFundd(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	// The child's log, shown when the test fails. The tail is enough and
	// keeps a chatty child from growing memory without bound.
	logs := &tailBuffer{max: 64 << 10}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("fundd %v stderr (tail):\n%s", args, logs.String())
		}
	})
	return cmd
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (w *tailBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b = append(w.b, p...)
	if over := len(w.b) - w.max; over > 0 {
		w.b = append(w.b[:0], w.b[over:]...)
	}
	return len(p), nil
}

func (w *tailBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.b)
}

// leaser is a store (one database or several) that lists the leases.
type leaser interface {
	Leases(ctx context.Context) ([]postgres.Lease, error)
}

// owners returns how many shards each owner holds with a live lease.
func owners(t *testing.T, store leaser) map[string]int {
	t.Helper()
	ls, err := store.Leases(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, l := range ls {
		if l.Owner != "" && l.ExpiresAt.After(time.Now()) {
			out[l.Owner]++
		}
	}
	return out
}

func waitOwners(t *testing.T, store leaser, want map[string]int, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got := owners(t, store)
		match := len(got) == len(want)
		for o, n := range want {
			match = match && got[o] == n
		}
		if match {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("owners %v after %s, want %v", got, within, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Two fundd ledger processes share 8 shards; one is killed with SIGKILL and
// the other owns all of them within the lease TTL (plus one renewal round);
// a clean stop releases every lease at once.
func TestLedgerProcessesFailOver(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	store, err := postgres.Open(ctx, postgres.Config{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	common := []string{"ledger", "--dsn", dsn, "--shards", "8", "--lease-ttl", "2s"}
	a := startFundd(t, append(common, "--owner", "a", "--shards-max", "4")...)
	waitOwners(t, store, map[string]int{"a": 4}, 30*time.Second)
	b := startFundd(t, append(common, "--owner", "b")...)
	waitOwners(t, store, map[string]int{"a": 4, "b": 4}, 30*time.Second)

	if err := a.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	took := waitOwners(t, store, map[string]int{"b": 8}, 5*time.Second)
	t.Logf("after kill -9 of owner a, owner b held all 8 shards in %s (lease TTL 2s)", took.Round(time.Millisecond))

	if err := b.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := b.Wait(); err != nil {
		t.Fatalf("owner b's clean stop: %v", err)
	}
	waitOwners(t, store, map[string]int{}, time.Second) // released, not merely expired
}
