package devstack_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/internal/devstack"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/settlement"
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
	// The customer's shard is the one taken (one database: its lease row
	// is in the accounts' database).
	shard := accounts.ShardOf(c.ID, st.Shards)
	pool := st.AccountsStore.Pool()
	if _, err := pool.Exec(ctx, `UPDATE ledger_shards SET epoch = epoch + 1, owner = 'settlement-test',
		lease_expires_at = now() + interval '1 hour' WHERE shard = $1`, shard); err != nil {
		t.Fatal(err)
	}
	// The host notices at its next renewal and drops the shard.
	for deadline := time.Now().Add(waitBound); ; {
		if _, ok := st.LedgerSequencerOf(shard); !ok {
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
	if _, err := pool.Exec(ctx, `UPDATE ledger_shards SET owner = '', lease_expires_at = NULL WHERE shard = $1`, shard); err != nil {
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

// The reconciliation role (what `fundd dev` runs): events counted, its
// metrics on the stack's /metrics beside the ledger's, the admin API's
// report.
func TestReconRole(t *testing.T) {
	t.Parallel()
	st := start(t, devstack.Options{Recon: &devstack.ReconOptions{LagEvery: 100 * time.Millisecond}})
	ctx := context.Background()
	c, err := st.Accounts.OpenCustomer(ctx, "open-alice", "Alice")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := st.Accounts.TopUp(ctx, c.ID, fmt.Sprintf("t%d", i), 100_00); err != nil {
			t.Fatal(err)
		}
	}
	token, err := st.Token(0, true, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	report := func() map[string]any {
		code, body := get(t, st.HTTPURL+"/v1/admin/recon/report", token)
		var out map[string]any
		if code != http.StatusOK || json.Unmarshal([]byte(body), &out) != nil {
			t.Fatalf("GET /v1/admin/recon/report: %d %s", code, body)
		}
		return out
	}
	waitFor(t, "the top-ups' events processed", func() bool {
		v, _ := strconv.Atoi(fmt.Sprint(report()["events_processed"]))
		return v >= 3 && st.Recon.Stats().Lag == 0
	})
	if rep := report(); rep["ok"] != true {
		t.Fatalf("report %v", rep)
	}
	_, page := get(t, st.HTTPURL+"/metrics", "")
	if metricValue(page, `fund_recon_events_total{result="applied"}`) < 3 || metricValue(page, `fund_recon_breaks{kind="duplicate"}`) != 0 {
		t.Fatalf("metrics of the dev stack lack reconciliation's:\n%s", page)
	}
	if metricValue(page, "fund_ledger_batches_total") < 1 || metricValue(page, `fund_ledger_shard_owned{shard="0"}`) != 1 ||
		metricValue(page, `fund_ledger_shard_owned{shard="7"}`) != 1 {
		t.Fatalf("metrics of the dev stack lack the ledger owner's:\n%s", page)
	}
}

// The settle role: a run (early, as a drill) takes the shards from the
// stack's owner and gives them back; the owner serves them again at new
// epochs and orders flow on. The admin API reads the run.
func TestSettleRole(t *testing.T) {
	t.Parallel()
	st := start(t, devstack.Options{Settle: &devstack.SettleOptions{FileDir: t.TempDir(), AllowEarly: true}})
	ctx := context.Background()
	c, err := st.Accounts.OpenCustomer(ctx, "open", "Alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Accounts.TopUp(ctx, c.ID, "t0", 1000_00); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Accounts.Subscribe(ctx, c.ID, "s0", 500_00); err != nil {
		t.Fatal(err)
	}
	seq, _ := st.LedgerSequencerOf(accounts.ShardOf(c.ID, st.Shards))
	cal := st.Accounts.Calendar()
	day := cal.ConfirmDate(cal.TradeDate(time.Now()))
	in, err := settlement.ParseInput(day.Format(time.DateOnly), "", "0.6543")
	if err != nil {
		t.Fatal(err)
	}
	sum, err := st.Settlement.Settle(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Subscriptions != 1 || sum.SubscribedShares != 500_00 {
		t.Fatalf("summary %+v", sum)
	}
	// Retried with the same request id until the owner serves the shard
	// again: once, on a new sequencer.
	for deadline := time.Now().Add(waitBound); ; {
		_, err := st.Accounts.TopUp(ctx, c.ID, "t1", 100)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("orders still fail after the settlement: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if now, _ := st.LedgerSequencerOf(accounts.ShardOf(c.ID, st.Shards)); now == seq {
		t.Fatal("the shard is served by the fenced sequencer")
	}
	h, err := st.Accounts.Holdings(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if h.AvailableCash != 501_00 || h.Shares < 500_00 {
		t.Fatalf("holdings %+v", h)
	}
	token, err := st.Token(0, true, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, st.HTTPURL+"/v1/admin/settlements/"+day.Format(time.DateOnly), token); code != http.StatusOK ||
		!strings.Contains(body, "COMPLETED") {
		t.Fatalf("GET the settlement: %d %s", code, body)
	}
}

// waitFor polls cond until it holds, for at most waitBound.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(waitBound); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, waitBound)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// get fetches url with a bearer token ("" = none).
func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// metricValue reads one series from a /metrics page; -1 when absent.
func metricValue(page, series string) float64 {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(page)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return -1
	}
	return v
}

// Eight shards on two databases: the owner serves every shard, customers
// land on several shards of both databases, and each one's orders are one
// chain on its shard, served from its database.
func TestShardsOnTwoDatabases(t *testing.T) {
	t.Parallel()
	// No DSN: the stack makes its two databases on the test server.
	st, err := devstack.Start(context.Background(), devstack.Options{Shards: 8, Databases: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = st.Stop(ctx)
	})
	if st.Shards != 8 || len(st.DSNs) != 2 || st.DSNs[0] != st.DSN {
		t.Fatalf("stack of %d shards on %v", st.Shards, st.DSNs)
	}
	smap, err := ledger.NewShardMap(st.Shards, len(st.DSNs))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	shards, dbs := map[int]bool{}, map[int]bool{}
	for i := 0; i < 24; i++ {
		c, err := st.Accounts.OpenCustomer(ctx, fmt.Sprintf("open-%d", i), fmt.Sprintf("c%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Accounts.TopUp(ctx, c.ID, "t", 100_00); err != nil {
			t.Fatalf("top-up of customer %d (shard %d): %v", c.ID, accounts.ShardOf(c.ID, st.Shards), err)
		}
		if _, err := st.Accounts.Subscribe(ctx, c.ID, "s", 40_00); err != nil {
			t.Fatalf("subscription of customer %d (shard %d): %v", c.ID, accounts.ShardOf(c.ID, st.Shards), err)
		}
		h, err := st.Accounts.Holdings(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if h.AvailableCash != 60_00 {
			t.Fatalf("customer %d: cash %s, want 60.00", c.ID, accounts.FormatAmount(h.AvailableCash))
		}
		shard := accounts.ShardOf(c.ID, st.Shards)
		shards[shard], dbs[smap.DatabaseOf(shard)] = true, true
		// The customer's row and orders are in its shard's database.
		if d := st.AccountsShards.DatabaseOf(c.ID); d != smap.DatabaseOf(shard) {
			t.Fatalf("customer %d of shard %d in accounts database %d, want %d", c.ID, shard, d, smap.DatabaseOf(shard))
		}
	}
	if len(shards) < 3 || len(dbs) != 2 {
		t.Fatalf("24 customers on shards %v, databases %v: want several shards on both", shards, dbs)
	}
	// Each shard's journal is in its own database: the lease rows say who
	// serves it, and CheckPlacement that nothing sits on the wrong one.
	problems, err := st.Owner.Databases().CheckPlacement(ctx)
	if err != nil || len(problems) > 0 {
		t.Fatalf("placement: %v %v", problems, err)
	}
	for shard := range st.Shards {
		if _, ok := st.LedgerSequencerOf(shard); !ok {
			t.Fatalf("shard %d not served", shard)
		}
	}
}

// What the stack cannot run is refused before anything starts: a DSN
// (one database) with several, a DSN and DSNs, DSNs that disagree with
// Databases, a shard map that cannot be made.
func TestOptionsRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		opts devstack.Options
		want string
	}{
		{devstack.Options{Databases: 2, DSN: "postgres://localhost/x"}, "a DSN names one database"},
		{devstack.Options{DSN: "postgres://localhost/x", DSNs: []string{"postgres://localhost/y"}}, "DSN or DSNs, not both"},
		{devstack.Options{Databases: 3, DSNs: []string{"postgres://localhost/x", "postgres://localhost/y"}}, "2 DSNs for 3 databases"},
		{devstack.Options{Shards: 2, Databases: 3}, "3 databases"},
	} {
		st, err := devstack.Start(context.Background(), tc.opts)
		if err == nil {
			_ = st.Stop(context.Background())
			t.Fatalf("%+v started", tc.opts)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.opts, err, tc.want)
		}
	}
}
