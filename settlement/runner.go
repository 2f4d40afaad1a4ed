package settlement

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/ledger"
)

// Settler is what callers outside the package need: run a date, ask how a
// date went. The gateway's admin API and `fundd dev` hold one; *Runner
// implements it.
type Settler interface {
	// Settle runs (or resumes, or returns the finished result of) the
	// settlement of in.Date.
	Settle(ctx context.Context, in Input) (Summary, error)
	// Status returns a date's run: ok false when never run (a refused run
	// records nothing); an unfinished one says why with Failure, Status()
	// (RUNNING or FAILED) and Note() (the cause and the command that
	// resolves it).
	Status(ctx context.Context, date time.Time) (st RunState, ok bool, err error)
}

var _ Settler = (*Runner)(nil)

// YieldPublisher records the fund's income per 10,000 shares and 7-day
// yield (*accounts.Service).
type YieldPublisher interface {
	PublishFundYield(ctx context.Context, date time.Time, incomePer10k int64) (accounts.FundYield, error)
}

// EventPublisher sends settlement events (settlement/settlekafka). Publish
// returns nil only when every event was acknowledged; events carry stable
// ids, so a re-run's repeat is recognisable.
type EventPublisher interface {
	PublishSettlement(ctx context.Context, events []Event) error
}

// Event is what the run tells other domains: one per shard settled and one
// for the run.
type Event struct {
	ID      string    `json:"id"`
	Type    string    `json:"type"` // "settlement.shard" or "settlement.completed"
	Date    string    `json:"date"`
	Shard   int       `json:"shard"`
	Summary *Summary  `json:"summary,omitempty"`
	Income  int64     `json:"income,omitempty"`
	Holders int64     `json:"holders,omitempty"`
	At      time.Time `json:"-"`
}

// Progress shows a run's progress (cmd/fundctl draws a bar). Calls come
// from several goroutines; the Runner serialises them.
type Progress interface {
	// Phase starts a phase over total accounts (or orders).
	Phase(name string, total int64)
	// Add counts n more done in the current phase.
	Add(n int64)
	// ShardDone reports one shard's part of the phase.
	ShardDone(shard int, n int64, took time.Duration)
	// End closes the phase.
	End()
}

// Summary is what a run did.
type Summary struct {
	Date              string        `json:"date"`
	Input             string        `json:"input"`
	Shards            int           `json:"shards"`
	Holders           int64         `json:"holders"`
	TotalShares       int64         `json:"total_shares"`
	FundIncome        int64         `json:"fund_income"`
	IncomePer10k      int64         `json:"income_per_10k"`
	SevenDayYield     string        `json:"seven_day_yield,omitempty"`
	IncomeEntries     int64         `json:"income_entries"`
	IncomePaid        int64         `json:"income_paid"`     // sum of positive income
	IncomeDeducted    int64         `json:"income_deducted"` // sum of deductions, positive
	Absorbed          int64         `json:"absorbed"`        // deductions the fund took over
	Subscriptions     int64         `json:"subscriptions"`   // customers whose subscriptions were confirmed
	SubscribedShares  int64         `json:"subscribed_shares"`
	Redemptions       int64         `json:"redemptions"` // customers whose standard redemptions were paid
	RedeemedCash      int64         `json:"redeemed_cash"`
	File              string        `json:"file"`
	FileSHA256        string        `json:"file_sha256"`
	FileCustomers     int64         `json:"file_customers"`
	Took              time.Duration `json:"took_ns"`
	TookIncomeBooking time.Duration `json:"took_income_booking_ns"`
}

// Config of a Runner.
type Config struct {
	// Shards is the number of logical ledger shards (fundd ledger --shards);
	// 0 = as many as the ledger's tables show.
	Shards int
	// Parallel shards settled at once; 0 = 2.
	Parallel int
	// Owner names the run in the shard leases; "" = settlement-<host>-<pid>.
	Owner string
	// LeaseTTL of the shard leases, renewed every third of it; 0 = 30 s.
	LeaseTTL time.Duration
	// The run holds each shard only for each of its steps on it (close,
	// orders, snapshot, income), taking it from its ledger host by a
	// hand-off and giving it back at once, so that orders keep flowing
	// with a short pause per shard (on a day of negative income, from the
	// snapshot to the income booking: see dateRun). HandOffWait is how
	// long a holder gets to hand a shard over; 0 = 10 s (twice the ledger
	// hosts' default lease TTL).
	HandOffWait time.Duration
	// TakeShards fences a holder that did not hand its shard over within
	// HandOffWait (frozen, or a writer that answers no hand-offs). Without
	// it a run waits up to ShardWait for each shard.
	TakeShards bool
	ShardWait  time.Duration // 0 = 1 minute
	// FileDir is where custodian files go; "" = current directory.
	FileDir string
	// Now is the clock; tests replace it.
	Now func() time.Time
	// AllowEarly lets a date run before its 15:00 cut-off has passed
	// (tests, drills).
	AllowEarly bool
	// Failpoint, when set, is called at named points; an error it returns
	// aborts the run there, as a crash would (crash tests).
	Failpoint func(point string) error
	// Quiesce, when set, is called before the run takes the shards, to
	// stop ledger writers living in the same process (fundd dev), and the
	// resume it returns after the run gave the shards back, to start them
	// again at the shards' new epochs. Without it, such writers are fenced
	// (TakeShards) and must be restarted by their owner.
	Quiesce func(ctx context.Context) (resume func(ctx context.Context) error, err error)
	// Observe, when set, is told the summary of every run that finished
	// (metrics: fund_settlement_last_success_timestamp_seconds,
	// fund_settlement_accounts_total).
	Observe func(Summary)
}

// Runner runs settlement for business dates.
type Runner struct {
	cfg    Config
	store  Store
	yields YieldPublisher
	events EventPublisher // nil = publish nothing
	log    *slog.Logger

	mu sync.Mutex // one run at a time per Runner; the leases exclude other processes
}

// NewRunner returns a runner. events may be nil.
func NewRunner(cfg Config, store Store, yields YieldPublisher, events EventPublisher, logger *slog.Logger) *Runner {
	if cfg.Parallel <= 0 {
		cfg.Parallel = 2
	}
	if cfg.Owner == "" {
		host, _ := os.Hostname()
		cfg.Owner = "settlement-" + host + "-" + strconv.Itoa(os.Getpid())
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 30 * time.Second
	}
	if cfg.ShardWait <= 0 {
		cfg.ShardWait = time.Minute
	}
	if cfg.HandOffWait <= 0 {
		cfg.HandOffWait = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Runner{cfg: cfg, store: store, yields: yields, events: events, log: logger}
}

// Status implements Settler.
func (r *Runner) Status(ctx context.Context, date time.Time) (RunState, bool, error) {
	return r.store.Run(ctx, accounts.DateOf(date))
}

// Settle implements Settler: Run without progress.
func (r *Runner) Settle(ctx context.Context, in Input) (Summary, error) { return r.Run(ctx, in, nil) }

func (r *Runner) fail(point string) error {
	if r.cfg.Failpoint == nil {
		return nil
	}
	if err := r.cfg.Failpoint(point); err != nil {
		return fmt.Errorf("at %s: %w", point, err)
	}
	return nil
}

// Run settles in.Date, one step after another (each a method of dateRun):
//
//  1. close: take every shard's lease (fencing ledger writers), bring
//     stored balances up to the journal, fix each shard's cut;
//  2. orders: confirm the subscriptions and pay the standard redemptions
//     due;
//  3. snapshot the holders: confirmed shares at the cut, less shares held
//     by redemptions made before the date;
//  4. allocate the day's income over all of them (Allocate) and split it
//     by shard; deductions a holder cannot bear go to the rounding account;
//  5. income: book it per shard with the customers' daily income;
//  6. yield: publish the income per 10,000 shares and the 7-day yield;
//  7. file: write the custodian file;
//  8. events: publish the settlement events;
//  9. finish: record the summary.
//
// Each step is recorded in the store in the same transaction as what it
// wrote, so a re-run after a crash anywhere skips what was done and writes
// the rest exactly once. A finished date returns its stored summary.
func (r *Runner) Run(ctx context.Context, in Input, progress Progress) (_ Summary, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	start := time.Now()
	if in, err = r.checkInput(in); err != nil {
		return Summary{}, err
	}
	if progress == nil {
		progress = nopProgress{}
	}
	if r.cfg.Shards <= 0 {
		n, err := r.store.Shards(ctx)
		if err != nil {
			return Summary{}, err
		}
		r.cfg.Shards = max(n, 1)
	}
	st, err := r.store.OpenRun(ctx, in, r.cfg.Shards)
	if err != nil {
		return Summary{}, err
	}
	if st.Completed {
		return st.Summary, nil
	}

	d := &dateRun{r: r, in: in, p: &lockedProgress{p: progress}, start: start,
		sum: Summary{Date: in.Date.Format(time.DateOnly), Input: in.String(), Shards: r.cfg.Shards}}
	defer func() {
		if herr := d.handBack(ctx); herr != nil && err == nil {
			err = herr
		}
	}()
	for _, step := range dateRunSteps {
		if err := step(d, ctx); err != nil {
			return Summary{}, r.failRun(ctx, in, err)
		}
	}
	return d.sum, nil
}

// failRun records why the run of in stopped (Store.FailRun), so that the
// date's status, and the refusal of the dates after it, say why and what
// resolves it, and returns the error for the caller: a refused income
// with what resolves it added to its text, any other error as it is (its
// text may be a driver's, not for an API's user). A record that cannot be
// written is logged.
func (r *Runner) failRun(ctx context.Context, in Input, err error) error {
	f := failureOf(in, err)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	if ferr := r.store.FailRun(rctx, in.Date, f); ferr != nil {
		r.log.Warn("record the settlement failure", "date", in.Date.Format(time.DateOnly), "err", ferr)
	}
	r.log.Error("settlement run failed", "date", in.Date.Format(time.DateOnly), "err", err, "resolve", f.Resolve)
	if f.InputRefused {
		return fmt.Errorf("%w. To resolve: %s", err, f.Resolve)
	}
	return err
}

// checkInput normalises in.Date and refuses an input out of range or a
// date whose cut-off has not passed (unless Config.AllowEarly).
func (r *Runner) checkInput(in Input) (Input, error) {
	in.Date = accounts.DateOf(in.Date)
	if in.Date.IsZero() {
		return in, ErrInvalidDate
	}
	if !in.PerTenK && (in.IncomeTotal < -IncomeTotalMaxFen || in.IncomeTotal > IncomeTotalMaxFen) {
		return in, fmt.Errorf("income %d fen: %w", in.IncomeTotal, ErrInvalidIncome)
	}
	if in.PerTenK && (in.IncomePer10k < -accounts.IncomePer10kMax || in.IncomePer10k > accounts.IncomePer10kMax) {
		return in, fmt.Errorf("income per 10k %d: %w", in.IncomePer10k, ErrInvalidIncome)
	}
	cutoff := time.Date(in.Date.Year(), in.Date.Month(), in.Date.Day(), accounts.CutOffHour, 0, 0, 0, ledger.BusinessZone())
	if now := r.cfg.Now(); !r.cfg.AllowEarly && now.Before(cutoff) {
		return in, Refusef(ErrTooEarly, "%s cannot settle before its cut-off %s has passed (it is %s now)",
			in.Date.Format(time.DateOnly), cstMinute(cutoff), cstMinute(now))
	}
	return in, nil
}

// releaseTimeout bounds giving the leases back.
const releaseTimeout = 10 * time.Second

func (r *Runner) release(ctx context.Context, leases []Lease) {
	ctx, cancel := context.WithTimeout(ctx, releaseTimeout)
	defer cancel()
	for _, l := range leases {
		if l.Owner == "" {
			continue // not taken
		}
		if err := r.store.ReleaseShard(ctx, l); err != nil {
			r.log.Warn("release shard", "shard", l.Shard, "err", err)
		}
	}
}

// takeShard takes one shard for the run (Store.TakeShard: a hand-off,
// then with TakeShards a takeover), trying again while it is busy, up to
// ShardWait.
func (r *Runner) takeShard(ctx context.Context, shard int) (Lease, error) {
	deadline := time.Now().Add(r.cfg.ShardWait)
	for {
		l, err := r.store.TakeShard(ctx, shard, r.cfg.Owner, r.cfg.LeaseTTL, r.cfg.HandOffWait, r.cfg.TakeShards)
		if err == nil {
			return l, nil
		}
		if !errors.Is(err, ErrShardBusy) || time.Now().After(deadline) {
			return Lease{}, fmt.Errorf("take shard %d: %w", shard, err)
		}
		select {
		case <-ctx.Done():
			return Lease{}, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// withShard holds one shard for fn: taken from its host by a hand-off,
// renewed while fn runs, and released at once after it, so that the
// host takes it back at once. step names it in the log, with the pause
// the ledger saw: from the hand-off asked for to the release.
func (r *Runner) withShard(ctx context.Context, shard int, step string, fn func(ctx context.Context, l Lease) error) error {
	start := time.Now()
	l, err := r.takeShard(ctx, shard)
	if err != nil {
		return err
	}
	taken := time.Since(start)
	stop := r.renewing(ctx, []Lease{l})
	err = fn(ctx, l)
	stop()
	r.release(context.WithoutCancel(ctx), []Lease{l})
	r.log.Info("settlement step held a shard", "step", step, "shard", shard, "from", l.From,
		"hand_off", taken, "held", time.Since(start))
	return err
}

// takeShards owns every shard (each by a hand-off) and keeps the leases
// renewed until the returned stop is called (it waits for the renewer).
func (r *Runner) takeShards(ctx context.Context) ([]Lease, func(), error) {
	leases := make([]Lease, r.cfg.Shards)
	for shard := 0; shard < r.cfg.Shards; shard++ {
		l, err := r.takeShard(ctx, shard)
		if err != nil {
			r.release(context.WithoutCancel(ctx), leases)
			return nil, nil, err
		}
		leases[shard] = l
	}
	return leases, r.renewing(ctx, leases), nil
}

// renewing renews leases every third of the TTL until the returned stop
// is called (which waits for the renewer).
func (r *Runner) renewing(ctx context.Context, leases []Lease) func() {
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(r.cfg.LeaseTTL / 3)
		defer tick.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-tick.C:
			}
			for _, l := range leases {
				if err := r.store.RenewShard(rctx, l, r.cfg.LeaseTTL); err != nil && rctx.Err() == nil {
					// A lost lease fences this run's commits; they fail
					// and the run stops with that error.
					r.log.Warn("renew shard lease", "shard", l.Shard, "err", err)
				}
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { cancel(); <-done }) }
}

// eachShard runs fn for every shard, Parallel at a time, and returns the
// first error (the others are cancelled).
func (r *Runner) eachShard(ctx context.Context, fn func(ctx context.Context, shard int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int, r.cfg.Shards)
	for s := 0; s < r.cfg.Shards; s++ {
		next <- s
	}
	close(next)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for w := 0; w < min(r.cfg.Parallel, r.cfg.Shards); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for shard := range next {
				if ctx.Err() != nil {
					return
				}
				if err := fn(ctx, shard); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}

// snapshot reads every shard's holders at its cut, each while hold holds
// the shard: its stored balances must be those of its journal (Prepare
// brings them up) and must not move while they are read.
func (r *Runner) snapshot(ctx context.Context, date time.Time, cuts []int64, p Progress,
	hold func(ctx context.Context, shard int, step string, fn func(ctx context.Context, l Lease) error) error) ([]Holder, error) {
	parts := make([][]Holder, r.cfg.Shards)
	p.Phase("snapshot", 0)
	err := r.eachShard(ctx, func(ctx context.Context, shard int) error {
		t := time.Now()
		var hs []Holder
		err := hold(ctx, shard, "snapshot", func(ctx context.Context, l Lease) error {
			if _, err := r.store.Prepare(ctx, l, date); err != nil {
				return err
			}
			var err error
			hs, err = r.store.Holdings(ctx, shard, date, cuts[shard])
			return err
		})
		if err != nil {
			return fmt.Errorf("holders of shard %d: %w", shard, err)
		}
		parts[shard] = hs
		p.Add(int64(len(hs)))
		p.ShardDone(shard, int64(len(hs)), time.Since(t))
		return nil
	})
	p.End()
	if err != nil {
		return nil, err
	}
	n := 0
	for _, hs := range parts {
		n += len(hs)
	}
	all := make([]Holder, 0, n)
	for _, hs := range parts {
		all = append(all, hs...)
	}
	// Ascending account ids: Allocate then proves uniqueness in one pass,
	// and the custodian file comes out in customer order.
	slices.SortFunc(all, func(a, b Holder) int { return compareIDs(a.Account, b.Account) })
	return all, nil
}

func compareIDs(a, b ledger.AccountID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// incomeBooks splits the allocation by shard. A deduction larger than what
// the holder can give up now (its shares held by a redemption made on the
// day) is cut to that; the fund absorbs the rest through the rounding
// account, so no available balance goes below zero and the day's total
// still moves in full.
// booked is aligned with holders: what each was actually credited or
// debited.
func (r *Runner) incomeBooks(holders []Holder, allocs []Allocation) (books []IncomeBook, booked []int64) {
	books = make([]IncomeBook, r.cfg.Shards)
	booked = make([]int64, len(holders))
	counts := make([]int, r.cfg.Shards)
	for i, a := range allocs {
		if a.Amount != 0 {
			counts[ledger.ShardOf(holders[i].Account, r.cfg.Shards)]++
		}
	}
	for s := range books {
		books[s] = IncomeBook{Shard: s, Shards: r.cfg.Shards, Entries: make([]IncomeEntry, 0, counts[s])}
	}
	for i, a := range allocs {
		if a.Amount == 0 {
			continue
		}
		h := holders[i]
		s := ledger.ShardOf(h.Account, r.cfg.Shards)
		amt := a.Amount
		if amt < 0 && -amt > h.Available {
			books[s].Absorbed += -amt - h.Available
			amt = -h.Available
		}
		booked[i] = amt
		if amt != 0 {
			books[s].Entries = append(books[s].Entries, IncomeEntry{Account: h.Account, Amount: amt})
		}
	}
	return books, booked
}

func (r *Runner) writeFile(ctx context.Context, in Input, sum *Summary, holders []Holder, booked []int64) error {
	moves, err := r.store.Movements(ctx, in.Date)
	if err != nil {
		return err
	}
	for _, m := range moves {
		if m.Subscriptions > 0 {
			sum.Subscriptions++
			sum.SubscribedShares += m.Subscriptions
		}
		if m.Redemptions > 0 {
			sum.Redemptions++
			sum.RedeemedCash += m.Redemptions
		}
	}
	name := filepath.Join(r.cfg.FileDir, "settlement-"+in.Date.Format("20060102")+".csv")
	tmp := name + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("custodian file: %w", err)
	}
	defer os.Remove(tmp)
	defer f.Close()
	cw := NewCustodianWriter(f, in.Date, in, sum.FundIncome, sum.IncomePer10k, sum.TotalShares)
	// Merge holders (ascending accounts, so ascending customers) with the
	// customers that had orders settled.
	mi := 0
	for i, h := range holders {
		c := accounts.CustomerID(h.Account >> 4)
		for mi < len(moves) && moves[mi].Customer < c {
			if err := cw.Line(moves[mi]); err != nil {
				return err
			}
			mi++
		}
		l := CustomerLine{Customer: c, Income: booked[i]}
		if mi < len(moves) && moves[mi].Customer == c {
			l.Subscriptions, l.Redemptions = moves[mi].Subscriptions, moves[mi].Redemptions
			mi++
		}
		if l.Income == 0 && l.Subscriptions == 0 && l.Redemptions == 0 {
			continue
		}
		if err := cw.Line(l); err != nil {
			return err
		}
	}
	for ; mi < len(moves); mi++ {
		if err := cw.Line(moves[mi]); err != nil {
			return err
		}
	}
	totals, digest, err := cw.Close()
	if err != nil {
		return fmt.Errorf("custodian file: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("custodian file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("custodian file: %w", err)
	}
	if err := os.Rename(tmp, name); err != nil {
		return fmt.Errorf("custodian file: %w", err)
	}
	sum.File, sum.FileSHA256, sum.FileCustomers = name, digest, totals.Customers
	prev, done, err := r.store.Step(ctx, in.Date, -1, "file")
	if err != nil {
		return err
	}
	if done && prev.Detail != digest {
		return fmt.Errorf("%w: custodian file digest %s, a previous attempt wrote %s", ErrSnapshotMismatch, digest, prev.Detail)
	}
	return r.store.MarkStep(ctx, in.Date, "file", StepResult{Count: totals.Customers, Amount: totals.Income, Detail: digest})
}

// writeSummary puts the summary beside the custodian file, as JSON.
func (r *Runner) writeSummary(sum Summary) error {
	b, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return err
	}
	name := strings.TrimSuffix(sum.File, ".csv") + ".summary.json"
	if err := os.WriteFile(name+".tmp", append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("summary file: %w", err)
	}
	if err := os.Rename(name+".tmp", name); err != nil {
		return fmt.Errorf("summary file: %w", err)
	}
	return nil
}

func (r *Runner) publish(ctx context.Context, date time.Time, books []IncomeBook, sum *Summary) error {
	if r.events == nil {
		return nil
	}
	if _, done, err := r.store.Step(ctx, date, -1, "publish"); err != nil || done {
		return err
	}
	d := date.Format(time.DateOnly)
	evs := make([]Event, 0, len(books)+1)
	for _, b := range books {
		var inc int64
		for _, e := range b.Entries {
			inc += e.Amount
		}
		evs = append(evs, Event{ID: "settlement/" + d + "/shard/" + strconv.Itoa(b.Shard), Type: "settlement.shard",
			Date: d, Shard: b.Shard, Income: inc, Holders: int64(len(b.Entries))})
	}
	s := *sum
	evs = append(evs, Event{ID: "settlement/" + d, Type: "settlement.completed", Date: d, Shard: -1, Summary: &s,
		Income: sum.FundIncome, Holders: sum.Holders})
	if err := r.events.PublishSettlement(ctx, evs); err != nil {
		return fmt.Errorf("publish settlement events: %w", err)
	}
	return r.store.MarkStep(ctx, date, "publish", StepResult{Count: int64(len(evs))})
}

type nopProgress struct{}

func (nopProgress) Phase(string, int64)                 {}
func (nopProgress) Add(int64)                           {}
func (nopProgress) ShardDone(int, int64, time.Duration) {}
func (nopProgress) End()                                {}

type lockedProgress struct {
	mu sync.Mutex
	p  Progress
}

func (l *lockedProgress) Phase(name string, total int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.p.Phase(name, total)
}

func (l *lockedProgress) Add(n int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.p.Add(n)
}

func (l *lockedProgress) ShardDone(shard int, n int64, took time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.p.ShardDone(shard, n, took)
}

func (l *lockedProgress) End() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.p.End()
}
