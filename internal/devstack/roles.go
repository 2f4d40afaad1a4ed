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

// settleWorker is the settle role over the stack's database, its metrics
// on the stack's registry, publishing yields through the stack's accounts
// service and answering the admin API's settlement calls (through the
// gateway's adapter).
//
// A run takes the ledger shard from the stack's owner for its duration
// (TakeShards: it fences the owner's sequencer of shard 0, whose commits
// then fail with ledger.ErrFenced) and releases it when done; the owner's
// host takes it back at a new epoch, and the stack's ledger client follows
// (orders in between fail with 503 and are retried by their keys).
func settleWorker(o SettleOptions) Worker {
	return Worker{Name: "settlement", Start: func(ctx context.Context, s *Stack) (Role, error) {
		runner, release, err := nightly.OpenOnDemand(ctx, nightly.OnDemandConfig{DSN: s.DSN, Shards: 1,
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
// serves the ledger shard again after the run, so that what the caller
// reads next shows the run: until its host finds the lease lost, the
// fenced sequencer would answer reads from its book as it was before the
// run (and orders with 503). A run that did not take the shard (a date
// already settled, a refusal before it started) answers at once.
type handBackSettler struct {
	gateway.Settler
	s *Stack
}

func (h handBackSettler) Run(ctx context.Context, req gateway.SettlementRequest) (gateway.SettlementRun, error) {
	before, _ := h.s.Host.Sequencer(0)
	epoch, err := h.s.shardEpoch(ctx)
	if err != nil {
		return gateway.SettlementRun{}, err
	}
	run, err := h.Settler.Run(ctx, req)
	if after, aerr := h.s.shardEpoch(ctx); aerr == nil && after != epoch {
		h.s.waitHandBack(ctx, before)
	}
	return run, err
}

// shardEpoch is shard 0's lease epoch in the database.
func (s *Stack) shardEpoch(ctx context.Context) (int64, error) {
	ls, err := s.LedgerStore.Leases(ctx)
	if err != nil || len(ls) == 0 {
		return 0, fmt.Errorf("ledger lease of shard 0: %w", err)
	}
	return ls[0].Epoch, nil
}

// waitHandBack waits (at most handBackWaitMax) until the owner serves
// shard 0 with a sequencer other than before, loaded.
func (s *Stack) waitHandBack(ctx context.Context, before *ledger.Sequencer) {
	deadline := time.Now().Add(handBackWaitMax)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if seq, ok := s.Host.Sequencer(0); ok && seq != before { // Sequencer gives loaded ones only
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.Logger.Warn("the ledger owner did not take shard 0 back after a settlement run in time", "waited", handBackWaitMax)
}

// reconWorker is the reconciliation role on the stack's database and
// broker, its metrics on the stack's registry, answering the admin API's
// reconciliation report with its counters.
func reconWorker(o ReconOptions) Worker {
	return Worker{Name: "recon", Start: func(ctx context.Context, s *Stack) (Role, error) {
		w, release, err := worker.OpenEmbedded(ctx, worker.EmbeddedConfig{DSN: s.DSN, Brokers: s.Brokers, Topic: s.Topic,
			LagEvery: o.LagEvery, Registerer: s.Registry, Logger: s.Logger, Now: s.Clock.Now})
		if err != nil {
			return Role{}, err
		}
		s.Recon = w
		return Role{Run: w.Run, Reconciler: server.NewReconciler(w.Store(), w, nil), Close: release}, nil
	}}
}
