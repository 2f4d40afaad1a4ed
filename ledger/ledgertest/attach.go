package ledgertest

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/fundplatform/fund/ledger"
)

// testAttachments: an attachment is committed with its request's batch and
// only then. A request applied, or refused whole, has its attachment
// written and is told so; a retry after the commit answers as before and
// leaves it written once; an empty attachment is not carried; one too large
// refuses the request; a batch that fails to commit (fenced) writes neither
// its entries nor its attachments; what was written survives a restart.
func testAttachments(t *testing.T, s *shard) {
	if s.cfg.Attachments == nil {
		t.Skip("the store writes no attachments")
	}
	if s.cfg.TakeOver != nil {
		s.epoch = s.cfg.TakeOver(t, s.store, 0)
	}
	seq := s.start(ledger.SequencerConfig{})
	createCustomers(t, seq)

	in := pay(bank, alice, 100, "in")
	attach(t, seq, []byte("order-in"), true, results(ledger.ResultOK), in)
	over := pay(alice, bob, 1000, "over")
	attach(t, seq, []byte("order-over"), true, results(ledger.ResultExceedsCredits), over)
	// The retry's transfer exists: its attachment goes to the writer
	// again (which writes it once), and the caller is told it is written.
	attach(t, seq, []byte("order-in"), true, results(ledger.ResultExists), in)
	attach(t, seq, nil, false, results(ledger.ResultOK), pay(bank, bob, 5, "plain"))

	ctx, cancel := reqCtx()
	defer cancel()
	big := pay(bank, alice, 1, "big")
	if _, _, err := seq.CreateTransfersAttached(ctx, []ledger.Transfer{big}, make([]byte, ledger.AttachmentLenMax+1)); !errors.Is(err, ledger.ErrAttachmentTooLarge) {
		t.Fatalf("attachment of %d bytes: %v, want ErrAttachmentTooLarge", ledger.AttachmentLenMax+1, err)
	}
	checkSums(t, seq, alice, sums{CreditsPosted: 100}, "after the attached requests")
	checkAttached(t, s, "after the attached requests", "order-in", "order-over")

	if s.cfg.TakeOver != nil {
		s.epoch = s.cfg.TakeOver(t, s.store, 0)
		stale := pay(bank, alice, 7, "stale")
		if _, _, err := seq.CreateTransfersAttached(ctx, []ledger.Transfer{stale}, []byte("order-stale")); !errors.Is(err, ledger.ErrFenced) {
			t.Fatalf("attached transfer of the old epoch: %v, want ErrFenced", err)
		}
		if err := seq.stopRun(); !errors.Is(err, ledger.ErrFenced) {
			t.Fatalf("the fenced sequencer's Run returned %v, want ErrFenced", err)
		}
		checkAttached(t, s, "after a fenced batch", "order-in", "order-over")
		seq = s.start(ledger.SequencerConfig{})
		// Neither the refused request nor the fenced one was applied.
		expect(t, seq, results(ledger.ResultOK, ledger.ResultOK), stale, big)
		checkSums(t, seq, alice, sums{CreditsPosted: 108}, "after the takeover")
	} else {
		seq.stop(t)
		seq = s.start(ledger.SequencerConfig{})
	}
	checkAttached(t, s, "after a restart", "order-in", "order-over")
	seq.stop(t)
}

// attach sends one attached request and checks each transfer's result and
// whether the attachment was written.
func attach(t *testing.T, seq *running, data []byte, wantAttached bool, want []ledger.Result, ts ...ledger.Transfer) {
	t.Helper()
	ctx, cancel := reqCtx()
	defer cancel()
	rs, attached, err := seq.CreateTransfersAttached(ctx, ts, data)
	if err != nil {
		t.Fatalf("create transfers with attachment %q: %v", data, err)
	}
	for i, r := range rs {
		if r.Result != want[i] {
			t.Fatalf("transfer %d of %d (%s) with attachment %q: %s, want %s", i+1, len(ts), describe(ts[i]), data, r.Result, want[i])
		}
	}
	if attached != wantAttached {
		t.Fatalf("attachment %q: attached %v, want %v", data, attached, wantAttached)
	}
}

// checkAttached fails the test unless the store holds exactly the
// attachments want, each once.
func checkAttached(t *testing.T, s *shard, when string, want ...string) {
	t.Helper()
	got := s.cfg.Attachments(t, s.store, 0)
	slices.SortFunc(got, bytes.Compare)
	var gotS []string
	for _, g := range got {
		gotS = append(gotS, string(g))
	}
	slices.Sort(want)
	if !slices.Equal(gotS, want) {
		t.Fatalf("%s: the store holds attachments %q, want %q", when, gotS, want)
	}
}

// MemAttachments is Config.Attachments for a MemStore: the data of the
// attachments it committed on the shard, each once.
func MemAttachments(t *testing.T, store ledger.Store, shard int) [][]byte {
	t.Helper()
	ms, ok := store.(*MemStore)
	if !ok {
		t.Fatalf("MemAttachments on a %T", store)
	}
	var out [][]byte
	for _, a := range ms.Attachments(shard) {
		if !slices.ContainsFunc(out, func(d []byte) bool { return bytes.Equal(d, a.Data) }) {
			out = append(out, a.Data)
		}
	}
	return out
}
