package grpc_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/fundplatform/fund/ledger"
	ledgergrpc "github.com/fundplatform/fund/ledger/grpc"
)

// attacher is a shard's client that carries attachments: it records each
// one it is given and fails the first call as an owner that lost its
// batch's answer would (retryable).
type attacher struct {
	echo
	mu    sync.Mutex
	calls []string
}

func (a *attacher) CreateTransfersAttached(_ context.Context, ts []ledger.Transfer, att []byte) ([]ledger.TransferResult, bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, string(att))
	if len(a.calls) == 1 {
		return nil, false, ledger.ErrCommitFailed
	}
	return make([]ledger.TransferResult, len(ts)), true, nil
}

// Every attempt carries the attachment, a retry included, and the caller
// learns it was written; a shard whose client cannot carry one answers
// attached false, as does a request without one.
func TestClientCarriesAttachments(t *testing.T) {
	const shards = 1
	a := &attacher{}
	withAttach := serve(t, shards, func(int) (ledger.Client, bool) { return a, true })
	plain := serve(t, shards, func(int) (ledger.Client, bool) { return okTransfers{}, true })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr := []ledger.Transfer{{ID: ledger.NewTransferID(), DebitAccountID: 1, CreditAccountID: 2, Amount: 1, Asset: ledger.AssetCNY}}
	for _, tc := range []struct {
		name, addr   string
		attachment   []byte
		wantAttached bool
	}{
		{"retried", withAttach, []byte("row"), true},
		{"plain owner", plain, []byte("row"), false},
	} {
		dir := &directory{owners: []ledger.ShardOwner{{Shard: 0, Owner: "o", Addr: tc.addr}}}
		c := ledgergrpc.NewClient(ledgergrpc.ClientConfig{Shards: shards, BackoffMin: time.Millisecond, BackoffMax: 10 * time.Millisecond}, dir)
		rs, attached, err := c.CreateTransfersAttached(ctx, tr, tc.attachment)
		_ = c.Close()
		if err != nil || len(rs) != 1 || attached != tc.wantAttached {
			t.Fatalf("%s: %v attached=%v err=%v, want attached=%v", tc.name, rs, attached, err, tc.wantAttached)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.calls) != 2 || a.calls[0] != "row" || a.calls[1] != "row" {
		t.Fatalf("the owner saw attachments %q, want \"row\" on both attempts", a.calls)
	}
}

// okTransfers answers every transfer ok and carries no attachment.
type okTransfers struct{ echo }

func (okTransfers) CreateTransfers(_ context.Context, ts []ledger.Transfer) ([]ledger.TransferResult, error) {
	return make([]ledger.TransferResult, len(ts)), nil
}
