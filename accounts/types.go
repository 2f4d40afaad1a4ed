package accounts

import (
	"fmt"
	"time"
)

// CustomerID identifies a customer; ids are assigned by the store from 1
// and stay below CustomerIDMax so that account ids can be derived from them.
type CustomerID int64

// CustomerIDMax bounds customer ids (2^40, a trillion customers).
const CustomerIDMax CustomerID = 1 << 40

// MerchantID identifies a merchant, below MerchantIDMax.
type MerchantID int64

// MerchantIDMax bounds merchant ids (2^28: a merchant id shares its
// accounts' home with the bits that place a copy on each shard).
const MerchantIDMax MerchantID = 1 << 28

// Status is a customer's life-cycle state.
type Status string

// Customer statuses.
const (
	StatusActive Status = "active"
	StatusFrozen Status = "frozen" // may receive money, may not move it out
	StatusClosed Status = "closed" // may do nothing; final
)

// Customer is one saver.
type Customer struct {
	ID CustomerID
	// RequestID is the client request id the customer was opened with:
	// one customer per request id, forever.
	RequestID string
	Name      string
	Status    Status
	CreatedAt time.Time
}

// OrderKind is what an order does.
type OrderKind string

// Order kinds.
const (
	KindTopUp          OrderKind = "top_up"
	KindSubscribe      OrderKind = "subscribe"
	KindFastRedeem     OrderKind = "fast_redeem"
	KindStandardRedeem OrderKind = "standard_redeem"
	KindTransfer       OrderKind = "transfer"
	KindPay            OrderKind = "pay"
	KindWithdraw       OrderKind = "withdraw"
)

// OrderKinds lists every kind, for validation and help texts.
var OrderKinds = []OrderKind{KindTopUp, KindSubscribe, KindFastRedeem, KindStandardRedeem, KindTransfer, KindPay, KindWithdraw}

// ParseOrderKind validates a kind name.
func ParseOrderKind(s string) (OrderKind, error) {
	for _, k := range OrderKinds {
		if string(k) == s {
			return k, nil
		}
	}
	return "", fmt.Errorf("order kind %q: want one of %v", s, OrderKinds)
}

// OrderStatus is where an order stands.
type OrderStatus string

// Order statuses. Only orders that reached one of these are stored: an
// order whose ledger call was not acknowledged leaves no row.
const (
	// OrderCompleted: the money moved (top-up, fast redeem, transfer, pay,
	// withdraw).
	OrderCompleted OrderStatus = "completed"
	// OrderPending: held in the ledger, waiting for settlement on
	// ConfirmDate (subscription shares awaiting confirmation, standard
	// redemption shares awaiting payout), or a transfer to a customer on
	// another shard whose money is in transit (the saga, ledger/xshard):
	// it becomes completed once the payee is credited, or refunded.
	OrderPending OrderStatus = "pending"
	// OrderRejected: refused by a rule that depends on the balances at the
	// time (insufficient funds, fast redemption limit); Reason says which.
	// Nothing moved, and a retry with the same request id gets the same
	// answer.
	OrderRejected OrderStatus = "rejected"
	// OrderRefunded: a transfer to a customer on another shard whose
	// shard refused the money (the payee's accounts closed meanwhile, or
	// missing); the payer got it back, once. Reason says why (ReasonPayeeClosed and the others below).
	OrderRefunded OrderStatus = "refunded"
)

// Reasons recorded with a refunded transfer.
const (
	ReasonPayeeClosed  = "payee_closed"  // the payee was closed before the money arrived
	ReasonPayeeUnknown = "payee_unknown" // no such customer (its ledger accounts were never created)
	ReasonPayeeRefused = "payee_refused" // the payee's ledger accounts refused it otherwise
)

// Order is one customer request and its outcome.
type Order struct {
	ID         int64 // assigned by the store, increasing; the history cursor
	CustomerID CustomerID
	RequestID  string
	Kind       OrderKind
	Amount     int64 // fen (or 0.01 shares)
	// Counterparty is the receiving customer of a transfer or the merchant
	// of a payment; 0 otherwise.
	Counterparty int64
	// TradeDate is the business date by the 15:00 cut-off and the calendar.
	TradeDate time.Time
	// ConfirmDate is when settlement confirms a subscription or pays a
	// standard redemption; zero for other kinds.
	ConfirmDate time.Time
	Status      OrderStatus
	Reason      string // why it was rejected or refunded
	CreatedAt   time.Time
	// RowCommitted is set by the service's apply when the ledger committed
	// the order's row with its entries (orderrow.go): the store then reads
	// the row back instead of inserting it. Never stored; false on every
	// order a store returns.
	RowCommitted bool
}

// sameContent reports whether two orders with one request id ask for the
// same thing.
func (o *Order) sameContent(p *Order) bool {
	return o.Kind == p.Kind && o.Amount == p.Amount && o.Counterparty == p.Counterparty
}

// Err is the error a rejected order answers with, nil otherwise.
func (o *Order) Err() error {
	if o.Status == OrderRejected {
		return reasonError(o.Reason)
	}
	return nil
}

// Holdings is what a customer has, in minor units.
type Holdings struct {
	CustomerID CustomerID
	Status     Status
	// AvailableCash can be spent now.
	AvailableCash int64
	// Shares are confirmed shares not held by a redemption: they earn
	// income and can be redeemed or spent.
	Shares int64
	// SharesAwaitingConfirmation are subscribed and paid, confirmed by
	// settlement on their confirm date.
	SharesAwaitingConfirmation int64
	// SharesAwaitingPayout are held by standard redemptions until
	// settlement pays them out.
	SharesAwaitingPayout int64
	// FrozenCash and FrozenShares are what a frozen customer cannot move.
	FrozenCash   int64
	FrozenShares int64
	// YesterdayIncome is the income recorded for the natural day before
	// today (China Standard Time), CumulativeIncome the sum of all income
	// recorded; both come from the settlement run (RecordDailyIncome) and
	// are 0 until it records any. Either may be negative.
	YesterdayIncome  int64
	CumulativeIncome int64
	// SevenDayYield is the fund's latest 7-day annualised yield as a
	// percentage with 3 decimals ("2.398"), for SevenDayYieldDate; "" and
	// the zero time until settlement publishes one (PublishFundYield).
	SevenDayYield     string
	SevenDayYieldDate time.Time
}

// HistoryQuery selects a page of a customer's orders, newest first.
type HistoryQuery struct {
	CustomerID CustomerID
	Kinds      []OrderKind // empty = all
	From, To   time.Time   // trade dates, inclusive; zero = unbounded
	Cursor     string      // from the previous page; "" = newest
	Limit      int         // 1..HistoryLimitMax; 0 = HistoryLimitDefault
}

// History page sizes.
const (
	HistoryLimitDefault = 20
	HistoryLimitMax     = 200
)

// HistoryEntry is one order in a customer's history. Incoming marks a
// transfer another customer sent to this one.
type HistoryEntry struct {
	Order
	Incoming bool
}

// HistoryPage is one page of history; NextCursor is "" on the last page.
type HistoryPage struct {
	Entries    []HistoryEntry
	NextCursor string
}
