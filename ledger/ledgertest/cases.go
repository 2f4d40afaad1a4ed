package ledgertest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/fundplatform/fund/ledger"
)

// Accounts of the hand-written tests.
const (
	bank  = ledger.AccountID(1) // CNY, no limit
	alice = ledger.AccountID(2) // CNY customer
	bob   = ledger.AccountID(3) // CNY customer
)

func createCustomers(t *testing.T, seq *running) {
	t.Helper()
	user := ledger.DebitsMustNotExceedCredits
	createAccounts(t, seq,
		ledger.Account{ID: bank, Asset: ledger.AssetCNY, Code: 1},
		ledger.Account{ID: alice, Asset: ledger.AssetCNY, Code: 10, Flags: user},
		ledger.Account{ID: bob, Asset: ledger.AssetCNY, Code: 10, Flags: user})
}

func pay(dr, cr ledger.AccountID, amount int64, userData string) ledger.Transfer {
	return ledger.Transfer{ID: ledger.NewTransferID(), DebitAccountID: dr, CreditAccountID: cr, Amount: amount,
		Asset: ledger.AssetCNY, UserData: userData}
}

func hold(dr, cr ledger.AccountID, amount int64) ledger.Transfer {
	t := pay(dr, cr, amount, "")
	t.Flags = ledger.Pending
	return t
}

func post(hold ledger.TransferID, amount int64) ledger.Transfer {
	return ledger.Transfer{ID: ledger.NewTransferID(), PendingID: hold, Amount: amount, Flags: ledger.PostPending}
}

func void(hold ledger.TransferID) ledger.Transfer {
	return ledger.Transfer{ID: ledger.NewTransferID(), PendingID: hold, Flags: ledger.VoidPending}
}

// checkSums fails the test unless the account's four sums are want.
func checkSums(t *testing.T, seq *running, id ledger.AccountID, want sums, when string) {
	t.Helper()
	if got := sumsOf(lookup(t, seq, id)[0]); got != want {
		t.Fatalf("%s: account %d is %+v, want %+v", when, id, got, want)
	}
}

// testIdempotency: a transfer id applies at most once. A retry with the
// same content answers exists and changes nothing, even when many arrive
// at once; the same id with other content is refused; an id whose transfer
// failed was not used up.
func testIdempotency(t *testing.T, s *shard) {
	seq := s.start(ledger.SequencerConfig{})
	createCustomers(t, seq)
	ok, exists, differs := ledger.ResultOK, ledger.ResultExists, ledger.ResultExistsWithDifferentFields
	expect(t, seq, results(ok), pay(bank, alice, 100, "top-up"))
	first := pay(alice, bob, 30, "order-1")
	expect(t, seq, results(ok), first)
	expect(t, seq, results(exists), first)
	for _, change := range []func(*ledger.Transfer){
		func(t *ledger.Transfer) { t.Amount++ },
		func(t *ledger.Transfer) { t.UserData = "order-2" },
		func(t *ledger.Transfer) { t.DebitAccountID, t.CreditAccountID = bob, alice },
		func(t *ledger.Transfer) { t.Flags = ledger.Pending },
	} {
		other := first
		change(&other)
		expect(t, seq, results(differs), other)
	}
	checkSums(t, seq, alice, sums{DebitsPosted: 30, CreditsPosted: 100}, "after retries")

	// A transfer that failed left nothing behind: its id applies later.
	big := pay(alice, bob, 500, "order-3")
	expect(t, seq, results(ledger.ResultExceedsCredits), big)
	expect(t, seq, results(ok, ok), pay(bank, alice, 430, "top-up"), big)
	expect(t, seq, results(exists), big)

	// A retry of a whole chain answers exists for every member; a chain
	// that adds a new member to applied ones is no retry and is refused.
	a, b := pay(bank, alice, 5, ""), pay(alice, bob, 5, "")
	a.Flags = ledger.Linked
	expect(t, seq, results(ok, ok), a, b)
	expect(t, seq, results(exists, exists), a, b)
	expect(t, seq, results(exists, ledger.ResultLinkedEventFailed), a, pay(bank, alice, 1, ""))

	// Many copies of one new transfer at once: one applies.
	concurrentRetries(t, seq, pay(bank, bob, 7, "order-4"))
	checkSums(t, seq, alice, sums{DebitsPosted: 535, CreditsPosted: 535}, "at the end")
	checkSums(t, seq, bob, sums{CreditsPosted: 542}, "at the end")
	seq.stop(t)
}

// concurrentRetries sends the same transfer from many clients at once:
// exactly one is answered ok, every other exists.
func concurrentRetries(t *testing.T, seq *running, tr ledger.Transfer) {
	t.Helper()
	const clients = 20
	got := make([]ledger.Result, clients)
	answered := make([]bool, clients) // a request that failed as a whole was reported already
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ctx, cancel := reqCtx()
			defer cancel()
			rs, err := seq.CreateTransfers(ctx, []ledger.Transfer{tr})
			if err != nil {
				t.Errorf("client %d: %v", i, err)
				return
			}
			got[i], answered[i] = rs[0].Result, true
		}()
	}
	close(start)
	wg.Wait()
	applied := 0
	for i, r := range got {
		switch {
		case !answered[i]:
		case r == ledger.ResultOK:
			applied++
		case r == ledger.ResultExists:
		default:
			t.Errorf("client %d: %s", i, r)
		}
	}
	if applied != 1 {
		t.Fatalf("%d of %d copies of one transfer applied, want 1", applied, clients)
	}
}

// testRestart: a new sequencer over the same store serves the same
// balances and holds, remembers every id (retries answer exists, reuses
// are refused, resolved holds stay resolved), goes on with later
// timestamps and expires the holds it loaded.
func testRestart(t *testing.T, s *shard) {
	seq := s.start(ledger.SequencerConfig{})
	createCustomers(t, seq)
	ok := ledger.ResultOK
	top := pay(bank, alice, 1000, "top-up")
	open, posted, voided := hold(alice, bob, 100), hold(alice, bob, 200), hold(alice, bob, 300)
	expect(t, seq, results(ok, ok, ok, ok), top, open, posted, voided)
	postIt, voidIt := post(posted.ID, 150), void(voided.ID)
	paid := pay(alice, bob, 50, "order-1")
	rs := transfers(t, seq, postIt, voidIt, paid)
	for i, r := range rs {
		if r.Result != ok {
			t.Fatalf("transfer %d: %s", i, r.Result)
		}
	}
	ids := []ledger.AccountID{bank, alice, bob}
	before := lookup(t, seq, ids...)
	seq.stop(t)

	// The new owner's clock is behind the old one's: its timestamps still
	// follow the stored ones.
	seq = s.start(ledger.SequencerConfig{Now: func() time.Time { return time.Now().Add(-time.Hour) }})
	for i, a := range lookup(t, seq, ids...) {
		if a != before[i] {
			t.Errorf("account %d after the restart: %+v, before: %+v", a.ID, a, before[i])
		}
	}
	exists := ledger.ResultExists
	expect(t, seq, results(exists, exists, exists, exists, exists, exists, exists), top, open, posted, voided, postIt, voidIt, paid)
	other := paid
	other.Amount++
	expect(t, seq, results(ledger.ResultExistsWithDifferentFields), other)
	expect(t, seq, results(ledger.ResultPendingTransferAlreadyPosted, ledger.ResultPendingTransferAlreadyVoided),
		post(posted.ID, 0), post(voided.ID, 0))
	later := transfers(t, seq, post(open.ID, 0))[0]
	if later.Result != ok || later.Timestamp <= rs[len(rs)-1].Timestamp {
		t.Fatalf("post of the open hold after the restart: %s at %d, the last batch before it was at %d",
			later.Result, later.Timestamp, rs[len(rs)-1].Timestamp)
	}
	checkSums(t, seq, alice, sums{DebitsPosted: 300, CreditsPosted: 1000}, "after the restart")

	// A hold with a timeout expires on a later sequencer: the one that
	// loaded it as open.
	expiring := hold(alice, bob, 40)
	expiring.Timeout = time.Hour
	expect(t, seq, results(ok), expiring)
	seq.stop(t)
	seq = s.start(ledger.SequencerConfig{Now: func() time.Time { return time.Now().Add(2 * time.Hour) }})
	expect(t, seq, results(ledger.ResultPendingTransferExpired), post(expiring.ID, 0))
	checkSums(t, seq, alice, sums{DebitsPosted: 300, CreditsPosted: 1000}, "after the hold expired")
	seq.stop(t)
}

// testFencing: once a new owner took the shard over, a sequencer of the
// old epoch can commit nothing: its request fails with ErrFenced, it stops,
// and the new owner sees only what was committed before.
func testFencing(t *testing.T, s *shard) {
	if s.cfg.TakeOver == nil {
		t.Skip("the store has no epochs")
	}
	s.epoch = s.cfg.TakeOver(t, s.store, 0)
	old := s.start(ledger.SequencerConfig{})
	createCustomers(t, old)
	first := pay(bank, alice, 100, "before")
	expect(t, old, results(ledger.ResultOK), first)

	oldEpoch := s.epoch
	s.epoch = s.cfg.TakeOver(t, s.store, 0)
	if s.epoch <= oldEpoch {
		t.Fatalf("TakeOver: epoch %d after %d, want a newer one", s.epoch, oldEpoch)
	}
	stale := pay(bank, alice, 7, "stale")
	ctx, cancel := reqCtx()
	defer cancel()
	if _, err := old.CreateTransfers(ctx, []ledger.Transfer{stale}); !errors.Is(err, ledger.ErrFenced) {
		t.Fatalf("transfer of the old epoch: %v, want ErrFenced", err)
	}
	if err := old.stopRun(); !errors.Is(err, ledger.ErrFenced) {
		t.Fatalf("the fenced sequencer's Run returned %v, want ErrFenced", err)
	}

	seq := s.start(ledger.SequencerConfig{})
	expect(t, seq, results(ledger.ResultExists, ledger.ResultOK), first, stale)
	checkSums(t, seq, alice, sums{CreditsPosted: 107}, "after the takeover")
	seq.stop(t)
}
