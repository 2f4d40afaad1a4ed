package postgres

import (
	"context"
	"embed"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fundplatform/fund/internal/pgmigrate"
	"github.com/fundplatform/fund/internal/pgwarn"
	"github.com/fundplatform/fund/ledger"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is the Postgres implementation of ledger.Store. It is safe for
// concurrent use; the sequencer looks up ids while a commit is in flight.
type Store struct {
	pool *pgxpool.Pool

	noOutbox bool
	commits  *group[*ledger.Batch, struct{}]
	lookups  *group[lookupCall, *ledger.Known]

	mu         sync.Mutex
	partitions map[time.Time]bool // journal partitions known to exist

	now    func() time.Time // Config.Now
	shards int              // Config.Shards
	attach AttachmentWriter // Config.Attachments

	active activeShards
}

// partitionsAhead is how many daily journal partitions exist beyond the
// newest date written.
const partitionsAhead = 7

// Config for Open.
type Config struct {
	DSN      string
	ConnsMax int32 // pool size; 0 = 8
	// PartitionsAhead is how many daily journal partitions to keep created
	// beyond today.
	PartitionsAhead int
	// NoOutbox stops commits from writing the transactional outbox: for
	// benchmarks of the bare ledger only; nothing is then published.
	NoOutbox bool
	// CommitsInFlightMax bounds the batch transactions (and, apart, the id
	// lookups) running at once; those of other shards that arrive meanwhile
	// are merged into the next one (group commit). 0 = 1: with customers on
	// every shard each shard's batches are small, and what Postgres pays
	// per transaction (statements, the fence, a WAL flush) is what grows
	// with the shards; one in flight merges every shard that is ready into
	// it. Gateway bench, 8 shards on 2 databases, six interleaved runs:
	// 144-152 µs of Postgres CPU per order with 1, 171-176 with 2, and
	// 25-40 % more orders a second. One shard alone is unaffected (its
	// sequencer has one commit in flight anyway).
	CommitsInFlightMax int
	// Linger is how long a batch transaction (or id lookup) about to start
	// waits for the other shards of this database that served calls lately
	// (activeFor) to bring theirs, so that they share its round trip; it
	// goes at once when they are all queued, and a database serving one
	// shard never waits. 0 = lingerDefault, negative = never wait.
	//
	// Why: with customers on every shard, one order batch of the accounts
	// store becomes a small batch on each shard of the database, and the
	// shards' sequencers reach the store a little apart; without the wait
	// the first went alone and the others formed a second transaction.
	// Gateway bench, 8 shards on 2 databases, interleaved: 1 ms took the
	// commits from 3,870-4,131 a run to 3,299-3,549 and the lookups from
	// 6,073-6,578 to 3,488-3,779; Postgres CPU per order did not move
	// measurably (what grows is the cost of fewer orders in flight per
	// database: docs/operations.md 2.6).
	Linger time.Duration
	// OnNotice receives what the server reports beside results (NOTICE,
	// WARNING). nil = warnings are logged with slog (deploy/pgwarn): a
	// warning from a commit means a statement did not do what the code
	// meant (SET LOCAL outside a transaction block was one).
	OnNotice func(*pgconn.Notice)
	// Now is the business clock (internal/clock): today's journal
	// partitions and the timestamps of entries written through InShard
	// come from it, as the sequencer's come from SequencerConfig.Now, so
	// that the journal's times are the business time's (a sandbox's test
	// clock moves both); nil = time.Now.
	Now func() time.Time
	// Shards is the ledger's number of logical shards, which Verify needs
	// to check that every account is stored under its own shard
	// (ledger.ShardOf); 0 = not known here, and that check is left out.
	// OpenDatabases sets it from the shard map.
	Shards int
	// Attachments writes the attachments of the requests of every batch
	// (ledger.Attached: an order's row, say) in the batch's transaction;
	// nil = this store writes none, and the requests' callers are told so
	// and record what they meant to themselves.
	Attachments AttachmentWriter
}

// Open connects, applies the migrations and makes sure the journal has
// partitions for today and the days ahead.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	pcfg, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("parse dsn: %w", err)
	}
	if cfg.ConnsMax == 0 {
		cfg.ConnsMax = 8
	}
	if cfg.PartitionsAhead == 0 {
		cfg.PartitionsAhead = partitionsAhead
	}
	if cfg.CommitsInFlightMax == 0 {
		cfg.CommitsInFlightMax = 1
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Linger == 0 {
		cfg.Linger = lingerDefault
	}
	pcfg.MaxConns = cfg.ConnsMax
	pcfg.ConnConfig.OnNotice = pgwarn.Handler(cfg.OnNotice, "ledger")
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	s := &Store{pool: pool, partitions: map[time.Time]bool{}, noOutbox: cfg.NoOutbox, now: cfg.Now,
		shards: cfg.Shards, attach: cfg.Attachments,
		commits: newGroup[*ledger.Batch, struct{}](cfg.CommitsInFlightMax, commitBatchesMax, commitTransfersMax,
			func(b *ledger.Batch) int { return len(b.Transfers) }),
		lookups: newGroup[lookupCall, *ledger.Known](cfg.CommitsInFlightMax, lookupCallsMax, lookupIDsMax,
			func(l lookupCall) int { return len(l.ids) + len(l.pendingIDs) }),
	}
	if cfg.Linger > 0 {
		s.commits.linger, s.commits.lingerCalls = cfg.Linger, s.active.count
		s.lookups.linger, s.lookups.lingerCalls = cfg.Linger, s.active.count
	}
	if err := Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	today := ledger.BusinessDate(s.now().UnixNano())
	if err := s.EnsurePartitions(ctx, today.AddDate(0, 0, -1), today.AddDate(0, 0, cfg.PartitionsAhead)); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Pool exposes the connection pool to other adapters of the same database.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close closes the pool.
func (s *Store) Close() { s.pool.Close() }

// Migrate applies the ledger's embedded migrations, each in its own
// transaction, under a Postgres advisory lock so that several processes
// starting at once do not race.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return pgmigrate.Up(ctx, pool, migrations, pgmigrate.Options{})
}

// Load implements ledger.Store.
func (s *Store) Load(ctx context.Context, shard int) (*ledger.Snapshot, error) {
	// Register the shard and, by locking its row, wait for any batch commit
	// still in flight (it holds the row through ledger_fence): after a
	// failed or ambiguous commit the reload must see that batch's outcome,
	// not a snapshot taken while it was still deciding.
	if _, err := s.pool.Exec(ctx, `
		WITH reg AS (INSERT INTO ledger_shards (shard) VALUES ($1) ON CONFLICT (shard) DO NOTHING)
		SELECT 1 FROM ledger_shards WHERE shard = $1 FOR UPDATE`, shard); err != nil {
		return nil, fmt.Errorf("register shard: %w", err)
	}
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(ctx)
	snap := &ledger.Snapshot{}
	if err := tx.QueryRow(ctx, `SELECT last_timestamp, checkpoint_ts FROM ledger_shards WHERE shard = $1`, shard).
		Scan(&snap.LastTimestamp, &snap.CheckpointTS); err != nil {
		return nil, fmt.Errorf("shard row: %w", err)
	}
	rows, err := tx.Query(ctx, `
		SELECT id, asset, code, flags, closed, debits_pending, debits_posted, credits_pending, credits_posted, created_ts
		FROM accounts WHERE shard = $1`, shard)
	if err != nil {
		return nil, fmt.Errorf("load accounts: %w", err)
	}
	var a ledger.Account
	_, err = pgx.ForEachRow(rows, []any{&a.ID, &a.Asset, &a.Code, &a.Flags, &a.Closed,
		&a.DebitsPending, &a.DebitsPosted, &a.CreditsPending, &a.CreditsPosted, &a.Timestamp}, func() error {
		snap.Accounts = append(snap.Accounts, a)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load accounts: %w", err)
	}
	if snap.CheckpointTS < snap.LastTimestamp {
		if snap.Unsaved, err = replay(ctx, tx, shard, snap.CheckpointTS, snap.Accounts); err != nil {
			return nil, err
		}
	}
	rows, err = tx.Query(ctx, `
		SELECT id, debit_account_id, credit_account_id, amount, asset, expires_at, state
		FROM pending_transfers WHERE shard = $1 AND state = 1`, shard)
	if err != nil {
		return nil, fmt.Errorf("load pending: %w", err)
	}
	var p ledger.PendingTransfer
	var id pgtype.UUID
	_, err = pgx.ForEachRow(rows, []any{&id, &p.DebitAccountID, &p.CreditAccountID, &p.Amount, &p.Asset,
		&p.ExpiresAt, &p.State}, func() error {
		p.ID = id.Bytes
		snap.Pending = append(snap.Pending, p)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load pending: %w", err)
	}
	return snap, tx.Commit(ctx)
}

// journalEffects is the SQL that sums, per account and side, what journal
// entries do to the four balance fields: plain and post entries add amount
// to posted; pending entries add amount to pending; post and void entries
// release pending_amount from pending. It is the one definition of the
// journal's meaning: Load's replay, the catch-up of a bulk writer
// (ShardTx.CatchUp) and Verify all use it, through journalEffectsSQL.
// %[1]s filters the transfers table; %[2]s compares an entry's ts with its
// account's balance_ts: ">" for entries not yet in the stored balance, "<="
// for those in it; %[3]d, %[4]d and %[5]d are the flag masks (ledger's
// constants): pending or void, pending, post or void.
const journalEffects = `
	SELECT e.id, e.debit,
		coalesce(sum(e.amount) FILTER (WHERE e.flags & %[3]d = 0), 0)::bigint AS posted,
		(coalesce(sum(e.amount) FILTER (WHERE e.flags & %[4]d <> 0), 0)
			- coalesce(sum(e.pending_amount) FILTER (WHERE e.flags & %[5]d <> 0), 0))::bigint AS pending
	FROM (
		SELECT debit_account_id AS id, true AS debit, amount, pending_amount, flags, ts FROM transfers WHERE %[1]s
		UNION ALL
		SELECT credit_account_id, false, amount, pending_amount, flags, ts FROM transfers WHERE %[1]s
	) e JOIN accounts a ON a.id = e.id AND e.ts %[2]s a.balance_ts
	GROUP BY e.id, e.debit`

// journalEffectsSQL is journalEffects over the entries filter selects,
// compared with balance_ts by cmp.
func journalEffectsSQL(filter, cmp string) string {
	return fmt.Sprintf(journalEffects, filter, cmp, uint16(ledger.Pending|ledger.VoidPending), uint16(ledger.Pending),
		uint16(ledger.PostPending|ledger.VoidPending))
}

// replay adds the effects of the journal entries after the checkpoint that
// are not yet in their accounts' stored balances, and returns the accounts
// it changed.
func replay(ctx context.Context, tx pgx.Tx, shard int, after int64, accts []ledger.Account) ([]ledger.AccountID, error) {
	index := make(map[ledger.AccountID]*ledger.Account, len(accts))
	for i := range accts {
		index[accts[i].ID] = &accts[i]
	}
	// The date bound lets Postgres skip older partitions.
	rows, err := tx.Query(ctx, journalEffectsSQL("shard = $1 AND ts > $2 AND business_date >= $3", ">"),
		shard, after, ledger.BusinessDate(after))
	if err != nil {
		return nil, fmt.Errorf("replay journal: %w", err)
	}
	var (
		id              ledger.AccountID
		debit           bool
		posted, pending int64
		changed         []ledger.AccountID
		seen            = map[ledger.AccountID]bool{}
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &debit, &posted, &pending}, func() error {
		a, ok := index[id]
		if !ok {
			return fmt.Errorf("%w: journal entry for account %d of another shard", ledger.ErrInvariantBroke, id)
		}
		if debit {
			a.DebitsPosted += posted
			a.DebitsPending += pending
		} else {
			a.CreditsPosted += posted
			a.CreditsPending += pending
		}
		if !seen[id] {
			seen[id] = true
			changed = append(changed, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("replay journal: %w", err)
	}
	return changed, nil
}

// Stats count the store's round trips since Open.
type Stats struct {
	// Commits are batch transactions; CommitBatches the shards' batches
	// they carried (several when shards of this database commit at once).
	Commits, CommitBatches int64
	// Lookups are id lookup round trips; LookupCalls the shards' lookups
	// they answered.
	Lookups, LookupCalls int64
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	return Stats{Commits: s.commits.trips.Load(), CommitBatches: s.commits.calls.Load(),
		Lookups: s.lookups.trips.Load(), LookupCalls: s.lookups.calls.Load()}
}

// Lookup implements ledger.Store: one round trip for both kinds of id,
// shared with the lookups of other shards made at the same time.
func (s *Store) Lookup(ctx context.Context, shard int, ids, pendingIDs []ledger.TransferID) (*ledger.Known, error) {
	s.active.saw(shard)
	return s.lookups.do(ctx, lookupCall{shard: shard, ids: ids, pendingIDs: pendingIDs}, s.lookupGroup)
}

type lookupCall struct {
	shard           int
	ids, pendingIDs []ledger.TransferID
}

// Bounds of one merged lookup.
const (
	lookupCallsMax = 64
	lookupIDsMax   = 65536 // unless one call alone asks for more
)

// lookupGroup answers the lookups of several shards in one round trip: one
// query for all their transfer ids (transfer_ids is keyed by id alone), one
// per shard for pending transfers.
func (s *Store) lookupGroup(ctx context.Context, calls []*groupCall[lookupCall, *ledger.Known]) {
	var (
		b     pgx.Batch
		all   []ledger.TransferID
		found = make(map[ledger.TransferID]int64)
		known = make([]*ledger.Known, len(calls))
	)
	for i, c := range calls {
		all = append(all, c.in.ids...)
		known[i] = &ledger.Known{Fingerprints: make(map[ledger.TransferID]int64)}
	}
	if len(all) > 0 {
		b.Queue(`SELECT id, fingerprint FROM transfer_ids WHERE id = ANY($1)`, uuids(all)).Query(
			func(rows pgx.Rows) error {
				var id pgtype.UUID
				var fp int64
				_, err := pgx.ForEachRow(rows, []any{&id, &fp}, func() error {
					found[id.Bytes] = fp
					return nil
				})
				return err
			})
	}
	for i, c := range calls {
		if len(c.in.pendingIDs) == 0 {
			continue
		}
		k := known[i]
		b.Queue(`SELECT id, debit_account_id, credit_account_id, amount, asset, expires_at, state
			FROM pending_transfers WHERE id = ANY($1) AND shard = $2`, uuids(c.in.pendingIDs), c.in.shard).Query(
			func(rows pgx.Rows) error {
				var p ledger.PendingTransfer
				var id pgtype.UUID
				_, err := pgx.ForEachRow(rows, []any{&id, &p.DebitAccountID, &p.CreditAccountID, &p.Amount,
					&p.Asset, &p.ExpiresAt, &p.State}, func() error {
					p.ID = id.Bytes
					k.Pending = append(k.Pending, p)
					return nil
				})
				return err
			})
	}
	var err error
	if b.Len() > 0 {
		if err = s.pool.SendBatch(ctx, &b).Close(); err != nil {
			err = fmt.Errorf("lookup ids: %w", err)
		}
	}
	for i, c := range calls {
		if err != nil {
			c.done <- groupResult[*ledger.Known]{err: err}
			continue
		}
		for _, id := range c.in.ids {
			if fp, ok := found[id]; ok {
				known[i].Fingerprints[id] = fp
			}
		}
		c.done <- groupResult[*ledger.Known]{out: known[i]}
	}
}

func uuids(ids []ledger.TransferID) []pgtype.UUID {
	out := make([]pgtype.UUID, len(ids))
	for i, id := range ids {
		out[i] = pgtype.UUID{Bytes: id, Valid: true}
	}
	return out
}

func (s *Store) ensureBatchPartitions(ctx context.Context, b *ledger.Batch) error {
	if len(b.Transfers) == 0 {
		return nil
	}
	// Timestamps increase through the batch, so its dates are a range.
	// Creating a partition locks the parent table; a week's lead keeps that
	// out of the midnight rush (known dates cost a map lookup).
	first := ledger.BusinessDate(b.Transfers[0].Timestamp)
	last := ledger.BusinessDate(b.Transfers[len(b.Transfers)-1].Timestamp)
	return s.EnsurePartitions(ctx, first, last.AddDate(0, 0, partitionsAhead))
}

// activeShards counts the shards that called the store lately.
type activeShards struct {
	mu   sync.Mutex
	seen map[int]time.Time
}

// A shard is active for activeFor after its last call; lingerDefault is
// Config.Linger's default (below a commit's own round trip under load).
const (
	activeFor     = 200 * time.Millisecond
	lingerDefault = time.Millisecond
)

func (a *activeShards) saw(shard int) {
	now := time.Now()
	a.mu.Lock()
	if a.seen == nil {
		a.seen = map[int]time.Time{}
	}
	a.seen[shard] = now
	a.mu.Unlock()
}

func (a *activeShards) count() int {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, t := range a.seen {
		if now.Sub(t) < activeFor {
			n++
		}
	}
	return n
}
