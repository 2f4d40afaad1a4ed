package postgres

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fundplatform/fund/accounts"
	accountspg "github.com/fundplatform/fund/accounts/postgres"
	"github.com/fundplatform/fund/ledger"
	ledgerpg "github.com/fundplatform/fund/ledger/postgres"
	"github.com/fundplatform/fund/settlement"
)

// The settlement run books the shards it owns set-based, through the
// ledger's bulk writer (ledgerpg.Store.InShard): the ledger/postgres package
// writes the journal, the ids, the balances, the outbox and the fence; this
// package adds its own rows (cuts, step markers) and the customers' daily
// income to the same transaction, so that a step is done once or not at all.

// shardsOf returns the number of shards the date's run was opened with.
func shardsOf(ctx context.Context, q querier, date time.Time) (int, error) {
	var n int
	if err := q.QueryRow(ctx, `SELECT shards FROM settlement_runs WHERE date = $1`, date).Scan(&n); err != nil {
		return 0, fmt.Errorf("run of %s: %w", date.Format(time.DateOnly), err)
	}
	return n, nil
}

// systemAccountsOn lists the shard's copies of the fund accounts the run
// books to.
func systemAccountsOn(shard, shards int) []ledger.Account {
	var out []ledger.Account
	for canonical, asset := range settlement.SystemAccounts() {
		out = append(out, ledger.Account{ID: accounts.SystemAccountOn(canonical, shard, shards), Asset: asset,
			Code: accounts.CodeSystem})
	}
	return out
}

// Prepare implements settlement.Store.
func (s *Store) Prepare(ctx context.Context, l settlement.Lease, date time.Time) (int64, error) {
	shards, err := shardsOf(ctx, s.pool, date)
	if err != nil {
		return 0, err
	}
	endOfDay := time.Date(date.Year(), date.Month(), date.Day()+1, 0, 0, 0, 0, ledger.BusinessZone()).UnixNano() - 1
	var cut int64
	err = s.ledger.InShard(ctx, l.Shard, l.Epoch, func(ctx context.Context, w *ledgerpg.ShardTx) error {
		if err := w.CatchUp(ctx); err != nil {
			return err
		}
		if err := w.EnsureAccounts(ctx, systemAccountsOn(l.Shard, shards)); err != nil {
			return err
		}
		if err := w.Tx().QueryRow(ctx, `
			WITH ins AS (INSERT INTO settlement_cuts (date, shard, cut_ts) VALUES ($1, $2, $3)
				ON CONFLICT (date, shard) DO NOTHING RETURNING cut_ts)
			SELECT cut_ts FROM ins UNION ALL SELECT cut_ts FROM settlement_cuts WHERE date = $1 AND shard = $2`,
			date, l.Shard, min(w.LastTimestamp(), endOfDay)).Scan(&cut); err != nil {
			return fmt.Errorf("cut of shard %d: %w", l.Shard, err)
		}
		return s.fail("prepare/" + strconv.Itoa(l.Shard) + "/commit")
	})
	return cut, err
}

// SettleOrders implements settlement.Store.
func (s *Store) SettleOrders(ctx context.Context, l settlement.Lease, date time.Time, orders []settlement.DueOrder) (settlement.StepResult, error) {
	if r, done, err := stepResult(ctx, s.pool, date, l.Shard, "orders"); err != nil || done {
		return r, err
	}
	shards, err := shardsOf(ctx, s.pool, date)
	if err != nil {
		return settlement.StepResult{}, err
	}
	var posts, cash []settlement.DueOrder
	for _, o := range orders {
		if ledger.ShardOf(accounts.SharesAccount(o.Customer), shards) == l.Shard {
			posts = append(posts, o)
		}
		if o.Kind == accounts.KindStandardRedeem && ledger.ShardOf(accounts.CashAccount(o.Customer), shards) == l.Shard {
			cash = append(cash, o)
		}
	}
	var res settlement.StepResult
	err = s.ledger.InShard(ctx, l.Shard, l.Epoch, func(ctx context.Context, w *ledgerpg.ShardTx) error {
		res = settlement.StepResult{}
		// Read under the shard's row lock: nothing else writes the shard.
		entries, posted, err := postEntries(ctx, w, posts, &res)
		if err != nil {
			return err
		}
		if len(cash) > 0 {
			paid, err := cashEntries(ctx, w, cash, accounts.SystemAccountOn(accounts.FundOmnibusCash, l.Shard, shards))
			if err != nil {
				return err
			}
			entries = append(entries, paid...)
		}
		if err := w.WriteEntries(ctx, entries, ledgerpg.WriteOptions{Trace: s.tracer(l.Shard, len(entries))}); err != nil {
			return err
		}
		if err := w.ResolvePending(ctx, posted, ledger.PendingPosted); err != nil {
			return err
		}
		res.Entries = int64(len(entries))
		if err := markStep(ctx, w.Tx(), date, l.Shard, "orders", res); err != nil {
			return err
		}
		return s.fail("orders/" + strconv.Itoa(l.Shard) + "/commit")
	})
	return res, err
}

// postEntries returns the entries posting the pending transfers of the
// due orders posts (each must be open, of the order's amount) and the ids
// of those transfers, and counts the orders in res.
func postEntries(ctx context.Context, w *ledgerpg.ShardTx, posts []settlement.DueOrder, res *settlement.StepResult) (
	[]ledger.Transfer, []ledger.TransferID, error) {
	ids := make([]ledger.TransferID, len(posts))
	for i, o := range posts {
		ids[i] = o.PendingID()
	}
	found, err := w.Pending(ctx, ids)
	if err != nil {
		return nil, nil, err
	}
	pend := make(map[ledger.TransferID]ledger.PendingTransfer, len(found))
	for _, p := range found {
		pend[p.ID] = p
	}
	var entries []ledger.Transfer
	for i, o := range posts {
		id := ids[i]
		p, ok := pend[id]
		if !ok || p.State != ledger.PendingOpen || p.Amount != o.Amount {
			return nil, nil, fmt.Errorf("%s %s of customer %d (pending %s, found %v, state %s): %w",
				o.Kind, o.RequestID, o.Customer, id, ok, p.State, settlement.ErrPendingMissing)
		}
		kind, tid := settlement.KindConfirmSubscription, settlement.ConfirmTransferID(id)
		if o.Kind == accounts.KindStandardRedeem {
			kind = settlement.KindRedeemShares
		}
		entries = append(entries, ledger.Transfer{ID: tid, DebitAccountID: p.DebitAccountID, CreditAccountID: p.CreditAccountID,
			Amount: p.Amount, PendingAmount: p.Amount, Asset: p.Asset, Kind: kind, Flags: ledger.PostPending,
			PendingID: id, UserData: o.RequestID})
		res.Count++
		res.Amount += o.Amount
	}
	return entries, ids, nil
}

// cashEntries returns the entries paying the standard redemptions cash from
// the shard's omnibus cash account, once every redeeming customer's cash
// account is found on the shard.
func cashEntries(ctx context.Context, w *ledgerpg.ShardTx, cash []settlement.DueOrder, omnibus ledger.AccountID) (
	[]ledger.Transfer, error) {
	want := make([]ledger.AccountID, len(cash))
	for i, o := range cash {
		want[i] = accounts.CashAccount(o.Customer)
	}
	found, err := w.CountAccounts(ctx, want, ledger.AssetCNY)
	if err != nil {
		return nil, err
	}
	if distinct := len(slices.Compact(slices.Sorted(slices.Values(want)))); found != distinct {
		return nil, fmt.Errorf("%w: %d of %d redeeming customers' cash accounts found", ledger.ErrInvariantBroke, found, distinct)
	}
	entries := make([]ledger.Transfer, len(cash))
	for i, o := range cash {
		entries[i] = ledger.Transfer{ID: settlement.RedeemCashTransferID(o.PendingID()), DebitAccountID: omnibus,
			CreditAccountID: accounts.CashAccount(o.Customer), Amount: o.Amount, Asset: ledger.AssetCNY,
			Kind: settlement.KindRedeemCash, UserData: o.RequestID}
	}
	return entries, nil
}

// Holdings implements settlement.Store. Eligible shares are the posted
// balance at the cut: the current one less what entries after the cut
// changed, except the settlement's own confirmations and payouts (they
// belong to the day: it was closed at the cut) but including this date's
// income if a part of it is booked already (a resumed run); less shares
// held by standard redemptions made before the date and not paid yet.
// Available is what the account can give up, as before this date's income,
// so that a resumed run caps a losing day's deductions as the first did.
func (s *Store) Holdings(ctx context.Context, shard int, date time.Time, cut int64) ([]settlement.Holder, error) {
	dayStart := time.Date(date.Year(), date.Month(), date.Day(), 0, 0, 0, 0, ledger.BusinessZone())
	stride, offset := sharesLayout()
	rows, err := s.pool.Query(ctx, `
		WITH later AS (
			SELECT acct,
				coalesce(sum(delta) FILTER (WHERE kind NOT BETWEEN $5 AND $6), 0)::bigint AS other,
				coalesce(sum(delta) FILTER (WHERE kind IN ($7, $8) AND user_data = $9), 0)::bigint AS income
			FROM (
				SELECT credit_account_id AS acct, amount AS delta, kind, user_data FROM transfers
					WHERE shard = $1 AND ts > $2 AND business_date >= $3 AND flags & $12 = 0
				UNION ALL
				SELECT debit_account_id, -amount, kind, user_data FROM transfers
					WHERE shard = $1 AND ts > $2 AND business_date >= $3 AND flags & $12 = 0
			) x
			GROUP BY acct
		), held AS (
			SELECT customer_id * $13 + $14 AS acct, sum(amount)::bigint AS held FROM orders
			WHERE kind = $15 AND status = 'pending' AND created_at < $10 AND confirm_date > $4
			GROUP BY 1
		)
		SELECT a.id,
			a.credits_posted - a.debits_posted - coalesce(l.other, 0) - coalesce(l.income, 0) - coalesce(h.held, 0),
			a.credits_posted - a.debits_posted - a.debits_pending - coalesce(l.income, 0)
		FROM accounts a LEFT JOIN later l ON l.acct = a.id LEFT JOIN held h ON h.acct = a.id
		WHERE a.shard = $1 AND a.code = $11
		ORDER BY a.id`,
		shard, cut, ledger.BusinessDate(cut), date, int32(settlement.KindConfirmSubscription), int32(settlement.KindRoundingAbsorb),
		int32(settlement.KindIncome), int32(settlement.KindIncomeDeduct), date.Format(time.DateOnly), dayStart,
		int32(accounts.CodeCustomerShares), int32(ledger.Pending|ledger.VoidPending), stride, offset,
		string(accounts.KindStandardRedeem))
	if err != nil {
		return nil, fmt.Errorf("holders of shard %d: %w", shard, err)
	}
	var out []settlement.Holder
	var h settlement.Holder
	_, err = pgx.ForEachRow(rows, []any{&h.Account, &h.Eligible, &h.Available}, func() error {
		if h.Eligible < 0 {
			return fmt.Errorf("%w: account %d has %d eligible shares", ledger.ErrInvariantBroke, h.Account, h.Eligible)
		}
		out = append(out, h)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("holders of shard %d: %w", shard, err)
	}
	return out, nil
}

// BookIncome implements settlement.Store.
func (s *Store) BookIncome(ctx context.Context, l settlement.Lease, date time.Time, b settlement.IncomeBook,
	progress func(int64)) (settlement.StepResult, error) {
	if r, done, err := stepResult(ctx, s.pool, date, l.Shard, "income"); err != nil || done {
		if done && progress != nil {
			progress(r.Count)
		}
		return r, err
	}
	dist := accounts.SystemAccountOn(accounts.IncomeDistribution, l.Shard, b.Shards)
	ud := date.Format(time.DateOnly)
	entries := make([]ledger.Transfer, 0, len(b.Entries)+1)
	var res settlement.StepResult
	for _, e := range b.Entries {
		t := ledger.Transfer{ID: settlement.IncomeTransferID(date, e.Account), Asset: ledger.AssetFundShares, UserData: ud}
		if e.Amount > 0 {
			t.DebitAccountID, t.CreditAccountID, t.Amount, t.Kind = dist, e.Account, e.Amount, settlement.KindIncome
		} else {
			t.DebitAccountID, t.CreditAccountID, t.Amount, t.Kind = e.Account, dist, -e.Amount, settlement.KindIncomeDeduct
		}
		entries = append(entries, t)
		res.Amount += e.Amount
	}
	if b.Absorbed > 0 {
		entries = append(entries, ledger.Transfer{ID: settlement.RoundingTransferID(date, l.Shard),
			DebitAccountID: accounts.SystemAccountOn(accounts.Rounding, l.Shard, b.Shards), CreditAccountID: dist,
			Amount: b.Absorbed, Asset: ledger.AssetFundShares, Kind: settlement.KindRoundingAbsorb, UserData: ud})
	}
	res.Count, res.Entries = int64(len(b.Entries)), int64(len(entries))
	tr := func(string) {}
	err := s.ledger.InShard(ctx, l.Shard, l.Epoch, func(ctx context.Context, w *ledgerpg.ShardTx) error {
		// Progress counts accounts: half for the journal rows written, half
		// for the customer income rows (the two long COPYs of the step).
		var sent int64
		report := func(n int64) {
			if progress != nil && n > 0 {
				sent += n
				progress(n)
			}
		}
		half := func(n int64) { report(n / 2) }
		if err := w.WriteEntries(ctx, entries, ledgerpg.WriteOptions{Progress: half,
			Trace: s.tracer(l.Shard, len(entries))}); err != nil {
			return err
		}
		// The customers' daily income, for the holdings view (accounts'
		// customer_income, whose rows are written once, never changed),
		// written by the accounts package in this transaction.
		tr = s.tracer(l.Shard, len(b.Entries))
		stride, offset := sharesLayout()
		customerIncome := func(i int) (accounts.CustomerID, int64) {
			e := b.Entries[i]
			return accounts.CustomerID((int64(e.Account) - offset) / stride), e.Amount
		}
		if err := accountspg.RecordIncomeTx(ctx, w.Tx(), date, len(b.Entries), customerIncome, half); err != nil {
			return err
		}
		report(int64(len(b.Entries)) - sent) // what the halves left out
		tr("customer income")
		if err := markStep(ctx, w.Tx(), date, l.Shard, "income", res); err != nil {
			return err
		}
		return s.fail("income/" + strconv.Itoa(l.Shard) + "/commit")
	})
	if err == nil {
		tr("commit")
	}
	return res, err
}

// sharesLayout returns accounts.SharesAccount as the linear map it is,
// customer * stride + offset, so that SQL derives a customer's shares
// account (and Go the customer of one) from the accounts package's layout,
// not from literals.
func sharesLayout() (stride, offset int64) {
	offset = int64(accounts.SharesAccount(0))
	return int64(accounts.SharesAccount(1)) - offset, offset
}

// tracer returns a function that writes how long each stage of a booking
// took to s.Trace (nothing when it is nil).
func (s *Store) tracer(shard, n int) func(stage string) {
	if s.Trace == nil {
		return func(string) {}
	}
	last := time.Now()
	return func(stage string) {
		now := time.Now()
		fmt.Fprintf(s.Trace, "shard %d (%d entries): %s %s\n", shard, n, stage, now.Sub(last).Round(time.Millisecond))
		last = now
	}
}
