package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/settlement/recon"
)

// digestOf is the digest of an entry, over every field an event carries,
// for a table alias prefix ("" or "t."). It must stay the expression of the
// generated column recon_events.digest (migrations/00001_recon.sql): a clean
// comparison proves they agree.
func digestOf(p string) string {
	return strings.ReplaceAll(`hashtextextended(
		P.id::text || '|' || P.shard::text || '|' || P.ts::text || '|' || P.debit_account_id::text || '|' ||
		P.credit_account_id::text || '|' || P.amount::text || '|' || P.pending_amount::text || '|' ||
		P.asset::text || '|' || P.kind::text || '|' || P.flags::text || '|' || coalesce(P.pending_id::text, '') || '|' ||
		P.user_data, 0)`, "P.", p)
}

// Compare implements recon.Store.
//
// Inside one repeatable-read snapshot of the database (the journal and
// reconciliation's tables together), for the business day up to the
// cutoff:
//  1. per shard and asset, the journal's entries, sum of amounts and sum of
//     digests against the stream's (its day totals once the day is over,
//     else its recorded events up to the cutoff); with opts.From, first only
//     the entries after From (see recon.CompareOptions);
//  2. where they differ (or everywhere with Deep), entry by entry: missing,
//     unexpected, duplicated, mismatching;
//  3. there too, account by account: entries and posted sums;
//  4. every open saga up to the cutoff: closed by exactly one of leg 2 and
//     refund, or a break.
//
// The breaks found are stored (found again: refreshed; earlier ones of the
// same day not found again: resolved) in a second transaction.
func (s *Store) Compare(ctx context.Context, day time.Time, opts recon.CompareOptions) (*recon.Report, error) {
	start := time.Now()
	day = time.Date(day.Year(), day.Month(), day.Day(), 0, 0, 0, 0, time.UTC)
	dayStart := recon.DayStart(day)
	dayEnd := dayStart.AddDate(0, 0, 1)
	cutoff := opts.Cutoff
	if cutoff.IsZero() || !cutoff.Before(dayEnd) {
		cutoff = dayEnd.Add(-time.Nanosecond)
	}
	if cutoff.Before(dayStart) {
		return nil, fmt.Errorf("cutoff %s is before business day %s", cutoff, day.Format(time.DateOnly))
	}
	// A whole day is read from the stream's totals; part of one from its
	// events.
	whole := !cutoff.Before(dayEnd.Add(-time.Nanosecond))
	breaksMax := opts.BreaksMax
	if breaksMax <= 0 {
		breaksMax = breaksMaxDefault
	}
	c := &comparison{
		date: pgtype.Date{Time: day, Valid: true}, dateText: day.Format(time.DateOnly),
		from: dayStart.UnixNano() - 1, cutoff: cutoff.UnixNano(), whole: whole, limit: breaksMax,
	}
	rep := &recon.Report{BusinessDate: c.dateText, Cutoff: cutoff, Shards: []recon.ShardDay{}, Breaks: []recon.Break{},
		InTransit: map[string]recon.Amount{}}

	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx)
	if !opts.From.IsZero() && opts.From.After(dayStart) && opts.From.Before(cutoff) && !opts.Deep {
		// The window after a clean comparison: its totals alone. Equal, and
		// there is nothing to store or resolve; different, and the whole
		// day so far is compared below.
		c.from, c.whole = opts.From.UnixNano(), false
		differ, err := c.shardDays(ctx, tx, rep, false)
		if err != nil {
			return nil, journalErr(err)
		}
		if len(differ) == 0 {
			from := opts.From
			rep.From, rep.Took = &from, time.Since(start)
			return rep, tx.Commit(ctx)
		}
		c.from, c.whole, rep.Shards = dayStart.UnixNano()-1, whole, rep.Shards[:0]
	}
	differ, err := c.shardDays(ctx, tx, rep, opts.Deep)
	if err != nil {
		return nil, journalErr(err)
	}
	for _, shard := range differ {
		n := len(rep.Breaks)
		if err := c.entries(ctx, tx, shard, rep); err != nil {
			return nil, err
		}
		explained := len(rep.Breaks) > n
		if err := c.accounts(ctx, tx, shard, rep); err != nil {
			return nil, err
		}
		if !explained && !opts.Deep {
			sh := shard
			rep.Breaks = append(rep.Breaks, recon.Break{
				Key: fmt.Sprintf("%s/%s/%d", recon.ShardDayMismatch, c.dateText, shard), Kind: recon.ShardDayMismatch,
				Source: recon.SourceCompare, Shard: &sh, BusinessDate: c.dateText,
				Detail: "the shard's totals for the day differ from the journal's and no entry explains it",
			})
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, err
	}

	// Store what was found.
	wtx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	defer wtx.Rollback(ctx)
	if err := upsertBreaks(ctx, wtx, rep.Breaks); err != nil {
		return nil, err
	}
	keys := make([]string, len(rep.Breaks))
	for i := range rep.Breaks {
		keys[i] = rep.Breaks[i].Key
	}
	tag, err := wtx.Exec(ctx, `
		UPDATE recon_breaks SET resolved_at = now()
		WHERE resolved_at IS NULL AND source = $1 AND business_date = $2 AND kind <> $3 AND key <> ALL($4)`,
		recon.SourceCompare, c.date, string(recon.InTransitNotZero), keys)
	if err != nil {
		return nil, fmt.Errorf("resolve breaks: %w", err)
	}
	rep.Resolved = tag.RowsAffected()
	if err := wtx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("commit breaks: %w", err)
	}
	rep.Took = time.Since(start)
	return rep, nil
}

func journalErr(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42P01" { // undefined_table
		return fmt.Errorf("%w: %v", errNoJournal, err)
	}
	return err
}

type comparison struct {
	date     pgtype.Date
	dateText string
	from     int64 // entries stamped after it and up to cutoff are compared
	cutoff   int64
	whole    bool
	limit    int
}

// streamDaySQL is the stream's side of step 1.
func (c *comparison) streamDaySQL() string {
	if c.whole {
		return `SELECT shard, asset, entries AS n, amount, digest FROM recon_day_totals WHERE business_date = $1`
	}
	return `SELECT shard, asset, count(*) AS n, sum(amount) AS amount, sum(digest) AS digest
		FROM recon_events WHERE business_date = $1 AND ts <= $2 AND ts > $3 GROUP BY shard, asset`
}

// shardDays is step 1; it returns the shards to look at closer.
func (c *comparison) shardDays(ctx context.Context, tx pgx.Tx, rep *recon.Report, deep bool) ([]int, error) {
	rs, err := tx.Query(ctx, `
		WITH j AS (
			SELECT shard, asset, count(*) AS n, sum(amount) AS amount, sum(`+digestOf("")+`) AS digest
			FROM transfers WHERE business_date = $1 AND ts <= $2 AND ts > $3 GROUP BY shard, asset
		), r AS (`+c.streamDaySQL()+`)
		SELECT coalesce(j.shard, r.shard), coalesce(j.asset, r.asset), coalesce(j.n, 0), coalesce(r.n, 0),
			round(coalesce(j.amount, 0) / 100, 2)::text, round(coalesce(r.amount, 0) / 100, 2)::text,
			coalesce(j.n = r.n AND j.amount = r.amount AND j.digest = r.digest, false)
		FROM j FULL JOIN r ON j.shard = r.shard AND j.asset = r.asset
		ORDER BY 1, 2`, c.date, c.cutoff, c.from)
	if err != nil {
		return nil, fmt.Errorf("day totals: %w", err)
	}
	var (
		sd    recon.ShardDay
		asset int16
	)
	differ := map[int]bool{}
	_, err = pgx.ForEachRow(rs, []any{&sd.Shard, &asset, &sd.JournalEntries, &sd.StreamEntries, &sd.JournalAmount,
		&sd.StreamAmount, &sd.Equal}, func() error {
		sd.Asset = ledger.Asset(asset).String()
		rep.Shards = append(rep.Shards, sd)
		if !sd.Equal || deep {
			differ[sd.Shard] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("day totals: %w", err)
	}
	out := make([]int, 0, len(differ))
	for sh := range differ {
		out = append(out, sh)
	}
	sort.Ints(out)
	return out, nil
}

// side is one entry as the journal or the stream holds it.
type side struct {
	ID            string  `json:"id"`
	TS            int64   `json:"ts"`
	Debit         int64   `json:"debit_account_id"`
	Credit        int64   `json:"credit_account_id"`
	Amount        int64   `json:"amount"`
	PendingAmount int64   `json:"pending_amount"`
	Asset         int16   `json:"asset"`
	Kind          int32   `json:"kind"`
	Flags         int32   `json:"flags"`
	PendingID     *string `json:"pending_id"`
	UserData      string  `json:"user_data"`
	Copies        int     `json:"copies"`
}

// entries is step 2 for one shard.
func (c *comparison) entries(ctx context.Context, tx pgx.Tx, shard int, rep *recon.Report) error {
	const cols = `id, ts, debit_account_id, credit_account_id, amount, pending_amount, asset, kind, flags, pending_id, user_data`
	rs, err := tx.Query(ctx, `
		WITH j AS (
			SELECT `+cols+`, `+digestOf("")+` AS digest, count(*) OVER (PARTITION BY id) AS copies
			FROM transfers WHERE business_date = $1 AND shard = $2 AND ts <= $3
		), r AS (
			SELECT `+cols+`, digest FROM recon_events WHERE business_date = $1 AND shard = $2 AND ts <= $3
		)
		SELECT to_jsonb(j) - 'digest', to_jsonb(r) - 'digest'
		FROM j FULL JOIN r ON j.id = r.id
		WHERE j.id IS NULL OR r.id IS NULL OR j.copies > 1 OR j.digest <> r.digest
		ORDER BY coalesce(j.id, r.id), j.ts
		LIMIT $4`, c.date, shard, c.cutoff, c.limit)
	if err != nil {
		return fmt.Errorf("entries of shard %d: %w", shard, err)
	}
	var jb, rb []byte
	seen := map[string]bool{}
	_, err = pgx.ForEachRow(rs, []any{&jb, &rb}, func() error {
		var j, r *side
		if jb != nil {
			j = &side{}
			if err := json.Unmarshal(jb, j); err != nil {
				return err
			}
		}
		if rb != nil {
			r = &side{}
			if err := json.Unmarshal(rb, r); err != nil {
				return err
			}
		}
		if b, ok := c.entryBreak(shard, j, r, seen); ok {
			rep.Breaks = append(rep.Breaks, b)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("entries of shard %d: %w", shard, err)
	}
	return nil
}

func (c *comparison) entryBreak(shard int, j, r *side, seen map[string]bool) (recon.Break, bool) {
	one := j
	if one == nil {
		one = r
	}
	id, err := ledger.ParseTransferID(one.ID)
	if err != nil {
		id = ledger.TransferID{}
	}
	sh := shard
	b := recon.Break{Source: recon.SourceCompare, Shard: &sh, BusinessDate: c.dateText, TransferID: &id,
		Asset: ledger.Asset(one.Asset).String()}
	set := func(kind recon.BreakKind, detail string) (recon.Break, bool) {
		b.Kind, b.Detail = kind, detail
		b.Key = fmt.Sprintf("%s/%s", kind, one.ID)
		if kind == recon.Duplicate {
			b.Key = fmt.Sprintf("%s/journal/%s", kind, one.ID)
		}
		if seen[b.Key] {
			return b, false
		}
		seen[b.Key] = true
		return b, true
	}
	switch {
	case j == nil:
		b.Other = recon.Amount(r.Amount).Ptr()
		return set(recon.UnexpectedEvent, "seen on the event stream, not in the journal: "+r.String())
	case j.Copies > 1:
		b.Journal = recon.Amount(j.Amount).Ptr()
		return set(recon.Duplicate, fmt.Sprintf("the journal holds this transfer id %d times: %s", j.Copies, j))
	case r == nil:
		b.Journal = recon.Amount(j.Amount).Ptr()
		return set(recon.MissingEvent, "in the journal, never seen on the event stream: "+j.String())
	}
	b.Journal, b.Other = recon.Amount(j.Amount).Ptr(), recon.Amount(r.Amount).Ptr()
	diffs := j.diff(r)
	if j.Amount != r.Amount || j.PendingAmount != r.PendingAmount {
		return set(recon.AmountMismatch, "journal and event differ: "+diffs)
	}
	return set(recon.ContentMismatch, "journal and event differ: "+diffs)
}

func (s *side) String() string {
	return fmt.Sprintf("%d->%d %s %s kind %d flags %d", s.Debit, s.Credit, accounts.FormatAmount(s.Amount),
		ledger.Asset(s.Asset), s.Kind, s.Flags)
}

func (s *side) diff(o *side) string {
	var d []string
	add := func(name string, a, b any) {
		if a != b {
			d = append(d, fmt.Sprintf("%s journal %v, stream %v", name, a, b))
		}
	}
	add("amount", s.Amount, o.Amount)
	add("pending_amount", s.PendingAmount, o.PendingAmount)
	add("debit_account_id", s.Debit, o.Debit)
	add("credit_account_id", s.Credit, o.Credit)
	add("asset", s.Asset, o.Asset)
	add("kind", s.Kind, o.Kind)
	add("flags", s.Flags, o.Flags)
	add("ts", s.TS, o.TS)
	add("user_data", s.UserData, o.UserData)
	sp, op := "", ""
	if s.PendingID != nil {
		sp = *s.PendingID
	}
	if o.PendingID != nil {
		op = *o.PendingID
	}
	add("pending_id", sp, op)
	if len(d) == 0 {
		return "digest only"
	}
	return strings.Join(d, "; ")
}

// accountsSQL is an account side of step 3 over a source of entries.
const accountsSQL = `
	SELECT account_id, asset, sum(d)::bigint AS debits, sum(dp) AS debits_posted, sum(c)::bigint AS credits,
		sum(cp) AS credits_posted
	FROM (
		SELECT debit_account_id AS account_id, asset, 1 AS d, CASE WHEN flags & 10 = 0 THEN amount ELSE 0 END AS dp,
			0 AS c, 0::bigint AS cp FROM SRC
		UNION ALL
		SELECT credit_account_id, asset, 0, 0, 1, CASE WHEN flags & 10 = 0 THEN amount ELSE 0 END FROM SRC
	) x GROUP BY account_id, asset`

// accounts is step 3 for one shard.
func (c *comparison) accounts(ctx context.Context, tx pgx.Tx, shard int, rep *recon.Report) error {
	journal := strings.ReplaceAll(accountsSQL, "SRC",
		"(SELECT * FROM transfers WHERE business_date = $1 AND shard = $2 AND ts <= $3) e")
	stream := `SELECT account_id, asset, debits, debits_posted, credits, credits_posted
		FROM recon_account_totals WHERE business_date = $1 AND shard = $2`
	if !c.whole {
		stream = strings.ReplaceAll(accountsSQL, "SRC",
			"(SELECT * FROM recon_events WHERE business_date = $1 AND shard = $2 AND ts <= $3) e")
	}
	rs, err := tx.Query(ctx, `
		WITH j AS (`+journal+`), r AS (`+stream+`)
		SELECT coalesce(j.account_id, r.account_id), coalesce(j.asset, r.asset),
			coalesce(j.debits, 0), coalesce(j.debits_posted, 0)::bigint, coalesce(j.credits, 0), coalesce(j.credits_posted, 0)::bigint,
			coalesce(r.debits, 0), coalesce(r.debits_posted, 0)::bigint, coalesce(r.credits, 0), coalesce(r.credits_posted, 0)::bigint
		FROM j FULL JOIN r ON j.account_id = r.account_id AND j.asset = r.asset
		WHERE (j.debits, j.debits_posted, j.credits, j.credits_posted)
			IS DISTINCT FROM (r.debits, r.debits_posted, r.credits, r.credits_posted)
		ORDER BY 1, 2
		LIMIT $4`, c.date, shard, c.cutoff, c.limit)
	if err != nil {
		return fmt.Errorf("accounts of shard %d: %w", shard, err)
	}
	var (
		acct             int64
		asset            int16
		jd, jdp, jc, jcp int64
		rd, rdp, rc, rcp int64
	)
	_, err = pgx.ForEachRow(rs, []any{&acct, &asset, &jd, &jdp, &jc, &jcp, &rd, &rdp, &rc, &rcp}, func() error {
		sh := shard
		id := ledger.AccountID(acct)
		jnet, rnet := jcp-jdp, rcp-rdp
		rep.Breaks = append(rep.Breaks, recon.Break{
			Key:  fmt.Sprintf("%s/%s/%d/%d", recon.AccountMismatch, c.dateText, acct, asset),
			Kind: recon.AccountMismatch, Source: recon.SourceCompare, Shard: &sh, BusinessDate: c.dateText,
			AccountID: &id, Asset: ledger.Asset(asset).String(), Journal: recon.Amount(jnet).Ptr(), Other: recon.Amount(rnet).Ptr(),
			Detail: fmt.Sprintf("journal: %d debits posting %s, %d credits posting %s; stream: %d debits posting %s, %d credits posting %s",
				jd, accounts.FormatAmount(jdp), jc, accounts.FormatAmount(jcp), rd, accounts.FormatAmount(rdp), rc, accounts.FormatAmount(rcp)),
		})
		return nil
	})
	if err != nil {
		return fmt.Errorf("accounts of shard %d: %w", shard, err)
	}
	return nil
}

// OpenSagas implements recon.Store.
func (s *Store) OpenSagas(ctx context.Context, cutoff time.Time, limit int) ([]recon.Saga, error) {
	rs, err := s.pool.Query(ctx, `
		SELECT id, shard, ts, asset, amount, in_id, back_id FROM recon_sagas
		WHERE NOT closed AND ts <= $1 ORDER BY ts LIMIT $2`, cutoff.UnixNano(), limit)
	if err != nil {
		return nil, fmt.Errorf("open sagas: %w", err)
	}
	var (
		out   []recon.Saga
		sg    recon.Saga
		ts    int64
		asset int16
	)
	_, err = pgx.ForEachRow(rs, []any{&sg.Leg1, &sg.Shard, &ts, &asset, &sg.Amount, &sg.In, &sg.Back}, func() error {
		sg.Timestamp, sg.Asset = time.Unix(0, ts).UTC(), ledger.Asset(asset)
		out = append(out, sg)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("open sagas: %w", err)
	}
	return out, nil
}

// Seen implements recon.Store.
func (s *Store) Seen(ctx context.Context, ids []ledger.TransferID) (map[ledger.TransferID]bool, error) {
	arr := make([]pgtype.UUID, len(ids))
	for i, id := range ids {
		arr[i] = pgtype.UUID{Bytes: id, Valid: true}
	}
	rs, err := s.pool.Query(ctx, `SELECT id FROM recon_events WHERE id = ANY($1)`, arr)
	if err != nil {
		return nil, fmt.Errorf("seen ids: %w", err)
	}
	out := map[ledger.TransferID]bool{}
	var id ledger.TransferID
	_, err = pgx.ForEachRow(rs, []any{&id}, func() error { out[id] = true; return nil })
	if err != nil {
		return nil, fmt.Errorf("seen ids: %w", err)
	}
	return out, nil
}

// SettleSagas implements recon.Store.
func (s *Store) SettleSagas(ctx context.Context, closed []ledger.TransferID, breaks []recon.Break) (int64, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx)
	if err := upsertBreaks(ctx, tx, breaks); err != nil {
		return 0, err
	}
	var resolved int64
	if len(closed) > 0 {
		ids := make([]pgtype.UUID, len(closed))
		keys := make([]string, len(closed))
		for i, id := range closed {
			ids[i], keys[i] = pgtype.UUID{Bytes: id, Valid: true}, recon.SagaBreakKey(id)
		}
		if _, err := tx.Exec(ctx, `UPDATE recon_sagas SET closed = true WHERE id = ANY($1)`, ids); err != nil {
			return 0, fmt.Errorf("close sagas: %w", err)
		}
		tag, err := tx.Exec(ctx, `UPDATE recon_breaks SET resolved_at = now() WHERE resolved_at IS NULL AND key = ANY($1)`, keys)
		if err != nil {
			return 0, fmt.Errorf("resolve saga breaks: %w", err)
		}
		resolved = tag.RowsAffected()
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("commit sagas: %w", err)
	}
	return resolved, nil
}
