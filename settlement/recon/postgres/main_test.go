package postgres_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fundplatform/fund/internal/kafkabroker"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/kafka"
	"github.com/fundplatform/fund/ledger/outbox"
	ledgerpg "github.com/fundplatform/fund/ledger/postgres"
	"github.com/fundplatform/fund/ledger/xshard"
	"github.com/fundplatform/fund/settlement/recon"
	reconkafka "github.com/fundplatform/fund/settlement/recon/kafka"
	reconpg "github.com/fundplatform/fund/settlement/recon/postgres"
	"github.com/fundplatform/fund/settlement/schema"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const (
	topic        = "ledger-events"
	readyTimeout = 30 * time.Second
	waitMax      = 60 * time.Second // the pipeline catches up within this
)

// clock is the ledger's clock: real time moved by an offset the test sets,
// so that entries land on the business day the test wants.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// setDay moves the clock to noon (business zone) of the day daysAgo days
// before today, plus the real time that passes from now on.
func (c *clock) setDay(daysAgo int) {
	now := time.Now()
	today := ledger.BusinessDate(now.UnixNano())
	noon := recon.DayStart(today.AddDate(0, 0, -daysAgo)).Add(12 * time.Hour)
	c.offset.Store(int64(noon.Sub(now)))
}

// dropper is a Publisher that loses the events of chosen transfers, as a
// broken relay would, and remembers every event it published.
type dropper struct {
	pub *kafka.Publisher

	mu        sync.Mutex
	drop      map[ledger.TransferID]bool
	published map[ledger.TransferID]ledger.Event
}

func (d *dropper) Publish(ctx context.Context, events []ledger.Event) error {
	d.mu.Lock()
	keep := make([]ledger.Event, 0, len(events))
	for _, e := range events {
		if !d.drop[e.ID] {
			keep = append(keep, e)
		}
	}
	d.mu.Unlock()
	if err := d.pub.Publish(ctx, keep); err != nil {
		return err
	}
	d.mu.Lock()
	for _, e := range keep {
		d.published[e.ID] = e
	}
	d.mu.Unlock()
	return nil
}

func (d *dropper) event(id ledger.TransferID) (ledger.Event, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.published[id]
	return e, ok
}

func (d *dropper) all() []ledger.Event {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]ledger.Event, 0, len(d.published))
	for _, e := range d.published {
		out = append(out, e)
	}
	return out
}

// env is a whole pipeline in-process: shards on one database, the outbox
// relay, an in-process broker, the cross-shard saga consumer (optional)
// and a reconciliation worker, all stopped when the test ends.
type env struct {
	t       *testing.T
	dsn     string // of database 0
	dsns    []string
	ledgers []*ledgerpg.Store
	shards  int
	smap    ledger.ShardMap
	sagas   bool
	clock   *clock
	ledger  *ledgerpg.Store
	seqs    []*ledger.Sequencer
	router  *xshard.Router
	store   *reconpg.Store // of database 0
	stores  []*reconpg.Store
	worker  *recon.Worker
	reg     *prometheus.Registry
	pub     *dropper
	broker  *kafkabroker.Broker
}

type envConfig struct {
	shards int
	dbs    int  // databases the shards are spread over (ledger.ShardMap); 0 = 1
	sagas  bool // run the saga consumer (leg 2 applied)
	drop   []ledger.TransferID
	day    int // days ago the ledger's clock starts
}

func newEnv(t *testing.T, cfg envConfig) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{t: t, shards: cfg.shards, sagas: cfg.sagas, clock: &clock{}, reg: prometheus.NewRegistry()}
	e.clock.setDay(cfg.day)
	smap, err := ledger.NewShardMap(cfg.shards, max(cfg.dbs, 1))
	if err != nil {
		t.Fatal(err)
	}
	e.smap = smap
	today := ledger.BusinessDate(time.Now().UnixNano())
	var stores []recon.Store
	for db := 0; db < smap.Databases; db++ {
		// The stores work as the platform's service role on a schema the
		// owner migrated; dsn (the administrator's) only plants tampered
		// rows (superuser).
		roles := pgtest.NewDatabaseWithRoles(t)
		if err := schema.Migrate(ctx, schema.Config{DSNs: []string{roles.Owner}, ServiceRole: roles.ServiceRole}); err != nil {
			t.Fatal(err)
		}
		dsn := roles.Admin
		ls, err := ledgerpg.Open(ctx, ledgerpg.Config{DSN: roles.Service, ConnsMax: 8})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(ls.Close)
		if err := ls.EnsurePartitions(ctx, today.AddDate(0, 0, -3), today.AddDate(0, 0, 1)); err != nil {
			t.Fatal(err)
		}
		rs, err := reconpg.Open(ctx, reconpg.Config{DSN: roles.Service})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(rs.Close)
		e.dsns, e.ledgers, e.stores = append(e.dsns, dsn), append(e.ledgers, ls), append(e.stores, rs)
		stores = append(stores, rs)
	}
	e.dsn, e.ledger, e.store = e.dsns[0], e.ledgers[0], e.stores[0]
	set, err := recon.NewSet(smap, stores...)
	if err != nil {
		t.Fatal(err)
	}
	for s := 0; s < cfg.shards; s++ {
		seq := ledger.NewSequencer(ledger.SequencerConfig{Shard: s, Shards: cfg.shards, Now: e.clock.Now},
			e.ledgers[smap.DatabaseOf(s)], nil)
		stop, err := seq.Start(ctx, readyTimeout)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := stop(); err != nil {
				t.Errorf("shard %d: %v", s, err)
			}
		})
		e.seqs = append(e.seqs, seq)
	}
	e.router = xshard.NewRouter(cfg.shards, func(s int) ledger.Client { return e.seqs[s] })
	if cfg.shards > 1 {
		if err := e.router.EnsureInTransit(ctx, ledger.AssetCNY); err != nil {
			t.Fatal(err)
		}
	}

	e.broker, err = kafkabroker.Start(0, cfg.shards, topic)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.broker.Close)
	e.pub = &dropper{pub: kafka.NewPublisher(e.broker.Addrs(), topic), drop: map[ledger.TransferID]bool{},
		published: map[ledger.TransferID]ledger.Event{}}
	for _, id := range cfg.drop {
		e.pub.drop[id] = true
	}
	t.Cleanup(func() { _ = e.pub.pub.Close() })
	for db, ls := range e.ledgers {
		relay := outbox.NewRelay(outbox.RelayConfig{Shards: smap.ShardsOn(db), PollInterval: 5 * time.Millisecond}, ls, e.pub, nil)
		e.run(fmt.Sprintf("relay of database %d", db), relay.Run)
	}
	if cfg.sagas {
		e.run("sagas", func(ctx context.Context) error {
			return kafka.Consume(ctx, kafka.ConsumerConfig{Brokers: e.broker.Addrs(), Topic: topic, Group: "sagas",
				InFlightMax: 256}, e.router.Handle)
		})
	}
	e.worker, err = recon.NewWorker(recon.WorkerConfig{
		Consume: func(ctx context.Context, h func(context.Context, ledger.Event) error) error {
			return kafka.Consume(ctx, kafka.ConsumerConfig{Brokers: e.broker.Addrs(), Topic: topic, Group: "recon",
				InFlightMax: 2048}, h)
		},
		Lag:          reconkafka.NewLagProbe(e.broker.Addrs(), topic, "recon").Lag,
		LagEvery:     50 * time.Millisecond,
		BatchMax:     256,
		CompareEvery: -1, // the test compares
		Registerer:   e.reg,
	}, set, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.run("recon worker", e.worker.Run)
	return e
}

// run runs fn until the test ends; an error before then fails the test.
func (e *env) run(name string, fn func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("%s: %v", name, err)
		}
	})
}

// accountOn returns n fresh account ids on shard s, from base up.
func (e *env) accountsOn(s int, base ledger.AccountID, n int) []ledger.AccountID {
	var out []ledger.AccountID
	for id := base; len(out) < n; id++ {
		if ledger.ShardOf(id, e.shards) == s {
			out = append(out, id)
		}
	}
	return out
}

func (e *env) createAccounts(ids ...ledger.AccountID) {
	e.t.Helper()
	for _, id := range ids {
		s := ledger.ShardOf(id, e.shards)
		rs, err := e.seqs[s].CreateAccounts(context.Background(), []ledger.Account{{ID: id, Asset: ledger.AssetCNY, Code: 1}})
		if err != nil || !rs[0].Result.Applied() {
			e.t.Fatalf("create account %d: %v %v", id, rs, err)
		}
	}
}

// transfer applies transfers on their debit account's shard; every one
// must apply.
func (e *env) transfer(ts ...ledger.Transfer) {
	e.t.Helper()
	for _, t := range ts {
		s := ledger.ShardOf(t.DebitAccountID, e.shards)
		rs, err := e.seqs[s].CreateTransfers(context.Background(), []ledger.Transfer{t})
		if err != nil || rs[0].Result != ledger.ResultOK {
			e.t.Fatalf("transfer %+v: %v %v", t, rs, err)
		}
	}
}

// waitRecorded waits until every journal entry but the dropped ones is
// recorded by reconciliation.
func (e *env) waitRecorded(dropped int) {
	e.t.Helper()
	end := time.Now().Add(waitMax)
	for {
		var journal, missing int64
		for _, ls := range e.ledgers {
			var j, m int64
			err := ls.Pool().QueryRow(context.Background(), `
				SELECT count(*), count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM recon_events r WHERE r.id = t.id))
				FROM transfers t`).Scan(&j, &m)
			if err != nil {
				e.t.Fatal(err)
			}
			journal, missing = journal+j, missing+m
		}
		if missing == int64(dropped) {
			return
		}
		if time.Now().After(end) {
			e.t.Fatalf("reconciliation still misses %d of %d journal entries (want %d)", missing, journal, dropped)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metric returns a series' value from the worker's registry.
func (e *env) metric(name, label, value string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					match = true
				}
			}
			if !match {
				continue
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	e.t.Fatalf("metric %s{%s=%q} not found", name, label, value)
	return 0
}

// waitMetric waits until a counter reaches at least want (a consumer that
// restarts after a broker hiccup may deliver some events once more).
func (e *env) waitMetric(name, label, value string, want float64) {
	e.t.Helper()
	end := time.Now().Add(waitMax)
	for {
		got := e.metric(name, label, value)
		if got >= want {
			return
		}
		if time.Now().After(end) {
			e.t.Fatalf("%s{%s=%q} = %v, want %v", name, label, value, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitGauge waits until a gauge shows want.
func (e *env) waitGauge(name string, want float64) {
	e.t.Helper()
	end := time.Now().Add(waitMax)
	for {
		got := e.metric(name, "", "")
		if got == want {
			return
		}
		if time.Now().After(end) {
			e.t.Fatalf("%s = %v, want %v", name, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// publishAgain publishes events straight to the topic, as a relay that
// crashed before acknowledging its outbox would.
func (e *env) publishAgain(events ...ledger.Event) {
	e.t.Helper()
	if err := e.pub.pub.Publish(context.Background(), events); err != nil {
		e.t.Fatal(err)
	}
}

// dbOf is the database index of an account's shard.
func (e *env) dbOf(a ledger.AccountID) int {
	return e.smap.DatabaseOf(ledger.ShardOf(a, e.shards))
}

// journalEvent returns the event of a journal row as the journal holds it.
func (e *env) journalEvent(id ledger.TransferID, shard int) ledger.Event {
	e.t.Helper()
	var t ledger.Transfer
	var asset int16
	var kind, flags int32
	err := e.ledgers[e.smap.DatabaseOf(shard)].Pool().QueryRow(context.Background(), `
		SELECT ts, debit_account_id, credit_account_id, amount, asset, kind, flags, user_data
		FROM transfers WHERE id = $1 LIMIT 1`, id).Scan(&t.Timestamp, &t.DebitAccountID, &t.CreditAccountID,
		&t.Amount, &asset, &kind, &flags, &t.UserData)
	if err != nil {
		e.t.Fatalf("journal row %s: %v", id, err)
	}
	t.ID, t.Asset, t.Kind, t.Flags = id, ledger.Asset(asset), uint16(kind), ledger.TransferFlags(flags)
	return ledger.EventOf(shard, &t)
}

// superuser runs statements as the database owner (a superuser in tests)
// with the ledger's append-only triggers switched off for the session:
// the only way to plant a tampered journal row.
func (e *env) superuser(stmts ...string) { e.t.Helper(); e.superuserOn(0, stmts...) }

// superuserOn is superuser on database db.
func (e *env) superuserOn(db int, stmts ...string) {
	e.t.Helper()
	if len(stmts) == 0 {
		return
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.dsns[db])
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SET session_replication_role = replica`); err != nil {
		e.t.Fatal(err)
	}
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			e.t.Fatalf("%s: %v", s, err)
		}
	}
}

func (e *env) compare(day time.Time, opts recon.CompareOptions) *recon.Report {
	e.t.Helper()
	rep, err := e.worker.Compare(context.Background(), day, opts)
	if err != nil {
		e.t.Fatalf("compare %s: %v", day.Format(time.DateOnly), err)
	}
	return rep
}

func daysAgo(n int) time.Time {
	return ledger.BusinessDate(time.Now().UnixNano()).AddDate(0, 0, -n)
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x5851F42D4C957F2D)) }

func describe(bs []recon.Break) string {
	s := ""
	for _, b := range bs {
		s += fmt.Sprintf("\n  %s %s", b.Kind, b.Detail)
	}
	return s
}
