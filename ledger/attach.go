package ledger

import (
	"context"
	"errors"
)

// Attachments let a caller commit a record of its own in the same
// transaction as its transfers, so that the two can never disagree: a
// customer order's row is written with the order's journal entries, and a
// client that gives up between the ledger's answer and a second commit of
// its own can no longer leave money moved without a row.
//
// The ledger does not read an attachment. A request carries it as bytes;
// the shard's sequencer puts it, with the request's transfers and their
// results, in the batch (Batch.Attached); the store hands every attachment
// of the batch to its attachment writer inside the batch's transaction
// (ledger/postgres Config.Attachments, which another domain provides:
// the ledger imports nothing of its callers). The writer decides from the
// results what to write, if anything, and must be idempotent: a request
// retried after its commit (its transfers answer "exists") carries the same
// attachment again.

// AttachmentLenMax bounds one request's attachment.
const AttachmentLenMax = 4096

// ErrAttachmentTooLarge refuses a request whose attachment is longer than
// AttachmentLenMax; nothing of it was applied.
var ErrAttachmentTooLarge = errors.New("ledger: attachment too large")

// AttachingClient is implemented by clients that carry attachments (the
// Sequencer, the gRPC routing client and its per-shard clients, the owner's
// in-process client, the gateway's sharded client and breakers). It is apart
// from Client because a caller must be able to tell a ledger that cannot
// carry them, and then record what it meant to by itself.
type AttachingClient interface {
	// CreateTransfersAttached is CreateTransfers with an attachment (at
	// most AttachmentLenMax bytes). attached reports that the shard's
	// store wrote the attachment, through its writer, in the transaction
	// that committed the request's batch: it is durable exactly when the
	// results are. false: the shard's store writes no attachments (or the
	// attachment was empty); the results mean what CreateTransfers' do,
	// and the caller must record its attachment's content itself. The
	// errors are CreateTransfers', and ErrAttachmentTooLarge.
	CreateTransfersAttached(ctx context.Context, ts []Transfer, attachment []byte) (rs []TransferResult, attached bool, err error)
}

// Attached is one request's attachment as a batch carries it to the store.
type Attached struct {
	Data      []byte
	Transfers []Transfer       // the request's transfers, in order
	Results   []TransferResult // index-aligned with Transfers
}

// AttachmentStore is implemented by stores that can write attachments. A
// Store without it, or whose WritesAttachments is false for a shard, gets
// no Batch.Attached for that shard, and the requests' callers are told
// (attached false).
type AttachmentStore interface {
	// WritesAttachments reports whether the store writes the attachments
	// of the shard's batches in their transactions.
	WritesAttachments(shard int) bool
}

// CreateTransfersAttached sends ts with attachment through c when c can
// carry it, else as plain CreateTransfers (attached false). An empty
// attachment is never carried.
func CreateTransfersAttached(ctx context.Context, c Client, ts []Transfer, attachment []byte) ([]TransferResult, bool, error) {
	if ac, ok := c.(AttachingClient); ok && len(attachment) > 0 {
		return ac.CreateTransfersAttached(ctx, ts, attachment)
	}
	rs, err := c.CreateTransfers(ctx, ts)
	return rs, false, err
}

var _ AttachingClient = (*Sequencer)(nil)
