package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/settlement"
)

// TestFingerprintMatchesLedger: the idempotency fingerprints the run
// stores for its entries are the ones a sequencer stores, so a request
// repeating a settlement entry through the ledger gets "exists"; and the
// order transfer ids the run derives are the accounts service's.
func TestFingerprintMatchesLedger(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.clock.Set(cst("2026-11-17 10:00:00"))
	c := w.open("A")
	w.must(w.svc.TopUp(ctx, c, "t", 500))
	w.must(w.svc.Subscribe(ctx, c, "s", 300))
	pending := settlement.OrderTransferID(c, "s", 1)
	var state int
	if err := w.pool.QueryRow(ctx, `SELECT state FROM pending_transfers WHERE id = $1`,
		pgtype.UUID{Bytes: pending, Valid: true}).Scan(&state); err != nil {
		t.Fatalf("the subscription's pending transfer is not where settlement looks: %v", err)
	}
	ts := []ledger.Transfer{
		{ID: ledger.DeriveTransferID("t", "plain"), DebitAccountID: accounts.IncomeDistribution,
			CreditAccountID: accounts.SharesAccount(c), Amount: 7, Asset: ledger.AssetFundShares,
			Kind: settlement.KindIncome, UserData: "2026-11-17"},
		{ID: ledger.DeriveTransferID("t", "post"), PendingID: pending, DebitAccountID: accounts.FundOmnibusShares,
			CreditAccountID: accounts.SharesAccount(c), Amount: 300, Asset: ledger.AssetFundShares,
			Kind: settlement.KindConfirmSubscription, Flags: ledger.PostPending, UserData: "s"},
	}
	res, err := w.seq.CreateTransfers(ctx, ts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ts {
		if res[i].Result != ledger.ResultOK {
			t.Fatalf("transfer %d: %s", i, res[i].Result)
		}
		var stored int64
		if err := w.pool.QueryRow(ctx, `SELECT fingerprint FROM transfer_ids WHERE id = $1`,
			pgtype.UUID{Bytes: ts[i].ID, Valid: true}).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if got := ts[i].Fingerprint(); got != stored {
			t.Errorf("transfer %d: fingerprint %d, the ledger stored %d", i, got, stored)
		}
	}
}
