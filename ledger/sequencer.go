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
	kind       requestKind
	transfers  []Transfer
	accounts   []Account
	ids        []AccountID
	attachment []byte // reqTransfers: carried to the store with the results (attach.go)
	attached   bool   // the attachment went into a batch that committed

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

// CreateTransfersAttached implements AttachingClient: the attachment goes
// with the request into its batch, and so to the store's attachment
// writer, when the store writes attachments for this shard; else it is
// dropped and attached is false.
func (s *Sequencer) CreateTransfersAttached(ctx context.Context, ts []Transfer, attachment []byte) ([]TransferResult, bool, error) {
	if len(attachment) > AttachmentLenMax {
		return nil, false, fmt.Errorf("%w: %d bytes > %d", ErrAttachmentTooLarge, len(attachment), AttachmentLenMax)
	}
	r := &request{kind: reqTransfers, transfers: ts}
	if s.writesAttachments() {
		r.attachment = attachment
	}
	if err := s.submit(ctx, r); err != nil {
		return nil, false, err
	}
	return r.tResults, r.attached, nil
}

// writesAttachments reports whether the store writes this shard's
// attachments.
func (s *Sequencer) writesAttachments() bool {
	as, ok := s.store.(AttachmentStore)
	return ok && as.WritesAttachments(s.cfg.Shard)
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
//
// Each pass of the loop is one batch going through the steps of a
// batchLoop, in order; a step may end the pass early (the batch was
// answered or put aside) or stop the shard.
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

	l := &batchLoop{s: s, ctx: ctx, book: book, lastSeal: time.Now()}
	defer l.shutdown()
	steps := [...]func() stepResult{l.collect, l.fill, l.lookUp, l.awaitPrevious, l.apply, l.commit}
	for {
		for _, step := range steps {
			n := step()
			if n == stopRun {
				return l.err
			}
			if n == nextBatch {
				break
			}
		}
	}
}

// stepResult says where the writer loop goes after a step.
type stepResult uint8

const (
	nextStep  stepResult = iota // on to the next step with this batch
	nextBatch                   // this pass is over: collect the next batch
	stopRun                     // Run returns batchLoop.err
)

// batchLoop is the state of Run's writer loop. Batches overlap by one: while
// batch n commits on a goroutine of its own, batch n+1 is collected, its ids
// looked up, and then, once n is durable, applied. The steps are methods
// called in order by Run, each of a pass:
//
//	collect        take the first request (or answer the batch in flight if
//	               it commits while idle), then whatever else is queued
//	fill           with FillWhileCommitting, go on taking requests until the
//	               batch in flight has committed
//	lookUp         fetch the ids the book has forgotten (Store.Lookup)
//	awaitPrevious  complete the batch in flight: this one builds on its state
//	apply          apply in memory, with exact per-request results, and seal
//	commit         start the commit (Store.Commit); callers are answered by
//	               complete once it is durable
type batchLoop struct {
	s   *Sequencer
	ctx context.Context
	// book is nil once the shard failed (fenced, store gone, a broken
	// invariant): then nothing more may be written.
	book *Book
	err  error // what Run returns once a step says stop

	// carry holds requests taken from the queue but not applied, because
	// the batch before them failed: they are applied on the reloaded state
	// instead of being refused.
	carry    []*request
	held     *request  // taken from the queue but did not fit the last batch
	pending  *inflight // the batch being committed, if any
	lastSeal time.Time // when the last batch was sealed: paces checkpoints

	// The batch of this pass.
	reqs              []*request
	events            int
	known             *Known // what lookUp fetched; nil when nothing was missing
	sealed            *Batch // what apply sealed, for commit
	missing, pmissing []TransferID
}

// halt stops the loop: Run returns err.
func (l *batchLoop) halt(err error) stepResult {
	l.err = err
	return stopRun
}

// reload replaces the book after a failed commit, since the book holds
// effects that may never have been written; the shard stops when it cannot
// (fenced, or the store gone for good).
func (l *batchLoop) reload(cause error) stepResult {
	var err error
	if l.book, err = l.s.recover(l.ctx, cause); err != nil {
		return l.halt(quiet(l.ctx, err))
	}
	return nextBatch
}

// collect starts a batch: the requests carried over from a failed batch,
// else the one held back from the last batch, else the first to arrive
// (blocking), and then whatever is queued up to the batch limit.
func (l *batchLoop) collect() stepResult {
	l.reqs, l.events, l.known = nil, 0, nil
	switch {
	case l.carry != nil:
		l.reqs, l.carry = l.carry, nil
		for _, r := range l.reqs {
			l.events += r.events()
		}
	case l.held != nil:
		l.reqs, l.events = []*request{l.held}, l.held.events()
		l.held = nil
	default:
		// While idle, answer the in-flight batch as soon as it commits.
		var committed <-chan error
		if l.pending != nil {
			committed = l.pending.err
		}
		select {
		case r := <-l.s.queue:
			l.reqs, l.events = append(l.reqs, r), r.events()
		case err := <-committed:
			if err := l.complete(err); err != nil {
				return l.reload(err)
			}
			return nextBatch
		case <-l.ctx.Done():
			return l.halt(nil)
		}
	}
	// Then, without blocking, what is queued up to the batch limit.
	for l.held == nil && l.events < l.s.cfg.BatchEventsMax {
		select {
		case r := <-l.s.queue:
			if !l.take(r) {
				return nextStep
			}
		default:
			return nextStep
		}
	}
	return nextStep
}

// take adds r to the batch, or holds it for the next one when it would
// overflow this one; false: the batch is full.
func (l *batchLoop) take(r *request) bool {
	if l.events+r.events() > l.s.cfg.BatchEventsMax {
		l.held = r
		return false
	}
	l.reqs = append(l.reqs, r)
	l.events += r.events()
	return true
}

// fill takes more requests while the previous batch commits: this batch
// cannot be applied before that commit ends anyway, and with many shards on
// one database each commit's fixed costs (its lookup, its share of a
// transaction) weigh more than its rows. Never waits when idle: with no
// commit in flight the batch goes at once.
func (l *batchLoop) fill() stepResult {
	if !l.s.cfg.FillWhileCommitting || l.pending == nil || l.pending.settled {
		return nextStep
	}
	for l.held == nil && l.events < l.s.cfg.BatchEventsMax {
		select {
		case r := <-l.s.queue:
			if !l.take(r) {
				return nextStep
			}
		case err := <-l.pending.err:
			l.pending.settled, l.pending.result = true, err
			return nextStep
		case <-l.ctx.Done():
			return nextStep
		}
	}
	return nextStep
}

// lookUp fetches from the store the transfer and pending ids of the batch
// that the book does not know (it keeps recent ids only), while the
// previous batch commits. On failure the transfers are
// refused (they needed it) and the rest are carried to the next pass.
func (l *batchLoop) lookUp() stepResult {
	l.missing, l.pmissing = l.missing[:0], l.pmissing[:0]
	for _, r := range l.reqs {
		if r.kind == reqTransfers {
			l.missing, l.pmissing = l.book.Missing(r.transfers, l.missing, l.pmissing)
		}
	}
	if len(l.missing)+len(l.pmissing) == 0 {
		return nextStep
	}
	t0 := time.Now()
	known, err := l.s.store.Lookup(l.ctx, l.s.cfg.Shard, l.missing, l.pmissing)
	l.s.since(PhaseLookup, t0)
	if err == nil {
		l.known = known
		return nextStep
	}
	for _, r := range l.reqs {
		if r.kind == reqTransfers {
			r.err = fmt.Errorf("%w: lookup: %v", ErrCommitFailed, err)
			r.reply <- struct{}{}
		} else {
			l.carry = append(l.carry, r)
		}
	}
	if ferr := l.finish(); ferr != nil {
		return l.reload(ferr)
	}
	return nextBatch
}

// awaitPrevious waits for the previous batch to be durable: this one's
// results cannot stand before, since its failure invalidates the state this
// batch builds on. If it failed, this batch is carried over to be applied on
// the reloaded state.
func (l *batchLoop) awaitPrevious() stepResult {
	t0 := time.Now()
	err := l.finish()
	l.s.since(PhaseWait, t0)
	if err != nil {
		l.carry = append(l.carry, l.reqs...)
		return l.reload(err)
	}
	if l.known != nil {
		l.book.Learn(l.known)
	}
	return nextStep
}

// apply applies the batch in memory, each request getting its exact
// results, checks the book's invariants and seals the batch with its share
// of checkpointed balances. A batch that writes nothing is answered at once.
func (l *batchLoop) apply() stepResult {
	s, book := l.s, l.book
	t0 := time.Now()
	book.Begin(s.cfg.Now().UnixNano())
	for _, r := range l.reqs {
		s.apply(book, r)
	}
	if err := book.CheckInvariants(); err != nil {
		// A bug: stop the shard rather than write a wrong book.
		for _, r := range l.reqs {
			r.err = err
			r.reply <- struct{}{}
		}
		s.log.Error("invariant broken; stopping shard", "err", err)
		l.book = nil
		return l.halt(err)
	}
	// Trickle balances out at the rate that writes every unsaved one
	// within about one interval: steady, no burst that stalls a batch.
	now := time.Now()
	flush := int(float64(book.Unsaved())*float64(now.Sub(l.lastSeal))/float64(s.cfg.CheckpointInterval)) + 1
	l.lastSeal = now
	batch := book.Seal(min(flush, s.cfg.FlushAccountsMax))
	batch.Epoch = s.cfg.Epoch
	for _, r := range l.reqs {
		if r.kind == reqTransfers && len(r.attachment) > 0 {
			batch.Attached = append(batch.Attached, Attached{Data: r.attachment, Transfers: r.transfers, Results: r.tResults})
		}
	}
	s.since(PhaseApply, t0)
	if batch.Empty() {
		for _, r := range l.reqs {
			r.reply <- struct{}{}
		}
		return nextBatch
	}
	l.sealed = batch
	return nextStep
}

// commit starts the sealed batch's commit on a goroutine of its own; the
// next pass collects beside it, and complete answers its callers once it is
// durable (or refuses them: ErrFenced, ErrCommitFailed).
func (l *batchLoop) commit() stepResult {
	l.pending = &inflight{batch: l.sealed, reqs: l.reqs, err: make(chan error, 1)}
	l.sealed = nil
	go l.s.commit(l.ctx, l.pending)
	return nextBatch
}

// complete answers the in-flight batch's requests with its commit outcome
// and returns that outcome. On a failure other than fencing, reads are
// carried over to be answered from the reloaded state.
func (l *batchLoop) complete(err error) error {
	p := l.pending
	l.pending = nil
	if err != nil {
		for _, r := range p.reqs {
			if r.kind == reqLookup && !errors.Is(err, ErrFenced) {
				l.carry = append(l.carry, r) // a read is answered from the reloaded state
				continue
			}
			r.err = commitError(err)
			r.reply <- struct{}{}
		}
		return err
	}
	s := l.s
	s.batches.Add(1)
	ev := 0
	for _, r := range p.reqs {
		ev += r.events()
		r.attached = len(r.attachment) > 0
		r.reply <- struct{}{}
	}
	s.events.Add(int64(ev))
	if s.cfg.BatchObserver != nil {
		s.cfg.BatchObserver(p.batch, p.took)
	}
	return nil
}

// finish waits for the in-flight batch's outcome, if there is a batch in
// flight, and completes it.
func (l *batchLoop) finish() error {
	if l.pending == nil {
		return nil
	}
	if l.pending.settled {
		return l.complete(l.pending.result)
	}
	return l.complete(<-l.pending.err)
}

// shutdown runs as Run returns: it completes the batch in flight, refuses
// what was taken but not applied (ErrFenced when the shard was fenced,
// else ErrClosed), and on a clean stop writes the balances not yet
// checkpointed.
func (l *batchLoop) shutdown() {
	ferr := l.finish()
	if l.held != nil {
		l.carry = append(l.carry, l.held)
	}
	for _, r := range l.carry {
		r.err = ErrClosed
		if errors.Is(l.err, ErrFenced) {
			r.err = l.err
		}
		r.reply <- struct{}{}
	}
	if ferr == nil && l.book != nil && l.book.Unsaved() > 0 {
		l.s.finalCheckpoint(l.ctx, l.book)
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
