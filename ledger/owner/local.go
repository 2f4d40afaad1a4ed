package owner

import (
	"context"

	"github.com/fundplatform/fund/ledger"
)

// Local returns a ledger.Client on whatever sequencer of this process
// serves shard now, for a process that runs the gateway beside the owner
// (the dev stack) and so needs no gRPC hop. It follows the shard across
// epochs (a settlement run may take it and give it back); while this
// process does not serve the shard, calls fail with ledger.ErrNoOwner, as
// the routing client's do when a shard has no live owner.
func (o *Owner) Local(shard int) ledger.Client { return localClient{host: o.host, shard: shard} }

var (
	_ ledger.Client          = localClient{}
	_ ledger.TransferLookup  = localClient{}
	_ ledger.AttachingClient = localClient{}
)

type localClient struct {
	host  *ledger.Host
	shard int
}

func (c localClient) client() (ledger.Client, error) {
	if cl, ok := c.host.Client(c.shard); ok {
		return cl, nil
	}
	return nil, ledger.ErrNoOwner
}

func (c localClient) CreateAccounts(ctx context.Context, as []ledger.Account) ([]ledger.AccountResult, error) {
	cl, err := c.client()
	if err != nil {
		return nil, err
	}
	return cl.CreateAccounts(ctx, as)
}

func (c localClient) CreateTransfers(ctx context.Context, ts []ledger.Transfer) ([]ledger.TransferResult, error) {
	cl, err := c.client()
	if err != nil {
		return nil, err
	}
	return cl.CreateTransfers(ctx, ts)
}

// CreateTransfersAttached implements ledger.AttachingClient: the
// shard's sequencer carries the attachment to its store's writer
// (Config.Attachments).
func (c localClient) CreateTransfersAttached(ctx context.Context, ts []ledger.Transfer, attachment []byte) ([]ledger.TransferResult, bool, error) {
	cl, err := c.client()
	if err != nil {
		return nil, false, err
	}
	return ledger.CreateTransfersAttached(ctx, cl, ts, attachment)
}

func (c localClient) CloseAccounts(ctx context.Context, ids []ledger.AccountID) ([]ledger.AccountResult, error) {
	cl, err := c.client()
	if err != nil {
		return nil, err
	}
	return cl.CloseAccounts(ctx, ids)
}

func (c localClient) LookupAccounts(ctx context.Context, ids []ledger.AccountID) ([]ledger.Account, error) {
	cl, err := c.client()
	if err != nil {
		return nil, err
	}
	return cl.LookupAccounts(ctx, ids)
}

// TransfersCommitted implements ledger.TransferLookup: the accounts
// service asks it how a transfer between shards ended (xshard.Router.Status).
func (c localClient) TransfersCommitted(ctx context.Context, ids []ledger.TransferID) ([]bool, error) {
	seq, ok := c.host.Sequencer(c.shard)
	if !ok {
		return nil, ledger.ErrNoOwner
	}
	return seq.TransfersCommitted(ctx, ids)
}
