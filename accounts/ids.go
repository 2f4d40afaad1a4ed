package accounts

import (
	"strconv"
	"time"

	"github.com/fundplatform/fund/ledger"
)

// Ledger account ids are derived, never stored: anyone who knows a customer
// id knows its accounts. The id space is split by the top bits:
//
//	customer accounts   customerID<<4 | slot            (< 2^44)
//	merchant accounts   1<<60 | merchantID
//	system accounts     1<<61 | n
//	fast-redeem quotas  1<<62 | day<<40 | customerID     (day since 2000-01-01)
const (
	slotCash   = 1 // CNY, available never below zero
	slotShares = 2 // fund shares; pending credits = awaiting confirmation, pending debits = awaiting payout

	merchantBase = ledger.AccountID(1) << 60
	systemBase   = ledger.AccountID(1) << 61
	quotaBase    = ledger.AccountID(1) << 62
)

// CashAccount is the ledger account of a customer's cash.
func CashAccount(c CustomerID) ledger.AccountID { return ledger.AccountID(c)<<4 | slotCash }

// SharesAccount is the ledger account of a customer's fund shares.
func SharesAccount(c CustomerID) ledger.AccountID { return ledger.AccountID(c)<<4 | slotShares }

// MerchantAccount is the ledger account a merchant is paid into.
func MerchantAccount(m MerchantID) ledger.AccountID { return merchantBase | ledger.AccountID(m) }

// System accounts. They carry no balance limit.
const (
	BankSettlement     = systemBase | 1 // CNY: money from and to bank cards
	FundOmnibusCash    = systemBase | 2 // CNY: subscriptions in, redemptions out
	FundOmnibusShares  = systemBase | 3 // shares: the fund's issuing side
	InTransitCash      = systemBase | 4 // CNY: cross-shard money in flight
	InTransitShares    = systemBase | 5 // shares: cross-shard shares in flight
	IncomeDistribution = systemBase | 6 // shares: daily income paid as new shares
	Rounding           = systemBase | 7 // shares: residue of income allocation
	QuotaIssuer        = systemBase | 8 // quota: fast-redemption quota granted
	QuotaUsed          = systemBase | 9 // quota: fast-redemption quota used
)

// Account codes (ledger.Account.Code).
const (
	CodeCustomerCash   uint16 = 1
	CodeCustomerShares uint16 = 2
	CodeMerchant       uint16 = 3
	CodeFastQuota      uint16 = 4
	CodeSystem         uint16 = 100
)

// Transfer kinds (ledger.Transfer.Kind).
const (
	TransferTopUp uint16 = iota + 1
	TransferSubscribeCash
	TransferSubscribeShares
	TransferFastRedeemQuota
	TransferFastRedeemShares
	TransferFastRedeemCash
	TransferStandardRedeem
	TransferCustomerToCustomer
	TransferPayShares
	TransferPayCash
	TransferWithdraw
	TransferQuotaGrant
)

var epoch2000 = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// QuotaAccount is the ledger account holding what a customer may still
// fast-redeem on one natural day, in ledger.AssetQuota: the cap is counted
// in fen but is not money, so it stays out of the CNY totals.
func QuotaAccount(c CustomerID, naturalDay time.Time) ledger.AccountID {
	days := int64(DateOf(naturalDay).Sub(epoch2000) / (24 * time.Hour))
	return quotaBase | ledger.AccountID(days)<<40 | ledger.AccountID(c)
}

func systemAccounts() []ledger.Account {
	byAsset := []struct {
		asset ledger.Asset
		ids   []ledger.AccountID
	}{
		{ledger.AssetCNY, []ledger.AccountID{BankSettlement, FundOmnibusCash, InTransitCash}},
		{ledger.AssetFundShares, []ledger.AccountID{FundOmnibusShares, InTransitShares, IncomeDistribution, Rounding}},
		{ledger.AssetQuota, []ledger.AccountID{QuotaIssuer, QuotaUsed}},
	}
	var out []ledger.Account
	for _, g := range byAsset {
		for _, id := range g.ids {
			out = append(out, ledger.Account{ID: id, Asset: g.asset, Code: CodeSystem})
		}
	}
	return out
}

// transferID is the ledger id of leg n of a customer's request: derived, so
// a retry can never apply twice even if the order row was lost.
func transferID(c CustomerID, requestID string, leg int) ledger.TransferID {
	return ledger.DeriveTransferID("accounts/order/"+strconv.FormatInt(int64(c), 10), requestID, strconv.Itoa(leg))
}

// quotaGrantID is the one grant of a customer's daily fast-redemption quota.
func quotaGrantID(c CustomerID, naturalDay time.Time) ledger.TransferID {
	return ledger.DeriveTransferID("accounts/quota", strconv.FormatInt(int64(c), 10), naturalDay.Format(time.DateOnly))
}
