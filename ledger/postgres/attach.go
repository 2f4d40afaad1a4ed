package postgres

import (
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/fundplatform/fund/ledger"
)

// AttachmentWriter queues the statements that write the attachments of the
// requests of a commit's batches (ledger.Attached: an order's row, say) into
// the commit's pipeline, after the batches' own statements and before
// COMMIT: they run in the batches' transaction, so an attachment is durable
// exactly when its request's results are, and a commit whose statements
// fail (the fence, an attachment's) writes neither. It is called once per
// transaction with every attachment of its batches (one group commit may
// carry several shards'), and should queue a fixed number of set-based
// statements whatever their number. A request retried after its commit
// carries its attachment again: the statements must write it once (ON
// CONFLICT DO NOTHING on its key). An error fails the commit, with nothing
// sent; it means an attachment the writer cannot read, a bug of its caller.
//
// The writer belongs to the domain whose tables it writes (the ledger reads
// no attachment); the ledger owner's composition gives it to the store.
// Its tables must be in the ledger's databases.
type AttachmentWriter func(q *pgx.Batch, as []ledger.Attached) error

var _ ledger.AttachmentStore = (*Store)(nil)

// WritesAttachments implements ledger.AttachmentStore: every shard of a
// store with an attachment writer (Config.Attachments) has its
// attachments written.
func (s *Store) WritesAttachments(int) bool { return s.attach != nil }

// queueAttachments queues the writer's statements for every attachment of
// bs, if there are any.
func (s *Store) queueAttachments(q *pgx.Batch, bs []*ledger.Batch) error {
	if s.attach == nil {
		return nil
	}
	var as []ledger.Attached
	for _, b := range bs {
		as = append(as, b.Attached...)
	}
	if len(as) == 0 {
		return nil
	}
	if err := s.attach(q, as); err != nil {
		return fmt.Errorf("%w: attachments: %v", ledger.ErrInvariantBroke, err)
	}
	return nil
}
