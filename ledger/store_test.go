package ledger_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/ledgertest"
)

// TestMemStoreContract runs the store contract against the in-memory store
// (which the other tests of the sequencer stand on).
func TestMemStoreContract(t *testing.T) {
	ledgertest.Run(t, ledgertest.Config{
		NewStore:    func(t *testing.T) ledger.Store { return ledgertest.NewMemStore() },
		TakeOver:    func(t *testing.T, s ledger.Store, shard int) int64 { return s.(*ledgertest.MemStore).TakeOver(shard) },
		Attachments: ledgertest.MemAttachments,
	})
}

// stallingStore fails its first commit and then makes every Load wait until
// the caller gives up, like a database that went away mid-batch.
type stallingStore struct {
	*ledgertest.MemStore
	failed  bool
	loading chan struct{} // closed when a reload is waiting
	loads   int
	mu      sync.Mutex
}

func (s *stallingStore) Commit(ctx context.Context, b *ledger.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.failed {
		s.failed = true
		return fmt.Errorf("test: connection lost")
	}
	return s.MemStore.Commit(ctx, b)
}

func (s *stallingStore) Load(ctx context.Context, shard int) (*ledger.Snapshot, error) {
	s.mu.Lock()
	s.loads++
	first := s.loads == 1
	s.mu.Unlock()
	if first {
		return s.MemStore.Load(ctx, shard)
	}
	close(s.loading)
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestStopWhileReloading: a sequencer stopped while it reloads after a
// failed commit (or whose reload fails for good) must return from Run with
// an error, not crash the process.
func TestStopWhileReloading(t *testing.T) {
	store := &stallingStore{MemStore: ledgertest.NewMemStore(), loading: make(chan struct{})}
	seq := ledger.NewSequencer(ledger.SequencerConfig{}, store, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("Run panicked: %v", p)
			}
		}()
		done <- seq.Run(ctx)
	}()
	<-seq.Ready()
	if _, err := seq.CreateAccounts(ctx, []ledger.Account{{ID: 1, Asset: ledger.AssetCNY}}); err == nil {
		t.Fatal("the first commit was meant to fail")
	}
	select {
	case <-store.loading:
	case <-time.After(10 * time.Second):
		t.Fatal("the sequencer did not reload after the failed commit")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil && strings.Contains(err.Error(), "panicked") {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
}
