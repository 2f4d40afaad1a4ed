package recon

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/shopspring/decimal"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/ledger"
)

// BreakKind says what is wrong.
type BreakKind string

// Break kinds.
const (
	// MissingEvent: a journal entry never seen on the event stream.
	MissingEvent BreakKind = "missing_event"
	// UnexpectedEvent: an event seen on the stream with no journal entry
	// (the entry vanished from the journal, or the event came from nowhere).
	UnexpectedEvent BreakKind = "unexpected_event"
	// Duplicate: one transfer id twice: two journal rows, or a redelivery
	// with content different from the first delivery.
	Duplicate BreakKind = "duplicate"
	// AmountMismatch: the journal entry and its event disagree on the
	// amount (a tampered journal row).
	AmountMismatch BreakKind = "amount_mismatch"
	// ContentMismatch: they agree on the amount but not on another field
	// (accounts, asset, kind, flags, timestamp, user data).
	ContentMismatch BreakKind = "content_mismatch"
	// AccountMismatch: an account's totals for a day differ between the
	// journal and the stream; usually the consequence of one of the above.
	AccountMismatch BreakKind = "account_mismatch"
	// ShardDayMismatch: a shard's totals for a day differ and no entry
	// explains it (more differences than one comparison lists).
	ShardDayMismatch BreakKind = "shard_day_mismatch"
	// InTransitNotZero: a cross-shard saga's money stays in transit (no
	// leg 2 nor refund), or left it twice: in-transit accounts do not net
	// to zero across shards.
	InTransitNotZero BreakKind = "in_transit_not_zero"
	// UnmatchedStatementLine: a statement line with no journal movement of
	// the same reference, direction and amount that day.
	UnmatchedStatementLine BreakKind = "unmatched_statement_line"
	// UnmatchedLedgerMovement: a movement of the bank settlement account
	// with no statement line.
	UnmatchedLedgerMovement BreakKind = "unmatched_ledger_movement"
)

// BreakKinds lists every kind, so that metrics show zeros too.
func BreakKinds() []BreakKind {
	return []BreakKind{MissingEvent, UnexpectedEvent, Duplicate, AmountMismatch, ContentMismatch,
		AccountMismatch, ShardDayMismatch, InTransitNotZero, UnmatchedStatementLine, UnmatchedLedgerMovement}
}

// Sources of breaks: each check resolves only its own.
const (
	SourceStream    = "stream"
	SourceCompare   = "compare"
	SourceStatement = "statement"
)

// Break is one thing found wrong. Journal is the journal's figure, Other
// the other side's (the event stream's, or the statement's); both in minor
// units when set.
type Break struct {
	ID           int64              `json:"id,string"`
	Key          string             `json:"key"`
	Kind         BreakKind          `json:"kind"`
	Source       string             `json:"source"`
	Shard        *int               `json:"shard,omitempty"`
	BusinessDate string             `json:"business_date,omitempty"` // YYYY-MM-DD
	TransferID   *ledger.TransferID `json:"transfer_id,omitempty"`
	AccountID    *ledger.AccountID  `json:"account_id,omitempty,string"`
	Asset        string             `json:"asset,omitempty"`
	Reference    string             `json:"reference,omitempty"`
	Journal      *Amount            `json:"journal,omitempty"`
	Other        *Amount            `json:"other,omitempty"`
	Detail       string             `json:"detail"`
	FirstSeen    time.Time          `json:"first_seen"`
	LastSeen     time.Time          `json:"last_seen"`
	ResolvedAt   *time.Time         `json:"resolved_at,omitempty"`
}

// Amount is money in minor units (fen, 0.01 share) that reads as a
// decimal string in JSON ("12.30", "-0.07"), as every amount at the edge.
type Amount int64

// MarshalText writes two decimals.
func (a Amount) MarshalText() ([]byte, error) { return []byte(accounts.FormatAmount(int64(a))), nil }

// UnmarshalText reads a decimal with at most two places.
func (a *Amount) UnmarshalText(b []byte) error {
	d, err := decimal.NewFromString(string(b))
	if err != nil || !d.Equal(d.Truncate(2)) {
		return fmt.Errorf("amount %q: want a decimal with at most two places", b)
	}
	m := d.Shift(2)
	if m.Abs().GreaterThan(decimal.NewFromInt(math.MaxInt64)) {
		return fmt.Errorf("amount %q: out of range", b)
	}
	*a = Amount(m.IntPart())
	return nil
}

// Ptr returns a pointer to a copy of a, for optional fields.
func (a Amount) Ptr() *Amount { return &a }

// Outcome is what applying one event did.
type Outcome uint8

const (
	Applied     Outcome = iota + 1 // first delivery: recorded and totalled
	Redelivered                    // same id, same content: ignored
	Conflict                       // same id, different content: ignored, a Duplicate break stored
)

func (o Outcome) String() string {
	switch o {
	case Applied:
		return "applied"
	case Redelivered:
		return "redelivered"
	case Conflict:
		return "conflict"
	}
	return "unknown"
}

// CompareOptions bound one comparison.
type CompareOptions struct {
	// Cutoff: entries stamped after it are left out on both sides (they may
	// still be on their way through outbox and broker). Zero = the end of
	// the day.
	Cutoff time.Time
	// Deep compares entry by entry and account by account on every shard,
	// not only where the totals differ.
	Deep bool
	// From, after a comparison up to From found the day clean: compare the
	// totals of the entries after From only, and the whole day so far only
	// if they differ. This keeps the periodic comparison of the open day
	// proportional to the traffic since the last one, not to the day; a row
	// rewritten before From is then found by the next whole-day comparison
	// (the worker's every WorkerConfig.FullEvery, the one after the day
	// closes, or fundctl recon report --compare).
	// Ignored with Deep.
	From time.Time
	// BreaksMax bounds the breaks one comparison lists per shard and check;
	// 0 = 10,000.
	BreaksMax int
}

// ShardDay is one shard's totals for a day and asset, both sides.
type ShardDay struct {
	Shard          int    `json:"shard"`
	Asset          string `json:"asset"`
	JournalEntries int64  `json:"journal_entries"`
	StreamEntries  int64  `json:"stream_entries"`
	JournalAmount  string `json:"journal_amount"` // exact sum, decimal
	StreamAmount   string `json:"stream_amount"`
	Equal          bool   `json:"equal"` // entries, amounts and digests agree
}

// Report is the result of one comparison.
type Report struct {
	BusinessDate string     `json:"business_date"`
	From         *time.Time `json:"from,omitempty"` // set when only the window after it was compared (and was clean)
	Cutoff       time.Time  `json:"cutoff"`
	Shards       []ShardDay `json:"shards"`
	Breaks       []Break    `json:"breaks"` // found by this run
	// InTransit is, per asset, the money the stream saw go into transit and
	// not come out (open sagas up to the cutoff): zero when all is well.
	InTransit map[string]Amount `json:"in_transit"`
	OpenSagas int               `json:"open_sagas"`
	Resolved  int64             `json:"resolved"` // breaks of earlier runs not found again
	Took      time.Duration     `json:"took_ns"`
}

// BreakFilter selects breaks to list.
type BreakFilter struct {
	IncludeResolved bool
	Kind            BreakKind  // "" = every kind
	BusinessDate    *time.Time // nil = every date
	Limit           int        // 0 = 1,000
}

// Store is reconciliation's persistence in one ledger database, and its
// read of that database's journal. A Set spreads the work over the stores
// of every database.
type Store interface {
	// Apply records the events not seen before and adds them to the
	// totals, all in one transaction, and stores a Duplicate break for each
	// id seen before with different content. It returns each event's
	// outcome, in order. An error means nothing was written; retry.
	Apply(ctx context.Context, events []ledger.Event) ([]Outcome, error)
	// Compare reconciles one business day of this database's shards
	// against its journal (totals, then entries and accounts where they
	// differ), stores the breaks found and resolves earlier ones of that
	// day not found again. Sagas are Set.Compare's.
	Compare(ctx context.Context, day time.Time, opts CompareOptions) (*Report, error)
	// OpenSagas returns up to limit sagas recorded here whose leg 1 is
	// stamped at or before cutoff and that no comparison saw closed yet.
	OpenSagas(ctx context.Context, cutoff time.Time, limit int) ([]Saga, error)
	// Seen reports which of the transfer ids this store recorded.
	Seen(ctx context.Context, ids []ledger.TransferID) (map[ledger.TransferID]bool, error)
	// SettleSagas marks sagas closed (resolving their breaks) and stores
	// in-transit breaks, in one transaction; it returns how many breaks it
	// resolved.
	SettleSagas(ctx context.Context, closed []ledger.TransferID, breaks []Break) (int64, error)
	// Breaks lists breaks, newest first.
	Breaks(ctx context.Context, f BreakFilter) ([]Break, error)
	// OpenBreaks counts the open breaks per kind.
	OpenBreaks(ctx context.Context) (map[BreakKind]int64, error)
	// BankMovements returns the posted movements of account on a business
	// day, from the journal, with their references.
	BankMovements(ctx context.Context, account ledger.AccountID, day time.Time) ([]Movement, error)
	// SaveStatement records a statement import and its unmatched items as
	// breaks of the day, resolving those of an earlier import of the same
	// day and account that are matched now.
	SaveStatement(ctx context.Context, imp StatementImport) error
}

// Saga is a cross-shard transfer as reconciliation follows it: leg 1 put
// Amount in transit; leg 2 (id In) or the refund (id Back) takes it out.
type Saga struct {
	Leg1      ledger.TransferID
	Shard     int
	Timestamp time.Time
	Asset     ledger.Asset
	Amount    int64
	In, Back  ledger.TransferID
}

// SagaBreakKey is the key of a saga's in-transit break.
func SagaBreakKey(leg1 ledger.TransferID) string {
	return string(InTransitNotZero) + "/" + leg1.String()
}

// DayStart returns the first instant of a business day (its date read in
// the business zone).
func DayStart(day time.Time) time.Time {
	return time.Date(day.Year(), day.Month(), day.Day(), 0, 0, 0, 0, ledger.BusinessZone())
}

// ParseDay parses YYYY-MM-DD as a business date (a UTC midnight, as
// ledger.BusinessDate returns).
func ParseDay(s string) (time.Time, error) {
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, errors.New("date " + s + ": want YYYY-MM-DD")
	}
	return d, nil
}

// SagaClosingIDs returns the ids of the two legs that can close the
// cross-shard saga whose leg 1 is leg1: leg 2 on the payee's shard and the
// refund on the payer's. They are derived exactly as ledger/xshard derives
// them (namespaces "xshard.in" and "xshard.back"); the reconciliation tests
// run real sagas, so a change there shows up as open sagas here.
func SagaClosingIDs(leg1 ledger.TransferID) (in, back ledger.TransferID) {
	return ledger.DeriveTransferID("xshard.in", leg1.String()), ledger.DeriveTransferID("xshard.back", leg1.String())
}
