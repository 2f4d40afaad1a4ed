package recon

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/ledger"
)

// sagasCheckMax bounds the open sagas one comparison looks at per database.
const sagasCheckMax = 100_000

// Set is reconciliation over every ledger database: one Store per database,
// shards placed by the ledger's ShardMap. Events go to the store of their
// shard's database; comparisons run on each and then follow the sagas
// across them (a saga's legs live on two shards, maybe two databases).
type Set struct {
	shards ledger.ShardMap
	stores []Store
}

// NewSet returns a set over stores, in the ShardMap's database order.
func NewSet(shards ledger.ShardMap, stores ...Store) (*Set, error) {
	if len(stores) != shards.Databases || len(stores) == 0 {
		return nil, fmt.Errorf("recon: %d stores for %d databases", len(stores), shards.Databases)
	}
	return &Set{shards: shards, stores: stores}, nil
}

// Single is a set of one database holding every shard.
func Single(store Store) *Set {
	return &Set{shards: ledger.ShardMap{Shards: 1, Databases: 1}, stores: []Store{store}}
}

func (s *Set) storeOf(shard int) Store { return s.stores[s.shards.DatabaseOf(shard)] }

// knows reports whether shard is one of the set's (an event of another
// shard means the workers and the ledger disagree on the shard count).
func (s *Set) knows(shard int) bool {
	return shard >= 0 && (len(s.stores) == 1 || shard < s.shards.Shards)
}

// Apply records events in the stores of their shards (one transaction per
// database). On error some databases may have written: the retry finds
// those events as redeliveries.
func (s *Set) Apply(ctx context.Context, events []ledger.Event) ([]Outcome, error) {
	if len(s.stores) == 1 {
		return s.stores[0].Apply(ctx, events)
	}
	byDB := map[int][]int{}
	for i := range events {
		db := s.shards.DatabaseOf(events[i].Shard)
		byDB[db] = append(byDB[db], i)
	}
	outs := make([]Outcome, len(events))
	for db, idx := range byDB {
		part := make([]ledger.Event, len(idx))
		for j, i := range idx {
			part[j] = events[i]
		}
		o, err := s.stores[db].Apply(ctx, part)
		if err != nil {
			return nil, fmt.Errorf("database %d: %w", db, err)
		}
		if len(o) != len(part) {
			return nil, fmt.Errorf("%w: database %d: %d outcomes for %d events", ledger.ErrInvariantBroke, db, len(o), len(part))
		}
		for j, i := range idx {
			outs[i] = o[j]
		}
	}
	return outs, nil
}

// Compare reconciles a business day on every database, then checks every
// saga open up to the cutoff: closed by exactly one of leg 2 and refund
// (wherever they were recorded), or an InTransitNotZero break.
func (s *Set) Compare(ctx context.Context, day time.Time, opts CompareOptions) (*Report, error) {
	start := time.Now()
	var rep *Report
	for db, st := range s.stores {
		r, err := st.Compare(ctx, day, opts)
		if err != nil {
			return nil, fmt.Errorf("database %d: %w", db, err)
		}
		if rep == nil {
			rep = r
			continue
		}
		if r.From == nil {
			rep.From = nil // some database compared the whole day
		}
		rep.Shards = append(rep.Shards, r.Shards...)
		rep.Breaks = append(rep.Breaks, r.Breaks...)
		rep.Resolved += r.Resolved
	}
	sort.SliceStable(rep.Shards, func(i, j int) bool { return rep.Shards[i].Shard < rep.Shards[j].Shard })
	if err := s.checkSagas(ctx, rep); err != nil {
		return nil, err
	}
	rep.Took = time.Since(start)
	return rep, nil
}

func (s *Set) checkSagas(ctx context.Context, rep *Report) error {
	open := make([][]Saga, len(s.stores))
	var ids []ledger.TransferID
	for db, st := range s.stores {
		sg, err := st.OpenSagas(ctx, rep.Cutoff, sagasCheckMax)
		if err != nil {
			return fmt.Errorf("database %d: %w", db, err)
		}
		open[db] = sg
		for _, g := range sg {
			ids = append(ids, g.In, g.Back)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	seen := map[ledger.TransferID]bool{}
	for db, st := range s.stores {
		m, err := st.Seen(ctx, ids)
		if err != nil {
			return fmt.Errorf("database %d: %w", db, err)
		}
		for id := range m {
			seen[id] = true
		}
	}
	for db, sg := range open {
		var closed []ledger.TransferID
		var breaks []Break
		for _, g := range sg {
			leg2, refund := seen[g.In], seen[g.Back]
			if leg2 != refund {
				closed = append(closed, g.Leg1)
				continue
			}
			shard, id, amount := g.Shard, g.Leg1, g.Amount
			b := Break{Key: SagaBreakKey(g.Leg1), Kind: InTransitNotZero, Source: SourceCompare, Shard: &shard,
				BusinessDate: ledger.BusinessDate(g.Timestamp.UnixNano()).Format(time.DateOnly), TransferID: &id,
				Asset: g.Asset.String(), Other: Amount(amount).Ptr()}
			if !leg2 {
				rep.OpenSagas++
				rep.InTransit[g.Asset.String()] += Amount(g.Amount)
				b.Detail = fmt.Sprintf("leg 1 put %s %s in transit at %s; neither leg 2 nor the refund was seen",
					accounts.FormatAmount(g.Amount), g.Asset, g.Timestamp.Format(time.RFC3339Nano))
			} else {
				rep.InTransit[g.Asset.String()] -= Amount(g.Amount)
				b.Detail = fmt.Sprintf("%s %s left transit twice: both leg 2 and the refund were seen",
					accounts.FormatAmount(g.Amount), g.Asset)
			}
			breaks = append(breaks, b)
		}
		resolved, err := s.stores[db].SettleSagas(ctx, closed, breaks)
		if err != nil {
			return fmt.Errorf("database %d: %w", db, err)
		}
		rep.Resolved += resolved
		rep.Breaks = append(rep.Breaks, breaks...)
	}
	return nil
}

// Breaks lists the breaks of every database, newest first.
func (s *Set) Breaks(ctx context.Context, f BreakFilter) ([]Break, error) {
	var out []Break
	for db, st := range s.stores {
		bs, err := st.Breaks(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("database %d: %w", db, err)
		}
		out = append(out, bs...)
	}
	if len(s.stores) > 1 {
		sort.SliceStable(out, func(i, j int) bool { return out[i].LastSeen.After(out[j].LastSeen) })
		if f.Limit > 0 && len(out) > f.Limit {
			out = out[:f.Limit]
		}
	}
	return out, nil
}

// OpenBreaks counts the open breaks of every database per kind.
func (s *Set) OpenBreaks(ctx context.Context) (map[BreakKind]int64, error) {
	out := map[BreakKind]int64{}
	var errs []error
	for db, st := range s.stores {
		m, err := st.OpenBreaks(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("database %d: %w", db, err))
			continue
		}
		for k, n := range m {
			out[k] += n
		}
	}
	return out, errors.Join(errs...)
}

// storeOfAccount is the store of the database holding account.
func (s *Set) storeOfAccount(account ledger.AccountID) Store {
	return s.storeOf(ledger.ShardOf(account, s.shards.Shards))
}

// BankMovements returns the movements of account on a day, from the
// journal of the database holding it.
func (s *Set) BankMovements(ctx context.Context, account ledger.AccountID, day time.Time) ([]Movement, error) {
	return s.storeOfAccount(account).BankMovements(ctx, account, day)
}

// SaveStatement stores an import in the database holding its account.
func (s *Set) SaveStatement(ctx context.Context, imp StatementImport) error {
	return s.storeOfAccount(imp.Account).SaveStatement(ctx, imp)
}
