package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/deploy/devstack"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/loadtest"
)

// demoOpts are the knobs of `fundctl demo`; the defaults are what `make
// demo` runs.
type demoOpts struct {
	customers   int
	duration    time.Duration
	peakRPS     float64
	out         string
	income      string
	keepRunning bool
	verbose     bool
	setup       string
	subscribe   string
	parallelism int
}

const demoStopTimeout = 2 * time.Minute

func newDemoCmd() *cobra.Command {
	var d demoOpts
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "The whole platform in one process under a Double-11 night, audited (what make demo runs)",
		Long: `Starts every role in this process (deploy/devstack: a private Postgres, an in-process Kafka
broker, ledger shard 0 and its outbox relay, the accounts service, the gateway on loopback,
and settlement and reconciliation when configured), opens --customers customers with
balances through the REST API, runs a Double-11 profile against it (fundctl loadtest), runs
the day's settlement, audits every order against the books, prints the summary and the path
of the HTML report, and stops everything again (the private database is removed; the report
stays). Fails unless nothing was lost and nothing duplicated.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), d, cmd.ErrOrStderr(), cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.IntVar(&d.customers, "customers", 100_000, "customers to open")
	f.DurationVar(&d.duration, "duration", 2*time.Minute, "length of the Double-11 profile")
	f.Float64Var(&d.peakRPS, "peak-rps", 600, "midnight peak, requests/s (the baseline is 1/15 of it)")
	f.StringVar(&d.out, "out", "demo-report", "report directory (kept)")
	f.StringVar(&d.income, "income-per-10k", "0.6543", "the fund's income per 10,000 shares for the settlement")
	f.BoolVar(&d.verbose, "verbose", false, "log the platform's own messages to stderr")
	f.StringVar(&d.setup, "setup", "direct", "how customers are opened: api (REST, 3 calls each) or direct (the accounts service in-process)")
	f.IntVar(&d.parallelism, "setup-parallelism", 64, "setup calls at once")
	f.StringVar(&d.subscribe, "subscribe", "0", "part of each balance subscribed during setup (shares wait for confirmation)")
	return cmd
}

func runDemo(ctx context.Context, d demoOpts, progress, out io.Writer) (err error) {
	began := time.Now()
	logger := slog.New(slog.DiscardHandler)
	if d.verbose {
		logger = slog.New(slog.NewTextHandler(progress, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	fmt.Fprintln(progress, "demo: starting every role (private Postgres, in-process Kafka, ledger, relay, accounts, gateway)...")
	st, err := devstack.Start(ctx, devstack.Options{Logger: logger, Workers: demoWorkers(), AccountsConnsMax: int32(d.parallelism) + 32})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(progress, "demo: stopping everything and removing the private database...")
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), demoStopTimeout)
		defer cancel()
		if serr := st.Stop(sctx); serr != nil && err == nil {
			err = fmt.Errorf("stop: %w", serr)
		}
		fmt.Fprintf(progress, "demo: done in %.0fs\n", time.Since(began).Seconds())
	}()
	fmt.Fprintf(progress, "demo: up in %.1fs; gateway %s\n", time.Since(began).Seconds(), st.HTTPURL)

	o := loadtestOpts{
		target: st.HTTPURL, profile: "double11", duration: d.duration, peakRPS: d.peakRPS,
		peakRatio: loadtest.Double11PeakRatioDefault, mix: loadtest.DefaultMix().String(),
		customers: d.customers, balance: "1000.00", subscribe: d.subscribe, merchants: 20,
		hotMerchants: loadtest.HotMerchantsDefault, zipf: loadtest.ZipfSkewDefault,
		setupParallelism: d.parallelism, maxInFlight: loadtest.MaxInFlightDefault, timeout: loadtest.RequestTimeoutDefault,
		retries: loadtest.TimeoutRetriesDefault, out: d.out, doAudit: true, dsn: st.DSN, reconWait: time.Minute,
	}
	switch d.setup {
	case "direct":
		o.setupBackend = directSetup{st.Accounts}
	case "api":
	default:
		return fmt.Errorf("--setup %q: want api or direct", d.setup)
	}
	res, tokens, err := setupAndRun(ctx, &o, st.JWTKey, progress)
	if err != nil {
		return err
	}
	// Settle before the audit, so that the audit also sees the books after
	// settlement moved them (confirmations, payouts, income).
	settled := settleToday(ctx, st, d.income, progress)
	fmt.Fprintf(progress, "settlement: %s\n", settled)
	res.Notes = append(res.Notes, "Settlement after the run: "+settled)
	if err := auditAndReport(ctx, o, res, tokens.Admin(), progress, out); err != nil {
		return err
	}
	fmt.Fprintf(out, "settlement         %s\n", settled)
	return nil
}

// settleToday asks the admin API to settle today's business date; it
// reports what happened in one line (settlement may not be configured).
func settleToday(ctx context.Context, st *devstack.Stack, incomePer10k string, progress io.Writer) string {
	tok, err := st.Token(0, true, time.Hour)
	if err != nil {
		return "not run: " + err.Error()
	}
	date := time.Now().In(ledger.BusinessZone()).Format(time.DateOnly)
	fmt.Fprintf(progress, "demo: settling %s (income %s per 10,000 shares)...\n", date, incomePer10k)
	body, _ := json.Marshal(map[string]string{"date": date, "income_per_10k": incomePer10k})
	req, err := http.NewRequestWithContext(ctx, "POST", st.HTTPURL+"/v1/admin/settlements", bytes.NewReader(body))
	if err != nil {
		return "not run: " + err.Error()
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "demo-settle-"+date)
	start := time.Now()
	resp, err := (&http.Client{Timeout: 5 * time.Minute}).Do(req)
	if err != nil {
		return "failed: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode == http.StatusNotImplemented:
		return "not configured in this build (the gateway answered 501)"
	case resp.StatusCode != http.StatusOK:
		return fmt.Sprintf("failed: %d %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	var s struct {
		Date          string      `json:"date"`
		Status        string      `json:"status"`
		Income        string      `json:"income"`
		TotalShares   string      `json:"total_shares"`
		Accounts      json.Number `json:"accounts"`
		SevenDayYield string      `json:"seven_day_yield"`
	}
	_ = json.Unmarshal(b, &s)
	return fmt.Sprintf("%s %s: %s CNY income over %s shares, %s accounts, 7-day yield %q (%.1fs)",
		s.Date, s.Status, s.Income, s.TotalShares, s.Accounts, s.SevenDayYield, time.Since(start).Seconds())
}

// demoWorkers are the roles beyond the core that the demo runs:
// settlement and reconciliation, once they are wired for the dev stack.
func demoWorkers() []devstack.Worker { return nil }

// directSetup is the demo's bulk path for opening customers: the accounts
// service in-process, the same calls the gateway makes, without HTTP,
// JSON and tokens in between (which cost more CPU than the work itself on
// a small machine). Every call is idempotent by its key; transient errors
// are retried a bounded number of times.
type directSetup struct{ svc *accounts.Service }

const (
	directAttemptsMax = 5
	directPause       = 100 * time.Millisecond
)

func (d directSetup) retry(ctx context.Context, fn func() error) error {
	var err error
	for attempt := 0; attempt < directAttemptsMax; attempt++ {
		if err = fn(); err == nil || ctx.Err() != nil || isFinal(err) {
			return err
		}
		t := time.NewTimer(directPause << attempt)
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
