package owner

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/internal/proctest"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/postgres"
)

// childEnv carries a child's settings (JSON of child): the test binary
// then acts as an owner process, so the tests run real processes (which
// they can kill with SIGKILL) without building a binary.
const childEnv = "FUND_OWNER_TEST_CHILD"

// child is what a test sets of an owner process; the rest is as `fundd
// ledger` defaults it.
type child struct {
	DSNs      []string
	Owner     string
	Shards    int
	ShardsMax int
	LeaseTTL  time.Duration
	Brokers   []string
	Topic     string
	HTTPAddr  string
}

func (c child) config() Config {
	return Config{DSNs: c.DSNs, Brokers: c.Brokers, Topic: c.Topic, HTTPAddr: c.HTTPAddr,
		XShardGroup: XShardGroupDefault, Fill: "auto",
		Host:   ledger.HostConfig{Owner: c.Owner, Shards: c.Shards, ShardsMax: c.ShardsMax, LeaseTTL: c.LeaseTTL},
		Logger: slog.New(slog.NewJSONHandler(os.Stderr, nil))}
}

func TestMain(m *testing.M) {
	if js := os.Getenv(childEnv); js != "" {
		var c child
		if err := json.Unmarshal([]byte(js), &c); err != nil {
			os.Stderr.WriteString("owner child: " + err.Error() + "\n")
			os.Exit(2)
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := Run(ctx, c.config())
		stop()
		if err != nil {
			os.Stderr.WriteString("owner: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	pgtest.Main(m)
}

// startOwner runs an owner process with c's settings.
func startOwner(t *testing.T, c child) *exec.Cmd {
	t.Helper()
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"="+string(js))
	proctest.Start(t, cmd, "owner "+c.Owner)
	return cmd
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

// Two owner processes share 8 shards; one is killed with SIGKILL and
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
	common := child{DSNs: []string{dsn}, Shards: 8, LeaseTTL: 2 * time.Second}
	ca, cb := common, common
	ca.Owner, ca.ShardsMax, cb.Owner = "a", 4, "b"
	a := startOwner(t, ca)
	waitOwners(t, store, map[string]int{"a": 4}, 30*time.Second)
	b := startOwner(t, cb)
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
