package local_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/deploy/local"
	"github.com/fundplatform/fund/internal/localpg"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/internal/pgmigrate"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/loadtest"
	"github.com/fundplatform/fund/loadtest/audit"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// The cluster (three `fundd ledger` owners sharing 8 shards on 2
// databases, the customers spread over the shards, two `fundd gateway`
// processes behind the round-robin front, the broker process) serves the
// demo's load (the load generator's setup and an open-loop run of every
// order kind through the front, transfers between customers on two shards
// among them), and survives an owner being killed with SIGKILL in the
// middle of it and kept down, as a lost machine would be
// (Process.KillFor): the other two owners take its shards once its leases
// expire, the load goes on, the orders of the customers on the other
// shards are answered all through the failover (at least 99% of those sent
// between the kill and the takeover), and the killed owner comes back
// later under its name. The audit then finds every acknowledged order in
// the books exactly once, nothing half-applied, no journal entry without
// its order row or row without its entry, every saga completed or
// refunded, the in-transit accounts netting to zero, the journal agreeing
// with the balances, and reconciliation (the day compared entry by entry
// with the events the worker consumed) without a break.
// Then, under light load, fundd settle is killed (the supervisor restarts
// it) and the broker process is made unreachable for 4 s: the relays
// publish everything afterwards and the reconciliation worker catches up
// (rideOutSettleKillAndBrokerOutage).
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
	tokens, customers, merchants := setUpCustomers(ctx, t, c, "clusters")

	// The load runs 20 s at 60 orders/s, transfers among them (most
	// between customers on two shards: sagas); an owner dies 6 s in, so
	// the takeover (a lease TTL later) falls inside the run.
	var (
		res    *loadtest.Result
		runErr error
		wg     sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		res, runErr = loadtest.Run(ctx, loadtest.Config{
			Target: c.URL, Profile: loadtest.Constant(20*time.Second, 60), Mix: loadtest.DefaultMix(),
			Customers: customers, Merchants: merchants, Tokens: tokens, Seed: 11, RunID: "clusterr",
			RequestTimeout: 10 * time.Second,
		})
	}()
	select {
	case <-time.After(6 * time.Second):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	before, f := killOwnerUnderLoad(ctx, t, c, customers)
	wg.Wait()
	if runErr != nil {
		t.Fatal(runErr)
	}
	o := res.Orders
	t.Logf("orders: sent %d, accepted %d, rejected %d, shed %d, failed %d, dropped %d; transfers answered %v; front served %v",
		o.Sent, o.Accepted, o.Rejected, o.Shed, o.Failed, o.Dropped, transferStatuses(res.Records), c.Front.Served())
	for _, op := range loadtest.Ops {
		if r, ok := res.ByOp[op]; ok {
			t.Logf("  %-15s sent %4d, accepted %4d, rejected %4d (%v), failed %d", op, r.Sent, r.Accepted, r.Rejected, r.RefusedBy, r.Failed)
		}
	}
	if o.Accepted == 0 {
		t.Fatal("no order was accepted")
	}
	for i, n := range c.Front.Served() {
		if n == 0 {
			t.Errorf("gateway-%d was sent nothing by the front", i)
		}
	}
	// The other shards kept answering while the dead owner's moved.
	t.Logf("customers by shard %v; orders by shard %v", byShard(customers, c.Shards), ordersByShard(res.Records, c.Shards))
	others, dead := f.window(res.Records, c.Shards)
	t.Logf("failover window %s (kill -9 of %s, holding shards %v, until they were owned again): orders of customers on the other shards: %d of %d answered (%.2f%%, unanswered %v); on the dead owner's shards: %d of %d (unanswered %v)",
		f.reowned.Sub(f.killed).Round(10*time.Millisecond), f.owner, f.held, others.ok, others.sent, others.percent(),
		others.failed, dead.ok, dead.sent, dead.failed)
	if others.sent == 0 || others.percent() < 99 {
		// A gateway that says it is not ready while a shard has no owner
		// takes every shard's traffic away: noneReady says whether.
		t.Errorf("the other shards answered %d of %d orders during the failover (%.2f%%), want at least 99%%; no gateway was ready for %s of it",
			others.ok, others.sent, others.percent(), f.noneReady.Round(10*time.Millisecond))
	}

	// The reconciliation worker consumed the ledger's events (published by
	// the owners' relays), and the settlement scheduler is still running.
	waitFor(t, func() bool { return metricSum(t, c.Recon, "fund_recon_events_total") > 0 })
	t.Logf("recon consumed %.0f events", metricSum(t, c.Recon, "fund_recon_events_total"))
	if !c.Settle.Running() {
		t.Errorf("fundd settle exited; log:\n%s", readLog(c.Settle))
	}

	mustAuditClean(ctx, t, c, res.Records)
	waitFor(t, func() bool { return c.Restarts()[before.Name] >= 1 && before.Running() })
	rideOutSettleKillAndBrokerOutage(ctx, t, c, tokens, customers, merchants)
	// The restarted fundd settle settles the setup day.
	rehearseSetupDay(ctx, t, c, tokens.Admin())
	checkServiceRole(ctx, t, c)
}

// failover is what the test saw of one owner's kill -9.
type failover struct {
	owner string
	held  []int // the shards its leases held when it died
	// killed is when the SIGKILL was sent; reowned when every shard had a
	// live owner again (the restarted process with a new epoch, or another).
	killed, reowned time.Time
	// noneReady is how long no gateway answered /readyz in between.
	noneReady time.Duration
}

// killOwnerUnderLoad kills with SIGKILL an owner that holds some of the
// customers' shards but not all of them (so that both sides of the
// failover have orders), keeps it down for three lease TTLs (a lost
// machine: the supervisor restarts it only then) and waits until every
// shard it held is owned again, at a new epoch: by the other owners, once
// its leases expired. Meanwhile it polls each gateway's /readyz and says
// how long none was ready.
func killOwnerUnderLoad(ctx context.Context, t *testing.T, c *local.Cluster, customers []int64) (*local.Process, failover) {
	t.Helper()
	owners, err := c.ShardOwners(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("leases before the kill: %s", ownerMap(owners))
	victim := pickVictim(t, c, owners, customers)
	f := failover{owner: victim.Name}
	epochs := map[int]int64{}
	for _, o := range owners {
		if o.Owner == victim.Name {
			f.held = append(f.held, o.Shard)
			epochs[o.Shard] = o.Epoch
		}
	}
	probeCtx, stopProbe := context.WithCancel(ctx)
	unready := make(chan time.Duration, 1)
	go func() { unready <- noGatewayReady(probeCtx, c) }()
	f.killed = time.Now()
	if err := victim.KillFor(3 * c.LeaseTTL); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitOwned(ctx); err != nil {
		t.Fatal(err)
	}
	f.reowned = time.Now()
	stopProbe()
	f.noneReady = <-unready
	if owners, err = c.ShardOwners(ctx); err != nil {
		t.Fatal(err)
	}
	// Each of its shards has a new epoch, held by a running process.
	for _, o := range owners {
		if e, ok := epochs[o.Shard]; ok && o.Epoch <= e {
			t.Fatalf("shard %d still at epoch %d of the killed %s", o.Shard, o.Epoch, victim.Name)
		}
	}
	t.Logf("kill -9 of %s: its shards %v owned again %s later (lease TTL %s): %s; restarts %v; no gateway answered /readyz for %s of it",
		victim.Name, f.held, f.reowned.Sub(f.killed).Round(10*time.Millisecond), c.LeaseTTL, ownerMap(owners),
		c.Restarts(), f.noneReady.Round(10*time.Millisecond))
	return victim, f
}

// pickVictim returns the owner process holding the shards of some of the
// customers but not of all.
func pickVictim(t *testing.T, c *local.Cluster, owners []ledger.ShardOwner, customers []int64) *local.Process {
	t.Helper()
	populated := map[int]bool{}
	for _, cu := range customers {
		populated[accounts.ShardOf(accounts.CustomerID(cu), c.Shards)] = true
	}
	for _, p := range c.Owners {
		some, all := false, true
		for s := range populated {
			held := slices.ContainsFunc(owners, func(o ledger.ShardOwner) bool { return o.Shard == s && o.Owner == p.Name })
			some, all = some || held, all && held
		}
		if some && !all {
			return p
		}
	}
	t.Fatalf("no owner holds some but not all of the customers' shards %v: %s", populated, ownerMap(owners))
	return nil
}

// noGatewayReady polls every gateway's /readyz until ctx ends and returns
// how long none of them answered 200 (the front, like a Kubernetes
// Service, then has nowhere to send a request).
func noGatewayReady(ctx context.Context, c *local.Cluster) time.Duration {
	client := &http.Client{Timeout: 500 * time.Millisecond}
	var down time.Duration
	const every = 50 * time.Millisecond
	for ctx.Err() == nil {
		ready := false
		for _, g := range c.Gateways {
			req, err := http.NewRequestWithContext(ctx, "GET", "http://"+g.HTTPAddr+"/readyz", nil)
			if err != nil {
				continue
			}
			if resp, err := client.Do(req); err == nil {
				resp.Body.Close()
				ready = ready || resp.StatusCode == http.StatusOK
			}
		}
		if !ready && ctx.Err() == nil {
			down += every
		}
		select {
		case <-ctx.Done():
		case <-time.After(every):
		}
	}
	return down
}

// ownerMap prints shard=owner@epoch for every lease.
func ownerMap(owners []ledger.ShardOwner) string {
	var b strings.Builder
	for _, o := range owners {
		fmt.Fprintf(&b, "%d=%s@%d ", o.Shard, cmp.Or(o.Owner, "-"), o.Epoch)
	}
	return strings.TrimSpace(b.String())
}

// windowCount counts orders and those answered: accepted or refused by a
// business rule (acknowledged); shed, failed or dropped ones were not, and
// are counted by operation and answer too.
type windowCount struct {
	sent, ok int
	failed   map[string]int // "op code": the unanswered
}

func (w *windowCount) add(r loadtest.Record) {
	w.sent++
	if r.Outcome == loadtest.Accepted || r.Outcome == loadtest.Rejected {
		w.ok++
		return
	}
	if w.failed == nil {
		w.failed = map[string]int{}
	}
	w.failed[string(r.Op)+" "+cmp.Or(r.Code, string(r.Outcome))]++
}

func (w windowCount) percent() float64 {
	if w.sent == 0 {
		return 0
	}
	return 100 * float64(w.ok) / float64(w.sent)
}

// window counts the orders due between the kill and the takeover, split by
// whether their customer's shard (accounts.ShardOf) was the dead owner's.
func (f failover) window(records []loadtest.Record, shards int) (others, dead windowCount) {
	held := map[int]bool{}
	for _, s := range f.held {
		held[s] = true
	}
	for _, r := range records {
		if r.Due.Before(f.killed) || r.Due.After(f.reowned) {
			continue
		}
		w := &others
		if held[accounts.ShardOf(accounts.CustomerID(r.Customer), shards)] {
			w = &dead
		}
		w.add(r)
	}
	return others, dead
}

// byShard counts customers by their shard.
func byShard(customers []int64, shards int) []int {
	out := make([]int, shards)
	for _, c := range customers {
		out[accounts.ShardOf(accounts.CustomerID(c), shards)]++
	}
	return out
}

// ordersByShard counts orders by their customer's shard.
func ordersByShard(records []loadtest.Record, shards int) []int {
	out := make([]int, shards)
	for _, r := range records {
		out[accounts.ShardOf(accounts.CustomerID(r.Customer), shards)]++
	}
	return out
}

// transferStatuses counts the transfers' answers by order status
// (COMPLETED at once on one shard, PENDING while a saga runs), or by
// outcome when there was none.
func transferStatuses(records []loadtest.Record) map[string]int {
	out := map[string]int{}
	for _, r := range records {
		if r.Op == loadtest.OpTransfer {
			out[cmp.Or(r.Status, string(r.Outcome))]++
		}
	}
	return out
}

// mustAuditClean audits the records with the reconciliation of the test
// clock's day, and fails the test unless the audit passed with its orphan
// and reconciliation checks run and some sagas ended. Customers and their
// orders are in every ledger database, each in its shard's: the audit
// reads them there (its default).
func mustAuditClean(ctx context.Context, t *testing.T, c *local.Cluster, records []loadtest.Record) {
	t.Helper()
	a, err := audit.Run(ctx, audit.Config{LedgerDSNs: c.LedgerDSNs, Shards: c.Shards, Recon: reconcile(t, c)}, records)
	if err != nil {
		t.Fatal(err)
	}
	logAudit(t, a)
	if !a.OK {
		t.Fatalf("audit failed: %v", a.Problems)
	}
	if !a.OrphansChecked || !a.ReconRan || a.SagasCompleted+a.SagasRefunded == 0 {
		t.Fatalf("audit: orphans checked %v, reconciliation ran %v (%s), %d sagas completed and %d refunded; want both checks and some sagas",
			a.OrphansChecked, a.ReconRan, a.Recon, a.SagasCompleted, a.SagasRefunded)
	}
}

func logAudit(t *testing.T, a *loadtest.Audit) {
	t.Helper()
	t.Logf("audit: checked %d, acknowledged %d, applied %d, lost %d, duplicated %d, half-applied %d, wrong %d, unacknowledged but applied %d, ledger verified %v (shards %v)",
		a.Checked, a.Acknowledged, a.Applied, a.Lost, a.Duplicated, a.HalfApplied, a.Wrong, a.UnackedApplied, a.LedgerVerified, a.Shards)
	t.Logf("audit: orphans: %d of %d entries without their order row, %d of %d order rows without their entry; sagas: %d completed, %d refunded, %d open, %d wrong, %d rows still pending; in transit %v; reconciliation: %s, %d breaks",
		a.EntriesWithoutRow, a.EntriesScanned, a.RowsWithoutEntry, a.RowsScanned, a.SagasCompleted, a.SagasRefunded,
		a.SagasOpen, a.SagasWrong, a.SagasUnresolved, a.InTransitNet, a.Recon, a.ReconBreaks)
}

// reconcile is the audit's reconciliation: Cluster.Reconcile of the test
// clock's business day (once the relays and the worker caught up, entry by
// entry on every shard and every saga, over every ledger database).
func reconcile(t *testing.T, c *local.Cluster) func(ctx context.Context) (string, int64, error) {
	return func(ctx context.Context) (string, int64, error) {
		return c.Reconcile(ctx, setupDay, setupDay)
	}
}

// outboxesEmpty reports whether every ledger database's outbox is empty:
// the owners' relays have published every event.
func outboxesEmpty(ctx context.Context, t *testing.T, c *local.Cluster) bool {
	t.Helper()
	for _, dsn := range c.LedgerDSNs {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		err = conn.QueryRow(ctx, `SELECT count(*) FROM ledger_outbox`).Scan(&n)
		conn.Close(context.WithoutCancel(ctx))
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return false
		}
	}
	return true
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
	a, err := audit.Run(ctx, audit.Config{LedgerDSNs: c.LedgerDSNs, Shards: c.Shards}, res.Records)
	if err != nil {
		t.Fatal(err)
	}
	if !a.OK {
		t.Fatalf("audit of the run through the broker outage failed: %v", a.Problems)
	}

	waitFor(t, func() bool { return outboxesEmpty(ctx, t, c) })
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

// setUpCustomers checks that c has the default layout (3 owners, 2
// gateways, 8 shards on 2 databases) and opens, funds and subscribes 40
// customers and registers 5 merchants through its front, as the cluster
// tests' loads expect.
func setUpCustomers(ctx context.Context, t *testing.T, c *local.Cluster, runID string) (*loadtest.Tokens, []int64, []int64) {
	t.Helper()
	if len(c.Owners) != 3 || len(c.Gateways) != 2 || c.Shards != 8 || len(c.LedgerDSNs) != 2 {
		t.Fatalf("%d owners, %d gateways, %d shards on %d databases; want 3, 2, 8 on 2", len(c.Owners), len(c.Gateways),
			c.Shards, len(c.LedgerDSNs))
	}
	tokens, err := loadtest.NewTokens(c.JWTKey, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	customers, merchants, err := loadtest.Setup(ctx, loadtest.SetupConfig{
		Target: c.URL, AdminToken: tokens.Admin(), Tokens: tokens, Customers: 40, Balance: 100_000,
		Subscribe: 20_000, Merchants: 5, Parallelism: 8, RunID: runID,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tokens, customers, merchants
}
