package grpc_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/fundplatform/fund/ledger"
	ledgergrpc "github.com/fundplatform/fund/ledger/grpc"
)

// hang is a ledger.Client that never answers: an owner that stopped
// (SIGSTOP, a host gone quiet) as its callers see it. entered is told of
// every call it holds.
type hang struct{ entered chan<- struct{} }

func (h hang) wait(ctx context.Context) error {
	select {
	case h.entered <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return ctx.Err()
}

func (h hang) CreateAccounts(ctx context.Context, _ []ledger.Account) ([]ledger.AccountResult, error) {
	return nil, h.wait(ctx)
}
func (h hang) CreateTransfers(ctx context.Context, _ []ledger.Transfer) ([]ledger.TransferResult, error) {
	return nil, h.wait(ctx)
}
func (h hang) CloseAccounts(ctx context.Context, _ []ledger.AccountID) ([]ledger.AccountResult, error) {
	return nil, h.wait(ctx)
}
func (h hang) LookupAccounts(ctx context.Context, _ []ledger.AccountID) ([]ledger.Account, error) {
	return nil, h.wait(ctx)
}

func (d *directory) move(shard int, owner, addr string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.owners[shard] = ledger.ShardOwner{Shard: shard, Owner: owner, Addr: addr}
}

// An owner that stops answering is abandoned after the attempt timeout,
// not at the caller's deadline: once the shard's lease names another
// owner, the request goes there and succeeds, well within a deadline that
// the frozen owner alone would have used up.
func TestClientLeavesAFrozenOwner(t *testing.T) {
	const shards = 1
	entered := make(chan struct{}, 1)
	frozen := serve(t, shards, func(int) (ledger.Client, bool) { return hang{entered: entered}, true })
	live := serve(t, shards, func(int) (ledger.Client, bool) { return echo{}, true })
	dir := &directory{owners: []ledger.ShardOwner{{Shard: 0, Owner: "frozen", Addr: frozen}}}
	c := ledgergrpc.NewClient(ledgergrpc.ClientConfig{Shards: shards, AttemptTimeout: 200 * time.Millisecond,
		BackoffMin: time.Millisecond, BackoffMax: 20 * time.Millisecond}, dir)
	defer c.Close()
	go func() {
		<-entered // the request is held by the frozen owner: its lease expires, the shard moves
		dir.move(0, "live", live)
	}()
	// The deadline is the test's bound, far beyond what the move takes;
	// without the attempt timeout the call would wait all of it and fail.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	as, err := c.LookupAccounts(ctx, []ledger.AccountID{7})
	if err != nil || len(as) != 1 || as[0].ID != 7 {
		t.Fatalf("lookup across a frozen owner: %v %v", as, err)
	}
}

// When the shard's owner does not answer and its lease does not move
// before the caller's deadline, the call gives up with ErrUnreachable (a
// 503 at the gateway) while the caller still has time to answer, rather
// than ending in the caller's own DeadlineExceeded; a caller without a
// deadline is bounded by the attempts.
func TestClientGivesUpBeforeTheDeadline(t *testing.T) {
	const shards = 1
	frozen := serve(t, shards, func(int) (ledger.Client, bool) { return hang{}, true })
	dir := &directory{owners: []ledger.ShardOwner{{Shard: 0, Owner: "frozen", Addr: frozen}}}
	client := func(attemptsMax int) *ledgergrpc.Client {
		c := ledgergrpc.NewClient(ledgergrpc.ClientConfig{Shards: shards, AttemptsMax: attemptsMax, AttemptTimeout: 100 * time.Millisecond,
			BackoffMin: time.Millisecond, BackoffMax: 20 * time.Millisecond}, dir)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := client(1000).LookupAccounts(ctx, []ledger.AccountID{7})
	if !errors.Is(err, ledgergrpc.ErrUnreachable) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("frozen owner, 1s deadline: %v, want ErrUnreachable", err)
	}
	_, err = client(3).LookupAccounts(context.Background(), []ledger.AccountID{7})
	if err == nil || errors.Is(err, ledgergrpc.ErrUnreachable) {
		t.Fatalf("frozen owner, no deadline: %v, want the last attempt's error after 3 attempts", err)
	}
}

// breakers records the breakers the client asks for; the ones of the
// addresses in open refuse every call, and tell refused.
type breakers struct {
	mu       sync.Mutex
	open     map[string]bool
	made     []string
	forgot   []string
	answered map[string]int // attempts reported healthy, by address
	refused  chan string
}

type breaker struct {
	b    *breakers
	addr string
}

func (b *breakers) For(addr string) ledgergrpc.Breaker {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.made = append(b.made, addr)
	return breaker{b: b, addr: addr}
}

func (b *breakers) Forget(addr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.forgot = append(b.forgot, addr)
}

var errOpen = errors.New("breaker open")

func (br breaker) Allow() (func(bool), error) {
	b := br.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.open[br.addr] {
		select {
		case b.refused <- br.addr:
		default:
		}
		return nil, errOpen
	}
	return func(healthy bool) {
		b.mu.Lock()
		defer b.mu.Unlock()
		if healthy {
			b.answered[br.addr]++
		}
	}, nil
}

// An open breaker at the shard's old owner does not fail the request: the
// client waits (backed off, within the deadline) for the lease to move
// and calls the new owner, whose breaker is its own; the old owner's
// breaker is forgotten with its connection.
func TestClientBreaksPerOwner(t *testing.T) {
	const shards = 1
	dead := serve(t, shards, func(int) (ledger.Client, bool) { return echo{}, true })
	live := serve(t, shards, func(int) (ledger.Client, bool) { return echo{}, true })
	bs := &breakers{open: map[string]bool{dead: true}, answered: map[string]int{}, refused: make(chan string, 1)}
	dir := &directory{owners: []ledger.ShardOwner{{Shard: 0, Owner: "dead", Addr: dead}}}
	c := ledgergrpc.NewClient(ledgergrpc.ClientConfig{Shards: shards, Breakers: bs,
		BackoffMin: time.Millisecond, BackoffMax: 20 * time.Millisecond}, dir)
	defer c.Close()
	go func() {
		<-bs.refused
		dir.move(0, "live", live)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if as, err := c.LookupAccounts(ctx, []ledger.AccountID{7}); err != nil || len(as) != 1 {
		t.Fatalf("lookup with the old owner's breaker open: %v %v", as, err)
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if len(bs.made) != 2 || bs.made[0] != dead || bs.made[1] != live {
		t.Fatalf("breakers made for %v, want [%s %s]", bs.made, dead, live)
	}
	if len(bs.forgot) != 1 || bs.forgot[0] != dead {
		t.Fatalf("breakers forgotten %v, want [%s]", bs.forgot, dead)
	}
	if bs.answered[live] != 1 {
		t.Fatalf("the new owner's breaker was told %d healthy answers, want 1", bs.answered[live])
	}
}
