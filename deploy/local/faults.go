package local

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fundplatform/fund/ledger"
)

// Bounds of an injected fault.
const (
	// faultHealMax bounds each wait for the cluster to heal after a fault
	// (shards owned again, a process ready again, a settlement run done).
	faultHealMax = 3 * time.Minute
	// settlePoll is how often kill-settle looks for the run in progress;
	// settleRunWaitMax bounds how long it waits for the run to start.
	settlePoll       = 10 * time.Millisecond
	settleRunWaitMax = time.Minute
	// settleIncome is the income per 10,000 shares of the date kill-settle
	// settles.
	settleIncome = "0.6500"
)

// FaultEvent is what Inject did: when the fault started and when it was
// over (the cluster whole again: every shard owned, the process back, the
// settlement run completed), and what exactly it hit.
type FaultEvent struct {
	Name, Detail string
	Kind         FaultKind
	Start, End   time.Time
	Err          string // the fault could not be injected (or not healed) as planned
}

// RunFaults injects each planned fault at start plus its offset, one after
// another, until all are done or ctx ends, and returns what happened; a
// fault that fails is recorded with its error and the next one still runs.
// When ctx ends no other fault starts, but the one in progress runs to its
// end (its own bounded heal), so that nothing is left frozen or down.
// progress (if not nil) gets a line as each starts and ends.
func (c *Cluster) RunFaults(ctx context.Context, start time.Time, plan []PlannedFault, progress io.Writer) []FaultEvent {
	if progress == nil {
		progress = io.Discard
	}
	var out []FaultEvent
	for _, p := range plan {
		t := time.NewTimer(time.Until(start.Add(p.At)))
		select {
		case <-ctx.Done():
			t.Stop()
			return out
		case <-t.C:
		}
		fmt.Fprintf(progress, "fault: %s at %.1fs\n", p.Label(), time.Since(start).Seconds())
		ev := c.Inject(context.WithoutCancel(ctx), p.Fault)
		if ev.Err != "" {
			fmt.Fprintf(progress, "fault: %s FAILED: %s\n", p.Label(), ev.Err)
		} else {
			fmt.Fprintf(progress, "fault: %s over after %.1fs: %s\n", p.Label(), ev.End.Sub(ev.Start).Seconds(), ev.Detail)
		}
		out = append(out, ev)
	}
	return out
}

// Inject injects one fault and waits until the cluster is whole again
// (bounded by faultHealMax): see the FaultKind constants for what each
// does.
func (c *Cluster) Inject(ctx context.Context, f Fault) FaultEvent {
	ev := FaultEvent{Name: f.Label(), Kind: f.Kind, Start: time.Now()}
	ctx, cancel := context.WithTimeout(ctx, faultHealMax+settleRunWaitMax)
	defer cancel()
	var err error
	switch f.Kind {
	case FaultKillOwner:
		ev.Detail, err = c.killOwner(ctx, time.Duration(f.For))
	case FaultKillGateway:
		ev.Detail, err = c.killGateway(ctx, cmp.Or(f.Target, "gateway-0"))
	case FaultPostgresRestart:
		ev.Detail, err = c.restartPostgres(ctx)
	case FaultStopOwner:
		ev.Detail, err = c.stopOwner(ctx, time.Duration(f.For))
	case FaultStopRecon:
		ev.Detail, err = c.stopRecon(ctx, time.Duration(f.For))
	case FaultKillSettle:
		ev.Detail, ev.Start, err = c.killSettle(ctx)
	case FaultBrokerDown:
		err = c.BrokerDown(ctx, time.Duration(f.For))
		ev.Detail = fmt.Sprintf("broker unreachable for %s, its data kept", time.Duration(f.For))
	default:
		err = fmt.Errorf("unknown fault kind %q", f.Kind)
	}
	ev.End = time.Now()
	if err != nil {
		ev.Err = err.Error()
	}
	c.log.Info("cluster: fault", "name", ev.Name, "detail", ev.Detail, "took", ev.End.Sub(ev.Start), "err", err)
	return ev
}

// BusiestOwner returns the owner process holding the most shards (the
// first in order on a tie) and its shards.
func (c *Cluster) BusiestOwner(ctx context.Context) (*Process, []int, error) {
	var best *Process
	var bestShards []int
	for _, p := range c.Owners {
		held, err := c.ShardsOf(ctx, p)
		if err != nil {
			return nil, nil, err
		}
		if best == nil || len(held) > len(bestShards) {
			best, bestShards = p, held
		}
	}
	if best == nil {
		return nil, nil, errors.New("local: no owners")
	}
	return best, bestShards, nil
}

// killOwner kills the busiest owner with SIGKILL (kept down for down, if
// any) and waits until every shard has a live owner again.
func (c *Cluster) killOwner(ctx context.Context, down time.Duration) (string, error) {
	p, held, err := c.BusiestOwner(ctx)
	if err != nil {
		return "", err
	}
	pid := p.Pid()
	if down > 0 {
		err = p.KillFor(down)
	} else {
		err = p.Kill()
	}
	if err != nil {
		return "", err
	}
	detail := fmt.Sprintf("kill -9 of %s (pid %d) holding shards %v", p.Name, pid, held)
	if err := c.WaitOwned(ctx); err != nil {
		return detail, err
	}
	owners, err := c.ShardOwners(ctx)
	if err != nil {
		return detail, err
	}
	return detail + "; owned again: " + ownerMap(owners), nil
}

// killGateway kills gateway name with SIGKILL and waits until the
// supervisor has it back and ready.
func (c *Cluster) killGateway(ctx context.Context, name string) (string, error) {
	i := slices.IndexFunc(c.Gateways, func(p *Process) bool { return p.Name == name })
	if i < 0 {
		return "", fmt.Errorf("no gateway %q (the cluster has %d)", name, len(c.Gateways))
	}
	p := c.Gateways[i]
	pid := p.Pid()
	if err := p.Kill(); err != nil {
		return "", err
	}
	detail := fmt.Sprintf("kill -9 of %s (pid %d)", p.Name, pid)
	if err := c.waitBack(ctx, p, pid); err != nil {
		return detail, err
	}
	return fmt.Sprintf("%s; restarted as pid %d and ready", detail, p.Pid()), nil
}

// waitBack waits until p runs as a process other than pid and answers
// /readyz.
func (c *Cluster) waitBack(ctx context.Context, p *Process, pid int) error {
	for p.Pid() == pid || !p.Running() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not restarted: %w", p.Name, ctx.Err())
		case <-time.After(probeInterval):
		}
	}
	if p.HTTPAddr == "" {
		return nil
	}
	return p.waitReady(ctx, c.client)
}

// restartPostgres restarts the cluster's Postgres with -m immediate and
// waits until every shard has a live owner again.
func (c *Cluster) restartPostgres(ctx context.Context) (string, error) {
	if c.pg == nil {
		return "", errors.New("no Postgres")
	}
	began := time.Now()
	if err := c.pg.Restart(ctx, "immediate"); err != nil {
		return "", err
	}
	detail := fmt.Sprintf("pg_ctl restart -m immediate: accepting connections again after %s",
		time.Since(began).Round(10*time.Millisecond))
	return detail, c.WaitOwned(ctx)
}

// stopOwner freezes the busiest owner with SIGSTOP for d (past its lease,
// when d is longer than the lease TTL), thaws it with SIGCONT and waits
// until every shard has a live owner.
func (c *Cluster) stopOwner(ctx context.Context, d time.Duration) (string, error) {
	p, held, err := c.BusiestOwner(ctx)
	if err != nil {
		return "", err
	}
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		return "", err
	}
	// Thawed whatever happens: a frozen owner left behind would hold the
	// rest of the rehearsal hostage.
	defer func() { _ = p.Signal(syscall.SIGCONT) }()
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case <-time.After(d):
	}
	if err := p.Signal(syscall.SIGCONT); err != nil {
		return "", err
	}
	detail := fmt.Sprintf("SIGSTOP of %s holding shards %v for %s (lease TTL %s), then SIGCONT", p.Name, held, d, c.LeaseTTL)
	if err := c.WaitOwned(ctx); err != nil {
		return detail, err
	}
	owners, err := c.ShardOwners(ctx)
	if err != nil {
		return detail, err
	}
	return detail + "; owners: " + ownerMap(owners), nil
}

// stopRecon kills the reconciliation worker and keeps it down for d; it
// returns once the restarted worker is ready.
func (c *Cluster) stopRecon(ctx context.Context, d time.Duration) (string, error) {
	if c.Recon == nil {
		return "", errors.New("no reconciliation worker")
	}
	pid := c.Recon.Pid()
	if err := c.Recon.KillFor(d); err != nil {
		return "", err
	}
	detail := fmt.Sprintf("fundd recon (pid %d) killed and kept down for %s", pid, d)
	if err := c.waitBack(ctx, c.Recon, pid); err != nil {
		return detail, err
	}
	return fmt.Sprintf("%s; back as pid %d", detail, c.Recon.Pid()), nil
}

// killSettle starts the next business date's settlement in fundd settle
// (its income file, the test clock past the date's end and the settle
// delay), kills fundd settle with SIGKILL as soon as the run is seen in
// progress, and waits until the restarted process has completed it. It
// returns when the kill was sent as the fault's start.
func (c *Cluster) killSettle(ctx context.Context) (string, time.Time, error) {
	now := time.Now()
	if c.TestClockStart.IsZero() {
		return "", now, errors.New("kill-settle needs the test clock (Config.TestClock)")
	}
	conn, err := pgx.Connect(ctx, c.AccountsDSN)
	if err != nil {
		return "", now, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	date, err := c.nextSettleDate(ctx, conn)
	if err != nil {
		return "", now, err
	}
	day := date.Format(time.DateOnly)
	if err := os.WriteFile(filepath.Join(c.IncomeDir, day), []byte("income_per_10k="+settleIncome+"\n"), 0o600); err != nil {
		return "", now, err
	}
	// fundd settle runs a date once it has ended plus its delay (30 min).
	to := date.AddDate(0, 0, 1).Format(time.DateOnly) + "T00:31:00+08:00"
	if err := c.AdvanceClock(ctx, to, "rehearsal-settle-"+day); err != nil {
		return "", now, err
	}
	completed, err := c.waitRunStarted(ctx, conn, day)
	if err != nil {
		return "", now, err
	}
	if completed {
		return "", time.Now(), fmt.Errorf("the settlement of %s completed before it was seen running (polled every %s): nothing killed", day, settlePoll)
	}
	pid := c.Settle.Pid()
	killed := time.Now()
	if err := c.Settle.Kill(); err != nil {
		return "", killed, err
	}
	detail := fmt.Sprintf("settlement of %s (clock moved to %s) started; fundd settle (pid %d) killed with SIGKILL mid-run", day, to, pid)
	wctx, cancel := context.WithTimeout(ctx, faultHealMax)
	defer cancel()
	for {
		var done bool
		if err := conn.QueryRow(wctx, `SELECT completed FROM settlement_runs WHERE date = $1`, day).Scan(&done); err != nil {
			return detail, killed, fmt.Errorf("settlement of %s after the kill: %w", day, err)
		}
		if done {
			return fmt.Sprintf("%s; restarted as pid %d, which completed the run %s after the kill", detail, c.Settle.Pid(),
				time.Since(killed).Round(10*time.Millisecond)), killed, nil
		}
		select {
		case <-wctx.Done():
			return detail, killed, fmt.Errorf("settlement of %s not completed %s after the kill", day, faultHealMax)
		case <-time.After(probeInterval):
		}
	}
}

// nextSettleDate is the date after the newest completed settlement run,
// or the test clock's first day when none has completed.
func (c *Cluster) nextSettleDate(ctx context.Context, conn *pgx.Conn) (time.Time, error) {
	var last *time.Time
	if err := conn.QueryRow(ctx, `SELECT max(date) FROM settlement_runs WHERE completed`).Scan(&last); err != nil {
		return time.Time{}, fmt.Errorf("last settled date: %w", err)
	}
	if last == nil {
		d := c.TestClockStart.In(ledger.BusinessZone())
		return time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, time.UTC), nil
	}
	return last.AddDate(0, 0, 1), nil
}

// waitRunStarted polls date's settlement run until it exists; completed
// says whether it had already completed when first seen.
func (c *Cluster) waitRunStarted(ctx context.Context, conn *pgx.Conn, day string) (completed bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, settleRunWaitMax)
	defer cancel()
	for {
		err := conn.QueryRow(ctx, `SELECT completed FROM settlement_runs WHERE date = $1`, day).Scan(&completed)
		if err == nil {
			return completed, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return false, err
		}
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("the settlement of %s did not start within %s (settle log %s)", day, settleRunWaitMax, c.Settle.LogPath)
		case <-time.After(settlePoll):
		}
	}
}

// ownerMap prints shard=owner@epoch for every lease.
func ownerMap(owners []ledger.ShardOwner) string {
	var b strings.Builder
	for _, o := range owners {
		fmt.Fprintf(&b, "%d=%s@%d ", o.Shard, cmp.Or(o.Owner, "-"), o.Epoch)
	}
	return strings.TrimSpace(b.String())
}

// SettleThrough has fundd settle settle every date from the next
// unsettled one through `through` (YYYY-MM-DD) with incomePer10k each: it
// writes their income files, moves the test clock past the last one's end
// and the settle delay (to the next day's 00:31, unless it is past that)
// and waits until its run has completed. It is how a rehearsal's setup
// confirms its subscriptions in the cluster, whose gateways settle nothing
// themselves. It returns the business time it moved the clock to.
func (c *Cluster) SettleThrough(ctx context.Context, through, incomePer10k string) (string, error) {
	if c.TestClockStart.IsZero() {
		return "", errors.New("local: settling on demand needs the test clock (Config.TestClock)")
	}
	last, err := time.Parse(time.DateOnly, through)
	if err != nil {
		return "", fmt.Errorf("local: settle through %q: %w", through, err)
	}
	conn, err := pgx.Connect(ctx, c.AccountsDSN)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	first, err := c.nextSettleDate(ctx, conn)
	if err != nil {
		return "", err
	}
	for d, i := first, 0; !d.After(last) && i < reconDaysMax; d, i = d.AddDate(0, 0, 1), i+1 {
		name := filepath.Join(c.IncomeDir, d.Format(time.DateOnly))
		if err := os.WriteFile(name, []byte("income_per_10k="+incomePer10k+"\n"), 0o600); err != nil {
			return "", err
		}
	}
	to := last.AddDate(0, 0, 1).Format(time.DateOnly) + "T00:31:00+08:00"
	if err := c.AdvanceClock(ctx, to, "cluster-settle-through-"+through); err != nil {
		return "", err
	}
	wctx, cancel := context.WithTimeout(ctx, faultHealMax)
	defer cancel()
	for {
		var done bool
		err := conn.QueryRow(wctx, `SELECT completed FROM settlement_runs WHERE date = $1`, through).Scan(&done)
		if err == nil && done {
			return to, nil
		}
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return "", err
		}
		select {
		case <-wctx.Done():
			return "", fmt.Errorf("local: %s not settled within %s of moving the clock to %s (settle log %s)",
				through, faultHealMax, to, c.Settle.LogPath)
		case <-time.After(probeInterval):
		}
	}
}
