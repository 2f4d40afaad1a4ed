package gateway

import (
	"context"
	"fmt"

	"github.com/sony/gobreaker/v2"

	"github.com/fundplatform/fund/ledger"
)

// ShardedClient is a ledger.Client over several shards: each call goes to
// the client of the one shard its accounts live on. Built by
// NewShardedClient, each shard's client sits behind a circuit breaker of
// its own (for a ledger in this process, whose shards never move: when one
// fails, calls for it fail fast with 503 while every other shard serves
// on). Built by NewShardedRoutes, the shards' clients are used as they are:
// for the routing client, which retries a failover within the request's
// deadline and breaks per owner address itself (OwnerBreakers).
type ShardedClient struct {
	shards   int
	per      []ledger.Client
	breakers []*BreakerClient // NewShardedClient's; none with NewShardedRoutes
}

var (
	_ ledger.Client          = (*ShardedClient)(nil)
	_ ledger.AttachingClient = (*ShardedClient)(nil)
)

// NewShardedClient builds the breakers: forShard returns the client of one
// shard (such as ledger/grpc's Client.ForShard); targets are named
// "shard-N".
func NewShardedClient(shards int, forShard func(int) ledger.Client, cfg BreakerConfig,
	onState func(target string, from, to gobreaker.State)) *ShardedClient {
	c := &ShardedClient{shards: shards, per: make([]ledger.Client, shards), breakers: make([]*BreakerClient, shards)}
	for s := range shards {
		c.breakers[s] = NewBreakerClient(fmt.Sprintf("shard-%d", s), forShard(s), cfg, onState)
		c.per[s] = c.breakers[s]
	}
	return c
}

// NewShardedRoutes dispatches to forShard's clients without a breaker of
// its own: for clients that retry and break per owner (ledger/grpc's
// routing client with OwnerBreakers), where a breaker per shard would stay
// open across a failover.
func NewShardedRoutes(shards int, forShard func(int) ledger.Client) *ShardedClient {
	c := &ShardedClient{shards: shards, per: make([]ledger.Client, shards)}
	for s := range shards {
		c.per[s] = forShard(s)
	}
	return c
}

// Breakers returns the per-shard breakers (none with NewShardedRoutes),
// for metrics and readiness.
func (c *ShardedClient) Breakers() []*BreakerClient { return c.breakers }

// CreateTransfers implements ledger.Client.
func (c *ShardedClient) CreateTransfers(ctx context.Context, ts []ledger.Transfer) ([]ledger.TransferResult, error) {
	s, err := ledger.ShardOfTransfers(ts, c.shards)
	if err != nil {
		return nil, err
	}
	return c.per[s].CreateTransfers(ctx, ts)
}

// CreateTransfersAttached implements ledger.AttachingClient: the
// attachment goes to the shard's client, which carries it if it can.
func (c *ShardedClient) CreateTransfersAttached(ctx context.Context, ts []ledger.Transfer, attachment []byte) ([]ledger.TransferResult, bool, error) {
	s, err := ledger.ShardOfTransfers(ts, c.shards)
	if err != nil {
		return nil, false, err
	}
	return ledger.CreateTransfersAttached(ctx, c.per[s], ts, attachment)
}

// CreateAccounts implements ledger.Client.
func (c *ShardedClient) CreateAccounts(ctx context.Context, as []ledger.Account) ([]ledger.AccountResult, error) {
	ids := make([]ledger.AccountID, len(as))
	for i := range as {
		ids[i] = as[i].ID
	}
	s, err := ledger.ShardOfAccounts(ids, c.shards)
	if err != nil {
		return nil, err
	}
	return c.per[s].CreateAccounts(ctx, as)
}

// CloseAccounts implements ledger.Client.
func (c *ShardedClient) CloseAccounts(ctx context.Context, ids []ledger.AccountID) ([]ledger.AccountResult, error) {
	s, err := ledger.ShardOfAccounts(ids, c.shards)
	if err != nil {
		return nil, err
	}
	return c.per[s].CloseAccounts(ctx, ids)
}

// LookupAccounts implements ledger.Client.
func (c *ShardedClient) LookupAccounts(ctx context.Context, ids []ledger.AccountID) ([]ledger.Account, error) {
	s, err := ledger.ShardOfAccounts(ids, c.shards)
	if err != nil {
		return nil, err
	}
	return c.per[s].LookupAccounts(ctx, ids)
}
