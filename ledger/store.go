package ledger

import (
	"context"
	"time"
)

// Store persists shards. Exactly one sequencer writes a shard at a time;
// the store trusts that (and, with leases, enforces it through the epoch).
type Store interface {
	// Load returns a shard's accounts with their current balances (the last
	// checkpoint plus the journal entries after it), its open pending
	// transfers and the newest timestamp it holds.
	Load(ctx context.Context, shard int) (*Snapshot, error)
	// Lookup returns what the store holds about transfer ids (their
	// fingerprints) and pending transfers (their state), for ids the
	// sequencer no longer keeps in memory. Unknown ids are left out.
	Lookup(ctx context.Context, shard int, ids, pendingIDs []TransferID) (*Known, error)
	// Commit writes a batch atomically and durably. It returns ErrFenced
	// when the batch's epoch is no longer the shard's current one.
	Commit(ctx context.Context, b *Batch) error
	// Verify recomputes every balance of a shard from its journal and
	// reports each difference.
	Verify(ctx context.Context, shard int) (*VerifyReport, error)
}

// Snapshot is a shard's state as loaded from the store.
type Snapshot struct {
	Accounts []Account
	// Unsaved lists the accounts whose balances include journal entries
	// after CheckpointTS that are not yet in their stored balances.
	Unsaved       []AccountID
	CheckpointTS  int64
	Pending       []PendingTransfer // open ones
	LastTimestamp int64
}

// Known is the answer to a Store.Lookup.
type Known struct {
	Fingerprints map[TransferID]int64
	Pending      []PendingTransfer
}

// Batch is everything one sequencer batch changed, written in one
// transaction.
type Batch struct {
	Shard int
	Epoch int64 // fencing token of the writer; 0 when the store has no leases

	NewAccounts     []Account         // created (with zero balances; entries are replayed on top)
	Closed          []AccountID       // accounts closed by this batch
	Accounts        []Account         // balances flushed by this batch, as of its LastTimestamp
	CheckpointTS    int64             // every entry up to this timestamp is in the stored balances
	Transfers       []Transfer        // journal entries, in timestamp order
	Fingerprints    []int64           // per entry: the fingerprint of the request that made it, for idempotency
	PendingNew      []PendingTransfer // pending transfers created (with their state at the end of the batch)
	PendingResolved []PendingTransfer // existing pending transfers posted, voided or expired
	LastTimestamp   int64
	// Attached are the attachments of the batch's requests (attach.go),
	// for the store's attachment writer; only for a store that writes
	// them (AttachmentStore). A batch with attachments is committed even
	// if it changes nothing else: a request refused whole still has its
	// attachment written (a rejected order's row).
	Attached []Attached
}

// Empty reports whether the batch writes nothing.
func (b *Batch) Empty() bool {
	return len(b.NewAccounts) == 0 && len(b.Accounts) == 0 && len(b.Transfers) == 0 && len(b.Closed) == 0 &&
		len(b.PendingNew) == 0 && len(b.PendingResolved) == 0 && len(b.Attached) == 0
}

// VerifyReport is the result of recomputing a shard from its journal.
type VerifyReport struct {
	Shard        int
	Accounts     int
	Transfers    int64
	Differences  []BalanceDifference
	Problems     []string        // other broken invariants, one sentence each
	TotalDebits  map[Asset]int64 // posted, per asset; -1 when beyond int64
	TotalCredits map[Asset]int64
	// CheckpointLag is how far the oldest stored balance trails the newest
	// entry; zero once the shard stopped cleanly.
	CheckpointLag time.Duration
	Took          time.Duration
}

// OK reports whether nothing was found wrong.
func (r *VerifyReport) OK() bool { return len(r.Differences) == 0 && len(r.Problems) == 0 }

// BalanceDifference is an account whose stored balances disagree with its
// journal.
type BalanceDifference struct {
	AccountID AccountID
	Stored    Account
	Journal   Account
}
