package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/accounts/postgres"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/ledgertest"
	ledgerpg "github.com/fundplatform/fund/ledger/postgres"
	"github.com/fundplatform/fund/ledger/xshard"
)

// The accounts store over several shard databases (sharded.go): a world of
// shardedShards ledger shards on two databases, a sequencer per shard on
// its database, the service over the Sharded store, and the saga's router,
// whose Handle the tests call on each leg 1 themselves (as saga_test.go
// does on one database).
const shardedShards = 4

type shardedWorld struct {
	t      *testing.T
	dsns   []string
	store  *postgres.Sharded
	ledger *ledgerpg.Databases
	svc    *accounts.Service
	router *xshard.Router
	opened int
}

func newShardedWorld(t *testing.T, databases int) *shardedWorld {
	t.Helper()
	w := &shardedWorld{t: t}
	for range databases {
		w.dsns = append(w.dsns, pgtest.NewDatabase(t))
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	var err error
	if w.ledger, err = ledgerpg.OpenDatabases(ctx, ledgerpg.DatabasesConfig{DSNs: w.dsns, Shards: shardedShards,
		ConnsMax: 4}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.ledger.Close)
	if w.store, err = postgres.OpenSharded(ctx, postgres.ShardedConfig{DSNs: w.dsns, Shards: shardedShards,
		ConnsMax: 8}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.store.Close)
	seqs := make([]*ledger.Sequencer, shardedShards)
	for s := range shardedShards {
		seqs[s] = ledger.NewSequencer(ledger.SequencerConfig{Shard: s, Shards: shardedShards}, w.ledger.StoreOf(s), nil)
		stop, err := seqs[s].Start(ctx, readyTimeout)
		if err != nil {
			t.Fatalf("shard %d: %v", s, err)
		}
		t.Cleanup(func() {
			if err := stop(); err != nil {
				t.Errorf("shard %d: %v", s, err)
			}
		})
	}
	perShard := func(s int) ledger.Client { return seqs[s] }
	w.router = xshard.NewRouter(shardedShards, perShard)
	clk := &clock{}
	clk.Set(cst("2026-11-18 10:00:00"))
	// Routed as newShardedEnv's client is: plain clients, no attachments.
	lc := ledgertest.NewRoutes(shardedShards, func(s int) ledger.Client { return struct{ ledger.Client }{seqs[s]} })
	if w.svc, err = accounts.NewService(ctx, accounts.Config{Now: clk.Now, Shards: shardedShards, ShardClient: perShard},
		w.store, lc, nil); err != nil {
		t.Fatal(err)
	}
	return w
}

// openOn opens a customer stored in database d: creation picks the
// database by the request id, so a few opens find one.
func (w *shardedWorld) openOn(d int, name string) accounts.CustomerID {
	w.t.Helper()
	for range 64 {
		w.opened++
		c, err := w.svc.OpenCustomer(context.Background(), fmt.Sprintf("sharded-open-%d", w.opened), name)
		if err != nil {
			w.t.Fatalf("open %s: %v", name, err)
		}
		if w.store.DatabaseOf(c.ID) == d {
			return c.ID
		}
	}
	w.t.Fatalf("no customer in database %d after 64 opens", d)
	return 0
}

// rowsIn counts the rows of a query in database d.
func (w *shardedWorld) rowsIn(d int, sql string, args ...any) int {
	w.t.Helper()
	var n int
	if err := w.store.Database(d).Pool().QueryRow(context.Background(), `SELECT count(*) FROM (`+sql+`) x`,
		args...).Scan(&n); err != nil {
		w.t.Fatal(err)
	}
	return n
}

// deliver hands every saga leg 1 in every database's journal to the saga's
// consumer, as the ledger owners' consumer group would.
func (w *shardedWorld) deliver() {
	w.t.Helper()
	ctx := context.Background()
	for d := range w.ledger.Len() {
		rows, err := w.ledger.Store(d).Pool().Query(ctx, `SELECT shard, id::text, debit_account_id, credit_account_id,
			amount, asset, kind, flags, user_data FROM transfers WHERE kind = $1 ORDER BY ts`, int32(xshard.KindOut))
		if err != nil {
			w.t.Fatal(err)
		}
		var (
			evs []ledger.Event
			ev  ledger.Event
			id  string
		)
		if _, err := pgx.ForEachRow(rows, []any{&ev.Shard, &id, &ev.DebitAccountID, &ev.CreditAccountID, &ev.Amount,
			&ev.Asset, &ev.Kind, &ev.Flags, &ev.UserData}, func() error {
			tid, err := ledger.ParseTransferID(id)
			ev.ID, ev.Version = tid, ledger.EventVersion
			evs = append(evs, ev)
			return err
		}); err != nil {
			w.t.Fatal(err)
		}
		for _, ev := range evs {
			if err := w.router.Handle(ctx, ev); err != nil {
				w.t.Fatalf("handle %s: %v", ev.ID, err)
			}
		}
	}
}

// Customers are created once per request id, however often and however
// concurrently the request is retried, in one database, with an id whose
// shard that database holds; both databases get customers.
func TestShardedCustomersLandOnTheirDatabase(t *testing.T) {
	t.Parallel()
	w := newShardedWorld(t, 2)
	ctx := context.Background()
	perDB := make([]int, 2)
	for i := range 24 {
		req := fmt.Sprintf("land-%d", i)
		var (
			wg  sync.WaitGroup
			ids [3]accounts.CustomerID
		)
		for k := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := w.svc.OpenCustomer(ctx, req, "Lan")
				if err != nil {
					t.Errorf("open %s: %v", req, err)
				}
				ids[k] = c.ID
			}()
		}
		wg.Wait()
		if ids[0] != ids[1] || ids[1] != ids[2] {
			t.Fatalf("%s opened as %v", req, ids)
		}
		again, err := w.svc.OpenCustomer(ctx, req, "Lan")
		if err != nil || again.ID != ids[0] {
			t.Fatalf("retry of %s: %d, %v; want %d", req, again.ID, err, ids[0])
		}
		c := ids[0]
		d := w.store.DatabaseOf(c)
		perDB[d]++
		if n := w.rowsIn(d, `SELECT 1 FROM customers WHERE id = $1 AND request_id = $2`, c, req); n != 1 {
			t.Fatalf("customer %d (%s) not in database %d", c, req, d)
		}
		if n := w.rowsIn(1-d, `SELECT 1 FROM customers WHERE id = $1 OR request_id = $2`, c, req); n != 0 {
			t.Fatalf("customer %d (%s) also in database %d", c, req, 1-d)
		}
		if got, err := w.store.Customer(ctx, c); err != nil || got.RequestID != req {
			t.Fatalf("customer %d: %+v, %v", c, got, err)
		}
	}
	if perDB[0] == 0 || perDB[1] == 0 {
		t.Fatalf("customers per database: %v", perDB)
	}
}

// A customer's orders, status changes and income go to its database; a
// batch of income over both databases is recorded whole, and one with a
// conflicting amount fails with nothing written; the fund-wide rows are
// the first database's.
func TestShardedOrdersAndIncomeRouted(t *testing.T) {
	t.Parallel()
	w := newShardedWorld(t, 2)
	ctx := context.Background()
	a, b := w.openOn(0, "Ada"), w.openOn(1, "Bo")
	for i, c := range []accounts.CustomerID{a, b} {
		if _, err := w.svc.TopUp(ctx, c, "top", 10*yuan); err != nil {
			t.Fatal(err)
		}
		if _, err := w.svc.Subscribe(ctx, c, "sub", 4*yuan); err != nil {
			t.Fatal(err)
		}
		if n := w.rowsIn(i, `SELECT 1 FROM orders WHERE customer_id = $1`, c); n != 2 {
			t.Fatalf("customer %d: %d orders in database %d, want 2", c, n, i)
		}
		o, err := w.svc.OrderStatus(ctx, c, "sub")
		if err != nil || o.Status != accounts.OrderPending || o.Amount != 4*yuan {
			t.Fatalf("subscription of %d: %+v, %v", c, o, err)
		}
		page, err := w.svc.History(ctx, accounts.HistoryQuery{CustomerID: c, Limit: 10})
		if err != nil || len(page.Entries) != 2 || page.Entries[0].RequestID != "sub" {
			t.Fatalf("history of %d: %+v, %v", c, page, err)
		}
		if _, err := w.svc.Freeze(ctx, c); err != nil {
			t.Fatal(err)
		}
		if n := w.rowsIn(i, `SELECT 1 FROM customers WHERE id = $1 AND status = 'frozen'`, c); n != 1 {
			t.Fatalf("customer %d not frozen in database %d", c, i)
		}
	}
	batch := []accounts.DailyIncome{{CustomerID: a, Date: day("2026-11-17"), Amount: 12},
		{CustomerID: b, Date: day("2026-11-17"), Amount: 34}}
	if err := w.svc.RecordDailyIncome(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if err := w.svc.RecordDailyIncome(ctx, batch); err != nil { // the same again: a no-op
		t.Fatal(err)
	}
	conflict := []accounts.DailyIncome{{CustomerID: a, Date: day("2026-11-18"), Amount: 5},
		{CustomerID: b, Date: day("2026-11-17"), Amount: 35}}
	if err := w.svc.RecordDailyIncome(ctx, conflict); !errors.Is(err, accounts.ErrRecordConflict) {
		t.Fatalf("conflicting income: %v", err)
	}
	if n := w.rowsIn(0, `SELECT 1 FROM customer_income WHERE customer_id = $1 AND date = '2026-11-18'`, a); n != 0 {
		t.Fatal("a conflicting batch wrote its other database's part")
	}
	for _, c := range []struct {
		id   accounts.CustomerID
		want int64
	}{{a, 12}, {b, 34}} {
		dayIncome, total, err := w.store.Income(ctx, c.id, day("2026-11-17"))
		if err != nil || dayIncome != c.want || total != c.want {
			t.Fatalf("income of %d: %d %d %v, want %d", c.id, dayIncome, total, err, c.want)
		}
	}
	if err := w.store.RecordFundYield(ctx, accounts.FundYield{Date: day("2026-11-17"), IncomePer10k: 6543}); err != nil {
		t.Fatal(err)
	}
	if n := w.rowsIn(0, `SELECT 1 FROM fund_yields`); n != 1 || w.rowsIn(1, `SELECT 1 FROM fund_yields`) != 0 {
		t.Fatal("fund yields not in the first database alone")
	}
}

// A transfer from a customer on one database to one on the other is
// placed in the payer's database, PENDING until the payee's leg lands,
// then COMPLETED; the payee's history shows it from the payer's database;
// a payee that does not exist is refused with nothing stored; and paging
// through a history merged from both databases gives every order once.
func TestShardedTransferAcrossDatabases(t *testing.T) {
	t.Parallel()
	w := newShardedWorld(t, 2)
	ctx := context.Background()
	a, b := w.openOn(0, "Ada"), w.openOn(1, "Bo")
	if _, err := w.svc.TopUp(ctx, a, "top", 10*yuan); err != nil {
		t.Fatal(err)
	}
	if _, err := w.svc.TopUp(ctx, b, "top", 10*yuan); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 5 {
		req := fmt.Sprintf("t%d", i)
		o, err := w.svc.Transfer(ctx, a, req, b, yuan)
		if err != nil || o.Status != accounts.OrderPending {
			t.Fatalf("transfer %s: %+v, %v", req, o, err)
		}
		if _, err := w.svc.TopUp(ctx, b, fmt.Sprintf("b%d", i), yuan); err != nil {
			t.Fatal(err)
		}
		want = append(want, "a/"+req, fmt.Sprintf("b/b%d", i))
	}
	if n := w.rowsIn(0, `SELECT 1 FROM orders WHERE customer_id = $1 AND kind = 'transfer'`, a); n != 5 {
		t.Fatalf("%d transfers in the payer's database, want 5", n)
	}
	w.deliver()
	if o, err := w.svc.OrderStatus(ctx, a, "t0"); err != nil || o.Status != accounts.OrderCompleted {
		t.Fatalf("transfer after its leg 2: %+v, %v", o, err)
	}
	if _, err := w.svc.ResolvePendingTransfers(ctx, 10); err != nil {
		t.Fatal(err)
	}
	// b's history, two entries a page, from both databases.
	var got []string
	seen := map[int64]bool{}
	cursor := ""
	for range 20 {
		page, err := w.svc.History(ctx, accounts.HistoryQuery{CustomerID: b, Limit: 2, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range page.Entries {
			if seen[h.ID] {
				t.Fatalf("order id %d twice", h.ID)
			}
			seen[h.ID] = true
			if h.Incoming != (h.CustomerID == a) || h.Status != accounts.OrderCompleted {
				t.Fatalf("entry %+v", h)
			}
			who := "b"
			if h.Incoming {
				who = "a"
			}
			got = append(got, who+"/"+h.RequestID)
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	slices.Sort(got)
	want = append(want, "b/top")
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("history of the payee: %v, want %v", got, want)
	}
	// A payee id of the other database that was never opened.
	ghost := b
	for ghost++; w.store.DatabaseOf(ghost) != 1; ghost++ {
	}
	ghost += 1000
	for w.store.DatabaseOf(ghost) != 1 {
		ghost++
	}
	if _, err := w.svc.Transfer(ctx, a, "ghost", ghost, yuan); !errors.Is(err, accounts.ErrCustomerNotFound) {
		t.Fatalf("transfer to a customer never opened: %v", err)
	}
	if _, err := w.store.Order(ctx, a, "ghost"); !errors.Is(err, accounts.ErrOrderNotFound) {
		t.Fatalf("refused transfer stored: %v", err)
	}
}

// With one database the sharded store is the plain one: ids from the
// sequence in order, whatever the shard count.
func TestShardedOneDatabaseIsThePlainStore(t *testing.T) {
	t.Parallel()
	w := newShardedWorld(t, 1)
	for i := range 5 {
		c := w.openOn(0, "Solo")
		if c != accounts.CustomerID(i+1) {
			t.Fatalf("customer %d has id %d", i+1, c)
		}
	}
	ctx := context.Background()
	if _, err := w.svc.TopUp(ctx, 3, "top", yuan); err != nil {
		t.Fatal(err)
	}
	var local int64
	if err := w.store.Database(0).Pool().QueryRow(ctx, `SELECT id FROM orders WHERE customer_id = 3`).Scan(&local); err != nil {
		t.Fatal(err)
	}
	if o, err := w.svc.OrderStatus(ctx, 3, "top"); err != nil || o.ID != local {
		t.Fatalf("order: %+v, %v; stored id %d", o, err, local)
	}
}

// New customers spread evenly over every shard, not only over the
// databases: each database gives out every id of its shards in sequence
// order (taking only the first fit of each draw put them on a few shards).
func TestShardedCustomersSpreadOverShards(t *testing.T) {
	t.Parallel()
	w := newShardedWorld(t, 2)
	ctx := context.Background()
	const perShard = 40
	count := make([]int, shardedShards)
	for i := range perShard * shardedShards {
		c, _, err := w.store.Database(i%2).CreateCustomer(ctx, accounts.Customer{RequestID: fmt.Sprintf("spread-%d", i),
			Name: "Spr", CreatedAt: time.Now().UTC().Truncate(time.Microsecond)}, func(context.Context, accounts.Customer) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		count[accounts.ShardOf(c.ID, shardedShards)]++
	}
	// Each database gets half the customers and holds half the shards,
	// and gives out the ids of its shards in sequence order, which the
	// shard hash spreads within a few of even (ids are deterministic: a
	// fresh sequence). Keeping only the first fit of each draw gave
	// 45/35 here and empty shards with 8 shards on 2 databases.
	for s, n := range count {
		if n < perShard*9/10 || n > perShard*11/10 {
			t.Fatalf("customers per shard %v: shard %d has %d, want about %d", count, s, n, perShard)
		}
	}
}
