package ledger

import "context"

// Client is how other domains move money: the operations of a ledger shard
// (or, with sharding, of a router in front of many). *Sequencer implements
// it. Every method returns an error only when the request as a whole was not
// acknowledged (ErrClosed, ErrCommitFailed, ErrFenced, ErrTooManyEvents,
// ErrEmptyRequest, a context error); a retry with the same ids is then safe.
// Per-element outcomes are in the results.
type Client interface {
	CreateAccounts(ctx context.Context, accounts []Account) ([]AccountResult, error)
	CreateTransfers(ctx context.Context, transfers []Transfer) ([]TransferResult, error)
	CloseAccounts(ctx context.Context, ids []AccountID) ([]AccountResult, error)
	LookupAccounts(ctx context.Context, ids []AccountID) ([]Account, error)
}

var _ Client = (*Sequencer)(nil)

// TransferLookup is implemented by clients that can tell which transfers a
// shard has committed (*Sequencer, the gRPC client's per-shard clients).
// It is apart from Client because only the saga's status query needs it.
type TransferLookup interface {
	// TransfersCommitted reports, for each id in order, whether a transfer
	// with that id is durably committed in the shard's database (ids are
	// unique across shards). A transfer applied in a batch that has not
	// committed yet is not.
	TransfersCommitted(ctx context.Context, ids []TransferID) ([]bool, error)
}

var _ TransferLookup = (*Sequencer)(nil)
