package local

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// ErrScaleLimit is returned by the Add and Remove methods when the change
// would leave the cluster outside its bounds: more processes than
// ownersMax or gatewaysMax, no gateway, or too few owners to hold every
// shard within their --shards-max.
var ErrScaleLimit = errors.New("local: scale limit")

// The scaling methods below change Owners and Gateways: call them from the
// goroutine that reads those fields (a test's), not concurrently with it.
// The processes themselves (Process.Running, Stop, ...) are safe to use
// from any goroutine.

// AddOwner starts one more `fundd ledger` (named after a counter that
// never repeats a name, so no lease or log of an earlier process is taken
// for its), waits until it answers /readyz and supervises it like the
// others. It returns at once: the owners then move shards to it by
// graceful hand-offs until they are spread evenly (WaitBalanced); nobody
// waits for a lease to expire.
func (c *Cluster) AddOwner(ctx context.Context) (*Process, error) {
	if len(c.Owners) >= ownersMax {
		return nil, fmt.Errorf("%w: %d owners already", ErrScaleLimit, len(c.Owners))
	}
	p, err := c.startReady(ctx, &c.nextOwner, func(i int) (*Process, error) { return c.startOwner(i, c.shardsMax) })
	if err != nil {
		return nil, err
	}
	c.Owners = append(c.Owners, p)
	c.super.watch(p)
	c.log.Info("cluster: owner added", "owner", p.Name, "owners", len(c.Owners))
	return p, nil
}

// startReady starts the process numbered *next, counts it once started (so
// that its name is not used again) and waits until it is ready; one that
// does not get ready is stopped.
func (c *Cluster) startReady(ctx context.Context, next *int, start func(i int) (*Process, error)) (*Process, error) {
	p, err := start(*next)
	if err != nil {
		return nil, err
	}
	*next++
	if err := p.waitReady(ctx, c.client); err != nil {
		return nil, errors.Join(err, p.Stop(context.WithoutCancel(ctx)))
	}
	return p, nil
}

// RemoveOwner stops the newest owner cleanly (SIGTERM: it finishes its
// batches, releases its leases and leaves the live hosts, so the others
// take its shards at once) and waits for it to exit. Stop marks it
// stopped, so the supervisor leaves it down. It refuses to leave fewer
// owners than can hold every shard within their --shards-max.
func (c *Cluster) RemoveOwner(ctx context.Context) (*Process, error) {
	n := len(c.Owners) - 1
	if n < 1 || c.shardsMax > 0 && n*c.shardsMax < c.Shards {
		return nil, fmt.Errorf("%w: %d owners of at most %d shards each cannot hold %d shards",
			ErrScaleLimit, n, c.shardsMax, c.Shards)
	}
	p := c.Owners[n]
	c.Owners = slices.Clone(c.Owners[:n]) // a new array: a copy taken earlier stays as it was
	err := p.Stop(ctx)
	c.log.Info("cluster: owner removed", "owner", p.Name, "owners", len(c.Owners), "err", err)
	return p, err
}

// AddGateway starts one more `fundd gateway`, waits until it answers
// /readyz, supervises it, and puts it into the front's rotation.
func (c *Cluster) AddGateway(ctx context.Context) (*Process, error) {
	if len(c.Gateways) >= gatewaysMax {
		return nil, fmt.Errorf("%w: %d gateways already", ErrScaleLimit, len(c.Gateways))
	}
	p, err := c.startReady(ctx, &c.nextGateway, c.startGateway)
	if err != nil {
		return nil, err
	}
	c.Gateways = append(c.Gateways, p)
	c.super.watch(p)
	if err := c.Front.Add(ctx, "http://"+p.HTTPAddr); err != nil {
		return p, err
	}
	c.log.Info("cluster: gateway added", "gateway", p.Name, "gateways", len(c.Gateways))
	return p, nil
}

// RemoveGateway drains the newest gateway and stops it: the front stops
// sending it requests and waits for those in flight to be answered, and
// only then is it sent SIGTERM (and waited for); the supervisor leaves it
// down. At least one gateway stays.
func (c *Cluster) RemoveGateway(ctx context.Context) (*Process, error) {
	n := len(c.Gateways) - 1
	if n < 1 {
		return nil, fmt.Errorf("%w: the last gateway stays", ErrScaleLimit)
	}
	p := c.Gateways[n]
	c.Gateways = slices.Clone(c.Gateways[:n])
	drainErr := c.Front.Remove(ctx, "http://"+p.HTTPAddr)
	err := errors.Join(drainErr, p.Stop(ctx))
	c.log.Info("cluster: gateway removed", "gateway", p.Name, "gateways", len(c.Gateways), "err", err)
	return p, err
}

// OwnerCounts returns how many shards each owner process holds a live
// lease of (every process in Owners, with 0 for one holding none) and how
// many shards have no live owner among them.
func (c *Cluster) OwnerCounts(ctx context.Context) (counts map[string]int, unowned int, err error) {
	owners, err := c.ShardOwners(ctx)
	if err != nil {
		return nil, 0, err
	}
	counts = map[string]int{}
	running := map[string]bool{}
	for _, p := range c.Owners {
		counts[p.Name] = 0
		running[p.Name] = p.Running()
	}
	for _, o := range owners {
		if !running[o.Owner] || c.isStale(o) {
			unowned++
			continue
		}
		counts[o.Owner]++
	}
	return counts, unowned, nil
}

// WaitBalanced waits until every shard has a live, running owner among
// Owners and the owners hold shares at most one shard apart (max - min <=
// 1), or ctx ends.
func (c *Cluster) WaitBalanced(ctx context.Context) error {
	var (
		counts  map[string]int
		unowned int
		err     error
	)
	for {
		counts, unowned, err = c.OwnerCounts(ctx)
		if err == nil && unowned == 0 && len(counts) > 0 {
			lo, hi := c.Shards, 0
			for _, n := range counts {
				lo, hi = min(lo, n), max(hi, n)
			}
			if hi-lo <= 1 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("local: waiting for the shards to spread evenly: %w (shards by owner %v, %d unowned, last error %v)",
				ctx.Err(), counts, unowned, err)
		case <-time.After(probeInterval):
		}
	}
}
