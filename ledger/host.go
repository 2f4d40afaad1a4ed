package ledger

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// LeaseStore keeps shard leases with fencing epochs (ledger/postgres.Store).
type LeaseStore interface {
	// AcquireLease takes the shard when nobody holds a live lease on it and
	// returns a new, strictly greater epoch; ok is false when it is taken.
	// addr is where the owner serves calls, advertised in the lease so that
	// clients can find it (empty when it serves none).
	AcquireLease(ctx context.Context, shard int, owner, addr string, ttl time.Duration) (epoch int64, ok bool, err error)
	// RenewLease extends a held lease; ErrFenced when it was taken over.
	RenewLease(ctx context.Context, shard int, owner string, epoch int64, ttl time.Duration) error
	// ReleaseLease gives a shard up after a clean stop.
	ReleaseLease(ctx context.Context, shard int, owner string, epoch int64) error
}

// HostConfig configures a Host.
type HostConfig struct {
	Owner    string        // unique per process, e.g. hostname-pid
	Address  string        // where this process serves calls (host:port), advertised in its leases
	Shards   int           // logical shards in the system
	LeaseTTL time.Duration // a dead owner's shards move after at most this long
	// ShardsMax caps how many shards this host owns (0 = all it can get), so
	// that several hosts share the shards instead of the first taking all.
	ShardsMax int
	Sequencer SequencerConfig // template; Shard, Shards and Epoch are set per shard
}

// Host owns a changing set of shards through leases: it takes free shards,
// renews its leases, runs one Sequencer per owned shard, and stops a shard
// at once when its lease is lost. Several hosts (processes) share the
// shards; when one dies its leases expire and the others take its shards.
type Host struct {
	cfg   HostConfig
	store Store
	lease LeaseStore
	log   *slog.Logger

	mu    sync.Mutex
	owned map[int]*hosted
	wg    sync.WaitGroup
}

type hosted struct {
	seq   *Sequencer
	epoch int64
	stop  context.CancelFunc
	done  chan struct{}
}

// NewHost returns a host; start it with Run.
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
	return &Host{cfg: cfg, store: store, lease: lease, log: logger.With("owner", cfg.Owner), owned: map[int]*hosted{}}
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

// Run renews and acquires leases every third of the TTL until ctx ends,
// then stops every shard and releases its lease.
func (h *Host) Run(ctx context.Context) error {
	defer h.shutdown()
	// Renewals and acquisitions run apart, and renewals run one per shard
	// at once: with shards on several databases, one database that hangs
	// (each call waiting out its timeout) must never delay the renewals of
	// shards on the healthy ones past their TTL.
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); h.every(ctx, h.renew) }()
	go func() { defer wg.Done(); h.every(ctx, h.acquire) }()
	wg.Wait()
	return nil
}

// every runs round now and then every third of the TTL until ctx ends.
func (h *Host) every(ctx context.Context, round func(context.Context)) {
	tick := time.NewTicker(h.cfg.LeaseTTL / 3)
	defer tick.Stop()
	for {
		round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// renew renews every owned shard's lease, concurrently (at most one call
// per owned shard, so bounded by the shard count) and waits for all.
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
	wg.Wait()
}

func (h *Host) renewOne(ctx context.Context, shard int, o *hosted) {
	select {
	case <-o.done: // the sequencer stopped on its own (fenced, store failure)
		h.drop(ctx, shard, o, "sequencer stopped")
		return
	default:
	}
	rctx, cancel := context.WithTimeout(ctx, h.cfg.LeaseTTL/3)
	err := h.lease.RenewLease(rctx, shard, h.cfg.Owner, o.epoch, h.cfg.LeaseTTL)
	cancel()
	if errors.Is(err, ErrFenced) {
		h.drop(ctx, shard, o, "lease lost")
	} else if err != nil && ctx.Err() == nil {
		// Cannot tell; the commit-time fence keeps a lost lease from
		// writing, and the next round tries again.
		h.log.Warn("lease renewal failed", "shard", shard, "err", err)
	}
}

func (h *Host) acquire(ctx context.Context) {
	for shard := 0; shard < h.cfg.Shards && ctx.Err() == nil; shard++ {
		h.mu.Lock()
		_, have := h.owned[shard]
		full := h.cfg.ShardsMax > 0 && len(h.owned) >= h.cfg.ShardsMax
		h.mu.Unlock()
		if have {
			continue
		}
		if full {
			return
		}
		actx, cancel := context.WithTimeout(ctx, h.cfg.LeaseTTL/3)
		epoch, ok, err := h.lease.AcquireLease(actx, shard, h.cfg.Owner, h.cfg.Address, h.cfg.LeaseTTL)
		cancel()
		if err != nil {
			h.log.Warn("lease acquire failed", "shard", shard, "err", err)
			continue
		}
		if ok {
			h.start(ctx, shard, epoch)
		}
	}
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
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer close(o.done)
		if err := seq.Run(sctx); err != nil {
			h.log.Error("shard stopped", "shard", shard, "epoch", epoch, "err", err)
		}
	}()
	h.log.Info("shard acquired", "shard", shard, "epoch", epoch)
}

// drop stops a shard this host may no longer write.
func (h *Host) drop(ctx context.Context, shard int, o *hosted, why string) {
	o.stop()
	<-o.done
	h.mu.Lock()
	if h.owned[shard] == o {
		delete(h.owned, shard)
	}
	h.mu.Unlock()
	h.log.Warn("shard dropped", "shard", shard, "epoch", o.epoch, "why", why)
}

func (h *Host) shutdown() {
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
