package owner

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/postgres"
)

// outboxReadTimeout bounds one relay read of the outboxes, so that a
// database that hangs is skipped rather than waited for.
const outboxReadTimeout = 5 * time.Second

// ownedOutbox is the outbox of the shards this process owns right now, so
// that each shard's events are relayed by its owner. Around a handover two
// relays may publish the same rows once each; consumers are idempotent.
type ownedOutbox struct {
	dbs  *postgres.Databases
	host *ledger.Host
	log  *slog.Logger
}

func (o ownedOutbox) OutboxPending(ctx context.Context, _ []int, limit int) ([]ledger.OutboxBatch, error) {
	owned := o.host.Owned()
	if len(owned) == 0 {
		return nil, nil
	}
	slices.Sort(owned)
	ctx, cancel := context.WithTimeout(ctx, outboxReadTimeout)
	defer cancel()
	bs, err := o.dbs.OutboxPending(ctx, owned, limit)
	if err != nil && len(bs) > 0 {
		// One database failing must not hold back the events of the
		// others; its shards' rows wait (and the error shows in the log).
		o.log.Warn("outbox read in part", "err", err)
		return bs, nil
	}
	return bs, err
}

func (o ownedOutbox) OutboxAck(ctx context.Context, upTo map[int]int64) error {
	return o.dbs.OutboxAck(ctx, upTo)
}
