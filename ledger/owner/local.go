package owner

import (
	"context"
	"errors"
	"time"

	"github.com/fundplatform/fund/ledger"
)

// Local returns a ledger.Client on whatever sequencer of this process
// serves shard now, for a process that runs the gateway beside the owner
// (the dev stack) and so needs no gRPC hop. It follows the shard across
// epochs: a settlement step borrows the shard by hand-off and gives it
// back within moments, and a call that finds the shard away (or its
// sequencer stopping for the hand-off, which answers "not acknowledged")
// is tried again, backed off, as the routing client does, until the
// shard is back, the caller's context ends or localRetryMax passed; then
// it fails with ledger.ErrNoOwner (or the last error). Once the owner
// stopped, calls fail at once.
func (o *Owner) Local(shard int) ledger.Client {
	return localClient{host: o.host, shard: shard, stopped: o.done}
}

var (
	_ ledger.Client          = localClient{}
	_ ledger.TransferLookup  = localClient{}
	_ ledger.AttachingClient = localClient{}
)

type localClient struct {
	host    *ledger.Host
	shard   int
	stopped <-chan struct{} // the owner stopped: the shard will not come back here
}

// Bounds of a local call's retries while its shard is away.
const (
	localRetryMax      = 10 * time.Second
	localBackoffFirst  = 5 * time.Millisecond
	localBackoffLatest = 200 * time.Millisecond
)

// do runs op on the shard's sequencer, again while the shard is away or
// its sequencer stopped without acknowledging the request (every id the
// request carries makes that safe: see ledger.Client).
func do[T any](ctx context.Context, c localClient, op func(ledger.Client) (T, error)) (T, error) {
	deadline := time.Now().Add(localRetryMax)
	backoff := localBackoffFirst
	for {
		var (
			out T
			err = ledger.ErrNoOwner
		)
		if cl, ok := c.host.Client(c.shard); ok {
			if out, err = op(cl); err == nil || !shardAway(err) {
				return out, err
			}
		}
		if ctx.Err() != nil || time.Now().Add(backoff).After(deadline) {
			return out, err
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return out, err
		case <-c.stopped:
			t.Stop()
			return out, err
		case <-t.C:
		}
		backoff = min(2*backoff, localBackoffLatest)
	}
}

// shardAway reports an error that says the shard's writer was not there
// to acknowledge the request, not anything about the request.
func shardAway(err error) bool {
	return errors.Is(err, ledger.ErrNoOwner) || errors.Is(err, ledger.ErrClosed) ||
		errors.Is(err, ledger.ErrFenced) || errors.Is(err, ledger.ErrCommitFailed)
}

func (c localClient) CreateAccounts(ctx context.Context, as []ledger.Account) ([]ledger.AccountResult, error) {
	return do(ctx, c, func(cl ledger.Client) ([]ledger.AccountResult, error) { return cl.CreateAccounts(ctx, as) })
}

func (c localClient) CreateTransfers(ctx context.Context, ts []ledger.Transfer) ([]ledger.TransferResult, error) {
	return do(ctx, c, func(cl ledger.Client) ([]ledger.TransferResult, error) { return cl.CreateTransfers(ctx, ts) })
}

// CreateTransfersAttached implements ledger.AttachingClient: the
// shard's sequencer carries the attachment to its store's writer
// (Config.Attachments).
func (c localClient) CreateTransfersAttached(ctx context.Context, ts []ledger.Transfer, attachment []byte) ([]ledger.TransferResult, bool, error) {
	type answer struct {
		rs       []ledger.TransferResult
		attached bool
	}
	a, err := do(ctx, c, func(cl ledger.Client) (answer, error) {
		rs, attached, err := ledger.CreateTransfersAttached(ctx, cl, ts, attachment)
		return answer{rs, attached}, err
	})
	return a.rs, a.attached, err
}

func (c localClient) CloseAccounts(ctx context.Context, ids []ledger.AccountID) ([]ledger.AccountResult, error) {
	return do(ctx, c, func(cl ledger.Client) ([]ledger.AccountResult, error) { return cl.CloseAccounts(ctx, ids) })
}

func (c localClient) LookupAccounts(ctx context.Context, ids []ledger.AccountID) ([]ledger.Account, error) {
	return do(ctx, c, func(cl ledger.Client) ([]ledger.Account, error) { return cl.LookupAccounts(ctx, ids) })
}

// TransfersCommitted implements ledger.TransferLookup: the accounts
// service asks it how a transfer between shards ended (xshard.Router.Status).
func (c localClient) TransfersCommitted(ctx context.Context, ids []ledger.TransferID) ([]bool, error) {
	return do(ctx, c, func(cl ledger.Client) ([]bool, error) {
		seq, ok := cl.(ledger.TransferLookup)
		if !ok {
			return nil, ledger.ErrNoOwner
		}
		return seq.TransfersCommitted(ctx, ids)
	})
}
