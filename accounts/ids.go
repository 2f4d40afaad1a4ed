package accounts

import (
	"cmp"
	"slices"
	"strconv"
	"time"

	"github.com/fundplatform/fund/ledger"
)

// Ledger account ids are derived, never stored: anyone who knows a customer
// id knows its accounts. Only an id's home (ledger.HomeOf, bits 4..43)
// decides its shard, so every account of a customer has the customer id
// as its home and lives on the customer's shard (ShardOf), and the fund's
// accounts have a copy on every shard (SystemAccountOn, MerchantAccountOn):
//
//	customer accounts   customerID<<4 | slot                         (< 2^44)
//	merchant accounts   1<<60 | (merchantID<<12 | k)<<4              k picks the shard
//	system accounts     1<<61 | k<<4 | n                             k picks the shard
//	fast-redeem quotas  1<<62 | day<<44 | customerID<<4 | slotQuota  (day since 2000-01-01)
const (
	slotCash   = 1 // CNY, available never below zero
	slotShares = 2 // fund shares; pending credits = awaiting confirmation, pending debits = awaiting payout
	slotQuota  = 3 // fast-redemption quota of one natural day

	merchantBase = ledger.AccountID(1) << 60
	systemBase   = ledger.AccountID(1) << 61
	quotaBase    = ledger.AccountID(1) << 62
	// merchantHomeShift leaves a merchant 2^12 homes to find one on each
	// shard in (ledger.OnShard): far more than any shard count needs.
	merchantHomeShift = 12
)

// CashAccount is the ledger account of a customer's cash.
func CashAccount(c CustomerID) ledger.AccountID { return ledger.AccountID(c)<<4 | slotCash }

// SharesAccount is the ledger account of a customer's fund shares.
func SharesAccount(c CustomerID) ledger.AccountID { return ledger.AccountID(c)<<4 | slotShares }

// ShardOf is the ledger shard that holds every account of customer c (and
// its row and orders) among shards.
func ShardOf(c CustomerID, shards int) int { return ledger.ShardOf(CashAccount(c), shards) }

// MerchantAccountOn is the account a merchant is paid into on shard: a
// customer's payment credits the merchant's account on the customer's own
// shard, so that a payment is one chain on one shard and no merchant is a
// hot row shared by all shards. The merchant's balance is the sum over
// shards (MerchantAccounts).
func MerchantAccountOn(m MerchantID, shard, shards int) ledger.AccountID {
	return ledger.OnShard(merchantBase|ledger.AccountID(m)<<(4+merchantHomeShift), shard, shards)
}

// MerchantAccounts lists a merchant's accounts, one per shard, in shard
// order.
func MerchantAccounts(m MerchantID, shards int) []ledger.AccountID {
	out := make([]ledger.AccountID, max(shards, 1))
	for s := range out {
		out[s] = MerchantAccountOn(m, s, shards)
	}
	return out
}

// Canonical is the account a per-shard copy stands for: the canonical
// system account (SystemAccountOn(id, 0, 1)) for a copy of one, the
// merchant's first account (MerchantAccountOn(m, 0, 1)) for a merchant's,
// and id itself for every other account. Sums over shards group by it.
func Canonical(id ledger.AccountID) ledger.AccountID {
	switch {
	case id&^(systemBase-1) == systemBase:
		return ledger.WithHome(id, 0)
	case id&^(merchantBase-1) == merchantBase:
		return ledger.WithHome(id, ledger.HomeOf(id)>>merchantHomeShift<<merchantHomeShift)
	}
	return id
}

// SystemAccountOn is the copy of a fund system account (BankSettlement,
// FundOmnibusCash, ... below: the canonical ids) on shard: every order and
// every settlement entry is booked inside one shard, so each shard has its
// own sub-account of each (Ant's hot-account splitting), and the fund's
// position in an account is the sum over shards. With one shard it is the
// canonical id.
func SystemAccountOn(canonical ledger.AccountID, shard, shards int) ledger.AccountID {
	return ledger.OnShard(canonical, shard, shards)
}

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
	return quotaBase | ledger.AccountID(days)<<44 | ledger.AccountID(c)<<4 | slotQuota
}

// SystemAccountIDs lists the canonical system accounts and their assets.
func SystemAccountIDs() map[ledger.AccountID]ledger.Asset {
	return map[ledger.AccountID]ledger.Asset{
		BankSettlement: ledger.AssetCNY, FundOmnibusCash: ledger.AssetCNY, InTransitCash: ledger.AssetCNY,
		FundOmnibusShares: ledger.AssetFundShares, InTransitShares: ledger.AssetFundShares,
		IncomeDistribution: ledger.AssetFundShares, Rounding: ledger.AssetFundShares,
		QuotaIssuer: ledger.AssetQuota, QuotaUsed: ledger.AssetQuota,
	}
}

// systemAccountsOn lists the copies of the system accounts on shard.
func systemAccountsOn(shard, shards int) []ledger.Account {
	var out []ledger.Account
	for id, asset := range SystemAccountIDs() {
		out = append(out, ledger.Account{ID: SystemAccountOn(id, shard, shards), Asset: asset, Code: CodeSystem})
	}
	slices.SortFunc(out, func(a, b ledger.Account) int { return cmp.Compare(a.ID, b.ID) })
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
