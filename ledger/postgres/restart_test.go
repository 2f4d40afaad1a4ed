package postgres_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/internal/testseed"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/postgres"
)

// Crash tests: the sequencer is stopped, its commits fail in every way a
// commit can fail, and its process is killed; what was acknowledged must be
// in the journal exactly once and nothing may be half-applied.

const (
	crashFunding   = ledger.AccountID(1) // CNY system account, no limit
	crashFirstUser = ledger.AccountID(100)
	crashUsers     = 24
	crashFunds     = 50_000
)

// workload issues random transfer requests between users and keeps the
// latest answer for every transfer id it ever sent.
type workload struct {
	mu       sync.Mutex
	reqs     [][]ledger.Transfer                 // every distinct request, in the order first sent
	answer   map[ledger.TransferID]ledger.Result // latest answer, for ids whose latest attempt was answered
	unknown  map[ledger.TransferID]bool          // the latest attempt got an error: may or may not be applied
	pending  map[ledger.TransferID][]ledger.Transfer
	attempts int
	errs     int
}

func newWorkload() *workload {
	return &workload{
		answer:  map[ledger.TransferID]ledger.Result{},
		unknown: map[ledger.TransferID]bool{},
		pending: map[ledger.TransferID][]ledger.Transfer{},
	}
}

// request builds a new request of 1-3 transfers: user to user, sometimes a
// top-up from the funding account, a quarter of them a linked pair.
func (w *workload) request(rng *rand.Rand, ns string, n int) []ledger.Transfer {
	k := 1 + rng.IntN(3)
	out := make([]ledger.Transfer, k)
	for i := range out {
		dr := crashFirstUser + ledger.AccountID(rng.IntN(crashUsers))
		if rng.IntN(8) == 0 {
			dr = crashFunding
		}
		cr := crashFirstUser + ledger.AccountID(rng.IntN(crashUsers))
		for cr == dr {
			cr = crashFirstUser + ledger.AccountID(rng.IntN(crashUsers))
		}
		out[i] = ledger.Transfer{
			ID:             ledger.DeriveTransferID(ns, fmt.Sprint(n), fmt.Sprint(i)),
			DebitAccountID: dr, CreditAccountID: cr, Amount: 1 + rng.Int64N(3_000),
			Asset: ledger.AssetCNY, Kind: 7,
		}
	}
	if k >= 2 && rng.IntN(4) == 0 {
		out[0].Flags |= ledger.Linked
	}
	w.mu.Lock()
	w.reqs = append(w.reqs, out)
	w.mu.Unlock()
	return out
}

// record notes the answer to one attempt of req.
func (w *workload) record(req []ledger.Transfer, res []ledger.TransferResult, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.attempts++
	if err != nil {
		w.errs++
		for _, tr := range req {
			delete(w.answer, tr.ID)
			w.unknown[tr.ID] = true
		}
		w.pending[req[0].ID] = req
		return
	}
	for i, tr := range req {
		w.answer[tr.ID] = res[i].Result
		delete(w.unknown, tr.ID)
	}
	// Should a retried chain that was applied before answer "exists" for
	// its first member and linked_event_failed for the others (as the
	// ledger once did; TestAmbiguousCommitOfChain), the answer says nothing
	// about them: the journal decides.
	if req[0].Flags&ledger.Linked != 0 && res[0].Result == ledger.ResultExists &&
		res[1].Result == ledger.ResultLinkedEventFailed {
		for _, tr := range req[:2] {
			delete(w.answer, tr.ID)
			w.unknown[tr.ID] = true
		}
	}
	delete(w.pending, req[0].ID)
}

// unanswered returns the requests whose latest attempt got an error.
func (w *workload) unanswered() [][]ledger.Transfer {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out [][]ledger.Transfer
	for _, req := range w.reqs {
		if _, ok := w.pending[req[0].ID]; ok {
			out = append(out, req)
		}
	}
	return out
}

// check compares the journal with the answers: an id answered ok or exists
// is there exactly once, an id answered with a failure is not there, an id
// whose latest attempt failed is there at most once, and every chain is
// there whole or not at all.
func (w *workload) check(t *testing.T, pool *pgxpool.Pool) (acked int) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	var ids []ledger.TransferID
	for _, req := range w.reqs {
		for _, tr := range req {
			ids = append(ids, tr.ID)
		}
	}
	counts := journalCounts(t, pool, ids)
	for _, id := range ids {
		n := counts[id]
		res, answered := w.answer[id]
		switch {
		case n > 1:
			t.Errorf("transfer %s is in the journal %d times", id, n)
		case answered && res.Applied():
			acked++
			if n != 1 {
				t.Errorf("transfer %s was acknowledged (%s) but is not in the journal", id, res)
			}
		case answered && n != 0:
			t.Errorf("transfer %s was answered %s but is in the journal", id, res)
		case !answered && !w.unknown[id]:
			t.Errorf("transfer %s was never answered nor attempted", id)
		}
	}
	for _, req := range w.reqs {
		if req[0].Flags&ledger.Linked != 0 && counts[req[0].ID] != counts[req[1].ID] {
			t.Errorf("chain %s+%s half applied: %d and %d rows", req[0].ID, req[1].ID, counts[req[0].ID], counts[req[1].ID])
		}
	}
	var rows int64
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM transfers WHERE kind = 7`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	var present int64
	for _, n := range counts {
		present += int64(n)
	}
	if rows != present {
		t.Errorf("journal has %d workload rows, %d of them are transfers the workload sent", rows, present)
	}
	return acked
}

// setupCrashAccounts creates the funding account and the funded users.
func setupCrashAccounts(t *testing.T, seq *ledger.Sequencer) {
	t.Helper()
	ctx := context.Background()
	as := []ledger.Account{{ID: crashFunding, Asset: ledger.AssetCNY, Code: 1}}
	var ts []ledger.Transfer
	for i := range crashUsers {
		id := crashFirstUser + ledger.AccountID(i)
		as = append(as, ledger.Account{ID: id, Asset: ledger.AssetCNY, Code: 10, Flags: ledger.DebitsMustNotExceedCredits})
		ts = append(ts, ledger.Transfer{ID: ledger.DeriveTransferID("crash-setup", fmt.Sprint(id)),
			DebitAccountID: crashFunding, CreditAccountID: id, Amount: crashFunds, Asset: ledger.AssetCNY, Kind: 1})
	}
	ars, err := seq.CreateAccounts(ctx, as)
	if err != nil {
		t.Fatalf("create accounts: %v", err)
	}
	for i, r := range ars {
		if !r.Result.Applied() {
			t.Fatalf("create account %d: %s", as[i].ID, r.Result)
		}
	}
	trs, err := seq.CreateTransfers(ctx, ts)
	if err != nil {
		t.Fatalf("fund users: %v", err)
	}
	for i, r := range trs {
		if !r.Result.Applied() {
			t.Fatalf("fund user %d: %s", ts[i].CreditAccountID, r.Result)
		}
	}
}

// TestKillBetweenBatches stops the sequencer at a random moment under
// concurrent load (from a commit hook at a random batch, or from a timer),
// several times over, and restarts it on the same database; clients retry
// what was not answered.
func TestKillBetweenBatches(t *testing.T) {
	t.Parallel()
	seed := testseed.Seed(t)
	rng := newRand(seed)
	store := openStore(t)
	pool := store.Pool()
	first := startSeq(t, store, ledger.SequencerConfig{})
	setupCrashAccounts(t, first.Sequencer)
	if err := first.stop(t); err != nil {
		t.Fatal(err)
	}

	const rounds, clients, requestsMax = 4, 12, 150
	w := newWorkload()
	var n atomic.Int64 // request numbers, for ids
	for round := range rounds {
		ctx, kill := context.WithCancel(context.Background())
		cfg := ledger.SequencerConfig{}
		byHook := rng.IntN(2) == 0
		hookAt := int64(2 + rng.IntN(40))
		timerAfter := time.Duration(5+rng.IntN(80)) * time.Millisecond
		how := fmt.Sprintf("timer after %v", timerAfter)
		if byHook {
			how = fmt.Sprintf("commit hook at batch %d", hookAt)
			var commits atomic.Int64
			cfg.CommitHook = func(*ledger.Batch) {
				if commits.Add(1) == hookAt {
					kill()
				}
			}
		}
		seq := startSeqCtx(t, ctx, store, cfg)
		if !byHook {
			timer := time.AfterFunc(timerAfter, kill)
			defer timer.Stop()
		}
		retry := w.unanswered()
		var wg sync.WaitGroup
		for c := range clients {
			crng := newRand(seed + uint64(round*clients+c+1))
			var mine [][]ledger.Transfer
			for i := c; i < len(retry); i += clients {
				mine = append(mine, retry[i])
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range requestsMax {
					var req []ledger.Transfer
					if i < len(mine) {
						req = mine[i]
					} else {
						req = w.request(crng, "kill-between", int(n.Add(1)))
					}
					res, err := seq.CreateTransfers(context.Background(), req)
					if err != nil && !isNotAcknowledged(err) {
						t.Errorf("unexpected error: %v", err)
					}
					w.record(req, res, err)
					if errors.Is(err, ledger.ErrClosed) {
						return
					}
				}
			}()
		}
		wg.Wait()
		kill()
		if err := seq.stop(t); err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("round %d: sequencer: %v", round, err)
		}
		acked := w.check(t, pool)
		mustVerify(t, store)
		fresh := startSeq(t, store, ledger.SequencerConfig{})
		checkBalancesMatchJournal(t, pool, fresh.Sequencer)
		if err := fresh.stop(t); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: killed by %s; %d attempts, %d errors, %d transfers acknowledged so far",
			round, how, w.attempts, w.errs, acked)
		if t.Failed() {
			t.FailNow()
		}
	}

	// Every client retries what it never got an answer to.
	seq := startSeq(t, store, ledger.SequencerConfig{})
	for _, req := range w.unanswered() {
		res, err := seq.CreateTransfers(context.Background(), req)
		if err != nil {
			t.Fatalf("retry: %v", err)
		}
		w.record(req, res, err)
	}
	w.check(t, pool)
	checkBalancesMatchJournal(t, pool, seq.Sequencer)
	if err := seq.stop(t); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, store)
}

// installFaults adds a test-only table and a deferred (commit-time) trigger
// on transfer_ids: a transfer id listed with action 'fail' makes its
// transaction fail at COMMIT, after every statement of the batch ran; with
// 'slow' the COMMIT takes half a second.
func installFaults(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	_, err := pool.Exec(context.Background(), `
		CREATE TABLE test_faults (id uuid PRIMARY KEY, action text NOT NULL);
		CREATE FUNCTION test_fault() RETURNS trigger LANGUAGE plpgsql AS $$
		DECLARE a text;
		BEGIN
			SELECT action INTO a FROM test_faults WHERE id = NEW.id;
			IF a = 'fail' THEN
				RAISE EXCEPTION 'test fault: commit of transfer % refused', NEW.id;
			ELSIF a = 'slow' THEN
				PERFORM pg_sleep(0.5);
			END IF;
			RETURN NULL;
		END $$;
		CREATE CONSTRAINT TRIGGER test_fault AFTER INSERT ON transfer_ids
			DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_fault();`)
	if err != nil {
		t.Fatalf("install faults: %v", err)
	}
}

func setFault(t *testing.T, pool *pgxpool.Pool, id ledger.TransferID, action string) {
	t.Helper()
	var err error
	if action == "" {
		_, err = pool.Exec(context.Background(), `DELETE FROM test_faults WHERE id = $1`, uuidsOf([]ledger.TransferID{id})[0])
	} else {
		_, err = pool.Exec(context.Background(), `INSERT INTO test_faults (id, action) VALUES ($1, $2)`,
			uuidsOf([]ledger.TransferID{id})[0], action)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func results(rs []ledger.TransferResult) []ledger.Result {
	out := make([]ledger.Result, len(rs))
	for i, r := range rs {
		out[i] = r.Result
	}
	return out
}

func wantResults(t *testing.T, what string, rs []ledger.TransferResult, err error, want ...ledger.Result) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	got := results(rs)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}

func xfer(dr, cr ledger.AccountID, amount int64) ledger.Transfer {
	return ledger.Transfer{ID: ledger.NewTransferID(), DebitAccountID: dr, CreditAccountID: cr, Amount: amount, Asset: ledger.AssetCNY, Kind: 3}
}

func lookupOne(t *testing.T, seq *ledger.Sequencer, id ledger.AccountID) ledger.Account {
	t.Helper()
	as, err := seq.LookupAccounts(context.Background(), []ledger.AccountID{id})
	if err != nil || len(as) != 1 {
		t.Fatalf("lookup %d: %v %v", id, as, err)
	}
	return as[0]
}

// TestCommitFailsMidway makes a batch's transaction fail at COMMIT, after
// all its rows were written, while the next request, which spends what the
// failing batch credited, waits for it. Neither may be applied; the
// sequencer must reload and go on; retries then apply each exactly once.
func TestCommitFailsMidway(t *testing.T) {
	t.Parallel()
	store := openStore(t)
	pool := store.Pool()
	installFaults(t, pool)
	ctx := context.Background()

	var doomed sync.Map // transfer ids whose batch the hook holds at commit
	reached, release := make(chan struct{}, 1), make(chan struct{})
	seq := startSeq(t, store, ledger.SequencerConfig{CommitHook: func(b *ledger.Batch) {
		for _, tr := range b.Transfers {
			if _, ok := doomed.Load(tr.ID); ok {
				reached <- struct{}{}
				select {
				case <-release:
				case <-time.After(10 * time.Second):
				}
				return
			}
		}
	}})
	const sys, u, v = 1, 2, 3
	_, err := seq.CreateAccounts(ctx, []ledger.Account{
		{ID: sys, Asset: ledger.AssetCNY, Code: 1},
		{ID: u, Asset: ledger.AssetCNY, Code: 10, Flags: ledger.DebitsMustNotExceedCredits},
		{ID: v, Asset: ledger.AssetCNY, Code: 10, Flags: ledger.DebitsMustNotExceedCredits},
	})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := seq.CreateTransfers(ctx, []ledger.Transfer{xfer(sys, v, 1000)})
	wantResults(t, "fund v", rs, err, ledger.ResultOK)
	before := countTables(t, pool)

	// d credits u, then fails at commit; e spends what d credited u.
	d := []ledger.Transfer{xfer(sys, u, 500), xfer(sys, v, 7), xfer(v, sys, 100)}
	e := []ledger.Transfer{xfer(u, v, 500)}
	setFault(t, pool, d[1].ID, "fail")
	doomed.Store(d[1].ID, true)
	type answer struct {
		rs  []ledger.TransferResult
		err error
	}
	dDone, eDone := make(chan answer, 1), make(chan answer, 1)
	go func() { rs, err := seq.CreateTransfers(ctx, d); dDone <- answer{rs, err} }()
	<-reached
	go func() { rs, err := seq.CreateTransfers(ctx, e); eDone <- answer{rs, err} }()
	time.Sleep(50 * time.Millisecond) // let the sequencer take e while d commits
	close(release)
	da, ea := <-dDone, <-eDone
	if !errors.Is(da.err, ledger.ErrCommitFailed) {
		t.Fatalf("failed batch answered %v, %v; want ErrCommitFailed", results(da.rs), da.err)
	}
	switch {
	case errors.Is(ea.err, ledger.ErrCommitFailed):
		t.Logf("e was batched behind the failed commit and refused with it: %v", ea.err)
	case ea.err == nil && ea.rs[0].Result == ledger.ResultExceedsCredits:
		t.Logf("e was applied after the reload: %s", ea.rs[0].Result)
	default:
		t.Fatalf("e, which spends what the failed batch credited: %v %v", results(ea.rs), ea.err)
	}
	if after := countTables(t, pool); after != before {
		t.Fatalf("a failed commit left rows behind: before %+v, after %+v", before, after)
	}
	for id, n := range journalCounts(t, pool, idsOf(append(d, e...))) {
		t.Errorf("transfer %s of a failed batch is in the journal %d times", id, n)
	}
	// The sequencer reloaded: its balances are Postgres's, not the failed
	// batch's.
	if a := lookupOne(t, seq.Sequencer, u); a.Balance() != 0 {
		t.Fatalf("u after the failed batch: %+v", a)
	}
	if a := lookupOne(t, seq.Sequencer, v); a.Balance() != 1000 {
		t.Fatalf("v after the failed batch: %+v", a)
	}
	rs, err = seq.CreateTransfers(ctx, []ledger.Transfer{xfer(sys, v, 1)})
	wantResults(t, "after the failure", rs, err, ledger.ResultOK)

	// Retried once the fault is gone: applied, then known.
	setFault(t, pool, d[1].ID, "")
	doomed.Delete(d[1].ID)
	rs, err = seq.CreateTransfers(ctx, d)
	wantResults(t, "retry d", rs, err, ledger.ResultOK, ledger.ResultOK, ledger.ResultOK)
	rs, err = seq.CreateTransfers(ctx, e)
	wantResults(t, "retry e", rs, err, ledger.ResultOK)
	rs, err = seq.CreateTransfers(ctx, append(d, e...))
	wantResults(t, "retry both again", rs, err, ledger.ResultExists, ledger.ResultExists, ledger.ResultExists, ledger.ResultExists)
	for _, id := range idsOf(append(d, e...)) {
		if n := journalCounts(t, pool, []ledger.TransferID{id})[id]; n != 1 {
			t.Errorf("transfer %s: %d journal rows after retries", id, n)
		}
	}

	// A commit that outlives CommitTimeout is abandoned and not
	// acknowledged; a retry applies it exactly once.
	if err := seq.stop(t); err != nil {
		t.Fatal(err)
	}
	seq = startSeq(t, store, ledger.SequencerConfig{CommitTimeout: 100 * time.Millisecond})
	slow := []ledger.Transfer{xfer(sys, u, 5)}
	setFault(t, pool, slow[0].ID, "slow")
	_, err = seq.CreateTransfers(ctx, slow)
	if !errors.Is(err, ledger.ErrCommitFailed) {
		t.Fatalf("commit beyond its timeout: %v, want ErrCommitFailed", err)
	}
	setFault(t, pool, slow[0].ID, "")
	if err := seq.stop(t); err != nil {
		t.Fatal(err)
	}
	seq = startSeq(t, store, ledger.SequencerConfig{})
	rs, err = seq.CreateTransfers(ctx, slow)
	if err != nil || !rs[0].Result.Applied() {
		t.Fatalf("retry of the timed-out commit: %v %v", results(rs), err)
	}
	if n := journalCounts(t, pool, idsOf(slow))[slow[0].ID]; n != 1 {
		t.Fatalf("timed-out transfer: %d journal rows after its retry", n)
	}
	mustVerify(t, store)
	checkBalancesMatchJournal(t, pool, seq.Sequencer)
}

// liarStore commits for real but, when armed, tells the sequencer the
// commit failed: the answer was lost on the way back.
type liarStore struct {
	*postgres.Store
	lies atomic.Int32
}

func (s *liarStore) Commit(ctx context.Context, b *ledger.Batch) error {
	if err := s.Store.Commit(ctx, b); err != nil {
		return err
	}
	if s.lies.Add(-1) >= 0 {
		return errors.New("test: connection lost after COMMIT was sent")
	}
	return nil
}

// TestAmbiguousCommit: the batch commits but the sequencer hears an error.
// The client is not acknowledged; its retry must answer "exists" and never
// apply twice, pending transfers included.
func TestAmbiguousCommit(t *testing.T) {
	t.Parallel()
	store := &liarStore{Store: openStore(t)}
	pool := store.Pool()
	seq := startSeq(t, store, ledger.SequencerConfig{})
	ctx := context.Background()
	const sys, u, v = 1, 2, 3
	if _, err := seq.CreateAccounts(ctx, []ledger.Account{
		{ID: sys, Asset: ledger.AssetCNY, Code: 1},
		{ID: u, Asset: ledger.AssetCNY, Code: 10, Flags: ledger.DebitsMustNotExceedCredits},
		{ID: v, Asset: ledger.AssetCNY, Code: 10, Flags: ledger.DebitsMustNotExceedCredits},
	}); err != nil {
		t.Fatal(err)
	}
	hold := xfer(u, v, 300)
	hold.Flags = ledger.Pending | ledger.Linked
	req := []ledger.Transfer{xfer(sys, u, 1000), hold, xfer(u, v, 700)}
	req[0].Flags = ledger.Linked

	store.lies.Store(1)
	if _, err := seq.CreateTransfers(ctx, req); !errors.Is(err, ledger.ErrCommitFailed) {
		t.Fatalf("ambiguous commit: %v, want ErrCommitFailed", err)
	}
	// Retried one by one (each as sent), every member is known. (Retried
	// as a whole, see TestAmbiguousCommitOfChain.)
	for i, tr := range req {
		rs, err := seq.CreateTransfers(ctx, []ledger.Transfer{tr})
		want := ledger.ResultExists
		if err != nil || rs[0].Result != want {
			t.Fatalf("retry of member %d alone: %v %v, want %s", i, results(rs), err, want)
		}
	}
	changed := req[2]
	changed.Amount++
	rs, err := seq.CreateTransfers(ctx, []ledger.Transfer{changed})
	wantResults(t, "same id, other amount", rs, err, ledger.ResultExistsWithDifferentFields)

	// The hold survived the ambiguity once: posting it works once.
	post := ledger.Transfer{ID: ledger.NewTransferID(), PendingID: hold.ID, Flags: ledger.PostPending}
	store.lies.Store(1)
	if _, err := seq.CreateTransfers(ctx, []ledger.Transfer{post}); !errors.Is(err, ledger.ErrCommitFailed) {
		t.Fatalf("ambiguous post: %v", err)
	}
	rs, err = seq.CreateTransfers(ctx, []ledger.Transfer{post})
	wantResults(t, "retry of the post", rs, err, ledger.ResultExists)
	again := ledger.Transfer{ID: ledger.NewTransferID(), PendingID: hold.ID, Flags: ledger.PostPending}
	rs, err = seq.CreateTransfers(ctx, []ledger.Transfer{again})
	wantResults(t, "second post under a new id", rs, err, ledger.ResultPendingTransferAlreadyPosted)

	if a := lookupOne(t, seq.Sequencer, u); a.Balance() != 0 || a.DebitsPending != 0 {
		t.Errorf("u: %+v, want everything spent once", a)
	}
	if a := lookupOne(t, seq.Sequencer, v); a.Balance() != 1000 {
		t.Errorf("v: %+v, want 1000 credited once", a)
	}
	for id, n := range journalCounts(t, pool, append(idsOf(req), post.ID)) {
		if n != 1 {
			t.Errorf("transfer %s: %d journal rows", id, n)
		}
	}
	mustVerify(t, store)
	checkBalancesMatchJournal(t, pool, seq.Sequencer)
}

// TestPendingTransfersSurviveRestart: holds created, posted, voided and
// expired before a restart keep their state after it: an open hold can be
// posted, a resolved one answers with its state, and an open hold with a
// timeout still expires.
func TestPendingTransfersSurviveRestart(t *testing.T) {
	t.Parallel()
	store := openStore(t)
	clock := newFakeClock(time.Date(2031, 5, 5, 10, 0, 0, 0, ledger.BusinessZone()))
	cfg := ledger.SequencerConfig{Now: clock.Now}
	seq := startSeq(t, store, cfg)
	ctx := context.Background()
	const sys, u, v = 1, 2, 3
	if _, err := seq.CreateAccounts(ctx, []ledger.Account{
		{ID: sys, Asset: ledger.AssetCNY, Code: 1},
		{ID: u, Asset: ledger.AssetCNY, Code: 10, Flags: ledger.DebitsMustNotExceedCredits},
		{ID: v, Asset: ledger.AssetCNY, Code: 10, Flags: ledger.DebitsMustNotExceedCredits},
	}); err != nil {
		t.Fatal(err)
	}
	hold := func(amount int64, timeout time.Duration) ledger.Transfer {
		tr := xfer(u, v, amount)
		tr.Flags, tr.Timeout = ledger.Pending, timeout
		return tr
	}
	resolve := func(flag ledger.TransferFlags, p ledger.Transfer) ledger.Transfer {
		return ledger.Transfer{ID: ledger.NewTransferID(), Flags: flag, PendingID: p.ID}
	}
	open, posted, voided, expiring, expired := hold(10, 0), hold(20, 0), hold(30, 0), hold(40, time.Minute), hold(50, time.Second)
	clock.Advance(time.Millisecond)
	rs, err := seq.CreateTransfers(ctx, []ledger.Transfer{xfer(sys, u, 1000), open, posted, voided, expiring, expired})
	wantResults(t, "holds", rs, err, ledger.ResultOK, ledger.ResultOK, ledger.ResultOK, ledger.ResultOK, ledger.ResultOK, ledger.ResultOK)
	clock.Advance(2 * time.Second) // the next batch expires the one-second hold
	rs, err = seq.CreateTransfers(ctx, []ledger.Transfer{resolve(ledger.PostPending, posted), resolve(ledger.VoidPending, voided)})
	wantResults(t, "resolve", rs, err, ledger.ResultOK, ledger.ResultOK)
	before := lookupOne(t, seq.Sequencer, u)
	if before.DebitsPending != 10+40 {
		t.Fatalf("u before the restart: %+v, want 50 held", before)
	}

	if err := seq.stop(t); err != nil {
		t.Fatal(err)
	}
	seq = startSeq(t, store, cfg)
	if after := lookupOne(t, seq.Sequencer, u); balancesOf(after) != balancesOf(before) {
		t.Fatalf("u after the restart: %+v, before %+v", after, before)
	}
	clock.Advance(time.Millisecond)
	rs, err = seq.CreateTransfers(ctx, []ledger.Transfer{
		resolve(ledger.VoidPending, posted), resolve(ledger.PostPending, voided), resolve(ledger.PostPending, expired),
	})
	wantResults(t, "resolved before the restart", rs, err,
		ledger.ResultPendingTransferAlreadyPosted, ledger.ResultPendingTransferAlreadyVoided, ledger.ResultPendingTransferExpired)
	rs, err = seq.CreateTransfers(ctx, []ledger.Transfer{resolve(ledger.PostPending, open)})
	wantResults(t, "post of a hold opened before the restart", rs, err, ledger.ResultOK)
	clock.Advance(2 * time.Minute) // the next batch expires the one-minute hold
	rs, err = seq.CreateTransfers(ctx, []ledger.Transfer{resolve(ledger.PostPending, expiring)})
	wantResults(t, "post of a hold that expired after the restart", rs, err, ledger.ResultPendingTransferExpired)
	if a := lookupOne(t, seq.Sequencer, u); a.DebitsPending != 0 || a.DebitsPosted != 10+20 {
		t.Errorf("u at the end: %+v, want nothing held and 30 posted", a)
	}
	mustVerify(t, store)
	checkBalancesMatchJournal(t, store.Pool(), seq.Sequencer)
}

// TestAmbiguousCommitOfChain: a client whose linked request got an error
// retries it unchanged, as the Sequencer's documentation tells it to. The
// chain was applied, so every member must answer "exists" (DESIGN.md: "a
// retry with the same id and the same content gets the original result";
// Result.Applied: "took effect now or earlier"). Answering exists for the
// first member and linked_event_failed for the others would tell the client
// they were not applied although they were; a client that then compensates
// or resubmits under new ids moves the money twice.
func TestAmbiguousCommitOfChain(t *testing.T) {
	t.Parallel()
	store := &liarStore{Store: openStore(t)}
	seq := startSeq(t, store, ledger.SequencerConfig{})
	ctx := context.Background()
	const sys, u, v = 1, 2, 3
	if _, err := seq.CreateAccounts(ctx, []ledger.Account{
		{ID: sys, Asset: ledger.AssetCNY, Code: 1},
		{ID: u, Asset: ledger.AssetCNY, Code: 10, Flags: ledger.DebitsMustNotExceedCredits},
		{ID: v, Asset: ledger.AssetCNY, Code: 10, Flags: ledger.DebitsMustNotExceedCredits},
	}); err != nil {
		t.Fatal(err)
	}
	req := []ledger.Transfer{xfer(sys, u, 1000), xfer(u, v, 1000)}
	req[0].Flags = ledger.Linked
	store.lies.Store(1)
	if _, err := seq.CreateTransfers(ctx, req); !errors.Is(err, ledger.ErrCommitFailed) {
		t.Fatalf("ambiguous commit: %v, want ErrCommitFailed", err)
	}
	if n := journalCounts(t, store.Pool(), idsOf(req)); n[req[0].ID] != 1 || n[req[1].ID] != 1 {
		t.Fatalf("the chain should have been committed once: %v", n)
	}
	rs, err := seq.CreateTransfers(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		if !r.Result.Applied() {
			t.Errorf("retry of an applied chain: member %d answered %s (Applied() = false), but it is in the journal; want exists",
				i, r.Result)
		}
	}
}

// zombieStore, when armed, gives up on a commit after a grace period and
// reports failure while the transaction goes on in Postgres: a network
// partition after COMMIT was sent, or a client-side timeout whose cancel
// never reached the server.
type zombieStore struct {
	*postgres.Store
	armed   atomic.Bool
	reached atomic.Bool // the zombie was seen inside its COMMIT
	wg      sync.WaitGroup
	zombie  chan error
}

func (s *zombieStore) Commit(ctx context.Context, b *ledger.Batch) error {
	if !s.armed.CompareAndSwap(true, false) {
		return s.Store.Commit(ctx, b)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.zombie <- s.Store.Commit(context.Background(), b)
	}()
	// Give up once the transaction is inside its COMMIT (the 'slow' fault
	// sleeps there, holding what the transaction locked): from then on
	// only Postgres decides, whatever the client does.
	for range 1000 {
		var n int
		err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event = 'PgSleep'`).Scan(&n)
		if err != nil {
			return fmt.Errorf("test: watch the zombie: %w", err)
		}
		if n > 0 {
			s.reached.Store(true)
			return errors.New("test: gave up waiting for COMMIT")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return errors.New("test: the zombie never reached COMMIT")
}

// TestZombieCommitDuringReload: the sequencer hears a commit failed while
// Postgres is still committing it, and reloads at once. The reload must see
// the zombie's outcome, or the next batch builds on a stale book (an
// overdraft here, and absolute balances that overwrite the zombie's).
func TestZombieCommitDuringReload(t *testing.T) {
	t.Parallel()
	store := &zombieStore{Store: openStore(t), zombie: make(chan error, 1)}
	t.Cleanup(store.wg.Wait) // before the pool closes
	pool := store.Pool()
	installFaults(t, pool)
	seq := startSeq(t, store, ledger.SequencerConfig{})
	ctx := context.Background()
	const sys, u = 1, 2
	if _, err := seq.CreateAccounts(ctx, []ledger.Account{
		{ID: sys, Asset: ledger.AssetCNY, Code: 1},
		{ID: u, Asset: ledger.AssetCNY, Code: 10, Flags: ledger.DebitsMustNotExceedCredits},
	}); err != nil {
		t.Fatal(err)
	}
	rs, err := seq.CreateTransfers(ctx, []ledger.Transfer{xfer(sys, u, 1000)})
	wantResults(t, "fund", rs, err, ledger.ResultOK)

	z := []ledger.Transfer{xfer(u, sys, 600)}
	setFault(t, pool, z[0].ID, "slow")
	store.armed.Store(true)
	if _, err := seq.CreateTransfers(ctx, z); !errors.Is(err, ledger.ErrCommitFailed) || !store.reached.Load() {
		t.Fatalf("abandoned commit: %v (zombie inside COMMIT: %v), want ErrCommitFailed", err, store.reached.Load())
	}
	// Sent while the zombie is still committing.
	w := []ledger.Transfer{xfer(u, sys, 600)}
	rs, err = seq.CreateTransfers(ctx, w)
	wantResults(t, "spend again while the first spend commits", rs, err, ledger.ResultExceedsCredits)
	if err := <-store.zombie; err != nil {
		t.Fatalf("zombie commit: %v", err)
	}
	rs, err = seq.CreateTransfers(ctx, z)
	wantResults(t, "retry of the zombie", rs, err, ledger.ResultExists)
	if a := lookupOne(t, seq.Sequencer, u); a.Balance() != 400 {
		t.Errorf("u: %+v, want 400", a)
	}
	mustVerify(t, store)
	checkBalancesMatchJournal(t, pool, seq.Sequencer)
}

// flakyStore fails commits at random in every way they fail in life.
type flakyStore struct {
	*postgres.Store
	mu    sync.Mutex
	rng   *rand.Rand
	modes [4]int
}

func (s *flakyStore) Commit(ctx context.Context, b *ledger.Batch) error {
	s.mu.Lock()
	x := s.rng.IntN(100)
	d := time.Duration(s.rng.Int64N(int64(4 * time.Millisecond)))
	mode := min(x/8, 3)
	s.modes[mode]++
	s.mu.Unlock()
	switch mode {
	case 0: // the connection broke before anything was sent
		return errors.New("test: connection refused")
	case 1: // committed, but the answer was lost
		if err := s.Store.Commit(ctx, b); err != nil {
			return err
		}
		return errors.New("test: connection reset after COMMIT")
	case 2: // cancelled at a random point of the transaction
		cctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		return s.Store.Commit(cctx, b)
	}
	return s.Store.Commit(ctx, b)
}

// TestFlakyCommitsExactlyOnce: a quarter of the commits fail (before,
// after, or in the middle), under concurrent clients that retry each
// request with the same ids until answered. Every transfer answered ok or
// exists is applied exactly once, and the balances are the sum of those.
func TestFlakyCommitsExactlyOnce(t *testing.T) {
	t.Parallel()
	flakyCommitsExactlyOnce(t, false)
}

// The same with a sequencer that fills its next batch until the one in
// flight committed (ledger.SequencerConfig.FillWhileCommitting).
func TestFlakyCommitsExactlyOnceFilling(t *testing.T) {
	t.Parallel()
	flakyCommitsExactlyOnce(t, true)
}

func flakyCommitsExactlyOnce(t *testing.T, fill bool) {
	seed := testseed.Seed(t)
	store := &flakyStore{Store: openStore(t), rng: newRand(seed)}
	pool := store.Pool()
	{
		honest := startSeq(t, store.Store, ledger.SequencerConfig{})
		setupCrashAccounts(t, honest.Sequencer)
		if err := honest.stop(t); err != nil {
			t.Fatal(err)
		}
	}
	seq := startSeq(t, store, ledger.SequencerConfig{ReloadBackoffMax: 100 * time.Millisecond, FillWhileCommitting: fill})
	const clients, requests, attemptsMax = 8, 40, 50
	w := newWorkload()
	var n atomic.Int64
	var wg sync.WaitGroup
	for c := range clients {
		crng := newRand(seed + uint64(c) + 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range requests {
				req := w.request(crng, "flaky", int(n.Add(1)))
				for attempt := 1; ; attempt++ {
					res, err := seq.CreateTransfers(context.Background(), req)
					w.record(req, res, err)
					if err == nil {
						break
					}
					if !isNotAcknowledged(err) || attempt == attemptsMax {
						t.Errorf("request %s: attempt %d: %v", req[0].ID, attempt, err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	acked := w.check(t, pool)
	// Check what an honest sequencer loads from Postgres.
	if err := seq.stop(t); err != nil {
		t.Fatal(err)
	}
	seq = startSeq(t, store.Store, ledger.SequencerConfig{})

	// The balances are what the acknowledged transfers add up to, plus
	// those whose answer said nothing (see workload.record) that the
	// journal holds.
	want := map[ledger.AccountID]int64{crashFunding: -crashUsers * crashFunds}
	for i := range crashUsers {
		want[crashFirstUser+ledger.AccountID(i)] = crashFunds
	}
	w.mu.Lock()
	var unknown []ledger.TransferID
	for id := range w.unknown {
		unknown = append(unknown, id)
	}
	present := journalCounts(t, pool, unknown)
	for _, req := range w.reqs {
		for _, tr := range req {
			if w.answer[tr.ID].Applied() || w.unknown[tr.ID] && present[tr.ID] == 1 {
				want[tr.DebitAccountID] -= tr.Amount
				want[tr.CreditAccountID] += tr.Amount
			}
		}
	}
	w.mu.Unlock()
	for id, bal := range want {
		if a := lookupOne(t, seq.Sequencer, id); a.Balance() != bal {
			t.Errorf("account %d: balance %d, acknowledged transfers add up to %d", id, a.Balance(), bal)
		}
	}
	checkBalancesMatchJournal(t, pool, seq.Sequencer)
	if err := seq.stop(t); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, store)
	store.mu.Lock()
	t.Logf("%d attempts, %d errors, %d transfers acknowledged; commits: %d failed before, %d ambiguous, %d cancelled midway, %d honest",
		w.attempts, w.errs, acked, store.modes[0], store.modes[1], store.modes[2], store.modes[3])
	store.mu.Unlock()
}

// ---------------------------------------------------------------------------
// A real process kill.

const helperEnv = "FUND_TEST_LEDGER_HELPER_DSN"

// TestHelperProcess is not a test: TestKillProcess runs the test binary
// again with this test selected, and it serves load on a real sequencer,
// printing one line per answer, until it is killed.
func TestHelperProcess(t *testing.T) {
	dsn := os.Getenv(helperEnv)
	if dsn == "" {
		t.Skip("helper process for TestKillProcess")
	}
	// Die with the parent: it holds our stdin open.
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(3)
	}()
	ctx := context.Background()
	store, err := postgres.Open(ctx, postgres.Config{DSN: dsn, ConnsMax: 4})
	if err != nil {
		fmt.Printf("error %v\n", err)
		os.Exit(2)
	}
	seq := ledger.NewSequencer(ledger.SequencerConfig{}, store, nil)
	go func() {
		err := seq.Run(ctx)
		fmt.Printf("error run: %v\n", err)
		os.Exit(2)
	}()
	<-seq.Ready()
	ns := os.Getenv("FUND_TEST_LEDGER_HELPER_NS")
	var out sync.Mutex
	say := func(format string, args ...any) {
		out.Lock()
		defer out.Unlock()
		fmt.Fprintf(os.Stdout, format, args...) // os.Stdout is unbuffered: one write per line
	}
	say("ready\n")
	var n atomic.Int64
	w := newWorkload()
	for c := range 8 {
		go func() {
			seed := ledger.DeriveTransferID(ns, fmt.Sprint(c))
			rng := newRand(binary.LittleEndian.Uint64(seed[:8]))
			for {
				req := w.request(rng, ns, int(n.Add(1)))
				var b strings.Builder
				for i, tr := range req {
					fmt.Fprintf(&b, " %s:%d:%d:%d:%d", tr.ID, tr.DebitAccountID, tr.CreditAccountID, tr.Amount, boolInt(i == 0 && tr.Flags&ledger.Linked != 0))
				}
				say("send%s\n", b.String())
				res, err := seq.CreateTransfers(ctx, req)
				if err != nil {
					say("error %v\n", err)
					continue
				}
				b.Reset()
				for i, r := range res {
					fmt.Fprintf(&b, " %s:%d", req[i].ID, r.Result)
				}
				say("answer%s\n", b.String()) // one line per request: all its answers or none
			}
		}()
	}
	select {} // until killed
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestKillProcess runs a sequencer under load in a child process and kills
// it with SIGKILL at a random moment, three times; each transfer the child
// reported as answered ok must be in the journal exactly once, everything
// else at most once, every chain whole or absent, and the books must
// balance.
func TestKillProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	t.Parallel()
	seed := testseed.Seed(t)
	rng := newRand(seed)
	dsn := pgtest.NewDatabase(t)
	store := openStoreDSN(t, dsn)
	pool := store.Pool()
	{
		seq := startSeq(t, store, ledger.SequencerConfig{})
		setupCrashAccounts(t, seq.Sequencer)
		if err := seq.stop(t); err != nil {
			t.Fatal(err)
		}
	}
	w := newWorkload()
	for round := range 3 {
		killAfter := 20 + rng.IntN(400) // answers before the kill
		lines := runAndKill(t, pool, dsn, fmt.Sprintf("kill-%d-%d", seed, round), killAfter)
		answers := 0
		sent := map[ledger.TransferID][]ledger.Transfer{}
		for _, line := range lines {
			f := strings.Fields(line)
			switch {
			case len(f) > 1 && f[0] == "send":
				var req []ledger.Transfer
				for _, part := range f[1:] {
					var id string
					var tr ledger.Transfer
					var linked int
					if _, err := fmt.Sscanf(strings.ReplaceAll(part, ":", " "), "%s %d %d %d %d",
						&id, &tr.DebitAccountID, &tr.CreditAccountID, &tr.Amount, &linked); err != nil {
						t.Fatalf("child line %q: %v", line, err)
					}
					var err error
					if tr.ID, err = ledger.ParseTransferID(id); err != nil {
						t.Fatal(err)
					}
					tr.Asset, tr.Kind = ledger.AssetCNY, 7
					if linked == 1 {
						tr.Flags = ledger.Linked
					}
					req = append(req, tr)
				}
				w.mu.Lock()
				w.reqs = append(w.reqs, req)
				w.mu.Unlock()
				w.record(req, nil, errors.New("sent, not answered yet"))
				sent[req[0].ID] = req
			case len(f) > 1 && f[0] == "answer":
				var req []ledger.Transfer
				var res []ledger.TransferResult
				for _, part := range f[1:] {
					id, code, _ := strings.Cut(part, ":")
					tid, err := ledger.ParseTransferID(id)
					if err != nil {
						t.Fatalf("child line %q: %v", line, err)
					}
					r, err := strconv.ParseUint(code, 10, 8)
					if err != nil {
						t.Fatalf("child line %q: %v", line, err)
					}
					if req == nil {
						req = sent[tid]
					}
					res = append(res, ledger.TransferResult{Result: ledger.Result(r)})
				}
				if len(req) != len(res) {
					t.Fatalf("child answered %q for a request of %d", line, len(req))
				}
				w.record(req, res, nil)
				answers++
			case len(f) > 0 && f[0] == "error" && !strings.Contains(line, "commit failed"):
				t.Fatalf("child: %s", line)
			}
		}
		acked := w.check(t, pool)
		mustVerify(t, store)
		seq := startSeq(t, store, ledger.SequencerConfig{})
		checkBalancesMatchJournal(t, pool, seq.Sequencer)
		// Retry what was in flight when the child died.
		for _, req := range w.unanswered() {
			res, err := seq.CreateTransfers(context.Background(), req)
			w.record(req, res, err)
		}
		if err := seq.stop(t); err != nil {
			t.Fatal(err)
		}
		w.check(t, pool)
		mustVerify(t, store) // after a clean stop: the stored balances are complete
		t.Logf("round %d: killed after %d answers; %d transfers acknowledged in all", round, answers, acked)
		if t.Failed() {
			t.FailNow()
		}
	}
	mustVerify(t, store)
}

// helperApp is the application_name of the helper process's sessions.
const helperApp = "fund-test-killed-child"

// runAndKill starts the helper process and SIGKILLs it once it printed
// killAfter answers; it returns every line the child printed, once the
// child's sessions are gone from Postgres. (A commit is one pipelined round
// trip: a batch the child sent just before it died still commits after it
// is dead, and must be in the journal before the journal is checked.)
func runAndKill(t *testing.T, pool *pgxpool.Pool, dsn, ns string, killAfter int) []string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", helperApp)
	u.RawQuery = q.Encode()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), helperEnv+"="+u.String(), "FUND_TEST_LEDGER_HELPER_NS="+ns)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err = cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	answers := 0
	killed := false
	deadline := time.AfterFunc(time.Minute, func() { _ = cmd.Process.Kill() })
	defer deadline.Stop()
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		lines = append(lines, line)
		if strings.HasPrefix(line, "answer ") {
			answers += strings.Count(line, ":")
		}
		if !killed && answers >= killAfter {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatalf("kill: %v", err)
			}
			killed = true
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("child exited by itself (%v) after %d lines; last: %q", err, len(lines), lines[max(0, len(lines)-3):])
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want SIGKILL", err)
	}
	for range 3000 { // up to 30 s
		var n int
		if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = $1`, helperApp).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return lines
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the killed child's sessions are still in Postgres after 30 s")
	return nil
}
