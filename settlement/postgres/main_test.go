package postgres_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fundplatform/fund/accounts"
	accountspg "github.com/fundplatform/fund/accounts/postgres"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/settlement"
	settlepg "github.com/fundplatform/fund/settlement/postgres"
	"github.com/fundplatform/fund/settlement/schema"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const readyTimeout = 30 * time.Second

// clock is the service's and the runner's clock; tests move it by hand.
type clock struct{ ns atomic.Int64 }

func (c *clock) Now() time.Time  { return time.Unix(0, c.ns.Load()).In(ledger.BusinessZone()) }
func (c *clock) Set(t time.Time) { c.ns.Store(t.UnixNano()) }

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

// world is one shard's platform on a fresh database: the accounts service
// over a sequencer (stopped while settlement owns the shard, restarted at
// the shard's new epoch afterwards), and the settlement runner.
type world struct {
	t      *testing.T
	dsn    string
	clock  *clock
	acc    *accountspg.Store
	store  *settlepg.Store
	pool   *pgxpool.Pool
	seq    *ledger.Sequencer
	stop   func() error
	svc    *accounts.Service
	runner *settlement.Runner
	dir    string
	events *recorder
}

// recorder is a settlement.EventPublisher that keeps what it was given.
type recorder struct{ events []settlement.Event }

func (r *recorder) PublishSettlement(_ context.Context, evs []settlement.Event) error {
	r.events = append(r.events, evs...)
	return nil
}

func newWorld(t *testing.T) *world {
	t.Helper()
	// The run works as the platform's service role, on a schema the
	// owner role migrated (settlement/schema): every test here shows too
	// that the grants are enough for settlement and the accounts.
	roles := pgtest.NewDatabaseWithRoles(t)
	ctx := context.Background()
	if err := schema.Migrate(ctx, schema.Config{DSNs: []string{roles.Owner}, ServiceRole: roles.ServiceRole}); err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, dsn: roles.Service, clock: &clock{}, dir: t.TempDir(), events: &recorder{}}
	var err error
	if w.store, err = settlepg.Open(ctx, settlepg.Config{DSN: w.dsn}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.store.Close)
	w.pool = w.store.Pool()
	if w.acc, err = accountspg.Open(ctx, accountspg.Config{DSN: w.dsn, ConnsMax: 4}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.acc.Close)
	w.startLedger()
	t.Cleanup(func() { w.stopLedger() })
	w.runner = settlement.NewRunner(settlement.Config{Shards: 1, FileDir: w.dir, Now: w.clock.Now, Owner: "settle-test"},
		w.store, w.svc, w.events, nil)
	return w
}

// startLedger starts the shard's sequencer at its current epoch, as a
// ledger host would after taking the lease back, and the service over it.
func (w *world) startLedger() {
	w.t.Helper()
	ctx := context.Background()
	var epoch int64
	if err := w.pool.QueryRow(ctx, `SELECT coalesce(max(epoch), 0) FROM ledger_shards WHERE shard = 0`).Scan(&epoch); err != nil {
		w.t.Fatal(err)
	}
	w.seq = ledger.NewSequencer(ledger.SequencerConfig{Shard: 0, Epoch: epoch}, w.store.Ledger(), nil)
	stop, err := w.seq.Start(ctx, readyTimeout)
	if err != nil {
		w.t.Fatal(err)
	}
	w.stop = stop
	if w.svc, err = accounts.NewService(ctx, accounts.Config{Now: w.clock.Now}, w.acc, w.seq, nil); err != nil {
		w.t.Fatal(err)
	}
	if w.runner != nil {
		w.runner = settlement.NewRunner(settlement.Config{Shards: 1, FileDir: w.dir, Now: w.clock.Now, Owner: "settle-test"},
			w.store, w.svc, w.events, nil)
	}
}

func (w *world) stopLedger() {
	if w.stop != nil {
		if err := w.stop(); err != nil {
			w.t.Errorf("sequencer: %v", err)
		}
		w.stop = nil
	}
}

// settle runs a date the way operations do: the ledger's writer stops
// (it has flushed its balances), settlement runs, the writer comes back.
func (w *world) settle(in settlement.Input) settlement.Summary {
	w.t.Helper()
	w.stopLedger()
	defer w.startLedger()
	sum, err := w.runner.Run(context.Background(), in, nil)
	if err != nil {
		w.t.Fatalf("settle %s: %v", in, err)
	}
	return sum
}

func (w *world) open(name string) accounts.CustomerID {
	w.t.Helper()
	c, err := w.svc.OpenCustomer(context.Background(), "open-"+name, name)
	if err != nil {
		w.t.Fatal(err)
	}
	return c.ID
}

func (w *world) must(_ accounts.Order, err error) {
	w.t.Helper()
	if err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) account(id ledger.AccountID) ledger.Account {
	w.t.Helper()
	as, err := w.seq.LookupAccounts(context.Background(), []ledger.AccountID{id})
	if err != nil || len(as) != 1 {
		w.t.Fatalf("lookup %d: %v", id, err)
	}
	return as[0]
}

func (w *world) verify() {
	w.t.Helper()
	w.stopLedger()
	defer w.startLedger()
	rep, err := w.store.Ledger().Verify(context.Background(), 0)
	if err != nil {
		w.t.Fatal(err)
	}
	if !rep.OK() {
		w.t.Fatalf("ledger verify: %d differences %+v, problems %q", len(rep.Differences), rep.Differences, rep.Problems)
	}
}

func (w *world) count(sql string, args ...any) int64 {
	w.t.Helper()
	var n int64
	if err := w.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		w.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func (w *world) file(date string) string {
	w.t.Helper()
	b, err := os.ReadFile(filepath.Join(w.dir, "settlement-"+date+".csv"))
	if err != nil {
		w.t.Fatal(err)
	}
	return string(b)
}

func perTenK(date string, v int64) settlement.Input {
	return settlement.Input{Date: day(date), PerTenK: true, IncomePer10k: v}
}

func total(date string, fen int64) settlement.Input {
	return settlement.Input{Date: day(date), IncomeTotal: fen}
}

func isErr(err, target error) bool { return errors.Is(err, target) }
