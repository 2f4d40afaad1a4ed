package ledger

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// EventVersion is the schema version of Event; consumers refuse versions
// they do not know rather than misread them.
const EventVersion = 1

// Event is what the ledger publishes for every journal entry it commits:
// the ledger's public record for other domains (reconciliation, cross-shard
// sagas), which never read its tables.
type Event struct {
	Version         int           `json:"v"`
	Shard           int           `json:"shard"`
	ID              TransferID    `json:"id"`
	Timestamp       int64         `json:"ts"`
	DebitAccountID  AccountID     `json:"debit_account_id"`
	CreditAccountID AccountID     `json:"credit_account_id"`
	Amount          int64         `json:"amount"`
	PendingAmount   int64         `json:"pending_amount,omitempty"`
	Asset           Asset         `json:"asset"`
	Kind            uint16        `json:"kind"`
	Flags           TransferFlags `json:"flags"`
	PendingID       string        `json:"pending_id,omitempty"`
	UserData        string        `json:"user_data,omitempty"`
}

// EventOf returns the event of a journal entry.
func EventOf(shard int, t *Transfer) Event {
	e := Event{
		Version: EventVersion, Shard: shard, ID: t.ID, Timestamp: t.Timestamp,
		DebitAccountID: t.DebitAccountID, CreditAccountID: t.CreditAccountID, Amount: t.Amount,
		PendingAmount: t.PendingAmount, Asset: t.Asset, Kind: t.Kind, Flags: t.Flags, UserData: t.UserData,
	}
	if !t.PendingID.IsZero() {
		e.PendingID = t.PendingID.String()
	}
	return e
}

// OutboxBatch is the events of one committed batch, in journal order,
// waiting in the outbox to be published.
type OutboxBatch struct {
	Shard  int
	LastTS int64 // the batch's last timestamp: the outbox position
	Events []Event
}

// entryBytes is the fixed part of an encoded journal entry.
const entryBytes = 16 + 8 + 8 + 8 + 8 + 8 + 2 + 2 + 2 + 16 + 2

var errShortOutbox = errors.New("ledger: outbox payload truncated")

// EncodeEntries packs journal entries compactly for the outbox row of a
// batch (one row per batch, not per entry, keeps the commit cheap):
// a version byte, then per entry fixed-width little-endian fields and the
// user data.
func EncodeEntries(ts []Transfer) []byte {
	size := 1
	for i := range ts {
		size += entryBytes + len(ts[i].UserData)
	}
	b := make([]byte, 0, size)
	b = append(b, EventVersion)
	for i := range ts {
		t := &ts[i]
		b = append(b, t.ID[:]...)
		b = binary.LittleEndian.AppendUint64(b, uint64(t.Timestamp))
		b = binary.LittleEndian.AppendUint64(b, uint64(t.DebitAccountID))
		b = binary.LittleEndian.AppendUint64(b, uint64(t.CreditAccountID))
		b = binary.LittleEndian.AppendUint64(b, uint64(t.Amount))
		b = binary.LittleEndian.AppendUint64(b, uint64(t.PendingAmount))
		b = binary.LittleEndian.AppendUint16(b, uint16(t.Asset))
		b = binary.LittleEndian.AppendUint16(b, t.Kind)
		b = binary.LittleEndian.AppendUint16(b, uint16(t.Flags))
		b = append(b, t.PendingID[:]...)
		b = binary.LittleEndian.AppendUint16(b, uint16(len(t.UserData)))
		b = append(b, t.UserData...)
	}
	return b
}

// DecodeEntries reverses EncodeEntries.
func DecodeEntries(b []byte) ([]Transfer, error) {
	if len(b) == 0 {
		return nil, errShortOutbox
	}
	if b[0] != EventVersion {
		return nil, fmt.Errorf("ledger: outbox payload version %d unknown", b[0])
	}
	b = b[1:]
	var out []Transfer
	for len(b) > 0 {
		if len(b) < entryBytes {
			return nil, errShortOutbox
		}
		var t Transfer
		copy(t.ID[:], b[0:16])
		t.Timestamp = int64(binary.LittleEndian.Uint64(b[16:]))
		t.DebitAccountID = AccountID(binary.LittleEndian.Uint64(b[24:]))
		t.CreditAccountID = AccountID(binary.LittleEndian.Uint64(b[32:]))
		t.Amount = int64(binary.LittleEndian.Uint64(b[40:]))
		t.PendingAmount = int64(binary.LittleEndian.Uint64(b[48:]))
		t.Asset = Asset(binary.LittleEndian.Uint16(b[56:]))
		t.Kind = binary.LittleEndian.Uint16(b[58:])
		t.Flags = TransferFlags(binary.LittleEndian.Uint16(b[60:]))
		copy(t.PendingID[:], b[62:78])
		n := int(binary.LittleEndian.Uint16(b[78:]))
		b = b[entryBytes:]
		if len(b) < n {
			return nil, errShortOutbox
		}
		t.UserData = string(b[:n])
		b = b[n:]
		out = append(out, t)
	}
	return out, nil
}
