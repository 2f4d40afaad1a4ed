package grpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/grpc/ledgerpb"
)

// ClientConfig tunes the routing client.
type ClientConfig struct {
	Shards int // logical shards; must match the servers'
	// AttemptsMax bounds the attempts of one call, the first included.
	// With the default backoff, 40 attempts span about 15 s: enough for a
	// dead owner's lease (5 s by default) to expire and its shard to be
	// taken and loaded elsewhere.
	AttemptsMax    int
	BackoffMin     time.Duration // wait before the second attempt; doubles up to BackoffMax
	BackoffMax     time.Duration
	AttemptTimeout time.Duration // one attempt (a stopped owner never answers)
	// RefreshTimeout bounds one read of the lease tables.
	RefreshTimeout time.Duration
	// DialOptions replace the default (plaintext, for loopback and
	// in-cluster networks with their own transport security).
	DialOptions []grpc.DialOption
	Logger      *slog.Logger
}

func (c *ClientConfig) setDefaults() {
	if c.Shards < 1 {
		c.Shards = 1
	}
	if c.AttemptsMax == 0 {
		c.AttemptsMax = 40
	}
	if c.BackoffMin == 0 {
		c.BackoffMin = 5 * time.Millisecond
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = 500 * time.Millisecond
	}
	if c.AttemptTimeout == 0 {
		c.AttemptTimeout = 10 * time.Second
	}
	if c.RefreshTimeout == 0 {
		c.RefreshTimeout = 2 * time.Second
	}
	if c.DialOptions == nil {
		c.DialOptions = []grpc.DialOption{
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			// An owner stopped (not dead) keeps its connections open; pings
			// notice it (the server allows them: ServerOptions).
			grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 3 * time.Second, PermitWithoutStream: true}),
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Client is a ledger.Client over many shards served by many processes. It
// routes each request to the owner of the shard its accounts live on (one
// shard per request: a request spanning shards is refused with
// ledger.ErrCrossShard), finds owners in the lease tables (through a
// ledger.Directory), caches them, and when a shard has moved or its owner
// died, reads the leases again and retries with bounded, jittered,
// exponential backoff.
//
// Why retrying is safe: every write the ledger takes is idempotent by a
// client-chosen id. A transfer id applies at most once, forever (the
// journal's transfer_ids key, checked by the single writer and kept across
// failover, since the new owner loads the same database); so when an
// attempt failed ambiguously (the owner died after its commit but before
// answering, or the answer timed out) the retry either applies the
// transfer or answers "exists" for the one already applied, never a second
// entry. Account creation is keyed by account id the same way ("exists"),
// lookups are reads, and closing is idempotent in effect (a retry of an
// applied close answers account_already_closed). Errors the servers mark as
// not acknowledged (not owner, fenced, closed, commit failed) are retried
// too; refusals (validation, cross-shard) are returned at once.
type Client struct {
	cfg ClientConfig
	dir ledger.Directory
	log *slog.Logger

	mu          sync.Mutex
	owners      []ledger.ShardOwner // by shard; from the last refresh
	conns       map[string]*grpc.ClientConn
	refreshedAt time.Time
	closed      bool

	refreshMu sync.Mutex // one lease read at a time; the others reuse its answer
}

var _ ledger.Client = (*Client)(nil)

// NewClient returns a routing client that finds shard owners in dir. It
// connects lazily; Close releases the connections.
func NewClient(cfg ClientConfig, dir ledger.Directory) *Client {
	cfg.setDefaults()
	return &Client{cfg: cfg, dir: dir, log: cfg.Logger, owners: make([]ledger.ShardOwner, cfg.Shards), conns: map[string]*grpc.ClientConn{}}
}

// Close closes every connection. Calls after Close fail.
func (c *Client) Close() error {
	c.mu.Lock()
	conns := c.conns
	c.conns, c.closed = map[string]*grpc.ClientConn{}, true
	c.mu.Unlock()
	var errs []error
	for _, cc := range conns {
		errs = append(errs, cc.Close())
	}
	return errors.Join(errs...)
}

// ErrClientClosed is returned by calls on a closed Client.
var ErrClientClosed = errors.New("ledger/grpc: client closed")

// CreateTransfers implements ledger.Client; all accounts named must live on
// one shard.
func (c *Client) CreateTransfers(ctx context.Context, ts []ledger.Transfer) ([]ledger.TransferResult, error) {
	if len(ts) == 0 {
		return nil, ledger.ErrEmptyRequest
	}
	shard, err := ledger.ShardOfTransfers(ts, c.cfg.Shards)
	if err != nil {
		return nil, err
	}
	return c.ForShard(shard).CreateTransfers(ctx, ts)
}

// CreateAccounts implements ledger.Client; all accounts must live on one
// shard.
func (c *Client) CreateAccounts(ctx context.Context, as []ledger.Account) ([]ledger.AccountResult, error) {
	if len(as) == 0 {
		return nil, ledger.ErrEmptyRequest
	}
	ids := make([]ledger.AccountID, len(as))
	for i := range as {
		ids[i] = as[i].ID
	}
	shard, err := ledger.ShardOfAccounts(ids, c.cfg.Shards)
	if err != nil {
		return nil, err
	}
	return c.ForShard(shard).CreateAccounts(ctx, as)
}

// CloseAccounts implements ledger.Client; all accounts must live on one
// shard.
func (c *Client) CloseAccounts(ctx context.Context, ids []ledger.AccountID) ([]ledger.AccountResult, error) {
	if len(ids) == 0 {
		return nil, ledger.ErrEmptyRequest
	}
	shard, err := ledger.ShardOfAccounts(ids, c.cfg.Shards)
	if err != nil {
		return nil, err
	}
	return c.ForShard(shard).CloseAccounts(ctx, ids)
}

// LookupAccounts implements ledger.Client; all accounts must live on one
// shard.
func (c *Client) LookupAccounts(ctx context.Context, ids []ledger.AccountID) ([]ledger.Account, error) {
	if len(ids) == 0 {
		return nil, ledger.ErrEmptyRequest
	}
	shard, err := ledger.ShardOfAccounts(ids, c.cfg.Shards)
	if err != nil {
		return nil, err
	}
	return c.ForShard(shard).LookupAccounts(ctx, ids)
}

// ForShard returns a ledger.Client that sends every request to one shard's
// owner: for requests that name no account (a post or void of a pending
// transfer with both accounts zero), and what xshard.NewRouter wants. The
// server still refuses a request that names accounts of another shard.
func (c *Client) ForShard(shard int) ledger.Client { return &shardClient{c: c, shard: shard} }

type shardClient struct {
	c     *Client
	shard int
}

func (s *shardClient) target() *ledgerpb.Target {
	return &ledgerpb.Target{Shard: uint32(s.shard), Shards: uint32(s.c.cfg.Shards)}
}

func (s *shardClient) CreateTransfers(ctx context.Context, ts []ledger.Transfer) ([]ledger.TransferResult, error) {
	req := &ledgerpb.CreateTransfersRequest{Target: s.target(), Transfers: make([]*ledgerpb.Transfer, len(ts))}
	for i := range ts {
		req.Transfers[i] = transferToPB(&ts[i])
	}
	var resp *ledgerpb.CreateTransfersResponse
	err := s.c.call(ctx, s.shard, func(ctx context.Context, stub ledgerpb.LedgerShardClient) (err error) {
		resp, err = stub.CreateTransfers(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(resp.Results) != len(ts) {
		return nil, fmt.Errorf("ledger/grpc: %d results for %d transfers", len(resp.Results), len(ts))
	}
	out := make([]ledger.TransferResult, len(ts))
	for i, r := range resp.Results {
		res, err := result(r.Result)
		if err != nil {
			return nil, err
		}
		out[i] = ledger.TransferResult{Result: res, Timestamp: r.Timestamp}
	}
	return out, nil
}

func (s *shardClient) CreateAccounts(ctx context.Context, as []ledger.Account) ([]ledger.AccountResult, error) {
	req := &ledgerpb.CreateAccountsRequest{Target: s.target(), Accounts: make([]*ledgerpb.Account, len(as))}
	for i := range as {
		req.Accounts[i] = accountToPB(&as[i])
	}
	var resp *ledgerpb.CreateAccountsResponse
	err := s.c.call(ctx, s.shard, func(ctx context.Context, stub ledgerpb.LedgerShardClient) (err error) {
		resp, err = stub.CreateAccounts(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return accountResults(resp.Results, len(as))
}

func (s *shardClient) CloseAccounts(ctx context.Context, ids []ledger.AccountID) ([]ledger.AccountResult, error) {
	req := &ledgerpb.CloseAccountsRequest{Target: s.target(), Ids: int64IDs(ids)}
	var resp *ledgerpb.CloseAccountsResponse
	err := s.c.call(ctx, s.shard, func(ctx context.Context, stub ledgerpb.LedgerShardClient) (err error) {
		resp, err = stub.CloseAccounts(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return accountResults(resp.Results, len(ids))
}

func (s *shardClient) LookupAccounts(ctx context.Context, ids []ledger.AccountID) ([]ledger.Account, error) {
	req := &ledgerpb.LookupAccountsRequest{Target: s.target(), Ids: int64IDs(ids)}
	var resp *ledgerpb.LookupAccountsResponse
	err := s.c.call(ctx, s.shard, func(ctx context.Context, stub ledgerpb.LedgerShardClient) (err error) {
		resp, err = stub.LookupAccounts(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]ledger.Account, len(resp.Accounts))
	for i, p := range resp.Accounts {
		if out[i], err = accountFromPB(p); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// TransfersCommitted implements ledger.TransferLookup for the shard.
func (s *shardClient) TransfersCommitted(ctx context.Context, ids []ledger.TransferID) ([]bool, error) {
	if len(ids) == 0 {
		return nil, ledger.ErrEmptyRequest
	}
	req := &ledgerpb.TransfersCommittedRequest{Target: s.target(), Ids: make([][]byte, len(ids))}
	for i := range ids {
		req.Ids[i] = ids[i][:]
	}
	var resp *ledgerpb.TransfersCommittedResponse
	err := s.c.call(ctx, s.shard, func(ctx context.Context, stub ledgerpb.LedgerShardClient) (err error) {
		resp, err = stub.TransfersCommitted(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(resp.Committed) != len(ids) {
		return nil, fmt.Errorf("ledger/grpc: %d answers for %d transfer ids", len(resp.Committed), len(ids))
	}
	return resp.Committed, nil
}

func accountResults(rs []*ledgerpb.AccountResult, n int) ([]ledger.AccountResult, error) {
	if len(rs) != n {
		return nil, fmt.Errorf("ledger/grpc: %d results for %d accounts", len(rs), n)
	}
	out := make([]ledger.AccountResult, n)
	for i, r := range rs {
		res, err := result(r.Result)
		if err != nil {
			return nil, err
		}
		out[i] = ledger.AccountResult{Result: res}
	}
	return out, nil
}

// call runs op against the shard's owner, re-reading the leases and
// retrying (bounded, with backoff) while the failure is one after which
// nothing was acknowledged or a retry is safe (see Client).
func (c *Client) call(ctx context.Context, shard int, op func(context.Context, ledgerpb.LedgerShardClient) error) error {
	if shard < 0 || shard >= c.cfg.Shards {
		return fmt.Errorf("ledger/grpc: shard %d of %d", shard, c.cfg.Shards)
	}
	backoff := c.cfg.BackoffMin
	var last error
	for attempt := 1; attempt <= c.cfg.AttemptsMax; attempt++ {
		if attempt > 1 {
			// Half the backoff fixed, half random: callers that failed
			// together (an owner died under all of them) come back spread.
			d := backoff/2 + rand.N(backoff/2+1)
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("shard %d: %w (last attempt: %v)", shard, ctx.Err(), last)
			case <-t.C:
			}
			backoff = min(2*backoff, c.cfg.BackoffMax)
		}
		failedAt := time.Now()
		stub, addr, err := c.owner(ctx, shard, failedAt)
		if err == nil {
			actx, cancel := context.WithTimeout(ctx, c.cfg.AttemptTimeout)
			err = fromStatus(op(actx, stub))
			cancel()
			if err == nil {
				return nil
			}
			err = fmt.Errorf("shard %d at %s: %w", shard, addr, err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("shard %d: %w (last attempt: %v)", shard, ctx.Err(), err)
		}
		if !retryable(err) {
			return err
		}
		last = err
		c.log.Debug("ledger call failed; retrying", "shard", shard, "attempt", attempt, "err", err)
		// The cached owner is suspect: read the leases again (unless
		// another caller already did since this attempt began).
		if rerr := c.refresh(ctx, failedAt); rerr != nil {
			last = errors.Join(err, rerr)
		}
	}
	return fmt.Errorf("shard %d: gave up after %d attempts: %w", shard, c.cfg.AttemptsMax, last)
}

// owner returns a stub for the shard's current owner, reading the leases
// when none is cached (unless a read finished after since: callers that
// find no owner together share one read).
func (c *Client) owner(ctx context.Context, shard int, since time.Time) (ledgerpb.LedgerShardClient, string, error) {
	c.mu.Lock()
	addr := c.owners[shard].Addr
	c.mu.Unlock()
	if addr == "" {
		if err := c.refresh(ctx, since); err != nil {
			return nil, "", err
		}
		c.mu.Lock()
		addr = c.owners[shard].Addr
		c.mu.Unlock()
		if addr == "" {
			return nil, "", fmt.Errorf("shard %d: %w", shard, ledger.ErrNoOwner)
		}
	}
	cc, err := c.conn(addr)
	if err != nil {
		return nil, "", err
	}
	return ledgerpb.NewLedgerShardClient(cc), addr, nil
}

func (c *Client) conn(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClientClosed
	}
	if cc, ok := c.conns[addr]; ok {
		return cc, nil
	}
	// passthrough: the address is a literal host:port from the lease
	// table, no name resolution wanted.
	cc, err := grpc.NewClient("passthrough:///"+addr, c.cfg.DialOptions...)
	if err != nil {
		return nil, fmt.Errorf("ledger/grpc: connect %s: %w", addr, err)
	}
	c.conns[addr] = cc
	return cc, nil
}

// refresh reads every shard's owner from the directory, unless a read
// finished after since (then that answer is as fresh as this one would
// be). Connections to addresses no shard is owned at any more are closed;
// a call caught on one fails with Canceled and is retried.
func (c *Client) refresh(ctx context.Context, since time.Time) error {
	c.refreshMu.Lock()
	defer c.refreshMu.Unlock()
	c.mu.Lock()
	fresh := c.refreshedAt.After(since)
	c.mu.Unlock()
	if fresh {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.RefreshTimeout)
	owners, err := c.dir.ShardOwners(rctx)
	cancel()
	if err != nil && len(owners) == 0 {
		return fmt.Errorf("read shard owners: %w: %w", ledger.ErrNoOwner, err)
	}
	if err != nil {
		// Part of the leases could not be read (a database down): the
		// shards read are updated, the others keep what was cached.
		c.log.Warn("shard owners read in part", "err", err)
	}
	c.mu.Lock()
	next := append([]ledger.ShardOwner(nil), c.owners...)
	for _, o := range owners {
		if o.Shard >= 0 && o.Shard < len(next) {
			next[o.Shard] = o
		}
	}
	live := map[string]bool{}
	for _, o := range next {
		live[o.Addr] = true
	}
	c.owners, c.refreshedAt = next, time.Now()
	var stale []*grpc.ClientConn
	for addr, cc := range c.conns {
		if !live[addr] {
			stale = append(stale, cc)
			delete(c.conns, addr)
		}
	}
	c.mu.Unlock()
	for _, cc := range stale {
		_ = cc.Close()
	}
	return nil
}
