package devstack_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/internal/devstack"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/settlement/recon"
)

// The defaults (8 shards on 2 databases) with the settle and recon roles,
// as `fundd dev` and the demo run them: customers on both databases
// subscribe, one pays another on the other database (the saga), a
// settlement run through the admin API confirms every subscription of
// both and pays the day's income over all of them, every shard serves
// orders again when it answers, and reconciliation, having consumed every
// event, compares the day with both journals entry by entry: 0 breaks.
func TestSettleAndReconOnTwoDatabases(t *testing.T) {
	t.Parallel()
	// No DSN: the stack makes its databases on the test server.
	st, err := devstack.Start(context.Background(), devstack.Options{
		Settle: &devstack.SettleOptions{FileDir: t.TempDir(), AllowEarly: true},
		Recon:  &devstack.ReconOptions{LagEvery: 100 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = st.Stop(ctx)
	})
	if st.Shards != devstack.ShardsDefault || len(st.DSNs) != devstack.DatabasesDefault || devstack.DatabasesDefault < 2 {
		t.Fatalf("default stack of %d shards on %d databases", st.Shards, len(st.DSNs))
	}
	ctx := context.Background()
	custs, byDB := openSubscribers(t, st, 16, 40_00)
	// A transfer between customers of the two databases: leg 1 on the
	// payer's shard, leg 2 through the saga on the payee's.
	payer, payee := byDB[0][0], byDB[1][0]
	if _, err := st.Accounts.Transfer(ctx, payer, "x1", payee, 1_00); err != nil {
		t.Fatal(err)
	}
	// The stored row itself (read from the store, which resolves nothing)
	// ends completed: the stack runs the gateway role's sweep of pending
	// transfers, so no one has to read the order for it to end.
	waitFor(t, "the cross-database transfer's row completed by the sweep", func() bool {
		o, err := st.AccountsShards.Order(ctx, payer, "x1")
		return err == nil && o.Status == accounts.OrderCompleted
	})
	if o, err := st.Accounts.OrderStatus(ctx, payer, "x1"); err != nil || o.Status != accounts.OrderCompleted {
		t.Fatalf("transfer x1: %+v, %v", o, err)
	}

	admin, err := st.Token(0, true, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cal := st.Accounts.Calendar()
	day := cal.ConfirmDate(cal.TradeDate(time.Now())).Format(time.DateOnly)
	code, body := post(t, st.HTTPURL+"/v1/admin/settlements", admin, "settle-1",
		map[string]any{"date": day, "income_per_10k": "0.6543"})
	// int64 fields are strings in protobuf's JSON.
	var run struct {
		Status      string `json:"status"`
		Income      string `json:"income"`
		TotalShares string `json:"total_shares"`
		Accounts    string `json:"accounts"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &run) != nil || run.Status != "COMPLETED" {
		t.Fatalf("POST /v1/admin/settlements: %d %s", code, body)
	}
	// Every customer's subscription on both databases was confirmed and
	// earns: the day's eligible shares and holders are all of them.
	if want := accounts.FormatAmount(int64(len(custs)) * 40_00); run.TotalShares != want || run.Accounts != strconv.Itoa(len(custs)) {
		t.Fatalf("settlement of %s holders of %s shares, want %d of %s: %s", run.Accounts, run.TotalShares, len(custs), want, body)
	}
	income, err := accounts.ParseAmount(run.Income)
	if err != nil || income <= 0 {
		t.Fatalf("income %q: %v", run.Income, err)
	}
	// The income was paid over both databases to the cent, and every
	// shard takes orders again at once (the call answered once the owner
	// served the shards the run took).
	var shares int64
	for _, c := range custs {
		if _, err := st.Accounts.TopUp(ctx, c, "after", 1_00); err != nil {
			t.Fatalf("customer %d (shard %d) after the settlement: %v", c, accounts.ShardOf(c, st.Shards), err)
		}
		h, err := st.Accounts.Holdings(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if h.Shares < 40_00 {
			t.Fatalf("customer %d: %s shares, want 40.00 and its income", c, accounts.FormatAmount(h.Shares))
		}
		shares += h.Shares
	}
	if shares != int64(len(custs))*40_00+income {
		t.Fatalf("customers hold %s shares, want %s subscribed and %s income", accounts.FormatAmount(shares),
			accounts.FormatAmount(int64(len(custs))*40_00), run.Income)
	}
	reconcileClean(t, st, admin)
}

// openSubscribers opens n customers, each topped up and subscribing
// amount, and returns them and those of each database; it fails unless
// both databases hold some.
func openSubscribers(t *testing.T, st *devstack.Stack, n int, amount int64) ([]accounts.CustomerID, map[int][]accounts.CustomerID) {
	t.Helper()
	ctx := context.Background()
	smap, err := ledger.NewShardMap(st.Shards, len(st.DSNs))
	if err != nil {
		t.Fatal(err)
	}
	var custs []accounts.CustomerID
	byDB := map[int][]accounts.CustomerID{}
	for i := 0; i < n; i++ {
		c, err := st.Accounts.OpenCustomer(ctx, fmt.Sprintf("open-%d", i), fmt.Sprintf("c%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Accounts.TopUp(ctx, c.ID, "t", 100_00); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Accounts.Subscribe(ctx, c.ID, "s", amount); err != nil {
			t.Fatal(err)
		}
		db := smap.DatabaseOf(accounts.ShardOf(c.ID, st.Shards))
		custs, byDB[db] = append(custs, c.ID), append(byDB[db], c.ID)
	}
	if len(byDB) != 2 {
		t.Fatalf("%d customers on databases %v: want both", n, byDB)
	}
	return custs, byDB
}

// reconcileClean waits until the stack's reconciliation worker has
// consumed every event (no lag, its count standing still), compares
// today with the journals of both databases entry by entry and wants no
// break, both databases' shards compared, and the admin API's report ok.
func reconcileClean(t *testing.T, st *devstack.Stack, admin string) {
	t.Helper()
	ctx := context.Background()
	last := int64(-1)
	waitFor(t, "reconciliation caught up", func() bool {
		s := st.Recon.Stats()
		seen := s.Applied + s.Redelivered + s.Conflicts
		done := s.Lag == 0 && seen == last && seen > 0
		last = seen
		time.Sleep(300 * time.Millisecond) // a lag probe or two between looks
		return done
	})
	day := ledger.BusinessDate(time.Now().UnixNano())
	rep, err := st.Recon.Compare(ctx, day, recon.CompareOptions{Deep: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Breaks) != 0 {
		t.Fatalf("reconciliation over both databases: breaks %+v", rep.Breaks)
	}
	smap, err := ledger.NewShardMap(st.Shards, len(st.DSNs))
	if err != nil {
		t.Fatal(err)
	}
	compared := map[int]bool{}
	for _, sd := range rep.Shards {
		if sd.JournalEntries > 0 {
			compared[smap.DatabaseOf(sd.Shard)] = true
		}
	}
	if len(compared) != 2 {
		t.Fatalf("compared journal entries on databases %v, want both: %+v", compared, rep.Shards)
	}
	code, body := get(t, st.HTTPURL+"/v1/admin/recon/report", admin)
	if code != http.StatusOK || !strings.Contains(body, `"ok":true`) {
		t.Fatalf("GET /v1/admin/recon/report: %d %s", code, body)
	}
}

// post sends body as JSON with a bearer token and an idempotency key.
func post(t *testing.T, url, token, key string, body any) (int, string) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(out)
}
