package owner

import (
	"context"
	"errors"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/ledger"
	ledgergrpc "github.com/fundplatform/fund/ledger/grpc"
	"github.com/fundplatform/fund/ledger/postgres"
)

// The routing client rides out a failover within the request's deadline,
// against owner processes over one database (one shard, 2 s leases; each
// phase starts a standby owner that takes the shard when its owner's lease
// expires):
//
//   - kill -9 mid-request: the owner is stopped, a request (a linked pair
//     of transfers, as an order sends) is sent to it, then the owner is
//     killed: the request succeeds on the new owner within its deadline;
//   - a frozen owner (SIGSTOP, never killed): the request is abandoned
//     there after the attempt timeout and succeeds on the new owner once
//     the lease expires, instead of hanging until its deadline;
//   - a deadline shorter than the lease: the call gives up with
//     ErrUnreachable (the gateway's 503 SHARD_FAILING_OVER) before the
//     deadline, and nothing of the order is half-done: sent again with the
//     same ids after the move, it applies whole, once.
//
// Outcomes are asserted, not durations: each request's deadline (30 s) is
// the only bound on the moves.
func TestRequestsRideOutAFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	const leaseTTL = 2 * time.Second
	dsn := pgtest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dbs, err := postgres.OpenDatabases(ctx, postgres.DatabasesConfig{DSNs: []string{dsn}, Shards: 1, ConnsMax: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer dbs.Close()
	owner := func(name string) *exec.Cmd {
		return startOwner(t, child{DSNs: []string{dsn}, Shards: 1, LeaseTTL: leaseTTL, Owner: name})
	}
	signal := func(p *exec.Cmd, sig syscall.Signal) {
		t.Helper()
		if err := p.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
	}
	a := owner("a")
	waitOwners(t, dbs, map[string]int{"a": 1}, 30*time.Second)

	// The gateway's settings: attempts bounded, each shorter than the
	// lease, so a frozen owner is left while the deadline still holds.
	client := ledgergrpc.NewClient(ledgergrpc.ClientConfig{Shards: 1, AttemptTimeout: time.Second}, dbs)
	defer client.Close()
	const bank, user = ledger.AccountID(1 << 40), ledger.AccountID(1000)
	if rs, err := client.CreateAccounts(ctx, []ledger.Account{{ID: bank, Asset: ledger.AssetCNY, Code: 1},
		{ID: user, Asset: ledger.AssetCNY, Code: 10, Flags: ledger.DebitsMustNotExceedCredits}}); err != nil || !rs[0].Result.Applied() || !rs[1].Result.Applied() {
		t.Fatalf("accounts: %v %v", rs, err)
	}
	// order is a top-up and a subscription-like move back, linked: both
	// legs or neither.
	order := func(key string) []ledger.Transfer {
		return []ledger.Transfer{
			{ID: ledger.DeriveTransferID("test.failover", key+"/0"), DebitAccountID: bank, CreditAccountID: user,
				Amount: 100_00, Asset: ledger.AssetCNY, Kind: 1, Flags: ledger.Linked},
			{ID: ledger.DeriveTransferID("test.failover", key+"/1"), DebitAccountID: user, CreditAccountID: bank,
				Amount: 40_00, Asset: ledger.AssetCNY, Kind: 2},
		}
	}
	send := func(ts []ledger.Transfer, within time.Duration) error {
		rctx, cancel := context.WithTimeout(ctx, within)
		defer cancel()
		t0 := time.Now()
		rs, err := client.CreateTransfers(rctx, ts)
		t.Logf("order %s within %s: answered in %s, err %v", ts[0].ID, within, time.Since(t0).Round(time.Millisecond), err)
		if err != nil {
			return err
		}
		for i, r := range rs {
			if !r.Result.Applied() {
				t.Fatalf("transfer %d of %v: %s", i, ts, r.Result)
			}
		}
		return nil
	}

	// kill -9 mid-request.
	b := owner("b")
	signal(a, syscall.SIGSTOP)
	done := make(chan error, 1)
	go func() { done <- send(order("killed"), 30*time.Second) }()
	time.Sleep(200 * time.Millisecond) // let the request reach the stopped owner (it may also still be on its way: the same)
	signal(a, syscall.SIGKILL)
	if err := <-done; err != nil {
		t.Fatalf("request with its owner killed mid-request: %v", err)
	}
	waitOwners(t, dbs, map[string]int{"b": 1}, 30*time.Second)

	// A frozen owner, never killed while the request runs.
	c := owner("c")
	signal(b, syscall.SIGSTOP)
	if err := send(order("frozen"), 30*time.Second); err != nil {
		t.Fatalf("request with its owner frozen: %v", err)
	}
	waitOwners(t, dbs, map[string]int{"c": 1}, 30*time.Second)

	// A deadline too short for the move: refused before it, and not half
	// done.
	owner("d")
	signal(c, syscall.SIGSTOP)
	short := order("short")
	err = send(short, leaseTTL/2)
	if !errors.Is(err, ledgergrpc.ErrUnreachable) {
		t.Fatalf("request with a deadline shorter than the move: %v, want ErrUnreachable", err)
	}
	waitOwners(t, dbs, map[string]int{"d": 1}, 30*time.Second)
	if err := send(short, 30*time.Second); err != nil {
		t.Fatalf("the refused order sent again after the move: %v", err)
	}

	counts := journalCounts(ctx, t, dbs)
	for _, key := range []string{"killed", "frozen", "short"} {
		for _, tr := range order(key) {
			if counts[tr.ID] != 1 {
				t.Errorf("order %s: transfer %s is in the journal %d times, want once", key, tr.ID, counts[tr.ID])
			}
		}
	}
	if rep, err := dbs.Verify(ctx, 0); err != nil || !rep.OK() {
		t.Fatalf("journal and balances: %+v %v", rep, err)
	}
	as, err := client.LookupAccounts(ctx, []ledger.AccountID{user})
	if err != nil || len(as) != 1 || as[0].Balance() != 3*60_00 {
		t.Fatalf("user after three orders of 60.00 each: %+v %v", as, err)
	}
}
