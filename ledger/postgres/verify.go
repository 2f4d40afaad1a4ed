package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fundplatform/fund/ledger"
)

// Verify implements ledger.Store: it recomputes every balance of the shard
// from the journal, inside one repeatable-read snapshot, and reports each
// account whose stored balances differ, plus any other broken invariant.
//
// Journal semantics (journalEffects): a plain or post entry moves amount
// into the posted sums; a pending entry adds amount to the pending sums; a
// post or void entry releases pending_amount from them.
func (s *Store) Verify(ctx context.Context, shard int) (*ledger.VerifyReport, error) {
	start := time.Now()
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(ctx)
	rep := &ledger.VerifyReport{Shard: shard, TotalDebits: map[ledger.Asset]int64{}, TotalCredits: map[ledger.Asset]int64{}}

	// Each stored balance is as of its balance_ts; compare it with the
	// journal up to the same point, inside one snapshot.
	var lastTS, checkpointTS int64
	if err := tx.QueryRow(ctx, `SELECT last_timestamp, checkpoint_ts FROM ledger_shards WHERE shard = $1`, shard).
		Scan(&lastTS, &checkpointTS); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return rep, tx.Commit(ctx)
		}
		return nil, fmt.Errorf("shard row: %w", err)
	}
	rep.CheckpointLag = time.Duration(lastTS - checkpointTS)
	if err := verifyBalances(ctx, tx, shard, rep); err != nil {
		return nil, err
	}
	if err := verifyEntries(ctx, tx, shard, rep); err != nil {
		return nil, err
	}
	// Stored balances are as of different times and pending states are
	// current until the shard has flushed everything (it does on a clean
	// stop): only then can totals and holds be compared.
	if checkpointTS == lastTS {
		if err := verifyTotals(ctx, tx, shard, rep); err != nil {
			return nil, err
		}
		if err := verifyPendingHolds(ctx, tx, shard, rep); err != nil {
			return nil, err
		}
	}
	rep.Took = time.Since(start)
	return rep, tx.Commit(ctx)
}

// verifyBalances recomputes each account's balances from the journal and
// reports the accounts whose stored ones differ (at most 10,000).
func verifyBalances(ctx context.Context, tx pgx.Tx, shard int, rep *ledger.VerifyReport) error {
	rows, err := tx.Query(ctx, `
		WITH e AS (`+journalEffectsSQL("shard = $1", "<=")+`
		), j AS (
			SELECT id,
				sum(pending) FILTER (WHERE debit) AS dpend, sum(posted) FILTER (WHERE debit) AS dpost,
				sum(pending) FILTER (WHERE NOT debit) AS cpend, sum(posted) FILTER (WHERE NOT debit) AS cpost
			FROM e GROUP BY id
		)
		SELECT coalesce(a.id, j.id), a.id IS NOT NULL,
			coalesce(a.debits_pending, 0), coalesce(a.debits_posted, 0),
			coalesce(a.credits_pending, 0), coalesce(a.credits_posted, 0),
			coalesce(j.dpend, 0)::bigint, coalesce(j.dpost, 0)::bigint,
			coalesce(j.cpend, 0)::bigint, coalesce(j.cpost, 0)::bigint
		FROM (SELECT * FROM accounts WHERE shard = $1) a FULL JOIN j ON j.id = a.id
		WHERE a.id IS NULL
			OR a.debits_pending <> coalesce(j.dpend, 0) OR a.debits_posted <> coalesce(j.dpost, 0)
			OR a.credits_pending <> coalesce(j.cpend, 0) OR a.credits_posted <> coalesce(j.cpost, 0)
		ORDER BY 1
		LIMIT 10000`, shard)
	if err != nil {
		return fmt.Errorf("recompute balances: %w", err)
	}
	var d ledger.BalanceDifference
	var stored bool
	_, err = pgx.ForEachRow(rows, []any{&d.AccountID, &stored,
		&d.Stored.DebitsPending, &d.Stored.DebitsPosted, &d.Stored.CreditsPending, &d.Stored.CreditsPosted,
		&d.Journal.DebitsPending, &d.Journal.DebitsPosted, &d.Journal.CreditsPending, &d.Journal.CreditsPosted},
		func() error {
			if !stored {
				return nil // counted by verifyEntries
			}
			d.Stored.ID, d.Journal.ID = d.AccountID, d.AccountID
			rep.Differences = append(rep.Differences, d)
			return nil
		})
	if err != nil {
		return fmt.Errorf("recompute balances: %w", err)
	}
	return nil
}

// verifyEntries checks that every entry has its id recorded once and names
// two existing accounts of its own asset, and counts the entries.
func verifyEntries(ctx context.Context, tx pgx.Tx, shard int, rep *ledger.VerifyReport) error {
	var entries, ids, orphans, mixed int64
	if err := tx.QueryRow(ctx, `
		SELECT (SELECT count(*) FROM transfer_ids WHERE shard = $1), count(*),
			count(*) FILTER (WHERE d.id IS NULL OR c.id IS NULL),
			count(*) FILTER (WHERE d.asset <> t.asset OR c.asset <> t.asset)
		FROM transfers t
			LEFT JOIN accounts d ON d.id = t.debit_account_id
			LEFT JOIN accounts c ON c.id = t.credit_account_id
		WHERE t.shard = $1`, shard).Scan(&ids, &entries, &orphans, &mixed); err != nil {
		return fmt.Errorf("count entries: %w", err)
	}
	rep.Transfers = entries
	if entries != ids {
		rep.Problems = append(rep.Problems, fmt.Sprintf("%d journal entries but %d recorded ids", entries, ids))
	}
	if orphans > 0 {
		rep.Problems = append(rep.Problems, fmt.Sprintf("%d entries name an account that does not exist", orphans))
	}
	if mixed > 0 {
		rep.Problems = append(rep.Problems, fmt.Sprintf("%d entries touch an account of another asset", mixed))
	}
	return nil
}

// verifyTotals checks the totals per asset: with every entry balanced, the
// books' debits and credits agree, posted and pending, and no account that
// must not go below zero available does. Sums are numeric (many accounts
// can hold more than an int64 in all) and compared in SQL; a total beyond
// int64 is reported as -1.
func verifyTotals(ctx context.Context, tx pgx.Tx, shard int, rep *ledger.VerifyReport) error {
	rows, err := tx.Query(ctx, `
		WITH t AS (
			SELECT asset, count(*) AS n, sum(debits_posted) AS dpost, sum(credits_posted) AS cpost,
				sum(debits_pending) AS dpend, sum(credits_pending) AS cpend,
				count(*) FILTER (WHERE flags & $2 <> 0
					AND debits_posted::numeric + debits_pending > credits_posted) AS negative
			FROM accounts WHERE shard = $1 GROUP BY asset
		)
		SELECT asset, n,
			CASE WHEN dpost <= 9223372036854775807 THEN dpost::bigint ELSE -1 END,
			CASE WHEN cpost <= 9223372036854775807 THEN cpost::bigint ELSE -1 END,
			dpost = cpost, dpend = cpend, negative
		FROM t ORDER BY asset`, shard, int32(ledger.DebitsMustNotExceedCredits))
	if err != nil {
		return fmt.Errorf("totals: %w", err)
	}
	var asset ledger.Asset
	var n, dpost, cpost, negative int64
	var postedEqual, pendingEqual bool
	_, err = pgx.ForEachRow(rows, []any{&asset, &n, &dpost, &cpost, &postedEqual, &pendingEqual, &negative}, func() error {
		rep.Accounts += int(n)
		rep.TotalDebits[asset], rep.TotalCredits[asset] = dpost, cpost
		if !postedEqual {
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s: posted debits %d != posted credits %d", asset, dpost, cpost))
		}
		if !pendingEqual {
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s: pending debits != pending credits", asset))
		}
		if negative > 0 {
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s: %d accounts below zero available", asset, negative))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("totals: %w", err)
	}
	return nil
}

// verifyPendingHolds checks that each account's pending debits are what
// its open pending transfers hold.
func verifyPendingHolds(ctx context.Context, tx pgx.Tx, shard int, rep *ledger.VerifyReport) error {
	var badPending int64
	if err := tx.QueryRow(ctx, `
		WITH p AS (SELECT debit_account_id AS id, sum(amount) AS held FROM pending_transfers
			WHERE shard = $1 AND state = 1 GROUP BY 1)
		SELECT count(*) FROM accounts a LEFT JOIN p ON p.id = a.id
		WHERE a.shard = $1 AND a.debits_pending <> coalesce(p.held, 0)`, shard).Scan(&badPending); err != nil {
		return fmt.Errorf("check pending: %w", err)
	}
	if badPending > 0 {
		rep.Problems = append(rep.Problems, fmt.Sprintf("%d accounts whose pending debits differ from their open pending transfers", badPending))
	}
	return nil
}

// NetByCode sums, per asset, the posted balances (credits less debits) of
// every account with the given code, on all shards of this database, from
// the journal (so a running shard's unflushed balances count too). For the
// in-transit accounts of cross-shard sagas it is zero once no saga is in
// flight.
func (s *Store) NetByCode(ctx context.Context, code uint16) (map[ledger.Asset]int64, error) {
	rows, err := s.pool.Query(ctx, `
		WITH acct AS (SELECT id, asset FROM accounts WHERE code = $1)
		SELECT a.asset, coalesce(sum(CASE WHEN t.credit_account_id = a.id THEN t.amount ELSE -t.amount END), 0)::bigint
		FROM acct a JOIN transfers t ON (t.credit_account_id = a.id OR t.debit_account_id = a.id) AND t.flags & $2 = 0
		GROUP BY a.asset`, int32(code), int32(ledger.Pending|ledger.VoidPending))
	if err != nil {
		return nil, fmt.Errorf("net by code: %w", err)
	}
	out := map[ledger.Asset]int64{}
	var asset ledger.Asset
	var net int64
	_, err = pgx.ForEachRow(rows, []any{&asset, &net}, func() error {
		out[asset] = net
		return nil
	})
	return out, err
}
