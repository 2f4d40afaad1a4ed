package local_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fundplatform/fund/deploy/local"
	"github.com/fundplatform/fund/internal/localpg"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/internal/pgmigrate"
	"github.com/fundplatform/fund/loadtest"
	"github.com/fundplatform/fund/loadtest/audit"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// The cluster (three `fundd ledger` owners, two `fundd gateway`
// processes behind the round-robin front, one Postgres with an accounts and
// a ledger database, the broker process) serves the demo's load (the
// load generator's setup and an open-loop run of every order kind through
// the front), and survives the owner of the shard being killed with
// SIGKILL in the middle of it: the supervisor restarts it under its name
// and it takes its shard back at once (or another owner takes it after the
// lease TTL), the load goes on, and the audit finds every acknowledged
// order in the books exactly once, nothing half-applied, and the journal
// agreeing with the balances. Then, under light load, fundd settle is
// killed (the supervisor restarts it) and the broker process is made
// unreachable for 4 s: the relays publish everything afterwards and the
// reconciliation worker catches up (rideOutSettleKillAndBrokerOutage).
//
// It runs on the shared test clock, as a rehearsal does: the setup and
// the load happen on Monday 2026-11-09 at 10:00 by every process's clock,
// and afterwards one gateway moves the clock a day on; the other gateway
// shows the move, and fundd settle settles the setup day right after it
// (see rehearseSetupDay).
func TestClusterServesLoadAndSurvivesOwnerKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds fundd and starts processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c, err := local.Start(ctx, local.Config{Dir: t.TempDir(), Logger: logger, TestClock: true, TestClockStart: setupDay})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		stopped := time.Now()
		// A process that does not stop within its grace period is killed
		// and its goroutine dump kept in its log. That is a finding about
		// fundd's shutdown (leases are released or expire either way), not
		// about the cluster surviving a crash, so it is logged, not failed.
		if err := c.Stop(context.Background()); errors.Is(err, local.ErrStopTimeout) {
			t.Logf("stop took %s: %v", time.Since(stopped).Round(time.Millisecond), err)
			for _, p := range c.Owners {
				if b, _ := os.ReadFile(p.LogPath); bytes.Contains(b, []byte("SIGQUIT")) {
					t.Logf("%s's goroutine dump, the frames of this module and kafka-go:\n%s", p.Name, frames(b))
				}
			}
		} else if err != nil {
			t.Errorf("stop: %v", err)
		}
		if t.Failed() {
			for _, p := range append(append(c.Owners, c.Gateways...), c.Recon, c.Settle, c.Broker) {
				t.Logf("%s log, tail:\n%s", p.Name, lastBytes([]byte(readLog(p)), 3000))
			}
		}
	}()
	if len(c.Owners) != 3 || len(c.Gateways) != 2 {
		t.Fatalf("%d owners, %d gateways; want 3 and 2", len(c.Owners), len(c.Gateways))
	}

	tokens, err := loadtest.NewTokens(c.JWTKey, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	customers, merchants, err := loadtest.Setup(ctx, loadtest.SetupConfig{
		Target: c.URL, AdminToken: tokens.Admin(), Tokens: tokens, Customers: 40, Balance: 100_000,
		Subscribe: 20_000, Merchants: 5, Parallelism: 8, RunID: "clusters",
	})
	if err != nil {
		t.Fatal(err)
	}

	before, err := c.OwnerOf(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	epochBefore := shardEpoch(ctx, t, c, 0)
	// The load runs 16 s at 40 orders/s; the owner dies 5 s in, so the
	// lease TTL (5 s) and the takeover fall inside the run.
	var (
		res    *loadtest.Result
		runErr error
		wg     sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		res, runErr = loadtest.Run(ctx, loadtest.Config{
			Target: c.URL, Profile: loadtest.Constant(16*time.Second, 40), Mix: loadtest.DefaultMix(),
			Customers: customers, Merchants: merchants, Tokens: tokens, Seed: 11, RunID: "clusterr",
			RequestTimeout: 10 * time.Second,
		})
	}()
	select {
	case <-time.After(5 * time.Second):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	killed := time.Now()
	if err := before.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitOwned(ctx); err != nil {
		t.Fatal(err)
	}
	after, err := c.OwnerOf(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The supervisor restarts the killed owner under its name, which may
	// take its shard back at once (its own lease); either way the shard
	// has a new epoch held by a running process.
	if epoch := shardEpoch(ctx, t, c, 0); epoch <= epochBefore {
		t.Fatalf("shard 0 still at epoch %d of the killed %s", epoch, before.Name)
	}
	t.Logf("kill -9 of %s: shard 0 owned by %s %s later (lease TTL %s); restarts %v", before.Name, after.Name,
		time.Since(killed).Round(10*time.Millisecond), c.LeaseTTL, c.Restarts())
	wg.Wait()
	if runErr != nil {
		t.Fatal(runErr)
	}
	o := res.Orders
	t.Logf("orders: sent %d, accepted %d, rejected %d, shed %d, failed %d, dropped %d; front served %v",
		o.Sent, o.Accepted, o.Rejected, o.Shed, o.Failed, o.Dropped, c.Front.Served())
	if o.Accepted == 0 {
		t.Fatal("no order was accepted")
	}
	for i, n := range c.Front.Served() {
		if n == 0 {
			t.Errorf("gateway-%d was sent nothing by the front", i)
		}
	}

	// The reconciliation worker consumed the ledger's events (published by
	// the owners' relays), and the settlement scheduler is still running.
	waitFor(t, func() bool { return metricSum(t, c.Recon, "fund_recon_events_total") > 0 })
	t.Logf("recon consumed %.0f events", metricSum(t, c.Recon, "fund_recon_events_total"))
	if !c.Settle.Running() {
		t.Errorf("fundd settle exited; log:\n%s", readLog(c.Settle))
	}

	a, err := audit.Run(ctx, audit.Config{LedgerDSNs: c.LedgerDSNs, AccountsDSN: c.AccountsDSN, Shards: c.Shards}, res.Records)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("audit: checked %d, acknowledged %d, applied %d, lost %d, duplicated %d, half-applied %d, wrong %d, unacknowledged but applied %d, ledger verified %v",
		a.Checked, a.Acknowledged, a.Applied, a.Lost, a.Duplicated, a.HalfApplied, a.Wrong, a.UnackedApplied, a.LedgerVerified)
	if !a.OK {
		t.Fatalf("audit failed: %v", a.Problems)
	}
	waitFor(t, func() bool { return c.Restarts()[before.Name] >= 1 && before.Running() })
	rideOutSettleKillAndBrokerOutage(ctx, t, c, tokens, customers, merchants)
	// The restarted fundd settle settles the setup day.
	rehearseSetupDay(ctx, t, c, tokens.Admin())
	checkServiceRole(ctx, t, c)
}

// shardEpoch returns the fencing epoch of shard's lease.
func shardEpoch(ctx context.Context, t *testing.T, c *local.Cluster, shard int) int64 {
	t.Helper()
	owners, err := c.ShardOwners(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range owners {
		if o.Shard == shard {
			return o.Epoch
		}
	}
	t.Fatalf("shard %d has no lease row", shard)
	return 0
}

// rideOutSettleKillAndBrokerOutage runs light load (10 s at 20 orders/s)
// through two faults: fundd settle is killed with SIGKILL 1 s in, and the
// supervisor restarts it while orders go on; the broker is unreachable
// from 3 s to 7 s (its data kept). Afterwards the orders pass the audit,
// the owners' relays have published every event (the outboxes are empty)
// and the reconciliation worker consumed them (its lag is zero and it
// counted events after the outage).
func rideOutSettleKillAndBrokerOutage(ctx context.Context, t *testing.T, c *local.Cluster, tokens *loadtest.Tokens,
	customers, merchants []int64) {
	t.Helper()
	eventsBefore := metricSum(t, c.Recon, "fund_recon_events_total")
	settleRestarts := c.Restarts()["settle"]
	var (
		res    *loadtest.Result
		runErr error
		wg     sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		res, runErr = loadtest.Run(ctx, loadtest.Config{
			Target: c.URL, Profile: loadtest.Constant(10*time.Second, 20), Mix: loadtest.DefaultMix(),
			Customers: customers, Merchants: merchants, Tokens: tokens, Seed: 12, RunID: "clusterf",
			RequestTimeout: 10 * time.Second,
		})
	}()
	time.Sleep(time.Second)
	pid := c.Settle.Pid()
	if err := c.Settle.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	outage := time.Now()
	if err := c.BrokerDown(ctx, 4*time.Second); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if runErr != nil {
		t.Fatal(runErr)
	}
	waitFor(t, func() bool { return c.Restarts()["settle"] > settleRestarts && c.Settle.Running() })
	if c.Settle.Pid() == pid {
		t.Fatalf("fundd settle still pid %d after kill -9", pid)
	}
	o := res.Orders
	t.Logf("kill -9 of fundd settle (restarted as pid %d), broker down 4 s: sent %d, accepted %d, rejected %d, shed %d, failed %d, dropped %d; restarts %v",
		c.Settle.Pid(), o.Sent, o.Accepted, o.Rejected, o.Shed, o.Failed, o.Dropped, c.Restarts())
	if o.Accepted == 0 {
		t.Fatal("no order was accepted while settle restarted and the broker was away")
	}
	a, err := audit.Run(ctx, audit.Config{LedgerDSNs: c.LedgerDSNs, AccountsDSN: c.AccountsDSN, Shards: c.Shards}, res.Records)
	if err != nil {
		t.Fatal(err)
	}
	if !a.OK {
		t.Fatalf("audit of the run through the broker outage failed: %v", a.Problems)
	}

	conn, err := pgx.Connect(ctx, c.LedgerDSNs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	waitFor(t, func() bool {
		var n int64
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM ledger_outbox`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
	drained := time.Since(outage)
	waitFor(t, func() bool {
		return metricSum(t, c.Recon, "fund_recon_events_total") > eventsBefore &&
			metricSum(t, c.Recon, "fund_recon_consumer_lag_messages") == 0
	})
	t.Logf("outbox empty %s after the outage began; recon consumed %.0f events since, lag 0 after %s",
		drained.Round(10*time.Millisecond), metricSum(t, c.Recon, "fund_recon_events_total")-eventsBefore,
		time.Since(outage).Round(10*time.Millisecond))
}

// setupDay is where the cluster's test clock starts: Monday 10:00 in China
// Standard Time, before the day's cut-off (weeks before the wall clock,
// which a process on the wall clock would take for long settleable).
var setupDay = time.Date(2026, 11, 9, 10, 0, 0, 0, time.FixedZone("CST", 8*3600))

// rehearseSetupDay: every process of the cluster reads the shared test
// clock. With the setup day's income in place, fundd settle leaves the day
// alone while the clock stands in it (on the wall clock it would be long
// due); gateway-0 moves the clock a day on (the same move retried through
// gateway-1 moves it once), gateway-1 shows the new time, and the settle
// role settles the setup day within a few of its one-second ticks.
func rehearseSetupDay(ctx context.Context, t *testing.T, c *local.Cluster, admin string) {
	t.Helper()
	day := setupDay.Format(time.DateOnly)
	if err := os.WriteFile(filepath.Join(c.IncomeDir, day), []byte("income_per_10k=0.6500\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, c.AccountsDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	settled := func() (bool, error) {
		var done bool
		err := conn.QueryRow(ctx, `SELECT completed FROM settlement_runs WHERE date = $1`, day).Scan(&done)
		if errors.Is(err, pgx.ErrNoRows) {
			return false, nil
		}
		return done, err
	}
	time.Sleep(3 * time.Second) // three ticks of fundd settle
	if done, err := settled(); err != nil || done {
		t.Fatalf("%s settled (%v, %v) while the test clock stands in it", day, done, err)
	}

	gw0, gw1 := "http://"+c.Gateways[0].HTTPAddr, "http://"+c.Gateways[1].HTTPAddr
	want := setupDay.AddDate(0, 0, 1).Format(time.RFC3339) // Tuesday 10:00, past Monday's end
	for _, gw := range []string{gw0, gw1} {
		var got map[string]any
		adminCall(ctx, t, gw, "POST", "/v1/admin/clock:advance", admin, `{"by":"24h"}`, "rehearsal-next-day", &got)
		if got["now"] != want {
			t.Fatalf("advance by 24h through %s: %v; want now %s", gw, got, want)
		}
	}
	moved := time.Now()
	var got map[string]any
	adminCall(ctx, t, gw1, "GET", "/v1/admin/clock", admin, "", "", &got)
	if got["now"] != want || got["test_clock"] != true || got["settleable_through"] != day {
		t.Fatalf("gateway-1's clock after gateway-0's move: %v; want now %s, settleable through %s", got, want, day)
	}
	deadline := moved.Add(60 * time.Second)
	for {
		done, err := settled()
		if err != nil {
			t.Fatal(err)
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not settled 60 s after the clock was moved past it; settle log:\n%s", day, lastBytes([]byte(readLog(c.Settle)), 3000))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("fundd settle settled %s %s after the clock moved", day, time.Since(moved).Round(10*time.Millisecond))
}

// adminCall sends an admin request to a gateway and decodes its 200 answer
// into out.
func adminCall(ctx context.Context, t *testing.T, base, method, path, token, body, key string, out any) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
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
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s%s: %d %s", method, base, path, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("%s %s: %v: %s", method, path, err, b)
	}
}

// checkServiceRole: the cluster's processes ran as the service role, which
// may not rewrite the journal, and the journal's partitions (created at
// run time by the owners) belong to the owner role.
func checkServiceRole(ctx context.Context, t *testing.T, c *local.Cluster) {
	t.Helper()
	conn, err := pgx.Connect(ctx, c.LedgerDSNs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var user string
	var owners []string
	if err := conn.QueryRow(ctx, `SELECT current_user, (SELECT array_agg(DISTINCT pg_get_userbyid(c.relowner))
		FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'transfers'::regclass)`).
		Scan(&user, &owners); err != nil {
		t.Fatal(err)
	}
	if user != c.ServiceRole || len(owners) != 1 || owners[0] != localpg.OwnerRole {
		t.Errorf("services connect as %s, partitions owned by %v; want %s and [%s]", user, owners, c.ServiceRole,
			localpg.OwnerRole)
	}
	if _, err := conn.Exec(ctx, `DELETE FROM transfers`); !pgmigrate.IsPermissionDenied(err) {
		t.Errorf("DELETE FROM transfers as the service role: got %v, want permission denied", err)
	}
}

// The front sends requests round-robin to the backends that answer
// /readyz, skips one that stops answering, and answers 503 with
// Retry-After when none does.
func TestFrontRoundRobinSkipsUnready(t *testing.T) {
	var mu sync.Mutex
	hits := map[string]int{}
	readyB := true
	mk := func(name string, isReady func() bool) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			if r.URL.Path == "/readyz" {
				if !isReady() {
					w.WriteHeader(http.StatusServiceUnavailable)
				}
				return
			}
			hits[name]++
			_, _ = io.WriteString(w, name)
		}))
	}
	a := mk("a", func() bool { return true })
	defer a.Close()
	b := mk("b", func() bool { return readyB })
	defer b.Close()
	f, err := local.StartFront("", []string{a.URL, b.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()

	get := func() int {
		resp, err := http.Get(f.URL + "/v1/x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for range 10 {
		if code := get(); code != http.StatusOK {
			t.Fatalf("status %d", code)
		}
	}
	mu.Lock()
	if hits["a"] != 5 || hits["b"] != 5 {
		t.Errorf("hits %v, want 5 each", hits)
	}
	readyB = false
	mu.Unlock()
	waitFor(t, func() bool { return probeSaysDown(f, get) })

	b.Close() // gone entirely: requests only go to a
	a.Close() // and now none is left
	waitFor(t, func() bool { return get() == http.StatusServiceUnavailable })
}

// probeSaysDown sends a few requests and reports whether none reached b.
func probeSaysDown(f *local.Front, get func() int) bool {
	before := f.Served()[1]
	for range 4 {
		get()
	}
	return f.Served()[1] == before
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 60 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestConfigBounds(t *testing.T) {
	for _, cfg := range []local.Config{
		{Owners: 17}, {Gateways: -1}, {Shards: 2, LedgerDatabases: 3}, {LeaseTTL: time.Millisecond},
	} {
		if _, err := local.Start(context.Background(), cfg); err == nil {
			t.Errorf("Start(%+v) accepted", cfg)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

func lastBytes(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// frames keeps the lines of a goroutine dump that name a goroutine, this
// module's code or kafka-go: enough to see where a stop hung.
func frames(dump []byte) string {
	var out []string
	for _, l := range strings.Split(string(dump), "\n") {
		if strings.HasPrefix(l, "goroutine ") || strings.Contains(l, "fundplatform/fund") ||
			strings.HasPrefix(l, "main.") || strings.Contains(l, "kafka-go.") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func readLog(p *local.Process) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// metricSum adds up every sample of a metric on a process's /metrics.
func metricSum(t *testing.T, p *local.Process, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.HTTPAddr + "/metrics")
	if err != nil {
		t.Logf("%s /metrics: %v", p.Name, err)
		return 0
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0
	}
	var sum float64
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, name+" ") && !strings.HasPrefix(l, name+"{") {
			continue
		}
		f := strings.Fields(l)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
		}
	}
	return sum
}
