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
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/grpc/ledgerpb"
)

// ClientConfig tunes the routing client.
//
// How long one call may take: the caller's deadline, when its context has
// one, is the budget. Attempts go on (backed off, at the owner the leases
// name after each failure) while another attempt can still finish before
// that deadline; then the call gives up with ErrUnreachable well before
// it, so the caller has time left to answer "try again" (a gateway: 503)
// instead of running into its own deadline. Without a deadline the
// attempts are bounded by AttemptsMax alone.
type ClientConfig struct {
	Shards int // logical shards; must match the servers'
	// AttemptsMax bounds the attempts of one call, the first included.
	// With the default backoff, 40 attempts span about 15 s: enough for a
	// dead owner's lease (5 s by default) to expire and its shard to be
	// taken and loaded elsewhere.
	AttemptsMax int
	BackoffMin  time.Duration // wait before the second attempt; doubles up to BackoffMax
	BackoffMax  time.Duration
	// AttemptTimeout bounds one attempt, so that an owner that stopped
	// answering (frozen, or its host gone without a reset) is abandoned
	// and the request sent again to whoever owns the shard by then. Keep
	// it well under the callers' deadlines.
	AttemptTimeout time.Duration
	// AttemptTimeMin is the least time left before the caller's deadline
	// that is worth another attempt (after the backoff and DeadlineReserve);
	// 0 = 50ms.
	AttemptTimeMin time.Duration
	// DeadlineReserve is kept back from the caller's deadline: an attempt
	// ends that much before it, so the call returns ErrUnreachable while
	// the caller can still answer; 0 = 100ms.
	DeadlineReserve time.Duration
	// RefreshTimeout bounds one read of the lease tables.
	RefreshTimeout time.Duration
	// Breakers, when set, gives each owner address its own circuit
	// breaker, asked before every attempt there. An open breaker does not
	// fail the call: the attempt counts as failed, the leases are read
	// again, and the next attempt goes to the shard's next owner (a new
	// address, a fresh breaker) once the lease moves. nil = no breakers.
	Breakers Breakers
	// DialOptions replace the default (plaintext, for loopback and
	// in-cluster networks with their own transport security).
	DialOptions []grpc.DialOption
	Logger      *slog.Logger
}

// Breaker guards the attempts sent to one owner address.
type Breaker interface {
	// Allow asks to send one attempt. It returns an error when the owner
	// is refused for now; otherwise done, which the client calls once with
	// whether the owner answered (false: unreachable, timed out, or it
	// could not commit).
	Allow() (done func(healthy bool), err error)
}

// Breakers makes and forgets the breakers of owner addresses.
type Breakers interface {
	// For returns the breaker of addr; the client calls it once when it
	// first connects to addr.
	For(addr string) Breaker
	// Forget tells that no shard is owned at addr any more; a later
	// owner there gets a fresh breaker from For.
	Forget(addr string)
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
	if c.AttemptTimeMin == 0 {
		c.AttemptTimeMin = 50 * time.Millisecond
	}
	if c.DeadlineReserve == 0 {
		c.DeadlineReserve = 100 * time.Millisecond
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
	owners      []ledger.ShardOwner  // by shard; from the last refresh
	conns       map[string]ownerConn // by owner address
	refreshedAt time.Time
	closed      bool

	refreshMu sync.Mutex // one lease read at a time; the others reuse its answer
}

var (
	_ ledger.Client          = (*Client)(nil)
	_ ledger.AttachingClient = (*Client)(nil)
	_ ledger.AttachingClient = (*shardClient)(nil)
)

// NewClient returns a routing client that finds shard owners in dir. It
// connects lazily; Close releases the connections.
func NewClient(cfg ClientConfig, dir ledger.Directory) *Client {
	cfg.setDefaults()
	return &Client{cfg: cfg, dir: dir, log: cfg.Logger, owners: make([]ledger.ShardOwner, cfg.Shards), conns: map[string]ownerConn{}}
}

// Close closes every connection. Calls after Close fail.
func (c *Client) Close() error {
	c.mu.Lock()
	conns := c.conns
	c.conns, c.closed = map[string]ownerConn{}, true
	c.mu.Unlock()
	var errs []error
	for _, oc := range conns {
		errs = append(errs, oc.cc.Close())
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

// CreateTransfersAttached implements ledger.AttachingClient; all accounts
// named must live on one shard.
func (c *Client) CreateTransfersAttached(ctx context.Context, ts []ledger.Transfer, attachment []byte) ([]ledger.TransferResult, bool, error) {
	if len(ts) == 0 {
		return nil, false, ledger.ErrEmptyRequest
	}
	shard, err := ledger.ShardOfTransfers(ts, c.cfg.Shards)
	if err != nil {
		return nil, false, err
	}
	return c.ForShard(shard).(ledger.AttachingClient).CreateTransfersAttached(ctx, ts, attachment)
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
	rs, _, err := s.CreateTransfersAttached(ctx, ts, nil)
	return rs, err
}

// CreateTransfersAttached implements ledger.AttachingClient. Every attempt
// (a retry at the shard's next owner included) carries the attachment: a
// retry after a commit that was not answered finds its transfers "exists"
// and the owner's writer writes the attachment once.
func (s *shardClient) CreateTransfersAttached(ctx context.Context, ts []ledger.Transfer, attachment []byte) ([]ledger.TransferResult, bool, error) {
	if len(attachment) > ledger.AttachmentLenMax {
		return nil, false, fmt.Errorf("%w: %d bytes > %d", ledger.ErrAttachmentTooLarge, len(attachment), ledger.AttachmentLenMax)
	}
	req := &ledgerpb.CreateTransfersRequest{Target: s.target(), Transfers: make([]*ledgerpb.Transfer, len(ts)),
		Attachment: attachment}
	for i := range ts {
		req.Transfers[i] = transferToPB(&ts[i])
	}
	var resp *ledgerpb.CreateTransfersResponse
	err := s.c.call(ctx, s.shard, func(ctx context.Context, stub ledgerpb.LedgerShardClient) (err error) {
		resp, err = stub.CreateTransfers(ctx, req)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	if len(resp.Results) != len(ts) {
		return nil, false, fmt.Errorf("ledger/grpc: %d results for %d transfers", len(resp.Results), len(ts))
	}
	out := make([]ledger.TransferResult, len(ts))
	for i, r := range resp.Results {
		res, err := result(r.Result)
		if err != nil {
			return nil, false, err
		}
		out[i] = ledger.TransferResult{Result: res, Timestamp: r.Timestamp}
	}
	return out, resp.Attached && len(attachment) > 0, nil
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

// ErrUnreachable is returned (wrapping the last attempt's error in its
// message) when the shard's owner could not be reached, or did not answer,
// in time for the caller's deadline: the shard is failing over, or its
// owner is frozen and its lease has not expired yet. An attempt that got
// no answer may have been applied; a retry with the same ids gets its
// original result.
var ErrUnreachable = errors.New("ledger/grpc: shard owner not reached before the deadline")

// errOwnerRefused: the owner address's breaker is open; the attempt was
// not sent.
var errOwnerRefused = errors.New("ledger/grpc: owner's breaker refuses calls")

// call runs op against the shard's owner, re-reading the leases and
// retrying (bounded in attempts and by the caller's deadline, with
// jittered backoff) while the failure is one after which nothing was
// acknowledged or a retry is safe (see Client).
func (c *Client) call(ctx context.Context, shard int, op func(context.Context, ledgerpb.LedgerShardClient) error) error {
	if shard < 0 || shard >= c.cfg.Shards {
		return fmt.Errorf("ledger/grpc: shard %d of %d", shard, c.cfg.Shards)
	}
	deadline, hasDeadline := ctx.Deadline()
	backoff := c.cfg.BackoffMin
	var last error
	for attempt := 1; attempt <= c.cfg.AttemptsMax; attempt++ {
		if attempt > 1 {
			// Half the backoff fixed, half random: callers that failed
			// together (an owner died under all of them) come back spread.
			d := backoff/2 + rand.N(backoff/2+1)
			if hasDeadline && time.Until(deadline) < d+c.cfg.DeadlineReserve+c.cfg.AttemptTimeMin {
				return fmt.Errorf("shard %d: %w after %d attempts (last: %v)", shard, ErrUnreachable, attempt-1, last)
			}
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
		err := c.attempt(ctx, shard, failedAt, c.attemptDeadline(failedAt, deadline, hasDeadline), op)
		if err == nil {
			return nil
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

// attemptDeadline is when an attempt started at now is abandoned:
// AttemptTimeout on, but DeadlineReserve before the caller's deadline, so
// that the call, not the caller's context, ends first. A caller that gave
// too little time for the reserve gets its whole deadline.
func (c *Client) attemptDeadline(now, deadline time.Time, hasDeadline bool) time.Time {
	until := now.Add(c.cfg.AttemptTimeout)
	if !hasDeadline {
		return until
	}
	if reserved := deadline.Add(-c.cfg.DeadlineReserve); reserved.Sub(now) >= c.cfg.AttemptTimeMin {
		return minTime(until, reserved)
	}
	return minTime(until, deadline)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// attempt sends op once to the shard's owner (as the leases named it
// since), through the owner's breaker, and tells the breaker how the owner
// did.
func (c *Client) attempt(ctx context.Context, shard int, since, until time.Time, op func(context.Context, ledgerpb.LedgerShardClient) error) error {
	stub, addr, br, err := c.owner(ctx, shard, since)
	if err != nil {
		return err
	}
	var done func(healthy bool)
	if br != nil {
		if done, err = br.Allow(); err != nil {
			return fmt.Errorf("shard %d at %s: %w: %w", shard, addr, errOwnerRefused, err)
		}
	}
	actx, cancel := context.WithDeadline(ctx, until)
	err = fromStatus(op(actx, stub))
	cancel()
	if done != nil {
		done(!ownerFailed(ctx, err))
	}
	if err != nil {
		return fmt.Errorf("shard %d at %s: %w", shard, addr, err)
	}
	return nil
}

// ownerFailed reports whether err says the owner itself is failing (it
// could not be reached, did not answer in time, or could not commit), as
// opposed to an answer about the request or the shard (not owner, fenced,
// a refusal) or a caller that gave up.
func ownerFailed(ctx context.Context, err error) bool {
	switch {
	case err == nil, ctx.Err() != nil:
		return false
	case errors.Is(err, ledger.ErrCommitFailed), errors.Is(err, context.DeadlineExceeded):
		return true
	}
	var re *remoteError
	if errors.As(err, &re) {
		return false // it answered
	}
	st, ok := status.FromError(err)
	return ok && (st.Code() == codes.Unavailable || st.Code() == codes.DeadlineExceeded)
}

// owner returns a stub for the shard's current owner and the owner's
// breaker (nil without Breakers), reading the leases when none is cached
// (unless a read finished after since: callers that find no owner
// together share one read).
func (c *Client) owner(ctx context.Context, shard int, since time.Time) (ledgerpb.LedgerShardClient, string, Breaker, error) {
	c.mu.Lock()
	addr := c.owners[shard].Addr
	c.mu.Unlock()
	if addr == "" {
		if err := c.refresh(ctx, since); err != nil {
			return nil, "", nil, err
		}
		c.mu.Lock()
		addr = c.owners[shard].Addr
		c.mu.Unlock()
		if addr == "" {
			return nil, "", nil, fmt.Errorf("shard %d: %w", shard, ledger.ErrNoOwner)
		}
	}
	oc, err := c.conn(addr)
	if err != nil {
		return nil, "", nil, err
	}
	return ledgerpb.NewLedgerShardClient(oc.cc), addr, oc.br, nil
}

// ownerConn is the connection to one owner address and its breaker.
type ownerConn struct {
	cc *grpc.ClientConn
	br Breaker // nil without Breakers
}

func (c *Client) conn(addr string) (ownerConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ownerConn{}, ErrClientClosed
	}
	if oc, ok := c.conns[addr]; ok {
		return oc, nil
	}
	// passthrough: the address is a literal host:port from the lease
	// table, no name resolution wanted.
	cc, err := grpc.NewClient("passthrough:///"+addr, c.cfg.DialOptions...)
	if err != nil {
		return ownerConn{}, fmt.Errorf("ledger/grpc: connect %s: %w", addr, err)
	}
	oc := ownerConn{cc: cc}
	if c.cfg.Breakers != nil {
		oc.br = c.cfg.Breakers.For(addr)
	}
	c.conns[addr] = oc
	return oc, nil
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
	stale := map[string]*grpc.ClientConn{}
	for addr, oc := range c.conns {
		if !live[addr] {
			stale[addr] = oc.cc
			delete(c.conns, addr)
		}
	}
	c.mu.Unlock()
	for addr, cc := range stale {
		_ = cc.Close()
		if c.cfg.Breakers != nil {
			c.cfg.Breakers.Forget(addr)
		}
	}
	return nil
}
