package owner

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/ledger"
)

// A settlement step borrows a shard by hand-off and gives it back: calls
// through the in-process client (the dev stack's gateway) that arrive
// while the shard is away wait for it instead of failing, and once the
// owner stops they fail at once.
func TestLocalClientWaitsOutAHandOff(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	o, err := Start(ctx, Config{DSNs: []string{dsn}, ConnsMax: 4,
		Host: ledger.HostConfig{Owner: "solo", Shards: 2, LeaseTTL: 3 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = o.Stop()
		}
	}()
	waitServed(t, o, 0)
	local := o.Local(0)
	acct := ledger.OnShard(1<<4, 0, 2)
	if rs, err := local.CreateAccounts(ctx, []ledger.Account{{ID: acct, Asset: ledger.AssetCNY, Code: 1}}); err != nil || !rs[0].Result.Applied() {
		t.Fatalf("create account: %v %v", rs, err)
	}
	var (
		calls, failed atomic.Int64
		wg            sync.WaitGroup
		done          = make(chan struct{})
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := local.LookupAccounts(cctx, []ledger.AccountID{acct})
			cancel()
			calls.Add(1)
			if err != nil {
				failed.Add(1)
				t.Errorf("lookup while the shard moved: %v", err)
			}
		}
	}()
	// The settlement's part: take shard 0 by hand-off, hold it, give it back.
	store := o.Databases().StoreOf(0)
	epoch, _, ok, err := store.HandOffLease(ctx, 0, "settle", 3*time.Second, 5*time.Second)
	if err != nil || !ok {
		t.Fatalf("hand-off to the settlement: %v %v", ok, err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, served := o.Host().Client(0); served {
		t.Fatal("the owner still serves the shard it handed off")
	}
	if err := store.ReleaseLease(ctx, 0, "settle", epoch); err != nil {
		t.Fatal(err)
	}
	waitServed(t, o, 0)
	time.Sleep(50 * time.Millisecond)
	close(done)
	wg.Wait()
	if calls.Load() == 0 || failed.Load() != 0 {
		t.Fatalf("%d calls, %d failed", calls.Load(), failed.Load())
	}
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped = true
	start := time.Now()
	if _, err := local.LookupAccounts(ctx, []ledger.AccountID{acct}); !errors.Is(err, ledger.ErrNoOwner) || time.Since(start) > time.Second {
		t.Fatalf("after stop: %v after %s, want ErrNoOwner at once", err, time.Since(start))
	}
}

func waitServed(t *testing.T, o *Owner, shard int) {
	t.Helper()
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if _, ok := o.Host().Client(shard); ok {
			return
		}
	}
	t.Fatalf("shard %d not served", shard)
}
