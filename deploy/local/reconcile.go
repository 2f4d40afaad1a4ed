package local

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/settlement/recon"
	reconpg "github.com/fundplatform/fund/settlement/recon/postgres"
)

// Bounds of Reconcile.
const (
	reconCatchUpMax = 3 * time.Minute // for the relays and the worker to catch up
	reconDaysMax    = 62
)

// Reconcile is the audit's reconciliation in the cluster: once the
// owners' relays have published every event (the outboxes are empty) and
// the reconciliation worker has consumed them (its lag is 0), it compares
// each business date from `from` through `to` with the journal, entry by
// entry on every shard and every saga (settlement/recon over every ledger
// database), and returns what it found and the open breaks left.
func (c *Cluster) Reconcile(ctx context.Context, from, to time.Time) (summary string, breaks int64, err error) {
	days := businessDays(from, to)
	if len(days) == 0 || len(days) > reconDaysMax {
		return "", 0, fmt.Errorf("local: reconcile %d days from %s to %s: want 1..%d", len(days), from, to, reconDaysMax)
	}
	if err := c.waitCaughtUp(ctx); err != nil {
		return "", 0, err
	}
	smap, err := ledger.NewShardMap(c.Shards, len(c.LedgerDSNs))
	if err != nil {
		return "", 0, err
	}
	var stores []recon.Store
	for _, dsn := range c.LedgerDSNs {
		st, err := reconpg.Open(ctx, reconpg.Config{DSN: dsn})
		if err != nil {
			return "", 0, err
		}
		defer st.Close()
		stores = append(stores, st)
	}
	set, err := recon.NewSet(smap, stores...)
	if err != nil {
		return "", 0, err
	}
	var parts []string
	for _, day := range days {
		rep, err := set.Compare(ctx, day, recon.CompareOptions{Deep: true})
		if err != nil {
			return "", 0, fmt.Errorf("compare %s: %w", day.Format(time.DateOnly), err)
		}
		var entries int64
		for _, sd := range rep.Shards {
			entries += sd.JournalEntries
		}
		parts = append(parts, fmt.Sprintf("%s: %d journal entries on %d shard-assets, %d breaks found, %d open sagas",
			rep.BusinessDate, entries, len(rep.Shards), len(rep.Breaks), rep.OpenSagas))
	}
	open, err := set.OpenBreaks(ctx)
	if err != nil {
		return "", 0, err
	}
	for _, n := range open {
		breaks += n
	}
	events, _ := c.Metric(ctx, c.Recon, "fund_recon_events_total")
	return fmt.Sprintf("compared entry by entry: %s; open breaks %v; recon consumed %.0f events",
		strings.Join(parts, "; "), open, events), breaks, nil
}

// businessDays are the dates (midnight UTC, as recon.ParseDay gives them)
// from from's business date through to's.
func businessDays(from, to time.Time) []time.Time {
	day := func(t time.Time) time.Time {
		t = t.In(ledger.BusinessZone())
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	}
	var out []time.Time
	for d := day(from); !d.After(day(to)) && len(out) <= reconDaysMax; d = d.AddDate(0, 0, 1) {
		out = append(out, d)
	}
	return out
}

// waitCaughtUp waits until every ledger database's outbox is empty and
// the reconciliation worker's consumer lag is 0.
func (c *Cluster) waitCaughtUp(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, reconCatchUpMax)
	defer cancel()
	for {
		empty, err := c.outboxesEmpty(ctx)
		if err == nil && empty {
			lag, lerr := c.Metric(ctx, c.Recon, "fund_recon_consumer_lag_messages")
			if lerr == nil && lag == 0 {
				return nil
			}
			err = lerr
			if err == nil {
				err = fmt.Errorf("recon consumer lag %.0f", lag)
			}
		} else if err == nil {
			err = fmt.Errorf("events still in the outboxes")
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("local: relays and reconciliation not caught up within %s: %w", reconCatchUpMax, err)
		case <-time.After(probeInterval * 5):
		}
	}
}

// outboxesEmpty reports whether every ledger database's outbox is empty.
func (c *Cluster) outboxesEmpty(ctx context.Context) (bool, error) {
	for _, dsn := range c.LedgerDSNs {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return false, err
		}
		var n int64
		err = conn.QueryRow(ctx, `SELECT count(*) FROM ledger_outbox`).Scan(&n)
		conn.Close(context.WithoutCancel(ctx))
		if err != nil || n > 0 {
			return false, err
		}
	}
	return true, nil
}
