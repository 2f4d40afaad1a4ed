package accounts

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/fundplatform/fund/ledger"
)

// An order's row is written in the same Postgres transaction as the
// order's journal entries: the order's ledger request carries it as an
// attachment (ledger.AttachingClient), and the ledger's commit hands it to
// the orders' writer (accounts/postgres OrderRowsWriter), which turns the
// request's results into the row's status by the rule below, the one
// apply uses for its answer. So an order and its money can never disagree,
// whatever the client does after the ledger call, and an order costs the
// ledger's commit alone. A ledger that cannot carry attachments says so,
// and the store then inserts the row itself, as it did before.

// OrderRow is what an order's ledger request carries: the row's fields and
// the rule that turns the request's results into its status.
type OrderRow struct {
	// Order holds the row's fields; Status and Reason come from Outcome.
	Order Order
	// First is the index of the chain's first transfer in the request;
	// the transfers before it are the order's preparations (a quota
	// grant), whose outcome may be ok or any "exists".
	First int
	// Pending: the order ends pending (held in the ledger, or a transfer
	// between shards waiting for its saga), not completed.
	Pending bool
	// Shortage names the reason recorded when leg i lacks the funds.
	Shortage map[int]string
}

// orderRowVersion is the encoding's first byte: a decoder refuses what it
// does not know rather than misread it.
const orderRowVersion = 1

// Encode returns the row as an attachment.
func (r *OrderRow) Encode() []byte {
	o := &r.Order
	b := make([]byte, 0, 64+len(o.RequestID))
	b = append(b, orderRowVersion)
	b = binary.AppendVarint(b, int64(o.CustomerID))
	b = appendString(b, o.RequestID)
	b = appendString(b, string(o.Kind))
	b = binary.AppendVarint(b, o.Amount)
	b = binary.AppendVarint(b, o.Counterparty)
	b = binary.AppendVarint(b, dayNumber(o.TradeDate))
	b = binary.AppendVarint(b, dayNumber(o.ConfirmDate))
	b = binary.AppendVarint(b, o.CreatedAt.UnixMicro())
	b = binary.AppendUvarint(b, uint64(r.First))
	pending := byte(0)
	if r.Pending {
		pending = 1
	}
	b = append(b, pending)
	b = binary.AppendUvarint(b, uint64(len(r.Shortage)))
	// Any order of the map's keys decodes to the same rule.
	for i, reason := range r.Shortage {
		b = binary.AppendUvarint(b, uint64(i))
		b = appendString(b, reason)
	}
	return b
}

// Bounds of a decoded row: what the service ever encodes, with room.
const (
	orderRowStringMax   = 256
	orderRowShortageMax = 16
)

// ErrBadOrderRow is returned by DecodeOrderRow for bytes that are not an
// encoded OrderRow.
var ErrBadOrderRow = errors.New("accounts: bad order row attachment")

// DecodeOrderRow reads an attachment written by OrderRow.Encode.
func DecodeOrderRow(b []byte) (OrderRow, error) {
	d := rowDecoder{b: b}
	if v := d.byte(); v != orderRowVersion {
		return OrderRow{}, fmt.Errorf("%w: version %d", ErrBadOrderRow, v)
	}
	var r OrderRow
	o := &r.Order
	o.CustomerID = CustomerID(d.varint())
	o.RequestID = d.string()
	o.Kind = OrderKind(d.string())
	o.Amount, o.Counterparty = d.varint(), d.varint()
	o.TradeDate, o.ConfirmDate = dateOfNumber(d.varint()), dateOfNumber(d.varint())
	o.CreatedAt = time.UnixMicro(d.varint()).UTC()
	r.First = int(d.uvarint())
	r.Pending = d.byte() == 1
	n := d.uvarint()
	if n > orderRowShortageMax {
		return OrderRow{}, fmt.Errorf("%w: %d shortage reasons", ErrBadOrderRow, n)
	}
	if n > 0 {
		r.Shortage = make(map[int]string, n)
		for range n {
			i := int(d.uvarint())
			r.Shortage[i] = d.string()
		}
	}
	if d.err != nil || len(d.b) != 0 {
		return OrderRow{}, fmt.Errorf("%w: %v (%d bytes left)", ErrBadOrderRow, d.err, len(d.b))
	}
	return r, nil
}

// Outcome applies the rule to the results of the order's request: the
// status and reason of the row, or the error the order answers with and no
// row (a leg refused for a reason other than a shortage it names, a
// conflict of request ids, a wrong number of results).
func (r *OrderRow) Outcome(res []ledger.TransferResult) (OrderStatus, string, error) {
	if r.First < 0 || len(res) <= r.First {
		return "", "", fmt.Errorf("%w: %d results for a chain from transfer %d", ErrLedger, len(res), r.First)
	}
	kind := r.Order.Kind
	for i := 0; i < r.First; i++ {
		switch res[i].Result {
		case ledger.ResultOK, ledger.ResultExists, ledger.ResultExistsWithDifferentFields:
		default:
			return "", "", fmt.Errorf("%w: transfer %d of %s: %s", ErrLedger, i, kind, res[i].Result)
		}
	}
	chain := res[r.First:]
	switch {
	case chain[0].Result == ledger.ResultOK || chain[0].Result == ledger.ResultExists:
		// The chain applies as a whole, and its first id is only ever used
		// by this chain: "exists" means an earlier attempt, whose order row
		// was lost, applied all of it.
		if r.Pending {
			return OrderPending, "", nil
		}
		return OrderCompleted, "", nil
	case chain[0].Result == ledger.ResultExistsWithDifferentFields:
		return "", "", ErrIdempotencyConflict
	}
	for i, l := range chain {
		switch l.Result {
		case ledger.ResultLinkedEventFailed:
			continue
		case ledger.ResultExceedsCredits:
			if reason, ok := r.Shortage[i]; ok {
				return OrderRejected, reason, nil
			}
		case ledger.ResultDebitAccountClosed, ledger.ResultCreditAccountClosed:
			return "", "", ErrCustomerClosed
		case ledger.ResultCreditAccountNotFound:
			if kind == KindPay {
				return "", "", ErrMerchantNotFound
			}
		}
		return "", "", fmt.Errorf("%w: leg %d of %s: %s", ErrLedger, i, kind, l.Result)
	}
	return "", "", fmt.Errorf("%w: %s: no leg failed and none applied", ErrLedger, kind)
}

// dayNumber is a date's day since 1970-01-01 plus one; 0 = no date.
func dayNumber(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC).Unix()/86400 + 1
}

func dateOfNumber(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix((n-1)*86400, 0).UTC()
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// rowDecoder reads the encoding, keeping the first error.
type rowDecoder struct {
	b   []byte
	err error
}

func (d *rowDecoder) fail(what string) {
	if d.err == nil {
		d.err = errors.New("short or malformed " + what)
	}
	d.b = nil
}

func (d *rowDecoder) byte() byte {
	if len(d.b) == 0 {
		d.fail("byte")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *rowDecoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *rowDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *rowDecoder) string() string {
	n := d.uvarint()
	if n > orderRowStringMax || n > uint64(len(d.b)) {
		d.fail("string")
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
