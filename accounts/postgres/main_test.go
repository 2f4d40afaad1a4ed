package postgres_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/accounts/postgres"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/ledgertest"
	ledgerpg "github.com/fundplatform/fund/ledger/postgres"
	"github.com/fundplatform/fund/ledger/xshard"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// Limits every test helper here lives within.
const (
	readyTimeout = 30 * time.Second
	stopTimeout  = 30 * time.Second
)

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x5851F42D4C957F2D)) }

// clock is the service's clock; tests move it by hand.
type clock struct{ ns atomic.Int64 }

func (c *clock) Now() time.Time      { return time.Unix(0, c.ns.Load()).In(ledger.BusinessZone()) }
func (c *clock) Set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *clock) Add(d time.Duration) { c.ns.Add(int64(d)) }

func cst(s string) time.Time {
	t, err := time.ParseInLocation(time.DateTime, s, ledger.BusinessZone())
	if err != nil {
		panic(err)
	}
	return t
}

func day(s string) time.Time {
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return d
}

// env is one test's world: a fresh database holding the ledger's and the
// accounts' tables, a running ledger sequencer and the service.
type env struct {
	t      *testing.T
	dsn    string
	svc    *accounts.Service
	store  *postgres.Store
	ledger *ledgerpg.Store
	seq    *ledger.Sequencer // shard 0's
	clock  *clock
	// shards, seqs and lc: newShardedEnv's shards, their sequencers and
	// the client that routes by account (newEnv: 1, seq, seq).
	shards int
	seqs   []*ledger.Sequencer
	lc     ledger.Client
	// router is the saga's (newShardedEnv): the test calls its Handle.
	router *xshard.Router
	pool   *pgxpool.Pool
	opened atomic.Int64 // customers opened by open, for their request ids
	// stopSeq stops the sequencer (once) and waits for it.
	stopSeq func()
}

// newEnv starts everything on a fresh database. The clock starts on
// Wednesday 2026-11-18 10:00 CST; 2026-10-01..07 are holidays.
func newEnv(t *testing.T, cfg accounts.Config) *env {
	t.Helper()
	return newEnvOn(t, cfg, pgtest.NewDatabase(t))
}

// newEnvOn is newEnv on the database of dsn, which it migrates unless the
// migrations were applied already.
func newEnvOn(t *testing.T, cfg accounts.Config, dsn string) *env {
	t.Helper()
	e := &env{t: t, dsn: dsn, clock: &clock{}}
	e.clock.Set(cst("2026-11-18 10:00:00"))
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	e.openStores(ctx)
	e.seq = ledger.NewSequencer(ledger.SequencerConfig{Shard: 0}, e.ledger, nil)
	e.shards, e.seqs, e.lc = 1, []*ledger.Sequencer{e.seq}, e.seq
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.seq.Run(runCtx) }()
	var once sync.Once
	e.stopSeq = func() {
		once.Do(func() {
			stop()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("sequencer: %v", err)
				}
			case <-time.After(stopTimeout):
				t.Errorf("sequencer did not stop within %v", stopTimeout)
			}
		})
	}
	t.Cleanup(e.stopSeq)
	select {
	case <-e.seq.Ready():
	case err := <-done:
		t.Fatalf("sequencer stopped before serving: %v", err)
	case <-time.After(readyTimeout):
		t.Fatalf("sequencer not ready after %v", readyTimeout)
	}
	cfg.Now = e.clock.Now
	var err error
	if e.svc, err = accounts.NewService(ctx, cfg, e.store, e.seq, nil); err != nil {
		t.Fatalf("new service: %v", err)
	}
	return e
}

// newShardedEnv is newEnv over shards ledger shards in one database: a
// sequencer per shard, the service routing each ledger call by its
// accounts (as the gateway's sharded client does), and the saga's router,
// whose Handle the tests call on leg 1's event themselves (legOnes), in
// the order they choose, as the ledger owners' consumer group would.
// dsn is the database's, "" = a fresh one.
func newShardedEnv(t *testing.T, shards int, dsn string) *env {
	t.Helper()
	if dsn == "" {
		dsn = pgtest.NewDatabase(t)
	}
	e := &env{t: t, dsn: dsn, clock: &clock{}, shards: shards}
	e.clock.Set(cst("2026-11-18 10:00:00"))
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	e.openStores(ctx)
	var stops []func() error
	for s := range shards {
		seq := ledger.NewSequencer(ledger.SequencerConfig{Shard: s, Shards: shards}, e.ledger, nil)
		stop, err := seq.Start(ctx, readyTimeout)
		if err != nil {
			t.Fatalf("shard %d: %v", s, err)
		}
		e.seqs, stops = append(e.seqs, seq), append(stops, stop)
	}
	var once sync.Once
	e.stopSeq = func() {
		once.Do(func() {
			for s, stop := range stops {
				if err := stop(); err != nil {
					t.Errorf("shard %d: %v", s, err)
				}
			}
		})
	}
	t.Cleanup(e.stopSeq)
	// The routing client hides the sequencers' attachments (a plain
	// ledger.Client per shard), so that the sharded tests cover the
	// service inserting order rows itself.
	e.seq = e.seqs[0]
	e.lc = ledgertest.NewRoutes(shards, func(s int) ledger.Client { return struct{ ledger.Client }{e.seqs[s]} })
	perShard := func(s int) ledger.Client { return e.seqs[s] }
	e.router = xshard.NewRouter(shards, perShard)
	var err error
	if e.svc, err = accounts.NewService(ctx, accounts.Config{Now: e.clock.Now, Shards: shards, ShardClient: perShard},
		e.store, e.lc, nil); err != nil {
		t.Fatalf("new service: %v", err)
	}
	return e
}

// openStores opens the ledger's and the accounts' stores on e.dsn and
// adds the holidays.
func (e *env) openStores(ctx context.Context) {
	t := e.t
	t.Helper()
	// Whatever a test does, neither store may draw a warning from the
	// server (a statement Postgres ignored, say). Registered first, the
	// check runs last, after the stores closed.
	var (
		warnMu   sync.Mutex
		warnings []string
	)
	onNotice := func(n *pgconn.Notice) {
		if n.Severity != "NOTICE" { // "relation already exists, skipping" is expected
			warnMu.Lock()
			defer warnMu.Unlock()
			warnings = append(warnings, n.Severity+": "+n.Message)
		}
	}
	t.Cleanup(func() {
		warnMu.Lock()
		defer warnMu.Unlock()
		if len(warnings) > 0 {
			t.Errorf("the server sent %d warnings, the first: %s", len(warnings), warnings[0])
		}
	})
	var err error
	// As the ledger owners run: each order's row is written by the
	// ledger's commit (postgres.OrderRowsWriter) when the service's
	// ledger client carries attachments (the sequencer does; the sharded
	// env's routing client does not, so the store's own insert is tested
	// there).
	if e.ledger, err = ledgerpg.Open(ctx, ledgerpg.Config{DSN: e.dsn, ConnsMax: 4, OnNotice: onNotice,
		Attachments: postgres.OrderRowsWriter}); err != nil {
		t.Fatalf("open ledger store: %v", err)
	}
	t.Cleanup(e.ledger.Close)
	if e.store, err = postgres.Open(ctx, postgres.Config{DSN: e.dsn, ConnsMax: 8, OnNotice: onNotice}); err != nil {
		t.Fatalf("open accounts store: %v", err)
	}
	t.Cleanup(e.store.Close)
	e.pool = e.store.Pool()
	for d := 1; d <= 7; d++ {
		h := accounts.Holiday{Date: time.Date(2026, 10, d, 0, 0, 0, 0, time.UTC), Name: "National Day"}
		if err := e.store.AddHoliday(ctx, h); err != nil {
			t.Fatal(err)
		}
	}

}

func (e *env) open(name string) accounts.CustomerID {
	e.t.Helper()
	c, err := e.svc.OpenCustomer(context.Background(), fmt.Sprintf("open-%d", e.opened.Add(1)), name)
	if err != nil {
		e.t.Fatalf("open %s: %v", name, err)
	}
	return c.ID
}

// fund opens a customer with cash topped up and shares bought (the shares
// are confirmed the way settlement will: by posting the pending transfer).
func (e *env) fund(name string, cash, shares int64) accounts.CustomerID {
	e.t.Helper()
	c := e.open(name)
	ctx := context.Background()
	if cash+shares > 0 {
		if _, err := e.svc.TopUp(ctx, c, "fund-topup", cash+shares); err != nil {
			e.t.Fatalf("top up: %v", err)
		}
	}
	if shares > 0 {
		if _, err := e.svc.Subscribe(ctx, c, "fund-subscribe", shares); err != nil {
			e.t.Fatalf("subscribe: %v", err)
		}
		e.confirm(c, "fund-subscribe", shares)
	}
	return c
}

// confirm posts a subscription's pending shares, standing in for the
// settlement run (leg 1 of a subscription is the pending shares transfer).
func (e *env) confirm(c accounts.CustomerID, requestID string, amount int64) {
	e.t.Helper()
	pending := ledger.DeriveTransferID("accounts/order/"+strconv.FormatInt(int64(c), 10), requestID, "1")
	res, err := e.seq.CreateTransfers(context.Background(), []ledger.Transfer{{
		ID: ledger.DeriveTransferID("test/confirm", requestID, strconv.FormatInt(int64(c), 10)), PendingID: pending,
		DebitAccountID: accounts.FundOmnibusShares, CreditAccountID: accounts.SharesAccount(c),
		Amount: amount, Asset: ledger.AssetFundShares, Flags: ledger.PostPending, Kind: 99,
	}})
	if err != nil || res[0].Result != ledger.ResultOK {
		e.t.Fatalf("confirm %s: %v %v", requestID, err, res)
	}
}

func (e *env) holdings(c accounts.CustomerID) accounts.Holdings {
	e.t.Helper()
	h, err := e.svc.Holdings(context.Background(), c)
	if err != nil {
		e.t.Fatalf("holdings of %d: %v", c, err)
	}
	return h
}

// account returns a ledger account as its shard's sequencer serves it.
func (e *env) account(id ledger.AccountID) ledger.Account {
	e.t.Helper()
	as, err := e.lc.LookupAccounts(context.Background(), []ledger.AccountID{id})
	if err != nil || len(as) != 1 {
		e.t.Fatalf("lookup %d: %v (%d found)", id, err, len(as))
	}
	return as[0]
}

// counts are the rows that orders and money leave behind.
type counts struct{ Orders, Transfers, Customers int64 }

func (e *env) counts() counts {
	e.t.Helper()
	var c counts
	// The ledger commits a batch before it answers, so its journal is
	// complete for every answered request.
	if err := e.pool.QueryRow(context.Background(), `
		SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM transfers), (SELECT count(*) FROM customers)`).
		Scan(&c.Orders, &c.Transfers, &c.Customers); err != nil {
		e.t.Fatalf("count rows: %v", err)
	}
	return c
}

// verify stops the sequencers, so that they write their final checkpoints,
// checks each shard's journal against its balances and returns shard 0's
// report. It ends the test's use of the ledger. (Verify's pending-transfer
// check reads stored balances without allowing for the checkpoint lag of a
// running shard, so it is not run while the sequencers serve.)
func (e *env) verify() *ledger.VerifyReport {
	e.t.Helper()
	e.stopSeq()
	var first *ledger.VerifyReport
	for s := range e.shards {
		rep, err := e.ledger.Verify(context.Background(), s)
		if err != nil {
			e.t.Fatalf("verify shard %d: %v", s, err)
		}
		if !rep.OK() {
			e.t.Fatalf("verify shard %d: %d differences, problems %q", s, len(rep.Differences), rep.Problems)
		}
		if first == nil {
			first = rep
		}
	}
	return first
}

// parallel runs fn(i) for i in [0,n) on n goroutines and waits for all.
func parallel(n int, fn func(i int)) {
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(i)
		}()
	}
	wg.Wait()
}
