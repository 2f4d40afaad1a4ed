// Package accounts is the product on top of the ledger: customers and their
// accounts, the orders the mobile app sends (top up, subscribe, fast and
// standard redeem, transfer, pay a merchant, withdraw), the fund's rules
// (the 15:00 cut-off, the trading calendar, the fast-redemption daily cap)
// and the holdings and history views.
//
// Money moves only through a ledger.Client. Each customer has a cash
// account (CNY) and a shares account (fund shares) whose ids are derived
// from the customer id (CashAccount, SharesAccount). Shares awaiting
// confirmation are pending credits of the shares account, shares awaiting
// redemption payout are pending debits, so the ledger itself keeps them out
// of what the customer can spend; the settlement run posts them.
//
// Opening a customer and every order carry a client request id. The Store
// keeps one customer per request id and one order per (customer, request
// id), forever. The ledger transfers of an order have ids derived from its
// key (ledger.DeriveTransferID), so a retry gets the original result and
// can never move money twice, even if the order's row was lost after the
// ledger applied it.
//
// The fast-redemption cap is a ledger account per customer and day, in
// ledger.AssetQuota so that it is never counted as money, that every fast
// redemption debits in the same atomic chain as the money (see
// Service.FastRedeem), which makes the cap exact under concurrency.
//
// The settlement run feeds the holdings view: RecordDailyIncome keeps what
// each customer earned each natural day (yesterday's and cumulative
// income), PublishFundYield the fund's income per 10,000 shares and its
// 7-day annualised yield (SevenDayYield, exact integer arithmetic).
//
// Amounts cross the edge as decimal strings (ParseAmount, FormatAmount) and
// are int64 minor units inside.
//
// The Postgres store is accounts/postgres. A short example:
//
//	store, _ := postgres.Open(ctx, postgres.Config{DSN: dsn})
//	svc, _ := accounts.NewService(ctx, accounts.Config{}, store, sequencer, logger)
//	c, _ := svc.OpenCustomer(ctx, "open-alice", "Alice")
//	fen, err := accounts.ParseAmount("100.00")
//	order, err := svc.TopUp(ctx, c.ID, "req-1", fen)
package accounts
