package gateway

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fundplatform/fund/accounts"
	fundv1 "github.com/fundplatform/fund/gateway/api/fund/v1"
)

// Conversions between the accounts domain and the API's messages. Amounts
// leave as decimal strings (accounts.FormatAmount), never as floats.

func customerStatus(s accounts.Status) fundv1.CustomerStatus {
	switch s {
	case accounts.StatusActive:
		return fundv1.CustomerStatus_ACTIVE
	case accounts.StatusFrozen:
		return fundv1.CustomerStatus_FROZEN
	case accounts.StatusClosed:
		return fundv1.CustomerStatus_CLOSED
	}
	return fundv1.CustomerStatus_CUSTOMER_STATUS_UNSPECIFIED
}

func orderKind(k accounts.OrderKind) fundv1.OrderKind {
	switch k {
	case accounts.KindTopUp:
		return fundv1.OrderKind_TOP_UP
	case accounts.KindSubscribe:
		return fundv1.OrderKind_SUBSCRIBE
	case accounts.KindFastRedeem:
		return fundv1.OrderKind_FAST_REDEEM
	case accounts.KindStandardRedeem:
		return fundv1.OrderKind_STANDARD_REDEEM
	case accounts.KindTransfer:
		return fundv1.OrderKind_TRANSFER
	case accounts.KindPay:
		return fundv1.OrderKind_PAY
	case accounts.KindWithdraw:
		return fundv1.OrderKind_WITHDRAW
	}
	return fundv1.OrderKind_ORDER_KIND_UNSPECIFIED
}

func orderStatus(s accounts.OrderStatus) fundv1.OrderStatus {
	switch s {
	case accounts.OrderCompleted:
		return fundv1.OrderStatus_COMPLETED
	case accounts.OrderPending:
		return fundv1.OrderStatus_PENDING
	case accounts.OrderRejected:
		return fundv1.OrderStatus_REJECTED
	case accounts.OrderRefunded:
		return fundv1.OrderStatus_REFUNDED
	}
	return fundv1.OrderStatus_ORDER_STATUS_UNSPECIFIED
}

func dateString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.DateOnly)
}

func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func customerMsg(c accounts.Customer) *fundv1.Customer {
	return &fundv1.Customer{Id: int64(c.ID), RequestId: c.RequestID, Name: c.Name, Status: customerStatus(c.Status),
		CreatedAt: timestamp(c.CreatedAt)}
}

func orderMsg(o accounts.Order) *fundv1.Order {
	m := &fundv1.Order{
		RequestId: o.RequestID, CustomerId: int64(o.CustomerID), Kind: orderKind(o.Kind),
		Amount: accounts.FormatAmount(o.Amount), Status: orderStatus(o.Status), Reason: o.Reason,
		TradeDate: dateString(o.TradeDate), ConfirmDate: dateString(o.ConfirmDate), CreatedAt: timestamp(o.CreatedAt),
	}
	switch o.Kind {
	case accounts.KindTransfer:
		m.ToCustomerId = o.Counterparty
	case accounts.KindPay:
		m.MerchantId = o.Counterparty
	}
	return m
}

func holdingsMsg(h accounts.Holdings, fastLeft int64) *fundv1.Holdings {
	return &fundv1.Holdings{
		CustomerId:          int64(h.CustomerID),
		Status:              customerStatus(h.Status),
		Cash:                accounts.FormatAmount(h.AvailableCash),
		Shares:              accounts.FormatAmount(h.Shares),
		SharesPending:       accounts.FormatAmount(h.SharesAwaitingConfirmation),
		SharesRedeeming:     accounts.FormatAmount(h.SharesAwaitingPayout),
		FrozenCash:          accounts.FormatAmount(h.FrozenCash),
		FrozenShares:        accounts.FormatAmount(h.FrozenShares),
		FastRedeemLeftToday: accounts.FormatAmount(fastLeft),
		YesterdayIncome:     accounts.FormatAmount(h.YesterdayIncome),
		CumulativeIncome:    accounts.FormatAmount(h.CumulativeIncome),
		SevenDayYield:       h.SevenDayYield,
		SevenDayYieldDate:   dateString(h.SevenDayYieldDate),
	}
}
