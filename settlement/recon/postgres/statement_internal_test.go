package postgres

import (
	"testing"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/xshard"
	"github.com/fundplatform/fund/settlement/recon"
)

// A cross-shard top-up refunded by the payee's shard moved no money for
// the bank: its leg 1 and refund leave the movements; a completed one stays.
func TestDropRefunded(t *testing.T) {
	refunded, completed := ledger.NewTransferID(), ledger.NewTransferID()
	_, back := recon.SagaClosingIDs(refunded)
	_, otherBack := recon.SagaClosingIDs(completed)
	ms := []recon.Movement{
		{TransferID: refunded, Kind: xshard.KindOut, Direction: recon.In, Amount: 100, Reference: "r1"},
		{TransferID: ledger.NewTransferID(), Kind: accounts.TransferWithdraw, Direction: recon.Out, Amount: 5, Reference: "w1"},
		{TransferID: completed, Kind: xshard.KindOut, Direction: recon.In, Amount: 7, Reference: "r2"},
		{TransferID: back, Kind: xshard.KindBack, Direction: recon.Out, Amount: 100},
	}
	out := dropRefunded(ms)
	if len(out) != 2 || out[0].Reference != "w1" || out[1].Reference != "r2" {
		t.Fatalf("got %+v", out)
	}
	if _, ok := map[ledger.TransferID]bool{back: true}[otherBack]; ok {
		t.Fatal("derived ids collide")
	}
}
