package recon

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/xshard"
)

// Direction is which way money moved through the platform's bank account,
// as the bank sees it.
type Direction string

const (
	// In is money received from a customer's card: a top-up. In the journal
	// the bank settlement account is debited.
	In Direction = "IN"
	// Out is money paid to a customer's card: a withdrawal. In the journal
	// the bank settlement account is credited.
	Out Direction = "OUT"
)

// Limits of a statement import.
const (
	StatementLinesMax = 1_000_000 // data lines in one file
	lineErrorsMax     = 100       // line errors listed; the rest are counted
	referenceLenMax   = ledger.MaxUserDataLen
)

// Movement is one posted journal entry of the bank settlement account.
type Movement struct {
	TransferID ledger.TransferID `json:"transfer_id"`
	Shard      int               `json:"shard"`
	Timestamp  time.Time         `json:"timestamp"`
	Direction  Direction         `json:"direction"`
	Amount     int64             `json:"-"`
	AmountText string            `json:"amount"`
	Kind       uint16            `json:"kind"`
	// Reference is the request id the order was placed with: the
	// transfer's user data (for leg 1 of a cross-shard saga, the caller's
	// data inside the saga's "x:payee:kind:data").
	Reference string `json:"reference"`
}

// StatementLine is one line of a bank or custodian statement.
//
// The file is CSV (RFC 4180 quoting, UTF-8, an optional byte-order mark).
// Lines starting with # are comments; blank lines are skipped. The first
// other line is the header naming the columns, in any order and any letter
// case:
//
//	reference   the order's request id (the Idempotency-Key), 1-64 characters
//	amount      CNY, positive, at most two decimals, no sign or separators: 1234.50
//	direction   IN (received from a card: a top-up) or OUT (paid to a card: a withdrawal)
//	value_date  YYYY-MM-DD; must be the statement's date
//	description optional, kept for the report
//
// Other columns are ignored. Example:
//
//	reference,amount,direction,value_date,description
//	topup-7f3a,100.00,IN,2026-11-11,card 6222****1234
//	wd-0091,25.50,OUT,2026-11-11,
type StatementLine struct {
	Line        int       `json:"line"`
	Reference   string    `json:"reference"`
	Amount      int64     `json:"-"`
	AmountText  string    `json:"amount"`
	Direction   Direction `json:"direction"`
	ValueDate   string    `json:"value_date"`
	Description string    `json:"description,omitempty"`
}

// Statement column names.
const (
	colReference   = "reference"
	colAmount      = "amount"
	colDirection   = "direction"
	colValueDate   = "value_date"
	colDescription = "description"
)

// LineError is one refused line of a statement.
type LineError struct {
	Line   int    `json:"line"`
	Column string `json:"column,omitempty"`
	Err    error  `json:"-"`
	Msg    string `json:"message"`
}

func (e LineError) Error() string {
	if e.Column != "" {
		return fmt.Sprintf("line %d, %s: %v", e.Line, e.Column, e.Err)
	}
	return fmt.Sprintf("line %d: %v", e.Line, e.Err)
}

// StatementError lists every refused line of a statement (up to a limit;
// More counts the rest). Nothing of a statement with errors is matched.
type StatementError struct {
	Errors []LineError
	More   int
}

func (e *StatementError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "statement refused: %d bad lines", len(e.Errors)+e.More)
	for _, le := range e.Errors {
		b.WriteString("\n  ")
		b.WriteString(le.Error())
	}
	if e.More > 0 {
		fmt.Fprintf(&b, "\n  ... and %d more", e.More)
	}
	return b.String()
}

// Conditions a statement line can break.
var (
	ErrNoHeader          = errors.New("no header line naming the columns")
	ErrColumnMissing     = errors.New("required column missing from the header")
	ErrColumnTwice       = errors.New("column named twice in the header")
	ErrFieldCount        = errors.New("wrong number of fields")
	ErrReference         = errors.New("reference must be 1-64 characters, no leading or trailing spaces")
	ErrDirection         = errors.New("direction must be IN or OUT")
	ErrValueDate         = errors.New("value date must be YYYY-MM-DD")
	ErrOtherDate         = errors.New("value date is not the statement's date")
	ErrStatementTooLarge = errors.New("statement has too many lines")
)

// ParseStatement reads a statement for business date day (see
// StatementLine for the format). It returns every line, or a
// *StatementError listing each bad line with its line number, or the read
// error.
func ParseStatement(r io.Reader, day time.Time) ([]StatementLine, error) {
	want := day.Format(time.DateOnly)
	cr := csv.NewReader(&bomSkipper{r: r})
	cr.FieldsPerRecord = -1 // counted here, so that the error names the line and the counts
	cr.Comment = '#'
	cr.ReuseRecord = true
	serr := &StatementError{}
	fail := func(le LineError) {
		le.Msg = le.Err.Error()
		if len(serr.Errors) < lineErrorsMax {
			serr.Errors = append(serr.Errors, le)
		} else {
			serr.More++
		}
	}
	var (
		cols  map[string]int
		width int
		out   []StatementLine
	)
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				fail(LineError{Line: pe.Line, Err: pe.Err})
				if cols == nil {
					return nil, serr // no header: nothing else can be read sensibly
				}
				continue
			}
			return nil, fmt.Errorf("read statement: %w", err)
		}
		line, _ := cr.FieldPos(0)
		if cols == nil {
			cols, err = header(rec)
			if err != nil {
				fail(LineError{Line: line, Err: err})
				return nil, serr
			}
			width = len(rec)
			continue
		}
		if len(out)+len(serr.Errors)+serr.More >= StatementLinesMax {
			fail(LineError{Line: line, Err: fmt.Errorf("%w (at most %d)", ErrStatementTooLarge, StatementLinesMax)})
			return nil, serr
		}
		if len(rec) != width {
			fail(LineError{Line: line, Err: fmt.Errorf("%w: %d, the header has %d", ErrFieldCount, len(rec), width)})
			continue
		}
		sl, les := parseLine(rec, cols, line, want)
		if len(les) > 0 {
			for _, le := range les {
				fail(le)
			}
			continue
		}
		out = append(out, sl)
	}
	if cols == nil {
		fail(LineError{Line: 1, Err: ErrNoHeader})
	}
	if len(serr.Errors) > 0 {
		return nil, serr
	}
	return out, nil
}

func header(rec []string) (map[string]int, error) {
	cols := map[string]int{}
	for i, name := range rec {
		name = strings.ToLower(strings.TrimSpace(name))
		if _, dup := cols[name]; dup {
			return nil, fmt.Errorf("%w: %q", ErrColumnTwice, name)
		}
		cols[name] = i
	}
	var missing []string
	for _, c := range []string{colReference, colAmount, colDirection, colValueDate} {
		if _, ok := cols[c]; !ok {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: %s (the header must name reference, amount, direction, value_date)",
			ErrColumnMissing, strings.Join(missing, ", "))
	}
	return cols, nil
}

func parseLine(rec []string, cols map[string]int, line int, want string) (StatementLine, []LineError) {
	var les []LineError
	bad := func(col string, err error) { les = append(les, LineError{Line: line, Column: col, Err: err}) }
	sl := StatementLine{Line: line}

	sl.Reference = rec[cols[colReference]]
	if n := len(sl.Reference); n == 0 || n > referenceLenMax || strings.TrimSpace(sl.Reference) != sl.Reference {
		bad(colReference, fmt.Errorf("%w: %q", ErrReference, sl.Reference))
	}
	amt, err := accounts.ParseAmount(strings.TrimSpace(rec[cols[colAmount]]))
	if err != nil {
		bad(colAmount, err)
	}
	sl.Amount, sl.AmountText = amt, accounts.FormatAmount(amt)
	switch d := Direction(strings.ToUpper(strings.TrimSpace(rec[cols[colDirection]]))); d {
	case In, Out:
		sl.Direction = d
	default:
		bad(colDirection, fmt.Errorf("%w, not %q", ErrDirection, rec[cols[colDirection]]))
	}
	vd := strings.TrimSpace(rec[cols[colValueDate]])
	if _, err := time.Parse(time.DateOnly, vd); err != nil {
		bad(colValueDate, fmt.Errorf("%w, not %q", ErrValueDate, vd))
	} else if vd != want {
		bad(colValueDate, fmt.Errorf("%w: %s, want %s", ErrOtherDate, vd, want))
	}
	sl.ValueDate = vd
	if i, ok := cols[colDescription]; ok {
		sl.Description = rec[i]
	}
	return sl, les
}

// bomSkipper drops a UTF-8 byte-order mark at the start (spreadsheet
// exports write one).
type bomSkipper struct {
	r    io.Reader
	done bool
}

func (b *bomSkipper) Read(p []byte) (int, error) {
	if b.done {
		return b.r.Read(p)
	}
	b.done = true
	var head [3]byte
	n, err := io.ReadFull(b.r, head[:])
	rest := head[:n]
	if bytes.Equal(rest, []byte{0xEF, 0xBB, 0xBF}) {
		rest = nil
	}
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return 0, err
	}
	b.r = io.MultiReader(bytes.NewReader(rest), b.r)
	return b.r.Read(p)
}

// MatchedPair is a statement line and the movement it matched.
type MatchedPair struct {
	Line     StatementLine `json:"line"`
	Movement Movement      `json:"movement"`
}

// UnmatchedLine is a statement line with no movement.
type UnmatchedLine struct {
	StatementLine
	Hint string `json:"hint,omitempty"`
}

// UnmatchedMovement is a movement with no statement line.
type UnmatchedMovement struct {
	Movement
	Hint string `json:"hint,omitempty"`
}

// MatchResult is the outcome of matching a statement.
type MatchResult struct {
	Matched            []MatchedPair       `json:"matched"`
	UnmatchedStatement []UnmatchedLine     `json:"unmatched_statement"`
	UnmatchedLedger    []UnmatchedMovement `json:"unmatched_ledger"`
}

// Clean reports whether every line and every movement matched.
func (m *MatchResult) Clean() bool {
	return len(m.UnmatchedStatement) == 0 && len(m.UnmatchedLedger) == 0
}

// Match pairs statement lines with movements one to one: a line matches a
// movement with the same reference, direction and amount. When several
// share all three, they pair in order (lines by line number, movements by
// timestamp), so the result is deterministic. Whatever is left is
// unmatched; a hint says when the other side holds the reference with
// another amount or direction.
func Match(lines []StatementLine, moves []Movement) *MatchResult {
	type key struct {
		ref    string
		dir    Direction
		amount int64
	}
	ms := append([]Movement(nil), moves...)
	sort.SliceStable(ms, func(i, j int) bool {
		if !ms[i].Timestamp.Equal(ms[j].Timestamp) {
			return ms[i].Timestamp.Before(ms[j].Timestamp)
		}
		return bytes.Compare(ms[i].TransferID[:], ms[j].TransferID[:]) < 0
	})
	ls := append([]StatementLine(nil), lines...)
	sort.SliceStable(ls, func(i, j int) bool { return ls[i].Line < ls[j].Line })

	queue := map[key][]int{}
	for i, m := range ms {
		k := key{m.Reference, m.Direction, m.Amount}
		queue[k] = append(queue[k], i)
	}
	res := &MatchResult{Matched: []MatchedPair{}, UnmatchedStatement: []UnmatchedLine{}, UnmatchedLedger: []UnmatchedMovement{}}
	used := make([]bool, len(ms))
	var leftLines []StatementLine
	for _, l := range ls {
		k := key{l.Reference, l.Direction, l.Amount}
		if q := queue[k]; len(q) > 0 {
			queue[k] = q[1:]
			used[q[0]] = true
			res.Matched = append(res.Matched, MatchedPair{Line: l, Movement: ms[q[0]]})
			continue
		}
		leftLines = append(leftLines, l)
	}
	// Hints: what the other side holds for the same reference.
	movesByRef, linesByRef := map[string][]string{}, map[string][]string{}
	for i, m := range ms {
		if !used[i] {
			movesByRef[m.Reference] = append(movesByRef[m.Reference], string(m.Direction)+" "+accounts.FormatAmount(m.Amount))
		}
	}
	for _, l := range leftLines {
		linesByRef[l.Reference] = append(linesByRef[l.Reference], string(l.Direction)+" "+accounts.FormatAmount(l.Amount))
	}
	for _, l := range leftLines {
		u := UnmatchedLine{StatementLine: l}
		if o := movesByRef[l.Reference]; len(o) > 0 {
			u.Hint = "the ledger has " + strings.Join(o, ", ") + " for this reference"
		}
		res.UnmatchedStatement = append(res.UnmatchedStatement, u)
	}
	for i, m := range ms {
		if used[i] {
			continue
		}
		u := UnmatchedMovement{Movement: m}
		if o := linesByRef[m.Reference]; len(o) > 0 {
			u.Hint = "the statement has " + strings.Join(o, ", ") + " for this reference"
		}
		res.UnmatchedLedger = append(res.UnmatchedLedger, u)
	}
	return res
}

// StatementImport is one imported statement and its match, for the store.
type StatementImport struct {
	Day        time.Time
	Account    ledger.AccountID
	FileName   string
	FileSHA256 string
	Lines      int
	Result     *MatchResult
}

// ReferenceOf returns the reference a journal entry carries: its user data,
// or for leg 1 of a cross-shard saga (kind xshard.KindOut, user data
// "x:payee:kind:data") the caller's data inside.
func ReferenceOf(kind uint16, userData string) string {
	if kind == xshard.KindOut && strings.HasPrefix(userData, "x:") {
		if parts := strings.SplitN(userData, ":", 4); len(parts) == 4 {
			return parts[3]
		}
	}
	return userData
}
