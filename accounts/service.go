package accounts

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/xshard"
)

// FastRedeemDailyMaxDefault is the default cap on fast (T+0) redemptions per
// customer per natural day: 10,000.00 CNY, the 2018 rule.
const FastRedeemDailyMaxDefault int64 = 1_000_000

// Limits of the service.
const (
	requestIDLenMax      = ledger.MaxUserDataLen // the request id travels as the transfers' user data
	nameLenMax           = 100
	ledgerTimeoutDefault = 10 * time.Second
)

// Config of a Service.
type Config struct {
	// FastRedeemDailyMax caps fast redemptions per customer per natural
	// day (China Standard Time), in fen; 0 = FastRedeemDailyMaxDefault.
	FastRedeemDailyMax int64
	// Calendar to use; nil = load the holidays from the store.
	Calendar *Calendar
	// LedgerTimeout bounds each ledger call; 0 = 10s.
	LedgerTimeout time.Duration
	// Now is the clock; tests replace it.
	Now func() time.Time
	// Shards is the number of logical ledger shards the customers are
	// spread over (ShardOf); 0 = 1. Every process must use the same.
	Shards int
	// ShardClient is the client of each shard, for the transfers between
	// shards (saga.go): their status is asked of the shards themselves,
	// so each must implement ledger.TransferLookup (the sequencer, the
	// gRPC shard client). nil = the service's ledger client for every
	// shard, which only one shard allows.
	ShardClient func(shard int) ledger.Client
}

// Service is the customer-facing product: customers, orders and queries on
// top of the ledger. It is safe for concurrent use.
type Service struct {
	cfg    Config
	store  Store
	ledger ledger.Client
	cal    atomic.Pointer[Calendar]
	log    *slog.Logger
	// merchants found registered (checkMerchant)
	merchants knownMerchants
	// saga runs the transfers between shards (saga.go); sweepAfter is the
	// order id ResolvePendingTransfers goes on after.
	saga       *xshard.Router
	sweepAfter atomic.Int64
}

// NewService creates the system accounts and the in-transit accounts of
// the transfers between shards in the ledger (idempotently) and loads the
// trading calendar.
func NewService(ctx context.Context, cfg Config, store Store, lc ledger.Client, logger *slog.Logger) (*Service, error) {
	if cfg.FastRedeemDailyMax == 0 {
		cfg.FastRedeemDailyMax = FastRedeemDailyMaxDefault
	}
	if cfg.FastRedeemDailyMax < 0 || cfg.FastRedeemDailyMax > AmountMaxFen {
		return nil, fmt.Errorf("fast redemption daily max %d fen: want 1..%d", cfg.FastRedeemDailyMax, AmountMaxFen)
	}
	if cfg.LedgerTimeout == 0 {
		cfg.LedgerTimeout = ledgerTimeoutDefault
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Shards = max(cfg.Shards, 1)
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	shardClient := cfg.ShardClient
	if shardClient == nil {
		if cfg.Shards > 1 {
			return nil, fmt.Errorf("%d shards without a client per shard (Config.ShardClient)", cfg.Shards)
		}
		shardClient = func(int) ledger.Client { return lc }
	}
	s := &Service{cfg: cfg, store: store, ledger: lc, log: logger, saga: xshard.NewRouter(cfg.Shards, shardClient)}
	for shard := range cfg.Shards {
		if err := s.createAccounts(ctx, systemAccountsOn(shard, cfg.Shards)); err != nil {
			return nil, fmt.Errorf("system accounts on shard %d: %w", shard, err)
		}
	}
	lctx, cancel := context.WithTimeout(ctx, s.cfg.LedgerTimeout)
	defer cancel()
	if err := s.saga.EnsureInTransit(lctx, ledger.AssetCNY); err != nil {
		return nil, err
	}
	if cfg.Calendar != nil {
		s.cal.Store(cfg.Calendar)
	} else if err := s.ReloadCalendar(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Calendar returns the trading calendar in use.
func (s *Service) Calendar() *Calendar { return s.cal.Load() }

// ReloadCalendar reads the holidays from the store again.
func (s *Service) ReloadCalendar(ctx context.Context) error {
	hs, err := s.store.Holidays(ctx)
	if err != nil {
		return fmt.Errorf("load holidays: %w", err)
	}
	s.cal.Store(NewCalendar(hs))
	return nil
}

// OpenCustomer creates a customer with its cash and shares accounts, once
// per client request id, forever. A retry with the same request id and
// name returns the customer the first call opened, in its current state
// (even if it has been frozen or closed since); one with another name gets
// that customer and ErrIdempotencyConflict. Concurrent identical calls open
// one customer. Errors: ErrInvalidRequestID, ErrInvalidName,
// ErrIdempotencyConflict. Any other error means the customer may not have
// been opened and the call may be retried with the same request id.
func (s *Service) OpenCustomer(ctx context.Context, requestID, name string) (Customer, error) {
	if !validRequestID(requestID) {
		return Customer{}, ErrInvalidRequestID
	}
	if n := utf8.RuneCountInString(name); n == 0 || n > nameLenMax || !utf8.ValidString(name) {
		return Customer{}, ErrInvalidName
	}
	c := Customer{RequestID: requestID, Name: name, CreatedAt: s.cfg.Now().UTC().Truncate(time.Microsecond)}
	stored, existed, err := s.store.CreateCustomer(ctx, c, func(ctx context.Context, c Customer) error {
		if c.ID <= 0 || c.ID >= CustomerIDMax {
			return fmt.Errorf("customer id %d outside 1..%d", c.ID, CustomerIDMax-1)
		}
		return s.createAccounts(ctx, []ledger.Account{
			{ID: CashAccount(c.ID), Asset: ledger.AssetCNY, Code: CodeCustomerCash, Flags: ledger.DebitsMustNotExceedCredits},
			{ID: SharesAccount(c.ID), Asset: ledger.AssetFundShares, Code: CodeCustomerShares, Flags: ledger.DebitsMustNotExceedCredits},
		})
	})
	if err != nil {
		return Customer{}, err
	}
	if existed && stored.Name != name {
		return stored, ErrIdempotencyConflict
	}
	return stored, nil
}

// Customer returns a customer. Errors: ErrCustomerNotFound.
func (s *Service) Customer(ctx context.Context, id CustomerID) (Customer, error) {
	if id <= 0 || id >= CustomerIDMax {
		return Customer{}, ErrCustomerNotFound
	}
	return s.store.Customer(ctx, id)
}

// Freeze stops a customer's money from moving out; it may still receive.
// It waits for the customer's orders in flight. Freezing a frozen customer
// is a no-op. Errors: ErrCustomerNotFound, ErrCustomerClosed.
func (s *Service) Freeze(ctx context.Context, id CustomerID) (Customer, error) {
	return s.updateStatus(ctx, id, func(ctx context.Context, c *Customer) error {
		switch c.Status {
		case StatusClosed:
			return ErrCustomerClosed
		case StatusActive:
			c.Status = StatusFrozen
		}
		return nil
	})
}

// Unfreeze lifts a freeze. Unfreezing an active customer is a no-op.
// Errors: ErrCustomerNotFound, ErrCustomerClosed.
func (s *Service) Unfreeze(ctx context.Context, id CustomerID) (Customer, error) {
	return s.updateStatus(ctx, id, func(ctx context.Context, c *Customer) error {
		switch c.Status {
		case StatusClosed:
			return ErrCustomerClosed
		case StatusFrozen:
			c.Status = StatusActive
		}
		return nil
	})
}

// Close closes a customer whose cash and shares are all zero (nothing held
// or pending either, no transfer in flight to another shard) and closes its
// ledger accounts. Closing a closed customer is a no-op. Errors:
// ErrCustomerNotFound, ErrCustomerFrozen, ErrBalanceNotZero.
func (s *Service) Close(ctx context.Context, id CustomerID) (Customer, error) {
	return s.updateStatus(ctx, id, func(ctx context.Context, c *Customer) error {
		switch c.Status {
		case StatusClosed:
			return nil
		case StatusFrozen:
			return ErrCustomerFrozen
		}
		// Money in flight to another shard is still the customer's: it
		// may come back, into accounts that must then be open.
		if inFlight, err := s.transfersInFlight(ctx, c.ID); err != nil {
			return err
		} else if inFlight {
			return fmt.Errorf("a transfer to another shard is in flight: %w", ErrBalanceNotZero)
		}
		ids := []ledger.AccountID{CashAccount(c.ID), SharesAccount(c.ID)}
		// The customer is locked (UpdateCustomer), so no order of it can
		// change these balances before the accounts are closed.
		accts, err := s.lookup(ctx, ids)
		if err != nil {
			return err
		}
		for _, a := range accts {
			if a.DebitsPending != 0 || a.CreditsPending != 0 || a.DebitsPosted != a.CreditsPosted {
				return ErrBalanceNotZero
			}
		}
		lctx, cancel := context.WithTimeout(ctx, s.cfg.LedgerTimeout)
		defer cancel()
		res, err := s.ledger.CloseAccounts(lctx, ids)
		if err != nil {
			return fmt.Errorf("close accounts: %w", err)
		}
		for i, r := range res {
			switch r.Result {
			case ledger.ResultOK, ledger.ResultAccountAlreadyClosed:
			case ledger.ResultAccountBalanceNotZero:
				return ErrBalanceNotZero
			default:
				return fmt.Errorf("%w: close account %d: %s", ErrLedger, ids[i], r.Result)
			}
		}
		c.Status = StatusClosed
		return nil
	})
}

func (s *Service) updateStatus(ctx context.Context, id CustomerID, change func(context.Context, *Customer) error) (Customer, error) {
	if id <= 0 || id >= CustomerIDMax {
		return Customer{}, ErrCustomerNotFound
	}
	return s.store.UpdateCustomer(ctx, id, change)
}

// RegisterMerchant creates a merchant's ledger account (idempotently).
func (s *Service) RegisterMerchant(ctx context.Context, m MerchantID) error {
	if m <= 0 || m >= MerchantIDMax {
		return ErrMerchantNotFound
	}
	for shard, id := range MerchantAccounts(m, s.cfg.Shards) {
		if err := s.createAccounts(ctx, []ledger.Account{
			{ID: id, Asset: ledger.AssetCNY, Code: CodeMerchant, Flags: ledger.DebitsMustNotExceedCredits},
		}); err != nil {
			return fmt.Errorf("merchant %d on shard %d: %w", m, shard, err)
		}
	}
	s.merchants.add(m)
	return nil
}

// Every operation below takes a client-chosen request id, unique per
// customer. The first request with an id is placed; every later one with
// the same id and the same content returns the stored order (and its error,
// if it was rejected), and one with different content gets
// ErrIdempotencyConflict. Each returns the order and, when it was refused,
// an error: an *AmountError, ErrInvalidRequestID, ErrCustomerNotFound,
// ErrCustomerFrozen, ErrCustomerClosed, ErrIdempotencyConflict (nothing
// stored for these) or ErrInsufficientFunds, ErrFastRedeemLimit (stored as
// a rejected order). Who the order names is checked before any money
// moves: an unknown, closed or frozen party is answered the same whatever
// the balances, and nothing is stored for it. Any other error means the order was not acknowledged
// and may be retried with the same request id.

// TopUp moves money from the customer's bank card into its cash. Frozen
// customers may top up.
func (s *Service) TopUp(ctx context.Context, c CustomerID, requestID string, amount int64) (Order, error) {
	return s.place(ctx, operation{
		customer: c, requestID: requestID, kind: KindTopUp, amount: amount, allowFrozen: true,
		chain: []leg{{s.sys(BankSettlement, c), CashAccount(c), ledger.AssetCNY, TransferTopUp, 0}},
	})
}

// Withdraw moves cash to the customer's bank card.
func (s *Service) Withdraw(ctx context.Context, c CustomerID, requestID string, amount int64) (Order, error) {
	return s.place(ctx, operation{
		customer: c, requestID: requestID, kind: KindWithdraw, amount: amount,
		chain:    []leg{{CashAccount(c), s.sys(BankSettlement, c), ledger.AssetCNY, TransferWithdraw, 0}},
		shortage: map[int]string{0: reasonInsufficientFunds},
	})
}

// Subscribe turns cash into fund shares: the cash goes to the fund at once,
// the shares are held as awaiting confirmation (a pending ledger transfer)
// until settlement confirms them on the order's ConfirmDate.
func (s *Service) Subscribe(ctx context.Context, c CustomerID, requestID string, amount int64) (Order, error) {
	return s.place(ctx, operation{
		customer: c, requestID: requestID, kind: KindSubscribe, amount: amount, confirm: true,
		chain: []leg{
			{CashAccount(c), s.sys(FundOmnibusCash, c), ledger.AssetCNY, TransferSubscribeCash, 0},
			{s.sys(FundOmnibusShares, c), SharesAccount(c), ledger.AssetFundShares, TransferSubscribeShares, ledger.Pending},
		},
		shortage: map[int]string{0: reasonInsufficientFunds},
		pending:  true,
	})
}

// StandardRedeem holds shares now (a pending transfer to the fund); the
// settlement run posts it and pays the cash on the order's ConfirmDate.
func (s *Service) StandardRedeem(ctx context.Context, c CustomerID, requestID string, amount int64) (Order, error) {
	return s.place(ctx, operation{
		customer: c, requestID: requestID, kind: KindStandardRedeem, amount: amount, confirm: true,
		chain:    []leg{{SharesAccount(c), s.sys(FundOmnibusShares, c), ledger.AssetFundShares, TransferStandardRedeem, ledger.Pending}},
		shortage: map[int]string{0: reasonInsufficientFunds},
		pending:  true,
	})
}

// FastRedeem turns shares into cash at once, within the customer's daily
// fast-redemption cap.
//
// The cap is a ledger account per customer and natural day, granted the cap
// once (by a transfer whose id is derived from customer and day) and debited
// by each fast redemption in the same linked chain as the shares and cash
// legs. The shard's single writer applies transfers one at a time, and the
// quota account may not go below zero, so the check and the use of the
// quota are one atomic step: under any number of concurrent requests
// exactly the redemptions that fit succeed, and there is no counter that a
// lost write could leave out of step with the money.
func (s *Service) FastRedeem(ctx context.Context, c CustomerID, requestID string, amount int64) (Order, error) {
	today := NaturalDay(s.cfg.Now())
	quota := QuotaAccount(c, today)
	return s.place(ctx, operation{
		customer: c, requestID: requestID, kind: KindFastRedeem, amount: amount,
		before: func(ctx context.Context) ([]ledger.Transfer, error) {
			err := s.createAccounts(ctx, []ledger.Account{{ID: quota, Asset: ledger.AssetQuota, Code: CodeFastQuota,
				Flags: ledger.DebitsMustNotExceedCredits}})
			return []ledger.Transfer{{ID: quotaGrantID(c, today), DebitAccountID: s.sys(QuotaIssuer, c), CreditAccountID: quota,
				Amount: s.cfg.FastRedeemDailyMax, Asset: ledger.AssetQuota, Kind: TransferQuotaGrant}}, err
		},
		// The shares leg goes first: its fields do not depend on the day, so
		// a retry after midnight of a redemption whose order row was lost
		// still finds it ("exists") instead of a conflict.
		chain: []leg{
			{SharesAccount(c), s.sys(FundOmnibusShares, c), ledger.AssetFundShares, TransferFastRedeemShares, 0},
			{quota, s.sys(QuotaUsed, c), ledger.AssetQuota, TransferFastRedeemQuota, 0},
			{s.sys(FundOmnibusCash, c), CashAccount(c), ledger.AssetCNY, TransferFastRedeemCash, 0},
		},
		shortage: map[int]string{0: reasonInsufficientFunds, 1: reasonFastRedeemLimit},
	})
}

// Transfer moves cash to another customer, who may be frozen but not
// closed. To a customer on the same shard it completes at once. To one on
// another shard it is a saga (saga.go): the payer's cash leaves at once
// and the order is PENDING until the payee is credited (COMPLETED) or its
// accounts refuse (REFUNDED, Reason saying why, the money back with the
// payer); reading the order (OrderStatus, History, a retry) tells which.
// Errors also: ErrSameCustomer.
func (s *Service) Transfer(ctx context.Context, c CustomerID, requestID string, to CustomerID, amount int64) (Order, error) {
	if to == c {
		return Order{}, ErrSameCustomer
	}
	if to <= 0 || to >= CustomerIDMax {
		return Order{}, fmt.Errorf("recipient %d: %w", to, ErrCustomerNotFound)
	}
	saga := ShardOf(c, s.cfg.Shards) != ShardOf(to, s.cfg.Shards)
	return s.place(ctx, operation{
		customer: c, requestID: requestID, kind: KindTransfer, amount: amount, counterparty: int64(to), recipient: to,
		chain:    []leg{{CashAccount(c), CashAccount(to), ledger.AssetCNY, TransferCustomerToCustomer, 0}},
		shortage: map[int]string{0: reasonInsufficientFunds},
		saga:     saga, pending: saga,
	})
}

// Pay pays a merchant from the customer's fund shares: the shares are
// redeemed and the fund pays the merchant, in one atomic chain. Payments do
// not count against the fast-redemption cap. Errors also:
// ErrMerchantNotFound (nothing stored).
func (s *Service) Pay(ctx context.Context, c CustomerID, requestID string, m MerchantID, amount int64) (Order, error) {
	if m <= 0 || m >= MerchantIDMax {
		return Order{}, fmt.Errorf("merchant %d: %w", m, ErrMerchantNotFound)
	}
	return s.place(ctx, operation{
		customer: c, requestID: requestID, kind: KindPay, amount: amount, counterparty: int64(m),
		check: func(ctx context.Context) error { return s.checkMerchant(ctx, m, ShardOf(c, s.cfg.Shards)) },
		chain: []leg{
			{SharesAccount(c), s.sys(FundOmnibusShares, c), ledger.AssetFundShares, TransferPayShares, 0},
			{s.sys(FundOmnibusCash, c), MerchantAccountOn(m, ShardOf(c, s.cfg.Shards), s.cfg.Shards), ledger.AssetCNY, TransferPayCash, 0},
		},
		shortage: map[int]string{0: reasonInsufficientFunds},
	})
}

// sys is the copy of a system account on customer c's shard: every order
// of c is one chain on that shard.
func (s *Service) sys(canonical ledger.AccountID, c CustomerID) ledger.AccountID {
	return SystemAccountOn(canonical, ShardOf(c, s.cfg.Shards), s.cfg.Shards)
}

// Shards is the number of ledger shards the customers are spread over.
func (s *Service) Shards() int { return s.cfg.Shards }

// leg is one transfer of an order's linked chain; it carries the order's
// amount.
type leg struct {
	debit, credit ledger.AccountID
	asset         ledger.Asset
	kind          uint16
	flags         ledger.TransferFlags
}

type operation struct {
	customer     CustomerID
	requestID    string
	kind         OrderKind
	amount       int64
	counterparty int64
	recipient    CustomerID // a second party, locked for share; 0 = none
	allowFrozen  bool       // money only comes in
	confirm      bool       // has a confirm date
	pending      bool       // ends pending, not completed
	// check, when set, validates what the order names besides its
	// customers (a merchant) before any transfer is sent; its error is
	// the answer and nothing is stored. Like the parties' checks it runs
	// only for a request id not stored yet, so a retry of a stored order
	// still gets the stored answer.
	check func(context.Context) error
	// before returns transfers applied ahead of the chain in the same
	// request, each on its own, whose outcome may be OK or any "exists".
	before func(context.Context) ([]ledger.Transfer, error)
	chain  []leg
	// shortage names the reason recorded when leg i lacks the funds.
	shortage map[int]string
	// saga: the chain is one plain transfer between two shards, sent as
	// leg 1 of a saga (xshard.Leg1); with pending, the order waits for it.
	saga bool
}

func validRequestID(id string) bool {
	if len(id) == 0 || len(id) > requestIDLenMax {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

func (s *Service) place(ctx context.Context, op operation) (Order, error) {
	if !validRequestID(op.requestID) {
		return Order{}, ErrInvalidRequestID
	}
	if op.amount <= 0 || op.amount > AmountMaxFen {
		// Amounts normally arrive through ParseAmount; this guards callers
		// that pass fen directly.
		reason := ErrAmountTooLarge
		if op.amount <= 0 {
			reason = ErrAmountNotPositive
		}
		return Order{}, &AmountError{Input: strconv.FormatInt(op.amount, 10) + " fen", Reason: reason}
	}
	if op.customer <= 0 || op.customer >= CustomerIDMax {
		return Order{}, ErrCustomerNotFound
	}
	// UTC at microseconds: what the store keeps, so that a fresh order and
	// its stored retry compare equal.
	now := s.cfg.Now().UTC().Truncate(time.Microsecond)
	cal := s.cal.Load()
	o := &Order{
		CustomerID: op.customer, RequestID: op.requestID, Kind: op.kind, Amount: op.amount,
		Counterparty: op.counterparty, TradeDate: cal.TradeDate(now), CreatedAt: now,
	}
	if op.confirm {
		o.ConfirmDate = cal.ConfirmDate(o.TradeDate)
	}
	parties := []CustomerID{op.customer}
	if op.recipient != 0 {
		parties = append(parties, op.recipient)
	}
	stored, existed, err := s.store.PlaceOrder(ctx, o, parties, func(ctx context.Context, ps []Customer) error {
		switch ps[0].Status {
		case StatusClosed:
			return ErrCustomerClosed
		case StatusFrozen:
			if !op.allowFrozen {
				return ErrCustomerFrozen
			}
		}
		if len(ps) > 1 && ps[1].Status == StatusClosed {
			return fmt.Errorf("recipient %d: %w", ps[1].ID, ErrCustomerClosed)
		}
		if op.check != nil {
			if err := op.check(ctx); err != nil {
				return err
			}
		}
		return s.apply(ctx, o, op)
	})
	if err != nil {
		return Order{}, err
	}
	if existed && !stored.sameContent(o) {
		return stored, ErrIdempotencyConflict
	}
	if existed && pendingTransfer(&stored) {
		// A retry of a transfer between shards learns how it ended.
		one := []Order{stored}
		s.resolveRead(ctx, one)
		stored = one[0]
	}
	return stored, stored.Err()
}

// apply sends the order's transfers to the ledger and sets o's outcome.
func (s *Service) apply(ctx context.Context, o *Order, op operation) error {
	var ts []ledger.Transfer
	if op.before != nil {
		pre, err := op.before(ctx)
		if err != nil {
			return err
		}
		ts = pre
	}
	first := len(ts)
	for i, l := range op.chain {
		t := ledger.Transfer{
			ID: transferID(o.CustomerID, o.RequestID, i), DebitAccountID: l.debit, CreditAccountID: l.credit,
			Amount: o.Amount, Asset: l.asset, Kind: l.kind, Flags: l.flags, UserData: o.RequestID,
		}
		if i < len(op.chain)-1 {
			t.Flags |= ledger.Linked
		}
		if op.saga {
			t = xshard.Leg1(t, s.cfg.Shards)
		}
		ts = append(ts, t)
	}
	// The request carries the order's row, written in the ledger's commit
	// with the entries when the ledger can (orderrow.go); the status is
	// the same rule's either way.
	row := OrderRow{Order: *o, First: first, Pending: op.pending, Shortage: op.shortage}
	lctx, cancel := context.WithTimeout(ctx, s.cfg.LedgerTimeout)
	defer cancel()
	res, attached, err := ledger.CreateTransfersAttached(lctx, s.ledger, ts, row.Encode())
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	if len(res) != len(ts) {
		return fmt.Errorf("%w: %d results for %d transfers", ErrLedger, len(res), len(ts))
	}
	status, reason, err := row.Outcome(res)
	if err != nil {
		return err
	}
	o.Status, o.Reason, o.RowCommitted = status, reason, attached
	return nil
}

// OrderStatus returns an order by its request id; a transfer between
// shards is resolved first (saga.go). Errors: ErrOrderNotFound.
func (s *Service) OrderStatus(ctx context.Context, c CustomerID, requestID string) (Order, error) {
	if !validRequestID(requestID) {
		return Order{}, ErrInvalidRequestID
	}
	o, err := s.store.Order(ctx, c, requestID)
	if err != nil {
		return Order{}, err
	}
	one := []Order{o}
	s.resolveRead(ctx, one)
	return one[0], nil
}

// Holdings returns what a customer has. Errors: ErrCustomerNotFound.
func (s *Service) Holdings(ctx context.Context, c CustomerID) (Holdings, error) {
	cust, err := s.Customer(ctx, c)
	if err != nil {
		return Holdings{}, err
	}
	accts, err := s.lookup(ctx, []ledger.AccountID{CashAccount(c), SharesAccount(c)})
	if err != nil {
		return Holdings{}, err
	}
	cash, shares := accts[0], accts[1]
	h := Holdings{
		CustomerID:                 c,
		Status:                     cust.Status,
		AvailableCash:              cash.Available(),
		Shares:                     shares.Available(),
		SharesAwaitingConfirmation: shares.CreditsPending,
		SharesAwaitingPayout:       shares.DebitsPending,
	}
	if cust.Status == StatusFrozen {
		h.FrozenCash, h.FrozenShares = h.AvailableCash, h.Shares
	}
	yesterday := NaturalDay(s.cfg.Now()).AddDate(0, 0, -1)
	if h.YesterdayIncome, h.CumulativeIncome, err = s.store.Income(ctx, c, yesterday); err != nil {
		return Holdings{}, err
	}
	y, ok, err := s.store.LatestFundYield(ctx)
	if err != nil {
		return Holdings{}, err
	}
	if ok && y.HasSevenDayYield {
		h.SevenDayYield, h.SevenDayYieldDate = FormatYield(y.SevenDayYield), y.Date
	}
	return h, nil
}

// RecordDailyIncome records what the settlement run paid customers for
// natural days (see DailyIncome), at most IncomeBatchMax at a time, the
// whole batch or nothing. Recording the same income again is a no-op, so a
// re-run of settlement may call it again. Errors: ErrRecordConflict (an
// income already recorded with another amount), ErrCustomerNotFound,
// ErrInvalidAmount (beyond AmountMaxFen either way).
func (s *Service) RecordDailyIncome(ctx context.Context, incomes []DailyIncome) error {
	if len(incomes) > IncomeBatchMax {
		return fmt.Errorf("%d incomes in one call: want at most %d", len(incomes), IncomeBatchMax)
	}
	for i, in := range incomes {
		if in.CustomerID <= 0 || in.CustomerID >= CustomerIDMax {
			return fmt.Errorf("income %d: customer %d: %w", i, in.CustomerID, ErrCustomerNotFound)
		}
		if in.Amount < -AmountMaxFen || in.Amount > AmountMaxFen {
			return fmt.Errorf("income %d of customer %d: %d fen beyond ±%s: %w", i, in.CustomerID, in.Amount,
				FormatAmount(AmountMaxFen), ErrInvalidAmount)
		}
		if in.Date.IsZero() {
			return fmt.Errorf("income %d of customer %d: no date", i, in.CustomerID)
		}
	}
	return s.store.RecordDailyIncome(ctx, incomes)
}

// PublishFundYield records the fund's income per 10,000 shares (units of
// 0.0001 CNY) for a natural day and, once the fund has the six days before
// it, the 7-day annualised yield of the seven days ending on it
// (SevenDayYield). Days are published one after another from the fund's
// first: a day after a gap is refused. Publishing a day again with the
// same income returns what was stored (so settlement may re-run), with
// another income fails. Errors: ErrIncomePer10kRange, ErrYieldGap,
// ErrRecordConflict.
func (s *Service) PublishFundYield(ctx context.Context, date time.Time, incomePer10k int64) (FundYield, error) {
	if incomePer10k < -IncomePer10kMax || incomePer10k > IncomePer10kMax {
		return FundYield{}, &Per10kError{IncomePer10k: incomePer10k}
	}
	date = DateOf(date)
	latest, ok, err := s.store.LatestFundYield(ctx)
	if err != nil {
		return FundYield{}, err
	}
	switch {
	case ok && !date.After(latest.Date):
		// A re-run: the day is stored, or before the fund's first day.
		ys, err := s.store.FundYields(ctx, date, date)
		if err != nil {
			return FundYield{}, err
		}
		if len(ys) == 0 {
			return FundYield{}, fmt.Errorf("%s is before the first published day: %w", date.Format(time.DateOnly), ErrYieldGap)
		}
		if ys[0].IncomePer10k != incomePer10k {
			return ys[0], fmt.Errorf("fund income of %s: %s per 10,000 shares published, %s given: %w",
				date.Format(time.DateOnly), FormatIncomePer10k(ys[0].IncomePer10k), FormatIncomePer10k(incomePer10k),
				ErrRecordConflict)
		}
		return ys[0], nil
	case ok && !date.Equal(latest.Date.AddDate(0, 0, 1)):
		return FundYield{}, fmt.Errorf("%s after %s: %w", date.Format(time.DateOnly), latest.Date.Format(time.DateOnly), ErrYieldGap)
	}
	y := FundYield{Date: date, IncomePer10k: incomePer10k}
	// The days are contiguous, so the six before are either all there or
	// the fund is younger than a week.
	before, err := s.store.FundYields(ctx, date.AddDate(0, 0, 1-SevenDayYieldDays), date.AddDate(0, 0, -1))
	if err != nil {
		return FundYield{}, err
	}
	if len(before) == SevenDayYieldDays-1 {
		var window [SevenDayYieldDays]int64
		for i, b := range before {
			window[i] = b.IncomePer10k
		}
		window[SevenDayYieldDays-1] = incomePer10k
		if y.SevenDayYield, err = SevenDayYield(window); err != nil {
			// The stored incomes passed the same bounds: a broken invariant.
			return FundYield{}, fmt.Errorf("seven-day yield of %s: %w", date.Format(time.DateOnly), err)
		}
		y.HasSevenDayYield = true
	}
	if err := s.store.RecordFundYield(ctx, y); err != nil {
		return FundYield{}, err
	}
	return y, nil
}

// History returns a page of a customer's orders, newest first: its own
// and the transfers it received, once credited. Transfers between shards
// on the page are resolved first (saga.go); one to the customer that is
// still in flight or was refunded is left out, so a page may hold fewer
// than Limit entries and still have a NextCursor. Errors:
// ErrInvalidCursor.
func (s *Service) History(ctx context.Context, q HistoryQuery) (HistoryPage, error) {
	if q.Limit == 0 {
		q.Limit = HistoryLimitDefault
	}
	if q.Limit < 0 || q.Limit > HistoryLimitMax {
		return HistoryPage{}, fmt.Errorf("history limit %d: want 1..%d", q.Limit, HistoryLimitMax)
	}
	for _, k := range q.Kinds {
		if _, err := ParseOrderKind(string(k)); err != nil {
			return HistoryPage{}, err
		}
	}
	var before int64
	if q.Cursor != "" {
		v, err := strconv.ParseInt(q.Cursor, 10, 64)
		if err != nil || v <= 0 {
			return HistoryPage{}, ErrInvalidCursor
		}
		before = v
	}
	if !q.From.IsZero() {
		q.From = DateOf(q.From)
	}
	if !q.To.IsZero() {
		q.To = DateOf(q.To)
	}
	orders, err := s.store.History(ctx, q, before, q.Limit+1)
	if err != nil {
		return HistoryPage{}, err
	}
	var page HistoryPage
	if len(orders) > q.Limit {
		orders = orders[:q.Limit]
		page.NextCursor = strconv.FormatInt(orders[len(orders)-1].ID, 10)
	}
	s.resolveRead(ctx, orders)
	page.Entries = make([]HistoryEntry, 0, len(orders))
	for _, o := range orders {
		incoming := o.CustomerID != q.CustomerID
		if incoming && o.Status != OrderCompleted {
			continue // the money has not reached this customer
		}
		page.Entries = append(page.Entries, HistoryEntry{Order: o, Incoming: incoming})
	}
	return page, nil
}

func (s *Service) createAccounts(ctx context.Context, accts []ledger.Account) error {
	lctx, cancel := context.WithTimeout(ctx, s.cfg.LedgerTimeout)
	defer cancel()
	res, err := s.ledger.CreateAccounts(lctx, accts)
	if err != nil {
		return fmt.Errorf("create accounts: %w", err)
	}
	for i, r := range res {
		if r.Result != ledger.ResultOK && r.Result != ledger.ResultExists {
			return fmt.Errorf("%w: create account %d: %s", ErrLedger, accts[i].ID, r.Result)
		}
	}
	return nil
}

// lookup returns the accounts asked for, all of which must exist.
func (s *Service) lookup(ctx context.Context, ids []ledger.AccountID) ([]ledger.Account, error) {
	lctx, cancel := context.WithTimeout(ctx, s.cfg.LedgerTimeout)
	defer cancel()
	accts, err := s.ledger.LookupAccounts(lctx, ids)
	if err != nil {
		return nil, fmt.Errorf("lookup accounts: %w", err)
	}
	if len(accts) != len(ids) {
		return nil, fmt.Errorf("%w: %d of %d accounts found", ErrLedger, len(accts), len(ids))
	}
	for i := range ids {
		if accts[i].ID != ids[i] {
			return nil, fmt.Errorf("%w: account %d missing", ErrLedger, ids[i])
		}
	}
	return accts, nil
}

// FastRedeemLeft returns what customer c may still fast-redeem on today's
// natural day (China Standard Time), in fen. Until the day's first fast
// redemption grants the quota, that is the whole cap.
func (s *Service) FastRedeemLeft(ctx context.Context, c CustomerID) (int64, error) {
	if c <= 0 || c >= CustomerIDMax {
		return 0, ErrCustomerNotFound
	}
	lctx, cancel := context.WithTimeout(ctx, s.cfg.LedgerTimeout)
	defer cancel()
	quota := QuotaAccount(c, NaturalDay(s.cfg.Now()))
	accts, err := s.ledger.LookupAccounts(lctx, []ledger.AccountID{quota})
	if err != nil {
		return 0, fmt.Errorf("lookup accounts: %w", err)
	}
	// The quota account is created a moment before its grant is applied:
	// an account not granted yet still has the whole cap ahead of it.
	if len(accts) == 0 || accts[0].ID != quota || accts[0].CreditsPosted == 0 {
		return s.cfg.FastRedeemDailyMax, nil
	}
	return accts[0].Available(), nil
}
