package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/deploy/devstack"
	"github.com/fundplatform/fund/gateway"
	"github.com/fundplatform/fund/internal/localpg"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/settlement"
	settlekafka "github.com/fundplatform/fund/settlement/kafka"
	settlepg "github.com/fundplatform/fund/settlement/postgres"
)

// Bounds of the settlement schedule.
const (
	settleTickDefault  = time.Minute
	settleDelayDefault = 30 * time.Minute
	incomeFileBytesMax = 256
)

// newSettleCmd is `fundd settle`: the nightly settlement on a schedule.
func newSettleCmd() *cobra.Command {
	var (
		dsn, incomeDir, fileDir, brokers, topic, from, httpAddr string
		shards, parallel                                        int
		delay, tick                                             time.Duration
		take                                                    bool
	)
	cmd := &cobra.Command{
		Use:   "settle",
		Short: "Run the nightly settlement on a schedule, after each business date ends",
		Long: `Settles business dates one after another: the date after the last one settled (or
--from for the first), once it has ended plus --delay (China Standard Time) and its income is
known. The income of date D is read from --income-dir/D (one line: "income=123.45" for the
fund total in CNY, or "income_per_10k=0.6543"). An unfinished run (a crash) is resumed with the
income it started with. Each run owns every ledger shard for its duration (see fundctl settle
run); with --take-shards it fences ledger processes that still own them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if dsn == "" {
				dsn = os.Getenv(localpg.EnvDSN)
			}
			if dsn == "" {
				return fmt.Errorf("no database: give --dsn or set %s", localpg.EnvDSN)
			}
			var first time.Time
			if from != "" {
				d, err := settlement.ParseDate(from)
				if err != nil {
					return err
				}
				first = d
			}
			logger := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("role", "settle")
			store, yields, closeStore, err := settlepg.OpenForRunner(ctx, dsn, parallel)
			if err != nil {
				return err
			}
			defer closeStore()
			var events settlement.EventPublisher
			if brokers != "" {
				pub := settlekafka.NewPublisher(strings.Split(brokers, ","), topic)
				defer pub.Close()
				events = pub
			}
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			metrics := newSettleMetrics(reg)
			runner := settlement.NewRunner(settlement.Config{Shards: shards, Parallel: parallel, FileDir: fileDir,
				TakeShards: take, Observe: metrics.observe}, store, yields, events, logger)
			if httpAddr != "" {
				stop, err := serveMetrics(httpAddr, reg, logger)
				if err != nil {
					return err
				}
				defer stop()
			}
			s := &schedule{runner: runner, store: store, incomeDir: incomeDir, first: first, delay: delay, log: logger,
				now: time.Now}
			return s.run(ctx, tick)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dsn, "dsn", "", "Postgres of the ledger and accounts (default $"+localpg.EnvDSN+")")
	f.StringVar(&incomeDir, "income-dir", ".", "directory with one file per date (YYYY-MM-DD) holding its income")
	f.StringVar(&fileDir, "file-dir", ".", "where custodian files are written")
	f.StringVar(&from, "from", "", "first date to settle when none was settled yet (default: yesterday)")
	f.IntVar(&shards, "shards", 0, "logical ledger shards (as fundd ledger --shards); 0 = as many as the ledger's tables show")
	f.IntVar(&parallel, "parallel", 2, "shards settled at once")
	f.DurationVar(&delay, "delay", settleDelayDefault, "how long after a date ends its settlement starts")
	f.DurationVar(&tick, "tick", settleTickDefault, "how often to look for a date to settle")
	f.BoolVar(&take, "take-shards", false, "fence ledger processes that still own shards")
	f.StringVar(&brokers, "kafka", "", "Kafka brokers for settlement events; empty = none")
	f.StringVar(&topic, "topic", settlekafka.TopicDefault, "Kafka topic of settlement events")
	f.StringVar(&httpAddr, "http-addr", "127.0.0.1:9104", "where /metrics is served; empty = nowhere")
	return cmd
}

// settleMetrics are the settlement's Prometheus metrics (names from the
// contract).
type settleMetrics struct {
	lastSuccess prometheus.Gauge
	accounts    prometheus.Counter
}

func newSettleMetrics(reg prometheus.Registerer) *settleMetrics {
	m := &settleMetrics{
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "fund_settlement_last_success_timestamp_seconds",
			Help: "When the last settlement run finished successfully (Unix seconds)."}),
		accounts: prometheus.NewCounter(prometheus.CounterOpts{Name: "fund_settlement_accounts_total",
			Help: "Holders whose income the settlement runs distributed."}),
	}
	reg.MustRegister(m.lastSuccess, m.accounts)
	return m
}

func (m *settleMetrics) observe(s settlement.Summary) {
	m.lastSuccess.SetToCurrentTime()
	m.accounts.Add(float64(s.Holders))
}

// metricsShutdownTimeout bounds the metrics server's shutdown.
const metricsShutdownTimeout = 5 * time.Second

// serveMetrics serves /metrics until the returned stop is called.
func serveMetrics(addr string, reg *prometheus.Registry, logger *slog.Logger) (stop func(), err error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics server", "err", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), metricsShutdownTimeout)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}

// schedule settles dates one after another as they become due.
type schedule struct {
	runner    *settlement.Runner
	store     settlement.Store
	incomeDir string
	first     time.Time
	delay     time.Duration
	log       *slog.Logger
	now       func() time.Time
}

func (s *schedule) run(ctx context.Context, tick time.Duration) error {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		if err := s.once(ctx); err != nil {
			// A failed run is retried on the next tick (it resumes); the
			// error is the operator's to see.
			s.log.Error("settlement", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// once settles every date that is due, oldest first, at most a week's
// worth per call so a long backlog does not starve shutdown checks.
func (s *schedule) once(ctx context.Context) error {
	const datesPerCallMax = 7
	for i := 0; i < datesPerCallMax && ctx.Err() == nil; i++ {
		date, err := s.next(ctx)
		if err != nil {
			return err
		}
		end := time.Date(date.Year(), date.Month(), date.Day()+1, 0, 0, 0, 0, ledger.BusinessZone())
		if s.now().Before(end.Add(s.delay)) {
			return nil
		}
		in, ok, err := s.input(ctx, date)
		if err != nil || !ok {
			return err
		}
		sum, err := s.runner.Run(ctx, in, nil)
		if err != nil {
			return fmt.Errorf("settle %s: %w", date.Format(time.DateOnly), err)
		}
		s.log.Info("settled", "date", sum.Date, "holders", sum.Holders, "fund_income", settlement.FormatFen(sum.FundIncome),
			"seven_day_yield", sum.SevenDayYield, "file", sum.File, "took", sum.Took)
	}
	return nil
}

// next is the date to settle: an unfinished one, else the day after the
// last one settled, else --from (or yesterday).
func (s *schedule) next(ctx context.Context) (time.Time, error) {
	// Walk back from yesterday to find the newest run; dates are
	// contiguous, so the newest one found decides.
	yesterday := accounts.NaturalDay(s.now()).AddDate(0, 0, -1)
	const lookBackDays = 400
	for d, i := yesterday, 0; i < lookBackDays; d, i = d.AddDate(0, 0, -1), i+1 {
		st, ok, err := s.store.Run(ctx, d)
		if err != nil {
			return time.Time{}, err
		}
		if ok {
			if !st.Completed {
				return d, nil
			}
			return d.AddDate(0, 0, 1), nil
		}
		if !s.first.IsZero() && !d.After(s.first) {
			break
		}
	}
	if !s.first.IsZero() {
		return s.first, nil
	}
	return yesterday, nil
}

// input returns a date's income: the one an unfinished run started with,
// or the one in the income directory; ok is false when none is there yet.
func (s *schedule) input(ctx context.Context, date time.Time) (settlement.Input, bool, error) {
	if st, ok, err := s.store.Run(ctx, date); err != nil || ok {
		return st.Input, ok, err
	}
	name := filepath.Join(s.incomeDir, date.Format(time.DateOnly))
	f, err := os.Open(name)
	if errors.Is(err, os.ErrNotExist) {
		s.log.Info("waiting for the date's income", "date", date.Format(time.DateOnly), "file", name)
		return settlement.Input{}, false, nil
	}
	if err != nil {
		return settlement.Input{}, false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, incomeFileBytesMax), incomeFileBytesMax)
	if !sc.Scan() {
		return settlement.Input{}, false, fmt.Errorf("%s: empty: %w", name, settlement.ErrIncomeForm)
	}
	key, value, _ := strings.Cut(strings.TrimSpace(sc.Text()), "=")
	var in settlement.Input
	switch key {
	case "income":
		in, err = settlement.ParseInput(date.Format(time.DateOnly), value, "")
	case "income_per_10k":
		in, err = settlement.ParseInput(date.Format(time.DateOnly), "", value)
	default:
		err = fmt.Errorf("%s: want income=X or income_per_10k=X: %w", name, settlement.ErrIncomeForm)
	}
	return in, err == nil, err
}

// gatewaySettler serves the gateway's admin settlement calls with a
// settlement.Settler.
type gatewaySettler struct{ s settlement.Settler }

var _ gateway.Settler = gatewaySettler{}

func (g gatewaySettler) Run(ctx context.Context, req gateway.SettlementRequest) (gateway.SettlementRun, error) {
	in := settlement.Input{Date: accounts.DateOf(req.Date), PerTenK: req.HasIncomePer10k, IncomeTotal: req.Income,
		IncomePer10k: req.IncomePer10k}
	if req.HasIncomePer10k {
		in.IncomeTotal = 0
	}
	started := time.Now()
	sum, err := g.s.Settle(ctx, in)
	if err != nil {
		return gateway.SettlementRun{}, gatewayErr(err, req.HasIncomePer10k)
	}
	return runOf(sum, started), nil
}

func (g gatewaySettler) Get(ctx context.Context, date time.Time) (gateway.SettlementRun, error) {
	st, ok, err := g.s.Status(ctx, date)
	if err != nil {
		return gateway.SettlementRun{}, err
	}
	if !ok {
		return gateway.SettlementRun{}, fmt.Errorf("%s: %w", date.Format(time.DateOnly), gateway.ErrSettlementNotFound)
	}
	if !st.Completed {
		return gateway.SettlementRun{Date: accounts.DateOf(date), Status: "RUNNING", HasIncomePer10k: st.Input.PerTenK,
			Income: st.Input.IncomeTotal, IncomePer10k: st.Input.IncomePer10k}, nil
	}
	return runOf(st.Summary, time.Time{}), nil
}

func runOf(s settlement.Summary, started time.Time) gateway.SettlementRun {
	d, _ := time.Parse(time.DateOnly, s.Date)
	r := gateway.SettlementRun{Date: d, Status: "COMPLETED", Income: s.FundIncome, IncomePer10k: s.IncomePer10k,
		HasIncomePer10k: true, TotalShares: s.TotalShares, Accounts: s.Holders, SevenDayYield: s.SevenDayYield,
		Message: fmt.Sprintf("custodian file %s (SHA-256 %s)", s.File, s.FileSHA256)}
	if !started.IsZero() {
		r.StartedAt, r.FinishedAt = started, started.Add(s.Took)
	}
	return r
}

// gatewayErr adds to a settlement error the accounts error the gateway's
// table maps to a status.
func gatewayErr(err error, per10k bool) error {
	var mapped error
	switch {
	case errors.Is(err, settlement.ErrInvalidIncome) && per10k:
		mapped = accounts.ErrIncomePer10kRange
	case errors.Is(err, settlement.ErrInvalidIncome), errors.Is(err, settlement.ErrIncomeForm),
		errors.Is(err, settlement.ErrInvalidDate):
		mapped = accounts.ErrInvalidAmount
	case errors.Is(err, settlement.ErrRunConflict):
		mapped = accounts.ErrRecordConflict
	case errors.Is(err, settlement.ErrOutOfOrder), errors.Is(err, settlement.ErrTooEarly):
		mapped = accounts.ErrYieldGap
	default:
		return err
	}
	return fmt.Errorf("%w: %w", mapped, err)
}

// newSettleWorker is the settlement role of `fundd dev`: the admin API's
// settlement calls, over the stack's database. Add it to devWorkers.
//
// The run owns the ledger shards while it settles: it fences the stack's
// sequencer of shard 0 (its commits fail with ledger.ErrFenced), which
// must then be restarted at the shard's new epoch. Until the stack does
// that (a hook around Settle), settle in dev only with the ledger idle and
// restart `fundd dev` afterwards.
func newSettleWorker(fileDir string) devstack.Worker {
	return devstack.Worker{Name: "settlement", Start: func(ctx context.Context, s *devstack.Stack) (devstack.Role, error) {
		store, err := settlepg.Open(ctx, settlepg.Config{DSN: s.DSN, ConnsMax: 4})
		if err != nil {
			return devstack.Role{}, err
		}
		metrics := newSettleMetrics(s.Registry)
		runner := settlement.NewRunner(settlement.Config{Shards: 1, FileDir: fileDir, TakeShards: true,
			Observe: metrics.observe}, store, s.Accounts, nil, s.Logger)
		return devstack.Role{Settler: gatewaySettler{runner}, Close: store.Close}, nil
	}}
}
