package ledger_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/ledgertest"
)

// hangingLeases is a LeaseStore whose renewals of one shard hang until
// their deadline, as when that shard's database stops answering.
type hangingLeases struct {
	hung         int
	epoch        atomic.Int64
	hungInFlight atomic.Int32
	mu           sync.Mutex
	overlapped   int // healthy renewals that finished while a hung one was in flight
}

func (l *hangingLeases) AcquireLease(ctx context.Context, shard int, owner, addr string, ttl time.Duration) (int64, bool, error) {
	return l.epoch.Add(1), true, nil
}

func (l *hangingLeases) RenewLease(ctx context.Context, shard int, owner string, epoch int64, ttl time.Duration) (string, error) {
	if shard == l.hung {
		l.hungInFlight.Add(1)
		defer l.hungInFlight.Add(-1)
		<-ctx.Done()
		return "", ctx.Err()
	}
	if l.hungInFlight.Load() > 0 {
		l.mu.Lock()
		l.overlapped++
		l.mu.Unlock()
	}
	return "", nil
}

func (l *hangingLeases) ReleaseLease(ctx context.Context, shard int, owner string, epoch int64) error {
	return nil
}

// A host owning shards on two databases keeps renewing the shards of the
// healthy one while every renewal on the other hangs: renewals do not wait
// for one another, so a hung database cannot make the host lose the
// leases of shards it serves from a healthy one.
func TestHostRenewalsDoNotWaitForAHungDatabase(t *testing.T) {
	leases := &hangingLeases{hung: 0}
	h := ledger.NewHost(ledger.HostConfig{Owner: "h", Shards: 2, LeaseTTL: 300 * time.Millisecond}, ledgertest.NewMemStore(), leases, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		leases.mu.Lock()
		n := leases.overlapped
		leases.mu.Unlock()
		if n >= 3 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("shard 1 was renewed only %d times while shard 0's renewal hung", n)
		}
	}
	if _, ok := h.Client(1); !ok {
		t.Fatal("shard 1 is not served")
	}
}
