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
	"time"

	"github.com/spf13/cobra"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/gateway/auth"
	"github.com/fundplatform/fund/internal/devstack"
	"github.com/fundplatform/fund/internal/localpg"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/kafka"
	"github.com/fundplatform/fund/loadtest"
	"github.com/fundplatform/fund/settlement"
	settlepg "github.com/fundplatform/fund/settlement/postgres"
	"github.com/fundplatform/fund/settlement/recon"
	reconkafka "github.com/fundplatform/fund/settlement/recon/kafka"
	reconpg "github.com/fundplatform/fund/settlement/recon/postgres"
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
	reconGroup       = "fund-recon-demo"
	demoSharedBuffer = "512MB"
)

func newDemoCmd() *cobra.Command {
	var d demoOpts
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "The whole platform in one process under a Double-11 night, settled and audited (what make demo runs)",
		Long: `Starts a private Postgres and every role in this process (deploy/devstack: an in-process Kafka
broker, ledger shard 0 owned through its lease with its outbox relay, the accounts service, the
gateway on loopback, and a reconciliation worker consuming the ledger's events), then:

  1. opens --customers customers, each topped up with 1000.00; the --subscribers busiest of
     them subscribe --subscribe into the fund;
  2. settles the date those subscriptions are confirmed on (early, as a drill), so that the
     busiest customers hold confirmed shares to pay and redeem with (the stack's ledger host
     takes shard 0 back from the settlement run at a new epoch);
  3. runs a Double-11 profile against the REST API (fundctl loadtest: open loop, live progress);
  4. settles the next day on the live platform: confirms the night's subscriptions, pays its
     standard redemptions, distributes the day's income to every holder, writes the custodian
     file; its entries leave through the outbox like every other;
  5. lets reconciliation consume every event (the night's and the settlement's) and compares
     its record with the journal, entry by entry, then stops the platform;
  6. audits every order against the books (lost, duplicated, half-applied, settled once,
     ledger verify, reconciliation breaks);
  7. prints the summary and where the HTML report is, and removes the private database.

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
	f.IntVar(&d.parallelism, "setup-parallelism", 128, "setup calls at once (1..256)")
	f.StringVar(&d.subscribe, "subscribe", "500.00",
		"part of the balance the --subscribers busiest customers subscribe during setup, confirmed by a settlement before the night (0 = none, no settlement before)")
	f.IntVar(&d.subscribers, "subscribers", 1000, "customers who subscribe during setup (the busiest first; 0 = all)")
	f.StringVar(&d.mix, "mix", loadtest.DefaultMix().String(), "operation weights")
	return cmd
}

// runDemo is `fundctl demo`.
func runDemo(ctx context.Context, d demoOpts, progress, out io.Writer) (err error) {
	if d.parallelism < 1 || d.parallelism > 256 {
		return fmt.Errorf("--setup-parallelism %d: want 1..256", d.parallelism)
	}
	if d.setup != "direct" && d.setup != "api" {
		return fmt.Errorf("--setup %q: want api or direct", d.setup)
	}
	began := time.Now()
	logger := slog.New(slog.DiscardHandler)
	if d.verbose {
		logger = slog.New(slog.NewTextHandler(progress, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	step := func(format string, args ...any) {
		fmt.Fprintf(progress, "demo [%5.1fs] %s\n", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
	}
	defer func() {
		if err == nil {
			step("done in %.0fs", time.Since(began).Seconds())
		}
	}()

	// A private Postgres of our own, so that the database outlives the
	// platform for settlement and the audit, and goes away at the end.
	step("starting a private Postgres...")
	srv, err := localpg.Start(ctx, localpg.Options{Settings: map[string]string{"shared_buffers": demoSharedBuffer}, Logger: logger})
	if err != nil {
		return err
	}
	defer func() {
		step("removing the private database and stopping Postgres...")
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), demoStopTimeout)
		defer cancel()
		_ = srv.Stop(sctx)
	}()
	dbName := "fund_demo_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	dsn, err := srv.CreateDatabase(ctx, dbName)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), demoStopTimeout)
		defer cancel()
		_ = srv.DropDatabase(sctx, dbName)
	}()
	key := make([]byte, auth.KeyLenMin)
	_, _ = rand.Read(key) // crypto/rand.Read never returns an error

	step("starting every role: in-process Kafka, ledger shard 0, outbox relay, accounts, gateway, reconciliation...")
	var rw reconHandle
	st, err := devstack.Start(ctx, devstack.Options{
		DSN: dsn, JWTKey: key, Logger: logger, AccountsConnsMax: int32(d.parallelism) + 32,
		Workers: []devstack.Worker{rw.worker()},
	})
	if err != nil {
		return err
	}
	stopped := false
	stopStack := func() error {
		if stopped {
			return nil
		}
		stopped = true
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), demoStopTimeout)
		defer cancel()
		return st.Stop(sctx)
	}
	defer func() { _ = stopStack() }()
	step("platform up; gateway %s", st.HTTPURL)

	o := loadtestOpts{
		target: st.HTTPURL, profile: "double11", duration: d.duration, peakRPS: d.peakRPS,
		peakRatio: loadtest.Double11PeakRatioDefault, mix: d.mix,
		customers: d.customers, balance: "1000.00", subscribe: d.subscribe, subscribers: d.subscribers, merchants: 20,
		hotMerchants: loadtest.HotMerchantsDefault, zipf: loadtest.ZipfSkewDefault,
		setupParallelism: d.parallelism, maxInFlight: loadtest.MaxInFlightDefault, timeout: loadtest.RequestTimeoutDefault,
		retries: loadtest.TimeoutRetriesDefault, out: d.out, doAudit: true, dsn: dsn,
	}
	switch d.setup {
	case "direct":
		o.setupBackend = directSetup{st.Accounts}
	case "api":
	default:
		return fmt.Errorf("--setup %q: want api or direct", d.setup)
	}
	plan, err := planLoad(&o, key)
	if err != nil {
		return err
	}
	customers, merchants, err := plan.setup(ctx, progress)
	if err != nil {
		return err
	}
	settler, closeSettler, err := newDemoSettler(ctx, st, d.out, logger)
	if err != nil {
		return err
	}
	defer closeSettler()

	// The setup's subscriptions are confirmed by the settlement of their
	// confirm date. Run it now (early, as a drill), so that tonight's
	// customers hold confirmed shares to pay and redeem with. It fences the
	// stack's ledger writer; the stack's host takes shard 0 back at a new
	// epoch.
	cal := st.Accounts.Calendar()
	day1 := cal.ConfirmDate(cal.TradeDate(time.Now()))
	day2 := day1.AddDate(0, 0, 1)
	var settled []string
	if plan.subscribe > 0 {
		step("settling %s: confirms the setup's subscriptions, pays the day's income...", day1.Format(time.DateOnly))
		line, err := settler.settle(ctx, day1, d.income)
		if err != nil {
			return fmt.Errorf("settle %s: %w", day1.Format(time.DateOnly), err)
		}
		step("settlement: %s", line)
		settled = append(settled, day1.Format(time.DateOnly)+": "+line)
		if err := waitLedger(ctx, st); err != nil {
			return err
		}
		step("ledger shard 0 served again at its new epoch")
	} else {
		day2 = day1
	}

	res, err := plan.run(ctx, customers, merchants, progress)
	if err != nil {
		return err
	}

	// The night's subscriptions and standard redemptions fall due on day1;
	// with day1 settled, day2 (the next natural day) confirms and pays them.
	// It runs on the live platform, like the setup's drill: its entries go
	// out through the outbox and are reconciled with the rest.
	step("settling %s: confirms the night's subscriptions, pays its standard redemptions and the day's income...",
		day2.Format(time.DateOnly))
	line, settleErr := settler.settle(ctx, day2, d.income)
	if settleErr != nil {
		line = "failed: " + settleErr.Error()
	}
	step("settlement: %s", line)
	settled = append(settled, day2.Format(time.DateOnly)+": "+line)
	if settleErr == nil {
		if err := waitLedger(ctx, st); err != nil {
			return err
		}
	}

	step("waiting for reconciliation to consume every event, then comparing with the journal...")
	reconSummary, reconBreaks, reconErr := rw.catchUpAndCompare(ctx)
	if reconErr != nil {
		reconSummary = "failed: " + reconErr.Error()
	}
	step("reconciliation: %s", reconSummary)

	step("stopping the platform (the ledger flushes its balances)...")
	if err := stopStack(); err != nil {
		return fmt.Errorf("stop: %w", err)
	}

	res.Notes = append(res.Notes, "Reconciliation after the run: "+reconSummary)
	for _, l := range settled {
		res.Notes = append(res.Notes, "Settlement of "+l)
	}
	if err := auditAndReport(ctx, o, res, progress, out, func(context.Context) (string, int64, error) {
		return reconSummary, reconBreaks, reconErr
	}); err != nil {
		return err
	}
	for _, l := range settled {
		fmt.Fprintf(out, "settlement         %s\n", l)
	}
	if settleErr != nil {
		return fmt.Errorf("settle %s: %w", day2.Format(time.DateOnly), settleErr)
	}
	return nil
}

// ledgerWaitMax bounds the wait for the stack's host to serve shard 0
// again after a settlement run fenced it.
const ledgerWaitMax = time.Minute

// waitLedger waits until shard 0 answers a lookup again.
func waitLedger(ctx context.Context, st *devstack.Stack) error {
	deadline := time.Now().Add(ledgerWaitMax)
	for {
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := st.Ledger.LookupAccounts(lctx, []ledger.AccountID{accounts.BankSettlement})
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ledger shard 0 not served %s after settlement: %w", ledgerWaitMax, err)
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// reconHandle runs a reconciliation worker inside the stack and keeps hold
// of it, so the demo can wait for it and ask for a comparison.
type reconHandle struct {
	w *recon.Worker
}

func (h *reconHandle) worker() devstack.Worker {
	return devstack.Worker{Name: "recon", Start: func(ctx context.Context, s *devstack.Stack) (devstack.Role, error) {
		store, err := reconpg.Open(ctx, reconpg.Config{DSN: s.DSN})
		if err != nil {
			return devstack.Role{}, fmt.Errorf("recon store: %w", err)
		}
		w, err := recon.NewWorker(recon.WorkerConfig{
			Consume: func(ctx context.Context, handle func(context.Context, ledger.Event) error) error {
				return kafka.Consume(ctx, kafka.ConsumerConfig{Brokers: s.Brokers, Topic: s.Topic, Group: reconGroup,
					InFlightMax: 4096, Logger: s.Logger}, handle)
			},
			Lag:        reconkafka.NewLagProbe(s.Brokers, s.Topic, reconGroup).Lag,
			LagEvery:   reconLagEvery,
			Registerer: s.Registry,
		}, recon.Single(store), s.Logger)
		if err != nil {
			store.Close()
			return devstack.Role{}, err
		}
		h.w = w
		return devstack.Role{Run: w.Run, Close: store.Close}, nil
	}}
}

// catchUpAndCompare waits until the worker's consumer group has no lag
// and its count of events stands still, then compares the day's record
// with the journal, entry by entry.
func (h *reconHandle) catchUpAndCompare(ctx context.Context) (string, int64, error) {
	if h.w == nil {
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
		st := h.w.Stats()
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
	rep, err := h.w.Compare(ctx, day, recon.CompareOptions{Deep: true})
	if err != nil {
		return "", 0, err
	}
	open, err := h.w.Store().OpenBreaks(ctx)
	if err != nil {
		return "", 0, err
	}
	var openN int64
	for _, n := range open {
		openN += n
	}
	st := h.w.Stats()
	var entries int64
	for _, sd := range rep.Shards {
		entries += sd.JournalEntries
	}
	return fmt.Sprintf("%d events consumed, %s compared entry by entry (%d journal entries): %d breaks found, %d open",
		st.Applied, rep.BusinessDate, entries, len(rep.Breaks), openN), max(int64(len(rep.Breaks)), openN), nil
}

// demoSettler runs settlement on the stack's database, taking the ledger
// shards from the stack's host for the run (as `fundd dev`'s settlement
// role does), dates allowed early (a drill).
type demoSettler struct{ runner *settlement.Runner }

func newDemoSettler(ctx context.Context, st *devstack.Stack, fileDir string, logger *slog.Logger) (*demoSettler, func(), error) {
	if err := os.MkdirAll(fileDir, 0o755); err != nil {
		return nil, nil, err
	}
	store, err := settlepg.Open(ctx, settlepg.Config{DSN: st.DSN, ConnsMax: 4})
	if err != nil {
		return nil, nil, err
	}
	// Its own accounts service for the yields: the stack's goes away with
	// the stack, and the last run happens after that.
	yields, closeYields, err := settlepg.OpenYieldPublisher(ctx, st.DSN)
	if err != nil {
		store.Close()
		return nil, nil, err
	}
	runner := settlement.NewRunner(settlement.Config{Shards: 1, Parallel: 1, FileDir: fileDir, TakeShards: true,
		AllowEarly: true}, store, yields, nil, logger)
	return &demoSettler{runner: runner}, func() { closeYields(); store.Close() }, nil
}

// settle runs date and sums it up in one line.
func (s *demoSettler) settle(ctx context.Context, date time.Time, per10k string) (string, error) {
	in, err := settlement.ParseInput(date.Format(time.DateOnly), "", per10k)
	if err != nil {
		return "", err
	}
	sum, err := s.runner.Run(ctx, in, nil)
	if err != nil {
		return "", err
	}
	yield := sum.SevenDayYield + "%"
	if sum.SevenDayYield == "" {
		yield = "none yet (the fund is younger than 7 days)"
	}
	return fmt.Sprintf("%d customers' subscriptions confirmed (%s shares), %d standard redemptions paid (%s CNY), income %s CNY to %d holders of %s shares, 7-day yield %s, custodian file %s (%.1fs)",
		sum.Subscriptions, accounts.FormatAmount(sum.SubscribedShares), sum.Redemptions, accounts.FormatAmount(sum.RedeemedCash),
		accounts.FormatAmount(sum.FundIncome), sum.Holders, accounts.FormatAmount(sum.TotalShares), yield,
		sum.File, sum.Took.Seconds()), nil
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
