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
