package settlement

import (
	"strconv"
	"time"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/ledger"
)

// Transfer kinds the settlement run writes (ledger.Transfer.Kind), apart
// from the accounts kinds (1..) and the cross-shard saga's (60001..).
const (
	KindConfirmSubscription uint16 = 7001 // post of a subscription's pending shares
	KindRedeemShares        uint16 = 7002 // post of a standard redemption's held shares
	KindRedeemCash          uint16 = 7003 // the fund pays the redemption's cash
	KindIncome              uint16 = 7004 // new shares paid as the day's income
	KindIncomeDeduct        uint16 = 7005 // shares deducted on a losing day
	KindRoundingAbsorb      uint16 = 7006 // a losing day's deduction a holder could not bear, taken by the fund
	kindFirst                      = KindConfirmSubscription
	kindLast                       = KindRoundingAbsorb
)

// IsSettlementKind reports whether a transfer kind is one the run writes.
func IsSettlementKind(k uint16) bool { return k >= kindFirst && k <= kindLast }

// SystemAccounts lists, per asset, the canonical fund accounts the run uses
// on every shard.
func SystemAccounts() map[ledger.AccountID]ledger.Asset {
	return map[ledger.AccountID]ledger.Asset{
		accounts.FundOmnibusShares:  ledger.AssetFundShares,
		accounts.FundOmnibusCash:    ledger.AssetCNY,
		accounts.IncomeDistribution: ledger.AssetFundShares,
		accounts.Rounding:           ledger.AssetFundShares,
	}
}

// OrderTransferID is the ledger id of leg n of a customer's order. It must
// match the accounts service's derivation (accounts.transferID), which the
// tests check against a real order: the settlement run finds the pending
// transfer of a subscription (leg 1) or standard redemption (leg 0) by it.
func OrderTransferID(c accounts.CustomerID, requestID string, leg int) ledger.TransferID {
	return ledger.DeriveTransferID("accounts/order/"+strconv.FormatInt(int64(c), 10), requestID, strconv.Itoa(leg))
}

// Ids of the entries the run writes: derived from the date and the account
// (or the pending transfer, which names one order), so that a re-run can
// only ever write the same entry, and the ledger's idempotency record
// refuses it the second time.
// ConfirmTransferID is the id of the post confirming a pending transfer.
func ConfirmTransferID(pending ledger.TransferID) ledger.TransferID {
	return ledger.DeriveTransferID("settlement/confirm", pending.String())
}

// RedeemCashTransferID is the id of a standard redemption's cash payment.
func RedeemCashTransferID(pending ledger.TransferID) ledger.TransferID {
	return ledger.DeriveTransferID("settlement/redeem-cash", pending.String())
}

// IncomeTransferID is the id of account's income entry for date.
func IncomeTransferID(date time.Time, account ledger.AccountID) ledger.TransferID {
	return ledger.DeriveTransferID("settlement/income", date.Format(time.DateOnly), strconv.FormatInt(int64(account), 10))
}

// RoundingTransferID is the id of a shard's absorbed deduction for date.
func RoundingTransferID(date time.Time, shard int) ledger.TransferID {
	return ledger.DeriveTransferID("settlement/rounding", date.Format(time.DateOnly), strconv.Itoa(shard))
}
