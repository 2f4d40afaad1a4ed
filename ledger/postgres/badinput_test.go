package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/postgres"
)

// Bad input gets its exact result code and writes nothing: no journal row,
// no id, no pending transfer, no account, no balance change, and no
// timestamp used up. (Balances are compared as the ledger serves them: how
// and when the store writes them down is the store's business, and a batch
// may carry a catch-up of earlier balances.)

// Accounts of the bad-input tests.
const (
	biFunding = ledger.AccountID(1) // CNY, no limit
	biBig     = ledger.AccountID(2) // CNY, no limit: debited almost math.MaxInt64
	biUser    = ledger.AccountID(3) // CNY, debits must not exceed credits; holds 1000
	biEmpty   = ledger.AccountID(4) // CNY, debits must not exceed credits; holds nothing
	biShares  = ledger.AccountID(5) // fund shares
	biClosed  = ledger.AccountID(6) // CNY, closed
	biFull    = ledger.AccountID(7) // CNY, no limit: credited almost math.MaxInt64
	biDebitN  = ledger.AccountID(8) // CNY, credits must not exceed debits
	biUnknown = ledger.AccountID(999)

	// biHeadroom is what biBig may still be debited and biFull credited.
	// Every posted amount in these tests adds to each asset's total, which
	// must itself stay below math.MaxInt64 (see TestVerifyTotalsOverflow).
	biHeadroom = 10_000
)

// snapshot is everything a request could have changed.
type snapshot struct {
	counts tableCounts
	served []ledger.Account
	lastTS int64 // ledger_shards.last_timestamp
}

// changed describes what differs between two snapshots. A refused chain
// may use up timestamps (its members were applied, then undone), so
// withTime=false skips that comparison.
func (s snapshot) changed(after snapshot, withTime bool) string {
	if withTime && s.lastTS != after.lastTS {
		return fmt.Sprintf("a timestamp was used: last %d -> %d", s.lastTS, after.lastTS)
	}
	if s.counts != after.counts {
		return fmt.Sprintf("rows %+v -> %+v", s.counts, after.counts)
	}
	if !reflect.DeepEqual(s.served, after.served) {
		return fmt.Sprintf("balances %+v -> %+v", s.served, after.served)
	}
	return ""
}

func takeSnapshot(t *testing.T, pool *pgxpool.Pool, seq *runningSeq) snapshot {
	t.Helper()
	s := snapshot{counts: countTables(t, pool)}
	ids := make([]ledger.AccountID, 0, 10)
	for id := ledger.AccountID(0); id <= 10; id++ {
		ids = append(ids, id)
	}
	var err error
	if s.served, err = seq.LookupAccounts(context.Background(), ids); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(context.Background(), `SELECT last_timestamp FROM ledger_shards WHERE shard = 0`).Scan(&s.lastTS); err != nil {
		t.Fatal(err)
	}
	return s
}

func setupBadInput(t *testing.T) (*runningSeq, *postgres.Store, func(ledger.Transfer) ledger.Transfer) {
	t.Helper()
	store := openStore(t)
	seq := startSeq(t, store, ledger.SequencerConfig{RequestEventsMax: 100})
	ctx := context.Background()
	user := ledger.DebitsMustNotExceedCredits
	as := []ledger.Account{
		{ID: biFunding, Asset: ledger.AssetCNY, Code: 1},
		{ID: biBig, Asset: ledger.AssetCNY, Code: 1},
		{ID: biUser, Asset: ledger.AssetCNY, Code: 10, Flags: user},
		{ID: biEmpty, Asset: ledger.AssetCNY, Code: 10, Flags: user},
		{ID: biShares, Asset: ledger.AssetFundShares, Code: 10, Flags: user},
		{ID: biClosed, Asset: ledger.AssetCNY, Code: 10, Flags: user},
		{ID: biFull, Asset: ledger.AssetCNY, Code: 1},
		{ID: biDebitN, Asset: ledger.AssetCNY, Code: 20, Flags: ledger.CreditsMustNotExceedDebits},
	}
	rs, err := seq.CreateAccounts(ctx, as)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		if r.Result != ledger.ResultOK {
			t.Fatalf("create account %d: %s", as[i].ID, r.Result)
		}
	}
	cr, err := seq.CloseAccounts(ctx, []ledger.AccountID{biClosed})
	if err != nil || cr[0].Result != ledger.ResultOK {
		t.Fatalf("close: %v %v", cr, err)
	}
	n := 0
	mk := func(tr ledger.Transfer) ledger.Transfer {
		n++
		if tr.ID.IsZero() {
			tr.ID = ledger.DeriveTransferID("bad-input", t.Name(), string(rune('a'+n%26)), strings.Repeat("+", n))
		}
		if tr.Asset == 0 && tr.Flags&(ledger.PostPending|ledger.VoidPending) == 0 {
			tr.Asset = ledger.AssetCNY
		}
		return tr
	}
	trs, err := seq.CreateTransfers(ctx, []ledger.Transfer{
		mk(ledger.Transfer{DebitAccountID: biFunding, CreditAccountID: biUser, Amount: 1000}),
		mk(ledger.Transfer{DebitAccountID: biBig, CreditAccountID: biFull, Amount: math.MaxInt64 - biHeadroom}),
	})
	if err != nil || trs[0].Result != ledger.ResultOK || trs[1].Result != ledger.ResultOK {
		t.Fatalf("fund: %v %v", results(trs), err)
	}
	return seq, store, mk
}

func TestBadTransfersWriteNothing(t *testing.T) {
	t.Parallel()
	seq, store, mk := setupBadInput(t)
	pool := store.Pool()
	ctx := context.Background()

	// Transfers that succeed, to refer to below.
	dup := mk(ledger.Transfer{DebitAccountID: biUser, CreditAccountID: biEmpty, Amount: 10, Kind: 4, UserData: "order-1"})
	hold := mk(ledger.Transfer{DebitAccountID: biUser, CreditAccountID: biEmpty, Amount: 100, Flags: ledger.Pending})
	longest := mk(ledger.Transfer{DebitAccountID: biUser, CreditAccountID: biEmpty, Amount: 1, UserData: strings.Repeat("元", 21)}) // 63 bytes
	rs, err := seq.CreateTransfers(ctx, []ledger.Transfer{dup, hold, longest})
	wantResults(t, "setup", rs, err, ledger.ResultOK, ledger.ResultOK, ledger.ResultOK)

	tooLongUTF8 := strings.Repeat("元", 22) // 66 bytes, 22 characters
	changedAmount, changedData := dup, dup
	changedAmount.Amount++
	changedData.UserData += "x"
	linkedOK := mk(ledger.Transfer{DebitAccountID: biFunding, CreditAccountID: biEmpty, Amount: 5, Flags: ledger.Linked})
	linkedOK2 := mk(ledger.Transfer{DebitAccountID: biFunding, CreditAccountID: biEmpty, Amount: 6, Flags: ledger.Linked})
	empty := lookupOne(t, seq.Sequencer, biEmpty)

	type tc = ledger.Transfer
	cases := []struct {
		name string
		in   []ledger.Transfer
		want []ledger.Result
	}{
		{"zero amount", []tc{mk(tc{DebitAccountID: biUser, CreditAccountID: biEmpty, Amount: 0})}, []ledger.Result{ledger.ResultInvalidAmount}},
		{"zero amount pending", []tc{mk(tc{DebitAccountID: biUser, CreditAccountID: biEmpty, Amount: 0, Flags: ledger.Pending})}, []ledger.Result{ledger.ResultInvalidAmount}},
		{"negative amount", []tc{mk(tc{DebitAccountID: biUser, CreditAccountID: biEmpty, Amount: -1})}, []ledger.Result{ledger.ResultInvalidAmount}},
		{"most negative amount", []tc{mk(tc{DebitAccountID: biFunding, CreditAccountID: biEmpty, Amount: math.MinInt64})}, []ledger.Result{ledger.ResultInvalidAmount}},
		{"credits overflow", []tc{mk(tc{DebitAccountID: biFunding, CreditAccountID: biFull, Amount: biHeadroom + 1})}, []ledger.Result{ledger.ResultOverflow}},
		{"debits overflow", []tc{mk(tc{DebitAccountID: biBig, CreditAccountID: biFunding, Amount: biHeadroom + 1})}, []ledger.Result{ledger.ResultOverflow}},
		{"pending credits overflow", []tc{mk(tc{DebitAccountID: biFunding, CreditAccountID: biFull, Amount: biHeadroom + 1, Flags: ledger.Pending})}, []ledger.Result{ledger.ResultOverflow}},
		{"max amount", []tc{mk(tc{DebitAccountID: biFunding, CreditAccountID: biEmpty, Amount: math.MaxInt64})}, []ledger.Result{ledger.ResultOverflow}},
		{"max amount to a full account", []tc{mk(tc{DebitAccountID: biEmpty, CreditAccountID: biFull, Amount: math.MaxInt64})}, []ledger.Result{ledger.ResultOverflow}},
		{"unknown debit account", []tc{mk(tc{DebitAccountID: biUnknown, CreditAccountID: biEmpty, Amount: 1})}, []ledger.Result{ledger.ResultDebitAccountNotFound}},
		{"unknown credit account", []tc{mk(tc{DebitAccountID: biUser, CreditAccountID: biUnknown, Amount: 1})}, []ledger.Result{ledger.ResultCreditAccountNotFound}},
		{"both unknown", []tc{mk(tc{DebitAccountID: biUnknown, CreditAccountID: biUnknown + 1, Amount: 1})}, []ledger.Result{ledger.ResultDebitAccountNotFound}},
		{"debit account zero", []tc{mk(tc{DebitAccountID: 0, CreditAccountID: biEmpty, Amount: 1})}, []ledger.Result{ledger.ResultDebitAccountNotFound}},
		{"credit account of another asset", []tc{mk(tc{DebitAccountID: biUser, CreditAccountID: biShares, Amount: 1})}, []ledger.Result{ledger.ResultAssetMismatch}},
		{"transfer of another asset", []tc{mk(tc{DebitAccountID: biUser, CreditAccountID: biEmpty, Amount: 1, Asset: ledger.AssetFundShares})}, []ledger.Result{ledger.ResultAssetMismatch}},
		{"unknown asset", []tc{mk(tc{DebitAccountID: biUser, CreditAccountID: biEmpty, Amount: 1, Asset: 99})}, []ledger.Result{ledger.ResultAssetMismatch}},
		{"same account both sides", []tc{mk(tc{DebitAccountID: biUser, CreditAccountID: biUser, Amount: 1})}, []ledger.Result{ledger.ResultAccountsMustBeDifferent}},
		{"id zero", []tc{{DebitAccountID: biUser, CreditAccountID: biEmpty, Amount: 1, Asset: ledger.AssetCNY}}, []ledger.Result{ledger.ResultIDMustNotBeZero}},
		{"expired flag (the ledger's own)", []tc{mk(tc{DebitAccountID: biUser, CreditAccountID: biEmpty, Amount: 1, Flags: ledger.Expired})}, []ledger.Result{ledger.ResultReservedFlag}},
		{"unknown flag", []tc{mk(tc{DebitAccountID: biUser, CreditAccountID: biEmpty, Amount: 1, Flags: 1 << 15})}, []ledger.Result{ledger.ResultReservedFlag}},
		{"pending and post", []tc{mk(tc{DebitAccountID: biUser, CreditAccountID: biEmpty, Amount: 1, Flags: ledger.Pending | ledger.PostPending, PendingID: hold.ID})}, []ledger.Result{ledger.ResultFlagsAreMutuallyExclusive}},
		{"user data too long", []tc{mk(tc{DebitAccountID: biUser, CreditAccountID: biEmpty, Amount: 1, UserData: strings.Repeat("x", ledger.MaxUserDataLen+1)})}, []ledger.Result{ledger.ResultUserDataTooLong}},
		{"user data too long in bytes", []tc{mk(tc{DebitAccountID: biUser, CreditAccountID: biEmpty, Amount: 1, UserData: tooLongUTF8})}, []ledger.Result{ledger.ResultUserDataTooLong}},
		{"closed credit account", []tc{mk(tc{DebitAccountID: biUser, CreditAccountID: biClosed, Amount: 1})}, []ledger.Result{ledger.ResultCreditAccountClosed}},
		{"closed debit account", []tc{mk(tc{DebitAccountID: biClosed, CreditAccountID: biUser, Amount: 1})}, []ledger.Result{ledger.ResultDebitAccountClosed}},
		{"overdraft", []tc{mk(tc{DebitAccountID: biEmpty, CreditAccountID: biUser, Amount: 1000})}, []ledger.Result{ledger.ResultExceedsCredits}},
		{"overdraft by one, counting the hold", []tc{mk(tc{DebitAccountID: biUser, CreditAccountID: biEmpty, Amount: 1000 - 10 - 100 - 1 + 1})}, []ledger.Result{ledger.ResultExceedsCredits}},
		{"hold beyond the balance", []tc{mk(tc{DebitAccountID: biUser, CreditAccountID: biEmpty, Amount: 1000, Flags: ledger.Pending})}, []ledger.Result{ledger.ResultExceedsCredits}},
		{"credit to a debit-normal account", []tc{mk(tc{DebitAccountID: biFunding, CreditAccountID: biDebitN, Amount: 1})}, []ledger.Result{ledger.ResultExceedsDebits}},
		{"timeout on a plain transfer", []tc{mk(tc{DebitAccountID: biUser, CreditAccountID: biEmpty, Amount: 1, Timeout: time.Second})}, []ledger.Result{ledger.ResultTimeoutReservedForPending}},
		{"negative timeout", []tc{mk(tc{DebitAccountID: biUser, CreditAccountID: biEmpty, Amount: 1, Flags: ledger.Pending, Timeout: -time.Second})}, []ledger.Result{ledger.ResultInvalidTimeout}},
		{"pending id on a plain transfer", []tc{mk(tc{DebitAccountID: biUser, CreditAccountID: biEmpty, Amount: 1, PendingID: hold.ID})}, []ledger.Result{ledger.ResultPendingIDMustBeZero}},
		{"post without pending id", []tc{mk(tc{Flags: ledger.PostPending})}, []ledger.Result{ledger.ResultPendingIDRequired}},
		{"post of itself", []tc{func() tc { t := mk(tc{Flags: ledger.PostPending}); t.PendingID = t.ID; return t }()}, []ledger.Result{ledger.ResultPendingIDMustBeDifferent}},
		{"post of an unknown pending transfer", []tc{mk(tc{Flags: ledger.PostPending, PendingID: ledger.NewTransferID()})}, []ledger.Result{ledger.ResultPendingTransferNotFound}},
		{"post of a plain transfer", []tc{mk(tc{Flags: ledger.PostPending, PendingID: dup.ID})}, []ledger.Result{ledger.ResultPendingTransferNotFound}},
		{"post of a negative amount", []tc{mk(tc{Flags: ledger.PostPending, PendingID: hold.ID, Amount: -1})}, []ledger.Result{ledger.ResultInvalidAmount}},
		{"post beyond the hold", []tc{mk(tc{Flags: ledger.PostPending, PendingID: hold.ID, Amount: 101})}, []ledger.Result{ledger.ResultExceedsPendingAmount}},
		{"post with a timeout", []tc{mk(tc{Flags: ledger.PostPending, PendingID: hold.ID, Timeout: time.Second})}, []ledger.Result{ledger.ResultTimeoutReservedForPending}},
		{"post naming another debit account", []tc{mk(tc{Flags: ledger.PostPending, PendingID: hold.ID, DebitAccountID: biFunding})}, []ledger.Result{ledger.ResultPendingTransferHasDifferentDebit}},
		{"post naming another credit account", []tc{mk(tc{Flags: ledger.PostPending, PendingID: hold.ID, CreditAccountID: biFunding})}, []ledger.Result{ledger.ResultPendingTransferHasDifferentCredit}},
		{"post naming another asset", []tc{mk(tc{Flags: ledger.PostPending, PendingID: hold.ID, Asset: ledger.AssetFundShares})}, []ledger.Result{ledger.ResultPendingTransferHasDifferentAsset}},
		{"void of another amount", []tc{mk(tc{Flags: ledger.VoidPending, PendingID: hold.ID, Amount: 99})}, []ledger.Result{ledger.ResultVoidAmountMismatch}},
		{"identical retry", []tc{dup}, []ledger.Result{ledger.ResultExists}},
		{"same id, other amount", []tc{changedAmount}, []ledger.Result{ledger.ResultExistsWithDifferentFields}},
		{"same id, other user data", []tc{changedData}, []ledger.Result{ledger.ResultExistsWithDifferentFields}},
		{"chain with a bad member", []tc{linkedOK, mk(tc{DebitAccountID: biUser, CreditAccountID: biEmpty, Amount: 0})},
			[]ledger.Result{ledger.ResultLinkedEventFailed, ledger.ResultInvalidAmount}},
		{"chain left open", []tc{linkedOK, linkedOK2}, []ledger.Result{ledger.ResultLinkedEventFailed, ledger.ResultLinkedEventChainOpen}},
		// The first member credits 5; the second spends one more than
		// that makes available.
		{"chain whose last member overdraws", []tc{linkedOK, mk(tc{DebitAccountID: biEmpty, CreditAccountID: biUser,
			Amount: empty.Available() + linkedOK.Amount + 1})},
			[]ledger.Result{ledger.ResultLinkedEventFailed, ledger.ResultExceedsCredits}},
	}
	for _, c := range cases {
		before := takeSnapshot(t, pool, seq)
		rs, err := seq.CreateTransfers(ctx, c.in)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got := results(rs); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
		for i, r := range rs {
			if r.Timestamp != 0 {
				t.Errorf("%s: refused transfer %d carries timestamp %d", c.name, i, r.Timestamp)
			}
		}
		chain := c.in[0].Flags&ledger.Linked != 0
		if diff := before.changed(takeSnapshot(t, pool, seq), !chain); diff != "" {
			t.Errorf("%s: %s", c.name, diff)
		}
	}

	// Refused ids were not recorded: the same ids, made valid, apply.
	fixed := mk(ledger.Transfer{DebitAccountID: biUser, CreditAccountID: biEmpty, Amount: 0})
	rs, err = seq.CreateTransfers(ctx, []ledger.Transfer{fixed})
	wantResults(t, "bad", rs, err, ledger.ResultInvalidAmount)
	fixed.Amount = 1
	rs, err = seq.CreateTransfers(ctx, []ledger.Transfer{fixed})
	wantResults(t, "the refused id made valid", rs, err, ledger.ResultOK)
	rs, err = seq.CreateTransfers(ctx, []ledger.Transfer{linkedOK, linkedOK2, mk(ledger.Transfer{DebitAccountID: biFunding, CreditAccountID: biEmpty, Amount: 7})})
	wantResults(t, "the refused chain closed", rs, err, ledger.ResultOK, ledger.ResultOK, ledger.ResultOK)

	// Whole requests the sequencer refuses.
	before := takeSnapshot(t, pool, seq)
	if _, err := seq.CreateTransfers(ctx, nil); !errors.Is(err, ledger.ErrEmptyRequest) {
		t.Errorf("empty request: %v", err)
	}
	many := make([]ledger.Transfer, 101)
	for i := range many {
		many[i] = mk(ledger.Transfer{DebitAccountID: biFunding, CreditAccountID: biEmpty, Amount: 1})
	}
	if _, err := seq.CreateTransfers(ctx, many); !errors.Is(err, ledger.ErrTooManyEvents) {
		t.Errorf("101 transfers with RequestEventsMax 100: %v", err)
	}
	if diff := before.changed(takeSnapshot(t, pool, seq), true); diff != "" {
		t.Errorf("refused requests: %s", diff)
	}
	mustVerify(t, store)
}

func TestBadAccountsWriteNothing(t *testing.T) {
	t.Parallel()
	seq, store, _ := setupBadInput(t)
	pool := store.Pool()
	ctx := context.Background()
	user := ledger.DebitsMustNotExceedCredits
	cases := []struct {
		name string
		in   ledger.Account
		want ledger.Result
	}{
		{"id zero", ledger.Account{ID: 0, Asset: ledger.AssetCNY}, ledger.ResultIDMustNotBeZero},
		{"unknown flag", ledger.Account{ID: 50, Asset: ledger.AssetCNY, Flags: 1 << 4}, ledger.ResultReservedFlag},
		{"both limits", ledger.Account{ID: 50, Asset: ledger.AssetCNY, Flags: user | ledger.CreditsMustNotExceedDebits}, ledger.ResultFlagsAreMutuallyExclusive},
		{"asset zero", ledger.Account{ID: 50, Asset: 0}, ledger.ResultInvalidAsset},
		{"unknown asset", ledger.Account{ID: 50, Asset: 9}, ledger.ResultInvalidAsset},
		{"identical retry", ledger.Account{ID: biUser, Asset: ledger.AssetCNY, Code: 10, Flags: user}, ledger.ResultExists},
		{"same id, other asset", ledger.Account{ID: biUser, Asset: ledger.AssetFundShares, Code: 10, Flags: user}, ledger.ResultExistsWithDifferentFields},
		{"same id, other flags", ledger.Account{ID: biUser, Asset: ledger.AssetCNY, Code: 10}, ledger.ResultExistsWithDifferentFields},
		{"same id, other code", ledger.Account{ID: biUser, Asset: ledger.AssetCNY, Code: 11, Flags: user}, ledger.ResultExistsWithDifferentFields},
	}
	for _, c := range cases {
		before := takeSnapshot(t, pool, seq)
		rs, err := seq.CreateAccounts(ctx, []ledger.Account{c.in})
		if err != nil || rs[0].Result != c.want {
			t.Errorf("%s: got %v %v, want %s", c.name, rs, err, c.want)
		}
		if diff := before.changed(takeSnapshot(t, pool, seq), true); diff != "" {
			t.Errorf("%s: %s", c.name, diff)
		}
	}
	closes := []struct {
		name string
		id   ledger.AccountID
		want ledger.Result
	}{
		{"unknown", biUnknown, ledger.ResultAccountNotFound},
		{"with a balance", biUser, ledger.ResultAccountBalanceNotZero},
		{"debited, never credited", biBig, ledger.ResultAccountBalanceNotZero},
		{"already closed", biClosed, ledger.ResultAccountAlreadyClosed},
	}
	for _, c := range closes {
		before := takeSnapshot(t, pool, seq)
		rs, err := seq.CloseAccounts(ctx, []ledger.AccountID{c.id})
		if err != nil || rs[0].Result != c.want {
			t.Errorf("close %s: got %v %v, want %s", c.name, rs, err, c.want)
		}
		if diff := before.changed(takeSnapshot(t, pool, seq), true); diff != "" {
			t.Errorf("close %s: %s", c.name, diff)
		}
	}
	mustVerify(t, store)
}

// TestPendingTimeoutOverflow: a hold with a very long timeout (here the
// largest time.Duration, "practically never") must either be refused or
// stay held: its deadline, timestamp + timeout, must not wrap around to a
// negative number that the very next batch expires.
func TestPendingTimeoutOverflow(t *testing.T) {
	t.Parallel()
	seq, _, mk := setupBadInput(t)
	ctx := context.Background()
	hold := mk(ledger.Transfer{DebitAccountID: biUser, CreditAccountID: biEmpty, Amount: 100, Flags: ledger.Pending,
		Timeout: time.Duration(math.MaxInt64)})
	rs, err := seq.CreateTransfers(ctx, []ledger.Transfer{hold})
	if err != nil {
		t.Fatal(err)
	}
	switch rs[0].Result {
	case ledger.ResultInvalidTimeout, ledger.ResultOverflow:
		return // refused: fine
	case ledger.ResultOK:
	default:
		t.Fatalf("hold with the longest timeout: %s", rs[0].Result)
	}
	// Another batch, a moment later.
	time.Sleep(time.Millisecond)
	other := mk(ledger.Transfer{DebitAccountID: biFunding, CreditAccountID: biEmpty, Amount: 1})
	rs, err = seq.CreateTransfers(ctx, []ledger.Transfer{other})
	wantResults(t, "next batch", rs, err, ledger.ResultOK)
	if a := lookupOne(t, seq.Sequencer, biUser); a.DebitsPending != 100 {
		t.Errorf("the hold with the longest timeout was released at the next batch: %+v", a)
	}
	post := mk(ledger.Transfer{Flags: ledger.PostPending, PendingID: hold.ID})
	rs, err = seq.CreateTransfers(ctx, []ledger.Transfer{post})
	if err != nil || rs[0].Result != ledger.ResultOK {
		t.Errorf("posting the hold: %v %v, want ok", results(rs), err)
	}
}

// TestVerifyTotalsOverflow: two unrelated accounts may each be debited
// close to math.MaxInt64 (the book accepts it: every field fits), so the
// per-asset totals Verify adds up exceed a bigint. Verify must still answer
// with a report, not fail with "bigint out of range" (as sum(...)::bigint
// does).
func TestVerifyTotalsOverflow(t *testing.T) {
	t.Parallel()
	store := openStore(t)
	seq := startSeq(t, store, ledger.SequencerConfig{})
	ctx := context.Background()
	var as []ledger.Account
	for id := ledger.AccountID(1); id <= 4; id++ {
		as = append(as, ledger.Account{ID: id, Asset: ledger.AssetCNY, Code: 1})
	}
	if _, err := seq.CreateAccounts(ctx, as); err != nil {
		t.Fatal(err)
	}
	rs, err := seq.CreateTransfers(ctx, []ledger.Transfer{
		{ID: ledger.NewTransferID(), DebitAccountID: 1, CreditAccountID: 2, Amount: math.MaxInt64 - 1, Asset: ledger.AssetCNY},
		{ID: ledger.NewTransferID(), DebitAccountID: 3, CreditAccountID: 4, Amount: math.MaxInt64 - 1, Asset: ledger.AssetCNY},
	})
	wantResults(t, "two large transfers", rs, err, ledger.ResultOK, ledger.ResultOK)
	// Stopped cleanly, so the stored balances are complete and Verify
	// checks the totals too.
	if err := seq.stop(t); err != nil {
		t.Fatal(err)
	}
	rep, err := store.Verify(ctx, 0)
	if err != nil {
		t.Fatalf("verify of a valid ledger failed: %v", err)
	}
	if !rep.OK() {
		t.Errorf("verify: %+v", rep)
	}
}

// TestJournalAppendOnly: Postgres itself refuses to rewrite history, on the
// journal, on each of its daily partitions, and on the id table.
func TestJournalAppendOnly(t *testing.T) {
	t.Parallel()
	seq, store, mk := setupBadInput(t)
	pool := store.Pool()
	ctx := context.Background()
	hold := mk(ledger.Transfer{DebitAccountID: biUser, CreditAccountID: biEmpty, Amount: 100, Flags: ledger.Pending})
	rs, err := seq.CreateTransfers(ctx, []ledger.Transfer{hold,
		mk(ledger.Transfer{Flags: ledger.PostPending, PendingID: hold.ID, Amount: 60})})
	wantResults(t, "setup", rs, err, ledger.ResultOK, ledger.ResultOK)
	var partition string
	if err := pool.QueryRow(ctx, `SELECT tableoid::regclass::text FROM transfers LIMIT 1`).Scan(&partition); err != nil {
		t.Fatal(err)
	}
	refused := func(t *testing.T, stmts ...string) {
		t.Helper()
		before := countTables(t, pool)
		for _, stmt := range stmts {
			_, err := pool.Exec(ctx, stmt)
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "23001" {
				t.Errorf("%s: got %v, want restrict_violation (23001) from the append-only trigger", stmt, err)
			}
		}
		if after := countTables(t, pool); after != before {
			t.Errorf("history rewritten: rows before %+v, after %+v", before, after)
		}
		mustVerify(t, store)
	}
	t.Run("tables", func(t *testing.T) {
		refused(t,
			`UPDATE transfers SET amount = amount + 1`,
			`UPDATE transfers SET user_data = 'rewritten' WHERE kind = 0`,
			`DELETE FROM transfers`,
			`DELETE FROM transfers WHERE flags & 2 <> 0`,
			`TRUNCATE transfers`,
			`TRUNCATE transfers CASCADE`,
			`UPDATE transfer_ids SET fingerprint = 0`,
			`DELETE FROM transfer_ids`,
			`TRUNCATE transfer_ids`,
			`TRUNCATE transfers, transfer_ids`)
	})
	// Each day of the journal is a table of its own, which can be named
	// directly. Row triggers are cloned onto partitions; a statement-level
	// TRUNCATE trigger is not, so each day needs its own. Last, since a
	// failure here destroys the day.
	t.Run("daily partition", func(t *testing.T) {
		refused(t,
			`UPDATE `+partition+` SET amount = 1`,
			`DELETE FROM `+partition,
			`TRUNCATE `+partition)
	})
}
