package ledgertest

import (
	"context"
	"fmt"
	"math"
	"sync"

	"github.com/fundplatform/fund/ledger"
)

// MemStore is an in-memory ledger.Store for tests. It keeps each shard's
// journal and rebuilds balances from it on every Load, so it does not
// depend on how batches carry balances (their flushed Accounts and
// CheckpointTS are not needed to restart correctly). Like ledger/postgres it
// refuses a batch that would record a transfer id twice or create an
// account twice, writing nothing of it.
//
// Fencing follows the fencing-token rule: a shard's epoch is the newest one
// that TakeOver handed out or a committed batch carried, and a batch with an
// older epoch fails with ledger.ErrFenced. A store nobody took over accepts
// epoch 0, as a fresh Postgres store does.
//
// It is safe for concurrent use and never forgets anything: tests only.
type MemStore struct {
	mu     sync.Mutex
	shards map[int]*memShard
	// fps holds every recorded transfer id of every shard: ids are global,
	// as in ledger/postgres's transfer_ids.
	fps map[ledger.TransferID]int64
}

// memShard is one shard's part of a MemStore.
type memShard struct {
	epoch    int64
	accounts map[ledger.AccountID]ledger.Account // asset, code, flags, closed; balances come from the journal
	order    []ledger.AccountID                  // creation order, so Load answers the same way every time
	pending  map[ledger.TransferID]ledger.PendingTransfer
	journal  []ledger.Transfer
	lastTS   int64
	attached []ledger.Attached // every attachment committed, in commit order
}

// NewMemStore returns an empty store.
func NewMemStore() *MemStore {
	return &MemStore{shards: map[int]*memShard{}, fps: map[ledger.TransferID]int64{}}
}

var (
	_ ledger.Store           = (*MemStore)(nil)
	_ ledger.AttachmentStore = (*MemStore)(nil)
)

// WritesAttachments implements ledger.AttachmentStore: a MemStore keeps
// every batch's attachments, with the batch, in memory (Attachments).
func (s *MemStore) WritesAttachments(int) bool { return true }

// Attachments returns the attachments committed on a shard, in commit
// order: one per request that carried one, retries included.
func (s *MemStore) Attachments(shard int) []ledger.Attached {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ledger.Attached(nil), s.shard(shard).attached...)
}

// shard returns a shard's state, creating it empty; callers hold s.mu.
func (s *MemStore) shard(n int) *memShard {
	sh := s.shards[n]
	if sh == nil {
		sh = &memShard{accounts: map[ledger.AccountID]ledger.Account{}, pending: map[ledger.TransferID]ledger.PendingTransfer{}}
		s.shards[n] = sh
	}
	return sh
}

// TakeOver gives the shard a new epoch, as a new owner's lease does, and
// returns it: from then on batches of older epochs are fenced.
func (s *MemStore) TakeOver(shard int) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	sh := s.shard(shard)
	sh.epoch++
	return sh.epoch
}

// Load implements ledger.Store.
func (s *MemStore) Load(ctx context.Context, shard int) (*ledger.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sh := s.shard(shard)
	bal := journalBalances(sh.journal)
	// Every entry is in the balances handed out: nothing to replay.
	snap := &ledger.Snapshot{LastTimestamp: sh.lastTS, CheckpointTS: sh.lastTS}
	for _, id := range sh.order {
		a := sh.accounts[id]
		if b, ok := bal[id]; ok {
			a.DebitsPending, a.DebitsPosted, a.CreditsPending, a.CreditsPosted =
				b.DebitsPending, b.DebitsPosted, b.CreditsPending, b.CreditsPosted
		}
		snap.Accounts = append(snap.Accounts, a)
	}
	for _, p := range sh.pending {
		if p.State == ledger.PendingOpen {
			snap.Pending = append(snap.Pending, p)
		}
	}
	return snap, nil
}

// Lookup implements ledger.Store.
func (s *MemStore) Lookup(ctx context.Context, shard int, ids, pendingIDs []ledger.TransferID) (*ledger.Known, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sh := s.shard(shard)
	k := &ledger.Known{Fingerprints: map[ledger.TransferID]int64{}}
	for _, id := range ids {
		if fp, ok := s.fps[id]; ok {
			k.Fingerprints[id] = fp
		}
	}
	for _, id := range pendingIDs {
		if p, ok := sh.pending[id]; ok {
			k.Pending = append(k.Pending, p)
		}
	}
	return k, nil
}

// Commit implements ledger.Store: the whole batch or, on any error, none
// of it.
func (s *MemStore) Commit(ctx context.Context, b *ledger.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sh := s.shard(b.Shard)
	if b.Epoch < sh.epoch {
		return fmt.Errorf("shard %d epoch %d (current %d): %w", b.Shard, b.Epoch, sh.epoch, ledger.ErrFenced)
	}
	if err := s.refuse(sh, b); err != nil {
		return err
	}
	sh.epoch = b.Epoch
	for _, a := range b.NewAccounts {
		sh.accounts[a.ID] = ledger.Account{ID: a.ID, Asset: a.Asset, Code: a.Code, Flags: a.Flags, Closed: a.Closed, Timestamp: a.Timestamp}
		sh.order = append(sh.order, a.ID)
	}
	for _, id := range b.Closed {
		a := sh.accounts[id]
		a.Closed = true
		sh.accounts[id] = a
	}
	for _, a := range b.Accounts {
		if old, ok := sh.accounts[a.ID]; ok && a.Closed {
			old.Closed = true
			sh.accounts[a.ID] = old
		}
	}
	for i, t := range b.Transfers {
		sh.journal = append(sh.journal, t)
		s.fps[t.ID] = b.Fingerprints[i]
	}
	for _, p := range b.PendingNew {
		sh.pending[p.ID] = p
	}
	for _, p := range b.PendingResolved {
		sh.pending[p.ID] = p
	}
	for _, a := range b.Attached {
		// Copies: the store keeps what was committed, whatever the caller
		// does with its slices afterwards.
		sh.attached = append(sh.attached, ledger.Attached{Data: append([]byte(nil), a.Data...),
			Transfers: append([]ledger.Transfer(nil), a.Transfers...), Results: append([]ledger.TransferResult(nil), a.Results...)})
	}
	sh.lastTS = max(sh.lastTS, b.LastTimestamp)
	return nil
}

// refuse reports what makes a batch unwritable, as the constraints of
// ledger/postgres would; callers hold s.mu.
func (s *MemStore) refuse(sh *memShard, b *ledger.Batch) error {
	if len(b.Fingerprints) != len(b.Transfers) {
		return fmt.Errorf("%w: %d transfers but %d fingerprints", ledger.ErrInvariantBroke, len(b.Transfers), len(b.Fingerprints))
	}
	seen := map[ledger.TransferID]bool{}
	for _, t := range b.Transfers {
		if _, dup := s.fps[t.ID]; dup || seen[t.ID] {
			return fmt.Errorf("%w: transfer id %s written twice", ledger.ErrInvariantBroke, t.ID)
		}
		seen[t.ID] = true
	}
	created := map[ledger.AccountID]bool{}
	for _, a := range b.NewAccounts {
		if _, dup := sh.accounts[a.ID]; dup || created[a.ID] {
			return fmt.Errorf("%w: account %d created twice", ledger.ErrInvariantBroke, a.ID)
		}
		created[a.ID] = true
	}
	for _, id := range b.Closed {
		if _, ok := sh.accounts[id]; !ok && !created[id] {
			return fmt.Errorf("%w: closing account %d, which does not exist", ledger.ErrInvariantBroke, id)
		}
	}
	return nil
}

// Verify implements ledger.Store. With balances rebuilt from the journal
// there are no stored balances to differ; it checks what the journal alone
// must satisfy: every entry is well-formed and names accounts of the shard
// and of its asset, no limited account ends beyond its limit, each asset's
// debits equal its credits, and every account's pending debits are its open
// holds.
func (s *MemStore) Verify(ctx context.Context, shard int) (*ledger.VerifyReport, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sh := s.shard(shard)
	rep := &ledger.VerifyReport{Shard: shard, Accounts: len(sh.accounts), Transfers: int64(len(sh.journal)),
		TotalDebits: map[ledger.Asset]int64{}, TotalCredits: map[ledger.Asset]int64{}}
	problem := func(format string, args ...any) { rep.Problems = append(rep.Problems, fmt.Sprintf(format, args...)) }
	for _, t := range sh.journal {
		dr, okd := sh.accounts[t.DebitAccountID]
		cr, okc := sh.accounts[t.CreditAccountID]
		if !okd || !okc || t.DebitAccountID == t.CreditAccountID || t.Amount <= 0 || dr.Asset != t.Asset || cr.Asset != t.Asset {
			problem("malformed entry %+v", t)
		}
	}
	held := map[ledger.AccountID]int64{}
	for _, p := range sh.pending {
		if p.State == ledger.PendingOpen {
			held[p.DebitAccountID] += p.Amount
		}
	}
	pendingDebits, pendingCredits := map[ledger.Asset]int64{}, map[ledger.Asset]int64{}
	bal := journalBalances(sh.journal)
	for _, id := range sh.order {
		a, b := sh.accounts[id], bal[id]
		switch {
		case a.Flags&ledger.DebitsMustNotExceedCredits != 0 && b.DebitsPosted+b.DebitsPending > b.CreditsPosted:
			problem("account %d below zero available: %+v", id, b)
		case a.Flags&ledger.CreditsMustNotExceedDebits != 0 && b.CreditsPosted+b.CreditsPending > b.DebitsPosted:
			problem("account %d credits beyond debits: %+v", id, b)
		}
		if b.DebitsPending != held[id] {
			problem("account %d: pending debits %d, open holds %d", id, b.DebitsPending, held[id])
		}
		rep.TotalDebits[a.Asset] = addOrMinusOne(rep.TotalDebits[a.Asset], b.DebitsPosted)
		rep.TotalCredits[a.Asset] = addOrMinusOne(rep.TotalCredits[a.Asset], b.CreditsPosted)
		pendingDebits[a.Asset] = addOrMinusOne(pendingDebits[a.Asset], b.DebitsPending)
		pendingCredits[a.Asset] = addOrMinusOne(pendingCredits[a.Asset], b.CreditsPending)
	}
	for asset, d := range rep.TotalDebits {
		if c := rep.TotalCredits[asset]; d != c {
			problem("%s: posted debits %d != posted credits %d", asset, d, c)
		}
		if pendingDebits[asset] != pendingCredits[asset] {
			problem("%s: pending debits != pending credits", asset)
		}
	}
	return rep, nil
}

// addOrMinusOne adds two non-negative sums, or returns -1 (as
// VerifyReport's totals say) once the sum, or either of them, is beyond
// int64.
func addOrMinusOne(a, b int64) int64 {
	if a < 0 || b < 0 || a > math.MaxInt64-b {
		return -1
	}
	return a + b
}

// journalBalances replays a journal: plain and post entries move amount into
// the posted sums, pending entries into the pending sums, post and void
// entries (the ledger's expiry voids too) release pending_amount.
func journalBalances(journal []ledger.Transfer) map[ledger.AccountID]ledger.Account {
	out := map[ledger.AccountID]ledger.Account{}
	for _, t := range journal {
		dr, cr := out[t.DebitAccountID], out[t.CreditAccountID]
		switch {
		case t.Flags&ledger.Pending != 0:
			dr.DebitsPending += t.Amount
			cr.CreditsPending += t.Amount
		case t.Flags&(ledger.PostPending|ledger.VoidPending) != 0:
			dr.DebitsPending -= t.PendingAmount
			cr.CreditsPending -= t.PendingAmount
			if t.Flags&ledger.PostPending != 0 {
				dr.DebitsPosted += t.Amount
				cr.CreditsPosted += t.Amount
			}
		default:
			dr.DebitsPosted += t.Amount
			cr.CreditsPosted += t.Amount
		}
		dr.ID, cr.ID = t.DebitAccountID, t.CreditAccountID
		out[t.DebitAccountID], out[t.CreditAccountID] = dr, cr
	}
	return out
}
