package postgres_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/fundplatform/fund/accounts"
	accountspg "github.com/fundplatform/fund/accounts/postgres"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/ledgertest"
	"github.com/fundplatform/fund/settlement"
	settlepg "github.com/fundplatform/fund/settlement/postgres"
	"github.com/fundplatform/fund/settlement/schema"
)

// Settlement over several shard databases (sharded.go): the same nights
// run over 8 shards on one database and over 8 shards on two give the same
// income per customer, the same summaries, yields and custodian files, to
// the cent and the byte.

const multiShards = 8

// multiWorld is the platform over multiShards shards on some databases:
// a sequencer per shard on its database, the accounts service over the
// sharded accounts store, and the runner over the sharded settlement
// store, all as the service role on schemas the owner role migrated.
type multiWorld struct {
	t      *testing.T
	owners []string
	clock  *clock
	acc    *accountspg.Sharded
	store  *settlepg.Sharded
	seqs   []*ledger.Sequencer
	stops  []func() error
	svc    *accounts.Service
	runner *settlement.Runner
	dir    string
}

func newMultiWorld(t *testing.T, databases int) *multiWorld {
	t.Helper()
	ctx := context.Background()
	w := &multiWorld{t: t, clock: &clock{}, dir: t.TempDir()}
	var services []string
	var role string
	for range databases {
		roles := pgtest.NewDatabaseWithRoles(t)
		w.owners, services, role = append(w.owners, roles.Owner), append(services, roles.Service), roles.ServiceRole
	}
	if err := schema.Migrate(ctx, schema.Config{DSNs: w.owners, ServiceRole: role}); err != nil {
		t.Fatal(err)
	}
	var err error
	if w.store, err = settlepg.OpenSharded(ctx, settlepg.ShardedConfig{DSNs: services, Shards: multiShards}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.store.Close)
	if w.acc, err = accountspg.OpenSharded(ctx, accountspg.ShardedConfig{DSNs: services, Shards: multiShards,
		ConnsMax: 4}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.acc.Close)
	w.startLedger()
	t.Cleanup(w.stopLedger)
	return w
}

// startLedger starts every shard's sequencer at its current epoch, and the
// service and the runner over them.
func (w *multiWorld) startLedger() {
	w.t.Helper()
	ctx := context.Background()
	w.seqs = make([]*ledger.Sequencer, multiShards)
	for s := range multiShards {
		var epoch int64
		if err := w.store.LedgerOf(s).Pool().QueryRow(ctx, `SELECT coalesce(max(epoch), 0) FROM ledger_shards
			WHERE shard = $1`, s).Scan(&epoch); err != nil {
			w.t.Fatal(err)
		}
		w.seqs[s] = ledger.NewSequencer(ledger.SequencerConfig{Shard: s, Shards: multiShards, Epoch: epoch},
			w.store.LedgerOf(s), nil)
		stop, err := w.seqs[s].Start(ctx, readyTimeout)
		if err != nil {
			w.t.Fatalf("shard %d: %v", s, err)
		}
		w.stops = append(w.stops, stop)
	}
	// This service routes to this start's sequencers (a slice of its own).
	seqs := w.seqs
	lc := ledgertest.NewRoutes(multiShards, func(s int) ledger.Client { return seqs[s] })
	var err error
	if w.svc, err = accounts.NewService(ctx, accounts.Config{Now: w.clock.Now, Shards: multiShards,
		ShardClient: func(s int) ledger.Client { return w.seqs[s] }}, w.acc, lc, nil); err != nil {
		w.t.Fatal(err)
	}
	w.runner = settlement.NewRunner(settlement.Config{Shards: multiShards, Parallel: 3, FileDir: w.dir,
		Now: w.clock.Now, Owner: "settle-test"}, w.store, w.svc, nil, nil)
}

func (w *multiWorld) stopLedger() {
	for s, stop := range w.stops {
		if err := stop(); err != nil {
			w.t.Errorf("shard %d: %v", s, err)
		}
	}
	w.stops = nil
}

func (w *multiWorld) settle(in settlement.Input) settlement.Summary {
	w.t.Helper()
	w.stopLedger()
	defer w.startLedger()
	sum, err := w.runner.Run(context.Background(), in, nil)
	if err != nil {
		w.t.Fatalf("settle %s: %v", in, err)
	}
	return sum
}

// openAs opens a customer with the given id (a test's way to give two
// worlds the same customers): the first database's sequence is set to
// hand it out next. Only for a world on one database.
func (w *multiWorld) openAs(id accounts.CustomerID, req string) {
	w.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, w.owners[0])
	if err != nil {
		w.t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SELECT setval(pg_get_serial_sequence('customers', 'id'), $1, false)`, id); err != nil {
		w.t.Fatal(err)
	}
	c, err := w.svc.OpenCustomer(ctx, req, req)
	if err != nil || c.ID != id {
		w.t.Fatalf("open %s: %d, %v; want %d", req, c.ID, err, id)
	}
}

func (w *multiWorld) file(name string) string {
	w.t.Helper()
	b, err := os.ReadFile(filepath.Join(w.dir, name))
	if err != nil {
		w.t.Fatal(err)
	}
	return string(b)
}

func (w *multiWorld) verify() {
	w.t.Helper()
	w.stopLedger()
	defer w.startLedger()
	for s := range multiShards {
		rep, err := w.store.LedgerOf(s).Verify(context.Background(), s)
		if err != nil {
			w.t.Fatal(err)
		}
		if !rep.OK() {
			w.t.Fatalf("shard %d: %d differences, problems %q", s, len(rep.Differences), rep.Problems)
		}
	}
}

// TestTwoDatabasesSettleAsOne runs four nights (nobody confirmed yet,
// confirmations, redemptions paid, a losing day) for the same customers
// and orders over 8 shards on two databases and on one, and compares
// everything the nights produce.
func TestTwoDatabasesSettleAsOne(t *testing.T) {
	t.Parallel()
	two, one := newMultiWorld(t, 2), newMultiWorld(t, 1)
	ctx := context.Background()
	const customers = 24
	two.clock.Set(cst("2026-11-17 10:00:00"))
	one.clock.Set(cst("2026-11-17 10:00:00"))
	ids := make([]accounts.CustomerID, customers)
	perDB := make([]int, 2)
	for i := range ids {
		req := fmt.Sprintf("holder-%02d", i)
		c, err := two.svc.OpenCustomer(ctx, req, req)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = c.ID
		perDB[two.acc.DatabaseOf(c.ID)]++
	}
	if perDB[0] == 0 || perDB[1] == 0 {
		t.Fatalf("customers per database: %v", perDB)
	}
	// One world's sequence hands out the other's ids, in ascending order.
	order := make([]int, customers)
	for i := range order {
		order[i] = i
	}
	sortByID(order, ids)
	for _, i := range order {
		one.openAs(ids[i], fmt.Sprintf("holder-%02d", i))
	}
	both := func(f func(w *multiWorld)) { f(two); f(one) }
	must := func(_ accounts.Order, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	both(func(w *multiWorld) {
		for i, c := range ids {
			must(w.svc.TopUp(ctx, c, "t", int64(100000+3700*i)))
			must(w.svc.Subscribe(ctx, c, "s", int64(30000+1300*i)))
		}
	})
	nights := []struct {
		at    string
		in    settlement.Input
		after func(w *multiWorld)
	}{
		{"2026-11-17 23:00:00", perTenK("2026-11-17", 6543), nil},
		{"2026-11-18 23:00:00", total("2026-11-18", 777), func(w *multiWorld) {
			w.clock.Set(cst("2026-11-19 10:00:00"))
			for i, c := range ids {
				if i%3 == 0 {
					must(w.svc.StandardRedeem(ctx, c, "r", int64(1000+10*i)))
				}
				if i%4 == 1 {
					must(w.svc.Subscribe(ctx, c, "s2", int64(500+7*i)))
				}
			}
		}},
		{"2026-11-19 23:00:00", perTenK("2026-11-19", 10000), nil},
		{"2026-11-20 23:00:00", total("2026-11-20", -50), nil},
	}
	for _, n := range nights {
		date := n.in.Date.Format("2006-01-02")
		var sums [2]settlement.Summary
		for k, w := range []*multiWorld{two, one} {
			w.clock.Set(cst(n.at))
			sums[k] = w.settle(n.in)
			sums[k].Took, sums[k].TookIncomeBooking, sums[k].File = 0, 0, filepath.Base(sums[k].File)
		}
		if sums[0] != sums[1] {
			t.Fatalf("%s: two databases %+v, one %+v", date, sums[0], sums[1])
		}
		switch s := sums[0]; date {
		case "2026-11-18":
			if s.Subscriptions != customers || s.Holders != customers || s.FundIncome != 777 {
				t.Fatalf("%s: %+v", date, s)
			}
		case "2026-11-20":
			if s.Redemptions == 0 || s.Subscriptions == 0 || s.IncomeDeducted == 0 {
				t.Fatalf("%s: %+v", date, s)
			}
		}
		if a, b := two.file(sums[0].File), one.file(sums[1].File); a != b || a == "" {
			t.Fatalf("%s: custodian files differ:\n%s\n---\n%s", date, a, b)
		}
		for _, c := range ids {
			d2, c2, err2 := two.acc.Income(ctx, c, n.in.Date)
			d1, c1, err1 := one.acc.Income(ctx, c, n.in.Date)
			if err1 != nil || err2 != nil || d1 != d2 || c1 != c2 {
				t.Fatalf("%s: income of %d: %d/%d (%v) on two, %d/%d (%v) on one", date, c, d2, c2, err2, d1, c1, err1)
			}
		}
		if n.after != nil {
			both(n.after)
		}
	}
	y2, err := two.acc.FundYields(ctx, day("2026-11-17"), day("2026-11-20"))
	if err != nil {
		t.Fatal(err)
	}
	y1, err := one.acc.FundYields(ctx, day("2026-11-17"), day("2026-11-20"))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(y1) != fmt.Sprint(y2) || len(y1) != 4 {
		t.Fatalf("yields: two databases %+v, one %+v", y2, y1)
	}
	for d := range 2 {
		var n int
		if err := two.acc.Database(d).Pool().QueryRow(ctx, `SELECT count(*) FROM customer_income`).Scan(&n); err != nil || n == 0 {
			t.Fatalf("database %d holds %d income rows (%v)", d, n, err)
		}
	}
	two.verify()
	one.verify()
}

// sortByID sorts the indexes by their customers' ids.
func sortByID(idx []int, ids []accounts.CustomerID) {
	for i := 1; i < len(idx); i++ {
		for j := i; j > 0 && ids[idx[j]] < ids[idx[j-1]]; j-- {
			idx[j], idx[j-1] = idx[j-1], idx[j]
		}
	}
}
