package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/xshard"
	"github.com/fundplatform/fund/settlement/recon"
)

// movementsMax bounds the movements one statement is matched against.
const movementsMax = 2_000_000

// BankMovements implements recon.Store: the posted journal entries of
// account on the business day (plain and post-pending; holds and voids move
// no money), oldest first. Leg 1 of a cross-shard top-up that was refunded
// (the payee's shard refused it) and its refund cancel out and are left
// out: no money moved for the bank.
func (s *Store) BankMovements(ctx context.Context, account ledger.AccountID, day time.Time) ([]recon.Movement, error) {
	rs, err := s.pool.Query(ctx, `
		SELECT id, shard, ts, debit_account_id, amount, kind, user_data
		FROM transfers
		WHERE business_date = $1 AND (debit_account_id = $2 OR credit_account_id = $2) AND flags & 10 = 0
		ORDER BY ts, id
		LIMIT $3`, pgtype.Date{Time: day, Valid: true}, int64(account), movementsMax+1)
	if err != nil {
		return nil, journalErr(fmt.Errorf("bank movements: %w", err))
	}
	var (
		out      []recon.Movement
		id       ledger.TransferID
		shard    int
		ts       int64
		debit    int64
		amount   int64
		kind     int32
		userData string
	)
	_, err = pgx.ForEachRow(rs, []any{&id, &shard, &ts, &debit, &amount, &kind, &userData}, func() error {
		m := recon.Movement{TransferID: id, Shard: shard, Timestamp: time.Unix(0, ts).UTC(), Direction: recon.Out,
			Amount: amount, AmountText: accounts.FormatAmount(amount), Kind: uint16(kind),
			Reference: recon.ReferenceOf(uint16(kind), userData)}
		if ledger.AccountID(debit) == account {
			m.Direction = recon.In
		}
		out = append(out, m)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bank movements: %w", err)
	}
	if len(out) > movementsMax {
		return nil, fmt.Errorf("account %d has more than %d movements on %s", account, movementsMax, day.Format(time.DateOnly))
	}
	return dropRefunded(out), nil
}

// dropRefunded removes each refunded saga leg 1 with its refund.
func dropRefunded(ms []recon.Movement) []recon.Movement {
	refunds := map[ledger.TransferID]int{}
	for i, m := range ms {
		if m.Kind == xshard.KindBack {
			refunds[m.TransferID] = i
		}
	}
	if len(refunds) == 0 {
		return ms
	}
	drop := map[int]bool{}
	for i, m := range ms {
		if m.Kind != xshard.KindOut {
			continue
		}
		_, back := recon.SagaClosingIDs(m.TransferID)
		if j, ok := refunds[back]; ok {
			drop[i], drop[j] = true, true
		}
	}
	out := ms[:0]
	for i, m := range ms {
		if !drop[i] {
			out = append(out, m)
		}
	}
	return out
}

// SaveStatement implements recon.Store.
func (s *Store) SaveStatement(ctx context.Context, imp recon.StatementImport) error {
	res := imp.Result
	date := imp.Day.Format(time.DateOnly)
	prefix := fmt.Sprintf("statement/%s/%d/", date, imp.Account)
	var breaks []recon.Break
	occurrence := map[string]int{}
	acct := imp.Account
	for _, u := range res.UnmatchedStatement {
		base := fmt.Sprintf("%sline/%s/%s/%d", prefix, u.Direction, u.Reference, u.Amount)
		occurrence[base]++
		amt := u.Amount
		detail := fmt.Sprintf("statement line %d: %s %s reference %q has no movement of the bank settlement account",
			u.Line, u.Direction, u.AmountText, u.Reference)
		if u.Hint != "" {
			detail += " (" + u.Hint + ")"
		}
		breaks = append(breaks, recon.Break{
			Key: fmt.Sprintf("%s/%d", base, occurrence[base]), Kind: recon.UnmatchedStatementLine, Source: recon.SourceStatement,
			BusinessDate: date, AccountID: &acct, Asset: ledger.AssetCNY.String(), Reference: u.Reference, Other: recon.Amount(amt).Ptr(), Detail: detail,
		})
	}
	for _, u := range res.UnmatchedLedger {
		amt, id, shard := u.Amount, u.TransferID, u.Shard
		detail := fmt.Sprintf("journal movement %s %s reference %q (transfer %s) is not on the statement",
			u.Direction, u.AmountText, u.Reference, u.TransferID)
		if u.Hint != "" {
			detail += " (" + u.Hint + ")"
		}
		breaks = append(breaks, recon.Break{
			Key: prefix + "ledger/" + u.TransferID.String(), Kind: recon.UnmatchedLedgerMovement, Source: recon.SourceStatement,
			Shard: &shard, BusinessDate: date, TransferID: &id, AccountID: &acct, Asset: ledger.AssetCNY.String(),
			Reference: u.Reference, Journal: recon.Amount(amt).Ptr(), Detail: detail,
		})
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `
		INSERT INTO recon_statements (business_date, account_id, file_name, file_sha256, lines, matched,
			unmatched_statement, unmatched_ledger)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		pgtype.Date{Time: imp.Day, Valid: true}, int64(imp.Account), imp.FileName, imp.FileSHA256, imp.Lines,
		len(res.Matched), len(res.UnmatchedStatement), len(res.UnmatchedLedger)); err != nil {
		return fmt.Errorf("record statement: %w", err)
	}
	if err := upsertBreaks(ctx, tx, breaks); err != nil {
		return err
	}
	keys := make([]string, len(breaks))
	for i := range breaks {
		keys[i] = breaks[i].Key
	}
	if _, err := tx.Exec(ctx, `
		UPDATE recon_breaks SET resolved_at = now()
		WHERE resolved_at IS NULL AND source = $1 AND business_date = $2 AND starts_with(key, $3) AND key <> ALL($4)`,
		recon.SourceStatement, pgtype.Date{Time: imp.Day, Valid: true}, prefix, keys); err != nil {
		return fmt.Errorf("resolve statement breaks: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit statement: %w", err)
	}
	return nil
}
