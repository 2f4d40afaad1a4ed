package postgres_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/postgres"
)

const staleOwnerEnv = "FUND_TEST_STALE_OWNER_DSN"

// staleTTL is the lease of the child owner; it renews every third of it.
const staleTTL = time.Second

// TestHelperStaleOwner is the child process of TestStaleOwnerProcess: a
// shard owner that holds a lease, renews it, and commits a transfer every
// few milliseconds, printing "ack ID" for each acknowledged one and "err
// MESSAGE" for each refused request, until killed (at most a minute).
func TestHelperStaleOwner(t *testing.T) {
	dsn := os.Getenv(staleOwnerEnv)
	if dsn == "" {
		t.Skip("child process of TestStaleOwnerProcess")
	}
	ctx := context.Background()
	store, err := postgres.Open(ctx, postgres.Config{DSN: dsn})
	if err != nil {
		fmt.Println("err open:", err)
		return
	}
	epoch, ok, err := store.AcquireLease(ctx, 0, "child", "", staleTTL)
	if err != nil || !ok {
		fmt.Println("err acquire:", ok, err)
		return
	}
	seq := ledger.NewSequencer(ledger.SequencerConfig{Epoch: epoch}, store, nil)
	stop, err := seq.Start(ctx, 30*time.Second)
	if err != nil {
		fmt.Println("err start:", err)
		return
	}
	defer stop()
	go func() {
		for range time.Tick(staleTTL / 3) {
			_, _ = store.RenewLease(ctx, 0, "child", epoch, staleTTL)
		}
	}()
	fmt.Println("ready")
	end := time.Now().Add(time.Minute)
	for time.Now().Before(end) {
		tr := ledger.Transfer{ID: ledger.NewTransferID(), DebitAccountID: 1, CreditAccountID: 2, Amount: 1, Asset: ledger.AssetCNY}
		rs, err := seq.CreateTransfers(ctx, []ledger.Transfer{tr})
		switch {
		case err != nil:
			fmt.Println("err", err)
		case rs[0].Result == ledger.ResultOK:
			fmt.Println("ack", tr.ID)
		default:
			fmt.Println("err", rs[0].Result)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// A real owner process is paused with SIGSTOP until its lease expires;
// another owner takes the shard. Once resumed, the paused owner cannot
// commit anything: every transfer it acknowledged is in the journal once,
// and the journal does not grow after the takeover.
func TestStaleOwnerProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	store := openStoreDSN(t, dsn)
	{
		seq := startSeq(t, store, ledger.SequencerConfig{})
		if _, err := seq.CreateAccounts(ctx, []ledger.Account{{ID: 1, Asset: ledger.AssetCNY}, {ID: 2, Asset: ledger.AssetCNY}}); err != nil {
			t.Fatal(err)
		}
		if err := seq.stop(t); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperStaleOwner$", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), staleOwnerEnv+"="+dsn)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var (
		mu    sync.Mutex
		acked []ledger.TransferID
		errs  []string
	)
	lines := make(chan struct{}, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			f := strings.SplitN(sc.Text(), " ", 2)
			mu.Lock()
			switch f[0] {
			case "ack":
				id, err := ledger.ParseTransferID(f[1])
				if err == nil {
					acked = append(acked, id)
				}
			case "err":
				errs = append(errs, sc.Text())
			}
			mu.Unlock()
			select {
			case lines <- struct{}{}:
			default:
			}
		}
	}()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		end := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(end) {
				mu.Lock()
				defer mu.Unlock()
				t.Fatalf("child: %s never happened (acks %d, errors %q)", what, len(acked), errs)
			}
			select {
			case <-lines:
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	waitFor("20 acknowledged transfers", func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= 20 })

	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(staleTTL + 500*time.Millisecond)
	// The paused child may hold the shard row mid-commit; the takeover then
	// waits for that commit, which happened before it. Resume the child
	// after a while in any case so that such a commit can finish.
	resume := time.AfterFunc(3*time.Second, func() { _ = cmd.Process.Signal(syscall.SIGCONT) })
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	epoch, ok, err := store.AcquireLease(actx, 0, "parent", "", time.Minute)
	cancel()
	if err != nil || !ok {
		t.Fatalf("takeover: ok=%v err=%v", ok, err)
	}
	before := journalRows(t, store)
	resume.Stop()
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitFor("a fenced refusal after resuming", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range errs {
			if strings.Contains(e, ledger.ErrFenced.Error()) {
				return true
			}
		}
		return false
	})
	time.Sleep(300 * time.Millisecond)
	if after := journalRows(t, store); after != before {
		t.Fatalf("the stale owner wrote %d journal rows after the takeover (epoch %d)", after-before, epoch)
	}
	mu.Lock()
	ids := append([]ledger.TransferID(nil), acked...)
	mu.Unlock()
	for id, n := range journalCounts(t, store.Pool(), ids) {
		if n != 1 {
			t.Errorf("acknowledged transfer %s is in the journal %d times", id, n)
		}
	}
	if len(journalCounts(t, store.Pool(), ids)) != len(ids) {
		t.Errorf("some of the %d acknowledged transfers are missing from the journal", len(ids))
	}
	t.Logf("child acknowledged %d transfers; after the takeover it was fenced and wrote nothing", len(ids))
}

func journalRows(t *testing.T, store *postgres.Store) int64 {
	t.Helper()
	var n int64
	if err := store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM transfers`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
