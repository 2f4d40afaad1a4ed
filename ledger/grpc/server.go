package grpc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/grpc/ledgerpb"
)

// Owned returns the client of a shard this process owns and serves right
// now, or false. (*ledger.Host).Client fits.
type Owned func(shard int) (ledger.Client, bool)

// Server serves the shards this process owns over gRPC. A request for a
// shard it does not own (never did, lost its lease, still loading) is
// answered FAILED_PRECONDITION with reason SHARD_NOT_OWNED and nothing is
// applied, so the client looks up the current owner and tries there.
type Server struct {
	ledgerpb.UnimplementedLedgerShardServer
	shards int
	owned  Owned
}

// NewServer returns a server for a system of shards logical shards.
func NewServer(shards int, owned Owned) *Server {
	return &Server{shards: max(shards, 1), owned: owned}
}

// Server-side bounds: calls in flight per connection (each waits on a
// sequencer whose own queue is bounded), and how often clients may ping.
const (
	streamsPerConnMax = 4096
	pingIntervalMin   = 5 * time.Second
)

// ServerOptions are the options a gRPC server in front of the ledger should
// have: bounded concurrent calls per connection, and keepalive pings
// allowed from clients (which is how they notice a stopped owner whose TCP
// connection stays open).
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxConcurrentStreams(streamsPerConnMax),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: pingIntervalMin, PermitWithoutStream: true}),
	}
}

// Register adds the service to a gRPC server.
func (s *Server) Register(g *grpc.Server) { ledgerpb.RegisterLedgerShardServer(g, s) }

// shard checks the target and the accounts named against it and returns
// the owned shard's client.
func (s *Server) shard(t *ledgerpb.Target, named func() (int, error)) (ledger.Client, error) {
	if t == nil {
		return nil, fmt.Errorf("%w: no target", errBadRequest)
	}
	if int(t.Shards) != s.shards {
		return nil, fmt.Errorf("caller has %d shards, server %d: %w", t.Shards, s.shards, ledger.ErrShardMapMismatch)
	}
	shard := int(t.Shard)
	if shard >= s.shards {
		return nil, fmt.Errorf("%w: shard %d of %d", errBadRequest, shard, s.shards)
	}
	// The caller routed by the same pure function; a request naming
	// accounts of another shard is refused whole rather than half applied.
	if got, err := named(); err == nil && got != shard {
		return nil, fmt.Errorf("request for shard %d names accounts of shard %d: %w", shard, got, ledger.ErrCrossShard)
	} else if err != nil && !errors.Is(err, ledger.ErrShardUnknown) {
		return nil, err
	}
	c, ok := s.owned(shard)
	if !ok {
		return nil, fmt.Errorf("shard %d: %w", shard, ledger.ErrNotOwner)
	}
	return c, nil
}

// CreateTransfers implements ledgerpb.LedgerShardServer.
func (s *Server) CreateTransfers(ctx context.Context, req *ledgerpb.CreateTransfersRequest) (*ledgerpb.CreateTransfersResponse, error) {
	ts := make([]ledger.Transfer, len(req.Transfers))
	for i, p := range req.Transfers {
		t, err := transferFromPB(p)
		if err != nil {
			return nil, toStatus(fmt.Errorf("transfer %d: %w", i, err))
		}
		ts[i] = t
	}
	c, err := s.shard(req.Target, func() (int, error) { return ledger.ShardOfTransfers(ts, s.shards) })
	if err != nil {
		return nil, toStatus(err)
	}
	// The attachment goes on if the shard's client carries it; if not,
	// attached stays false and the caller records what it meant to itself.
	rs, attached, err := ledger.CreateTransfersAttached(ctx, c, ts, req.Attachment)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &ledgerpb.CreateTransfersResponse{Results: make([]*ledgerpb.TransferResult, len(rs)), Attached: attached}
	for i, r := range rs {
		out.Results[i] = &ledgerpb.TransferResult{Result: r.Result.String(), Timestamp: r.Timestamp}
	}
	return out, nil
}

// CreateAccounts implements ledgerpb.LedgerShardServer.
func (s *Server) CreateAccounts(ctx context.Context, req *ledgerpb.CreateAccountsRequest) (*ledgerpb.CreateAccountsResponse, error) {
	as := make([]ledger.Account, len(req.Accounts))
	ids := make([]ledger.AccountID, len(req.Accounts))
	for i, p := range req.Accounts {
		a, err := accountFromPB(p)
		if err != nil {
			return nil, toStatus(fmt.Errorf("account %d: %w", i, err))
		}
		// Only what a creator chooses: balances and timestamps are the
		// ledger's.
		as[i] = ledger.Account{ID: a.ID, Asset: a.Asset, Code: a.Code, Flags: a.Flags}
		ids[i] = a.ID
	}
	c, err := s.shard(req.Target, func() (int, error) { return ledger.ShardOfAccounts(ids, s.shards) })
	if err != nil {
		return nil, toStatus(err)
	}
	rs, err := c.CreateAccounts(ctx, as)
	if err != nil {
		return nil, toStatus(err)
	}
	return &ledgerpb.CreateAccountsResponse{Results: accountResultsPB(rs)}, nil
}

// CloseAccounts implements ledgerpb.LedgerShardServer.
func (s *Server) CloseAccounts(ctx context.Context, req *ledgerpb.CloseAccountsRequest) (*ledgerpb.CloseAccountsResponse, error) {
	ids := accountIDs(req.Ids)
	c, err := s.shard(req.Target, func() (int, error) { return ledger.ShardOfAccounts(ids, s.shards) })
	if err != nil {
		return nil, toStatus(err)
	}
	rs, err := c.CloseAccounts(ctx, ids)
	if err != nil {
		return nil, toStatus(err)
	}
	return &ledgerpb.CloseAccountsResponse{Results: accountResultsPB(rs)}, nil
}

// LookupAccounts implements ledgerpb.LedgerShardServer.
func (s *Server) LookupAccounts(ctx context.Context, req *ledgerpb.LookupAccountsRequest) (*ledgerpb.LookupAccountsResponse, error) {
	ids := accountIDs(req.Ids)
	c, err := s.shard(req.Target, func() (int, error) { return ledger.ShardOfAccounts(ids, s.shards) })
	if err != nil {
		return nil, toStatus(err)
	}
	as, err := c.LookupAccounts(ctx, ids)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &ledgerpb.LookupAccountsResponse{Accounts: make([]*ledgerpb.Account, len(as))}
	for i := range as {
		out.Accounts[i] = accountToPB(&as[i])
	}
	return out, nil
}

// TransfersCommitted implements ledgerpb.LedgerShardServer. It names no
// account: the target shard is taken as given, and its owner answers.
func (s *Server) TransfersCommitted(ctx context.Context, req *ledgerpb.TransfersCommittedRequest) (*ledgerpb.TransfersCommittedResponse, error) {
	ids := make([]ledger.TransferID, len(req.Ids))
	for i, b := range req.Ids {
		id, err := transferID("ids", b)
		if err != nil {
			return nil, toStatus(fmt.Errorf("id %d: %w", i, err))
		}
		ids[i] = id
	}
	c, err := s.shard(req.Target, func() (int, error) { return 0, ledger.ErrShardUnknown })
	if err != nil {
		return nil, toStatus(err)
	}
	tl, ok := c.(ledger.TransferLookup)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this shard's client cannot look up transfers")
	}
	found, err := tl.TransfersCommitted(ctx, ids)
	if err != nil {
		return nil, toStatus(err)
	}
	return &ledgerpb.TransfersCommittedResponse{Committed: found}, nil
}

func accountResultsPB(rs []ledger.AccountResult) []*ledgerpb.AccountResult {
	out := make([]*ledgerpb.AccountResult, len(rs))
	for i, r := range rs {
		out[i] = &ledgerpb.AccountResult{Result: r.Result.String()}
	}
	return out
}
