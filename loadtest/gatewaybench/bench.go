package gatewaybench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/fundplatform/fund/gateway"
	"github.com/fundplatform/fund/internal/devstack"
	"github.com/fundplatform/fund/internal/localpg"
	"github.com/fundplatform/fund/ledger"
)

// Config of a run.
type Config struct {
	DSN string // "" = a private Postgres
	// Shards and Databases of the stack (devstack.Options): customers are
	// spread over the shards; 0 = the dev stack's defaults. Databases > 1
	// needs the private Postgres (no DSN).
	Shards, Databases int
	Customers         int // each gets a token and a balance; the per-customer rate limit applies
	Clients           int // closed-loop connections
	Duration          time.Duration
	// OpenRate > 0 adds an open-loop phase at this many requests/s; 0 =
	// none. OpenRateFactor > 0 sets it to that multiple of the closed
	// loop's throughput instead.
	OpenRate        float64
	OpenRateFactor  float64
	OpenInFlightMax int // open loop: requests outstanding at most; more are counted as not sent
	// ConnsMax bounds the generator's connections (a request waits for a
	// free one, and that wait counts in its latency); 0 = 1024, or Clients
	// if more. Unbounded, an overloaded open loop would dial until it ran
	// out of file descriptors.
	ConnsMax int
	Gateway  gateway.Config
	Loopback bool // REST through a loopback gRPC connection
	// OrderWriters and OrderBatchMax tune the accounts store (0 = defaults).
	OrderWriters, OrderBatchMax int
	// Fill makes every ledger sequencer fill its next batch while one
	// commits (ledger.SequencerConfig.FillWhileCommitting); unset, the
	// dev stack's does where several shards share a database.
	Fill       bool
	PGSettings map[string]string
	Progress   io.Writer
	Logger     *slog.Logger
}

// Phase is one phase's figures.
type Phase struct {
	Name          string  `json:"name"`
	OfferedPerSec float64 `json:"offered_per_s,omitempty"`
	Seconds       float64 `json:"seconds"`
	OK            int64   `json:"ok"`
	Shed          int64   `json:"shed_429"`
	Rejected      int64   `json:"rejected_422"`
	Errors        int64   `json:"errors"`
	NotSent       int64   `json:"not_sent"`
	OKPerSec      float64 `json:"ok_per_s"`
	P50Ms         float64 `json:"ok_p50_ms"`
	P99Ms         float64 `json:"ok_p99_ms"`
	P999Ms        float64 `json:"ok_p999_ms"`
	MaxMs         float64 `json:"ok_max_ms"`
	ShedP99Ms     float64 `json:"shed_p99_ms"`
	// The p99 of the accepted requests from the first byte written to the
	// answer read: what the gateway and the stack behind it took, without
	// the generator's own lateness (waiting for a CPU or a connection
	// before sending), which the figures above, timed from each request's
	// scheduled start, include. The two differ once the generator, on the
	// same cores, falls behind.
	WireP99Ms float64 `json:"ok_wire_p99_ms"`
	// CPU per request answered (any status) in this process (gateway,
	// accounts, ledger writer and the load generator itself) and in the
	// private Postgres (postmaster and its children; 0 with --dsn).
	GoCPUMicros float64 `json:"go_cpu_us_per_req"`
	PGCPUMicros float64 `json:"pg_cpu_us_per_req"`
	FirstError  string  `json:"first_error,omitempty"`
}

// Result of Run.
type Result struct {
	Shards    int     `json:"shards"`
	Databases int     `json:"databases"`
	Customers int     `json:"customers"`
	Clients   int     `json:"clients"`
	Loopback  bool    `json:"rest_via_loopback"`
	Phases    []Phase `json:"phases"`
	// Where the accounts store's order writers spent their time, summed
	// over batches, over the whole run (setup included).
	OrderBatches   int64            `json:"order_batches"`
	OrderBatchMean float64          `json:"order_batch_mean"`
	OrderStepsMs   map[string]int64 `json:"order_steps_ms"`
	LedgerBatches  int64            `json:"ledger_batches"`
	LedgerEvents   int64            `json:"ledger_events"`
	// LedgerCommits are the ledger's batch transactions (several shards'
	// batches may share one) and LedgerLookups its id lookup round trips,
	// summed over the databases.
	LedgerCommits int64            `json:"ledger_commits"`
	LedgerLookups int64            `json:"ledger_lookups"`
	LedgerStepsMs map[string]int64 `json:"ledger_steps_ms"`
}

func (c *Config) setDefaults() {
	if c.Customers == 0 {
		c.Customers = 2000
	}
	if c.Clients == 0 {
		c.Clients = 256
	}
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.OpenInFlightMax == 0 {
		c.OpenInFlightMax = 20_000
	}
	if c.ConnsMax == 0 {
		c.ConnsMax = max(1024, c.Clients)
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
}

// Run starts a devstack, opens and funds the customers, runs the phases and
// stops the stack.
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg.setDefaults()
	gcfg := cfg.Gateway
	gcfg.RESTViaLoopback = cfg.Loopback
	st, err := devstack.Start(ctx, devstack.Options{DSN: cfg.DSN, Shards: cfg.Shards, Databases: cfg.Databases,
		PGSettings: cfg.PGSettings, Gateway: gcfg, Logger: cfg.Logger,
		Sequencer:    ledger.SequencerConfig{FillWhileCommitting: cfg.Fill},
		OrderWriters: cfg.OrderWriters, OrderBatchMax: cfg.OrderBatchMax})
	if err != nil {
		return Result{}, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		_ = st.Stop(sctx)
	}()
	fmt.Fprintf(cfg.Progress, "gateway at %s, %d ledger shards on %d databases; opening %d customers...\n",
		st.HTTPURL, st.Shards, len(st.DSNs), cfg.Customers)
	custs, err := setup(ctx, st, cfg.Customers)
	if err != nil {
		return Result{}, err
	}
	host := strings.TrimPrefix(st.HTTPURL, "http://")
	pool := newWirePool(host, max(cfg.Clients, cfg.ConnsMax))
	defer pool.close()
	l := &loader{wire: &wireLoader{pool: pool, timeout: 30 * time.Second}, custs: custs}
	for i := range l.custs {
		c := &l.custs[i]
		c.req = newRequest(host, strings.TrimPrefix(c.path, st.HTTPURL), c.token, body)
	}

	if st.Postgres != nil {
		l.pgDataDir = st.Postgres.DataDir()
	}
	res := Result{Shards: st.Shards, Databases: len(st.DSNs), Customers: cfg.Customers, Clients: cfg.Clients, Loopback: cfg.Loopback}
	// A short warm-up: connections, pools, JIT-free but cache-warm.
	l.closed(ctx, "warm-up", cfg.Clients, min(2*time.Second, cfg.Duration), io.Discard)
	closed := l.closed(ctx, "closed loop", cfg.Clients, cfg.Duration, cfg.Progress)
	res.Phases = append(res.Phases, closed)
	rate := cfg.OpenRate
	if cfg.OpenRateFactor > 0 {
		rate = cfg.OpenRateFactor * closed.OKPerSec
	}
	if rate > 0 {
		res.Phases = append(res.Phases, l.open(ctx, rate, cfg.Duration, cfg.OpenInFlightMax, cfg.Progress))
	}
	os := st.AccountsShards.OrderStats()
	res.OrderBatches = os.Batches
	if os.Batches > 0 {
		res.OrderBatchMean = float64(os.Orders) / float64(os.Batches)
	}
	res.OrderStepsMs = map[string]int64{"acquire": os.Begin.Milliseconds(),
		"claim": os.Claim.Milliseconds(), "apply": os.Apply.Milliseconds(), "record": os.Record.Milliseconds(),
		"commit": os.Commit.Milliseconds()}
	res.ledgerStats(st)
	return res, nil
}

// ledgerStats sums the sequencers' counters and phase times over the
// shards served now.
func (res *Result) ledgerStats(st *devstack.Stack) {
	phases := map[string]ledger.Phase{"lookup": ledger.PhaseLookup, "wait": ledger.PhaseWait,
		"apply": ledger.PhaseApply, "commit": ledger.PhaseCommit}
	res.LedgerStepsMs = map[string]int64{}
	for shard := range st.Shards {
		seq, ok := st.LedgerSequencerOf(shard)
		if !ok {
			continue
		}
		batches, events := seq.Stats()
		res.LedgerBatches += batches
		res.LedgerEvents += events
		for name, p := range phases {
			res.LedgerStepsMs[name] += seq.PhaseTime(p).Milliseconds()
		}
	}
	dbs := st.Owner.Databases()
	for i := range dbs.Len() {
		ls := dbs.Store(i).Stats()
		res.LedgerCommits += ls.Commits
		res.LedgerLookups += ls.Lookups
	}
}

// shedPause is how long a closed-loop client waits after a 429.
const shedPause = 5 * time.Millisecond

type customer struct {
	id    int64
	token string
	path  string
	req   request
}

// setup opens and funds the customers directly through the service (what
// is measured is the subscribe path, not the setup).
func setup(ctx context.Context, st *devstack.Stack, n int) ([]customer, error) {
	out := make([]customer, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 64)
	for i := range out {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := st.Accounts.OpenCustomer(ctx, "bench-open-"+strconv.Itoa(i), "bench "+strconv.Itoa(i))
			if err != nil {
				errs <- err
				return
			}
			if _, err := st.Accounts.TopUp(ctx, c.ID, "bench-fund", 1_000_000_00); err != nil {
				errs <- err
				return
			}
			tok, err := st.Token(int64(c.ID), false, 24*time.Hour)
			if err != nil {
				errs <- err
				return
			}
			out[i] = customer{id: int64(c.ID), token: "Bearer " + tok,
				path: st.HTTPURL + "/v1/customers/" + strconv.FormatInt(int64(c.ID), 10) + "/subscriptions"}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	return out, nil
}

type loader struct {
	pgDataDir string
	wire      *wireLoader
	custs     []customer
	seq       atomic.Int64
}

const body = `{"amount":"0.01"}`

// one sends a subscribe for the next customer (round robin) and returns the
// status (0 = no answer).
func (l *loader) one(ctx context.Context) (int, time.Duration, error) {
	n := l.seq.Add(1)
	c := &l.custs[int(n)%len(l.custs)]
	return l.wire.send(ctx, c.req, "b"+strconv.FormatInt(n, 36))
}

// tally counts one phase's answers.
type tally struct {
	mu                          sync.Mutex
	ok, shed, okWire            *hdrhistogram.Histogram
	okN, shedN, rejN, errN, nsN int64
	firstErr                    string
}

func newTally() *tally {
	return &tally{ok: hdrhistogram.New(1, 60_000_000, 3), shed: hdrhistogram.New(1, 60_000_000, 3),
		okWire: hdrhistogram.New(1, 60_000_000, 3)}
}

func (t *tally) record(code int, err error, d, wire time.Duration) {
	us := max(d.Microseconds(), 1)
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case code == http.StatusOK:
		t.okN++
		_ = t.ok.RecordValue(us)
		_ = t.okWire.RecordValue(max(wire.Microseconds(), 1))
	case code == http.StatusTooManyRequests:
		t.shedN++
		_ = t.shed.RecordValue(us)
	case code == http.StatusUnprocessableEntity:
		t.rejN++
	default:
		t.errN++
		if t.firstErr == "" {
			t.firstErr = fmt.Sprintf("status %d: %v", code, err)
		}
	}
}

func (t *tally) phase(name string, secs, offered float64) Phase {
	t.mu.Lock()
	defer t.mu.Unlock()
	ms := func(h *hdrhistogram.Histogram, q float64) float64 { return float64(h.ValueAtQuantile(q)) / 1000 }
	return Phase{Name: name, OfferedPerSec: offered, Seconds: secs, OK: t.okN, Shed: t.shedN, Rejected: t.rejN,
		Errors: t.errN, NotSent: t.nsN, OKPerSec: float64(t.okN) / secs,
		P50Ms: ms(t.ok, 50), P99Ms: ms(t.ok, 99), P999Ms: ms(t.ok, 99.9), MaxMs: float64(t.ok.Max()) / 1000,
		ShedP99Ms: ms(t.shed, 99), WireP99Ms: ms(t.okWire, 99), FirstError: t.firstErr}
}

func (t *tally) progress(w io.Writer, name string, start time.Time, stop <-chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last int64
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			t.mu.Lock()
			ok, shed, errs := t.okN, t.shedN, t.errN
			t.mu.Unlock()
			fmt.Fprintf(w, "%s %4.0fs  ok/s %7d  shed %7d  errors %d\n", name, time.Since(start).Seconds(), ok-last, shed, errs)
			last = ok
		}
	}
}

// closed runs clients loops for d.
func (l *loader) closed(ctx context.Context, name string, clients int, d time.Duration, progress io.Writer) Phase {
	t := newTally()
	cpu := l.cpuStart()
	start := time.Now()
	end := start.Add(d)
	stop := make(chan struct{})
	var pw sync.WaitGroup
	pw.Add(1)
	go func() { defer pw.Done(); t.progress(progress, name, start, stop) }()
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(end) {
				t0 := time.Now()
				code, wire, err := l.one(ctx)
				t.record(code, err, time.Since(t0), wire)
				if code == http.StatusTooManyRequests {
					// Told to come back: a short pause, not a spin.
					time.Sleep(shedPause)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	pw.Wait()
	return cpu.done(t.phase(name, time.Since(start).Seconds(), 0))
}

// open offers rate requests/s for d on a fixed schedule.
func (l *loader) open(ctx context.Context, rate float64, d time.Duration, inFlightMax int, progress io.Writer) Phase {
	name := fmt.Sprintf("open loop %.0f/s", rate)
	t := newTally()
	cpu := l.cpuStart()
	start := time.Now()
	stop := make(chan struct{})
	var pw sync.WaitGroup
	pw.Add(1)
	go func() { defer pw.Done(); t.progress(progress, name, start, stop) }()
	interval := time.Duration(float64(time.Second) / rate)
	total := int64(d.Seconds() * rate)
	sem := make(chan struct{}, inFlightMax)
	var wg sync.WaitGroup
	// A ticker per millisecond sends the requests due by then: timers
	// finer than that cost more than they measure.
	tick := time.NewTicker(time.Millisecond)
	var sent int64
	for sent < total && ctx.Err() == nil {
		<-tick.C
		due := min(int64(time.Since(start)/interval)+1, total)
		for ; sent < due; sent++ {
			scheduled := start.Add(time.Duration(sent) * interval)
			select {
			case sem <- struct{}{}:
			default:
				t.mu.Lock()
				t.nsN++
				t.mu.Unlock()
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				code, wire, err := l.one(ctx)
				t.record(code, err, time.Since(scheduled), wire)
			}()
		}
	}
	tick.Stop()
	wg.Wait()
	close(stop)
	pw.Wait()
	return cpu.done(t.phase(name, d.Seconds(), rate))
}

// cpuMark is the CPU time used at a phase's start.
type cpuMark struct {
	l       *loader
	self    time.Duration
	pg      time.Duration
	pgKnown bool
}

func (l *loader) cpuStart() cpuMark {
	pg, ok := postgresCPU(l.pgDataDir)
	return cpuMark{l: l, self: selfCPU(), pg: pg, pgKnown: ok}
}

func (m cpuMark) done(p Phase) Phase {
	n := p.OK + p.Shed + p.Rejected + p.Errors
	if n == 0 {
		return p
	}
	p.GoCPUMicros = float64((selfCPU() - m.self).Microseconds()) / float64(n)
	if pg, ok := postgresCPU(m.l.pgDataDir); ok && m.pgKnown {
		p.PGCPUMicros = float64((pg - m.pg).Microseconds()) / float64(n)
	}
	return p
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// postgresCPU is the CPU time of the private Postgres whose data
// directory is dir (ok is false without one, or off Linux).
func postgresCPU(dir string) (time.Duration, bool) { return localpg.ProcessCPU(dir) }
