// Package ledgerbench drives one ledger shard in-process against Postgres
// with many concurrent clients and measures what it sustains: the engine
// behind `fundctl bench ledger`.
//
// Back of the envelope for this 2-core machine: a transfer costs the
// sequencer about 1 µs to apply in memory and Postgres about 10-15 µs to
// store (a COPY row into the journal, a COPY row and a btree insert into
// transfer_ids, a share of a balance UPDATE), so one core of Postgres can
// take 60-100k transfers/s once batches amortise the commit's fsync; the Go
// side (1,000 client goroutines, the sequencer) takes the other core.
package ledgerbench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/fundplatform/fund/internal/kafkabroker"
	"github.com/fundplatform/fund/internal/localpg"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/kafka"
	"github.com/fundplatform/fund/ledger/outbox"
	"github.com/fundplatform/fund/ledger/postgres"
	"github.com/fundplatform/fund/ledger/xshard"
)

// Config for Run.
type Config struct {
	DSN        string
	Accounts   int
	Clients    int
	Batch      int // transfers per request
	Skew       string
	Duration   time.Duration
	Seed       uint64
	Progress   io.Writer // one line per second; nil = quiet
	Logger     *slog.Logger
	BatchMax   int   // sequencer batch limit; 0 = default
	BalanceFen int64 // starting balance of every account
	NoOutbox   bool  // leave the transactional outbox out of the commits
	// Shards > 1 runs that many shards (one sequencer each) on the same
	// database, with CrossShard of the transfers going between shards as
	// sagas through the outbox, an in-process Kafka-protocol broker and a
	// consumer group. Requests then carry one transfer each.
	Shards     int
	CrossShard float64
	// Fill sets ledger.SequencerConfig.FillWhileCommitting: "on", "off",
	// or "auto"/"" (on with several shards). Several shards share one
	// database here, so the machine is CPU-bound and fewer, bigger batches
	// win; a single shard is latency-bound and does better without (60-66k
	// vs 58k transfers/s on the 2-core machine; 8 shards, 50% cross: 18-20k
	// without, 27-30k with).
	Fill string
	// NoPipeline leaves out, with one shard, what `fundd ledger
	// --kafka-brokers` runs beside every shard: the outbox relay publishing
	// to a Kafka-protocol broker and the cross-shard consumer group. With
	// several shards the pipeline always runs (the sagas need it).
	NoPipeline bool
	// PGDataDir, when the database is a private server's, lets the result
	// split CPU time between this process and Postgres.
	PGDataDir string
}

// Result is what a run measured.
type Result struct {
	Accounts        int     `json:"accounts"`
	Clients         int     `json:"clients"`
	Batch           int     `json:"batch"`
	Skew            string  `json:"skew"`
	DurationSeconds float64 `json:"duration_s"`
	Transfers       int64   `json:"transfers"`
	Rejected        int64   `json:"rejected"`
	TransfersPerSec float64 `json:"transfers_per_sec"`
	RequestsPerSec  float64 `json:"requests_per_sec"`
	P50Ms           float64 `json:"p50_ms"`
	P99Ms           float64 `json:"p99_ms"`
	P999Ms          float64 `json:"p999_ms"`
	MaxMs           float64 `json:"max_ms"`
	BatchMean       float64 `json:"batch_mean"`
	Batches         int64   `json:"batches"`
	Verified        bool    `json:"verified"`
	VerifyProblems  int     `json:"verify_problems"`
	VerifySeconds   float64 `json:"verify_s"`
	Seed            uint64  `json:"seed"`
	PgbenchTPS      float64 `json:"pgbench_tps,omitempty"`
	Shards          int     `json:"shards,omitempty"`
	CrossShard      float64 `json:"cross_shard,omitempty"`
	InTransitNet    int64   `json:"in_transit_net,omitempty"`
	// Pipeline: the relay, broker and consumer ran during the load.
	Pipeline bool `json:"pipeline"`
	// CPU per transfer during the load: this process (clients,
	// sequencers, relay, in-process broker, consumer) and Postgres (0 when
	// not known: --dsn).
	GoCPUMicros float64 `json:"go_cpu_us_per_transfer"`
	PGCPUMicros float64 `json:"pg_cpu_us_per_transfer,omitempty"`
}

const (
	fundingAccount = ledger.AccountID(1) // a system account with no balance limit
	hotAccount     = ledger.AccountID(2) // the omnibus account every "hot" transfer credits
	firstUser      = ledger.AccountID(1000)
)

// Run sets up the accounts, runs the load for cfg.Duration and verifies
// journal against balances.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	fill, err := cfg.check()
	if err != nil {
		return nil, err
	}
	store, err := postgres.Open(ctx, postgres.Config{DSN: cfg.DSN, ConnsMax: int32(8 + 2*cfg.Shards), NoOutbox: cfg.NoOutbox})
	if err != nil {
		return nil, err
	}
	defer store.Close()
	sh, err := startShards(ctx, store, cfg, fill)
	defer sh.close()
	if err != nil {
		return nil, err
	}
	if err := setup(ctx, sh.seqs, cfg); err != nil {
		return nil, err
	}
	router := xshard.NewRouter(cfg.Shards, func(s int) ledger.Client { return sh.seqs[s] })
	pipeline := cfg.Shards > 1 || !(cfg.NoPipeline || cfg.NoOutbox)
	if pipeline {
		p, err := startDrainedPipeline(ctx, store, router, cfg.Shards)
		if err != nil {
			return nil, err
		}
		defer p.stop()
	}
	res, err := measure(ctx, sh.seqs, router, cfg)
	if err != nil {
		return nil, err
	}
	res.Pipeline = pipeline
	if cfg.Progress != nil {
		reportPhases(cfg.Progress, sh.seqs)
	}
	if cfg.Shards > 1 {
		if res.InTransitNet, err = awaitSagas(ctx, router); err != nil {
			return nil, err
		}
	}
	if err := sh.stop(); err != nil {
		return nil, err
	}
	if err := verify(ctx, store, cfg.Shards, res); err != nil {
		return nil, err
	}
	return res, nil
}

// check validates cfg, fills in its defaults and says whether the
// sequencers fill while committing.
func (cfg *Config) check() (fill bool, err error) {
	if cfg.Accounts < 2 || cfg.Clients < 1 || cfg.Batch < 1 || cfg.Duration <= 0 {
		return false, fmt.Errorf("bench: need accounts >= 2, clients >= 1, batch >= 1 and a duration")
	}
	if cfg.Skew != "uniform" && cfg.Skew != "zipf" && cfg.Skew != "hot" {
		return false, fmt.Errorf("bench: skew %q: want uniform, zipf or hot", cfg.Skew)
	}
	if cfg.BalanceFen == 0 {
		cfg.BalanceFen = 1_000_000_00 // 1,000,000.00 CNY: no client runs dry in a bench
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Shards <= 1 {
		cfg.Shards = 1
		cfg.CrossShard = 0
	}
	if cfg.Shards > 1 && (cfg.Batch != 1 || cfg.NoOutbox) {
		return false, fmt.Errorf("bench: with --shards, requests carry one transfer (--batch 1) and need the outbox")
	}
	switch cfg.Fill {
	case "on":
		return true, nil
	case "off":
		return false, nil
	case "", "auto":
		return cfg.Shards > 1, nil
	}
	return false, fmt.Errorf("bench: fill %q: want on, off or auto", cfg.Fill)
}

// shardSet is the bench's sequencers, one per shard, each on a goroutine
// of its own.
type shardSet struct {
	seqs  []*ledger.Sequencer
	stops []func() error // nil once stopped
}

// startShards starts a sequencer per shard and waits until each serves.
// The set returned must be closed, even with an error (it stops the ones
// that started).
func startShards(ctx context.Context, store *postgres.Store, cfg Config, fill bool) (*shardSet, error) {
	sh := &shardSet{seqs: make([]*ledger.Sequencer, cfg.Shards), stops: make([]func() error, cfg.Shards)}
	for shard := range sh.seqs {
		sh.seqs[shard] = ledger.NewSequencer(ledger.SequencerConfig{Shard: shard, Shards: cfg.Shards, BatchEventsMax: cfg.BatchMax,
			FillWhileCommitting: fill}, store, cfg.Logger)
		var err error
		if sh.stops[shard], err = sh.seqs[shard].Start(ctx, 5*time.Minute); err != nil {
			return sh, err
		}
	}
	return sh, nil
}

// stop stops every sequencer, in order, and returns the first one's error
// (close stops the rest).
func (sh *shardSet) stop() error {
	for shard, stop := range sh.stops {
		sh.stops[shard] = nil
		if err := stop(); err != nil {
			return fmt.Errorf("sequencer %d: %w", shard, err)
		}
	}
	return nil
}

// close stops the sequencers still running, ignoring their errors.
func (sh *shardSet) close() {
	for _, stop := range sh.stops {
		if stop != nil {
			_ = stop()
		}
	}
}

// startDrainedPipeline starts the pipeline and waits until the setup's
// funding transfers (one event each) are relayed and consumed, so that the
// measured seconds do not carry that backlog; with several shards it also
// runs a saga from every shard.
func startDrainedPipeline(ctx context.Context, store *postgres.Store, router *xshard.Router, shards int) (*pipeline, error) {
	if err := router.EnsureInTransit(ctx, ledger.AssetCNY); err != nil {
		return nil, err
	}
	p, err := startPipeline(ctx, store, router, shards)
	if err != nil {
		return nil, err
	}
	err = p.drain(ctx, store, shards)
	if err == nil && shards > 1 {
		err = warmUp(ctx, router, shards)
	}
	if err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// measure runs the load against the shards and adds the CPU time each
// transfer cost.
func measure(ctx context.Context, seqs []*ledger.Sequencer, router *xshard.Router, cfg Config) (*Result, error) {
	t := singleShard(seqs[0])
	if cfg.Shards > 1 {
		t = sharded(seqs, router, cfg)
	}
	goCPU0, pgCPU0 := selfCPU(), pgCPU(cfg.PGDataDir)
	res, err := load(ctx, t, cfg)
	if err != nil {
		return nil, err
	}
	if n := res.Transfers + res.Rejected; n > 0 {
		res.GoCPUMicros = float64((selfCPU() - goCPU0).Microseconds()) / float64(n)
		if pgCPU0 >= 0 {
			res.PGCPUMicros = float64((pgCPU(cfg.PGDataDir) - pgCPU0).Microseconds()) / float64(n)
		}
	}
	res.Shards, res.CrossShard = cfg.Shards, cfg.CrossShard
	return res, nil
}

// reportPhases prints where the writers' time went: a writer waiting for
// its commit is Postgres-bound; one busy applying is CPU-bound on the Go
// side.
func reportPhases(w io.Writer, seqs []*ledger.Sequencer) {
	var lookup, wait, apply, commit time.Duration
	for _, seq := range seqs {
		lookup += seq.PhaseTime(ledger.PhaseLookup)
		wait += seq.PhaseTime(ledger.PhaseWait)
		apply += seq.PhaseTime(ledger.PhaseApply)
		commit += seq.PhaseTime(ledger.PhaseCommit)
	}
	fmt.Fprintf(w, "  writers' time (all shards): id lookups %s, waiting for commits %s, applying %s; commits took %s\n",
		lookup.Round(time.Millisecond), wait.Round(time.Millisecond), apply.Round(time.Millisecond), commit.Round(time.Millisecond))
}

// sagasWaitMax bounds how long awaitSagas waits for in-transit to net to
// zero after the load.
const sagasWaitMax = 2 * time.Minute

// awaitSagas waits (bounded) until every saga has ended, in-transit
// netting to zero, and returns the last net seen.
func awaitSagas(ctx context.Context, router *xshard.Router) (int64, error) {
	end := time.Now().Add(sagasWaitMax)
	for {
		net, err := router.InTransitNet(ctx, ledger.AssetCNY)
		if err != nil {
			return 0, err
		}
		if net[ledger.AssetCNY] == 0 || time.Now().After(end) {
			return net[ledger.AssetCNY], nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// verify checks every shard's journal against its balances, once the
// sequencers have stopped (and flushed their balances).
func verify(ctx context.Context, store *postgres.Store, shards int, res *Result) error {
	res.Verified = res.InTransitNet == 0
	for shard := range shards {
		rep, err := store.Verify(ctx, shard)
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		res.Verified = res.Verified && rep.OK()
		res.VerifyProblems += len(rep.Differences) + len(rep.Problems)
		res.VerifySeconds += rep.Took.Seconds()
	}
	return nil
}

// target is what the load drives: one shard directly, or a router.
type target struct {
	// send applies one request and counts its transfers applied and refused.
	send  func(ctx context.Context, ts []ledger.Transfer) (applied, refused int, err error)
	stats func() (batches, events int64)
	// pair picks debit and credit accounts for one transfer.
	pair func(p *picker) (ledger.AccountID, ledger.AccountID)
}

func singleShard(seq *ledger.Sequencer) *target {
	return &target{
		send: func(ctx context.Context, ts []ledger.Transfer) (int, int, error) {
			rs, err := seq.CreateTransfers(ctx, ts)
			if err != nil {
				return 0, 0, err
			}
			ok := 0
			for _, r := range rs {
				if r.Result == ledger.ResultOK {
					ok++
				}
			}
			return ok, len(rs) - ok, nil
		},
		stats: seq.Stats,
		pair:  (*picker).pair,
	}
}

// sagaWait bounds how long a request waits for its saga's second leg.
const sagaWait = time.Minute

func sharded(seqs []*ledger.Sequencer, router *xshard.Router, cfg Config) *target {
	shards := len(seqs)
	return &target{
		send: func(ctx context.Context, ts []ledger.Transfer) (int, int, error) {
			o, err := router.Transfer(ctx, ts[0], sagaWait)
			if err != nil {
				return 0, 0, err
			}
			switch {
			case o.State == xshard.InFlight:
				return 0, 0, fmt.Errorf("transfer %s still in flight after %s", ts[0].ID, sagaWait)
			case o.State == xshard.Completed && o.Result == ledger.ResultOK:
				return 1, 0, nil
			}
			return 0, 1, nil
		},
		stats: func() (b, e int64) {
			for _, s := range seqs {
				sb, se := s.Stats()
				b, e = b+sb, e+se
			}
			return b, e
		},
		pair: func(p *picker) (ledger.AccountID, ledger.AccountID) {
			dr := p.user()
			cross := p.rng.Float64() < cfg.CrossShard
			for {
				cr := p.user()
				if p.skew == "hot" {
					cr = hotAccount
				}
				if cr != dr && (ledger.ShardOf(cr, shards) != ledger.ShardOf(dr, shards)) == cross {
					return dr, cr
				}
				if p.skew == "hot" {
					dr = p.user() // the hot account's shard is fixed: move the payer instead
				}
			}
		},
	}
}

// warmUp runs one saga from every shard before the clock starts, after the
// pipeline drained the setup's events: the consumer group has joined and
// every partition has carried a saga end to end.
func warmUp(ctx context.Context, router *xshard.Router, shards int) error {
	errs := make(chan error, shards)
	for s := 0; s < shards; s++ {
		go func() {
			warm := ledger.Transfer{ID: ledger.NewTransferID(), DebitAccountID: fundingFor(s, shards),
				CreditAccountID: fundingFor((s+1)%shards, shards), Amount: 1, Asset: ledger.AssetCNY, Kind: 3}
			o, err := router.Transfer(ctx, warm, sagaWait)
			if err == nil && o.State != xshard.Completed {
				err = fmt.Errorf("outcome %v", o)
			}
			if err != nil {
				err = fmt.Errorf("bench: warm-up saga from shard %d: %w", s, err)
			}
			errs <- err
		}()
	}
	var first error
	for s := 0; s < shards; s++ {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// pipeline is what runs beside the shards in `fundd ledger
// --kafka-brokers`, here in-process: the outbox relay of every shard, a
// Kafka-protocol broker, and a consumer group applying second legs.
type pipeline struct {
	relay    *outbox.Relay
	consumed atomic.Int64 // events the consumer handled
	stop     func()
}

func startPipeline(ctx context.Context, store *postgres.Store, router *xshard.Router, shards int) (*pipeline, error) {
	const topic = "ledger-events"
	broker, err := kafkabroker.Start(0, shards, topic)
	if err != nil {
		return nil, err
	}
	pub := kafka.NewPublisher(broker.Addrs(), topic)
	all := make([]int, shards)
	for i := range all {
		all[i] = i
	}
	p := &pipeline{}
	p.relay = outbox.NewRelay(outbox.RelayConfig{Shards: all, PollInterval: time.Millisecond, BatchesMax: 256}, store, pub, nil)
	handle := func(ctx context.Context, e ledger.Event) error {
		if err := router.Handle(ctx, e); err != nil {
			return err
		}
		p.consumed.Add(1)
		return nil
	}
	// Events of kinds the router does not act on are passed over
	// undecoded (as in fundd ledger); they count as consumed all the same.
	wants := func(kind uint16) bool {
		if router.Wants(kind) {
			return true
		}
		p.consumed.Add(1)
		return false
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = p.relay.Run(sctx) }()
	go func() {
		defer wg.Done()
		_ = kafka.Consume(sctx, kafka.ConsumerConfig{Brokers: broker.Addrs(), Topic: topic, Group: "bench-xshard",
			InFlightMax: 4096, Wants: wants}, handle)
	}()
	p.stop = func() {
		cancel()
		wg.Wait()
		_ = pub.Close()
		broker.Close()
	}
	return p, nil
}

// drainWaitMax bounds drain: 100,000 setup events take a few seconds.
const drainWaitMax = 2 * time.Minute

// drain waits until every shard's outbox is empty and the consumer has
// handled every event the relay published (a handled event may come
// again after a rebalance, so "at least as many").
func (p *pipeline) drain(ctx context.Context, store *postgres.Store, shards int) error {
	end := time.Now().Add(drainWaitMax)
	for {
		var waiting int64
		for shard := range shards {
			_, events, err := store.OutboxLag(ctx, shard)
			if err != nil {
				return err
			}
			waiting += events
		}
		published, _ := p.relay.Published()
		if waiting == 0 && p.consumed.Load() >= published {
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("bench: setup events not relayed and consumed after %s (%d in the outbox, %d of %d consumed)",
				drainWaitMax, waiting, p.consumed.Load(), published)
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// selfCPU is this process's CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pgCPU is the private Postgres's CPU time so far, or -1 when unknown.
func pgCPU(dataDir string) time.Duration {
	if d, ok := localpg.ProcessCPU(dataDir); ok {
		return d
	}
	return -1
}

func userID(i int) ledger.AccountID { return firstUser + ledger.AccountID(i) }

// fundingFor is the system account that funds the users of a shard.
func fundingFor(shard, shards int) ledger.AccountID {
	if shards <= 1 {
		return fundingAccount
	}
	for id := ledger.AccountID(1) << 40; ; id++ {
		if ledger.ShardOf(id, shards) == shard {
			return id
		}
	}
}

// setup creates the accounts (if a previous run did not) on their shards
// and funds each user account, in requests of the largest allowed size.
func setup(ctx context.Context, seqs []*ledger.Sequencer, cfg Config) error {
	const chunk = 8000
	shards := len(seqs)
	byShard := make([][]ledger.Account, shards)
	add := func(a ledger.Account) {
		s := ledger.ShardOf(a.ID, shards)
		byShard[s] = append(byShard[s], a)
	}
	for s := 0; s < shards; s++ {
		add(ledger.Account{ID: fundingFor(s, shards), Asset: ledger.AssetCNY, Code: 1})
	}
	add(ledger.Account{ID: hotAccount, Asset: ledger.AssetCNY, Code: 2})
	for i := 0; i < cfg.Accounts; i++ {
		add(ledger.Account{ID: userID(i), Asset: ledger.AssetCNY, Code: 10, Flags: ledger.DebitsMustNotExceedCredits})
	}
	for s, accts := range byShard {
		seq := seqs[s]
		for i := 0; i < len(accts); i += chunk {
			as := accts[i:min(i+chunk, len(accts))]
			rs, err := seq.CreateAccounts(ctx, as)
			if err != nil {
				return fmt.Errorf("create accounts: %w", err)
			}
			var ts []ledger.Transfer
			for j, r := range rs {
				if !r.Result.Applied() {
					return fmt.Errorf("create account %d: %s", as[j].ID, r.Result)
				}
				if as[j].Code == 10 {
					ts = append(ts, ledger.Transfer{
						ID:             ledger.DeriveTransferID("bench.fund", fmt.Sprint(as[j].ID)),
						DebitAccountID: fundingFor(s, shards), CreditAccountID: as[j].ID,
						Amount: cfg.BalanceFen, Asset: ledger.AssetCNY, Kind: 1,
					})
				}
			}
			if len(ts) == 0 {
				continue
			}
			trs, err := seq.CreateTransfers(ctx, ts)
			if err != nil {
				return fmt.Errorf("fund accounts: %w", err)
			}
			for j, r := range trs {
				if !r.Result.Applied() {
					return fmt.Errorf("fund account %d: %s", ts[j].CreditAccountID, r.Result)
				}
			}
		}
	}
	return nil
}

// picker chooses accounts with the configured skew.
type picker struct {
	rng  *rand.Rand
	zipf *rand.Zipf
	n    int
	skew string
}

func newPicker(seed uint64, n int, skew string) *picker {
	rng := rand.New(rand.NewPCG(seed, seed^0x9E3779B97F4A7C15))
	p := &picker{rng: rng, n: n, skew: skew}
	if skew == "zipf" {
		p.zipf = rand.NewZipf(rng, 1.1, 1, uint64(n-1))
	}
	return p
}

func (p *picker) user() ledger.AccountID {
	if p.zipf != nil {
		return userID(int(p.zipf.Uint64()))
	}
	return userID(p.rng.IntN(p.n))
}

func (p *picker) pair() (ledger.AccountID, ledger.AccountID) {
	dr := p.user()
	if p.skew == "hot" {
		return dr, hotAccount
	}
	for {
		if cr := p.user(); cr != dr {
			return dr, cr
		}
	}
}

func load(ctx context.Context, t *target, cfg Config) (*Result, error) {
	b0, e0 := t.stats()
	var (
		transfers, rejected, requests atomic.Int64
		errOnce                       sync.Once
		firstErr                      error
		wg                            sync.WaitGroup
		mu                            sync.Mutex
	)
	total := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	lctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	start := time.Now()
	for c := 0; c < cfg.Clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			hist := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
			p := newPicker(cfg.Seed+uint64(c)*7919, cfg.Accounts, cfg.Skew)
			ts := make([]ledger.Transfer, cfg.Batch)
			for lctx.Err() == nil {
				for i := range ts {
					dr, cr := t.pair(p)
					ts[i] = ledger.Transfer{ID: ledger.NewTransferID(), DebitAccountID: dr, CreditAccountID: cr,
						Amount: 1 + p.rng.Int64N(10_000), Asset: ledger.AssetCNY, Kind: 2}
				}
				t0 := time.Now()
				applied, refused, err := t.send(lctx, ts)
				if err != nil {
					if lctx.Err() == nil {
						errOnce.Do(func() { firstErr = err; cancel() })
					}
					break
				}
				_ = hist.RecordValue(max(1, time.Since(t0).Microseconds()))
				requests.Add(1)
				transfers.Add(int64(applied))
				rejected.Add(int64(refused))
			}
			mu.Lock()
			total.Merge(hist)
			mu.Unlock()
		}(c)
	}
	if cfg.Progress != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			var last int64
			for {
				select {
				case <-lctx.Done():
					return
				case <-tick.C:
					n := transfers.Load()
					fmt.Fprintf(cfg.Progress, "  %4.0fs  %9d transfers/s  total %d\n", time.Since(start).Seconds(), n-last, n)
					last = n
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return nil, fmt.Errorf("load: %w", firstErr)
	}
	b1, e1 := t.stats()
	res := &Result{
		Accounts: cfg.Accounts, Clients: cfg.Clients, Batch: cfg.Batch, Skew: cfg.Skew, Seed: cfg.Seed,
		DurationSeconds: elapsed.Seconds(),
		Transfers:       transfers.Load(),
		Rejected:        rejected.Load(),
		TransfersPerSec: float64(transfers.Load()+rejected.Load()) / elapsed.Seconds(),
		RequestsPerSec:  float64(requests.Load()) / elapsed.Seconds(),
		P50Ms:           float64(total.ValueAtQuantile(50)) / 1000,
		P99Ms:           float64(total.ValueAtQuantile(99)) / 1000,
		P999Ms:          float64(total.ValueAtQuantile(99.9)) / 1000,
		MaxMs:           float64(total.Max()) / 1000,
		Batches:         b1 - b0,
	}
	if b1 > b0 {
		res.BatchMean = float64(e1-e0) / float64(b1-b0)
	}
	return res, nil
}
