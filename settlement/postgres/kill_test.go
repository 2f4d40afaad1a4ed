package postgres_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fundplatform/fund/internal/testseed"
	settlepg "github.com/fundplatform/fund/settlement/postgres"
)

// Environment of the child process TestKilledMidRun starts.
const (
	childDSN  = "FUND_SETTLE_CHILD_DSN"
	childDir  = "FUND_SETTLE_CHILD_DIR"
	childHold = "FUND_SETTLE_CHILD_HOLD" // failure point number at which the child stops and waits to be killed
	// childWaitMax bounds how long the parent waits for the child to reach
	// its point.
	childWaitMax = 2 * time.Minute
)

// TestSettleChild is the settlement run of TestKilledMidRun's child
// process; it does nothing in a normal test run. It prints each failure
// point it passes and, at the one numbered $FUND_SETTLE_CHILD_HOLD, says
// HOLD and waits there (inside a shard's open transaction for the
// ".../commit" points) for the parent's SIGKILL.
func TestSettleChild(t *testing.T) {
	dsn := os.Getenv(childDSN)
	if dsn == "" {
		t.Skip("only as TestKilledMidRun's child")
	}
	hold, err := strconv.Atoi(os.Getenv(childHold))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	store, err := settlepg.Open(ctx, settlepg.Config{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	in, cfg := crashInput(os.Getenv(childDir))
	n := 0
	points := func(name string) error {
		n++
		fmt.Printf("point %d %s\n", n, name)
		if n == hold {
			fmt.Println("HOLD")
			select {} // until killed
		}
		return nil
	}
	cfg.Failpoint, store.Failpoint = points, points
	yields, closeYields, err := settlepg.OpenYieldPublisher(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer closeYields()
	if _, err := newRunner(cfg, store, yields).Run(ctx, in, nil); err != nil {
		t.Fatal(err)
	}
}

// killRuns is how many processes TestKilledMidRun kills.
const killRuns = 4

// TestKilledMidRun kills a process running the settlement with SIGKILL at
// a random failure point (several seeds, logged; FUND_TEST_SEED replays
// one): inside a shard's open transaction, between steps, or after the
// custodian file. Its leases stay behind, as a crashed process's do. The
// run is started again and must leave exactly what an uninterrupted run
// leaves.
func TestKilledMidRun(t *testing.T) {
	if os.Getenv(childDSN) != "" {
		t.Skip("in the child")
	}
	ref, in, cfg := crashDay(t, t.TempDir())
	all := &countingPoints{}
	refSum, err := runWith(t, ref, dsnOf(t, ref), cfg, in, all)
	if err != nil {
		t.Fatal(err)
	}
	want := digest(t, ref)
	// Each run kills the child at a point of its own, from a seed of its own.
	for run := range killRuns {
		t.Run(fmt.Sprintf("run %d", run+1), func(t *testing.T) {
			seed := testseed.Seed(t)
			rng := rand.New(rand.NewPCG(seed, seed))
			hold := 1 + rng.IntN(all.n)
			dir := t.TempDir()
			store, in, cfg := crashDay(t, dir)
			dsn := dsnOf(t, store)
			ctx, cancel := context.WithTimeout(context.Background(), childWaitMax)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestSettleChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), childDSN+"="+dsn, childDir+"="+dir, childHold+"="+strconv.Itoa(hold))
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(out)
			last := ""
			for sc.Scan() {
				line := sc.Text()
				if line == "HOLD" {
					break
				}
				if strings.HasPrefix(line, "point ") {
					last = line
				}
			}
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Logf("child killed at %s (of %d points)", last, all.n)
			sum, err := runWith(t, store, dsn, cfg, in, nil)
			if err != nil {
				t.Fatalf("run after the kill: %v", err)
			}
			if got := digest(t, store); got != want {
				t.Errorf("state after the kill differs from the uninterrupted run:\n got %s\nwant %s", got, want)
			}
			if sum.FileSHA256 != refSum.FileSHA256 {
				t.Errorf("custodian file %s, uninterrupted %s", sum.FileSHA256, refSum.FileSHA256)
			}
			verifyShards(t, store, 3)
		})
	}
}
