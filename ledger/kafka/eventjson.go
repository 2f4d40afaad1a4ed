package kafka

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/fundplatform/fund/ledger"
)

// Every ledger event crosses Kafka as JSON (ledger.Event's tags), once
// encoded by the relay and once decoded by each consumer group. With
// encoding/json (reflection, a text unmarshaler for the id) that was about a
// sixth of the Go side of a sharded run, so the canonical form is written
// and read by hand here. The bytes are exactly what json.Marshal writes;
// anything else a producer may send (another field order, spaces, escapes,
// unknown fields) is decoded by encoding/json as before.

// appendEventJSON appends the JSON of e, byte for byte json.Marshal's.
func appendEventJSON(b []byte, e *ledger.Event) []byte {
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(e.Version), 10)
	b = append(b, `,"shard":`...)
	b = strconv.AppendInt(b, int64(e.Shard), 10)
	b = append(b, `,"id":"`...)
	b = append(b, e.ID.String()...)
	b = append(b, `","ts":`...)
	b = strconv.AppendInt(b, e.Timestamp, 10)
	b = append(b, `,"debit_account_id":`...)
	b = strconv.AppendInt(b, int64(e.DebitAccountID), 10)
	b = append(b, `,"credit_account_id":`...)
	b = strconv.AppendInt(b, int64(e.CreditAccountID), 10)
	b = append(b, `,"amount":`...)
	b = strconv.AppendInt(b, e.Amount, 10)
	if e.PendingAmount != 0 {
		b = append(b, `,"pending_amount":`...)
		b = strconv.AppendInt(b, e.PendingAmount, 10)
	}
	b = append(b, `,"asset":`...)
	b = strconv.AppendUint(b, uint64(e.Asset), 10)
	b = append(b, `,"kind":`...)
	b = strconv.AppendUint(b, uint64(e.Kind), 10)
	b = append(b, `,"flags":`...)
	b = strconv.AppendUint(b, uint64(e.Flags), 10)
	if e.PendingID != "" {
		b = append(b, `,"pending_id":`...)
		b = appendJSONString(b, e.PendingID)
	}
	if e.UserData != "" {
		b = append(b, `,"user_data":`...)
		b = appendJSONString(b, e.UserData)
	}
	return append(b, '}')
}

// appendJSONString writes s as encoding/json does: plain when nothing in it
// needs escaping (the usual case), through json.Marshal otherwise.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// decodeEvent reads an event: the canonical form by hand, anything else
// through encoding/json.
func decodeEvent(data []byte, e *ledger.Event) error {
	if parseCanonicalEvent(data, e) {
		return nil
	}
	*e = ledger.Event{}
	return json.Unmarshal(data, e)
}

// eventScanner walks the canonical form; any surprise sets bad.
type eventScanner struct {
	b   []byte
	bad bool
}

func (s *eventScanner) lit(l string) {
	if s.bad || !bytes.HasPrefix(s.b, []byte(l)) {
		s.bad = true
		return
	}
	s.b = s.b[len(l):]
}

// optional consumes l when the input continues with it.
func (s *eventScanner) optional(l string) bool {
	if s.bad || !bytes.HasPrefix(s.b, []byte(l)) {
		return false
	}
	s.b = s.b[len(l):]
	return true
}

func (s *eventScanner) int(bits int) int64 {
	if s.bad {
		return 0
	}
	n := 0
	for n < len(s.b) && (s.b[n] == '-' || s.b[n] >= '0' && s.b[n] <= '9') {
		n++
	}
	if digits := bytes.TrimPrefix(s.b[:n], []byte("-")); len(digits) > 1 && digits[0] == '0' {
		s.bad = true // not JSON; encoding/json says why
		return 0
	}
	v, err := strconv.ParseInt(string(s.b[:n]), 10, bits)
	if err != nil {
		s.bad = true
		return 0
	}
	s.b = s.b[n:]
	return v
}

func (s *eventScanner) uint(bits int) uint64 {
	if s.bad {
		return 0
	}
	n := 0
	for n < len(s.b) && s.b[n] >= '0' && s.b[n] <= '9' {
		n++
	}
	if n > 1 && s.b[0] == '0' {
		s.bad = true
		return 0
	}
	v, err := strconv.ParseUint(string(s.b[:n]), 10, bits)
	if err != nil {
		s.bad = true
		return 0
	}
	s.b = s.b[n:]
	return v
}

// str reads a string without escapes (one with escapes is left to
// encoding/json).
func (s *eventScanner) str() string {
	s.lit(`"`)
	if s.bad {
		return ""
	}
	for i, c := range s.b {
		switch {
		case c == '"':
			if !utf8.Valid(s.b[:i]) {
				s.bad = true // encoding/json replaces invalid bytes; leave it to it
				return ""
			}
			v := string(s.b[:i])
			s.b = s.b[i+1:]
			return v
		case c == '\\' || c < 0x20:
			s.bad = true
			return ""
		}
	}
	s.bad = true
	return ""
}

func parseCanonicalEvent(data []byte, e *ledger.Event) bool {
	s := &eventScanner{b: data}
	var ev ledger.Event
	s.lit(`{"v":`)
	ev.Version = int(s.int(64))
	s.lit(`,"shard":`)
	ev.Shard = int(s.int(64))
	s.lit(`,"id":`)
	if id := s.str(); !s.bad {
		v, err := ledger.ParseTransferID(id)
		if err != nil {
			return false
		}
		ev.ID = v
	}
	s.lit(`,"ts":`)
	ev.Timestamp = s.int(64)
	s.lit(`,"debit_account_id":`)
	ev.DebitAccountID = ledger.AccountID(s.int(64))
	s.lit(`,"credit_account_id":`)
	ev.CreditAccountID = ledger.AccountID(s.int(64))
	s.lit(`,"amount":`)
	ev.Amount = s.int(64)
	if s.optional(`,"pending_amount":`) {
		ev.PendingAmount = s.int(64)
	}
	s.lit(`,"asset":`)
	ev.Asset = ledger.Asset(s.uint(16))
	s.lit(`,"kind":`)
	ev.Kind = uint16(s.uint(16))
	s.lit(`,"flags":`)
	ev.Flags = ledger.TransferFlags(s.uint(16))
	if s.optional(`,"pending_id":`) {
		ev.PendingID = s.str()
	}
	if s.optional(`,"user_data":`) {
		ev.UserData = s.str()
	}
	s.lit(`}`)
	if s.bad || len(bytes.TrimSpace(s.b)) != 0 {
		return false
	}
	*e = ev
	return true
}

// eventJSONSize is enough room for the JSON of e without escapes.
func eventJSONSize(e *ledger.Event) int {
	return 320 + len(e.PendingID) + len(e.UserData)
}
