package owner

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fundplatform/fund/internal/kafkabroker"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/internal/testseed"
	"github.com/fundplatform/fund/ledger"
	ledgergrpc "github.com/fundplatform/fund/ledger/grpc"
	"github.com/fundplatform/fund/ledger/kafka"
	"github.com/fundplatform/fund/ledger/outbox"
	"github.com/fundplatform/fund/ledger/postgres"
	"github.com/fundplatform/fund/ledger/xshard"
)

// sent is one transfer the load sent and what its caller learned.
type sent struct {
	t     ledger.Transfer
	cross bool
	acked bool // the caller got an answer that it applied (leg 1, for a saga)
	state xshard.State
	err   error
	took  time.Duration
}

// Three owner processes own 8 shards spread over three databases
// of one Postgres; clients reach them only through the routing gRPC client,
// same-shard transfers directly and cross-shard ones as sagas (leg 1 and
// leg 2 through the routing client, events through the outbox relay, a
// Kafka-protocol broker and a consumer group). Under load, one owner is
// killed with SIGKILL: its shards move to a live owner within 5 s, the
// load goes on through the client's retries, every acknowledged transfer
// is in the journal exactly once, no transfer is half-applied (a saga has
// leg 2 or its refund exactly once whenever leg 1 is in), in-transit nets
// to zero once the sagas end, and every shard's journal agrees with its
// balances.
func TestRoutedLoadSurvivesOwnerKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	const (
		shards      = 8
		users       = 48
		workers     = 8
		ackedBefore = 200 // acknowledged transfers before the kill
		ackedAfter  = 200 // and after its shards moved
		leaseTTL    = 2 * time.Second
		moveBound   = 5 * time.Second // the bound
	)
	seed := testseed.Seed(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	dsns := []string{pgtest.NewDatabase(t), pgtest.NewDatabase(t), pgtest.NewDatabase(t)}
	dbs, err := postgres.OpenDatabases(ctx, postgres.DatabasesConfig{DSNs: dsns, Shards: shards, ConnsMax: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer dbs.Close()

	owner := func(name string, shardsMax int) *exec.Cmd {
		return startOwner(t, child{DSNs: dsns, Shards: shards, LeaseTTL: leaseTTL, Owner: name, ShardsMax: shardsMax})
	}
	a := owner("a", 3)
	waitOwners(t, dbs, map[string]int{"a": 3}, 30*time.Second)
	b := owner("b", 3)
	waitOwners(t, dbs, map[string]int{"a": 3, "b": 3}, 30*time.Second)
	c := owner("c", 0)
	waitOwners(t, dbs, map[string]int{"a": 3, "b": 3, "c": 2}, 30*time.Second)
	// Leases (and so owners' addresses) live in each shard's own database.
	for i := 0; i < dbs.Len(); i++ {
		ls, err := dbs.Store(i).Leases(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range ls {
			if dbs.Map.DatabaseOf(l.Shard) != i || l.Addr == "" {
				t.Fatalf("database %d holds lease %+v; the map puts shard %d on database %d", i, l, l.Shard, dbs.Map.DatabaseOf(l.Shard))
			}
		}
	}

	client := ledgergrpc.NewClient(ledgergrpc.ClientConfig{Shards: shards}, dbs)
	defer client.Close()
	router := xshard.NewRouter(shards, client.ForShard)
	setupRouted(ctx, t, client, router, shards, users)
	stopSagas := startRoutedSagas(t, dbs, router, shards)
	defer stopSagas()

	// Load: each worker sends one transfer at a time and records what it
	// learned; half of them cross shards. It stops starting new ones when
	// told, and finishes the one it has started (the client's retries are
	// bounded, so that ends).
	var (
		mu     sync.Mutex
		log    []*sent
		acked  atomic.Int64
		stop   atomic.Bool
		wg     sync.WaitGroup
		userID = func(i int) ledger.AccountID { return 1000 + ledger.AccountID(i) }
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for !stop.Load() && ctx.Err() == nil {
				cross := rng.IntN(2) == 0
				dr := userID(rng.IntN(users))
				var cr ledger.AccountID
				for {
					cr = userID(rng.IntN(users))
					if cr != dr && (ledger.ShardOf(cr, shards) != ledger.ShardOf(dr, shards)) == cross {
						break
					}
				}
				s := &sent{cross: cross, t: ledger.Transfer{ID: ledger.NewTransferID(), DebitAccountID: dr, CreditAccountID: cr,
					Amount: 1 + rng.Int64N(1000), Asset: ledger.AssetCNY, Kind: 2}}
				t0 := time.Now()
				o, err := router.Transfer(ctx, s.t, 30*time.Second)
				s.err, s.state, s.took = err, o.State, time.Since(t0)
				switch {
				case err != nil:
				case o.Result.Applied():
					s.acked = true
					acked.Add(1)
				default:
					s.err = fmt.Errorf("refused: %s", o.Result)
				}
				mu.Lock()
				log = append(log, s)
				mu.Unlock()
			}
		}(w)
	}
	waitCount := func(what string, n int64) {
		t.Helper()
		for acked.Load() < n {
			if ctx.Err() != nil {
				stop.Store(true)
				wg.Wait()
				t.Fatalf("%s: %d acknowledged transfers of %d before the test's deadline", what, acked.Load(), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitCount("before the kill", ackedBefore)
	if err := a.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	took := waitOwners(t, dbs, map[string]int{"b": 3, "c": 5}, moveBound)
	t.Logf("after kill -9 of owner a under load, its 3 shards were owned by c in %s (lease TTL %s, bound %s)",
		took.Round(time.Millisecond), leaseTTL, moveBound)
	waitCount("after the move", acked.Load()+ackedAfter)
	stop.Store(true)
	wg.Wait()

	// Every saga ends: in-transit nets to zero across all databases.
	net := waitInTransitZero(ctx, t, dbs)
	// A caller asks the owners (over gRPC, after the move) how its saga
	// ended: every acknowledged one completed (no payee here is closed).
	for _, s := range log {
		if !s.acked || !s.cross {
			continue
		}
		if o, err := router.Status(ctx, s.t); err != nil || o.State != xshard.Completed {
			t.Errorf("status of saga %s: %+v %v, want completed", s.t.ID, o, err)
		}
	}
	stopSagas()
	// A clean stop checkpoints every balance and releases the leases.
	for _, p := range []*exec.Cmd{b, c} {
		if err := p.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	for name, p := range map[string]*exec.Cmd{"b": b, "c": c} {
		if err := p.Wait(); err != nil {
			t.Fatalf("owner %s's clean stop: %v", name, err)
		}
	}

	counts := journalCounts(ctx, t, dbs)
	checkSent(t, log, counts)
	for shard := 0; shard < shards; shard++ {
		rep, err := dbs.Verify(ctx, shard)
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK() {
			t.Fatalf("shard %d: journal and balances disagree: %+v", shard, rep)
		}
	}
	var (
		nAcked, nCross, nErr, nSlow int
		slowest                     time.Duration
	)
	for _, s := range log {
		slowest = max(slowest, s.took)
		if s.took > leaseTTL/2 {
			nSlow++ // waited for a shard to move: retried through the failover
		}
		if s.acked {
			nAcked++
			if s.cross {
				nCross++
			}
		} else {
			nErr++
		}
	}
	t.Logf("%d transfers sent: %d acknowledged (%d across shards), %d not acknowledged; %d waited over %s for a shard to move (slowest %s); in-transit net %v; journal agrees with balances on all %d shards of %d databases",
		len(log), nAcked, nCross, nErr, nSlow, leaseTTL/2, slowest.Round(time.Millisecond), net, shards, dbs.Len())
}

// fundingFor is a system account (no balance limit) on shard.
func fundingFor(shard, shards int) ledger.AccountID {
	for id := ledger.AccountID(1) << 40; ; id++ {
		if ledger.ShardOf(id, shards) == shard {
			return id
		}
	}
}

// setupRouted creates, through the routing client, a funding account per
// shard, the users (each funded with 1,000,000.00) and the in-transit
// accounts of every shard pair.
func setupRouted(ctx context.Context, t *testing.T, client *ledgergrpc.Client, router *xshard.Router, shards, users int) {
	t.Helper()
	for s := 0; s < shards; s++ {
		rs, err := client.CreateAccounts(ctx, []ledger.Account{{ID: fundingFor(s, shards), Asset: ledger.AssetCNY, Code: 1}})
		if err != nil || !rs[0].Result.Applied() {
			t.Fatalf("funding account of shard %d: %v %v", s, rs, err)
		}
	}
	for i := 0; i < users; i++ {
		id := 1000 + ledger.AccountID(i)
		rs, err := client.CreateAccounts(ctx, []ledger.Account{{ID: id, Asset: ledger.AssetCNY, Code: 10, Flags: ledger.DebitsMustNotExceedCredits}})
		if err != nil || !rs[0].Result.Applied() {
			t.Fatalf("account %d: %v %v", id, rs, err)
		}
		trs, err := client.CreateTransfers(ctx, []ledger.Transfer{{ID: ledger.DeriveTransferID("test.fund", fmt.Sprint(id)),
			DebitAccountID: fundingFor(ledger.ShardOf(id, shards), shards), CreditAccountID: id,
			Amount: 1_000_000_00, Asset: ledger.AssetCNY, Kind: 1}})
		if err != nil || !trs[0].Result.Applied() {
			t.Fatalf("fund %d: %v %v", id, trs, err)
		}
	}
	if err := router.EnsureInTransit(ctx, ledger.AssetCNY); err != nil {
		t.Fatal(err)
	}
	// Requests spanning shards are refused whole, before any shard sees them.
	x := ledger.Transfer{ID: ledger.NewTransferID(), DebitAccountID: fundingFor(0, shards), CreditAccountID: fundingFor(1, shards),
		Amount: 1, Asset: ledger.AssetCNY, Kind: 1}
	if _, err := client.CreateTransfers(ctx, []ledger.Transfer{x}); !errors.Is(err, ledger.ErrCrossShard) {
		t.Fatalf("cross-shard request through the client: %v, want ErrCrossShard", err)
	}
}

// startRoutedSagas runs the saga pipeline in the test process: the outbox
// relay over every database, a Kafka-protocol broker, and a consumer group
// applying leg 2 through the routing client.
func startRoutedSagas(t *testing.T, dbs *postgres.Databases, router *xshard.Router, shards int) (stop func()) {
	t.Helper()
	const topic = "ledger-events"
	broker, err := kafkabroker.Start(0, shards, topic)
	if err != nil {
		t.Fatal(err)
	}
	pub := kafka.NewPublisher(broker.Addrs(), topic)
	all := make([]int, shards)
	for i := range all {
		all[i] = i
	}
	relay := outbox.NewRelay(outbox.RelayConfig{Shards: all, PollInterval: 5 * time.Millisecond}, dbs, pub, nil)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); errs <- relay.Run(ctx) }()
	go func() {
		defer wg.Done()
		errs <- kafka.Consume(ctx, kafka.ConsumerConfig{Brokers: broker.Addrs(), Topic: topic, Group: "routed-xshard", InFlightMax: 64, Wants: router.Wants}, router.Handle)
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Errorf("saga pipeline: %v", err)
				}
			}
			_ = pub.Close()
			broker.Close()
		})
	}
}

// waitInTransitZero waits (bounded) until every saga ended: the in-transit
// accounts of all shards on all databases net to zero.
func waitInTransitZero(ctx context.Context, t *testing.T, dbs *postgres.Databases) map[ledger.Asset]int64 {
	t.Helper()
	end := time.Now().Add(time.Minute)
	for {
		net, err := dbs.NetByCode(ctx, xshard.KindOut)
		if err != nil {
			t.Fatal(err)
		}
		if net[ledger.AssetCNY] == 0 {
			return net
		}
		if time.Now().After(end) {
			t.Fatalf("in-transit still nets to %v a minute after the load", net)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// journalCounts returns how many journal entries each transfer id has,
// over every database.
func journalCounts(ctx context.Context, t *testing.T, dbs *postgres.Databases) map[ledger.TransferID]int {
	t.Helper()
	counts := map[ledger.TransferID]int{}
	for i := 0; i < dbs.Len(); i++ {
		rows, err := dbs.Store(i).Pool().Query(ctx, `SELECT id FROM transfers`)
		if err != nil {
			t.Fatal(err)
		}
		var id [16]byte
		if _, err := pgx.ForEachRow(rows, []any{&id}, func() error {
			counts[ledger.TransferID(id)]++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return counts
}

// checkSent holds the money rules against what the load learned: no id is
// in the journal twice; every acknowledged transfer is in it once; a saga
// whose leg 1 is in has exactly one of leg 2 and the refund (acknowledged
// or not: nothing is left half-applied), and an acknowledged saga that
// completed has its leg 2.
func checkSent(t *testing.T, log []*sent, counts map[ledger.TransferID]int) {
	t.Helper()
	for id, n := range counts {
		if n != 1 {
			t.Errorf("transfer %s is in the journal %d times", id, n)
		}
	}
	for _, s := range log {
		id := s.t.ID
		n := counts[id]
		if s.acked && n != 1 {
			t.Errorf("acknowledged transfer %s (cross-shard %v) is in the journal %d times", id, s.cross, n)
		}
		if !s.cross || n == 0 {
			continue
		}
		in := counts[ledger.DeriveTransferID("xshard.in", id.String())]
		back := counts[ledger.DeriveTransferID("xshard.back", id.String())]
		if in+back != 1 {
			t.Errorf("saga %s: leg 1 in the journal with %d leg 2 and %d refunds (acknowledged %v, err %v)", id, in, back, s.acked, s.err)
		}
		if s.acked && s.state == xshard.Completed && in != 1 {
			t.Errorf("saga %s completed for its caller but has no leg 2", id)
		}
	}
}
