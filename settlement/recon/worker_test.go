package recon_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/settlement/recon"
)

// fakeStore records what the worker asks of it.
type fakeStore struct {
	mu       sync.Mutex
	gate     chan struct{} // Apply waits on it when set
	held     int           // events of the write waiting at the gate
	batches  []int
	fail     error
	compared map[string]int
	froms    map[string][]time.Time
}

func (f *fakeStore) Apply(ctx context.Context, events []ledger.Event) ([]recon.Outcome, error) {
	if f.gate != nil {
		f.mu.Lock()
		f.held += len(events)
		f.mu.Unlock()
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.batches = append(f.batches, len(events))
	if f.fail != nil {
		return nil, f.fail
	}
	outs := make([]recon.Outcome, len(events))
	for i := range outs {
		outs[i] = recon.Applied
	}
	return outs, nil
}

func (f *fakeStore) Compare(_ context.Context, day time.Time, opts recon.CompareOptions) (*recon.Report, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.compared[day.Format(time.DateOnly)]++
	if f.froms == nil {
		f.froms = map[string][]time.Time{}
	}
	f.froms[day.Format(time.DateOnly)] = append(f.froms[day.Format(time.DateOnly)], opts.From)
	return &recon.Report{BusinessDate: day.Format(time.DateOnly), Cutoff: opts.Cutoff, InTransit: map[string]recon.Amount{}}, nil
}

func (f *fakeStore) OpenSagas(context.Context, time.Time, int) ([]recon.Saga, error) { return nil, nil }
func (f *fakeStore) Seen(context.Context, []ledger.TransferID) (map[ledger.TransferID]bool, error) {
	return nil, nil
}
func (f *fakeStore) SettleSagas(context.Context, []ledger.TransferID, []recon.Break) (int64, error) {
	return 0, nil
}
func (f *fakeStore) Breaks(context.Context, recon.BreakFilter) ([]recon.Break, error) {
	return nil, nil
}
func (f *fakeStore) OpenBreaks(context.Context) (map[recon.BreakKind]int64, error) {
	return map[recon.BreakKind]int64{}, nil
}
func (f *fakeStore) BankMovements(context.Context, ledger.AccountID, time.Time) ([]recon.Movement, error) {
	return nil, nil
}
func (f *fakeStore) SaveStatement(context.Context, recon.StatementImport) error { return nil }

func event() ledger.Event {
	return ledger.Event{Version: ledger.EventVersion, ID: ledger.NewTransferID(), Amount: 1, Asset: ledger.AssetCNY,
		DebitAccountID: 1, CreditAccountID: 2}
}

// runWorker runs w with a consumer that hands events from feed to many
// concurrent handlers and reports each result on results.
func runWorker(t *testing.T, store *fakeStore, feed <-chan ledger.Event, results chan<- error, now func() time.Time, compareEvery time.Duration) (w *recon.Worker, stop func() error) {
	t.Helper()
	w, err := recon.NewWorker(recon.WorkerConfig{
		Consume: func(ctx context.Context, h func(context.Context, ledger.Event) error) error {
			var wg sync.WaitGroup
			defer wg.Wait()
			for {
				select {
				case <-ctx.Done():
					return nil
				case e := <-feed:
					wg.Add(1)
					go func() { defer wg.Done(); results <- h(ctx, e) }()
				}
			}
		},
		BatchMax: 64, CompareEvery: compareEvery, Now: now, Grace: time.Minute, DaysBack: 2,
	}, recon.Single(store), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return w, func() error { cancel(); return <-done }
}

// Events handled at once wait together for one write: while one write is
// held up, the events behind it form full batches.
func TestWorkerBatches(t *testing.T) {
	store := &fakeStore{gate: make(chan struct{}), compared: map[string]int{}}
	feed, results := make(chan ledger.Event), make(chan error, 1000)
	w, stop := runWorker(t, store, feed, results, nil, -1)
	const n = 200
	for i := 0; i < n; i++ {
		feed <- event()
	}
	// The first write is held at the gate; the others queue behind it.
	for {
		store.mu.Lock()
		held := store.held
		store.mu.Unlock()
		if held > 0 && held+w.Queued() == n {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(store.gate)
	for i := 0; i < n; i++ {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	total, biggest := 0, 0
	for _, b := range store.batches {
		total += b
		biggest = max(biggest, b)
	}
	// The held write took what had arrived by then (a few events, or a
	// whole batch when the feed was quick); every batch behind it is full
	// but the last.
	ok := total == n && biggest == 64 && len(store.batches) <= 5
	for i := 1; i < len(store.batches)-1; i++ {
		ok = ok && store.batches[i] == 64
	}
	if !ok {
		t.Fatalf("batches %v: want %d events in all, full batches of 64 behind the held one", store.batches, n)
	}
}

// A failed write fails every event of its batch (the consumer retries
// them); a malformed event is refused alone, before any write.
func TestWorkerErrors(t *testing.T) {
	boom := errors.New("database away")
	store := &fakeStore{fail: boom, compared: map[string]int{}}
	feed, results := make(chan ledger.Event), make(chan error, 10)
	_, stop := runWorker(t, store, feed, results, nil, -1)
	defer stop()
	feed <- event()
	if err := <-results; !errors.Is(err, boom) {
		t.Fatalf("got %v, want %v", err, boom)
	}
	bad := event()
	bad.PendingID = "not-a-uuid"
	feed <- bad
	if err := <-results; !errors.Is(err, ledger.ErrInvariantBroke) {
		t.Fatalf("malformed event: %v", err)
	}
	old := event()
	old.Version = 99
	feed <- old
	if err := <-results; !errors.Is(err, ledger.ErrInvariantBroke) {
		t.Fatalf("unknown version: %v", err)
	}
	if len(store.batches) != 1 {
		t.Fatalf("malformed events reached the store: %v", store.batches)
	}
}

// The timer compares today and the open past days; a past day is compared
// once after it closed (the whole day), not on every tick; after a clean
// comparison of today the next looks at the window after its cutoff.
func TestWorkerComparesPastDaysOnce(t *testing.T) {
	store := &fakeStore{compared: map[string]int{}}
	feed, results := make(chan ledger.Event), make(chan error, 1)
	noon := recon.DayStart(time.Date(2026, 11, 11, 0, 0, 0, 0, time.UTC)).Add(12 * time.Hour)
	_, stop := runWorker(t, store, feed, results, func() time.Time { return noon }, 10*time.Millisecond)
	deadline := time.Now().Add(30 * time.Second)
	for {
		store.mu.Lock()
		today := store.compared["2026-11-11"]
		store.mu.Unlock()
		if today >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("today compared %d times", today)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if store.compared["2026-11-10"] != 1 || store.compared["2026-11-09"] != 1 || store.compared["2026-11-08"] != 0 {
		t.Fatalf("compared %v: want each of the two past days once", store.compared)
	}
	cutoff := noon.Add(-time.Minute)
	for day, froms := range store.froms {
		for i, from := range froms {
			want := time.Time{}
			if day == "2026-11-11" && i > 0 {
				want = cutoff
			}
			if !from.Equal(want) {
				t.Fatalf("%s comparison %d from %s, want %s", day, i, from, want)
			}
		}
	}
}

// A worker that does not get the compare lock skips the round.
func TestWorkerCompareLock(t *testing.T) {
	store := &fakeStore{compared: map[string]int{}}
	var tries atomic.Int64
	w, err := recon.NewWorker(recon.WorkerConfig{
		Consume: func(ctx context.Context, _ func(context.Context, ledger.Event) error) error {
			<-ctx.Done()
			return nil
		},
		CompareEvery: 5 * time.Millisecond,
		CompareLock: func(context.Context) (func(), bool, error) {
			tries.Add(1)
			return nil, false, nil
		},
	}, recon.Single(store), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	for tries.Load() < 3 {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(store.compared) != 0 {
		t.Fatalf("compared %v without the lock", store.compared)
	}
}
