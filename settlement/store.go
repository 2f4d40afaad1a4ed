package settlement

import (
	"context"
	"time"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/ledger"
)

// Store is what the settlement run needs from the databases: its own run
// state, and set-based writes to the ledger shards it owns for the run.
// Implementation: settlement/postgres. Every booking method writes its
// entries, the balances they change and its step marker in one transaction
// fenced by the shard's lease epoch, so a step is done once or not at all,
// and a stale run (whose lease was taken over) writes nothing.
type Store interface {
	// OpenRun records the run for in.Date (or finds it, clearing the
	// failure of its last attempt) and returns its state. The income of an
	// unfinished run may be changed while none of it is booked. Errors,
	// with nothing recorded (each a *Refusal naming the cause):
	// ErrRunConflict (the date was settled with another income, or has
	// booked part of another), ErrOutOfOrder (the date is not the next:
	// an earlier one is unsettled, its run unfinished or failed, or a
	// later one is settled), ErrNoShares (a nonzero fund total while no
	// customer holds shares or has a subscription confirming by the date:
	// nobody to pay it to).
	OpenRun(ctx context.Context, in Input, shards int) (RunState, error)
	// FailRun records why an attempt at date's unfinished run stopped
	// (RunState.Failure), until the next OpenRun of the date.
	FailRun(ctx context.Context, date time.Time, f RunFailure) error
	// Shards returns how many shards the ledger has: one more than the
	// highest shard of any account or lease. A run over another count
	// would look for accounts on the wrong shards, so OpenRun refuses it
	// (ErrShardCount).
	Shards(ctx context.Context) (int, error)
	// TakeShard makes owner the shard's writer with a new fencing epoch,
	// without fencing a live ledger host: a free shard is taken at once;
	// a held one is asked for by a hand-off (the host drains the shard,
	// commits what it took and releases it) and taken as soon as it is
	// released, waiting at most handOff. A holder that did not hand it over
	// by then (frozen, dead, or a writer that answers no hand-offs) is
	// fenced with force (its next commit fails); without force TakeShard
	// fails with ErrShardBusy.
	TakeShard(ctx context.Context, shard int, owner string, ttl, handOff time.Duration, force bool) (Lease, error)
	// RenewShard extends the lease; ledger.ErrFenced when it was lost.
	RenewShard(ctx context.Context, l Lease, ttl time.Duration) error
	// ReleaseShard gives the shard back to the ledger hosts.
	ReleaseShard(ctx context.Context, l Lease) error
	// Prepare brings the shard's stored balances up to its journal (a writer
	// that stopped abruptly leaves some behind), creates the per-shard
	// system accounts, and returns the shard's cut for date: the ledger
	// timestamp up to which its activity belongs to the day (recorded the
	// first time, returned as recorded on a re-run).
	Prepare(ctx context.Context, l Lease, date time.Time) (cut int64, err error)
	// DueOrders lists the subscriptions to confirm and standard redemptions
	// to pay on date (confirm date on or before it, still pending).
	DueOrders(ctx context.Context, date time.Time) ([]DueOrder, error)
	// SettleOrders books the shard's part of the due orders: it posts the
	// pending shares of those whose shares account is on the shard and pays
	// the cash of redemptions whose cash account is. Once per date and
	// shard; a repeat returns the stored result.
	SettleOrders(ctx context.Context, l Lease, date time.Time, orders []DueOrder) (StepResult, error)
	// CompleteOrders marks the due orders completed in the accounts store
	// and records them for the custodian file. Once per date.
	CompleteOrders(ctx context.Context, date time.Time, orders []DueOrder) error
	// Holdings returns the shard's holders (customer shares accounts) with
	// their eligible shares for date (see Runner), ascending by account.
	Holdings(ctx context.Context, shard int, date time.Time, cut int64) ([]Holder, error)
	// FixAllocation records the day's snapshot totals the first time and
	// checks them on a re-run. Errors: ErrSnapshotMismatch.
	FixAllocation(ctx context.Context, date time.Time, a AllocationTotals) error
	// BookIncome writes the shard's income entries and the customers'
	// daily income, once per date and shard. progress is told how many
	// entries were sent so far.
	BookIncome(ctx context.Context, l Lease, date time.Time, b IncomeBook, progress func(int64)) (StepResult, error)
	// Step returns a run step's stored result; done is false when the
	// step has not completed. Shard -1 is for whole-run steps.
	Step(ctx context.Context, date time.Time, shard int, step string) (r StepResult, done bool, err error)
	// MarkStep records a whole-run step done (shard -1).
	MarkStep(ctx context.Context, date time.Time, step string, r StepResult) error
	// Movements returns the confirmed subscriptions and paid redemptions of
	// date per customer, ascending by customer.
	Movements(ctx context.Context, date time.Time) ([]CustomerLine, error)
	// FinishRun records the run completed with its summary.
	FinishRun(ctx context.Context, s Summary) error
	// Run returns a run's state; ok is false when the date was never run.
	Run(ctx context.Context, date time.Time) (st RunState, ok bool, err error)
}

// RunState is a run as stored.
type RunState struct {
	Input     Input
	Shards    int
	StartedAt time.Time // when the date's run was first opened
	Completed bool
	Summary   Summary // when Completed
	// Failure is why the last attempt stopped, while the run is
	// unfinished; nil when none is recorded (it is running, or its
	// process died mid-run).
	Failure *RunFailure
}

// Lease is the settlement run's ownership of one shard.
type Lease struct {
	Shard int
	Owner string
	Epoch int64
	// From is the ledger host the shard was handed off from ("" when it
	// was free, or taken by force).
	From string
}

// DueOrder is a subscription or standard redemption to settle.
type DueOrder struct {
	Customer  accounts.CustomerID
	RequestID string
	Kind      accounts.OrderKind // KindSubscribe or KindStandardRedeem
	Amount    int64
}

// PendingID is the ledger id of the order's pending transfer.
func (o DueOrder) PendingID() ledger.TransferID {
	if o.Kind == accounts.KindSubscribe {
		return OrderTransferID(o.Customer, o.RequestID, 1)
	}
	return OrderTransferID(o.Customer, o.RequestID, 0)
}

// Holder is one customer shares account at the snapshot.
type Holder struct {
	Account ledger.AccountID
	// Eligible shares: posted at the cut, less shares held by standard
	// redemptions made before the date (they stop earning the day after).
	Eligible int64
	// Available is what the account can give up now (posted less held):
	// the most a losing day can deduct from it.
	Available int64
}

// AllocationTotals pin the snapshot a run allocated over.
type AllocationTotals struct {
	Holders      int64
	TotalShares  int64
	FundIncome   int64
	IncomePer10k int64
}

// IncomeBook is one shard's income: entries in ascending account order
// (positive credits new shares, negative deducts) and the part of the
// deductions holders could not bear, which the fund absorbs through the
// rounding account.
type IncomeBook struct {
	Shard    int
	Shards   int
	Entries  []IncomeEntry
	Absorbed int64
}

// IncomeEntry is one holder's income for the day.
type IncomeEntry struct {
	Account ledger.AccountID
	Amount  int64
}

// StepResult is what a step wrote.
type StepResult struct {
	Entries int64 // journal entries
	Amount  int64 // sum of the step's main amounts (minor units)
	Count   int64 // orders or holders handled
	Detail  string
}
