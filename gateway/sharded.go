package gateway

import (
	"context"
	"fmt"

	"github.com/sony/gobreaker/v2"

	"github.com/fundplatform/fund/ledger"
)

// ShardedClient is a ledger.Client over several shards with a circuit
// breaker per shard: each call goes to the breaker of the one shard its
// accounts live on. A shard has exactly one owner at a time, so a breaker
// per shard is a breaker per shard owner as callers see it: when an owner
// dies, its shards' breakers open and calls for them fail fast with 503,
// while every other shard serves on.
type ShardedClient struct {
	shards int
	per    []*BreakerClient
}

var _ ledger.Client = (*ShardedClient)(nil)

// NewShardedClient builds the breakers: forShard returns the client of one
// shard (such as ledger/grpc's Client.ForShard); targets are named
// "shard-N".
func NewShardedClient(shards int, forShard func(int) ledger.Client, cfg BreakerConfig,
	onState func(target string, from, to gobreaker.State)) *ShardedClient {
	c := &ShardedClient{shards: shards, per: make([]*BreakerClient, shards)}
	for s := range shards {
		c.per[s] = NewBreakerClient(fmt.Sprintf("shard-%d", s), forShard(s), cfg, onState)
	}
	return c
}

// Breakers returns the per-shard clients, for metrics and readiness.
func (c *ShardedClient) Breakers() []*BreakerClient { return c.per }

// CreateTransfers implements ledger.Client.
func (c *ShardedClient) CreateTransfers(ctx context.Context, ts []ledger.Transfer) ([]ledger.TransferResult, error) {
	s, err := ledger.ShardOfTransfers(ts, c.shards)
	if err != nil {
		return nil, err
	}
	return c.per[s].CreateTransfers(ctx, ts)
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
