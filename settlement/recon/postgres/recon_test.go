package postgres_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"

	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/internal/testseed"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/xshard"
	"github.com/fundplatform/fund/settlement/recon"
	reconpg "github.com/fundplatform/fund/settlement/recon/postgres"
)

// traffic applies n random operations: plain transfers within a shard,
// cross-shard sagas (when the saga consumer runs), two-phase transfers
// posted in part or voided. Every account lives on its shard. It returns
// the plain transfers.
func traffic(t *testing.T, e *env, rng *rand.Rand, users [][]ledger.AccountID, n int) []ledger.Transfer {
	t.Helper()
	var plain []ledger.Transfer
	ctx := context.Background()
	pick := func(s int) ledger.AccountID { return users[s][rng.IntN(len(users[s]))] }
	for i := 0; i < n; i++ {
		s := rng.IntN(e.shards)
		a := pick(s)
		b := pick(s)
		for b == a {
			b = pick(s)
		}
		amount := int64(1 + rng.IntN(100_000))
		switch op := rng.IntN(4); {
		case op == 0 || (op == 1 && !e.sagas):
			tr := ledger.Transfer{ID: ledger.NewTransferID(), DebitAccountID: a, CreditAccountID: b, Amount: amount,
				Asset: ledger.AssetCNY, Kind: 1, UserData: fmt.Sprintf("plain-%d", i)}
			e.transfer(tr)
			plain = append(plain, tr)
		case op == 1:
			to := pick((s + 1 + rng.IntN(e.shards-1)) % e.shards)
			o, err := e.router.Transfer(ctx, ledger.Transfer{ID: ledger.NewTransferID(), DebitAccountID: a, CreditAccountID: to,
				Amount: amount, Asset: ledger.AssetCNY, Kind: 8, UserData: fmt.Sprintf("saga-%d", i)}, waitMax)
			if err != nil || o.State != xshard.Completed || o.Result != ledger.ResultOK {
				t.Fatalf("saga %d: %+v %v", i, o, err)
			}
		default:
			pid := ledger.NewTransferID()
			e.transfer(ledger.Transfer{ID: pid, DebitAccountID: a, CreditAccountID: b, Amount: amount,
				Asset: ledger.AssetCNY, Kind: 2, Flags: ledger.Pending})
			end := ledger.Transfer{ID: ledger.NewTransferID(), PendingID: pid, DebitAccountID: a, CreditAccountID: b, Asset: ledger.AssetCNY, Kind: 2}
			if op == 2 {
				end.Flags, end.Amount = ledger.PostPending, 1+rng.Int64N(amount)
			} else {
				end.Flags = ledger.VoidPending
			}
			e.transfer(end)
		}
	}
	return plain
}

func requireClean(t *testing.T, rep *recon.Report) {
	t.Helper()
	if len(rep.Breaks) > 0 {
		t.Fatalf("%s: %d breaks:%s", rep.BusinessDate, len(rep.Breaks), describe(rep.Breaks))
	}
	if len(rep.Shards) == 0 {
		t.Fatalf("%s: nothing compared", rep.BusinessDate)
	}
	for _, sd := range rep.Shards {
		if !sd.Equal || sd.JournalEntries != sd.StreamEntries || sd.JournalAmount != sd.StreamAmount {
			t.Fatalf("%s: shard totals differ: %+v", rep.BusinessDate, sd)
		}
	}
	if rep.OpenSagas != 0 {
		t.Fatalf("%s: %d sagas open", rep.BusinessDate, rep.OpenSagas)
	}
	for asset, v := range rep.InTransit {
		if v != 0 {
			t.Fatalf("%s: %s in transit %d", rep.BusinessDate, asset, v)
		}
	}
}

// Random traffic on three shards in two databases over two business days
// (one of them over), with sagas across databases, through outbox, relays,
// broker and consumer group: every
// comparison is clean, the shallow one and the deep one; then a random
// part of the events is delivered again and nothing changes.
func TestCleanRunsAndRedeliveries(t *testing.T) {
	seed := testseed.Seed(t)
	rng := newRand(seed)
	e := newEnv(t, envConfig{shards: 3, dbs: 2, sagas: true, day: 2})
	var users [][]ledger.AccountID
	for s := 0; s < e.shards; s++ {
		users = append(users, e.accountsOn(s, 1000, 5))
		e.createAccounts(users[s]...)
	}
	traffic(t, e, rng, users, 40+rng.IntN(40))
	e.clock.setDay(0)
	traffic(t, e, rng, users, 40+rng.IntN(40))
	e.waitRecorded(0)

	past, today := daysAgo(2), daysAgo(0)
	for _, deep := range []bool{false, true} {
		requireClean(t, e.compare(past, recon.CompareOptions{Deep: deep}))
		requireClean(t, e.compare(today, recon.CompareOptions{Cutoff: e.clock.Now(), Deep: deep}))
	}
	var journal int64
	for _, ls := range e.ledgers {
		var n int64
		if err := ls.Pool().QueryRow(context.Background(), `SELECT count(*) FROM transfers`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		journal += n
	}
	if got := e.metric("fund_recon_events_total", "result", "applied"); got != float64(journal) {
		t.Fatalf("applied %v events, the journal holds %d", got, journal)
	}

	// Redeliveries: a relay that crashed before acknowledging its outbox
	// publishes again; a consumer that crashed before committing reads
	// again. Same ids, same content: ignored.
	all := e.pub.all()
	sort.Slice(all, func(i, j int) bool { return all[i].Timestamp < all[j].Timestamp })
	var again []ledger.Event
	for _, ev := range all {
		if rng.IntN(3) == 0 {
			again = append(again, ev)
		}
	}
	again = append(again, all[0], all[0]) // one of them three times
	e.publishAgain(again...)
	e.waitMetric("fund_recon_events_total", "result", "redelivered", float64(len(again)))
	if got := e.metric("fund_recon_events_total", "result", "conflict"); got != 0 {
		t.Fatalf("%v conflicts", got)
	}
	if got := e.metric("fund_recon_events_total", "result", "applied"); got != float64(journal) {
		t.Fatalf("after redelivery: applied %v events, the journal holds %d", got, journal)
	}
	requireClean(t, e.compare(past, recon.CompareOptions{}))
	requireClean(t, e.compare(today, recon.CompareOptions{Cutoff: e.clock.Now(), Deep: true}))
	for _, k := range recon.BreakKinds() {
		if v := e.metric("fund_recon_breaks", "kind", string(k)); v != 0 {
			t.Errorf("fund_recon_breaks{kind=%q} = %v", k, v)
		}
	}
	e.waitGauge("fund_recon_consumer_lag_messages", 0)
	t.Logf("%d journal entries over 2 days on %d shards in %d databases, %d redelivered: clean", journal, e.shards, len(e.ledgers), len(again))
}

// The injections the issue names: an event the relay lost (missing), a
// redelivery with other content and a journal row planted twice
// (duplicates), a journal row rewritten behind the triggers' back (amount
// mismatch), and a saga whose money never left transit. Each is reported
// with the transfer and the accounts it touches, on a day that is over and
// on one still open; then the lost event is replayed and the saga closed,
// and their breaks are resolved.
func TestCatchesInjectedBreaks(t *testing.T) {
	seed := testseed.Seed(t)
	rng := newRand(seed)
	ctx := context.Background()
	lost := ledger.NewTransferID()
	e := newEnv(t, envConfig{shards: 2, dbs: 2, day: 1, drop: []ledger.TransferID{lost}})
	users := [][]ledger.AccountID{e.accountsOn(0, 1000, 4), e.accountsOn(1, 1000, 4)}
	// Each injection gets accounts of its own, so that its account breaks
	// are its own too.
	own := e.accountsOn(0, 5000, 8)
	payee := e.accountsOn(1, 5000, 1)[0]
	e.createAccounts(append(append(append(users[0], users[1]...), own...), payee)...)

	traffic(t, e, rng, users, 30+rng.IntN(30))
	tr := func(id ledger.TransferID, dr, cr ledger.AccountID, amount int64, kind uint16, ud string) ledger.Transfer {
		return ledger.Transfer{ID: id, DebitAccountID: dr, CreditAccountID: cr, Amount: amount, Asset: ledger.AssetCNY, Kind: kind, UserData: ud}
	}
	conflicted, planted, tampered := ledger.NewTransferID(), ledger.NewTransferID(), ledger.NewTransferID()
	e.transfer(
		tr(lost, own[0], own[1], 1_00, 1, "lost"),
		tr(conflicted, own[2], own[3], 2_00, 1, "conflicted"),
		tr(planted, own[4], own[5], 3_00, 1, "planted"),
		tr(tampered, own[6], own[7], 4_00, 1, "tampered"),
	)
	// Leg 1 of a saga nobody completes: the saga consumer is not running.
	leg1 := ledger.NewTransferID()
	inTransit := xshard.InTransitAccount(0, 1, e.shards, ledger.AssetCNY)
	e.transfer(tr(leg1, users[0][0], inTransit, 5_00, xshard.KindOut, fmt.Sprintf("x:%d:8:stuck", payee)))
	traffic(t, e, rng, users, 10+rng.IntN(10))
	e.waitRecorded(1)

	// The same id again with another amount.
	orig, ok := e.pub.event(conflicted)
	if !ok {
		t.Fatal("conflicted transfer never published")
	}
	bad := orig
	bad.Amount += 50
	e.publishAgain(bad, orig) // the exact copy is a plain redelivery
	e.waitMetric("fund_recon_events_total", "result", "conflict", 1)
	e.waitMetric("fund_recon_events_total", "result", "redelivered", 1)
	if v := e.metric("fund_recon_breaks", "kind", string(recon.Duplicate)); v != 1 {
		t.Fatalf("fund_recon_breaks{duplicate} = %v after the conflicting redelivery", v)
	}
	// Behind the append-only triggers: one row planted twice, one rewritten.
	e.superuser(
		fmt.Sprintf(`INSERT INTO transfers SELECT * FROM transfers WHERE id = '%s'`, planted),
		fmt.Sprintf(`UPDATE transfers SET amount = amount + 7 WHERE id = '%s'`, tampered),
	)

	want := map[string]bool{
		"missing_event/" + lost.String():       true,
		"duplicate/" + conflicted.String():     true, // from the stream
		"duplicate/" + planted.String():        true, // from the journal
		"amount_mismatch/" + tampered.String(): true,
		"in_transit_not_zero/" + leg1.String(): true,
	}
	for _, a := range []ledger.AccountID{own[0], own[1], own[4], own[5], own[6], own[7]} {
		want[fmt.Sprintf("account_mismatch/%d", a)] = true
	}
	got := func(bs []recon.Break) map[string]bool {
		out := map[string]bool{}
		for _, b := range bs {
			switch {
			case b.TransferID != nil:
				out[string(b.Kind)+"/"+b.TransferID.String()] = true
			case b.AccountID != nil:
				out[fmt.Sprintf("%s/%d", b.Kind, *b.AccountID)] = true
			default:
				out[string(b.Kind)+"/?"] = true
			}
		}
		return out
	}
	check := func(name string, found map[string]bool) {
		t.Helper()
		if fmt.Sprint(found) != fmt.Sprint(want) {
			t.Fatalf("%s: breaks\n%v\nwant\n%v", name, found, want)
		}
	}
	day := daysAgo(1)
	for _, opts := range []recon.CompareOptions{{Cutoff: e.clock.Now()}, {}, {Deep: true}} {
		rep := e.compare(day, opts)
		found := got(rep.Breaks)
		found["duplicate/"+conflicted.String()] = true // stored by the stream, not by Compare
		check(fmt.Sprintf("compare %+v", opts), found)
		if rep.OpenSagas != 1 || rep.InTransit["CNY"] != 5_00 {
			t.Fatalf("open sagas %d, in transit %v; want 1, 5.00", rep.OpenSagas, rep.InTransit)
		}
	}
	stored, err := e.store.Breaks(ctx, recon.BreakFilter{})
	if err != nil {
		t.Fatal(err)
	}
	check("stored", got(stored))
	for _, b := range stored {
		switch {
		case b.Kind == recon.AmountMismatch && (*b.Journal != 4_07 || *b.Other != 4_00):
			t.Errorf("amount mismatch: journal %d, stream %d; want 407, 400: %s", *b.Journal, *b.Other, b.Detail)
		case b.Kind == recon.Duplicate && b.Source == recon.SourceStream && !strings.Contains(b.Detail, "amount 250"):
			t.Errorf("stream duplicate detail: %s", b.Detail)
		}
	}
	wantCounts := map[recon.BreakKind]float64{recon.MissingEvent: 1, recon.Duplicate: 2, recon.AmountMismatch: 1,
		recon.AccountMismatch: 6, recon.InTransitNotZero: 1}
	for _, k := range recon.BreakKinds() {
		if v := e.metric("fund_recon_breaks", "kind", string(k)); v != wantCounts[k] {
			t.Errorf("fund_recon_breaks{kind=%q} = %v, want %v", k, v, wantCounts[k])
		}
	}
	t.Logf("found:%s", describe(stored))

	// Repairs: the lost event is replayed, the saga's leg 2 arrives.
	var ts int64
	if err := e.ledger.Pool().QueryRow(ctx, `SELECT ts FROM transfers WHERE id = $1`, lost).Scan(&ts); err != nil {
		t.Fatal(err)
	}
	lostEvent := ledger.EventOf(0, &ledger.Transfer{ID: lost, Timestamp: ts, DebitAccountID: own[0], CreditAccountID: own[1],
		Amount: 1_00, Asset: ledger.AssetCNY, Kind: 1, UserData: "lost"})
	e.publishAgain(lostEvent)
	in, _ := recon.SagaClosingIDs(leg1)
	e.transfer(tr(in, xshard.InTransitAccount(1, 0, e.shards, ledger.AssetCNY), payee, 5_00, 8, "stuck"))
	e.waitRecorded(0)
	rep := e.compare(day, recon.CompareOptions{})
	for _, k := range []string{"missing_event/" + lost.String(), "in_transit_not_zero/" + leg1.String(),
		fmt.Sprintf("account_mismatch/%d", own[0]), fmt.Sprintf("account_mismatch/%d", own[1])} {
		delete(want, k)
	}
	found := got(rep.Breaks)
	found["duplicate/"+conflicted.String()] = true
	check("after repairs", found)
	if rep.Resolved != 4 || rep.OpenSagas != 0 {
		t.Fatalf("resolved %d breaks, %d sagas open; want 4 and 0", rep.Resolved, rep.OpenSagas)
	}
	all, err := e.store.Breaks(ctx, recon.BreakFilter{IncludeResolved: true})
	if err != nil {
		t.Fatal(err)
	}
	resolved := 0
	for _, b := range all {
		if b.ResolvedAt != nil {
			resolved++
		}
	}
	if len(all) != len(want)+4 || resolved != 4 {
		t.Fatalf("%d breaks stored, %d resolved; want %d and 4", len(all), resolved, len(want)+4)
	}
}

// breakSet names breaks by kind and subject, for comparing sets.
func breakSet(bs []recon.Break) map[string]bool {
	out := map[string]bool{}
	for _, b := range bs {
		switch {
		case b.TransferID != nil:
			out[string(b.Kind)+"/"+b.TransferID.String()] = true
		case b.AccountID != nil:
			out[fmt.Sprintf("%s/%d", b.Kind, *b.AccountID)] = true
		default:
			out[string(b.Kind)+"/?"] = true
		}
	}
	return out
}

// Random injections on random traffic over three shards in two databases:
// 1-3 lost events, 1-2 conflicting redeliveries, 1-2 planted duplicate
// rows, 1-3 rewritten amounts, each on a random transfer. The breaks found
// are exactly the reference model's: each injected transfer, and every
// account a lost, planted or rewritten entry touches (every injection only
// adds to the journal's side, so none can cancel another). Replaying the
// lost events resolves exactly their breaks.
func TestInjectedBreaksRandomised(t *testing.T) {
	seed := testseed.Seed(t)
	rng := newRand(seed)
	ctx := context.Background()
	lost := make([]ledger.TransferID, 1+rng.IntN(3))
	for i := range lost {
		lost[i] = ledger.NewTransferID()
	}
	e := newEnv(t, envConfig{shards: 3, dbs: 2, drop: lost})
	var users [][]ledger.AccountID
	for s := 0; s < e.shards; s++ {
		users = append(users, e.accountsOn(s, 1000, 5))
		e.createAccounts(users[s]...)
	}
	plain := traffic(t, e, rng, users, 20+rng.IntN(40))
	var lostTransfers []ledger.Transfer
	for _, id := range lost {
		s := rng.IntN(e.shards)
		a, b := users[s][0], users[s][1+rng.IntN(4)]
		tr := ledger.Transfer{ID: id, DebitAccountID: a, CreditAccountID: b, Amount: 1 + rng.Int64N(10_000),
			Asset: ledger.AssetCNY, Kind: 1, UserData: "lost"}
		e.transfer(tr)
		lostTransfers = append(lostTransfers, tr)
	}
	plain = append(plain, traffic(t, e, rng, users, 20+rng.IntN(40))...)
	for len(plain) < 7 {
		plain = append(plain, traffic(t, e, rng, users, 10)...)
	}
	e.waitRecorded(len(lost))

	rng.Shuffle(len(plain), func(i, j int) { plain[i], plain[j] = plain[j], plain[i] })
	nc, np, nt := 1+rng.IntN(2), 1+rng.IntN(2), 1+rng.IntN(3)
	conflicted, planted, tampered := plain[:nc], plain[nc:nc+np], plain[nc+np:nc+np+nt]
	t.Logf("lost %d, conflicting redeliveries %d, planted duplicates %d, rewritten amounts %d", len(lost), nc, np, nt)

	want := map[string]bool{}
	touch := func(tr ledger.Transfer) {
		want[fmt.Sprintf("account_mismatch/%d", tr.DebitAccountID)] = true
		want[fmt.Sprintf("account_mismatch/%d", tr.CreditAccountID)] = true
	}
	for _, tr := range lostTransfers {
		want["missing_event/"+tr.ID.String()] = true
		touch(tr)
	}
	for _, tr := range conflicted {
		ev, ok := e.pub.event(tr.ID)
		if !ok {
			t.Fatalf("transfer %s never published", tr.ID)
		}
		ev.Amount += 1 + rng.Int64N(1000)
		e.publishAgain(ev)
		want["duplicate/"+tr.ID.String()] = true
	}
	e.waitMetric("fund_recon_events_total", "result", "conflict", float64(nc))
	var stmts [2][]string
	for _, tr := range planted {
		db := e.dbOf(tr.DebitAccountID)
		stmts[db] = append(stmts[db], fmt.Sprintf(`INSERT INTO transfers SELECT * FROM transfers WHERE id = '%s'`, tr.ID))
		want["duplicate/"+tr.ID.String()] = true
		touch(tr)
	}
	for _, tr := range tampered {
		db := e.dbOf(tr.DebitAccountID)
		stmts[db] = append(stmts[db], fmt.Sprintf(`UPDATE transfers SET amount = amount + %d WHERE id = '%s'`, 1+rng.IntN(500), tr.ID))
		want["amount_mismatch/"+tr.ID.String()] = true
		touch(tr)
	}
	for db, ss := range stmts {
		e.superuserOn(db, ss...)
	}

	today := daysAgo(0)
	for _, opts := range []recon.CompareOptions{{Cutoff: e.clock.Now()}, {Cutoff: e.clock.Now(), Deep: true}} {
		rep := e.compare(today, opts)
		found := breakSet(rep.Breaks)
		for _, tr := range conflicted {
			found["duplicate/"+tr.ID.String()] = true // the stream's, not the comparison's
		}
		if fmt.Sprint(found) != fmt.Sprint(want) {
			t.Fatalf("compare %+v: breaks\n%v\nwant\n%v", opts, found, want)
		}
	}
	stored, err := e.worker.Store().Breaks(ctx, recon.BreakFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if found := breakSet(stored); fmt.Sprint(found) != fmt.Sprint(want) {
		t.Fatalf("stored breaks\n%v\nwant\n%v", found, want)
	}
	counts := map[string]float64{}
	for k := range want {
		counts[k[:strings.IndexByte(k, '/')]]++
	}
	for _, k := range recon.BreakKinds() {
		if v := e.metric("fund_recon_breaks", "kind", string(k)); v != counts[string(k)] {
			t.Errorf("fund_recon_breaks{kind=%q} = %v, want %v", k, v, counts[string(k)])
		}
	}

	// Replay the lost events as the journal holds them.
	after := map[string]bool{}
	for k := range want {
		after[k] = true
	}
	for _, tr := range lostTransfers {
		delete(after, "missing_event/"+tr.ID.String())
		delete(after, fmt.Sprintf("account_mismatch/%d", tr.DebitAccountID))
		delete(after, fmt.Sprintf("account_mismatch/%d", tr.CreditAccountID))
	}
	for _, tr := range append(planted, tampered...) {
		touch := func(a ledger.AccountID) { after[fmt.Sprintf("account_mismatch/%d", a)] = true }
		touch(tr.DebitAccountID)
		touch(tr.CreditAccountID)
	}
	for _, tr := range lostTransfers {
		e.publishAgain(e.journalEvent(tr.ID, ledger.ShardOf(tr.DebitAccountID, e.shards)))
	}
	e.waitRecorded(0)
	rep := e.compare(today, recon.CompareOptions{Cutoff: e.clock.Now()})
	found := breakSet(rep.Breaks)
	for _, tr := range conflicted {
		found["duplicate/"+tr.ID.String()] = true
	}
	if fmt.Sprint(found) != fmt.Sprint(after) {
		t.Fatalf("after the replay: breaks\n%v\nwant\n%v", found, after)
	}
	if rep.Resolved != int64(len(want)-len(after)) {
		t.Fatalf("resolved %d, want %d", rep.Resolved, len(want)-len(after))
	}
}

// The periodic comparison of the open day looks only at the window after
// the last clean one: clean, it says so without a whole-day scan (and a row
// rewritten before the window waits for the next whole-day comparison);
// a lost event inside the window sends it back to the whole day, which then
// finds the lost event and the rewritten row.
func TestWindowCompare(t *testing.T) {
	seed := testseed.Seed(t)
	rng := newRand(seed)
	lost := ledger.NewTransferID()
	e := newEnv(t, envConfig{shards: 2, dbs: 2, drop: []ledger.TransferID{lost}})
	users := [][]ledger.AccountID{e.accountsOn(0, 1000, 4), e.accountsOn(1, 1000, 4)}
	e.createAccounts(append(users[0], users[1]...)...)
	today := daysAgo(0)

	early := traffic(t, e, rng, users, 20+rng.IntN(20))
	for len(early) == 0 {
		early = traffic(t, e, rng, users, 10)
	}
	e.waitRecorded(0)
	t1 := e.clock.Now()
	requireClean(t, e.compare(today, recon.CompareOptions{Cutoff: t1}))

	// A row before t1 rewritten; clean traffic after t1.
	victim := early[rng.IntN(len(early))]
	e.superuserOn(e.dbOf(victim.DebitAccountID), fmt.Sprintf(`UPDATE transfers SET amount = amount + 3 WHERE id = '%s'`, victim.ID))
	traffic(t, e, rng, users, 10+rng.IntN(10))
	e.waitRecorded(0)
	t2 := e.clock.Now()
	rep := e.compare(today, recon.CompareOptions{Cutoff: t2, From: t1})
	if rep.From == nil || !rep.From.Equal(t1) || len(rep.Breaks) != 0 {
		t.Fatalf("window after t1: from %v, %d breaks:%s; want a clean window", rep.From, len(rep.Breaks), describe(rep.Breaks))
	}

	// A lost event after t2 on the victim's shard (each database decides
	// for itself): the window differs, the whole day is compared.
	s := ledger.ShardOf(victim.DebitAccountID, e.shards)
	e.transfer(ledger.Transfer{ID: lost, DebitAccountID: users[s][0], CreditAccountID: users[s][1], Amount: 42,
		Asset: ledger.AssetCNY, Kind: 1})
	e.waitRecorded(1)
	rep = e.compare(today, recon.CompareOptions{Cutoff: e.clock.Now(), From: t2})
	found := breakSet(rep.Breaks)
	if rep.From != nil || !found["missing_event/"+lost.String()] || !found["amount_mismatch/"+victim.ID.String()] {
		t.Fatalf("window with a lost event: from %v, breaks %v; want the whole day: the lost event and the rewritten row", rep.From, found)
	}
}

// One worker of a group compares at a time.
func TestCompareLock(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	a, err := reconpg.Open(ctx, reconpg.Config{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := reconpg.Open(ctx, reconpg.Config{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	unlock, ok, err := a.CompareLock(ctx)
	if err != nil || !ok {
		t.Fatalf("first lock: %v %v", ok, err)
	}
	if _, ok, err := b.CompareLock(ctx); err != nil || ok {
		t.Fatalf("second lock while held: %v %v", ok, err)
	}
	unlock()
	unlock2, ok, err := b.CompareLock(ctx)
	if err != nil || !ok {
		t.Fatalf("lock after unlock: %v %v", ok, err)
	}
	unlock2()
}
