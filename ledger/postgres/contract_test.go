package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/ledgertest"
	"github.com/fundplatform/fund/ledger/postgres"
)

// TestStoreContract runs the store contract against Postgres, one fresh
// database per test. Epochs are the leases' (AcquireLease), and every test
// ends by comparing what a freshly loaded sequencer serves with the journal
// rows themselves.
func TestStoreContract(t *testing.T) {
	ledgertest.Run(t, ledgertest.Config{
		NewStore:    func(t *testing.T) ledger.Store { return openAttachingStore(t, writeTestAttachments) },
		Attachments: testAttachments,
		TakeOver: func(t *testing.T, s ledger.Store, shard int) int64 {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
			defer cancel()
			// One owner name: its own live lease never stops it from taking
			// the shard again, with a new epoch each time.
			epoch, ok, err := s.(*postgres.Store).AcquireLease(ctx, shard, "ledgertest", "", time.Hour)
			if err != nil || !ok {
				t.Fatalf("acquire lease on shard %d: ok=%v err=%v", shard, ok, err)
			}
			return epoch
		},
		Check: func(t *testing.T, s ledger.Store, seq *ledger.Sequencer) {
			checkBalancesMatchJournal(t, s.(*postgres.Store).Pool(), seq)
		},
	})
}
