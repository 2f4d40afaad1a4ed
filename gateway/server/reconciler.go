package server

import (
	"context"
	"fmt"
	"time"

	"github.com/fundplatform/fund/gateway"
	"github.com/fundplatform/fund/settlement/recon"
)

// reportBreaksMax bounds the breaks one report carries.
const reportBreaksMax = 1000

// Reconciler answers the admin API's reconciliation report from the
// stored breaks: in a worker's process with its counters, elsewhere with a
// lag probe.
type Reconciler struct {
	set    *recon.Set
	worker *recon.Worker                            // nil outside a worker
	lag    func(ctx context.Context) (int64, error) // used without a worker; may be nil
}

var _ gateway.Reconciler = (*Reconciler)(nil)

// NewReconciler reports from set's breaks, with w's counters when w is not
// nil, else with the consumer lag lag probes (nil: the lag is not shown).
func NewReconciler(set *recon.Set, w *recon.Worker, lag func(context.Context) (int64, error)) *Reconciler {
	return &Reconciler{set: set, worker: w, lag: lag}
}

// Report implements gateway.Reconciler.
func (r *Reconciler) Report(ctx context.Context) (gateway.ReconReport, error) {
	bs, err := r.set.Breaks(ctx, recon.BreakFilter{Limit: reportBreaksMax})
	if err != nil {
		return gateway.ReconReport{}, err
	}
	open, err := r.set.OpenBreaks(ctx)
	if err != nil {
		return gateway.ReconReport{}, err
	}
	rep := gateway.ReconReport{GeneratedAt: time.Now().UTC(), OpenBreaksByKind: map[string]int64{}}
	for k, n := range open {
		rep.OpenBreaksByKind[string(k)] = n
	}
	switch {
	case r.worker != nil:
		st := r.worker.Stats()
		rep.EventsProcessed, rep.ConsumerLag = st.Applied+st.Redelivered+st.Conflicts, st.Lag
	case r.lag != nil:
		if rep.ConsumerLag, err = r.lag(ctx); err != nil {
			rep.ConsumerLag = -1 // unknown; the report is still worth having
		}
	}
	for _, b := range bs {
		rep.Breaks = append(rep.Breaks, gateway.ReconBreak{Kind: string(b.Kind), Ref: breakSubject(&b), Detail: b.Detail,
			Amount: breakAmount(&b), DetectedAt: b.FirstSeen})
	}
	return rep, nil
}

// breakSubject names what a break is about: a transfer, an account or a
// statement reference.
func breakSubject(b *recon.Break) string {
	switch {
	case b.TransferID != nil:
		return "transfer " + b.TransferID.String()
	case b.Reference != "":
		return "reference " + b.Reference
	case b.AccountID != nil:
		return fmt.Sprintf("account %d", *b.AccountID)
	case b.Shard != nil:
		return fmt.Sprintf("shard %d", *b.Shard)
	}
	return b.Key
}

// breakAmount is the journal's figure less the other side's, or whichever
// is known.
func breakAmount(b *recon.Break) int64 {
	switch {
	case b.Journal != nil && b.Other != nil:
		return int64(*b.Journal - *b.Other)
	case b.Journal != nil:
		return int64(*b.Journal)
	case b.Other != nil:
		return -int64(*b.Other)
	}
	return 0
}
