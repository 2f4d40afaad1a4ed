package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/internal/testseed"
	"github.com/fundplatform/fund/settlement"
	settlepg "github.com/fundplatform/fund/settlement/postgres"
	"github.com/fundplatform/fund/settlement/settlebench"
)

// crashDay is the seeded day the crash tests settle: 3 shards, so orders
// and income cross shard boundaries, some pending redemptions held (their
// shares stop earning), a losing day so deductions are taken.
func crashDay(t *testing.T, dir string) (*settlepg.Store, settlement.Input, settlement.Config) {
	t.Helper()
	ctx := context.Background()
	store, err := settlepg.Open(ctx, settlepg.Config{DSN: pgtest.NewDatabase(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	date := day("2026-11-18")
	if _, err := settlebench.Seed(ctx, store.Pool(), store.Ledger(), settlebench.SeedConfig{Customers: 700, Shards: 3,
		Date: date, SubscribeEvery: 7, RedeemEvery: 11, LateRedeemEvery: 13, Salt: 7}); err != nil {
		t.Fatal(err)
	}
	in, cfg := crashInput(dir)
	return store, in, cfg
}

// crashInput is the run of the crash day: a losing day, -50.0000 per
// 10,000 shares: the customers who redeemed all their shares on the day
// still earn (and lose) on it, but can give up nothing, so the fund
// absorbs their deductions. One shard at a time, so that a seed names the
// same failure point on every replay.
func crashInput(dir string) (settlement.Input, settlement.Config) {
	in := settlement.Input{Date: day("2026-11-18"), PerTenK: true, IncomePer10k: -50_0000}
	cfg := settlement.Config{Shards: 3, Parallel: 1, FileDir: dir, Owner: "crash-test", TakeShards: true,
		Now: func() time.Time { return cst("2026-11-19 01:00:00") }}
	return in, cfg
}

// countingPoints counts failure points and fails at the k-th (k = 0:
// never), as a crash there would.
type countingPoints struct {
	mu    sync.Mutex
	n, k  int
	names []string
}

func (c *countingPoints) hit(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	c.names = append(c.names, name)
	if c.k != 0 && c.n == c.k {
		return settlement.ErrInjected
	}
	return nil
}

func runWith(t *testing.T, store *settlepg.Store, dsn string, cfg settlement.Config, in settlement.Input,
	points *countingPoints) (settlement.Summary, error) {
	t.Helper()
	ctx := context.Background()
	yields, closeYields, err := settlepg.OpenYieldPublisher(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer closeYields()
	if points != nil {
		cfg.Failpoint = points.hit
		store.Failpoint = points.hit
		defer func() { store.Failpoint = nil }()
	}
	return newRunner(cfg, store, yields).Run(ctx, in, nil)
}

func newRunner(cfg settlement.Config, store *settlepg.Store, yields settlement.YieldPublisher) *settlement.Runner {
	return settlement.NewRunner(cfg, store, yields, nil, nil)
}

// crashRuns is how many crash sequences TestCrashAnywhereThenResume tries.
const crashRuns = 5

// TestCrashAnywhereThenResume kills the run at random failure points
// (several seeds, logged; FUND_TEST_SEED replays one), runs it again,
// possibly crashing again, until it finishes, and compares everything it
// wrote with an uninterrupted run of the same day on a twin database:
// journal, idempotency records, balances, pending states, customer income,
// yields, orders, the custodian file. Nothing is paid twice.
func TestCrashAnywhereThenResume(t *testing.T) {
	refDir := t.TempDir()
	ref, in, cfg := crashDay(t, refDir)
	all := &countingPoints{}
	refSum, err := runWith(t, ref, dsnOf(t, ref), cfg, in, all)
	if err != nil {
		t.Fatal(err)
	}
	if refSum.Absorbed == 0 || refSum.IncomeDeducted == 0 || refSum.Redemptions == 0 || refSum.Subscriptions == 0 {
		t.Fatalf("the day should exercise deductions, absorption, confirmations and payouts: %+v", refSum)
	}
	want := digest(t, ref)
	wantFile := readFile(t, refSum.File)
	t.Logf("uninterrupted run: %d failure points: %s", all.n, strings.Join(all.names, " "))

	// Each run crashes the day its own way, from a seed of its own.
	for run := range crashRuns {
		t.Run(fmt.Sprintf("run %d", run+1), func(t *testing.T) {
			seed := testseed.Seed(t)
			rng := rand.New(rand.NewPCG(seed, seed^0x9E3779B97F4A7C15))
			dir := t.TempDir()
			store, in, cfg := crashDay(t, dir)
			dsn := dsnOf(t, store)
			crashes := 1 + rng.IntN(3)
			for i := 0; i < crashes; i++ {
				p := &countingPoints{k: 1 + rng.IntN(all.n)}
				_, err := runWith(t, store, dsn, cfg, in, p)
				if err == nil {
					t.Logf("attempt %d finished before failure point %d", i+1, p.k)
					break
				}
				if !errors.Is(err, settlement.ErrInjected) {
					t.Fatalf("attempt %d: %v", i+1, err)
				}
				t.Logf("attempt %d crashed at point %d (%s)", i+1, p.k, p.names[len(p.names)-1])
			}
			sum, err := runWith(t, store, dsn, cfg, in, nil)
			if err != nil {
				t.Fatalf("final run: %v", err)
			}
			if got := digest(t, store); got != want {
				t.Errorf("state after crashes differs from the uninterrupted run:\n got %s\nwant %s", got, want)
			}
			if sum.FileSHA256 != refSum.FileSHA256 || readFile(t, sum.File) != wantFile {
				t.Errorf("custodian file differs: %s vs %s", sum.FileSHA256, refSum.FileSHA256)
			}
			verifyShards(t, store, 3)
		})
	}
}

func dsnOf(t *testing.T, s *settlepg.Store) string {
	t.Helper()
	return s.Pool().Config().ConnString()
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(string(b), filepath.Dir(name))
}

// digest summarises what a run leaves behind, without the times (ledger
// timestamps, balance_ts, epochs) that differ between two databases.
func digest(t *testing.T, s *settlepg.Store) string {
	t.Helper()
	queries := []string{
		`SELECT count(*) || ':' || md5(string_agg(concat_ws(',', id, shard, debit_account_id, credit_account_id, amount,
			pending_amount, asset, kind, flags, pending_id, user_data), ';' ORDER BY id)) FROM transfers`,
		`SELECT count(*) || ':' || md5(string_agg(concat_ws(',', id, shard, fingerprint), ';' ORDER BY id)) FROM transfer_ids`,
		`SELECT md5(string_agg(concat_ws(',', id, shard, asset, code, flags, closed, debits_pending, debits_posted,
			credits_pending, credits_posted), ';' ORDER BY id)) FROM accounts`,
		`SELECT md5(string_agg(concat_ws(',', id, state), ';' ORDER BY id)) FROM pending_transfers`,
		`SELECT count(*) || ':' || md5(string_agg(concat_ws(',', customer_id, date, amount), ';' ORDER BY customer_id, date)) FROM customer_income`,
		`SELECT md5(string_agg(concat_ws(',', date, income_per_10k, seven_day_yield), ';' ORDER BY date)) FROM fund_yields`,
		`SELECT md5(string_agg(concat_ws(',', customer_id, request_id, status), ';' ORDER BY customer_id, request_id)) FROM orders`,
		`SELECT md5(string_agg(concat_ws(',', date, customer_id, request_id, kind, amount), ';' ORDER BY customer_id, request_id)) FROM settlement_movements`,
		`SELECT md5(string_agg(concat_ws(',', shard, step, entries, amount, count, detail), ';' ORDER BY shard, step)) FROM settlement_steps`,
		`SELECT coalesce(sum(events), 0)::text FROM ledger_outbox`,
	}
	var parts []string
	for _, q := range queries {
		var v *string
		if err := s.Pool().QueryRow(context.Background(), q).Scan(&v); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if v == nil {
			parts = append(parts, "-")
		} else {
			parts = append(parts, *v)
		}
	}
	return strings.Join(parts, " ")
}

func verifyShards(t *testing.T, s *settlepg.Store, shards int) {
	t.Helper()
	for sh := 0; sh < shards; sh++ {
		rep, err := s.Ledger().Verify(context.Background(), sh)
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK() {
			t.Fatalf("shard %d: %d differences %+v, problems %q", sh, len(rep.Differences), rep.Differences, rep.Problems)
		}
	}
}
