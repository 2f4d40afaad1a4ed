package ledgertest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/fundplatform/fund/ledger"
)

// Config names the store under test and what it offers beyond
// ledger.Store.
type Config struct {
	// NewStore returns an empty store that only t uses (one fresh database
	// per test, for a database); it closes it when t ends.
	NewStore func(t *testing.T) ledger.Store
	// TakeOver gives a shard a new epoch, as a new owner's lease does, and
	// returns it: from then on a batch of an older epoch must fail with
	// ledger.ErrFenced. nil when the store has no epochs: the fencing test
	// is skipped.
	TakeOver func(t *testing.T, store ledger.Store, shard int) int64
	// Check, when set, runs the implementation's own checks at the end of
	// every test, with a sequencer just started over the store (so it has
	// loaded its state from it), after Verify found nothing wrong.
	Check func(t *testing.T, store ledger.Store, seq *ledger.Sequencer)
	// Attachments returns what the store's attachment writer committed on
	// a shard: the data of each attachment, each once however often its
	// request was retried. nil when the store writes no attachments: the
	// attachment test is skipped.
	Attachments func(t *testing.T, store ledger.Store, shard int) [][]byte
}

// Limits every wait of the suite lives within.
const (
	readyTimeout   = 30 * time.Second // a small shard loads
	requestTimeout = 30 * time.Second // a request is answered, commit included
)

// Run runs the contract suite against cfg's store, each test in parallel
// on a store of its own.
func Run(t *testing.T, cfg Config) {
	t.Helper()
	if cfg.NewStore == nil {
		t.Fatal("ledgertest.Config.NewStore is nil")
	}
	tests := []struct {
		name string
		run  func(*testing.T, *shard)
	}{
		{"Model", testModel},
		{"Idempotency", testIdempotency},
		{"Restart", testRestart},
		{"Fencing", testFencing},
		{"Attachments", testAttachments},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sh := newShard(t, cfg)
			tc.run(t, sh)
			sh.finish()
		})
	}
	t.Run("DoubleSpend", func(t *testing.T) {
		t.Parallel()
		testDoubleSpend(t, cfg)
	})
}

// shard is shard 0 of one store under test and the epoch its sequencers
// write with.
type shard struct {
	t     *testing.T
	cfg   Config
	store ledger.Store
	epoch int64
}

func newShard(t *testing.T, cfg Config) *shard {
	return &shard{t: t, cfg: cfg, store: cfg.NewStore(t)}
}

// running is a sequencer the test started, and how to stop it.
type running struct {
	*ledger.Sequencer
	stopRun func() error
}

// start starts a sequencer over the store at the shard's epoch; it is
// stopped when the test ends, if the test did not stop it.
func (s *shard) start(cfg ledger.SequencerConfig) *running {
	s.t.Helper()
	cfg.Epoch = s.epoch
	seq := ledger.NewSequencer(cfg, s.store, nil)
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	stop, err := seq.Start(ctx, readyTimeout)
	if err != nil {
		s.t.Fatalf("start sequencer: %v", err)
	}
	r := &running{Sequencer: seq, stopRun: stop}
	s.t.Cleanup(func() { _ = stop() })
	return r
}

// stop stops the sequencer and waits for it; a clean stop is no error.
func (r *running) stop(t *testing.T) {
	t.Helper()
	if err := r.stopRun(); err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("sequencer stopped with %v", err)
	}
}

// finish checks the store after a test: Verify finds nothing wrong, and
// the implementation's own checks pass on a sequencer that loads it anew.
func (s *shard) finish() {
	s.t.Helper()
	if s.t.Failed() {
		return
	}
	s.verify()
	if s.cfg.Check != nil {
		seq := s.start(ledger.SequencerConfig{})
		s.cfg.Check(s.t, s.store, seq.Sequencer)
		seq.stop(s.t)
	}
}

// verify runs Store.Verify and fails the test on any finding.
func (s *shard) verify() *ledger.VerifyReport {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	rep, err := s.store.Verify(ctx, 0)
	if err != nil {
		s.t.Fatalf("verify: %v", err)
	}
	if !rep.OK() {
		n := min(len(rep.Differences), 10)
		s.t.Fatalf("verify: %d differences (first %d: %+v), problems: %q", len(rep.Differences), n, rep.Differences[:n], rep.Problems)
	}
	return rep
}

func reqCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), requestTimeout)
}

// createAccounts creates accounts; each must be new.
func createAccounts(t *testing.T, seq *running, as ...ledger.Account) {
	t.Helper()
	ctx, cancel := reqCtx()
	defer cancel()
	rs, err := seq.CreateAccounts(ctx, as)
	if err != nil {
		t.Fatalf("create accounts: %v", err)
	}
	for i, r := range rs {
		if r.Result != ledger.ResultOK {
			t.Fatalf("create account %d: %s", as[i].ID, r.Result)
		}
	}
}

// transfers sends one request and returns its results; the request itself
// must be answered.
func transfers(t *testing.T, seq *running, ts ...ledger.Transfer) []ledger.TransferResult {
	t.Helper()
	ctx, cancel := reqCtx()
	defer cancel()
	rs, err := seq.CreateTransfers(ctx, ts)
	if err != nil {
		t.Fatalf("create transfers: %v", err)
	}
	if len(rs) != len(ts) {
		t.Fatalf("%d results for %d transfers", len(rs), len(ts))
	}
	return rs
}

// expect sends one request and checks each transfer's result.
func expect(t *testing.T, seq *running, want []ledger.Result, ts ...ledger.Transfer) {
	t.Helper()
	rs := transfers(t, seq, ts...)
	for i, r := range rs {
		if r.Result != want[i] {
			t.Fatalf("transfer %d of %d (%s): %s, want %s", i+1, len(ts), describe(ts[i]), r.Result, want[i])
		}
	}
}

// results is a shorthand for expect's want.
func results(rs ...ledger.Result) []ledger.Result { return rs }

// lookup returns the accounts, in the order asked; each must exist.
func lookup(t *testing.T, seq *running, ids ...ledger.AccountID) []ledger.Account {
	t.Helper()
	ctx, cancel := reqCtx()
	defer cancel()
	as, err := seq.LookupAccounts(ctx, ids)
	if err != nil {
		t.Fatalf("lookup accounts: %v", err)
	}
	if len(as) != len(ids) {
		t.Fatalf("lookup of %d accounts found %d", len(ids), len(as))
	}
	for i, a := range as {
		if a.ID != ids[i] {
			t.Fatalf("lookup answered account %d for %d", a.ID, ids[i])
		}
	}
	return as
}

// sums is an account's four running sums, comparable at once.
type sums struct{ DebitsPending, DebitsPosted, CreditsPending, CreditsPosted int64 }

func sumsOf(a ledger.Account) sums {
	return sums{a.DebitsPending, a.DebitsPosted, a.CreditsPending, a.CreditsPosted}
}

// describe formats a transfer compactly for failure messages.
func describe(t ledger.Transfer) string {
	return fmt.Sprintf("{id %s %d->%d amount %d asset %s flags %#x pending %s user data %q}",
		t.ID.String()[:8], t.DebitAccountID, t.CreditAccountID, t.Amount, t.Asset, t.Flags, t.PendingID.String()[:8], t.UserData)
}
