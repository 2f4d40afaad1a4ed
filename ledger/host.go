package ledger

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// LeaseStore keeps shard leases with fencing epochs (ledger/postgres.Store).
type LeaseStore interface {
	// AcquireLease takes the shard when nobody holds a live lease on it and
	// returns a new, strictly greater epoch; ok is false when it is taken
	// (or, released, still reserved for the party that asked for its
	// hand-off). addr is where the owner serves calls, advertised in the
	// lease so that clients can find it (empty when it serves none).
	AcquireLease(ctx context.Context, shard int, owner, addr string, ttl time.Duration) (epoch int64, ok bool, err error)
	// RenewLease extends a held lease; ErrFenced when it was taken over.
	// handoffTo names who asked for a hand-off of the shard ("" when
	// nobody did): the holder should drain the shard and release it.
	RenewLease(ctx context.Context, shard int, owner string, epoch int64, ttl time.Duration) (handoffTo string, err error)
	// ReleaseLease gives a shard up (a clean stop, a hand-off), so that
	// the next owner takes it at once.
	ReleaseLease(ctx context.Context, shard int, owner string, epoch int64) error
}

// HostRegistry is what a Host needs, beyond its LeaseStore, to spread the
// shards evenly over the live hosts by hand-offs (ledger/postgres.Store
// and Databases implement it). A LeaseStore without it gives a host that
// takes free shards up to ShardsMax and never rebalances.
type HostRegistry interface {
	// Heartbeat records owner as a live host for ttl more.
	Heartbeat(ctx context.Context, owner, addr string, ttl time.Duration) error
	// LeaveHosts removes owner from the live hosts (a clean stop).
	LeaveHosts(ctx context.Context, owner string) error
	// LiveHosts names the hosts whose heartbeat has not expired.
	LiveHosts(ctx context.Context) ([]string, error)
	// RequestHandoff asks the shard's holder to hand it to "to" (recorded
	// for hold); ok is false when another party's request is pending and
	// override is not set.
	RequestHandoff(ctx context.Context, shard int, to string, hold time.Duration, override bool) (ok bool, err error)
	Directory
}

// LeaseWatcher tells a Host at once when a shard's lease was released,
// asked for or taken, so that hand-offs do not wait for the next round.
type LeaseWatcher interface {
	// WatchLeases calls changed (quickly; it must not block) with the shard
	// of every lease released, asked for or taken, until ctx ends (nil) or
	// the watch fails.
	WatchLeases(ctx context.Context, changed func(shard int)) error
}

// HostConfig configures a Host.
type HostConfig struct {
	Owner    string        // unique per process, e.g. hostname-pid
	Address  string        // where this process serves calls (host:port), advertised in its leases
	Shards   int           // logical shards in the system
	LeaseTTL time.Duration // a dead owner's shards move after at most this long
	// ShardsMax caps how many shards this host owns (0 = all it can get), so
	// that several hosts share the shards instead of the first taking all.
	// With a HostRegistry the hosts share them evenly by themselves;
	// ShardsMax stays a hard cap.
	ShardsMax int
	Sequencer SequencerConfig // template; Shard, Shards and Epoch are set per shard
	// OnHandOff, when set, is told of every shard this host handed off:
	// to whom and how long it took from the request being noticed to the
	// lease released (tests, metrics).
	OnHandOff func(shard int, to string, took time.Duration)
}

// Host owns a changing set of shards through leases: it takes free shards,
// renews its leases, runs one Sequencer per owned shard, and stops a shard
// at once when its lease is lost. Several hosts (processes) share the
// shards; when one dies its leases expire and the others take its shards.
//
// With a HostRegistry (the lease store implements it) the hosts also keep
// the shards spread evenly: each announces itself with a heartbeat, works
// out its fair share from the live hosts, takes free shards only while
// under it (or when nobody else took them for a while), and, when it owns
// fewer than its floor, asks the host owning the most for a hand-off of
// one shard at a time. A holder asked for a hand-off stops taking calls
// for the shard (they get "not owner" and the routing client retries),
// lets its sequencer answer and commit what it took, and releases the
// lease, which the requester takes at once with a new epoch: nobody waits
// for a lease to expire and nothing is fenced mid-commit. With a
// LeaseWatcher requests and releases are noticed at once rather than at
// the next round (a third of the TTL).
type Host struct {
	cfg   HostConfig
	store Store
	lease LeaseStore
	reg   HostRegistry // nil: no rebalancing
	watch LeaseWatcher // nil: rounds only
	log   *slog.Logger

	mu    sync.Mutex
	owned map[int]*hosted
	wg    sync.WaitGroup // sequencers
	moves sync.WaitGroup // hand-offs in progress

	// The acquire round's own state (one round at a time).
	freeSince map[int]time.Time // when a free shard was first seen free
	askedTill time.Time         // a hand-off this host asked for is pending until then

	wakeRenew, wakeAcquire chan struct{} // a round is due now (buffer 1)
	notices                chan int      // shards whose lease changed (WatchLeases)
}

type hosted struct {
	seq     *Sequencer
	epoch   int64
	stop    context.CancelFunc
	done    chan struct{}
	leaving atomic.Bool // a drop or hand-off is under way: only its winner acts
}

// noticesMax bounds the lease notices waiting for the host; beyond it
// they are dropped and a full renewal round is run instead.
const noticesMax = 256

// NewHost returns a host; start it with Run. When lease also implements
// HostRegistry the host rebalances, and when it implements LeaseWatcher it
// notices hand-offs at once.
func NewHost(cfg HostConfig, store Store, lease LeaseStore, logger *slog.Logger) *Host {
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = 5 * time.Second
	}
	if cfg.Shards == 0 {
		cfg.Shards = 1
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &Host{cfg: cfg, store: store, lease: lease, log: logger.With("owner", cfg.Owner), owned: map[int]*hosted{},
		freeSince: map[int]time.Time{}, wakeRenew: make(chan struct{}, 1), wakeAcquire: make(chan struct{}, 1),
		notices: make(chan int, noticesMax)}
	h.reg, _ = lease.(HostRegistry)
	h.watch, _ = lease.(LeaseWatcher)
	return h
}

// Sequencer returns the sequencer of a shard this host owns and serves.
func (h *Host) Sequencer(shard int) (*Sequencer, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	o, ok := h.owned[shard]
	if !ok {
		return nil, false
	}
	select {
	case <-o.seq.Ready():
		return o.seq, true
	default:
		return nil, false // still loading
	}
}

// Client returns the shard's sequencer as a ledger.Client when this host
// owns the shard and has loaded it (what a server in front of the host
// needs); false otherwise.
func (h *Host) Client(shard int) (Client, bool) {
	seq, ok := h.Sequencer(shard)
	if !ok {
		return nil, false // never a typed nil inside the interface
	}
	return seq, true
}

// Owned returns the shards this host owns.
func (h *Host) Owned() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]int, 0, len(h.owned))
	for s := range h.owned {
		out = append(out, s)
	}
	return out
}

// Run renews and acquires leases every third of the TTL (and at once when
// a lease it cares about changed) until ctx ends, then leaves the live
// hosts, stops every shard and releases its lease.
func (h *Host) Run(ctx context.Context) error {
	defer h.shutdown()
	if h.reg != nil {
		// Count this host before its first round, so that its fair share
		// and everybody else's see it at once.
		h.heartbeat(ctx)
	}
	// Renewals and acquisitions run apart, and renewals run one per shard
	// at once: with shards on several databases, one database that hangs
	// (each call waiting out its timeout) must never delay the renewals of
	// shards on the healthy ones past their TTL.
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); h.every(ctx, h.renew, h.wakeRenew) }()
	go func() { defer wg.Done(); h.every(ctx, h.acquire, h.wakeAcquire) }()
	if h.watch != nil {
		wg.Add(2)
		go func() { defer wg.Done(); h.watchLeases(ctx) }()
		go func() { defer wg.Done(); h.handleNotices(ctx) }()
	}
	wg.Wait()
	h.moves.Wait()
	return nil
}

// every runs round now, then every third of the TTL and whenever woken,
// until ctx ends.
func (h *Host) every(ctx context.Context, round func(context.Context), wake <-chan struct{}) {
	tick := time.NewTicker(h.cfg.LeaseTTL / 3)
	defer tick.Stop()
	for {
		round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-wake:
		}
	}
}

// poke wakes a round without waiting: one pending wake is enough.
func poke(wake chan<- struct{}) {
	select {
	case wake <- struct{}{}:
	default:
	}
}

// watchLeases runs the lease store's watch until ctx ends, starting it
// again a third of the TTL after it fails (the rounds go on meanwhile, so
// a hand-off then waits for a round at most).
func (h *Host) watchLeases(ctx context.Context) {
	for ctx.Err() == nil {
		err := h.watch.WatchLeases(ctx, func(shard int) {
			select {
			case h.notices <- shard:
			default:
				poke(h.wakeRenew) // too many at once: renew (and find requests) in a round
				poke(h.wakeAcquire)
			}
		})
		if err == nil || ctx.Err() != nil {
			return
		}
		h.log.Warn("lease watch failed; rounds only until it is back", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(h.cfg.LeaseTTL / 3):
		}
	}
}

// handleNotices acts on each lease notice: a request for a shard this host
// owns is found by renewing that lease (and answered by a hand-off); a
// shard released elsewhere may be this host's to take, and one taken
// elsewhere may let this host ask for its next move (rebalance).
func (h *Host) handleNotices(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case shard := <-h.notices:
			h.mu.Lock()
			o, ok := h.owned[shard]
			h.mu.Unlock()
			if ok {
				h.renewOne(ctx, shard, o)
			} else {
				poke(h.wakeAcquire)
			}
		}
	}
}

// renew renews every owned shard's lease, concurrently (at most one call
// per owned shard, so bounded by the shard count), and the host's
// heartbeat, and waits for all.
func (h *Host) renew(ctx context.Context) {
	h.mu.Lock()
	owned := make(map[int]*hosted, len(h.owned))
	for s, o := range h.owned {
		owned[s] = o
	}
	h.mu.Unlock()
	var wg sync.WaitGroup
	for shard, o := range owned {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.renewOne(ctx, shard, o)
		}()
	}
	if h.reg != nil {
		wg.Add(1)
		go func() { defer wg.Done(); h.heartbeat(ctx) }()
	}
	wg.Wait()
}

func (h *Host) heartbeat(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, h.cfg.LeaseTTL/3)
	defer cancel()
	if err := h.reg.Heartbeat(rctx, h.cfg.Owner, h.cfg.Address, h.cfg.LeaseTTL); err != nil && ctx.Err() == nil {
		h.log.Warn("host heartbeat failed", "err", err)
	}
}

func (h *Host) renewOne(ctx context.Context, shard int, o *hosted) {
	if o.leaving.Load() {
		return
	}
	select {
	case <-o.done: // the sequencer stopped on its own (fenced, store failure)
		h.drop(ctx, shard, o, "sequencer stopped")
		return
	default:
	}
	rctx, cancel := context.WithTimeout(ctx, h.cfg.LeaseTTL/3)
	to, err := h.lease.RenewLease(rctx, shard, h.cfg.Owner, o.epoch, h.cfg.LeaseTTL)
	cancel()
	switch {
	case errors.Is(err, ErrFenced):
		h.drop(ctx, shard, o, "lease lost")
	case err != nil && ctx.Err() == nil:
		// Cannot tell; the commit-time fence keeps a lost lease from
		// writing, and the next round tries again.
		h.log.Warn("lease renewal failed", "shard", shard, "err", err)
	case err == nil && to != "" && to != h.cfg.Owner:
		if o.leaving.CompareAndSwap(false, true) {
			h.moves.Add(1)
			go func() {
				defer h.moves.Done()
				h.handOff(shard, o, to)
			}()
		}
	}
}

// handOff gives a shard to the party that asked for it: calls for it are
// answered "not owner" from now on (the routing client retries them at the
// next owner), the sequencer answers and commits everything it took and
// writes its balances (a clean stop), and the lease is released, reserved
// for the requester, who takes it at once. It runs to the end even when
// the host is stopping (Run waits for it), so the shard is never left
// held by a stopped sequencer.
func (h *Host) handOff(shard int, o *hosted, to string) {
	start := time.Now()
	h.mu.Lock()
	if h.owned[shard] == o {
		delete(h.owned, shard)
	}
	h.mu.Unlock()
	o.stop()
	<-o.done
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.LeaseTTL)
	defer cancel()
	if err := h.lease.ReleaseLease(ctx, shard, h.cfg.Owner, o.epoch); err != nil {
		// The lease then expires, and the requester takes it after that.
		h.log.Warn("hand-off release failed", "shard", shard, "to", to, "err", err)
		return
	}
	took := time.Since(start)
	h.log.Info("shard handed off", "shard", shard, "epoch", o.epoch, "to", to, "took", took)
	if h.cfg.OnHandOff != nil {
		h.cfg.OnHandOff(shard, to, took)
	}
}

// share is what the acquire round knows of the other hosts: how many are
// live and who owns each shard. ok is false without a HostRegistry or when
// they could not be read; then the host takes free shards as they come.
type share struct {
	ok       bool
	live     map[string]bool // live hosts, this one included
	owners   map[int]string  // live owner by shard; absent = free
	reserved map[int]string  // free shards handed off to an owner, who alone may take them meanwhile
}

// fair returns the fair share's floor and ceiling: floor(shards / live)
// and ceil(shards / live).
func (s share) fair(shards int) (floor, ceil int) {
	n := max(len(s.live), 1)
	return shards / n, (shards + n - 1) / n
}

func (h *Host) look(ctx context.Context) share {
	if h.reg == nil {
		return share{}
	}
	lctx, cancel := context.WithTimeout(ctx, h.cfg.LeaseTTL/3)
	defer cancel()
	hosts, err := h.reg.LiveHosts(lctx)
	if err != nil {
		if ctx.Err() == nil {
			h.log.Warn("read live hosts failed", "err", err)
		}
		return share{}
	}
	owners, err := h.reg.ShardOwners(lctx)
	if err != nil {
		if ctx.Err() == nil {
			h.log.Warn("read shard owners failed", "err", err)
		}
		return share{}
	}
	s := share{ok: true, live: map[string]bool{h.cfg.Owner: true}, owners: map[int]string{}, reserved: map[int]string{}}
	for _, o := range hosts {
		s.live[o] = true
	}
	for _, o := range owners {
		switch {
		case o.Owner != "":
			s.owners[o.Shard] = o.Owner
		case o.ReservedFor != "":
			s.reserved[o.Shard] = o.ReservedFor
		}
	}
	return s
}

// acquire takes free shards (within ShardsMax and, with a registry, the
// fair share) and then asks for a hand-off when this host owns too few.
func (h *Host) acquire(ctx context.Context) {
	sh := h.look(ctx)
	_, ceil := sh.fair(h.cfg.Shards)
	took := false // a shard this round
	for shard := 0; shard < h.cfg.Shards && ctx.Err() == nil; shard++ {
		h.mu.Lock()
		_, have := h.owned[shard]
		n := len(h.owned)
		h.mu.Unlock()
		if have {
			delete(h.freeSince, shard)
			continue
		}
		if h.cfg.ShardsMax > 0 && n >= h.cfg.ShardsMax {
			return
		}
		// A live lease in this host's own name that it does not hold is
		// its previous life's: the process died and was restarted under
		// the same name (a supervisor, a StatefulSet's pod). It takes the
		// shard back at once (AcquireLease lets the lease's owner, with a
		// new epoch that fences anything left of the old life) instead of
		// leaving it unserved until the dead lease expires.
		if sh.ok && sh.owners[shard] != h.cfg.Owner {
			if _, held := sh.owners[shard]; held {
				delete(h.freeSince, shard)
				continue
			}
			// At or over its fair share a host leaves a free shard to the
			// hosts under theirs, unless nobody took it for a round: a
			// shard is never left unserved. A shard handed off to this
			// host is taken at once whatever its share (nobody else may
			// take it until the hand-off expires: left, it stayed
			// unserved that long); one handed off to another host is
			// that host's to take.
			since, seen := h.freeSince[shard]
			if !seen {
				h.freeSince[shard] = time.Now()
			}
			switch to := sh.reserved[shard]; {
			case to == h.cfg.Owner:
			case to != "" && sh.live[to]:
				continue
			case n >= ceil && (!seen || time.Since(since) < h.cfg.LeaseTTL/3):
				continue
			}
		}
		// Not cancelled with ctx: a host told to stop mid-call must learn
		// whether it took the lease, and give it back at once if it did,
		// rather than leave it to expire.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.LeaseTTL/3)
		epoch, ok, err := h.lease.AcquireLease(actx, shard, h.cfg.Owner, h.cfg.Address, h.cfg.LeaseTTL)
		if ok && ctx.Err() != nil {
			err = h.lease.ReleaseLease(actx, shard, h.cfg.Owner, epoch)
			ok = false
		}
		cancel()
		if err != nil {
			// A lease taken when the call timed out is this host's to take
			// again next round (AcquireLease lets its owner).
			h.log.Warn("lease acquire failed", "shard", shard, "err", err)
			continue
		}
		if ok {
			delete(h.freeSince, shard)
			h.start(ctx, shard, epoch)
			took = true
		}
	}
	if sh.ok {
		// One move at a time: the next comes at the next round, or at once
		// when the shard asked for is released (a notice) and taken.
		if h.rebalance(ctx, sh) || !took {
			return
		}
		poke(h.wakeAcquire) // took one: ask for the next move now if still short
	}
}

// rebalance asks the live host owning the most shards for a hand-off of
// one of them when that host owns at least two more than this one (and
// this one is under ShardsMax): so no two hosts end up more than one shard
// apart, whatever the order in which they started, and in particular a
// host under its fair share's floor gets shards from the busiest. Shards
// in flux (free, or held by a party that is no live host: the settlement
// run for a step, a dead host until its lease expires) widen the margin
// by their number, since they come back to some host soon: a host that
// lent a shard to the settlement run does not take one from another host
// meanwhile. It reports whether it asked.
func (h *Host) rebalance(ctx context.Context, sh share) bool {
	h.mu.Lock()
	n := len(h.owned)
	h.mu.Unlock()
	if h.cfg.ShardsMax > 0 && n >= h.cfg.ShardsMax || time.Now().Before(h.askedTill) {
		return false
	}
	count := map[string][]int{}
	hosted := n
	for shard, owner := range sh.owners {
		h.mu.Lock()
		_, mine := h.owned[shard] // taken this round: sh is older
		h.mu.Unlock()
		if sh.live[owner] && owner != h.cfg.Owner && !mine {
			count[owner] = append(count[owner], shard)
			hosted++
		}
	}
	inFlux := max(h.cfg.Shards-hosted, 0)
	var from string
	for owner, shards := range count {
		if from == "" || len(shards) > len(count[from]) || len(shards) == len(count[from]) && owner < from {
			from = owner
		}
	}
	if from == "" || len(count[from]) < n+2+inFlux {
		return false
	}
	shard := slices.Max(count[from]) // any of them; the highest, so that the choice is plain to see
	rctx, cancel := context.WithTimeout(ctx, h.cfg.LeaseTTL/3)
	defer cancel()
	ok, err := h.reg.RequestHandoff(rctx, shard, h.cfg.Owner, h.cfg.LeaseTTL, false)
	if err != nil {
		if ctx.Err() == nil {
			h.log.Warn("hand-off request failed", "shard", shard, "from", from, "err", err)
		}
		return false
	}
	if ok {
		h.askedTill = time.Now().Add(h.cfg.LeaseTTL)
		h.log.Info("hand-off asked", "shard", shard, "from", from, "owned", n, "theirs", len(count[from]))
	}
	return ok
}

func (h *Host) start(ctx context.Context, shard int, epoch int64) {
	cfg := h.cfg.Sequencer
	cfg.Shard, cfg.Shards, cfg.Epoch = shard, h.cfg.Shards, epoch
	seq := NewSequencer(cfg, h.store, h.log)
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	o := &hosted{seq: seq, epoch: epoch, stop: stop, done: make(chan struct{})}
	h.mu.Lock()
	h.owned[shard] = o
	h.mu.Unlock()
	h.askedTill = time.Time{} // a pending request may be the one just answered
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer close(o.done)
		// A shard stopped on purpose while it was still loading (handed
		// off, or the host stopping) fails its load with the cancel: no
		// error.
		if err := seq.Run(sctx); err != nil && !(sctx.Err() != nil && errors.Is(err, context.Canceled)) {
			h.log.Error("shard stopped", "shard", shard, "epoch", epoch, "err", err)
		}
	}()
	h.log.Info("shard acquired", "shard", shard, "epoch", epoch)
}

// drop stops a shard this host may no longer write.
func (h *Host) drop(ctx context.Context, shard int, o *hosted, why string) {
	if !o.leaving.CompareAndSwap(false, true) {
		return // handed off or dropped already
	}
	o.stop()
	<-o.done
	h.mu.Lock()
	if h.owned[shard] == o {
		delete(h.owned, shard)
	}
	h.mu.Unlock()
	h.log.Warn("shard dropped", "shard", shard, "epoch", o.epoch, "why", why)
}

// shutdown leaves the live hosts first (so the others count this host gone
// when they are told of its releases), stops every shard, and releases the
// leases at once: the shards move without waiting for them to expire.
func (h *Host) shutdown() {
	if h.reg != nil {
		ctx, cancel := context.WithTimeout(context.Background(), h.cfg.LeaseTTL/3)
		if err := h.reg.LeaveHosts(ctx, h.cfg.Owner); err != nil {
			h.log.Warn("leave hosts failed", "err", err)
		}
		cancel()
	}
	h.mu.Lock()
	owned := h.owned
	h.owned = map[int]*hosted{}
	h.mu.Unlock()
	for _, o := range owned {
		o.stop()
	}
	h.wg.Wait()
	for shard, o := range owned {
		ctx, cancel := context.WithTimeout(context.Background(), h.cfg.LeaseTTL)
		if err := h.lease.ReleaseLease(ctx, shard, h.cfg.Owner, o.epoch); err != nil {
			h.log.Warn("lease release failed", "shard", shard, "err", err)
		}
		cancel()
	}
}
