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
	"strings"
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
	jwtKeyFile                         string
	reconWait                          time.Duration
	// setupBackend, when set, opens the customers instead of the API.
	setupBackend loadtest.Backend
	subscribers  int
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
		Long: `Opens --customers customers with balances through the admin API, then sends requests on a
schedule drawn from the profile's arrival rate (open loop: never waiting for answers; at most
--max-in-flight out, the rest counted as dropped by the generator), with latency measured from
each request's scheduled send time. Prints progress every second; writes report.json,
report.html and PNG charts into --out. With --audit it then checks every order against the
books (--dsn): acknowledged ones exactly once with the right amounts, nothing half-applied,
ledger verify on every shard, reconciliation without breaks; it fails when any is not so.

Profiles: double11 (calm baseline, midnight spike to --peak-rps = --peak-ratio x baseline, held,
then decay), constant, ramp (peak/10 to peak), or a .json/.csv file of seconds,rps knots
(absolute; --duration and --peak-rps do not apply).`,
		Example: `  fundctl loadtest --target http://127.0.0.1:8080 --profile double11 --duration 2m --peak-rps 1500 \
      --jwt-key-file key --audit --dsn "$FUND_PG_DSN"`,
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
	f.StringVar(&o.balance, "balance", "1000.00", "cash each customer is topped up with")
	f.StringVar(&o.subscribe, "subscribe", "200.00", "part of it subscribed into fund shares during setup")
	f.IntVar(&o.subscribers, "subscribers", 0, "how many customers subscribe during setup (the busiest first); 0 = all")
	f.IntVar(&o.merchants, "merchants", 20, "merchants to register")
	f.IntVar(&o.hotMerchants, "hot-merchants", loadtest.HotMerchantsDefault, "merchants that get 80% of payments")
	f.Float64Var(&o.zipf, "zipf", loadtest.ZipfSkewDefault, "Zipf skew s (>1) of the customer choice")
	f.IntVar(&o.setupParallelism, "setup-parallelism", loadtest.SetupParallelismDefault, "setup calls at once")
	f.IntVar(&o.maxInFlight, "max-in-flight", loadtest.MaxInFlightDefault, "requests out at once; beyond, dropped and counted")
	f.DurationVar(&o.timeout, "timeout", loadtest.RequestTimeoutDefault, "per attempt")
	f.IntVar(&o.retries, "retries", loadtest.TimeoutRetriesDefault, "retries of a timed-out request with the same key (-1 = none)")
	f.Uint64Var(&o.seed, "seed", 0, "random seed (0 = from the clock)")
	f.StringVar(&o.out, "out", "", "report directory (default loadtest-<run id>)")
	f.BoolVar(&o.doAudit, "audit", false, "check every order against the books afterwards (needs --dsn)")
	f.StringVar(&o.dsn, "dsn", os.Getenv(localpg.EnvDSN), "ledger database for --audit")
	f.StringVar(&o.accountsDSN, "accounts-dsn", "", "accounts database for --audit, when not the ledger's")
	f.DurationVar(&o.reconWait, "recon-wait", time.Minute, "--audit: how long to wait for reconciliation to catch up")
	f.StringVar(&o.jwtKeyFile, "jwt-key-file", "", "token signing key file (default: $"+auth.EnvKey+")")
	return cmd
}

func opNames() string {
	var s []string
	for _, op := range loadtest.Ops {
		s = append(s, string(op))
	}
	return strings.Join(s, ", ")
}

// runLoadtest is the whole of `fundctl loadtest`: setup, run, audit,
// report, summary.
func runLoadtest(ctx context.Context, o loadtestOpts, key []byte, progress, out io.Writer) (*loadtest.Result, error) {
	p, err := planLoad(&o, key)
	if err != nil {
		return nil, err
	}
	customers, merchants, err := p.setup(ctx, progress)
	if err != nil {
		return nil, err
	}
	res, err := p.run(ctx, customers, merchants, progress)
	if err != nil {
		return res, err
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
	switch {
	case strings.HasSuffix(o.profile, ".json") || strings.HasSuffix(o.profile, ".csv"):
		p.prof, err = loadtest.ReadProfile(o.profile)
	case o.profile == "double11":
		if o.peakRatio < 10 || o.peakRatio > 20 {
			return nil, fmt.Errorf("--peak-ratio %v: want 10..20", o.peakRatio)
		}
		p.prof = loadtest.Double11(o.duration, o.peakRPS, o.peakRatio)
		err = p.prof.Validate()
	default:
		p.prof, err = loadtest.BuiltinProfile(o.profile, o.duration, o.peakRPS)
	}
	if err != nil {
		return nil, err
	}
	if p.mix, err = loadtest.ParseMix(o.mix); err != nil {
		return nil, err
	}
	if p.balance, err = accounts.ParseAmount(o.balance); err != nil {
		return nil, fmt.Errorf("--balance: %w", err)
	}
	if o.subscribe != "" && o.subscribe != "0" {
		if p.subscribe, err = accounts.ParseAmount(o.subscribe); err != nil {
			return nil, fmt.Errorf("--subscribe: %w", err)
		}
	}
	if p.tokens, err = loadtest.NewTokens(key, tokenTTL); err != nil {
		return nil, err
	}
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}
	if o.runID == "" {
		o.runID = fmt.Sprintf("lt%d", time.Now().Unix()%1_000_000_000)
	}
	return p, nil
}

// setup opens the customers and registers the merchants.
func (p *loadPlan) setup(ctx context.Context, progress io.Writer) (customers, merchants []int64, err error) {
	o := p.o
	how := "through the REST API"
	if o.setupBackend != nil {
		how = "through the accounts service in-process"
	}
	fmt.Fprintf(progress, "setup: %d customers with %s each (%s subscribed), %d merchants, %s, %d calls at once\n",
		o.customers, accounts.FormatAmount(p.balance), accounts.FormatAmount(p.subscribe), o.merchants, how, o.setupParallelism)
	start := time.Now()
	customers, merchants, err = loadtest.Setup(ctx, loadtest.SetupConfig{
		Target: o.target, AdminToken: p.tokens.Admin(), Tokens: p.tokens, Customers: o.customers, Balance: p.balance,
		Subscribe: p.subscribe, Subscribers: o.subscribers, Merchants: o.merchants, Parallelism: o.setupParallelism, RunID: o.runID + "s",
		Progress: progress, Backend: o.setupBackend,
	})
	if err != nil {
		return nil, nil, err
	}
	took := time.Since(start).Seconds()
	fmt.Fprintf(progress, "setup took %.1fs (%.0f customers/s)\n", took, float64(o.customers)/took)
	return customers, merchants, nil
}

// run sends the load.
func (p *loadPlan) run(ctx context.Context, customers, merchants []int64, progress io.Writer) (*loadtest.Result, error) {
	o := p.o
	fmt.Fprintf(progress, "load: %s profile, %s, peak %.0f/s, ~%.0f requests, mix %s, seed %d, run %s\n",
		p.prof.Name, p.prof.Duration(), p.prof.Peak(), p.prof.Expected(), p.mix, o.seed, o.runID)
	return loadtest.Run(ctx, loadtest.Config{
		Target: o.target, Profile: p.prof, Mix: p.mix, Customers: customers, Merchants: merchants,
		HotMerchants: o.hotMerchants, ZipfSkew: o.zipf, Tokens: p.tokens, MaxInFlight: o.maxInFlight,
		RequestTimeout: o.timeout, TimeoutRetries: o.retries, Seed: o.seed, RunID: o.runID, Progress: progress,
	})
}

// auditAndReport audits the run (when asked), writes the report and prints
// the summary; it fails when the audit did.
func auditAndReport(ctx context.Context, o loadtestOpts, res *loadtest.Result, progress, out io.Writer,
	reconcile func(context.Context) (string, int64, error)) error {
	if o.doAudit {
		fmt.Fprintf(progress, "audit: %d order records against the books...\n", len(res.Records))
		auditStart := time.Now()
		a, err := audit.Run(ctx, audit.Config{
			LedgerDSN: o.dsn, AccountsDSN: o.accountsDSN, Recon: reconcile,
		}, res.Records)
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
		return fmt.Errorf("audit failed: lost %d, duplicated %d, half-applied %d, wrong %d, ledger verified %v, recon breaks %d",
			a.Lost, a.Duplicated, a.HalfApplied, a.Wrong, a.LedgerVerified, a.ReconBreaks)
	}
	return nil
}

func printSummary(w io.Writer, res *loadtest.Result, written report.Written) {
	o := res.Orders
	fmt.Fprintf(w, "\n== load test %s: %s profile, peak %.0f/s, %.0fs ==\n", res.RunID, res.Profile.Name, res.Profile.Peak(), res.DurationSeconds)
	fmt.Fprintf(w, "orders sent        %8d\n", o.Sent)
	fmt.Fprintf(w, "acknowledged       %8d   (accepted %d, rejected by a business rule %d)\n", o.Accepted+o.Rejected, o.Accepted, o.Rejected)
	fmt.Fprintf(w, "shed (429)         %8d\n", o.Shed)
	fmt.Fprintf(w, "failed             %8d\n", o.Failed)
	fmt.Fprintf(w, "dropped (client)   %8d   (more than %d in flight)\n", o.Dropped, res.MaxInFlight)
	if a := res.Audit; a != nil {
		fmt.Fprintf(w, "lost               %8d\n", a.Lost)
		fmt.Fprintf(w, "duplicated         %8d\n", a.Duplicated)
		fmt.Fprintf(w, "half-applied       %8d   (wrong %d; unacknowledged but applied whole %d)\n", a.HalfApplied, a.Wrong, a.UnackedApplied)
		fmt.Fprintf(w, "settled once       %8d   (subscriptions confirmed, standard redemptions paid)\n", a.Settled)
		fmt.Fprintf(w, "ledger verify      %8v   (shards %v)\n", a.LedgerVerified, a.Shards)
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
	} else {
		fmt.Fprintf(w, "lost / duplicated  not audited (--audit --dsn)\n")
	}
	l := res.Latency
	fmt.Fprintf(w, "latency ms         p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f   (all %d requests, from the scheduled send time)\n",
		l.P50Ms, l.P90Ms, l.P99Ms, l.P999Ms, l.MaxMs, res.Totals.Sent)
	if abs, err := filepath.Abs(written.HTML); err == nil {
		fmt.Fprintf(w, "report             %s\n", abs)
	}
	fmt.Fprintf(w, "                   %s, %d PNG charts beside it\n", written.JSON, len(written.PNGs))
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
