package audit_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/internal/devstack"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/loadtest"
	"github.com/fundplatform/fund/loadtest/audit"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// runLoad starts every role on a fresh database, opens customers through
// the API and sends a short constant load; the stack is stopped (so every
// balance is flushed) before it returns.
func runLoad(t *testing.T) (dsn string, res *loadtest.Result, unacked loadtest.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dsn = pgtest.NewDatabase(t)
	st, err := devstack.Start(ctx, devstack.Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			if err := st.Stop(context.Background()); err != nil {
				t.Errorf("stop stack: %v", err)
			}
		}
	}
	defer stop()
	tokens, err := loadtest.NewTokens(st.JWTKey, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	customers, merchants, err := loadtest.Setup(ctx, loadtest.SetupConfig{
		Target: st.HTTPURL, AdminToken: tokens.Admin(), Tokens: tokens, Customers: 20,
		Balance: 100_000, Subscribe: 20_000, Merchants: 3, Parallelism: 4, RunID: "audit-setup",
	})
	if err != nil {
		t.Fatal(err)
	}
	const seed = 11
	t.Logf("seed %d", seed)
	res, err = loadtest.Run(ctx, loadtest.Config{
		Target: st.HTTPURL, Profile: loadtest.Constant(2*time.Second, 60), Customers: customers, Merchants: merchants,
		Tokens: tokens, Seed: seed, RunID: "lt-audit", RequestTimeout: 30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Orders.Accepted == 0 || res.Orders.Rejected == 0 {
		t.Fatalf("want both accepted and refused orders to audit: %+v", res.Orders)
	}
	// An order the client never saw answered, which did apply (as when the
	// answer is lost on the way back): allowed, counted apart.
	unacked = loadtest.Record{Op: loadtest.OpTransfer, Customer: customers[0], Counterparty: customers[1], Amount: 123,
		Key: "lt-audit-unacked", Outcome: loadtest.Failed, Code: "timeout"}
	if _, err := st.Accounts.Transfer(ctx, accounts.CustomerID(unacked.Customer), unacked.Key,
		accounts.CustomerID(unacked.Counterparty), unacked.Amount); err != nil {
		t.Fatal(err)
	}
	// Between customers on two shards it is a saga: let it end (reading
	// the order resolves it) before the stack stops, as the audit expects
	// of a quiet system.
	for i := 0; ; i++ {
		o, err := st.Accounts.OrderStatus(ctx, accounts.CustomerID(unacked.Customer), unacked.Key)
		if err != nil {
			t.Fatal(err)
		}
		if o.Status != accounts.OrderPending {
			break
		}
		if i == 300 {
			t.Fatalf("transfer %s still pending after 30 s", unacked.Key)
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	return dsn, res, unacked
}

// TestAuditCatchesPlantedLossAndDuplicate audits a real run (clean), then
// removes one acknowledged order's journal entry and copies another's, and
// audits again: both are caught, by name.
func TestAuditCatchesPlantedLossAndDuplicate(t *testing.T) {
	dsn, res, unacked := runLoad(t)
	never := loadtest.Record{Op: loadtest.OpPay, Customer: unacked.Customer, Counterparty: 1, Amount: 5,
		Key: "lt-audit-never", Outcome: loadtest.Failed, Code: "transport"}
	records := append(append([]loadtest.Record{}, res.Records...), unacked, never)
	ctx := context.Background()

	clean, err := audit.Run(ctx, audit.Config{LedgerDSN: dsn}, records)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("clean audit: %+v", *clean)
	if !clean.OK || clean.Lost != 0 || clean.Duplicated != 0 || clean.HalfApplied != 0 || clean.Wrong != 0 || !clean.LedgerVerified {
		t.Fatalf("audit of an honest run: %+v", *clean)
	}
	if !clean.OrphansChecked || clean.EntriesScanned == 0 || clean.RowsScanned == 0 {
		t.Fatalf("orphans not looked for: %+v", *clean)
	}
	if clean.ShardCount > 1 && clean.SagasCompleted == 0 {
		t.Fatalf("customers on %d shards, yet no saga among the run's transfers: %+v", clean.ShardCount, *clean)
	}
	if clean.Applied != res.Orders.Accepted || clean.UnackedApplied != 1 ||
		clean.Acknowledged != res.Orders.Accepted+res.Orders.Rejected {
		t.Fatalf("applied %d of %d accepted, %d unacknowledged applied (want 1): %+v", clean.Applied, res.Orders.Accepted,
			clean.UnackedApplied, *clean)
	}

	// Pick two accepted orders: one to lose, one to duplicate.
	var lose, dup loadtest.Record
	for _, r := range res.Records {
		if r.Outcome != loadtest.Accepted {
			continue
		}
		if lose.Key == "" {
			lose = r
		} else if dup.Key == "" && r.Op != lose.Op {
			dup = r
		}
	}
	if dup.Key == "" {
		t.Fatalf("no two accepted orders of different kinds in %d records", len(res.Records))
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// The journal refuses DELETE through triggers; a replica session does
	// not fire them, which is what a careless restore or a bug below the
	// ledger could do.
	if _, err := conn.Exec(ctx, `SET session_replication_role = replica`); err != nil {
		t.Fatal(err)
	}
	tag, err := conn.Exec(ctx, `DELETE FROM transfers WHERE id = $1::uuid`, audit.LegID(lose.Customer, lose.Key, 0).String())
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("plant loss: %v, %d rows", err, tag.RowsAffected())
	}
	tag, err = conn.Exec(ctx, `INSERT INTO transfers SELECT * FROM transfers WHERE id = $1::uuid`,
		audit.LegID(dup.Customer, dup.Key, 0).String())
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("plant duplicate: %v, %d rows", err, tag.RowsAffected())
	}

	planted, err := audit.Run(ctx, audit.Config{LedgerDSN: dsn}, records)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("audit after planting: %+v", *planted)
	if planted.OK || planted.Lost != 1 || planted.Duplicated != 1 || planted.LedgerVerified {
		t.Fatalf("planted loss and duplicate: want lost 1, duplicated 1, verify failing: %+v", *planted)
	}
	// The lost entry leaves its order row an orphan, found from the
	// databases alone.
	if planted.RowsWithoutEntry != 1 || planted.EntriesWithoutRow != 0 {
		t.Fatalf("planted loss: want 1 order row without entry: %+v", *planted)
	}
	text := strings.Join(planted.Problems, "\n")
	if !strings.Contains(text, "lost: "+string(lose.Op)+" "+lose.Key) || !strings.Contains(text, "duplicated: "+string(dup.Op)+" "+dup.Key) {
		t.Fatalf("problems do not name the planted orders %s and %s:\n%s", lose.Key, dup.Key, text)
	}
}
