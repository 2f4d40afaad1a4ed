package ledger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// SequencerConfig sizes a shard's sequencer.
type SequencerConfig struct {
	Shard  int
	Shards int // total logical shards; 0 or 1 = a single shard
	Epoch  int64

	QueueMax          int           // requests waiting; a full queue blocks callers until their context ends
	BatchEventsMax    int           // transfers and accounts applied in one batch
	RequestEventsMax  int           // transfers or accounts in one request
	CommitTimeout     time.Duration // a batch commit that takes longer is abandoned (and not acknowledged)
	ReloadAttemptsMax int           // after a failed commit, attempts to reload state before giving up
	ReloadBackoffMax  time.Duration
	Now               func() time.Time // clock; tests replace it
	CommitHook        func(*Batch)     // tests: called right before a batch is committed
	// BatchObserver is the metrics hook: called from the writer's
	// goroutine after every committed batch (with its journal entries in
	// b.Transfers) and how long its commit took. It must be quick.
	BatchObserver func(b *Batch, commit time.Duration)
	LoadTimeout   time.Duration
	// CheckpointInterval is how long an account's stored balance may trail
	// the book; a restart replays at most about this much journal.
	CheckpointInterval time.Duration
	// FlushAccountsMax bounds the balances one batch writes, so that a
	// burst of checkpointing never stalls a batch.
	FlushAccountsMax int
	// FillWhileCommitting keeps taking requests into the next batch until
	// the batch in flight has committed (then looks their ids up), instead
	// of cutting it at once and looking its ids up during the commit:
	// fewer, bigger batches for one more round trip of latency. For many
	// shards sharing a database, where per-batch costs dominate.
	FillWhileCommitting bool
}

func (c *SequencerConfig) setDefaults() {
	if c.Shards == 0 {
		c.Shards = 1
	}
	if c.QueueMax == 0 {
		c.QueueMax = 1 << 16
	}
	if c.RequestEventsMax == 0 {
		c.RequestEventsMax = 8190
	}
	if c.BatchEventsMax == 0 {
		c.BatchEventsMax = 16384
	}
	if c.BatchEventsMax < c.RequestEventsMax {
		c.BatchEventsMax = c.RequestEventsMax
	}
	if c.CommitTimeout == 0 {
		c.CommitTimeout = 30 * time.Second
	}
	if c.ReloadAttemptsMax == 0 {
		c.ReloadAttemptsMax = 10
	}
	if c.ReloadBackoffMax == 0 {
		c.ReloadBackoffMax = 2 * time.Second
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = 10 * time.Second
	}
	if c.FlushAccountsMax == 0 {
		c.FlushAccountsMax = 4096
	}
	if c.LoadTimeout == 0 {
		c.LoadTimeout = 5 * time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Sequencer is the single writer of one shard. Callers from any goroutine
// submit requests; Run's goroutine applies them in arrival order in batches
// and answers each only after its batch is durably committed.
type Sequencer struct {
	cfg    SequencerConfig
	store  Store
	log    *slog.Logger
	queue  chan *request
	done   chan struct{} // closed when Run returns
	closed atomic.Bool
	ready  chan struct{} // closed once the state is loaded
	once   sync.Once

	batches atomic.Int64 // committed batches
	events  atomic.Int64 // events in committed batches
	timing  [phaseCount]atomic.Int64
}

// Phase is a part of the writer's loop whose time the sequencer accounts.
type Phase int

// Phases of the writer loop.
const (
	PhaseLookup Phase = iota // fetching forgotten ids from the store
	PhaseWait                // waiting for the previous batch to commit
	PhaseApply               // applying the batch in memory
	PhaseCommit              // the store's commit (runs beside the others)
	phaseCount
)

// PhaseTime returns the total time spent in a phase since start.
func (s *Sequencer) PhaseTime(p Phase) time.Duration { return time.Duration(s.timing[p].Load()) }

func (s *Sequencer) since(p Phase, t0 time.Time) { s.timing[p].Add(int64(time.Since(t0))) }

type requestKind uint8

const (
	reqTransfers requestKind = iota
	reqAccounts
	reqClose
	reqLookup
)

type request struct {
	kind      requestKind
	transfers []Transfer
	accounts  []Account
	ids       []AccountID

	tResults []TransferResult
	aResults []AccountResult
	found    []Account
	err      error
	reply    chan struct{}
}

func (r *request) events() int {
	return len(r.transfers) + len(r.accounts) + len(r.ids)
}

// NewSequencer returns a sequencer for one shard; start it with Run.
func NewSequencer(cfg SequencerConfig, store Store, logger *slog.Logger) *Sequencer {
	cfg.setDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Sequencer{
		cfg:   cfg,
		store: store,
		log:   logger.With("shard", cfg.Shard),
		queue: make(chan *request, cfg.QueueMax),
		done:  make(chan struct{}),
		ready: make(chan struct{}),
	}
}

// Ready is closed once the shard's state is loaded and requests are served.
func (s *Sequencer) Ready() <-chan struct{} { return s.ready }

// Stats returns the number of committed batches and of events in them.
func (s *Sequencer) Stats() (batches, events int64) { return s.batches.Load(), s.events.Load() }

// CreateTransfers applies transfers in order and returns one result each.
// An error means the request was not acknowledged; retrying it with the same
// ids is safe. Errors: ErrEmptyRequest, ErrTooManyEvents, ErrClosed,
// ErrCommitFailed, ErrFenced, or the context's error.
func (s *Sequencer) CreateTransfers(ctx context.Context, ts []Transfer) ([]TransferResult, error) {
	r := &request{kind: reqTransfers, transfers: ts}
	if err := s.submit(ctx, r); err != nil {
		return nil, err
	}
	return r.tResults, nil
}

// CreateAccounts creates accounts in order and returns one result each.
func (s *Sequencer) CreateAccounts(ctx context.Context, as []Account) ([]AccountResult, error) {
	r := &request{kind: reqAccounts, accounts: as}
	if err := s.submit(ctx, r); err != nil {
		return nil, err
	}
	return r.aResults, nil
}

// CloseAccounts closes accounts with zero balances, one result each.
func (s *Sequencer) CloseAccounts(ctx context.Context, ids []AccountID) ([]AccountResult, error) {
	r := &request{kind: reqClose, ids: ids}
	if err := s.submit(ctx, r); err != nil {
		return nil, err
	}
	return r.aResults, nil
}

// LookupAccounts returns the accounts found, in the order asked, as of a
// point after every request acknowledged before it (the read goes through
// the queue, so it never sees uncommitted state).
func (s *Sequencer) LookupAccounts(ctx context.Context, ids []AccountID) ([]Account, error) {
	r := &request{kind: reqLookup, ids: ids}
	if err := s.submit(ctx, r); err != nil {
		return nil, err
	}
	return r.found, nil
}

// TransfersCommitted implements TransferLookup. It reads the store, not
// the writer's memory: only what a commit made durable counts, and the
// writer is not held up by status queries.
func (s *Sequencer) TransfersCommitted(ctx context.Context, ids []TransferID) ([]bool, error) {
	if len(ids) == 0 {
		return nil, ErrEmptyRequest
	}
	if len(ids) > s.cfg.RequestEventsMax {
		return nil, fmt.Errorf("%w: %d > %d", ErrTooManyEvents, len(ids), s.cfg.RequestEventsMax)
	}
	known, err := s.store.Lookup(ctx, s.cfg.Shard, ids, nil)
	if err != nil {
		return nil, err
	}
	out := make([]bool, len(ids))
	for i, id := range ids {
		_, out[i] = known.Fingerprints[id]
	}
	return out, nil
}

func (s *Sequencer) submit(ctx context.Context, r *request) error {
	n := r.events()
	if n == 0 {
		return ErrEmptyRequest
	}
	if n > s.cfg.RequestEventsMax {
		return fmt.Errorf("%w: %d > %d", ErrTooManyEvents, n, s.cfg.RequestEventsMax)
	}
	if s.closed.Load() {
		return ErrClosed
	}
	r.reply = make(chan struct{}, 1)
	// The common case takes only the queue's lock: a select over the queue,
	// s.done and the caller's context locks all three channels, and s.done
	// (and, in benches, a context) is shared by every caller of the shard,
	// so thousands of callers contended on its lock.
	select {
	case s.queue <- r:
	default:
		select {
		case s.queue <- r:
		case <-s.done:
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// Not closed after the send: Run takes r, or its last drain (which
	// runs after closed is set) answers it, so the reply is sure to come
	// and s.done need not be watched.
	if !s.closed.Load() {
		select {
		case <-r.reply:
			return r.err
		case <-ctx.Done():
			// The request may still commit; the caller learns by retrying.
			return ctx.Err()
		}
	}
	select {
	case <-r.reply:
		return r.err
	case <-s.done:
		// Run answers everything it took before it returns; a request
		// still queued when it stopped was never applied.
		select {
		case <-r.reply:
			return r.err
		default:
			return ErrClosed
		}
	case <-ctx.Done():
		// The request may still commit; the caller learns by retrying.
		return ctx.Err()
	}
}

// inflight is a batch being committed by the committer goroutine.
type inflight struct {
	batch *Batch
	reqs  []*request
	err   chan error
	took  time.Duration // the commit's duration; set before err is sent

	// settled: the outcome was taken from err while collecting the next
	// batch, and is held in result.
	settled bool
	result  error
}

// Run loads the shard and serves requests until ctx ends or the store fails
// beyond recovery. It answers every request it took before returning.
func (s *Sequencer) Run(ctx context.Context) error {
	defer func() {
		s.closed.Store(true)
		close(s.done)
		s.drain(ErrClosed)
	}()
	book, err := s.load(ctx)
	if err != nil {
		return err
	}
	s.once.Do(func() { close(s.ready) })

	lastSeal := time.Now()
	var (
		// carry holds requests taken from the queue but not applied, because
		// the batch before them failed: they are applied on the reloaded
		// state instead of being refused.
		carry    []*request
		exitErr  error
		pending  *inflight
		held     *request // took from the queue but did not fit the last batch
		missing  []TransferID
		pmissing []TransferID
	)
	// complete answers the in-flight batch's requests with its commit
	// outcome; finish first waits for that outcome.
	complete := func(err error) error {
		p := pending
		pending = nil
		if err != nil {
			for _, r := range p.reqs {
				if r.kind == reqLookup && !errors.Is(err, ErrFenced) {
					carry = append(carry, r) // a read is answered from the reloaded state
					continue
				}
				r.err = commitError(err)
				r.reply <- struct{}{}
			}
			return err
		}
		s.batches.Add(1)
		ev := 0
		for _, r := range p.reqs {
			ev += r.events()
			r.reply <- struct{}{}
		}
		s.events.Add(int64(ev))
		if s.cfg.BatchObserver != nil {
			s.cfg.BatchObserver(p.batch, p.took)
		}
		return nil
	}
	finish := func() error {
		if pending == nil {
			return nil
		}
		if pending.settled {
			return complete(pending.result)
		}
		return complete(<-pending.err)
	}
	defer func() {
		ferr := finish()
		if held != nil {
			carry = append(carry, held)
		}
		for _, r := range carry {
			r.err = ErrClosed
			if errors.Is(exitErr, ErrFenced) {
				r.err = exitErr
			}
			r.reply <- struct{}{}
		}
		// book is nil once the shard failed (fenced, store gone, a broken
		// invariant): then nothing more may be written.
		if ferr == nil && book != nil && book.Unsaved() > 0 {
			s.finalCheckpoint(ctx, book)
		}
	}()

	for {
		// Collect a batch: block for the first request, then take what is
		// queued up to the batch limit.
		var reqs []*request
		events := 0
		if carry != nil {
			reqs, carry = carry, nil
			for _, r := range reqs {
				events += r.events()
			}
		} else if held != nil {
			reqs, events, held = append(reqs, held), held.events(), nil
		} else {
			// While idle, answer the in-flight batch as soon as it commits.
			var committed <-chan error
			if pending != nil {
				committed = pending.err
			}
			select {
			case r := <-s.queue:
				reqs, events = append(reqs, r), r.events()
			case err := <-committed:
				if err := complete(err); err != nil {
					if book, exitErr = s.recover(ctx, err); exitErr != nil {
						return quiet(ctx, exitErr)
					}
				}
				continue
			case <-ctx.Done():
				return nil
			}
		}
		// take adds r to the batch, or holds it for the next one when it
		// would overflow this one; false: the batch is full.
		take := func(r *request) bool {
			if events+r.events() > s.cfg.BatchEventsMax {
				held = r
				return false
			}
			reqs = append(reqs, r)
			events += r.events()
			return true
		}
	collect:
		for held == nil && events < s.cfg.BatchEventsMax {
			select {
			case r := <-s.queue:
				if !take(r) {
					break collect
				}
			default:
				break collect
			}
		}
		// Fill while the previous batch commits: this batch cannot be
		// applied before that commit ends anyway, and with many shards on
		// one database each commit's fixed costs (its lookup, its share of
		// a transaction) weigh more than its rows. Never waits when idle:
		// with no commit in flight the batch goes at once.
		if s.cfg.FillWhileCommitting && pending != nil && !pending.settled {
		fill:
			for held == nil && events < s.cfg.BatchEventsMax {
				select {
				case r := <-s.queue:
					if !take(r) {
						break fill
					}
				case err := <-pending.err:
					pending.settled, pending.result = true, err
					break fill
				case <-ctx.Done():
					break fill
				}
			}
		}

		// Fetch what the book has forgotten, while the previous batch
		// commits.
		missing, pmissing = missing[:0], pmissing[:0]
		for _, r := range reqs {
			if r.kind == reqTransfers {
				missing, pmissing = book.Missing(r.transfers, missing, pmissing)
			}
		}
		var known *Known
		if len(missing)+len(pmissing) > 0 {
			t0 := time.Now()
			known, err = s.store.Lookup(ctx, s.cfg.Shard, missing, pmissing)
			s.since(PhaseLookup, t0)
			if err != nil {
				// Only transfers needed the lookup; the rest go on.
				for _, r := range reqs {
					if r.kind == reqTransfers {
						r.err = fmt.Errorf("%w: lookup: %v", ErrCommitFailed, err)
						r.reply <- struct{}{}
					} else {
						carry = append(carry, r)
					}
				}
				if ferr := finish(); ferr != nil {
					if book, exitErr = s.recover(ctx, ferr); exitErr != nil {
						return quiet(ctx, exitErr)
					}
				}
				continue
			}
		}
		// The previous batch must be durable before this one's results can
		// stand: its failure invalidates the state this batch builds on.
		t0 := time.Now()
		err := finish()
		s.since(PhaseWait, t0)
		if err != nil {
			carry = append(carry, reqs...)
			if book, exitErr = s.recover(ctx, err); exitErr != nil {
				return quiet(ctx, exitErr)
			}
			continue
		}
		if known != nil {
			book.Learn(known)
		}

		t0 = time.Now()
		book.Begin(s.cfg.Now().UnixNano())
		for _, r := range reqs {
			s.apply(book, r)
		}
		if err := book.CheckInvariants(); err != nil {
			// A bug: stop the shard rather than write a wrong book.
			for _, r := range reqs {
				r.err = err
				r.reply <- struct{}{}
			}
			s.log.Error("invariant broken; stopping shard", "err", err)
			book = nil
			return err
		}
		// Trickle balances out at the rate that writes every unsaved one
		// within about one interval: steady, no burst that stalls a batch.
		now := time.Now()
		flush := int(float64(book.Unsaved())*float64(now.Sub(lastSeal))/float64(s.cfg.CheckpointInterval)) + 1
		lastSeal = now
		batch := book.Seal(min(flush, s.cfg.FlushAccountsMax))
		batch.Epoch = s.cfg.Epoch
		s.since(PhaseApply, t0)
		if batch.Empty() {
			for _, r := range reqs {
				r.reply <- struct{}{}
			}
			continue
		}
		pending = &inflight{batch: batch, reqs: reqs, err: make(chan error, 1)}
		go s.commit(ctx, pending)
	}
}

// finalCheckpoint writes the balances changed since the last checkpoint on a
// clean stop, so the next start replays nothing. Failing is harmless: the
// journal has everything.
func (s *Sequencer) finalCheckpoint(ctx context.Context, book *Book) {
	book.Begin(s.cfg.Now().UnixNano())
	batch := book.Seal(math.MaxInt)
	batch.Epoch = s.cfg.Epoch
	f := &inflight{batch: batch, err: make(chan error, 1)}
	s.commit(ctx, f)
	if err := <-f.err; err != nil {
		s.log.Warn("final checkpoint failed; the next start replays the journal", "err", err)
	}
}

// quiet turns the error of a shard stopped on purpose (its context ended)
// into a clean exit.
func quiet(ctx context.Context, err error) error {
	if ctx.Err() != nil && !errors.Is(err, ErrFenced) {
		return nil
	}
	return err
}

func commitError(err error) error {
	if errors.Is(err, ErrFenced) {
		return err
	}
	return fmt.Errorf("%w: %v", ErrCommitFailed, err)
}

func (s *Sequencer) commit(ctx context.Context, f *inflight) {
	// The commit outlives a cancelled Run context on purpose: a batch that
	// started must finish or fail on its own, so callers get a true answer.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.CommitTimeout)
	defer cancel()
	if s.cfg.CommitHook != nil {
		s.cfg.CommitHook(f.batch)
	}
	t0 := time.Now()
	err := s.store.Commit(cctx, f.batch)
	s.since(PhaseCommit, t0)
	f.took = time.Since(t0)
	f.err <- err
}

func (s *Sequencer) apply(book *Book, r *request) {
	switch r.kind {
	case reqTransfers:
		r.tResults = make([]TransferResult, len(r.transfers))
		book.CreateTransfers(r.transfers, r.tResults)
	case reqAccounts:
		r.aResults = make([]AccountResult, len(r.accounts))
		book.CreateAccounts(r.accounts, r.aResults)
	case reqClose:
		r.aResults = make([]AccountResult, len(r.ids))
		book.CloseAccounts(r.ids, r.aResults)
	case reqLookup:
		r.found = make([]Account, 0, len(r.ids))
		for _, id := range r.ids {
			if a, ok := book.Account(id); ok {
				r.found = append(r.found, a)
			}
		}
	}
}

func (s *Sequencer) load(ctx context.Context) (*Book, error) {
	lctx, cancel := context.WithTimeout(ctx, s.cfg.LoadTimeout)
	defer cancel()
	start := time.Now()
	snap, err := s.store.Load(lctx, s.cfg.Shard)
	if err != nil {
		return nil, fmt.Errorf("load shard %d: %w", s.cfg.Shard, err)
	}
	s.log.Info("shard loaded", "accounts", len(snap.Accounts), "pending", len(snap.Pending), "took", time.Since(start))
	return NewBook(s.cfg.Shard, s.cfg.Shards, snap), nil
}

// recover reloads the state from the store after a failed commit, since the
// book holds effects that may never have been written.
func (s *Sequencer) recover(ctx context.Context, cause error) (*Book, error) {
	if errors.Is(cause, ErrFenced) {
		return nil, cause
	}
	s.log.Warn("batch commit failed; reloading shard", "err", cause)
	backoff := 50 * time.Millisecond
	var err error
	for attempt := 1; attempt <= s.cfg.ReloadAttemptsMax; attempt++ {
		var book *Book
		if book, err = s.load(ctx); err == nil {
			return book, nil
		}
		s.log.Warn("reload failed", "attempt", attempt, "err", err)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		backoff = min(2*backoff, s.cfg.ReloadBackoffMax)
	}
	return nil, fmt.Errorf("shard %d: reload after failed commit: %w", s.cfg.Shard, err)
}

// drain answers requests still queued when Run stops.
func (s *Sequencer) drain(err error) {
	for {
		select {
		case r := <-s.queue:
			r.err = err
			r.reply <- struct{}{}
		default:
			return
		}
	}
}

// Start runs the sequencer on a goroutine of its own and returns once it
// serves requests (or fails to load, or ctx ends, or readyTimeout passes).
// stop ends it, waits for it, and returns Run's error; it may be called
// more than once. Start's ctx bounds only the wait: the sequencer lives
// until stop, so that a caller's cancelled request cannot stop a shard.
func (s *Sequencer) Start(ctx context.Context, readyTimeout time.Duration) (stop func() error, err error) {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	var (
		once   sync.Once
		runErr error
	)
	stop = func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	select {
	case <-s.Ready():
		return stop, nil
	case err := <-done:
		once.Do(func() { cancel(); runErr = err })
		if err == nil {
			err = ErrClosed
		}
		return nil, fmt.Errorf("shard %d: %w", s.cfg.Shard, err)
	case <-ctx.Done():
		_ = stop()
		return nil, ctx.Err()
	case <-timer.C:
		_ = stop()
		return nil, fmt.Errorf("shard %d: not ready after %s", s.cfg.Shard, readyTimeout)
	}
}
