package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/fundplatform/fund/deploy/local"
	"github.com/fundplatform/fund/loadtest"
)

// The rehearsal's bounds (issue 16): in each fault's window at most 0.1%
// of the orders sent end with an error, and the success rate is back at
// 99% within 10 s.
const (
	rehearseErrorPctMax   = 0.1
	rehearseRecoveryMax   = 10 * time.Second
	rehearseDurationDef   = 10 * time.Minute
	rehearseRateDefault   = 100
	rehearsePeakRatio     = 10 // the Double-11 profile's peak over its calm evening
	rehearseStopTimeout   = 2 * time.Minute
	rehearseReconCatchUp  = 3 * time.Minute
	rehearseCustomersDef  = 1000
	rehearseMerchantsDef  = 20
	rehearseSetupParallel = 16
)

// rehearseDay is where the cluster's test clock starts: Monday 2026-11-09
// 10:00 in China Standard Time. The setup subscribes then, settles Monday
// and Tuesday (the confirm date) at Tuesday 15:30, and the night runs from
// there; kill-settle settles Double-11 itself.
var rehearseDay = time.Date(2026, 11, 9, 10, 0, 0, 0, time.FixedZone("CST", 8*3600))

type rehearseOpts struct {
	faults, out          string
	rate                 float64
	duration             time.Duration
	customers, merchants int
	seed                 uint64
	fundd, fundbroker    string
}

func newRehearseCmd() *cobra.Command {
	var o rehearseOpts
	cmd := &cobra.Command{
		Use:   "rehearse",
		Short: "A Double-11 night against a local multi-process cluster, with faults injected from a schedule",
		Long: `Starts the local cluster (deploy/local: 3 ledger owners and 2 gateways over 8 shards on 2
databases, recon, settle, the broker process, a private Postgres, all on a shared test clock), opens
--customers customers and confirms their shares, then runs a Double-11 load (Poisson arrivals, the
default mix, the app's retries with the same key; --rate is the midnight peak, the evening a tenth
of it) for --duration while a scheduler injects each fault of --faults at its offset: kill -9 of the
busiest shard owner, of a gateway, Postgres restarted -m immediate, an owner frozen past its lease,
reconciliation stopped, the nightly settlement killed mid-run and resumed, the broker unreachable.
Without --faults it runs deploy/local/rehearsal/double11.json (every fault once).

Afterwards it audits every order against the books (lost, duplicated, half-applied, orphans,
sagas, reconciliation of every business date of the run) and writes the load test's report into
--out with each fault drawn on the time charts and a fault table: its window (the fault plus the
schedule's tail), orders sent, orders that ended with an error (5xx, or none after the client's
retries) and their share, and the recovery time (until the per-second success rate is back at
99% and stays there 3 s). It fails when a window has more than 0.1% errors, a recovery takes 10 s
or more, a fault could not be injected, or the audit fails. The cluster's logs stay in --out/cluster.`,
		Example: `  fundctl rehearse --rate 120 --duration 10m --out rehearsal
  fundctl rehearse --faults my-faults.json --rate 80 --duration 2m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRehearse(cmd.Context(), o, cmd.ErrOrStderr(), cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.faults, "faults", "", "fault schedule (JSON; default: deploy/local/rehearsal/double11.json)")
	f.Float64Var(&o.rate, "rate", rehearseRateDefault, "the Double-11 profile's peak, orders/s")
	f.DurationVar(&o.duration, "duration", 0, "length of the load (default: the schedule's, else 10m)")
	f.StringVar(&o.out, "out", "", "report directory (default rehearsal-<time>)")
	f.IntVar(&o.customers, "customers", rehearseCustomersDef, "customers to open")
	f.IntVar(&o.merchants, "merchants", rehearseMerchantsDef, "merchants to register")
	f.Uint64Var(&o.seed, "seed", 0, "random seed of the load (0 = from the clock; printed)")
	f.StringVar(&o.fundd, "fundd", "", "fundd binary (default: build this module's)")
	f.StringVar(&o.fundbroker, "fundbroker", "", "fundbroker binary (default: build this module's)")
	return cmd
}

// runRehearse is the whole of `fundctl rehearse`.
func runRehearse(ctx context.Context, o rehearseOpts, progress, out io.Writer) (err error) {
	// The cluster's supervisor logs and the load's progress bar write to it
	// from their own goroutines.
	progress = &lockedWriter{w: progress}
	sched, plan, err := o.plan()
	if err != nil {
		return err
	}
	if o.out == "" {
		o.out = "rehearsal-" + time.Now().Format("20060102-150405")
	}
	dir, err := filepath.Abs(filepath.Join(o.out, "cluster"))
	if err != nil {
		return err
	}
	fmt.Fprintf(progress, "rehearse: starting the local cluster (logs in %s)\n", dir)
	logger := slog.New(slog.NewTextHandler(progress, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := local.Start(ctx, local.Config{Dir: dir, Logger: logger, TestClock: true, TestClockStart: rehearseDay,
		Fundd: o.fundd, FundBroker: o.fundbroker})
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rehearseStopTimeout)
		defer cancel()
		if serr := c.Stop(sctx); serr != nil {
			fmt.Fprintf(progress, "rehearse: cluster stop: %v\n", serr)
		}
		for _, bin := range []string{"fundd", "fundbroker"} { // built into the log directory: not worth keeping
			_ = os.Remove(filepath.Join(dir, bin))
		}
	}()
	fmt.Fprintf(progress, "rehearse: cluster up at %s: %d owners, %d gateways, %d shards on %d databases\n",
		c.URL, len(c.Owners), len(c.Gateways), c.Shards, len(c.LedgerDSNs))
	lo := o.loadtestOpts(c)
	p, err := planLoad(&lo, c.JWTKey)
	if err != nil {
		return err
	}
	customers, merchants, err := p.setup(ctx, progress)
	if err != nil {
		return err
	}
	note, err := rehearseConfirm(ctx, c, p, progress)
	if err != nil {
		return err
	}
	res, events, err := rehearseUnderFaults(ctx, c, p, plan, customers, merchants, progress)
	if err != nil {
		return err
	}
	res.Notes = append(res.Notes, note, fmt.Sprintf("Rehearsal on the local cluster (%d owners, %d gateways, %d shards on %d databases), fault schedule %s.",
		len(c.Owners), len(c.Gateways), c.Shards, len(c.LedgerDSNs), o.scheduleName()))
	judgeFaults(res, events, sched.TailOr())
	auditErr := auditAndReport(ctx, lo, res, progress, out, func(ctx context.Context) (string, int64, error) {
		now, err := c.ClockNow(ctx)
		if err != nil {
			return "", 0, err
		}
		return c.Reconcile(ctx, c.TestClockStart, now)
	})
	printFaults(out, res, events, c.Restarts())
	return errors.Join(auditErr, faultsVerdict(res))
}

// rehearseConfirm confirms the setup's subscriptions as the cluster
// would at night: fundd settle settles their dates once the test clock is
// moved past them (the cluster's gateways settle nothing on demand), so
// the night's load starts just after midnight of the day after the last
// confirm date.
func rehearseConfirm(ctx context.Context, c *local.Cluster, p *loadPlan, progress io.Writer) (string, error) {
	p.datesMu.Lock()
	tradeDate, confirmDate := p.tradeDate, p.confirmDate
	p.datesMu.Unlock()
	if confirmDate == "" {
		return "", nil
	}
	started := time.Now()
	now, err := c.SettleThrough(ctx, confirmDate, p.o.setupIncome)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(progress, "setup: shares confirmed: fundd settle settled %s through %s in %.1fs; business time now %s\n",
		tradeDate, confirmDate, time.Since(started).Seconds(), now)
	return fmt.Sprintf("Setup on the cluster's test clock: its subscriptions (traded from %s, due by %s) confirmed by fundd settle (income %s per 10,000 shares); the night starts at %s.",
		tradeDate, confirmDate, p.o.setupIncome, now), nil
}

// plan reads the schedule and places it in the run.
func (o *rehearseOpts) plan() (local.Schedule, []local.PlannedFault, error) {
	sched := local.DefaultSchedule()
	if o.faults != "" {
		var err error
		if sched, err = local.ReadSchedule(o.faults); err != nil {
			return sched, nil, err
		}
	}
	if o.duration == 0 {
		o.duration = time.Duration(sched.Duration)
	}
	if o.duration == 0 {
		o.duration = rehearseDurationDef
	}
	if o.rate <= 0 {
		return sched, nil, fmt.Errorf("--rate %v: want more than 0", o.rate)
	}
	plan, err := sched.Plan(o.duration)
	return sched, plan, err
}

func (o rehearseOpts) scheduleName() string {
	if o.faults == "" {
		return "deploy/local/rehearsal/double11.json"
	}
	return o.faults
}

// loadtestOpts are `fundctl loadtest`'s options for the rehearsal's load
// against cluster c, audited against its databases.
func (o rehearseOpts) loadtestOpts(c *local.Cluster) loadtestOpts {
	return loadtestOpts{
		target: c.URL, profile: "double11", duration: o.duration, peakRPS: o.rate, peakRatio: rehearsePeakRatio,
		mix: loadtest.DefaultMix().String(), customers: o.customers, merchants: o.merchants,
		hotMerchants: loadtest.HotMerchantsDefault, zipf: loadtest.ZipfSkewDefault, balance: "auto", subscribe: "auto",
		setupIncome: "0.6500", arrivals: string(loadtest.ArrivalsPoisson), setupParallelism: rehearseSetupParallel,
		maxInFlight: loadtest.MaxInFlightDefault, timeout: loadtest.RequestTimeoutDefault, retries: loadtest.TimeoutRetriesDefault,
		seed: o.seed, out: o.out, doAudit: true, dsn: strings.Join(c.LedgerDSNs, ","), auditShards: c.Shards,
		reconWait: rehearseReconCatchUp,
	}
}

// rehearseUnderFaults runs the load and, beside it, the fault schedule
// from the load's start; the faults stop when the load ends.
func rehearseUnderFaults(ctx context.Context, c *local.Cluster, p *loadPlan, plan []local.PlannedFault,
	customers, merchants []int64, progress io.Writer) (*loadtest.Result, []local.FaultEvent, error) {
	fctx, stopFaults := context.WithCancel(ctx)
	defer stopFaults()
	var (
		events []local.FaultEvent
		wg     sync.WaitGroup
	)
	start := time.Now()
	wg.Add(1)
	go func() {
		defer wg.Done()
		events = c.RunFaults(fctx, start, plan, progress)
	}()
	res, err := p.run(ctx, customers, merchants, progress)
	// No fault starts after the load; one in progress heals first
	// (RunFaults), so that nothing is left frozen or down.
	stopFaults()
	wg.Wait()
	if err != nil {
		return nil, nil, err
	}
	return res, events, nil
}

// judgeFaults turns the fault events into the result's markers and
// windows, each judged against the rehearsal's bounds; a fault that could
// not be injected as planned fails its window.
func judgeFaults(res *loadtest.Result, events []local.FaultEvent, tail time.Duration) {
	for _, ev := range events {
		m := loadtest.Marker{Name: ev.Name, Detail: ev.Detail, StartS: ev.Start.Sub(res.StartedAt).Seconds(),
			EndS: ev.End.Sub(res.StartedAt).Seconds()}
		if ev.Err != "" {
			m.Detail = strings.TrimPrefix(m.Detail+"; ", "; ") + "FAILED: " + ev.Err
		}
		res.Markers = append(res.Markers, m)
		w := loadtest.WindowOf(res.Records, res.StartedAt, m, tail)
		w.Judge(rehearseErrorPctMax, rehearseRecoveryMax)
		if ev.Err != "" {
			w.Pass, w.Why = false, "not injected as planned"
		}
		res.Windows = append(res.Windows, w)
	}
}

// faultsVerdict fails when a window broke a bound.
func faultsVerdict(res *loadtest.Result) error {
	var bad []string
	for _, w := range res.Windows {
		if !w.Pass {
			bad = append(bad, fmt.Sprintf("%s (%s: %d of %d orders ended with an error, %.3f%%; recovery %s)", w.Name, w.Why,
				w.Errors, w.Sent, w.ErrorPct, recoveryText(w)))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("rehearsal: %d of %d faults outside the bounds (errors at most %.1f%% of a window's orders, recovery under %s): %s",
		len(bad), len(res.Windows), rehearseErrorPctMax, rehearseRecoveryMax, strings.Join(bad, "; "))
}

func recoveryText(w loadtest.Window) string {
	if !w.Recovered {
		return "not recovered within the window"
	}
	return fmt.Sprintf("%.0f s", w.RecoveryS)
}

// printFaults prints the fault table, the errors outside every window and
// the supervisor's restarts.
func printFaults(w io.Writer, res *loadtest.Result, events []local.FaultEvent, restarts map[string]int) {
	fmt.Fprintf(w, "faults             %-17s %13s %8s %7s %8s %9s  %s\n", "", "window s", "sent", "errors", "error%", "recovery", "verdict")
	for _, win := range res.Windows {
		verdict := "ok"
		if !win.Pass {
			verdict = "FAILED: " + win.Why
		}
		fmt.Fprintf(w, "                   %-17s %6.1f-%6.1f %8d %7d %7.3f%% %9s  %s\n", win.Name, win.StartS, win.EndS, win.Sent, win.Errors,
			win.ErrorPct, recoveryText(win), verdict)
		if len(win.ErrorsByCode) > 0 {
			fmt.Fprintf(w, "                     errors by answer: %s\n", reasons(win.ErrorsByCode))
		}
	}
	for _, ev := range events {
		fmt.Fprintf(w, "fault %-12s %s\n", ev.Name, ev.Detail)
		if ev.Err != "" {
			fmt.Fprintf(w, "  ! %s\n", ev.Err)
		}
	}
	outside := map[string]int64{}
	for _, r := range res.Records {
		if r.Outcome != loadtest.Failed && r.Outcome != loadtest.Dropped {
			continue
		}
		in := false
		for _, win := range res.Windows {
			s, e := res.StartedAt.Add(secondsDur(win.StartS)), res.StartedAt.Add(secondsDur(win.EndS))
			in = in || !r.Due.After(e) && !r.Ended.Before(s)
		}
		if !in {
			code := r.Code
			if code == "" {
				code = string(r.Outcome)
			}
			outside[code]++
		}
	}
	fmt.Fprintf(w, "errors outside the fault windows: %s\n", reasons(outside))
	fmt.Fprintf(w, "supervisor restarts: %v\n", restarts)
}

func secondsDur(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// lockedWriter serialises the writes of several goroutines to one writer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
