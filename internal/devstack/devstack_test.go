package devstack_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/internal/devstack"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// waitBound bounds the polls below; they end as soon as the condition holds.
const waitBound = time.Minute

func start(t *testing.T, opts devstack.Options) *devstack.Stack {
	t.Helper()
	opts.DSN = pgtest.NewDatabase(t)
	st, err := devstack.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = st.Stop(ctx)
	})
	return st
}

// A settlement run takes the shard (fencing the stack's sequencer) and
// gives it back; the stack's host takes it again and orders flow, each
// applied once.
func TestShardTakenAndGivenBack(t *testing.T) {
	t.Parallel()
	st := start(t, devstack.Options{})
	ctx := context.Background()
	c, err := st.Accounts.OpenCustomer(ctx, "open", "Alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Accounts.TopUp(ctx, c.ID, "t0", 100); err != nil {
		t.Fatal(err)
	}
	pool := st.AccountsStore.Pool()
	if _, err := pool.Exec(ctx, `UPDATE ledger_shards SET epoch = epoch + 1, owner = 'settlement-test',
		lease_expires_at = now() + interval '1 hour' WHERE shard = 0`); err != nil {
		t.Fatal(err)
	}
	// The host notices at its next renewal and drops the shard.
	for deadline := time.Now().Add(waitBound); ; {
		if _, ok := st.LedgerSequencer(); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the host kept a fenced shard")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := st.Accounts.TopUp(ctx, c.ID, "t1", 100); err == nil {
		t.Fatal("an order went through while settlement held the shard")
	}
	if _, err := pool.Exec(ctx, `UPDATE ledger_shards SET owner = '', lease_expires_at = NULL WHERE shard = 0`); err != nil {
		t.Fatal(err)
	}
	// Retried with the same request id until the shard is back: once.
	for deadline := time.Now().Add(waitBound); ; {
		_, err := st.Accounts.TopUp(ctx, c.ID, "t1", 100)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("orders still fail after the shard was given back: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	h, err := st.Accounts.Holdings(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if h.AvailableCash != 200 {
		t.Fatalf("cash %s, want 2.00", accounts.FormatAmount(h.AvailableCash))
	}
}

// A worker that fails fails the stack, which says which and why.
func TestFailingWorkerFailsTheStack(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	st := start(t, devstack.Options{Workers: []devstack.Worker{{Name: "broken", Start: func(context.Context, *devstack.Stack) (devstack.Role, error) {
		return devstack.Role{Run: func(context.Context) error { return boom }}, nil
	}}}})
	select {
	case <-st.Done():
	case <-time.After(waitBound):
		t.Fatal("the stack did not notice its worker failed")
	}
	if err := st.Err(); !errors.Is(err, boom) || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("Err() = %v", err)
	}
}
