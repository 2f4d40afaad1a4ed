package devstack

import (
	"context"
	"time"

	"github.com/fundplatform/fund/gateway/server"
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
		return Role{Settler: server.NewSettler(runner), Close: release}, nil
	}}
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
