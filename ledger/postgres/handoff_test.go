package postgres_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

// A hand-off: the requester is recorded on the lease, the holder learns it
// at its renewal, releases, and the released lease is the requester's to
// take at once (a third party is refused meanwhile), with a greater epoch;
// taking it clears the request.
func TestLeaseHandOff(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := openStore(t)
	const ttl = time.Minute // nothing here may depend on expiry
	e1, ok, err := store.AcquireLease(ctx, 0, "a", "a:1", ttl)
	if err != nil || !ok {
		t.Fatalf("a acquires: %v %v", ok, err)
	}
	if to, err := store.RenewLease(ctx, 0, "a", e1, ttl); err != nil || to != "" {
		t.Fatalf("renew before any request: %q %v", to, err)
	}
	if ok, err := store.RequestHandoff(ctx, 0, "b", ttl, false); err != nil || !ok {
		t.Fatalf("b asks: %v %v", ok, err)
	}
	// A host's request does not override another pending one; settlement's does.
	if ok, err := store.RequestHandoff(ctx, 0, "c", ttl, false); err != nil || ok {
		t.Fatalf("c asks over b's pending request: %v %v, want refused", ok, err)
	}
	if to, err := store.RenewLease(ctx, 0, "a", e1, ttl); err != nil || to != "b" {
		t.Fatalf("renew with b's request pending: %q %v, want b", to, err)
	}
	if err := store.ReleaseLease(ctx, 0, "a", e1); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := store.AcquireLease(ctx, 0, "c", "c:1", ttl); err != nil || ok {
		t.Fatalf("c takes a lease reserved for b: %v %v", ok, err)
	}
	e2, ok, err := store.AcquireLease(ctx, 0, "b", "b:1", ttl)
	if err != nil || !ok || e2 <= e1 {
		t.Fatalf("b takes its hand-off: epoch %d (was %d) %v %v", e2, e1, ok, err)
	}
	if to, err := store.RenewLease(ctx, 0, "b", e2, ttl); err != nil || to != "" {
		t.Fatalf("the request outlived the take: %q %v", to, err)
	}
	if ok, err := store.RequestHandoff(ctx, 0, "b", ttl, false); err != nil || ok {
		t.Fatalf("b asks for its own shard: %v %v, want refused", ok, err)
	}
	if ok, err := store.RequestHandoff(ctx, 0, "c", ttl, false); err != nil || !ok {
		t.Fatal("c asks b", ok, err)
	}
	if ok, err := store.RequestHandoff(ctx, 0, "settle", ttl, true); err != nil || !ok {
		t.Fatal("settlement overrides c's request", ok, err)
	}
	if to, _ := store.RenewLease(ctx, 0, "b", e2, ttl); to != "settle" {
		t.Fatalf("renew: %q, want settle", to)
	}
	// A reservation lapses with its request: then anybody takes the shard.
	if ok, err := store.RequestHandoff(ctx, 0, "d", 50*time.Millisecond, true); err != nil || !ok {
		t.Fatal(ok, err)
	}
	if err := store.ReleaseLease(ctx, 0, "b", e2); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if _, ok, err := store.AcquireLease(ctx, 0, "c", "c:1", ttl); err != nil || !ok {
		t.Fatalf("c takes a lease whose reservation lapsed: %v %v", ok, err)
	}
}

// HandOffLease takes a free shard at once, waits for a holder that answers
// and gives up (ok false) after the wait on one that does not.
func TestHandOffLeaseWaitsForTheHolder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := openStore(t)
	const ttl = time.Minute
	if _, from, ok, err := store.HandOffLease(ctx, 0, "settle", ttl, time.Second); err != nil || !ok || from != "" {
		t.Fatalf("free shard: %q %v %v", from, ok, err)
	}

	// A holder that answers at its renewals, every 20 ms.
	e, _, _ := store.AcquireLease(ctx, 1, "host", "h:1", ttl)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if to, err := store.RenewLease(ctx, 1, "host", e, ttl); err == nil && to != "" {
				_ = store.ReleaseLease(ctx, 1, "host", e)
				return
			}
		}
	}()
	start := time.Now()
	_, from, ok, err := store.HandOffLease(ctx, 1, "settle", ttl, 10*time.Second)
	close(stop)
	wg.Wait()
	if err != nil || !ok || from != "host" {
		t.Fatalf("answering holder: %q %v %v", from, ok, err)
	}
	t.Logf("hand-off from a holder renewing every 20 ms took %s", time.Since(start).Round(time.Millisecond))

	// A holder that never answers (frozen): the wait ends, nothing taken.
	if _, _, _ = store.AcquireLease(ctx, 2, "frozen", "f:1", ttl); true {
		start := time.Now()
		if _, from, ok, err := store.HandOffLease(ctx, 2, "settle", ttl, 300*time.Millisecond); err != nil || ok || from != "frozen" {
			t.Fatalf("frozen holder: %q %v %v, want not taken", from, ok, err)
		}
		if took := time.Since(start); took < 300*time.Millisecond {
			t.Fatalf("gave up after %s", took)
		}
	}
}

// Requests, releases and acquisitions are notified; renewals are not.
func TestWatchLeases(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store := openStore(t)
	got := make(chan int, 64)
	done := make(chan error, 1)
	go func() { done <- store.WatchLeases(ctx, func(shard int) { got <- shard }) }()
	e, _, err := store.AcquireLease(ctx, 3, "a", "", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// The watch may not be listening yet: ask until a notice comes, then
	// let the rest of them arrive.
	for i := 0; ; i++ {
		if _, err := store.RequestHandoff(ctx, 3, "b", time.Minute, true); err != nil {
			t.Fatal(err)
		}
		select {
		case <-got:
		case <-time.After(100 * time.Millisecond):
			if i < 50 {
				continue
			}
			t.Fatal("no notice of a request")
		}
		break
	}
	quiet := func(what string) {
		t.Helper()
		select {
		case s := <-got:
			t.Fatalf("a notice (shard %d) for %s", s, what)
		case <-time.After(200 * time.Millisecond):
		}
	}
	notified := func(what string) {
		t.Helper()
		select {
		case s := <-got:
			if s != 3 {
				t.Fatalf("notice of %s for shard %d, want 3", what, s)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no notice of %s", what)
		}
	}
	for len(got) > 0 || func() bool { time.Sleep(200 * time.Millisecond); return len(got) > 0 }() {
		<-got
	}
	if _, err := store.RenewLease(ctx, 3, "a", e, time.Minute); err != nil {
		t.Fatal(err)
	}
	quiet("a renewal")
	if err := store.ReleaseLease(ctx, 3, "a", e); err != nil {
		t.Fatal(err)
	}
	notified("a release")
	if _, ok, err := store.AcquireLease(ctx, 3, "b", "", time.Minute); err != nil || !ok {
		t.Fatal(ok, err)
	}
	notified("an acquisition")
	quiet("nothing")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Hosts are live while their heartbeat lasts and gone once they leave.
func TestHostHeartbeats(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := openStore(t)
	for _, h := range []string{"a", "b"} {
		if err := store.Heartbeat(ctx, h, h+":1", time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.Heartbeat(ctx, "short", "", 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if err := store.LeaveHosts(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	live, err := store.LiveHosts(ctx)
	if err != nil || !slices.Equal(live, []string{"a"}) {
		t.Fatalf("live hosts %q %v, want [a]", live, err)
	}
}
