package ledgertest

import (
	"context"
	"fmt"

	"github.com/fundplatform/fund/ledger"
)

// Routes is a ledger.Client in front of a sharded ledger, for tests that
// need the routing of the gateway's sharded client (or ledger/grpc's)
// without a network: each call goes to the client of the one shard its
// accounts live on (ledger.ShardOfTransfers, ledger.ShardOfAccounts), and a
// request naming accounts of two shards is refused with ledger.ErrCrossShard
// before any shard sees it. LookupAccounts alone may span shards (those
// clients refuse that too): it asks each shard for its ids and answers in
// the order asked, so that a test can read accounts of several shards in
// one call.
//
// It carries attachments (ledger.AttachingClient) and answers
// TransfersCommitted (ledger.TransferLookup) through the shards' clients
// when they can: a shard client that cannot carry attachments makes the
// request a plain one (attached false), as ledger.CreateTransfersAttached
// does. To test a caller against a ledger without attachments, hide them
// in the shard clients: func(s int) ledger.Client { return
// struct{ ledger.Client }{seqs[s]} }.
//
// The shard's client is asked for on every call, so a test may move a
// shard to a new sequencer (or host) between calls; a nil client means no
// one serves the shard now (ledger.ErrNoOwner). Retrying while a shard
// moves is the shard client's business, not the router's.
type Routes struct {
	shards int
	client func(shard int) ledger.Client
}

var (
	_ ledger.Client          = (*Routes)(nil)
	_ ledger.AttachingClient = (*Routes)(nil)
	_ ledger.TransferLookup  = (*Routes)(nil)
)

// NewRoutes returns the routing client over shards logical shards (0 = 1)
// whose clients client returns; client must be safe for concurrent use.
func NewRoutes(shards int, client func(shard int) ledger.Client) *Routes {
	return &Routes{shards: max(shards, 1), client: client}
}

// on returns the client of shard, or ledger.ErrNoOwner when there is none.
func (r *Routes) on(shard int) (ledger.Client, error) {
	c := r.client(shard)
	if c == nil {
		return nil, fmt.Errorf("shard %d: %w", shard, ledger.ErrNoOwner)
	}
	return c, nil
}

// ofTransfers returns the client of the one shard ts touch.
func (r *Routes) ofTransfers(ts []ledger.Transfer) (ledger.Client, error) {
	s, err := ledger.ShardOfTransfers(ts, r.shards)
	if err != nil {
		return nil, err
	}
	return r.on(s)
}

// ofAccounts returns the client of the one shard ids live on.
func (r *Routes) ofAccounts(ids []ledger.AccountID) (ledger.Client, error) {
	s, err := ledger.ShardOfAccounts(ids, r.shards)
	if err != nil {
		return nil, err
	}
	return r.on(s)
}

// CreateAccounts implements ledger.Client: all accounts on one shard.
func (r *Routes) CreateAccounts(ctx context.Context, as []ledger.Account) ([]ledger.AccountResult, error) {
	ids := make([]ledger.AccountID, len(as))
	for i := range as {
		ids[i] = as[i].ID
	}
	c, err := r.ofAccounts(ids)
	if err != nil {
		return nil, err
	}
	return c.CreateAccounts(ctx, as)
}

// CreateTransfers implements ledger.Client: all accounts on one shard
// (ledger.ErrShardUnknown for posts and voids that name none).
func (r *Routes) CreateTransfers(ctx context.Context, ts []ledger.Transfer) ([]ledger.TransferResult, error) {
	c, err := r.ofTransfers(ts)
	if err != nil {
		return nil, err
	}
	return c.CreateTransfers(ctx, ts)
}

// CreateTransfersAttached implements ledger.AttachingClient: attached is
// false when the shard's client carries no attachments.
func (r *Routes) CreateTransfersAttached(ctx context.Context, ts []ledger.Transfer, attachment []byte) ([]ledger.TransferResult, bool, error) {
	c, err := r.ofTransfers(ts)
	if err != nil {
		return nil, false, err
	}
	return ledger.CreateTransfersAttached(ctx, c, ts, attachment)
}

// CloseAccounts implements ledger.Client: all accounts on one shard.
func (r *Routes) CloseAccounts(ctx context.Context, ids []ledger.AccountID) ([]ledger.AccountResult, error) {
	c, err := r.ofAccounts(ids)
	if err != nil {
		return nil, err
	}
	return c.CloseAccounts(ctx, ids)
}

// LookupAccounts implements ledger.Client: the ids may live on several
// shards; each is asked for its own, and the accounts found are answered
// in the order asked (an id asked twice, twice), like a shard's answer.
func (r *Routes) LookupAccounts(ctx context.Context, ids []ledger.AccountID) ([]ledger.Account, error) {
	if len(ids) == 0 {
		return nil, ledger.ErrEmptyRequest
	}
	perShard := make(map[int][]ledger.AccountID)
	for _, id := range ids {
		s := ledger.ShardOf(id, r.shards)
		perShard[s] = append(perShard[s], id)
	}
	found := make(map[ledger.AccountID]ledger.Account, len(ids))
	for s := range r.shards {
		if len(perShard[s]) == 0 {
			continue
		}
		c, err := r.on(s)
		if err != nil {
			return nil, err
		}
		as, err := c.LookupAccounts(ctx, perShard[s])
		if err != nil {
			return nil, fmt.Errorf("shard %d: %w", s, err)
		}
		for _, a := range as {
			found[a.ID] = a
		}
	}
	out := make([]ledger.Account, 0, len(found))
	for _, id := range ids {
		if a, ok := found[id]; ok {
			out = append(out, a)
		}
	}
	return out, nil
}

// TransfersCommitted implements ledger.TransferLookup. A transfer id does
// not say its shard, and ids are unique across shards, so every shard is
// asked about every id: committed on any of them is committed. It fails
// when a shard's client cannot tell (it is no ledger.TransferLookup).
func (r *Routes) TransfersCommitted(ctx context.Context, ids []ledger.TransferID) ([]bool, error) {
	if len(ids) == 0 {
		return nil, ledger.ErrEmptyRequest
	}
	out := make([]bool, len(ids))
	for s := range r.shards {
		c, err := r.on(s)
		if err != nil {
			return nil, err
		}
		tl, ok := c.(ledger.TransferLookup)
		if !ok {
			return nil, fmt.Errorf("shard %d: its client (%T) cannot look up transfers", s, c)
		}
		committed, err := tl.TransfersCommitted(ctx, ids)
		if err != nil {
			return nil, fmt.Errorf("shard %d: %w", s, err)
		}
		for i := range out {
			out[i] = out[i] || committed[i]
		}
	}
	return out, nil
}
