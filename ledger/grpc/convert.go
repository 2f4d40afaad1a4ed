package grpc

import (
	"fmt"
	"math"
	"time"

	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/grpc/ledgerpb"
)

// errBadField: a wire value that does not fit its domain type. Values are
// refused, never truncated: a kind or asset silently cut to 16 bits would
// book money under another meaning.
type errBadField struct {
	field string
	value any
}

func (e *errBadField) Error() string {
	return fmt.Sprintf("ledger: field %s: value %v out of range", e.field, e.value)
}

func u16(field string, v uint32) (uint16, error) {
	if v > math.MaxUint16 {
		return 0, &errBadField{field, v}
	}
	return uint16(v), nil
}

func transferID(field string, b []byte) (ledger.TransferID, error) {
	var id ledger.TransferID
	switch len(b) {
	case 0:
		return id, nil // zero: the ledger answers id_must_not_be_zero where it matters
	case len(id):
		copy(id[:], b)
		return id, nil
	}
	return id, &errBadField{field, fmt.Sprintf("%d bytes", len(b))}
}

func idBytes(id ledger.TransferID) []byte {
	if id.IsZero() {
		return nil
	}
	return id[:]
}

func transferToPB(t *ledger.Transfer) *ledgerpb.Transfer {
	return &ledgerpb.Transfer{
		Id: idBytes(t.ID), DebitAccountId: int64(t.DebitAccountID), CreditAccountId: int64(t.CreditAccountID),
		Amount: t.Amount, Asset: uint32(t.Asset), Kind: uint32(t.Kind), Flags: uint32(t.Flags),
		PendingId: idBytes(t.PendingID), TimeoutNs: int64(t.Timeout), UserData: t.UserData,
	}
}

func transferFromPB(p *ledgerpb.Transfer) (ledger.Transfer, error) {
	t := ledger.Transfer{
		DebitAccountID: ledger.AccountID(p.DebitAccountId), CreditAccountID: ledger.AccountID(p.CreditAccountId),
		Amount: p.Amount, Timeout: time.Duration(p.TimeoutNs), UserData: p.UserData,
	}
	var err error
	var asset, flags uint16
	if t.ID, err = transferID("id", p.Id); err != nil {
		return t, err
	}
	if t.PendingID, err = transferID("pending_id", p.PendingId); err != nil {
		return t, err
	}
	if asset, err = u16("asset", p.Asset); err != nil {
		return t, err
	}
	if t.Kind, err = u16("kind", p.Kind); err != nil {
		return t, err
	}
	if flags, err = u16("flags", p.Flags); err != nil {
		return t, err
	}
	t.Asset, t.Flags = ledger.Asset(asset), ledger.TransferFlags(flags)
	return t, nil
}

func accountToPB(a *ledger.Account) *ledgerpb.Account {
	return &ledgerpb.Account{
		Id: int64(a.ID), Asset: uint32(a.Asset), Code: uint32(a.Code), Flags: uint32(a.Flags), Closed: a.Closed,
		DebitsPending: a.DebitsPending, DebitsPosted: a.DebitsPosted,
		CreditsPending: a.CreditsPending, CreditsPosted: a.CreditsPosted, Timestamp: a.Timestamp,
	}
}

func accountFromPB(p *ledgerpb.Account) (ledger.Account, error) {
	a := ledger.Account{
		ID: ledger.AccountID(p.Id), Closed: p.Closed,
		DebitsPending: p.DebitsPending, DebitsPosted: p.DebitsPosted,
		CreditsPending: p.CreditsPending, CreditsPosted: p.CreditsPosted, Timestamp: p.Timestamp,
	}
	var err error
	var asset, flags uint16
	if asset, err = u16("asset", p.Asset); err != nil {
		return a, err
	}
	if a.Code, err = u16("code", p.Code); err != nil {
		return a, err
	}
	if flags, err = u16("flags", p.Flags); err != nil {
		return a, err
	}
	a.Asset, a.Flags = ledger.Asset(asset), ledger.AccountFlags(flags)
	return a, nil
}

func accountIDs(ids []int64) []ledger.AccountID {
	out := make([]ledger.AccountID, len(ids))
	for i, id := range ids {
		out[i] = ledger.AccountID(id)
	}
	return out
}

func int64IDs(ids []ledger.AccountID) []int64 {
	out := make([]int64, len(ids))
	for i, id := range ids {
		out[i] = int64(id)
	}
	return out
}

// result parses a result name from the wire. An unknown name means the
// server knows a result this client does not: it is reported as an error
// rather than guessed, since guessing could read a refusal as success.
func result(name string) (ledger.Result, error) {
	r, ok := ledger.ParseResult(name)
	if !ok {
		return 0, fmt.Errorf("ledger: unknown result %q from server", name)
	}
	return r, nil
}
