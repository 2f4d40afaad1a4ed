package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/postgres"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// Limits every test helper here lives within.
const (
	readyTimeout = 30 * time.Second // load of a small shard
	stopTimeout  = 30 * time.Second // Run returns after its in-flight commit
)

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x5851F42D4C957F2D)) }

// openStore opens a Store on a fresh database of t.
func openStore(t *testing.T) *postgres.Store {
	t.Helper()
	dsn := pgtest.NewDatabase(t)
	return openStoreDSN(t, dsn)
}

func openStoreDSN(t *testing.T, dsn string) *postgres.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	st, err := postgres.Open(ctx, postgres.Config{DSN: dsn, ConnsMax: 4})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(st.Close)
	return st
}

// fakeClock is a sequencer clock the test moves by hand.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock(start time.Time) *fakeClock {
	c := &fakeClock{}
	c.ns.Store(start.UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) UnixNano() int64         { return c.ns.Load() }
func (c *fakeClock) Set(ns int64)            { c.ns.Store(ns) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// runningSeq is a sequencer whose Run goroutine the test owns.
type runningSeq struct {
	*ledger.Sequencer
	cancel context.CancelFunc
	done   chan error
	err    error
	exited bool
}

// startSeq starts a sequencer on store and waits until it serves. The
// sequencer is stopped when the test ends, if the test did not stop it.
func startSeq(t *testing.T, store ledger.Store, cfg ledger.SequencerConfig) *runningSeq {
	t.Helper()
	return startSeqCtx(t, context.Background(), store, cfg)
}

// startSeqCtx is startSeq with a parent context: cancelling it kills the
// sequencer the way a lost process would stop serving.
func startSeqCtx(t *testing.T, parent context.Context, store ledger.Store, cfg ledger.SequencerConfig) *runningSeq {
	t.Helper()
	ctx, cancel := context.WithCancel(parent)
	r := &runningSeq{Sequencer: ledger.NewSequencer(cfg, store, nil), cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- r.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	select {
	case <-r.Ready():
	case err := <-r.done:
		r.exited, r.err = true, err
		t.Fatalf("sequencer stopped before serving: %v", err)
	case <-time.After(readyTimeout):
		t.Fatalf("sequencer not ready after %v", readyTimeout)
	}
	return r
}

// stop cancels Run and waits for it; it returns Run's error. A Run
// stopped while it reloads after a failed commit reports the cancellation
// (elsewhere it returns nil); that is the stop asked for, not a failure.
func (r *runningSeq) stop(t *testing.T) error {
	t.Helper()
	if r.exited {
		return r.err
	}
	r.cancel()
	select {
	case r.err = <-r.done:
	case <-time.After(stopTimeout):
		t.Fatalf("sequencer did not stop within %v", stopTimeout)
	}
	if errors.Is(r.err, context.Canceled) {
		r.err = nil
	}
	r.exited = true
	return r.err
}

// mustVerify runs Store.Verify and fails the test on any finding.
func mustVerify(t *testing.T, store ledger.Store) *ledger.VerifyReport {
	t.Helper()
	rep, err := store.Verify(context.Background(), 0)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if !rep.OK() {
		n := min(len(rep.Differences), 10)
		t.Fatalf("verify: %d differences (first %d: %+v), problems: %q", len(rep.Differences), n, rep.Differences[:n], rep.Problems)
	}
	return rep
}

func uuidsOf(ids []ledger.TransferID) []pgtype.UUID {
	out := make([]pgtype.UUID, len(ids))
	for i, id := range ids {
		out[i] = pgtype.UUID{Bytes: id, Valid: true}
	}
	return out
}

// journalCounts returns how many journal rows each of ids has.
func journalCounts(t *testing.T, pool *pgxpool.Pool, ids []ledger.TransferID) map[ledger.TransferID]int {
	t.Helper()
	got := make(map[ledger.TransferID]int, len(ids))
	rows, err := pool.Query(context.Background(),
		`SELECT id, count(*) FROM transfers WHERE id = ANY($1) GROUP BY id`, uuidsOf(ids))
	if err != nil {
		t.Fatalf("count journal rows: %v", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id pgtype.UUID
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		got[id.Bytes] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("count journal rows: %v", err)
	}
	return got
}

// balances is an account's four running sums.
type balances struct{ DebitsPending, DebitsPosted, CreditsPending, CreditsPosted int64 }

func balancesOf(a ledger.Account) balances {
	return balances{a.DebitsPending, a.DebitsPosted, a.CreditsPending, a.CreditsPosted}
}

// journalBalances recomputes every account's sums from the journal rows,
// in Go, independently of Store.Verify: a plain or post entry moves amount
// into the posted sums, a pending entry into the pending sums, and a post or
// void (including the ledger's own expiry voids) releases pending_amount.
func journalBalances(t *testing.T, pool *pgxpool.Pool) map[ledger.AccountID]balances {
	t.Helper()
	rows, err := pool.Query(context.Background(),
		`SELECT debit_account_id, credit_account_id, amount, pending_amount, flags FROM transfers`)
	if err != nil {
		t.Fatalf("read journal: %v", err)
	}
	defer rows.Close()
	out := map[ledger.AccountID]balances{}
	for rows.Next() {
		var dr, cr ledger.AccountID
		var amount, pendingAmount int64
		var flags ledger.TransferFlags
		if err := rows.Scan(&dr, &cr, &amount, &pendingAmount, &flags); err != nil {
			t.Fatal(err)
		}
		d, c := out[dr], out[cr]
		switch {
		case flags&ledger.Pending != 0:
			d.DebitsPending += amount
			c.CreditsPending += amount
		case flags&ledger.PostPending != 0:
			d.DebitsPending -= pendingAmount
			c.CreditsPending -= pendingAmount
			d.DebitsPosted += amount
			c.CreditsPosted += amount
		case flags&ledger.VoidPending != 0:
			d.DebitsPending -= pendingAmount
			c.CreditsPending -= pendingAmount
		default:
			d.DebitsPosted += amount
			c.CreditsPosted += amount
		}
		out[dr], out[cr] = d, c
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read journal: %v", err)
	}
	return out
}

// storedAccounts reads every account row.
func storedAccounts(t *testing.T, pool *pgxpool.Pool) map[ledger.AccountID]ledger.Account {
	t.Helper()
	rows, err := pool.Query(context.Background(), `
		SELECT id, asset, code, flags, closed, debits_pending, debits_posted, credits_pending, credits_posted
		FROM accounts`)
	if err != nil {
		t.Fatalf("read accounts: %v", err)
	}
	defer rows.Close()
	out := map[ledger.AccountID]ledger.Account{}
	for rows.Next() {
		var a ledger.Account
		if err := rows.Scan(&a.ID, &a.Asset, &a.Code, &a.Flags, &a.Closed,
			&a.DebitsPending, &a.DebitsPosted, &a.CreditsPending, &a.CreditsPosted); err != nil {
			t.Fatal(err)
		}
		out[a.ID] = a
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read accounts: %v", err)
	}
	return out
}

// checkBalancesMatchJournal checks that the balances the sequencer serves
// are what the journal adds up to, for every account: pass a sequencer that
// was just started, so that it loaded its state from Postgres. (How the
// store keeps balances, written each batch or checkpointed and replayed, is
// its own business; Store.Verify checks the stored side.)
func checkBalancesMatchJournal(t *testing.T, pool *pgxpool.Pool, seq *ledger.Sequencer) {
	t.Helper()
	journal := journalBalances(t, pool)
	stored := storedAccounts(t, pool)
	ids := make([]ledger.AccountID, 0, len(stored))
	for id := range stored {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for id, b := range journal {
		if _, ok := stored[id]; !ok {
			t.Errorf("journal names account %d (%+v), which does not exist", id, b)
		}
	}
	if len(ids) == 0 {
		return
	}
	served, err := seq.LookupAccounts(context.Background(), ids)
	if err != nil {
		t.Fatalf("lookup accounts: %v", err)
	}
	if len(served) != len(ids) {
		t.Fatalf("lookup: %d accounts served, %d stored", len(served), len(ids))
	}
	for i, a := range served {
		if a.ID != ids[i] || balancesOf(a) != journal[a.ID] {
			t.Errorf("account %d: served %+v, journal %+v", ids[i], balancesOf(a), journal[a.ID])
		}
	}
}

// tableCounts counts the rows of the ledger's tables.
type tableCounts struct{ Transfers, TransferIDs, Pending, Accounts int64 }

func countTables(t *testing.T, pool *pgxpool.Pool) tableCounts {
	t.Helper()
	var c tableCounts
	if err := pool.QueryRow(context.Background(), `
		SELECT (SELECT count(*) FROM transfers), (SELECT count(*) FROM transfer_ids),
			(SELECT count(*) FROM pending_transfers), (SELECT count(*) FROM accounts)`).
		Scan(&c.Transfers, &c.TransferIDs, &c.Pending, &c.Accounts); err != nil {
		t.Fatalf("count rows: %v", err)
	}
	return c
}

// describe formats a transfer compactly for failure messages.
func describe(tr ledger.Transfer) string {
	return fmt.Sprintf("{id %s %d->%d amt %d asset %d flags %#x pid %s timeout %v ud %dB}",
		tr.ID.String()[:8], tr.DebitAccountID, tr.CreditAccountID, tr.Amount, tr.Asset, tr.Flags,
		tr.PendingID.String()[:8], tr.Timeout, len(tr.UserData))
}

// isNotAcknowledged reports whether err is one of the errors a request
// gets when it was not acknowledged.
func isNotAcknowledged(err error) bool {
	return errors.Is(err, ledger.ErrClosed) || errors.Is(err, ledger.ErrCommitFailed)
}
