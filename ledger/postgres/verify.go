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
	if s.shards > 0 {
		if err := verifyPlacement(ctx, tx, shard, s.shards, rep); err != nil {
			return nil, err
		}
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
// two existing accounts of its own asset and its own shard, and counts the
// entries.
func verifyEntries(ctx context.Context, tx pgx.Tx, shard int, rep *ledger.VerifyReport) error {
	var entries, ids, orphans, mixed, foreign int64
	if err := tx.QueryRow(ctx, `
		SELECT (SELECT count(*) FROM transfer_ids WHERE shard = $1), count(*),
			count(*) FILTER (WHERE d.id IS NULL OR c.id IS NULL),
			count(*) FILTER (WHERE d.asset <> t.asset OR c.asset <> t.asset),
			count(*) FILTER (WHERE d.shard <> t.shard OR c.shard <> t.shard)
		FROM transfers t
			LEFT JOIN accounts d ON d.id = t.debit_account_id
			LEFT JOIN accounts c ON c.id = t.credit_account_id
		WHERE t.shard = $1`, shard).Scan(&ids, &entries, &orphans, &mixed, &foreign); err != nil {
		return fmt.Errorf("count entries: %w", err)
	}
	if foreign > 0 {
		rep.Problems = append(rep.Problems, fmt.Sprintf("%d entries name an account stored under another shard", foreign))
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

// verifyPlacement checks that every account stored under shard belongs
// there: ledger.ShardOf(id, shards) == shard. An account under another
// shard is served by the wrong writer (a process started with another
// shard count, a copy of a system account searched over another count) and
// its entries are invisible to the writer that owns it.
//
// The hash is computed in SQL (shardOfSQL) in one pass over the shard's
// accounts, which verifyBalances reads too: BenchmarkShardOfSQL measures
// the expression at about 0.2 µs of server CPU per account, so a fraction
// of a second per million accounts, small beside the journal scans of the
// other checks; nothing crosses the wire but a count and the first
// misplaced id.
func verifyPlacement(ctx context.Context, tx pgx.Tx, shard, shards int, rep *ledger.VerifyReport) error {
	var n int64
	var first *int64
	if err := tx.QueryRow(ctx, `SELECT count(*), min(id) FROM accounts WHERE shard = $1 AND `+shardOfSQL("id", "$2")+` <> $1`,
		shard, shards).Scan(&n, &first); err != nil {
		return fmt.Errorf("check account placement: %w", err)
	}
	if n > 0 {
		rep.Problems = append(rep.Problems, fmt.Sprintf("%d accounts stored under shard %d belong to another of the %d shards "+
			"(the first, %d, to shard %d)", n, shard, shards, *first, ledger.ShardOf(ledger.AccountID(*first), shards)))
	}
	return nil
}

// shardOfSQL is ledger.ShardOf(col, shards) as a SQL expression of a bigint
// column and an integer parameter: bits 32 to 63 of the home (bits 4 to 43
// of the id) times the 64-bit Fibonacci multiplier K, modulo shards. The
// product needs 104 bits; numeric would do it at about 1.1 µs a row, so it
// is split into bigint products that stay below 2^53 (about 0.2 µs): with
// the home h = a*2^20 + b and K = kh*2^32 + kl, bits 32-63 of h*K are
// (floor(h*kl / 2^32) + h*kh) mod 2^32, where
//
//	floor(h*kl / 2^32) = (a*kl >> 12) + ((((a*kl) & 4095) << 20) + b*kl) >> 32
//	h*kh mod 2^32      = ((((a*kh) & 4095) << 20) + b*kh) mod 2^32
//
// TestShardOfSQL holds it to ledger.ShardOf.
func shardOfSQL(col, shards string) string {
	const kh, kl = 0x9E3779B9, 0x7F4A7C15 // K = 0x9E3779B97F4A7C15, as in ledger.ShardOf
	a := fmt.Sprintf("((%s >> 24) & 1048575)", col)
	b := fmt.Sprintf("((%s >> 4) & 1048575)", col)
	lo := fmt.Sprintf("(((%[1]s * %[3]d) >> 12) + (((((%[1]s * %[3]d) & 4095) << 20) + %[2]s * %[3]d) >> 32))", a, b, kl)
	hi := fmt.Sprintf("((((%[1]s * %[3]d) & 4095) << 20) + %[2]s * %[3]d)", a, b, kh)
	return fmt.Sprintf("(((%s + %s) & 4294967295) %% %s)::int", lo, hi, shards)
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

// AccountNet is an account's posted balance, credits less debits.
type AccountNet struct {
	ID    ledger.AccountID
	Shard int // the shard it is stored under
	Asset ledger.Asset
	Code  uint16
	Net   int64
}

// NetsByCode returns every account of this database whose code is one of
// codes with its posted balance (credits less debits), from the journal, so
// that a running shard's unflushed entries count too: the per-shard copies
// of a product's system accounts, say, whose sum is the product's figure.
// It reads the journal once per side; meant for a few thousand accounts.
func (s *Store) NetsByCode(ctx context.Context, codes []uint16) ([]AccountNet, error) {
	cs := make([]int32, len(codes))
	for i, c := range codes {
		cs[i] = int32(c)
	}
	rows, err := s.pool.Query(ctx, `
		WITH acct AS (SELECT id, shard, asset, code FROM accounts WHERE code = ANY($1)),
		e AS (
			SELECT credit_account_id AS id, amount AS delta FROM transfers
				WHERE flags & $2 = 0 AND credit_account_id IN (SELECT id FROM acct)
			UNION ALL
			SELECT debit_account_id, -amount FROM transfers
				WHERE flags & $2 = 0 AND debit_account_id IN (SELECT id FROM acct)
		)
		SELECT a.id, a.shard, a.asset, a.code, coalesce(sum(e.delta), 0)::bigint
		FROM acct a LEFT JOIN e ON e.id = a.id
		GROUP BY a.id, a.shard, a.asset, a.code ORDER BY a.id`, cs, int32(ledger.Pending|ledger.VoidPending))
	if err != nil {
		return nil, fmt.Errorf("nets by code: %w", err)
	}
	var out []AccountNet
	var n AccountNet
	_, err = pgx.ForEachRow(rows, []any{&n.ID, &n.Shard, &n.Asset, &n.Code, &n.Net}, func() error {
		out = append(out, n)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("nets by code: %w", err)
	}
	return out, nil
}
