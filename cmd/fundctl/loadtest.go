package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/gateway/auth"
	"github.com/fundplatform/fund/internal/localpg"
	"github.com/fundplatform/fund/loadtest"
	"github.com/fundplatform/fund/loadtest/audit"
	"github.com/fundplatform/fund/loadtest/report"
)

// loadtestOpts are the flags of `fundctl loadtest` (and what `fundctl demo`
// sets itself).
type loadtestOpts struct {
	target, profile, mix, out          string
	allowRemote                        bool
	duration                           time.Duration
	peakRPS, peakRatio, zipf           float64
	customers, merchants, hotMerchants int
	balance, subscribe                 string
	setupParallelism, maxInFlight      int
	timeout                            time.Duration
	retries                            int
	seed                               uint64
	runID                              string
	doAudit                            bool
	dsn, accountsDSN                   string
	auditShards                        int
	jwtKeyFile                         string
	reconWait                          time.Duration
	// setupBackend, when set, opens the customers instead of the API.
	setupBackend loadtest.Backend
	subscribers  int
	arrivals     string
	part         string
	startAt      string
	setupIncome  string // income per 10,000 shares of the days the setup settles
	capacity     capacityOpts
}

const (
	tokenTTL      = 24 * time.Hour
	reconWaitMax  = 10 * time.Minute
	reconPollStep = 500 * time.Millisecond
)

func newLoadtestCmd() *cobra.Command {
	var o loadtestOpts
	cmd := &cobra.Command{
		Use:   "loadtest",
		Short: "Open-loop load against the gateway (Double-11 and other profiles), a report and an audit",
		Long: `Opens --customers customers with balances through the admin API and registers --merchants;
on a sandbox with a test clock (fundd dev --test-clock) it then moves the clock past the setup
subscriptions' confirm date and settles the dates in between, so that the customers hold confirmed
shares to redeem and pay with (on a wall clock it says that they do not, and goes on). --balance
and --subscribe auto size them so that the busiest customer's orders are covered. Then it sends
requests at the profile's arrival rate, a Poisson process from --seed by default (--arrivals
even: evenly spaced) (open loop: never waiting for answers; at most
--max-in-flight out, the rest counted as dropped by the generator), with latency measured from
each request's scheduled send time. Prints progress every second; writes report.json,
report.html and PNG charts into --out. With --audit it then checks every order against the
books (--dsn): acknowledged ones exactly once with the right amounts, nothing half-applied,
ledger verify on every shard, reconciliation without breaks; it fails when any is not so.

Profiles: double11 (calm baseline, midnight spike to --peak-rps = --peak-ratio x baseline, held,
then decay), constant, ramp (peak/10 to peak), or a .json/.csv file of seconds,rps knots
(absolute; --duration and --peak-rps do not apply).

One generator on one core cannot drive a cluster: --part i/n runs part i of n processes (give each
the same --run-id and --seed), each with its own customers and keys and 1/n of the rate; each
writes part-i-of-n.json into --out, and ` + "`fundctl loadtest merge`" + ` makes one report of them,
with the latency histograms merged exactly, and audits the orders of all parts once.`,
		Example: `  fundctl loadtest --target http://127.0.0.1:8080 --profile double11 --duration 2m --peak-rps 1500 \
      --jwt-key-file key --audit --dsn "$FUND_PG_DSN"

  # the same load from two processes (same --run-id and --seed), merged and audited once
  for i in 1 2; do fundctl loadtest --target $URL --jwt-key-file key --run-id night1 --seed 7 --part $i/2 \
      --start-at $(date -u -d '+40 sec' +%FT%TZ) --out parts & done; wait
  fundctl loadtest merge parts/part-*-of-2.json --out night1 --audit --dsn "$FUND_PG_DSN" --target $URL --jwt-key-file key`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := auth.LoadKey(o.jwtKeyFile)
			if err != nil {
				return err
			}
			_, err = runLoadtest(cmd.Context(), o, key, cmd.ErrOrStderr(), cmd.OutOrStdout())
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.target, "target", "", "gateway base URL (loopback unless --allow-remote)")
	f.BoolVar(&o.allowRemote, "allow-remote", false, "allow a target that is not a loopback address")
	f.StringVar(&o.profile, "profile", "double11", "double11, constant, ramp, or a .json/.csv file")
	f.DurationVar(&o.duration, "duration", 2*time.Minute, "length of a built-in profile")
	f.Float64Var(&o.peakRPS, "peak-rps", 500, "peak arrival rate of a built-in profile, requests/s")
	f.Float64Var(&o.peakRatio, "peak-ratio", loadtest.Double11PeakRatioDefault, "double11: peak / baseline (10..20)")
	f.StringVar(&o.mix, "mix", loadtest.DefaultMix().String(), "operation weights: "+opNames())
	f.IntVar(&o.customers, "customers", 1000, "customers to open (through POST /v1/customers)")
	f.StringVar(&o.balance, "balance", "auto", "cash each customer is topped up with; auto = what the busiest customer of the run spends, at least 1000.00")
	f.StringVar(&o.subscribe, "subscribe", "auto", "part of it subscribed into fund shares during setup; auto = what the busiest customer redeems and pays, at least 200.00")
	f.StringVar(&o.setupIncome, "setup-income-per-10k", "0.6500", "on a test clock: the income per 10,000 shares of each day the setup settles")
	f.StringVar(&o.arrivals, "arrivals", string(loadtest.ArrivalsPoisson), "poisson (random, exponential gaps from the seed) or even (evenly spaced)")
	f.StringVar(&o.part, "part", "", "i/n: this process is part i of n generators (its customers, keys and 1/n of the rate); writes part-i-of-n.json for `fundctl loadtest merge`")
	f.StringVar(&o.startAt, "start-at", "", "RFC 3339 wall time to start the load at, after the setup (so that the parts of a split run start together)")
	f.IntVar(&o.subscribers, "subscribers", 0, "how many customers subscribe during setup (the busiest first); 0 = all")
	f.IntVar(&o.merchants, "merchants", 20, "merchants to register")
	f.IntVar(&o.hotMerchants, "hot-merchants", loadtest.HotMerchantsDefault, "merchants that get 80% of payments")
	f.Float64Var(&o.zipf, "zipf", loadtest.ZipfSkewDefault, "Zipf skew s (>1) of the customer choice")
	f.IntVar(&o.setupParallelism, "setup-parallelism", loadtest.SetupParallelismDefault, "setup calls at once")
	f.IntVar(&o.maxInFlight, "max-in-flight", loadtest.MaxInFlightDefault, "requests out at once; beyond, dropped and counted")
	f.DurationVar(&o.timeout, "timeout", loadtest.RequestTimeoutDefault, "per attempt")
	f.IntVar(&o.retries, "retries", loadtest.TimeoutRetriesDefault, "retries of a timed-out request with the same key (-1 = none)")
	f.Uint64Var(&o.seed, "seed", 0, "random seed of the arrivals and the requests (0 = from the clock; printed, give it again to replay)")
	f.StringVar(&o.runID, "run-id", "", "prefix of the idempotency keys (default from the clock); the parts of a split run share it")
	f.StringVar(&o.out, "out", "", "report directory (default loadtest-<run id>)")
	f.BoolVar(&o.doAudit, "audit", false, "check every order against the books afterwards (needs --dsn)")
	f.StringVar(&o.dsn, "dsn", os.Getenv(localpg.EnvDSN), auditDSNUsage)
	f.StringVar(&o.accountsDSN, "accounts-dsn", "", "accounts database for --audit when apart from the ledger's (default: the --dsn databases, each holding its own shards' customers)")
	f.IntVar(&o.auditShards, "shards", 0, auditShardsUsage)
	f.DurationVar(&o.reconWait, "recon-wait", time.Minute, "--audit: how long to wait for reconciliation to catch up")
	f.StringVar(&o.jwtKeyFile, "jwt-key-file", "", "token signing key file (default: $"+auth.EnvKey+")")
	o.capacity.flags(f)
	cmd.AddCommand(newLoadtestMergeCmd())
	return cmd
}

func opNames() string {
	var s []string
	for _, op := range loadtest.Ops {
		s = append(s, string(op))
	}
	return strings.Join(s, ", ")
}

// runLoadtest is the whole of `fundctl loadtest`: setup, shares
// confirmed, run, then audit and report (or, for a part of a split run,
// its part file).
func runLoadtest(ctx context.Context, o loadtestOpts, key []byte, progress, out io.Writer) (*loadtest.Result, error) {
	p, err := planLoad(&o, key)
	if err != nil {
		return nil, err
	}
	customers, merchants, err := p.setup(ctx, progress)
	if err != nil {
		return nil, err
	}
	note, err := p.confirm(ctx, customers, progress)
	if err != nil {
		return nil, err
	}
	if err := waitStart(ctx, o.startAt, progress); err != nil {
		return nil, err
	}
	if o.capacity.enabled {
		return nil, p.findCapacity(ctx, customers, merchants, progress, out)
	}
	res, err := p.run(ctx, customers, merchants, progress)
	if res != nil && note != "" {
		res.Notes = append(res.Notes, note)
	}
	if err != nil {
		return res, err
	}
	if p.part.Count > 1 {
		return res, writePart(o, res, out)
	}
	admin := p.tokens.Admin()
	return res, auditAndReport(ctx, o, res, progress, out, func(ctx context.Context) (string, int64, error) {
		return reconFromAPI(ctx, o.target, admin, o.reconWait)
	})
}

// loadPlan is a checked loadtestOpts.
type loadPlan struct {
	o                  *loadtestOpts
	prof               loadtest.Profile
	mix                loadtest.Mix
	balance, subscribe int64
	tokens             *loadtest.Tokens
	arrivals           loadtest.Arrivals
	part               loadtest.Part
	budget             loadtest.Budget
	// tradeDate and confirmDate span the setup's subscriptions (set by
	// setup through the API, read by confirm).
	datesMu                sync.Mutex
	tradeDate, confirmDate string
}

// planLoad checks the options and fills in o's seed and run id.
func planLoad(o *loadtestOpts, key []byte) (*loadPlan, error) {
	if _, err := loadtest.CheckTarget(o.target, o.allowRemote); err != nil {
		return nil, err
	}
	if o.doAudit && o.dsn == "" {
		return nil, fmt.Errorf("--audit needs --dsn (or %s)", localpg.EnvDSN)
	}
	if o.reconWait < 0 || o.reconWait > reconWaitMax {
		return nil, fmt.Errorf("--recon-wait %s: want 0..%s", o.reconWait, reconWaitMax)
	}
	p := &loadPlan{o: o}
	var err error
	if p.prof, err = o.loadProfile(); err != nil {
		return nil, err
	}
	if p.mix, err = loadtest.ParseMix(o.mix); err != nil {
		return nil, err
	}
	if p.arrivals, err = loadtest.ParseArrivals(o.arrivals); err != nil {
		return nil, fmt.Errorf("--arrivals: %w", err)
	}
	if p.part, err = loadtest.ParsePart(o.part); err != nil {
		return nil, fmt.Errorf("--part: %w", err)
	}
	if p.part.Count > 1 && o.capacity.enabled {
		return nil, errors.New("--find-capacity with --part: search with one generator")
	}
	if p.part.Count > 1 && o.doAudit {
		return nil, errors.New("--audit with --part: audit once, when merging the parts (fundctl loadtest merge --audit)")
	}
	if err := p.sizeBalances(); err != nil {
		return nil, err
	}
	if p.tokens, err = loadtest.NewTokens(key, tokenTTL); err != nil {
		return nil, err
	}
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}
	if o.runID == "" {
		if p.part.Count > 1 {
			return nil, errors.New("--part needs --run-id (and --seed): the parts of one run share them")
		}
		o.runID = fmt.Sprintf("lt%d", time.Now().Unix()%1_000_000_000)
	}
	return p, nil
}

// loadProfile reads --profile.
func (o *loadtestOpts) loadProfile() (loadtest.Profile, error) {
	switch {
	case strings.HasSuffix(o.profile, ".json") || strings.HasSuffix(o.profile, ".csv"):
		return loadtest.ReadProfile(o.profile)
	case o.profile == "double11":
		if o.peakRatio < 10 || o.peakRatio > 20 {
			return loadtest.Profile{}, fmt.Errorf("--peak-ratio %v: want 10..20", o.peakRatio)
		}
		p := loadtest.Double11(o.duration, o.peakRPS, o.peakRatio)
		return p, p.Validate()
	default:
		return loadtest.BuiltinProfile(o.profile, o.duration, o.peakRPS)
	}
}

// Floors of --balance auto and --subscribe auto: what a customer of a
// small run gets, as before they were sized.
const (
	balanceAutoMin   = 100_000 // 1,000.00
	subscribeAutoMin = 20_000  // 200.00
	balanceAutoStep  = 10_000  // rounded up to 100.00
)

// sizeBalances parses --balance and --subscribe; "auto" sizes them by the
// busiest customer's budget of this part of the run: shares for its
// redemptions and payments, cash besides for its subscriptions and
// transfers.
func (p *loadPlan) sizeBalances() error {
	o := p.o
	expected := p.part.Share(p.prof).Expected()
	if o.capacity.enabled {
		expected = o.capacity.expected()
	}
	p.budget = loadtest.BudgetFor(expected, p.mix, max(p.part.Size(o.customers), 1), o.zipf)
	roundUp := func(v int64) int64 { return (v + balanceAutoStep - 1) / balanceAutoStep * balanceAutoStep }
	var err error
	switch o.subscribe {
	case "auto":
		p.subscribe = max(subscribeAutoMin, roundUp(p.budget.Shares))
	case "", "0":
	default:
		if p.subscribe, err = accounts.ParseAmount(o.subscribe); err != nil {
			return fmt.Errorf("--subscribe: %w", err)
		}
	}
	if o.balance == "auto" {
		p.balance = max(balanceAutoMin, p.subscribe+roundUp(p.budget.Cash))
	} else if p.balance, err = accounts.ParseAmount(o.balance); err != nil {
		return fmt.Errorf("--balance: %w", err)
	}
	if p.subscribe > p.balance {
		return fmt.Errorf("--subscribe %s is more than --balance %s", accounts.FormatAmount(p.subscribe), accounts.FormatAmount(p.balance))
	}
	return nil
}

// setup opens the customers and registers the merchants.
func (p *loadPlan) setup(ctx context.Context, progress io.Writer) (customers, merchants []int64, err error) {
	o := p.o
	how := "through the REST API"
	if o.setupBackend != nil {
		how = "through the accounts service in-process"
	}
	share := ""
	if p.part.Count > 1 {
		share = fmt.Sprintf(" (part %s: %d of %d customers)", p.part, p.part.Size(o.customers), o.customers)
	}
	fmt.Fprintf(progress, "setup: %d customers%s with %s each (%s subscribed), %d merchants, %s, %d calls at once\n",
		o.customers, share, accounts.FormatAmount(p.balance), accounts.FormatAmount(p.subscribe), o.merchants, how, o.setupParallelism)
	if o.balance == "auto" || o.subscribe == "auto" {
		fmt.Fprintf(progress, "setup: sized for the busiest customer (%.2f%% of the requests): %s cash for subscriptions and transfers, %s shares for redemptions and payments\n",
			100*p.budget.BusiestShare, accounts.FormatAmount(p.budget.Cash), accounts.FormatAmount(p.budget.Shares))
	}
	if p.budget.FastRedeem > loadtest.FastRedeemDailyCap {
		fmt.Fprintf(progress, "setup: warning: the busiest customer may fast-redeem up to %s in the run's day, past the %s daily cap: expect FAST_REDEEM_LIMIT refusals\n",
			accounts.FormatAmount(p.budget.FastRedeem), accounts.FormatAmount(loadtest.FastRedeemDailyCap))
	}
	start := time.Now()
	customers, merchants, err = loadtest.Setup(ctx, loadtest.SetupConfig{
		Target: o.target, AdminToken: p.tokens.Admin(), Tokens: p.tokens, Customers: o.customers, Balance: p.balance,
		Subscribe: p.subscribe, Subscribers: o.subscribers, Merchants: o.merchants, Parallelism: o.setupParallelism, RunID: o.runID + "s",
		Progress: progress, Backend: o.setupBackend, Part: p.part, OnSubscribed: p.subscribed,
	})
	if err != nil {
		return nil, nil, err
	}
	took := time.Since(start).Seconds()
	fmt.Fprintf(progress, "setup took %.1fs (%.0f customers/s)\n", took, float64(len(customers))/took)
	return customers, merchants, nil
}

// subscribed widens the span of the setup's subscription dates.
func (p *loadPlan) subscribed(tradeDate, confirmDate string) {
	p.datesMu.Lock()
	defer p.datesMu.Unlock()
	if p.tradeDate == "" || tradeDate < p.tradeDate {
		p.tradeDate = tradeDate
	}
	if confirmDate > p.confirmDate {
		p.confirmDate = confirmDate
	}
}

// confirm settles the setup's dates on a sandbox (loadtest.ConfirmShares)
// and returns a line for the report; against a wall clock it says the
// shares stay pending and what that means for the run.
func (p *loadPlan) confirm(ctx context.Context, customers []int64, progress io.Writer) (string, error) {
	if p.subscribe == 0 || len(customers) == 0 {
		return "", nil
	}
	p.datesMu.Lock()
	tradeDate, confirmDate := p.tradeDate, p.confirmDate
	p.datesMu.Unlock()
	subscribers := customers
	if n := p.o.subscribers; n > 0 && p.part.Size(n) < len(customers) {
		subscribers = customers[:max(p.part.Size(n), 1)]
	}
	probes := []int64{subscribers[0], subscribers[len(subscribers)/2], subscribers[len(subscribers)-1]}
	c, err := loadtest.ConfirmShares(ctx, loadtest.ConfirmConfig{
		Target: p.o.target, AdminToken: p.tokens.Admin(), TradeDate: tradeDate, ConfirmDate: confirmDate,
		IncomePer10k: p.o.setupIncome, RunID: p.o.runID + "s", Probes: probes,
	})
	if err != nil {
		return "", err
	}
	if !c.TestClock {
		note := "The target runs on the wall clock: the setup's subscriptions stay unconfirmed (pending) until the platform " +
			"settles " + tradeDate + ", so fast and standard redemptions and payments in this run are refused (INSUFFICIENT_FUNDS)."
		fmt.Fprintln(progress, "setup: warning: "+note)
		return note, nil
	}
	note := fmt.Sprintf("Setup on a test clock: its subscriptions (traded from %s, due by %s) confirmed by settling %s (income %s per 10,000 shares); business time now %s.",
		tradeDate, confirmDate, strings.Join(c.Settled, ", "), p.o.setupIncome, c.Now)
	fmt.Fprintf(progress, "setup: shares confirmed: settled %s on the test clock, now %s; %d customers' holdings checked\n",
		strings.Join(c.Settled, ", "), c.Now, c.Probed)
	return note, nil
}

// startAtWaitMax bounds --start-at.
const startAtWaitMax = time.Hour

// waitStart waits until --start-at, if given.
func waitStart(ctx context.Context, startAt string, progress io.Writer) error {
	if startAt == "" {
		return nil
	}
	at, err := time.Parse(time.RFC3339, startAt)
	if err != nil {
		return fmt.Errorf("--start-at: %w", err)
	}
	d := time.Until(at)
	if d > startAtWaitMax {
		return fmt.Errorf("--start-at %s is more than %s away", startAt, startAtWaitMax)
	}
	if d <= 0 {
		fmt.Fprintf(progress, "start: %s has passed already (the setup took longer): starting now\n", startAt)
		return nil
	}
	fmt.Fprintf(progress, "start: waiting %.1fs for %s\n", d.Seconds(), startAt)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// run sends the load.
func (p *loadPlan) run(ctx context.Context, customers, merchants []int64, progress io.Writer) (*loadtest.Result, error) {
	o := p.o
	share := p.part.Share(p.prof)
	fmt.Fprintf(progress, "load: %s profile, %s, peak %.0f/s, ~%.0f requests, %s arrivals, mix %s, seed %d (--seed %d replays it), run %s, part %s\n",
		p.prof.Name, p.prof.Duration(), share.Peak(), share.Expected(), p.arrivals, p.mix, o.seed, o.seed, o.runID, p.part)
	return loadtest.Run(ctx, loadtest.Config{
		Target: o.target, Profile: p.prof, Mix: p.mix, Customers: customers, Merchants: merchants,
		HotMerchants: o.hotMerchants, ZipfSkew: o.zipf, Tokens: p.tokens, MaxInFlight: o.maxInFlight,
		RequestTimeout: o.timeout, TimeoutRetries: o.retries, Seed: o.seed, RunID: o.runID, Progress: progress,
		Arrivals: p.arrivals, Part: p.part,
	})
}

// auditAndReport audits the run (when asked), writes the report and prints
// the summary; it fails when the audit did.
func auditAndReport(ctx context.Context, o loadtestOpts, res *loadtest.Result, progress, out io.Writer,
	reconcile func(context.Context) (string, int64, error)) error {
	if o.doAudit {
		fmt.Fprintf(progress, "audit: %d order records against the books...\n", len(res.Records))
		auditStart := time.Now()
		a, err := audit.Run(ctx, auditConfig(o, reconcile), res.Records)
		if err != nil {
			return err
		}
		res.Audit = a
		fmt.Fprintf(progress, "audit took %.1fs\n", time.Since(auditStart).Seconds())
	}
	dir := o.out
	if dir == "" {
		dir = "loadtest-" + o.runID
	}
	written, err := report.Write(dir, res)
	if err != nil {
		return err
	}
	printSummary(out, res, written)
	if a := res.Audit; a != nil && !a.OK {
		return fmt.Errorf("audit failed: lost %d, duplicated %d, half-applied %d, wrong %d, ledger verified %v, recon breaks %d, "+
			"orphans %d+%d, sagas open %d, wrong %d, in transit %v",
			a.Lost, a.Duplicated, a.HalfApplied, a.Wrong, a.LedgerVerified, a.ReconBreaks,
			a.EntriesWithoutRow, a.RowsWithoutEntry, a.SagasOpen, a.SagasWrong, a.InTransitNet)
	}
	return nil
}

// Usage of the audit's database flags, which the run and the merge share.
const (
	auditDSNUsage    = "ledger database for --audit; a comma list for a shard map over several, in its order"
	auditShardsUsage = "--audit: ledger shards the customers are spread over (0 = read it from the ledger databases)"
)

// auditConfig is the audit of the books o names.
func auditConfig(o loadtestOpts, reconcile func(context.Context) (string, int64, error)) audit.Config {
	return audit.Config{LedgerDSNs: strings.Split(o.dsn, ","), AccountsDSN: o.accountsDSN, Shards: o.auditShards,
		Recon: reconcile}
}

func printSummary(w io.Writer, res *loadtest.Result, written report.Written) {
	printCounts(w, res)
	if a := res.Audit; a != nil {
		printAudit(w, a)
	} else {
		fmt.Fprintf(w, "lost / duplicated  not audited (--audit --dsn)\n")
	}
	if abs, err := filepath.Abs(written.HTML); err == nil {
		fmt.Fprintf(w, "report             %s\n", abs)
	}
	fmt.Fprintf(w, "                   %s, %d PNG charts beside it\n", written.JSON, len(written.PNGs))
}

// printCounts prints the run's outcome counts, each operation's
// acceptance and the latency.
func printCounts(w io.Writer, res *loadtest.Result) {
	o := res.Orders
	parts := ""
	if res.Parts > 1 {
		parts = fmt.Sprintf(", %d parts merged", res.Parts)
	} else if res.Part.Count > 1 {
		parts = ", part " + res.Part.String()
	}
	fmt.Fprintf(w, "\n== load test %s: %s profile, peak %.0f/s, %.0fs, %s arrivals, seed %d%s ==\n", res.RunID, res.Profile.Name,
		res.Profile.Peak(), res.DurationSeconds, res.Arrivals, res.Seed, parts)
	fmt.Fprintf(w, "orders sent        %8d\n", o.Sent)
	fmt.Fprintf(w, "acknowledged       %8d   (accepted %d, rejected by a business rule %d = %.2f%% of those sent)\n",
		o.Accepted+o.Rejected, o.Accepted, o.Rejected, pct(o.Rejected, o.Sent))
	fmt.Fprintf(w, "shed (429)         %8d\n", o.Shed)
	fmt.Fprintf(w, "failed             %8d\n", o.Failed)
	fmt.Fprintf(w, "dropped (client)   %8d   (more than %d in flight)\n", o.Dropped, res.MaxInFlight)
	// "refused" are orders answered with the business rule that refused
	// them (the last column): the platform saying no, not an error; their
	// share of those sent says whether the run was a realistic night or a
	// test of the refusals.
	fmt.Fprintf(w, "by operation       %-16s %8s %8s %8s %8s %8s %8s  %s\n", "", "sent", "accepted", "refused", "refused%", "shed", "failed", "refused by (rule)")
	for _, op := range loadtest.Ops {
		r, ok := res.ByOp[op]
		if !ok {
			continue
		}
		fmt.Fprintf(w, "                   %-16s %8d %8d %8d %7.2f%% %8d %8d  %s\n", op, r.Sent, r.Accepted, r.Rejected, pct(r.Rejected, r.Sent),
			r.Shed, r.Failed, reasons(r.RefusedBy))
	}
	l := res.Latency
	fmt.Fprintf(w, "latency ms         p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f   (all %d requests, from the scheduled send time)\n",
		l.P50Ms, l.P90Ms, l.P99Ms, l.P999Ms, l.MaxMs, res.Totals.Sent)
	for _, n := range res.Notes {
		fmt.Fprintf(w, "note               %s\n", n)
	}
}

func pct(n, of int64) float64 {
	if of == 0 {
		return 0
	}
	return 100 * float64(n) / float64(of)
}

// reasons formats refusal counts, the largest first.
func reasons(m map[string]int64) string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool { return m[ks[i]] > m[ks[j]] || m[ks[i]] == m[ks[j]] && ks[i] < ks[j] })
	var out []string
	for _, k := range ks {
		out = append(out, fmt.Sprintf("%s %d", k, m[k]))
	}
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, ", ")
}

func printAudit(w io.Writer, a *loadtest.Audit) {
	fmt.Fprintf(w, "lost               %8d\n", a.Lost)
	fmt.Fprintf(w, "duplicated         %8d\n", a.Duplicated)
	fmt.Fprintf(w, "half-applied       %8d   (wrong %d; unacknowledged but applied whole %d)\n", a.HalfApplied, a.Wrong, a.UnackedApplied)
	fmt.Fprintf(w, "settled once       %8d   (subscriptions confirmed, standard redemptions paid)\n", a.Settled)
	fmt.Fprintf(w, "orphans            %8d   (journal entries without order row %d of %d, order rows without entry %d of %d)\n",
		a.EntriesWithoutRow+a.RowsWithoutEntry, a.EntriesWithoutRow, a.EntriesScanned, a.RowsWithoutEntry, a.RowsScanned)
	fmt.Fprintf(w, "sagas open         %8d   (completed %d, refunded %d, wrong %d, ended but row still pending %d; in transit net %v)\n",
		a.SagasOpen, a.SagasCompleted, a.SagasRefunded, a.SagasWrong, a.SagasUnresolved, a.InTransitNet)
	fmt.Fprintf(w, "ledger verify      %8v   (shards %v of %d)\n", a.LedgerVerified, a.Shards, a.ShardCount)
	switch {
	case a.ReconRan:
		fmt.Fprintf(w, "reconciliation     %8d breaks (%s)\n", a.ReconBreaks, a.Recon)
	case a.Recon != "":
		fmt.Fprintf(w, "reconciliation     not checked (%s)\n", a.Recon)
	default:
		fmt.Fprintf(w, "reconciliation     not checked\n")
	}
	for _, p := range a.Problems {
		fmt.Fprintln(w, "  ! "+p)
	}
}

// errReconNotConfigured: the gateway has no reconciler (501).
var errReconNotConfigured = errors.New("reconciliation is not configured on the gateway")

// reconFromAPI reads GET /v1/admin/recon/report, waiting (up to wait)
// until reconciliation has consumed every event, and returns its verdict.
func reconFromAPI(ctx context.Context, target, adminToken string, wait time.Duration) (string, int64, error) {
	client := &http.Client{Timeout: 30 * time.Second}
	deadline := time.Now().Add(wait)
	for {
		req, err := http.NewRequestWithContext(ctx, "GET", strings.TrimRight(target, "/")+"/v1/admin/recon/report", nil)
		if err != nil {
			return "", 0, err
		}
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := client.Do(req)
		if err != nil {
			return "", 0, err
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		resp.Body.Close()
		if err != nil {
			return "", 0, err
		}
		if resp.StatusCode == http.StatusNotImplemented {
			return "", 0, errReconNotConfigured
		}
		if resp.StatusCode != http.StatusOK {
			return "", 0, fmt.Errorf("recon report: %d %.300s", resp.StatusCode, body)
		}
		var rep struct {
			OK              bool              `json:"ok"`
			Breaks          []json.RawMessage `json:"breaks"`
			EventsProcessed json.Number       `json:"events_processed"`
			ConsumerLag     json.Number       `json:"consumer_lag"`
		}
		if err := json.Unmarshal(body, &rep); err != nil {
			return "", 0, fmt.Errorf("recon report: %w", err)
		}
		lag, _ := rep.ConsumerLag.Int64()
		if lag == 0 || time.Now().After(deadline) {
			summary := fmt.Sprintf("%s events processed, consumer lag %d", rep.EventsProcessed, lag)
			if lag != 0 {
				summary += " (still catching up)"
			}
			return summary, int64(len(rep.Breaks)), nil
		}
		t := time.NewTimer(reconPollStep)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", 0, ctx.Err()
		case <-t.C:
		}
	}
}
