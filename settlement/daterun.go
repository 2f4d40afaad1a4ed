package settlement

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/fundplatform/fund/accounts"
)

// dateRun is one run of Runner.Run over one business date, a step at a
// time: one method per step of Run's list, called in dateRunSteps' order.
// Each step reads what the steps before it left in the fields and adds its
// own. In more detail than Run's list:
//
//  1. close also stops the in-process ledger writers first
//     (Config.Quiesce); handBack undoes it when the run ends, however it
//     ends;
//
// The shards are held step by step (hold): each step takes a shard from
// its ledger host by a hand-off, does its part and releases it at once,
// so that the host takes it back and orders keep flowing, with a pause per
// shard and step of the hand-off plus the step's transaction. The entries
// are committed by this run holding the lease, not by the host's
// sequencer: a step writes up to millions of entries set-based (COPY) in
// one transaction with its step marker, which a sequencer's batches of
// requests could not do atomically. Between steps the hosts write again,
// which the steps allow for: the cuts fix what belongs to the day, the
// snapshot reads at the cut (with the stored balances brought up to the
// journal under its lease), and the booking steps are recorded per shard.
// One exception: on a day of negative income the shards are held from the
// snapshot until the income is booked, so that no holder can spend the
// shares a deduction was worked out against (a short day-wide pause on a
// rare day, rather than a deduction a holder can no longer bear).
//  2. orders settles the orders due shard by shard, then marks them
//     completed;
//  4. allocate pins the snapshot's totals (FixAllocation) before it splits
//     the allocation into one IncomeBook per shard;
//  9. finish writes the summary beside the custodian file and tells
//     Config.Observe.
//
// A re-run, or a resume after a crash anywhere, runs every step again from
// the first, and each writes what it writes once: close finds the cuts it
// recorded; orders and income are recorded per shard in the transaction
// of their entries, and a repeat returns what was recorded; the snapshot
// writes nothing, and allocate pins its totals the first time, so a
// snapshot that came out otherwise fails (ErrSnapshotMismatch); the yield
// published again with the same income returns what was stored; the file
// is written again and must have the first attempt's digest; events
// recorded as sent are not sent again (and carry stable ids if they are).
//
// The failpoints (Config.Failpoint) sit between and inside the steps, with
// the names the crash tests use: closed, orders/<shard>, orders-completed,
// income/<shard>, yield, file, published.
type dateRun struct {
	r     *Runner
	in    Input
	p     Progress // serialised (lockedProgress)
	start time.Time
	sum   Summary

	// close
	resume    func(ctx context.Context) error // restarts quiesced writers; nil when none
	leases    []Lease                         // per shard, while every shard is held (negative income); nil otherwise
	stopRenew func()                          // stops the lease renewer; nil until the leases are taken
	cuts      []int64                         // per shard
	// snapshot
	holders []Holder // ascending account ids
	// allocate
	books  []IncomeBook // per shard
	booked []int64      // per holder: what it was actually credited or debited
}

// dateRunSteps is the order of the steps; each returns the error that stops
// the run (to be resumed by the next one).
var dateRunSteps = []func(*dateRun, context.Context) error{
	(*dateRun).close,
	(*dateRun).orders,
	(*dateRun).snapshot,
	(*dateRun).allocate,
	(*dateRun).income,
	(*dateRun).yield,
	(*dateRun).file,
	(*dateRun).events,
	(*dateRun).finish,
}

// close fixes each shard's cut, holding each shard for it.
func (d *dateRun) close(ctx context.Context) error {
	r := d.r
	if r.cfg.Quiesce != nil {
		resume, err := r.cfg.Quiesce(ctx)
		if err != nil {
			return fmt.Errorf("quiesce ledger writers: %w", err)
		}
		d.resume = resume
	}
	if err := r.fail("closed"); err != nil {
		return err
	}
	d.cuts = make([]int64, r.cfg.Shards)
	if err := r.eachShard(ctx, func(ctx context.Context, shard int) error {
		return d.hold(ctx, shard, "close", func(ctx context.Context, l Lease) error {
			cut, err := r.store.Prepare(ctx, l, d.in.Date)
			d.cuts[shard] = cut
			return err
		})
	}); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}

// hold runs fn holding shard: with the lease held for the whole day's
// remaining steps when there is one (negative income), else for fn alone
// (Runner.withShard).
func (d *dateRun) hold(ctx context.Context, shard int, step string, fn func(ctx context.Context, l Lease) error) error {
	if d.leases != nil {
		return fn(ctx, d.leases[shard])
	}
	return d.r.withShard(ctx, shard, step, fn)
}

// negative says whether the day's income may deduct shares.
func (d *dateRun) negative() bool {
	if d.in.PerTenK {
		return d.in.IncomePer10k < 0
	}
	return d.in.IncomeTotal < 0
}

// handBack undoes close however the run ends: it gives the shards back (a
// failed run resumes from its stored steps, and the ledger should not wait
// out the leases; a crashed process's leases simply expire), then restarts
// the quiesced writers. Only the restart's error is returned.
func (d *dateRun) handBack(ctx context.Context) error {
	ctx = context.WithoutCancel(ctx)
	if d.stopRenew != nil {
		d.stopRenew()
		d.r.release(ctx, d.leases)
		d.leases, d.stopRenew = nil, nil
	}
	if d.resume == nil {
		return nil
	}
	if err := d.resume(ctx); err != nil {
		d.r.log.Error("resume ledger writers", "err", err)
		return fmt.Errorf("resume ledger writers: %w", err)
	}
	return nil
}

// orders settles the orders due on the date, shard by shard, and marks
// them completed.
func (d *dateRun) orders(ctx context.Context) error {
	r := d.r
	due, err := r.store.DueOrders(ctx, d.in.Date)
	if err != nil {
		return err
	}
	d.p.Phase("orders", int64(len(due)))
	if err := r.eachShard(ctx, func(ctx context.Context, shard int) error {
		t0 := time.Now()
		var res StepResult
		err := d.bookStep(ctx, shard, "orders", func(ctx context.Context, l Lease) (err error) {
			res, err = r.store.SettleOrders(ctx, l, d.in.Date, due)
			return err
		})
		if err != nil {
			return fmt.Errorf("shard %d: %w", shard, err)
		}
		d.p.ShardDone(shard, res.Count, time.Since(t0))
		return r.fail("orders/" + strconv.Itoa(shard))
	}); err != nil {
		d.p.End()
		return fmt.Errorf("settle orders: %w", err)
	}
	d.p.End()
	if err := r.store.CompleteOrders(ctx, d.in.Date, due); err != nil {
		return err
	}
	return r.fail("orders-completed")
}

// bookStep runs a booking step of a shard (fn): holding the shard, unless
// the step is recorded done already (a re-run), when fn runs without a
// lease and returns what was recorded.
func (d *dateRun) bookStep(ctx context.Context, shard int, step string, fn func(ctx context.Context, l Lease) error) error {
	if _, done, err := d.r.store.Step(ctx, d.in.Date, shard, step); err != nil {
		return err
	} else if done {
		return fn(ctx, Lease{Shard: shard})
	}
	return d.hold(ctx, shard, step, fn)
}

// snapshot reads the holders of every shard at its cut. On a day of
// negative income it first takes every shard until the run ends.
func (d *dateRun) snapshot(ctx context.Context) error {
	if d.negative() && d.leases == nil {
		leases, stopRenew, err := d.r.takeShards(ctx)
		if err != nil {
			return err
		}
		d.leases, d.stopRenew = leases, stopRenew
	}
	holders, err := d.r.snapshot(ctx, d.in.Date, d.cuts, d.p, d.hold)
	d.holders = holders
	return err
}

// allocate works out the fund's income and its per 10,000 shares from the
// input and the snapshot's total, allocates it over the holders, pins the
// totals in the store, and splits the allocation into the shards' books.
func (d *dateRun) allocate(ctx context.Context) error {
	in, sum := d.in, &d.sum
	holdings := make([]Holding, len(d.holders))
	var totalShares int64
	for i, h := range d.holders {
		holdings[i] = Holding{AccountID: int64(h.Account), Shares: h.Eligible}
		if h.Eligible > 0 {
			sum.Holders++
		}
		if totalShares > math.MaxInt64-h.Eligible {
			return fmt.Errorf("account %d: %w", h.Account, ErrSharesOverflow)
		}
		totalShares += h.Eligible
	}
	if totalShares == 0 && !in.PerTenK && in.IncomeTotal != 0 {
		// Store.OpenRun refuses this up front when nobody can hold
		// shares; here everybody who held them has redeemed them.
		// Run adds what resolves it (failureOf).
		return Refusef(ErrNoShares, "%s has %s to distribute but no eligible shares to pay it to: nobody held "+
			"fund shares earning on the day", in.Date.Format(time.DateOnly), in.IncomeText())
	}
	fundIncome, per10k, err := fundIncomeOf(in, totalShares)
	if err != nil {
		return err
	}
	allocs, err := Allocate(fundIncome, holdings)
	if err != nil {
		return fmt.Errorf("allocate %s: %w", FormatFen(fundIncome), err)
	}
	sum.TotalShares, sum.FundIncome, sum.IncomePer10k = totalShares, fundIncome, per10k
	if err := d.r.store.FixAllocation(ctx, in.Date, AllocationTotals{Holders: int64(len(d.holders)), TotalShares: totalShares,
		FundIncome: fundIncome, IncomePer10k: per10k}); err != nil {
		return err
	}
	d.books, d.booked = d.r.incomeBooks(d.holders, allocs)
	for i := range d.books {
		sum.Absorbed += d.books[i].Absorbed
		for _, e := range d.books[i].Entries {
			if e.Amount > 0 {
				sum.IncomePaid += e.Amount
			} else {
				sum.IncomeDeducted -= e.Amount
			}
		}
		sum.IncomeEntries += int64(len(d.books[i].Entries))
	}
	return nil
}

// fundIncomeOf returns the fund's income for the day and its per 10,000
// shares, one given by the input and the other derived over totalShares.
func fundIncomeOf(in Input, totalShares int64) (fundIncome, per10k int64, err error) {
	if in.PerTenK {
		fundIncome, err = FundIncomeFromPer10k(totalShares, in.IncomePer10k)
		return fundIncome, in.IncomePer10k, err
	}
	per10k = Per10kFromTotal(in.IncomeTotal, totalShares)
	if per10k < -accounts.IncomePer10kMax || per10k > accounts.IncomePer10kMax {
		return 0, 0, fmt.Errorf("income %s over %s shares is %s per 10,000 shares, beyond ±%s: %w",
			FormatFen(in.IncomeTotal), FormatFen(totalShares), accounts.FormatIncomePer10k(per10k),
			accounts.FormatIncomePer10k(accounts.IncomePer10kMax), ErrInvalidIncome)
	}
	return in.IncomeTotal, per10k, nil
}

// income books every shard's IncomeBook.
func (d *dateRun) income(ctx context.Context) error {
	r := d.r
	t0 := time.Now()
	d.p.Phase("income", d.sum.IncomeEntries)
	if err := r.eachShard(ctx, func(ctx context.Context, shard int) error {
		t := time.Now()
		var res StepResult
		err := d.bookStep(ctx, shard, "income", func(ctx context.Context, l Lease) (err error) {
			res, err = r.store.BookIncome(ctx, l, d.in.Date, d.books[shard], d.p.Add)
			return err
		})
		if err != nil {
			return fmt.Errorf("shard %d: %w", shard, err)
		}
		d.p.ShardDone(shard, res.Count, time.Since(t))
		return r.fail("income/" + strconv.Itoa(shard))
	}); err != nil {
		d.p.End()
		return fmt.Errorf("book income: %w", err)
	}
	d.p.End()
	d.sum.TookIncomeBooking = time.Since(t0)
	return nil
}

// yield publishes the day's income per 10,000 shares and takes the 7-day
// yield it makes.
func (d *dateRun) yield(ctx context.Context) error {
	y, err := d.r.yields.PublishFundYield(ctx, d.in.Date, d.sum.IncomePer10k)
	if err != nil {
		return fmt.Errorf("publish yield: %w", err)
	}
	if y.HasSevenDayYield {
		d.sum.SevenDayYield = accounts.FormatYield(y.SevenDayYield)
	}
	return d.r.fail("yield")
}

// file writes the custodian file (Runner.writeFile).
func (d *dateRun) file(ctx context.Context) error {
	if err := d.r.writeFile(ctx, d.in, &d.sum, d.holders, d.booked); err != nil {
		return err
	}
	return d.r.fail("file")
}

// events publishes the settlement events (Runner.publish).
func (d *dateRun) events(ctx context.Context) error {
	if err := d.r.publish(ctx, d.in.Date, d.books, &d.sum); err != nil {
		return err
	}
	return d.r.fail("published")
}

// finish writes the summary beside the custodian file, records the run
// completed and tells Config.Observe.
func (d *dateRun) finish(ctx context.Context) error {
	d.sum.Took = time.Since(d.start)
	if err := d.r.writeSummary(d.sum); err != nil {
		return err
	}
	if err := d.r.store.FinishRun(ctx, d.sum); err != nil {
		return err
	}
	if d.r.cfg.Observe != nil {
		d.r.cfg.Observe(d.sum)
	}
	return nil
}
