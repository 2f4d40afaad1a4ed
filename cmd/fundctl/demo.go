package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/gateway/auth"
	"github.com/fundplatform/fund/internal/devstack"
	"github.com/fundplatform/fund/internal/localpg"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/loadtest"
	"github.com/fundplatform/fund/settlement"
	"github.com/fundplatform/fund/settlement/recon"
)

// demoOpts are the knobs of `fundctl demo`; the defaults are what `make
// demo` runs.
type demoOpts struct {
	customers   int
	duration    time.Duration
	peakRPS     float64
	out         string
	income      string
	verbose     bool
	setup       string
	balance     string
	subscribe   string
	parallelism int
	mix         string
	subscribers int
}

// Bounds of the demo's own waits.
const (
	demoStopTimeout  = 2 * time.Minute
	reconCatchUpMax  = 2 * time.Minute
	reconLagEvery    = 500 * time.Millisecond
	demoSharedBuffer = "512MB"
)

func newDemoCmd() *cobra.Command {
	var d demoOpts
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "The whole platform in one process under a Double-11 night, settled and audited (what make demo runs)",
		Long: `Starts a private Postgres and every role in this process (internal/devstack: an in-process Kafka
broker, the ledger's 8 shards on 2 databases owned through their leases with their outbox relay
(customers spread over the shards, each one's row and orders in its shard's database), the
accounts service, the gateway on loopback, settlement on demand over both databases, and a
reconciliation worker consuming the ledger's events into both), then:

  1. opens --customers customers, each topped up with --balance; the --subscribers busiest of
     them (all by default) subscribe --subscribe of it into the fund. Both are sized as fundctl
     loadtest sizes them (auto: loadtest.BudgetFor, for the busiest customer of this night),
     so that hardly an order is refused for want of money: a realistic night, not a test of
     the refusals;
  2. settles the date those subscriptions are confirmed on (early, as a drill), so that the
     busiest customers hold confirmed shares to pay and redeem with (the stack's ledger owner
     takes the shards back from the settlement run at new epochs);
  3. runs a Double-11 profile against the REST API (fundctl loadtest: open loop, live progress);
  4. settles the next day on the live platform: confirms the night's subscriptions, pays its
     standard redemptions, distributes the day's income to every holder, writes the custodian
     file; its entries leave through the outbox like every other;
  5. lets reconciliation consume every event (the night's and the settlement's) and compares
     its record with the journal of each database, entry by entry, then stops the platform;
  6. audits every order against the books (lost, duplicated, half-applied, settled once,
     ledger verify, reconciliation breaks);
  7. prints the summary and where the HTML report is, and removes the private databases.

Fails unless nothing was lost and nothing duplicated. Customers are opened through the
accounts service in-process (--setup direct: the calls the gateway makes, without HTTP in
between; the fast bulk path) or through the REST API (--setup api).`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), d, cmd.ErrOrStderr(), cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.IntVar(&d.customers, "customers", 100_000, "customers to open")
	f.DurationVar(&d.duration, "duration", 2*time.Minute, "length of the Double-11 profile")
	f.Float64Var(&d.peakRPS, "peak-rps", 600, "midnight peak, requests/s (the baseline is 1/15 of it)")
	f.StringVar(&d.out, "out", "demo-report", "report directory (kept; the custodian file goes there too)")
	f.StringVar(&d.income, "income-per-10k", "0.6543", "the fund's income per 10,000 shares for the settlement")
	f.BoolVar(&d.verbose, "verbose", false, "log the platform's own messages to stderr")
	f.StringVar(&d.setup, "setup", "direct", "how customers are opened: direct (the accounts service in-process) or api (REST)")
	// 256 rather than 128: every customer now takes three calls (open, top
	// up, subscribe), and the ledger's group commit gets fuller batches
	// (on 2 cores 15,000 customers took 15 s instead of 21 s); the
	// accounts pool (parallelism + 32) stays under the private Postgres's
	// 300 connections.
	f.IntVar(&d.parallelism, "setup-parallelism", 256, "setup calls at once (1..256)")
	f.StringVar(&d.balance, "balance", "auto", "cash each customer is topped up with; auto = what the busiest customer of the night spends, at least 1000.00")
	f.StringVar(&d.subscribe, "subscribe", "auto",
		"part of the balance the --subscribers busiest customers subscribe during setup, confirmed by a settlement before the night; auto = what the busiest customer redeems and pays, at least 200.00 (0 = none, no settlement before)")
	// Every customer subscribes by default: a customer without shares has
	// every payment and redemption refused, and with the Zipf draw the
	// customers past the busiest thousand send about 40% of the requests.
	f.IntVar(&d.subscribers, "subscribers", 0, "customers who subscribe during setup (the busiest first; 0 = all)")
	f.StringVar(&d.mix, "mix", loadtest.DefaultMix().String(), "operation weights")
	return cmd
}

// runDemo is `fundctl demo`: each step below is one method of demoRun.
func runDemo(ctx context.Context, d demoOpts, progress, out io.Writer) (err error) {
	if d.parallelism < 1 || d.parallelism > 256 {
		return fmt.Errorf("--setup-parallelism %d: want 1..256", d.parallelism)
	}
	if d.setup != "direct" && d.setup != "api" {
		return fmt.Errorf("--setup %q: want api or direct", d.setup)
	}
	r := newDemoRun(d, progress)
	defer func() {
		if err == nil {
			r.step("done in %.0fs", time.Since(r.began).Seconds())
		}
	}()
	stopPostgres, err := r.startPostgres(ctx)
	if err != nil {
		return err
	}
	defer stopPostgres()
	if err := r.startPlatform(ctx); err != nil {
		return err
	}
	defer func() { _ = r.stopPlatform(ctx) }()
	o, plan, err := r.plan()
	if err != nil {
		return err
	}
	customers, merchants, err := plan.setup(ctx, progress)
	if err != nil {
		return err
	}
	night, err := r.settleSetup(ctx, plan)
	if err != nil {
		return err
	}
	res, err := plan.run(ctx, customers, merchants, progress)
	if err != nil {
		return err
	}
	settleErr := r.settleNight(ctx, night)
	r.step("waiting for reconciliation to consume every event, then comparing with the journal...")
	reconSummary, reconBreaks, reconErr := reconCatchUpAndCompare(ctx, r.st.Recon)
	if reconErr != nil {
		reconSummary = "failed: " + reconErr.Error()
	}
	r.step("reconciliation: %s", reconSummary)
	r.step("stopping the platform (the ledger flushes its balances)...")
	if err := r.stopPlatform(ctx); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	res.Notes = append(res.Notes, "Reconciliation after the run: "+reconSummary)
	for _, l := range r.settled {
		res.Notes = append(res.Notes, "Settlement of "+l)
	}
	if err := auditAndReport(ctx, o, res, progress, out, func(context.Context) (string, int64, error) {
		return reconSummary, reconBreaks, reconErr
	}); err != nil {
		return err
	}
	for _, l := range r.settled {
		fmt.Fprintf(out, "settlement         %s\n", l)
	}
	if settleErr != nil {
		return fmt.Errorf("settle %s: %w", night.Format(time.DateOnly), settleErr)
	}
	return nil
}

// demoRun is one run of the demo: the platform its steps share, and what
// was settled.
type demoRun struct {
	d        demoOpts
	progress io.Writer
	began    time.Time
	logger   *slog.Logger
	dsns     []string // the platform's databases, in shard-map order
	key      []byte
	st       *devstack.Stack
	stopped  bool
	settled  []string // one line per settled date
}

func newDemoRun(d demoOpts, progress io.Writer) *demoRun {
	r := &demoRun{d: d, progress: progress, began: time.Now(), logger: slog.New(slog.DiscardHandler)}
	if d.verbose {
		r.logger = slog.New(slog.NewTextHandler(progress, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return r
}

// step prints one line of progress with the time since the start.
func (r *demoRun) step(format string, args ...any) {
	fmt.Fprintf(r.progress, "demo [%5.1fs] %s\n", time.Since(r.began).Seconds(), fmt.Sprintf(format, args...))
}

// startPostgres starts a private Postgres of the demo's own with the
// platform's databases (devstack.DatabasesDefault of them, as `fundd dev`
// runs), so that they outlive the platform for the audit, and go away at
// the end (stop).
func (r *demoRun) startPostgres(ctx context.Context) (stop func(), err error) {
	r.step("starting a private Postgres with %d databases...", devstack.DatabasesDefault)
	srv, err := localpg.Start(ctx, localpg.Options{Settings: map[string]string{"shared_buffers": demoSharedBuffer}, Logger: r.logger})
	if err != nil {
		return nil, err
	}
	base := "fund_demo_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	var names []string
	stop = func() {
		r.step("removing the private databases and stopping Postgres...")
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), demoStopTimeout)
		defer cancel()
		for _, name := range names {
			_ = srv.DropDatabase(sctx, name)
		}
		_ = srv.Stop(sctx)
	}
	for i := range devstack.DatabasesDefault {
		name := base + "_" + strconv.Itoa(i+1)
		dsn, err := srv.CreateDatabase(ctx, name)
		if err != nil {
			stop()
			return nil, err
		}
		names, r.dsns = append(names, name), append(r.dsns, dsn)
	}
	return stop, nil
}

// startPlatform starts every role in this process (the dev stack), with
// settlement on demand (dates allowed early: a drill) writing custodian
// files beside the report, and reconciliation probing its lag often so
// that the demo can wait for it.
func (r *demoRun) startPlatform(ctx context.Context) (err error) {
	if err := os.MkdirAll(r.d.out, 0o755); err != nil {
		return err
	}
	r.key = make([]byte, auth.KeyLenMin)
	_, _ = rand.Read(r.key) // crypto/rand.Read never returns an error
	r.step("starting every role: in-process Kafka, %d ledger shards on %d databases, outbox relay, accounts, gateway, settlement, reconciliation...",
		devstack.ShardsDefault, len(r.dsns))
	r.st, err = devstack.Start(ctx, devstack.Options{
		DSNs: r.dsns, JWTKey: r.key, Logger: r.logger, AccountsConnsMax: demoAccountsConns(r.d.parallelism, len(r.dsns)),
		Settle: &devstack.SettleOptions{FileDir: r.d.out, AllowEarly: true},
		Recon:  &devstack.ReconOptions{LagEvery: reconLagEvery},
	})
	if err != nil {
		return err
	}
	r.step("platform up; gateway %s", r.st.HTTPURL)
	return nil
}

// stopPlatform stops the stack once.
func (r *demoRun) stopPlatform(ctx context.Context) error {
	if r.stopped || r.st == nil {
		return nil
	}
	r.stopped = true
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), demoStopTimeout)
	defer cancel()
	return r.st.Stop(sctx)
}

// plan is the load test the demo runs against the gateway, audited
// against the books afterwards.
func (r *demoRun) plan() (loadtestOpts, *loadPlan, error) {
	d := r.d
	o := loadtestOpts{
		target: r.st.HTTPURL, profile: "double11", duration: d.duration, peakRPS: d.peakRPS,
		peakRatio: loadtest.Double11PeakRatioDefault, mix: d.mix,
		customers: d.customers, balance: d.balance, subscribe: d.subscribe, subscribers: d.subscribers, merchants: 20,
		hotMerchants: loadtest.HotMerchantsDefault, zipf: loadtest.ZipfSkewDefault,
		setupParallelism: d.parallelism, maxInFlight: loadtest.MaxInFlightDefault, timeout: loadtest.RequestTimeoutDefault,
		// The audit reads every database (a comma list, in shard-map
		// order), each customer's orders in its shard's.
		retries: loadtest.TimeoutRetriesDefault, out: d.out, doAudit: true, dsn: strings.Join(r.dsns, ","),
	}
	if d.setup == "direct" {
		o.setupBackend = directSetup{r.st.Accounts}
	}
	plan, err := planLoad(&o, r.key)
	return o, plan, err
}

// settleSetup settles the date the setup's subscriptions are confirmed on,
// now (early, as a drill), so that tonight's customers hold confirmed
// shares to pay and redeem with; the run fences the stack's ledger owner,
// whose host takes the shards back at new epochs. It returns the date the
// night's orders fall due on: the next one, or that one when the setup
// subscribed nothing (and nothing was settled).
func (r *demoRun) settleSetup(ctx context.Context, plan *loadPlan) (night time.Time, err error) {
	cal := r.st.Accounts.Calendar()
	day1 := cal.ConfirmDate(cal.TradeDate(time.Now()))
	if plan.subscribe <= 0 {
		return day1, nil
	}
	r.step("settling %s: confirms the setup's subscriptions, pays the day's income...", day1.Format(time.DateOnly))
	line, err := r.settle(ctx, day1)
	if err != nil {
		return time.Time{}, fmt.Errorf("settle %s: %w", day1.Format(time.DateOnly), err)
	}
	r.step("settlement: %s", line)
	if err := waitLedger(ctx, r.st); err != nil {
		return time.Time{}, err
	}
	r.step("ledger shards served again at their new epochs")
	return day1.AddDate(0, 0, 1), nil
}

// settleNight settles the night's date on the live platform: it confirms
// the night's subscriptions and pays its standard redemptions (due on the
// setup's date, settled before), and its entries go out through the
// outbox and are reconciled with the rest. A failed run is reported, not
// returned at once: the audit still runs.
func (r *demoRun) settleNight(ctx context.Context, night time.Time) error {
	r.step("settling %s: confirms the night's subscriptions, pays its standard redemptions and the day's income...",
		night.Format(time.DateOnly))
	line, err := r.settle(ctx, night)
	if err != nil {
		line = "failed: " + err.Error()
	}
	r.step("settlement: %s", line)
	if err == nil {
		err = waitLedger(ctx, r.st)
	}
	return err
}

// settle runs the stack's settlement of date and sums it up in one line,
// which it keeps for the report.
func (r *demoRun) settle(ctx context.Context, date time.Time) (string, error) {
	in, err := settlement.ParseInput(date.Format(time.DateOnly), "", r.d.income)
	if err != nil {
		return "", err
	}
	sum, err := r.st.Settlement.Run(ctx, in, nil)
	if err != nil {
		r.settled = append(r.settled, date.Format(time.DateOnly)+": failed: "+err.Error())
		return "", err
	}
	yield := sum.SevenDayYield + "%"
	if sum.SevenDayYield == "" {
		yield = "none yet (the fund is younger than 7 days)"
	}
	line := fmt.Sprintf("%d customers' subscriptions confirmed (%s shares), %d standard redemptions paid (%s CNY), income %s CNY to %d holders of %s shares, 7-day yield %s, custodian file %s (%.1fs)",
		sum.Subscriptions, accounts.FormatAmount(sum.SubscribedShares), sum.Redemptions, accounts.FormatAmount(sum.RedeemedCash),
		accounts.FormatAmount(sum.FundIncome), sum.Holders, accounts.FormatAmount(sum.TotalShares), yield,
		sum.File, sum.Took.Seconds())
	r.settled = append(r.settled, date.Format(time.DateOnly)+": "+line)
	return line, nil
}

// ledgerWaitMax bounds the wait for the stack's owner to serve every shard
// again after a settlement run fenced them.
const ledgerWaitMax = time.Minute

// waitLedger waits until every shard answers a lookup again (of its copy
// of the bank settlement account; a lookup is of one shard).
func waitLedger(ctx context.Context, st *devstack.Stack) error {
	deadline := time.Now().Add(ledgerWaitMax)
	for shard := 0; shard < st.Shards; {
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		id := accounts.SystemAccountOn(accounts.BankSettlement, shard, st.Shards)
		_, err := st.Ledger.LookupAccounts(lctx, []ledger.AccountID{id})
		cancel()
		if err == nil {
			shard++
			continue
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ledger shards not all served %s after settlement: %w", ledgerWaitMax, err)
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// reconCatchUpAndCompare waits until the stack's reconciliation worker
// has no lag and its count of events stands still, then compares the
// day's record with the journal, entry by entry.
func reconCatchUpAndCompare(ctx context.Context, w *recon.Worker) (string, int64, error) {
	if w == nil {
		return "", 0, errors.New("no reconciliation worker")
	}
	deadline := time.Now().Add(reconCatchUpMax)
	last := int64(-1)
	for {
		// Two lag probes after the last event, so a probe from before the
		// end of the run cannot pass for a caught-up consumer.
		t := time.NewTimer(3 * reconLagEvery)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", 0, ctx.Err()
		case <-t.C:
		}
		st := w.Stats()
		seen := st.Applied + st.Redelivered + st.Conflicts
		if st.Lag == 0 && seen == last {
			break
		}
		if time.Now().After(deadline) {
			return "", 0, fmt.Errorf("not caught up after %s: lag %d", reconCatchUpMax, st.Lag)
		}
		last = seen
	}
	day := ledger.BusinessDate(time.Now().UnixNano())
	rep, err := w.Compare(ctx, day, recon.CompareOptions{Deep: true})
	if err != nil {
		return "", 0, err
	}
	open, err := w.Store().OpenBreaks(ctx)
	if err != nil {
		return "", 0, err
	}
	var openN int64
	for _, n := range open {
		openN += n
	}
	st := w.Stats()
	var entries int64
	for _, sd := range rep.Shards {
		entries += sd.JournalEntries
	}
	return fmt.Sprintf("%d events consumed, %s compared entry by entry (%d journal entries): %d breaks found, %d open",
		st.Applied, rep.BusinessDate, entries, len(rep.Breaks), openN), max(int64(len(rep.Breaks)), openN), nil
}

// directSetup is the demo's bulk path for opening customers: the accounts
// service in-process, the same calls the gateway makes, without HTTP,
// JSON and tokens in between (which cost more CPU than the work itself on
// a small machine). Every call is idempotent by its key; transient errors
// are retried a bounded number of times.
type directSetup struct{ svc *accounts.Service }

const (
	directAttemptsMax = 8
	directPause       = 100 * time.Millisecond
	directPauseMax    = 2 * time.Second
)

func (d directSetup) retry(ctx context.Context, fn func() error) error {
	var err error
	for attempt := 0; attempt < directAttemptsMax; attempt++ {
		if err = fn(); err == nil || ctx.Err() != nil || isFinal(err) {
			return err
		}
		t := time.NewTimer(min(directPause<<attempt, directPauseMax))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	return err
}

// isFinal reports errors a retry cannot change: the request was refused.
func isFinal(err error) bool {
	var ae *accounts.AmountError
	return errors.As(err, &ae) || errors.Is(err, accounts.ErrInsufficientFunds) ||
		errors.Is(err, accounts.ErrIdempotencyConflict) || errors.Is(err, accounts.ErrInvalidRequestID) ||
		errors.Is(err, accounts.ErrInvalidName) || errors.Is(err, accounts.ErrCustomerNotFound)
}

func (d directSetup) OpenCustomer(ctx context.Context, key, name string) (id int64, err error) {
	err = d.retry(ctx, func() error {
		c, err := d.svc.OpenCustomer(ctx, key, name)
		id = int64(c.ID)
		return err
	})
	return id, err
}

func (d directSetup) TopUp(ctx context.Context, c int64, key string, amount int64) error {
	return d.retry(ctx, func() error {
		_, err := d.svc.TopUp(ctx, accounts.CustomerID(c), key, amount)
		return err
	})
}

func (d directSetup) Subscribe(ctx context.Context, c int64, key string, amount int64) error {
	return d.retry(ctx, func() error {
		_, err := d.svc.Subscribe(ctx, accounts.CustomerID(c), key, amount)
		return err
	})
}

func (d directSetup) RegisterMerchant(ctx context.Context, m int64, _ string) error {
	return d.retry(ctx, func() error { return d.svc.RegisterMerchant(ctx, accounts.MerchantID(m)) })
}

// demoAccountsConnsMax bounds the accounts store's pools, summed over the
// databases: the private Postgres allows 300 connections (internal/localpg)
// to all of them, and the ledger owner, settlement and reconciliation need
// theirs beside it, so setup calls past the pools wait for a connection
// rather than being refused by the server.
const demoAccountsConnsMax = 200

// demoAccountsConns is the accounts pool in each of databases for
// parallelism setup calls at once: one each and some for the night's
// orders, at most demoAccountsConnsMax in all, split evenly (the customers
// are spread evenly over the shards, and so over the databases).
func demoAccountsConns(parallelism, databases int) int32 {
	databases = max(databases, 1)
	return int32((min(parallelism+32, demoAccountsConnsMax) + databases - 1) / databases)
}
