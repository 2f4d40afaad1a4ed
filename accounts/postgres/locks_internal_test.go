package postgres

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
)

func TestLockKeys(t *testing.T) {
	// Customers and order keys live in their own ranges of the first key,
	// inside the accounts store's 0x6163 prefix, customers first.
	for _, id := range []accounts.CustomerID{1, 1<<32 - 1, 1 << 32, accounts.CustomerIDMax - 1} {
		k := customerLockKey(id)
		if k.a>>8 != lockSpaceCustomer>>8 || int64(uint8(k.a))<<32|int64(uint32(k.b)) != int64(id) {
			t.Errorf("customer %d: key %#x/%#x", id, k.a, k.b)
		}
	}
	for _, h := range []uint64{0, 1, 1<<40 - 1, 1<<64 - 1} {
		k := orderLockKey(h)
		if k.a>>8 != lockSpaceOrderKey>>8 || customerLockKey(accounts.CustomerIDMax-1).compare(k) >= 0 {
			t.Errorf("hash %#x: key %#x/%#x", h, k.a, k.b)
		}
	}
	// The hash is FNV-1a of the id's 8 bytes and the request id, the same in
	// every process.
	for _, k := range []orderKey{{0, ""}, {1, "a"}, {1, "b"}, {2, "a"}, {accounts.CustomerIDMax - 1, "req-0001"}} {
		h := fnv.New64a()
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(k.customer)))
		h.Write([]byte(k.request))
		if got := orderKeyHash(k.customer, k.request); got != h.Sum64() {
			t.Errorf("hash of %v: %#x, FNV-1a %#x", k, got, h.Sum64())
		}
	}
	// Sorted, repeats merged, exclusive winning.
	a, b, shared := lockArgs([]advisoryLock{
		{key: advisoryKey{3, 1}}, {key: advisoryKey{1, 2}, shared: true}, {key: advisoryKey{3, 1}, shared: true},
		{key: advisoryKey{1, 2}, shared: true}, {key: advisoryKey{1, -5}, shared: true},
	})
	if fmt.Sprint(a, b, shared) != "[1 1 3] [-5 2 1] [true true false]" {
		t.Errorf("lockArgs: %v %v %v", a, b, shared)
	}
}

// TestOrderKeysShareLocks makes every order key hash alike, so that every
// batch of two stores contends for one key lock: keys are still placed
// exactly once each, nothing deadlocks, and every caller of a key gets its
// one order.
func TestOrderKeysShareLocks(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stores []*Store
	for range 2 {
		st, err := Open(ctx, Config{DSN: dsn, ConnsMax: 4, OrderWriters: 3, OrderBatchMax: 8})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(st.Close)
		st.keyHash = func(accounts.CustomerID, string) uint64 { return 42 }
		stores = append(stores, st)
	}
	var custs []accounts.CustomerID
	for i := range 3 {
		c, _, err := stores[0].CreateCustomer(ctx, accounts.Customer{RequestID: fmt.Sprintf("c%d", i), Name: "n",
			CreatedAt: time.Now().UTC().Truncate(time.Microsecond)}, func(context.Context, accounts.Customer) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		custs = append(custs, c.ID)
	}
	const keys, callers = 30, 4
	var applies [keys]atomic.Int32
	type answer struct {
		o   accounts.Order
		err error
	}
	answers := make([][callers]answer, keys)
	var wg sync.WaitGroup
	for k := range keys {
		for i := range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := custs[k%len(custs)]
				o := &accounts.Order{CustomerID: c, RequestID: fmt.Sprintf("k%d", k), Kind: accounts.KindTopUp, Amount: 1,
					TradeDate: time.Date(2026, 11, 18, 0, 0, 0, 0, time.UTC), CreatedAt: time.Now().UTC().Truncate(time.Microsecond)}
				got, _, err := stores[(k+i)%2].PlaceOrder(ctx, o, []accounts.CustomerID{c},
					func(context.Context, []accounts.Customer) error {
						applies[k].Add(1)
						o.Status = accounts.OrderCompleted
						return nil
					})
				answers[k][i] = answer{got, err}
			}()
		}
	}
	wg.Wait()
	for k := range keys {
		if n := applies[k].Load(); n != 1 {
			t.Errorf("key %d applied %d times", k, n)
		}
		for i := range callers {
			if a := answers[k][i]; a.err != nil || a.o.ID == 0 || a.o != answers[k][0].o {
				t.Errorf("key %d caller %d: %+v, caller 0: %+v", k, i, a, answers[k][0])
			}
		}
	}
}
