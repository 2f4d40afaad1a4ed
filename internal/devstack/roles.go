package devstack

import (
	"context"
	"fmt"
	"time"

	"github.com/fundplatform/fund/gateway"
	"github.com/fundplatform/fund/gateway/server"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/settlement/nightly"
	"github.com/fundplatform/fund/settlement/recon/worker"
)

// SettleOptions are the settle role's in the stack: settlement on demand
// (settlement/nightly.OpenOnDemand), not on a schedule.
type SettleOptions struct {
	// FileDir is where custodian files are written; "" = the current
	// directory.
	FileDir string
	// AllowEarly lets a date run before its cut-off has passed (a drill).
	AllowEarly bool
}

// ReconOptions are the reconciliation role's in the stack
// (settlement/recon/worker.OpenEmbedded).
type ReconOptions struct {
	// LagEvery is how often the consumer lag is probed; 0 = the worker's
	// default. Set it short to wait for the worker to catch up.
	LagEvery time.Duration
}

// settleWorker is the settle role over every database of the stack, in
// shard-map order, as `fundd settle` runs it (each shard's steps in its
// shard's database; the run's records and the whole-run steps in the
// first), its metrics on the stack's registry, publishing yields through
// the stack's accounts service and answering the admin API's settlement
// calls (through the gateway's adapter).
//
// A run borrows each ledger shard from the stack's owner for each of its
// steps by hand-off (the owner's sequencer commits what it holds and
// releases the lease; TakeShards fences it only if it does not within the
// run's HandOffWait) and gives it back when the step is done; the owner's
// host takes it back at a new epoch, and the stack's ledger client
// (ledger/owner.Local) waits out the pause, so orders in between see
// latency, not errors.
func settleWorker(o SettleOptions) Worker {
	return Worker{Name: "settlement", Start: func(ctx context.Context, s *Stack) (Role, error) {
		runner, release, err := nightly.OpenOnDemand(ctx, nightly.OnDemandConfig{DSNs: s.DSNs, Shards: s.Shards,
			FileDir: o.FileDir, TakeShards: true, AllowEarly: o.AllowEarly, Yields: s.Accounts,
			Registerer: s.Registry, Logger: s.Logger, Now: s.Clock.Now})
		if err != nil {
			return Role{}, err
		}
		s.Settlement = runner
		return Role{Settler: handBackSettler{Settler: server.NewSettler(runner), s: s}, Close: release}, nil
	}}
}

// handBackWaitMax bounds handBackSettler's wait for the owner: it takes a
// released shard back within a third of leaseTTL, once its own renewal has
// found the lease lost (another third).
const handBackWaitMax = 10 * time.Second

// handBackSettler answers a settlement call only once the stack's owner
// serves again every ledger shard the run took, so that what the caller
// reads next shows the run: until its host takes the shard back, reads
// would wait for it, or (had it been fenced) come from its book as it was
// before the run. A run that took no shard (a date already
// settled, a refusal before it started) answers at once.
type handBackSettler struct {
	gateway.Settler
	s *Stack
}

func (h handBackSettler) Run(ctx context.Context, req gateway.SettlementRequest) (gateway.SettlementRun, error) {
	before := make([]*ledger.Sequencer, h.s.Shards)
	for shard := range before {
		before[shard], _ = h.s.Host.Sequencer(shard)
	}
	epochs, err := h.s.shardEpochs(ctx)
	if err != nil {
		return gateway.SettlementRun{}, err
	}
	run, err := h.Settler.Run(ctx, req)
	if after, aerr := h.s.shardEpochs(ctx); aerr == nil {
		var taken []int
		for shard := range after {
			if after[shard] != epochs[shard] {
				taken = append(taken, shard)
			}
		}
		h.s.waitHandBack(ctx, taken, before)
	}
	return run, err
}

// shardEpochs are the shards' lease epochs, by shard, each read in its
// shard's database (every database of the stack).
func (s *Stack) shardEpochs(ctx context.Context) ([]int64, error) {
	ls, err := s.Owner.Databases().Leases(ctx)
	if err != nil {
		return nil, fmt.Errorf("ledger leases: %w", err)
	}
	if len(ls) != s.Shards {
		return nil, fmt.Errorf("ledger leases: %d of %d shards", len(ls), s.Shards)
	}
	out := make([]int64, len(ls))
	for i, l := range ls {
		out[i] = l.Epoch
	}
	return out, nil
}

// waitHandBack waits (at most handBackWaitMax in all) until the owner
// serves each of the shards with a sequencer other than the one before,
// loaded.
func (s *Stack) waitHandBack(ctx context.Context, shards []int, before []*ledger.Sequencer) {
	deadline := time.Now().Add(handBackWaitMax)
	for _, shard := range shards {
		for {
			if seq, ok := s.Host.Sequencer(shard); ok && seq != before[shard] { // Sequencer gives loaded ones only
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				s.Logger.Warn("the ledger owner did not take a shard back after a settlement run in time",
					"shard", shard, "waited", handBackWaitMax)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// reconWorker is the reconciliation role on every database of the stack
// (each event recorded beside its shard's journal, as `fundd recon` keeps
// them) and its broker, its metrics on the stack's registry, answering the
// admin API's reconciliation report with its counters over every
// database.
func reconWorker(o ReconOptions) Worker {
	return Worker{Name: "recon", Start: func(ctx context.Context, s *Stack) (Role, error) {
		w, release, err := worker.OpenEmbedded(ctx, worker.EmbeddedConfig{DSNs: s.DSNs, Shards: s.Shards,
			Brokers: s.Brokers, Topic: s.Topic,
			LagEvery: o.LagEvery, Registerer: s.Registry, Logger: s.Logger, Now: s.Clock.Now})
		if err != nil {
			return Role{}, err
		}
		s.Recon = w
		return Role{Run: w.Run, Reconciler: server.NewReconciler(w.Store(), w, nil), Close: release}, nil
	}}
}
