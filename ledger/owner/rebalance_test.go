package owner

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/internal/testseed"
	"github.com/fundplatform/fund/ledger"
	ledgergrpc "github.com/fundplatform/fund/ledger/grpc"
	"github.com/fundplatform/fund/ledger/postgres"
)

// warnings is a slog handler keeping the WARN and ERROR records.
type warnings struct {
	mu    sync.Mutex
	lines []string
}

func (w *warnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
	w.mu.Lock()
	w.lines = append(w.lines, b.String())
	w.mu.Unlock()
	return nil
}
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnings) WithGroup(string) slog.Handler      { return w }

// Ledger owner roles scale 3 -> 6 -> 3 on one database while transfers
// flow through the gateway's routing client (gRPC, leases as directory,
// its own retries): after each change the shards are spread evenly (the
// owner map is printed), no transfer fails, each move is a hand-off or a
// clean stop's release (the call that waited longest for a move took far
// less than the lease TTL: none waited for a lease to expire), nothing is
// logged at WARN or above, and the journal holds each acknowledged
// transfer once.
func TestOwnersScaleOutAndBackUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("runs six owners under load")
	}
	const shards, ttl, workers = 8, 3 * time.Second, 4
	seed := testseed.Seed(t)
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	dbs, err := postgres.OpenDatabases(ctx, postgres.DatabasesConfig{DSNs: []string{dsn}, Shards: shards, ConnsMax: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer dbs.Close()
	warns := &warnings{}
	owners := map[string]*Owner{}
	start := func(name string) {
		o, err := Start(ctx, Config{DSNs: []string{dsn}, ConnsMax: 6, Logger: slog.New(warns),
			Host: ledger.HostConfig{Owner: name, Shards: shards, LeaseTTL: ttl}})
		if err != nil {
			t.Fatal(err)
		}
		owners[name] = o
	}
	stop := func(name string) {
		if err := owners[name].Stop(); err != nil {
			t.Errorf("owner %s: %v", name, err)
		}
		delete(owners, name)
	}
	defer func() {
		for n := range owners {
			stop(n)
		}
	}()
	// even waits until the leases give every shard to a running owner that
	// serves it, with counts at most one apart, and returns the map.
	even := func() string {
		t.Helper()
		for end := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			ls, err := dbs.Leases(ctx)
			if err != nil {
				t.Fatal(err)
			}
			byOwner := map[string][]int{}
			for n := range owners {
				byOwner[n] = nil
			}
			ok := true
			for _, l := range ls {
				o, running := owners[l.Owner]
				if !l.Live || !running {
					ok = false
					continue
				}
				if _, serves := o.Host().Client(l.Shard); !serves {
					ok = false
				}
				byOwner[l.Owner] = append(byOwner[l.Owner], l.Shard)
			}
			lo, hi := shards, 0
			var names []string
			for n, s := range byOwner {
				lo, hi = min(lo, len(s)), max(hi, len(s))
				names = append(names, n)
			}
			sort.Strings(names)
			var b strings.Builder
			for _, n := range names {
				fmt.Fprintf(&b, "%s:%v(%d) ", n, byOwner[n], len(byOwner[n]))
			}
			if ok && hi-lo <= 1 {
				return strings.TrimSpace(b.String())
			}
			if time.Now().After(end) {
				t.Fatalf("not spread evenly: %s", b.String())
			}
		}
	}
	for _, n := range []string{"a", "b", "c"} {
		start(n)
	}
	t.Logf("3 owners: %s", even())

	client := ledgergrpc.NewClient(ledgergrpc.ClientConfig{Shards: shards}, dbs)
	defer client.Close()
	pairs := make([][2]ledger.AccountID, shards)
	for s := range pairs {
		var ids []ledger.AccountID
		for id := ledger.AccountID(1); len(ids) < 2; id++ {
			if ledger.ShardOf(id, shards) == s {
				ids = append(ids, id)
			}
		}
		pairs[s] = [2]ledger.AccountID{ids[0], ids[1]}
		if _, err := client.CreateAccounts(ctx, []ledger.Account{{ID: ids[0], Asset: ledger.AssetCNY}, {ID: ids[1], Asset: ledger.AssetCNY}}); err != nil {
			t.Fatal(err)
		}
	}
	var (
		stopLoad      atomic.Bool
		wg            sync.WaitGroup
		mu            sync.Mutex
		acked, failed int
		firstErr      error
		slowest       time.Duration
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for !stopLoad.Load() {
				s := rng.IntN(shards)
				tr := ledger.Transfer{ID: ledger.NewTransferID(), DebitAccountID: pairs[s][0], CreditAccountID: pairs[s][1],
					Amount: 1 + rng.Int64N(100), Asset: ledger.AssetCNY, Kind: 1}
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second) // a gateway request's deadline
				t0 := time.Now()
				rs, err := client.CreateTransfers(rctx, []ledger.Transfer{tr})
				took := time.Since(t0)
				cancel()
				mu.Lock()
				slowest = max(slowest, took)
				if err == nil && rs[0].Result.Applied() {
					acked++
				} else {
					failed++
					if firstErr == nil {
						firstErr = fmt.Errorf("%v %v", rs, err)
					}
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	t0 := time.Now()
	for _, n := range []string{"d", "e", "f"} {
		start(n)
	}
	m := even()
	t.Logf("6 owners, spread after %s: %s", time.Since(t0).Round(time.Millisecond), m)
	time.Sleep(time.Second)
	t0 = time.Now()
	for _, n := range []string{"d", "e", "f"} {
		stop(n)
	}
	m = even()
	t.Logf("3 owners again, spread after %s: %s", time.Since(t0).Round(time.Millisecond), m)
	time.Sleep(500 * time.Millisecond)
	stopLoad.Store(true)
	wg.Wait()

	t.Logf("transfers through the routing client: %d acknowledged, %d failed; the slowest call took %s (lease TTL %s)",
		acked, failed, slowest.Round(time.Millisecond), ttl)
	if failed > 0 {
		t.Errorf("%d transfers failed, first: %v", failed, firstErr)
	}
	if slowest >= ttl {
		t.Errorf("a call took %s, as long as the lease TTL: a move waited for a lease to expire", slowest)
	}
	warns.mu.Lock()
	if len(warns.lines) > 0 {
		t.Errorf("%d warnings, first: %s", len(warns.lines), warns.lines[0])
	}
	warns.mu.Unlock()
	var n int
	if err := dbs.Store(0).Pool().QueryRow(ctx, `SELECT count(*) FROM transfers WHERE kind = 1`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != acked {
		t.Errorf("journal holds %d transfers, %d were acknowledged", n, acked)
	}
}
