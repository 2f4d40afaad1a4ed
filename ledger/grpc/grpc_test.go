package grpc_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/ledger"
	ledgergrpc "github.com/fundplatform/fund/ledger/grpc"
	"github.com/fundplatform/fund/ledger/grpc/ledgerpb"
	"github.com/fundplatform/fund/ledger/postgres"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// serve runs a gRPC server for owned on a loopback port until the test ends.
func serve(t *testing.T, shards int, owned ledgergrpc.Owned) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(ledgergrpc.ServerOptions()...)
	ledgergrpc.NewServer(shards, owned).Register(srv)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return lis.Addr().String()
}

func stub(t *testing.T, addr string) ledgerpb.LedgerShardClient {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return ledgerpb.NewLedgerShardClient(cc)
}

// reason returns the status code and the ErrorInfo reason of an error.
func reason(err error) (codes.Code, string) {
	st := status.Convert(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return st.Code(), info.Reason
		}
	}
	return st.Code(), ""
}

func accountOn(from ledger.AccountID, shard, shards int) ledger.AccountID {
	for id := from; ; id++ {
		if ledger.ShardOf(id, shards) == shard {
			return id
		}
	}
}

// The server's refusals are clear codes with a reason, and nothing reaches
// a shard for them: a shard it does not own, a caller with another shard
// count, a request naming accounts of two shards, a value that does not fit.
func TestServerRefusals(t *testing.T) {
	const shards = 4
	addr := serve(t, shards, func(int) (ledger.Client, bool) { return nil, false })
	c := stub(t, addr)
	ctx := context.Background()
	a, b := accountOn(1000, 1, shards), accountOn(1000, 2, shards)
	tr := func(dr, cr ledger.AccountID) *ledgerpb.Transfer {
		id := ledger.NewTransferID()
		return &ledgerpb.Transfer{Id: id[:], DebitAccountId: int64(dr), CreditAccountId: int64(cr), Amount: 1, Asset: 1, Kind: 1}
	}
	cases := []struct {
		name   string
		req    *ledgerpb.CreateTransfersRequest
		code   codes.Code
		reason string
	}{
		{"not owner", &ledgerpb.CreateTransfersRequest{Target: &ledgerpb.Target{Shard: 1, Shards: shards}, Transfers: []*ledgerpb.Transfer{tr(a, accountOn(a+1, 1, shards))}},
			codes.FailedPrecondition, "SHARD_NOT_OWNED"},
		{"shard count", &ledgerpb.CreateTransfersRequest{Target: &ledgerpb.Target{Shard: 1, Shards: 8}, Transfers: []*ledgerpb.Transfer{tr(a, b)}},
			codes.FailedPrecondition, "SHARD_MAP_MISMATCH"},
		{"cross shard", &ledgerpb.CreateTransfersRequest{Target: &ledgerpb.Target{Shard: 1, Shards: shards}, Transfers: []*ledgerpb.Transfer{tr(a, b)}},
			codes.InvalidArgument, "CROSS_SHARD"},
		{"wrong shard", &ledgerpb.CreateTransfersRequest{Target: &ledgerpb.Target{Shard: 2, Shards: shards}, Transfers: []*ledgerpb.Transfer{tr(a, accountOn(a+1, 1, shards))}},
			codes.InvalidArgument, "CROSS_SHARD"},
		{"asset beyond 16 bits", &ledgerpb.CreateTransfersRequest{Target: &ledgerpb.Target{Shard: 1, Shards: shards},
			Transfers: []*ledgerpb.Transfer{{Id: make([]byte, 16), DebitAccountId: int64(a), Amount: 1, Asset: 1<<16 + 1}}},
			codes.InvalidArgument, "BAD_REQUEST"},
		{"short id", &ledgerpb.CreateTransfersRequest{Target: &ledgerpb.Target{Shard: 1, Shards: shards},
			Transfers: []*ledgerpb.Transfer{{Id: []byte{1, 2}, DebitAccountId: int64(a), Amount: 1, Asset: 1}}},
			codes.InvalidArgument, "BAD_REQUEST"},
		{"no target", &ledgerpb.CreateTransfersRequest{Transfers: []*ledgerpb.Transfer{tr(a, accountOn(a+1, 1, shards))}},
			codes.InvalidArgument, "BAD_REQUEST"},
	}
	for _, tc := range cases {
		_, err := c.CreateTransfers(ctx, tc.req)
		if code, r := reason(err); code != tc.code || r != tc.reason {
			t.Errorf("%s: %v (code %s, reason %q), want %s %s", tc.name, err, code, r, tc.code, tc.reason)
		}
	}
}

// directory is a fixed owner table.
type directory struct {
	mu     sync.Mutex
	owners []ledger.ShardOwner
	reads  int
}

func (d *directory) ShardOwners(context.Context) ([]ledger.ShardOwner, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.reads++
	return append([]ledger.ShardOwner(nil), d.owners...), nil
}

// A client whose directory keeps pointing at a process that does not own
// the shard (or at no process at all) gives up after its bounded attempts
// with the cause; a request spanning shards never leaves the client.
func TestClientGivesUpBounded(t *testing.T) {
	const shards = 2
	addr := serve(t, shards, func(int) (ledger.Client, bool) { return nil, false })
	dir := &directory{owners: []ledger.ShardOwner{{Shard: 0, Owner: "x", Addr: addr}, {Shard: 1}}}
	c := ledgergrpc.NewClient(ledgergrpc.ClientConfig{Shards: shards, AttemptsMax: 4, BackoffMin: time.Millisecond, BackoffMax: 2 * time.Millisecond}, dir)
	defer c.Close()
	ctx := context.Background()
	a0, b0 := accountOn(1000, 0, shards), accountOn(2000, 0, shards)
	_, err := c.LookupAccounts(ctx, []ledger.AccountID{a0, b0})
	if !errors.Is(err, ledger.ErrNotOwner) {
		t.Fatalf("not owner everywhere: %v", err)
	}
	_, err = c.LookupAccounts(ctx, []ledger.AccountID{accountOn(1000, 1, shards)})
	if !errors.Is(err, ledger.ErrNoOwner) {
		t.Fatalf("no owner: %v", err)
	}
	_, err = c.CreateTransfers(ctx, []ledger.Transfer{{ID: ledger.NewTransferID(), DebitAccountID: a0, CreditAccountID: accountOn(1000, 1, shards), Amount: 1, Asset: ledger.AssetCNY}})
	if !errors.Is(err, ledger.ErrCrossShard) {
		t.Fatalf("cross shard: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.LookupAccounts(cctx, []ledger.AccountID{a0}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: %v", err)
	}
}

// host runs a ledger.Host with its gRPC server in-process.
type host struct {
	h    *ledger.Host
	stop context.CancelFunc
	done chan error
}

func startHost(t testing.TB, dbs *postgres.Databases, owner string, shardsMax int) *host {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := ledger.HostConfig{Owner: owner, Address: lis.Addr().String(), Shards: dbs.Map.Shards, LeaseTTL: time.Second, ShardsMax: shardsMax}
	h := ledger.NewHost(cfg, dbs, dbs, nil)
	srv := grpc.NewServer(ledgergrpc.ServerOptions()...)
	ledgergrpc.NewServer(cfg.Shards, h.Client).Register(srv)
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(lis) }()
	ctx, cancel := context.WithCancel(context.Background())
	x := &host{h: h, stop: cancel, done: make(chan error, 1)}
	go func() { x.done <- h.Run(ctx) }()
	t.Cleanup(func() {
		x.close()
		srv.Stop()
		<-served
	})
	return x
}

func (x *host) close() {
	x.stop()
	if x.done != nil {
		<-x.done
		x.done = nil
	}
}

func waitOwned(t testing.TB, dbs *postgres.Databases, want map[string]int) {
	t.Helper()
	for end := time.Now().Add(30 * time.Second); ; {
		ls, err := dbs.Leases(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		for _, l := range ls {
			if l.Live {
				got[l.Owner]++
			}
		}
		match := len(got) == len(want)
		for o, n := range want {
			match = match && got[o] == n
		}
		if match {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("owners %v, want %v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Two in-process hosts serve four shards on two databases; the routing
// client reaches every shard, a retried transfer answers exists, and when
// one host stops its shards move and the same client keeps working
// against the other without being told.
func TestClientRoutesAndFollowsMoves(t *testing.T) {
	ctx := context.Background()
	const shards = 4
	dbs, err := postgres.OpenDatabases(ctx, postgres.DatabasesConfig{DSNs: []string{pgtest.NewDatabase(t), pgtest.NewDatabase(t)}, Shards: shards})
	if err != nil {
		t.Fatal(err)
	}
	defer dbs.Close()
	a := startHost(t, dbs, "a", 2)
	waitOwned(t, dbs, map[string]int{"a": 2})
	startHost(t, dbs, "b", 0)
	waitOwned(t, dbs, map[string]int{"a": 2, "b": 2})

	c := ledgergrpc.NewClient(ledgergrpc.ClientConfig{Shards: shards}, dbs)
	defer c.Close()
	bank := make([]ledger.AccountID, shards)
	user := make([]ledger.AccountID, shards)
	for s := 0; s < shards; s++ {
		bank[s], user[s] = accountOn(1<<40, s, shards), accountOn(1000, s, shards)
		rs, err := c.CreateAccounts(ctx, []ledger.Account{{ID: bank[s], Asset: ledger.AssetCNY, Code: 1},
			{ID: user[s], Asset: ledger.AssetCNY, Code: 10, Flags: ledger.DebitsMustNotExceedCredits}})
		if err != nil || rs[0].Result != ledger.ResultOK || rs[1].Result != ledger.ResultOK {
			t.Fatalf("shard %d accounts: %v %v", s, rs, err)
		}
	}
	pay := func(s int, id ledger.TransferID, amount int64) ledger.Result {
		t.Helper()
		rs, err := c.CreateTransfers(ctx, []ledger.Transfer{{ID: id, DebitAccountID: bank[s], CreditAccountID: user[s],
			Amount: amount, Asset: ledger.AssetCNY, Kind: 1, UserData: "order-1"}})
		if err != nil {
			t.Fatalf("shard %d: %v", s, err)
		}
		return rs[0].Result
	}
	ids := make([]ledger.TransferID, shards)
	for s := range ids {
		ids[s] = ledger.NewTransferID()
		if r := pay(s, ids[s], 100_00); r != ledger.ResultOK {
			t.Fatalf("shard %d: %s", s, r)
		}
		if r := pay(s, ids[s], 100_00); r != ledger.ResultExists {
			t.Fatalf("shard %d retry: %s", s, r)
		}
		if r := pay(s, ids[s], 200_00); r != ledger.ResultExistsWithDifferentFields {
			t.Fatalf("shard %d conflicting reuse: %s", s, r)
		}
	}
	// Overdraw: a per-transfer refusal comes back as a result, not an error.
	rs, err := c.CreateTransfers(ctx, []ledger.Transfer{{ID: ledger.NewTransferID(), DebitAccountID: user[0], CreditAccountID: bank[0],
		Amount: 100_01, Asset: ledger.AssetCNY, Kind: 2}})
	if err != nil || rs[0].Result != ledger.ResultExceedsCredits {
		t.Fatalf("overdraw: %v %v", rs, err)
	}

	a.close() // a clean stop releases a's leases; b takes them
	waitOwned(t, dbs, map[string]int{"b": 4})
	for s := 0; s < shards; s++ {
		if r := pay(s, ids[s], 100_00); r != ledger.ResultExists {
			t.Fatalf("shard %d retry after the move: %s", s, r)
		}
		if r := pay(s, ledger.NewTransferID(), 1_00); r != ledger.ResultOK {
			t.Fatalf("shard %d after the move: %s", s, r)
		}
		as, err := c.LookupAccounts(ctx, []ledger.AccountID{user[s]})
		if err != nil || len(as) != 1 || as[0].Balance() != 101_00 || as[0].Flags != ledger.DebitsMustNotExceedCredits {
			t.Fatalf("shard %d lookup: %+v %v", s, as, err)
		}
	}
	// Which transfers each shard committed, asked of its owner over the
	// wire: the ids paid on it, not a new one.
	for s := 0; s < shards; s++ {
		tl, ok := c.ForShard(s).(ledger.TransferLookup)
		if !ok {
			t.Fatal("the per-shard client does not look up transfers")
		}
		got, err := tl.TransfersCommitted(ctx, []ledger.TransferID{ids[s], ledger.NewTransferID()})
		if err != nil || len(got) != 2 || !got[0] || got[1] {
			t.Fatalf("shard %d: committed %v %v, want [true false]", s, got, err)
		}
	}
	if _, err := c.CloseAccounts(ctx, []ledger.AccountID{user[1]}); err != nil {
		t.Fatal(err)
	}
}

// echo is a ledger.Client whose lookups return the ids asked for.
type echo struct{}

func (echo) CreateAccounts(context.Context, []ledger.Account) ([]ledger.AccountResult, error) {
	return nil, errors.New("not here")
}
func (echo) CreateTransfers(context.Context, []ledger.Transfer) ([]ledger.TransferResult, error) {
	return nil, errors.New("not here")
}
func (echo) CloseAccounts(context.Context, []ledger.AccountID) ([]ledger.AccountResult, error) {
	return nil, errors.New("not here")
}
func (echo) LookupAccounts(_ context.Context, ids []ledger.AccountID) ([]ledger.Account, error) {
	out := make([]ledger.Account, len(ids))
	for i, id := range ids {
		out[i] = ledger.Account{ID: id, Asset: ledger.AssetCNY}
	}
	return out, nil
}

// partialDirectory answers only for shard 0 once the other database is
// "down", with an error for the rest.
type partialDirectory struct {
	mu     sync.Mutex
	owners []ledger.ShardOwner
	down   bool
}

func (d *partialDirectory) ShardOwners(context.Context) ([]ledger.ShardOwner, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.down {
		return d.owners[:1], errors.New("database 2: connection refused")
	}
	return append([]ledger.ShardOwner(nil), d.owners...), nil
}

// With the database holding shard 1's lease down, a refresh still learns
// that shard 0 moved, and shard 1 is still reached at its cached owner.
func TestClientSurvivesPartialDirectory(t *testing.T) {
	const shards = 2
	var ownsZero atomic.Bool
	ownsZero.Store(true)
	addr1 := serve(t, shards, func(s int) (ledger.Client, bool) { return echo{}, s == 1 || ownsZero.Load() })
	addr2 := serve(t, shards, func(s int) (ledger.Client, bool) { return echo{}, s == 0 })
	dir := &partialDirectory{owners: []ledger.ShardOwner{{Shard: 0, Owner: "1", Addr: addr1}, {Shard: 1, Owner: "1", Addr: addr1}}}
	c := ledgergrpc.NewClient(ledgergrpc.ClientConfig{Shards: shards, BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond}, dir)
	defer c.Close()
	ctx := context.Background()
	a0, a1 := accountOn(1000, 0, shards), accountOn(1000, 1, shards)
	for _, id := range []ledger.AccountID{a0, a1} {
		if as, err := c.LookupAccounts(ctx, []ledger.AccountID{id}); err != nil || len(as) != 1 {
			t.Fatalf("lookup %d: %v %v", id, as, err)
		}
	}
	// Shard 0 moves to the second server while the other database is down.
	dir.mu.Lock()
	dir.owners[0] = ledger.ShardOwner{Shard: 0, Owner: "2", Addr: addr2}
	dir.down = true
	dir.mu.Unlock()
	ownsZero.Store(false)
	for _, id := range []ledger.AccountID{a0, a1} {
		if as, err := c.LookupAccounts(ctx, []ledger.AccountID{id}); err != nil || len(as) != 1 {
			t.Fatalf("lookup %d with a database down: %v %v", id, as, err)
		}
	}
}
