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
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/postgres"
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
}

const (
	fundingAccount = ledger.AccountID(1) // a system account with no balance limit
	hotAccount     = ledger.AccountID(2) // the omnibus account every "hot" transfer credits
	firstUser      = ledger.AccountID(1000)
)

// Run sets up the accounts, runs the load for cfg.Duration and verifies
// journal against balances.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Accounts < 2 || cfg.Clients < 1 || cfg.Batch < 1 || cfg.Duration <= 0 {
		return nil, fmt.Errorf("bench: need accounts >= 2, clients >= 1, batch >= 1 and a duration")
	}
	if cfg.Skew != "uniform" && cfg.Skew != "zipf" && cfg.Skew != "hot" {
		return nil, fmt.Errorf("bench: skew %q: want uniform, zipf or hot", cfg.Skew)
	}
	if cfg.BalanceFen == 0 {
		cfg.BalanceFen = 1_000_000_00 // 1,000,000.00 CNY: no client runs dry in a bench
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	store, err := postgres.Open(ctx, postgres.Config{DSN: cfg.DSN, ConnsMax: 8, NoOutbox: cfg.NoOutbox})
	if err != nil {
		return nil, err
	}
	defer store.Close()

	seq := ledger.NewSequencer(ledger.SequencerConfig{Shard: 0, BatchEventsMax: cfg.BatchMax}, store, cfg.Logger)
	stop, err := seq.Start(ctx, 5*time.Minute)
	if err != nil {
		return nil, err
	}
	defer stop()

	if err := setup(ctx, seq, cfg); err != nil {
		return nil, err
	}
	res, err := load(ctx, seq, cfg)
	if err != nil {
		return nil, err
	}
	if err := stop(); err != nil {
		return nil, fmt.Errorf("sequencer: %w", err)
	}

	rep, err := store.Verify(ctx, 0)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	res.Verified = rep.OK()
	res.VerifyProblems = len(rep.Differences) + len(rep.Problems)
	res.VerifySeconds = rep.Took.Seconds()
	return res, nil
}

func userID(i int) ledger.AccountID { return firstUser + ledger.AccountID(i) }

// setup creates the accounts (if a previous run did not) and funds each
// user account, in requests of the largest allowed size.
func setup(ctx context.Context, seq *ledger.Sequencer, cfg Config) error {
	const chunk = 8000
	sys := []ledger.Account{
		{ID: fundingAccount, Asset: ledger.AssetCNY, Code: 1},
		{ID: hotAccount, Asset: ledger.AssetCNY, Code: 2},
	}
	if _, err := seq.CreateAccounts(ctx, sys); err != nil {
		return fmt.Errorf("create system accounts: %w", err)
	}
	for i := 0; i < cfg.Accounts; i += chunk {
		n := min(chunk, cfg.Accounts-i)
		as := make([]ledger.Account, n)
		ts := make([]ledger.Transfer, n)
		for j := range as {
			id := userID(i + j)
			as[j] = ledger.Account{ID: id, Asset: ledger.AssetCNY, Code: 10, Flags: ledger.DebitsMustNotExceedCredits}
			ts[j] = ledger.Transfer{
				ID:             ledger.DeriveTransferID("bench.fund", fmt.Sprint(id)),
				DebitAccountID: fundingAccount, CreditAccountID: id,
				Amount: cfg.BalanceFen, Asset: ledger.AssetCNY, Kind: 1,
			}
		}
		rs, err := seq.CreateAccounts(ctx, as)
		if err != nil {
			return fmt.Errorf("create accounts: %w", err)
		}
		for j, r := range rs {
			if !r.Result.Applied() {
				return fmt.Errorf("create account %d: %s", as[j].ID, r.Result)
			}
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

func load(ctx context.Context, seq *ledger.Sequencer, cfg Config) (*Result, error) {
	b0, e0 := seq.Stats()
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
					dr, cr := p.pair()
					ts[i] = ledger.Transfer{ID: ledger.NewTransferID(), DebitAccountID: dr, CreditAccountID: cr,
						Amount: 1 + p.rng.Int64N(10_000), Asset: ledger.AssetCNY, Kind: 2}
				}
				t0 := time.Now()
				rs, err := seq.CreateTransfers(lctx, ts)
				if err != nil {
					if lctx.Err() == nil {
						errOnce.Do(func() { firstErr = err; cancel() })
					}
					break
				}
				_ = hist.RecordValue(max(1, time.Since(t0).Microseconds()))
				requests.Add(1)
				for _, r := range rs {
					if r.Result == ledger.ResultOK {
						transfers.Add(1)
					} else {
						rejected.Add(1)
					}
				}
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
	b1, e1 := seq.Stats()
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
