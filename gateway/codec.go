package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	fundv1 "github.com/fundplatform/fund/gateway/api/fund/v1"
)

// codec is the REST JSON codec: grpc-gateway's JSONPb (protojson, proto
// names, every field present, unknown fields refused) with two shortcuts on
// the hot path, each producing exactly what JSONPb would:
//
//   - Marshal writes the API's most frequent answers (Order, Customer,
//     Holdings) with a hand-laid encoder instead of protojson's reflection,
//     which ranges, sorts and boxes every field of every answer. The output
//     is byte for byte protojson's (TestCodecMatchesProtojson compares them
//     on random messages); anything else, and any value the encoder does
//     not handle the way protojson does (invalid UTF-8, a timestamp out of
//     range, a nil message), goes to protojson.
//   - NewDecoder, given the body readBody already read and checked (one
//     well-formed JSON value), hands those bytes to protojson directly
//     instead of scanning them again through encoding/json, and decodes
//     the usual order body ({"amount": "...", "request_id": "..."}) itself
//     (decodeOrderFields; TestBodyDecoderMatchesJSONPb compares).
type codec struct {
	*runtime.JSONPb
	// Encoders of the hot messages; nil when the message's descriptor is
	// not the one the encoder was written for (see newCodec).
	order    *msgEncoder[fundv1.Order]
	customer *msgEncoder[fundv1.Customer]
	holdings *msgEncoder[fundv1.Holdings]
}

var _ runtime.Marshaler = (*codec)(nil)

// jsonPb is the protojson configuration of the REST API.
func jsonPb() *runtime.JSONPb {
	return &runtime.JSONPb{
		MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true},
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
	}
}

// newCodec builds the codec. Each fast encoder is checked against the
// message's descriptor and against protojson on a sample; one that does not
// match is left out, and its message goes through protojson.
func newCodec() *codec {
	c := &codec{JSONPb: jsonPb()}
	c.order = checkedEncoder(c.JSONPb, orderFields(), sampleOrder())
	c.customer = checkedEncoder(c.JSONPb, customerFields(), sampleCustomer())
	c.holdings = checkedEncoder(c.JSONPb, holdingsFields(), sampleHoldings())
	return c
}

// Marshal implements runtime.Marshaler.
func (c *codec) Marshal(v any) ([]byte, error) {
	switch m := v.(type) {
	case *fundv1.Order:
		if b, ok := c.order.encode(m); ok {
			return b, nil
		}
	case *fundv1.Customer:
		if b, ok := c.customer.encode(m); ok {
			return b, nil
		}
	case *fundv1.Holdings:
		if b, ok := c.holdings.encode(m); ok {
			return b, nil
		}
	}
	return c.JSONPb.Marshal(v)
}

// NewDecoder implements runtime.Marshaler.
func (c *codec) NewDecoder(r io.Reader) runtime.Decoder {
	if rb, ok := r.(*requestBody); ok {
		return &bodyDecoder{c: c, body: rb}
	}
	return c.JSONPb.NewDecoder(r)
}

// requestBody is a request body read and checked by readBody: empty (only
// white space) or one well-formed JSON value.
type requestBody struct {
	bytes.Reader
	raw []byte
	// decodeErr is the error of decoding the body into a request of type
	// target, kept for the error handler: the generated handlers pass it
	// on only as text (protojson's), which is not for the API's user, so
	// the handler finds the field at fault again (bodyViolation).
	decodeErr error
	target    protoreflect.MessageType
}

func newRequestBody(b []byte) *requestBody {
	rb := &requestBody{raw: b}
	rb.Reset(b)
	return rb
}

// Close implements io.Closer.
func (*requestBody) Close() error { return nil }

// bodyDecoder decodes a requestBody: what JSONPb's decoder does with it
// (encoding/json takes the one JSON value, protojson unmarshals it; no
// value is io.EOF), without the encoding/json pass.
type bodyDecoder struct {
	c    *codec
	body *requestBody
}

func (d *bodyDecoder) Decode(v any) error {
	err := d.decode(v)
	if err != nil && !errors.Is(err, io.EOF) {
		d.body.decodeErr = err
		if p, ok := v.(proto.Message); ok {
			d.body.target = p.ProtoReflect().Type()
		}
	}
	return err
}

func (d *bodyDecoder) decode(v any) error {
	p, ok := v.(proto.Message)
	if !ok || d.body.Len() != len(d.body.raw) {
		return d.c.JSONPb.NewDecoder(d.body).Decode(v)
	}
	// encoding/json hands protojson the value without the white space
	// around it (which shows in the positions of protojson's errors).
	raw := trimJSONSpace(d.body.raw)
	d.body.Reset(nil) // consumed, as encoding/json would have it
	if len(raw) == 0 {
		return io.EOF
	}
	if !json.Valid(raw) {
		// Not what readBody lets through (such as a body of only Unicode
		// white space): encoding/json's answer, whatever it is.
		return d.c.JSONPb.NewDecoder(bytes.NewReader(d.body.raw)).Decode(v)
	}
	if decodeOrderFields(raw, p) {
		return nil
	}
	return d.c.UnmarshalOptions.Unmarshal(raw, p)
}

// decodeOrderFields decodes, without protojson, the usual body of an order
// call: an object of its string fields amount and request_id, each at most
// once, with values that need no unescaping. For such a body it sets p as
// protojson would (it clears the message first, as protojson does) and
// returns true; for any other body, or another message, it returns false
// and leaves p alone, for protojson to decode or refuse.
func decodeOrderFields(raw []byte, p proto.Message) bool {
	var amount, requestID *string
	switch m := p.(type) {
	case *fundv1.OrderRequest:
		amount, requestID = &m.Amount, &m.RequestId
	case *fundv1.RedeemRequest:
		amount, requestID = &m.Amount, &m.RequestId
	case *fundv1.TransferRequest:
		amount, requestID = &m.Amount, &m.RequestId
	case *fundv1.PayRequest:
		amount, requestID = &m.Amount, &m.RequestId
	default:
		return false
	}
	var vals [2]string // amount, request_id
	var seen [2]bool
	b := skipJSONSpace(raw)
	if len(b) == 0 || b[0] != '{' {
		return false
	}
	b = skipJSONSpace(b[1:])
	if len(b) > 0 && b[0] == '}' {
		b = b[1:]
	} else {
		for {
			key, rest, ok := plainJSONString(b)
			if !ok {
				return false
			}
			i := -1
			switch key {
			case "amount":
				i = 0
			case "request_id":
				i = 1
			}
			if i < 0 || seen[i] {
				return false // another field, or a duplicate: protojson's to judge
			}
			b = skipJSONSpace(rest)
			if len(b) == 0 || b[0] != ':' {
				return false
			}
			val, rest, ok := plainJSONString(skipJSONSpace(b[1:]))
			if !ok {
				return false
			}
			vals[i], seen[i] = val, true
			b = skipJSONSpace(rest)
			if len(b) == 0 {
				return false
			}
			if b[0] == '}' {
				b = b[1:]
				break
			}
			if b[0] != ',' {
				return false
			}
			b = skipJSONSpace(b[1:])
		}
	}
	if len(skipJSONSpace(b)) != 0 {
		return false
	}
	proto.Reset(p)
	*amount, *requestID = vals[0], vals[1]
	return true
}

// plainJSONString reads a JSON string at the start of b that needs no
// unescaping: no backslash, no control character, valid UTF-8. It returns
// the string and what follows it.
func plainJSONString(b []byte) (string, []byte, bool) {
	if len(b) == 0 || b[0] != '"' {
		return "", nil, false
	}
	ascii := true
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			s := b[1:i]
			if !ascii && !utf8.Valid(s) {
				return "", nil, false
			}
			return string(s), b[i+1:], true
		case c == '\\' || c < ' ':
			return "", nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return "", nil, false
}

func skipJSONSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r' || b[0] == '\n') {
		b = b[1:]
	}
	return b
}

// trimJSONSpace cuts JSON's white space (space, tab, CR, LF) off both ends.
func trimJSONSpace(b []byte) []byte {
	b = skipJSONSpace(b)
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\r' || b[len(b)-1] == '\n') {
		b = b[:len(b)-1]
	}
	return b
}

// field is one field of a message M as its fast encoder writes it.
type field[M any] struct {
	name string                // proto (text) name
	kind protoreflect.Kind     // for the descriptor check
	msg  protoreflect.FullName // message fields: the message type
	// put appends the value; false = cannot match protojson, fall back.
	put func(b []byte, m *M) ([]byte, bool)
}

// msgEncoder writes one message type the way protojson does with
// UseProtoNames and EmitUnpopulated, for messages of singular scalar,
// string, enum and Timestamp fields without oneofs.
type msgEncoder[M any] struct {
	fields []field[M]
	keys   [][]byte // `"name":` after the separator, per field
	size   int      // initial buffer size
}

func (e *msgEncoder[M]) encode(m *M) ([]byte, bool) {
	if e == nil || m == nil {
		return nil, false
	}
	b := make([]byte, 0, e.size)
	b = append(b, '{')
	var ok bool
	for i := range e.fields {
		b = append(b, e.keys[i]...)
		if b, ok = e.fields[i].put(b, m); !ok {
			return nil, false
		}
	}
	return append(b, '}'), true
}

// checkedEncoder returns the encoder of fields if they are exactly the
// message's fields in declaration order (protojson's order) and if it
// writes sample as protojson does; nil otherwise. protojson puts, in some
// builds, a space after each comma (to keep callers from depending on its
// output); which separator this build uses is learnt from the sample.
func checkedEncoder[M any, PM interface {
	*M
	proto.Message
}](j *runtime.JSONPb, fields []field[M], sample PM) *msgEncoder[M] {
	fds := sample.ProtoReflect().Descriptor().Fields()
	if fds.Len() != len(fields) {
		return nil
	}
	for i, f := range fields {
		fd := fds.Get(i)
		if string(fd.TextName()) != f.name || fd.Kind() != f.kind || fd.Cardinality() == protoreflect.Repeated ||
			fd.ContainingOneof() != nil || fd.IsExtension() {
			return nil
		}
		if f.kind == protoreflect.MessageKind && fd.Message().FullName() != f.msg {
			return nil
		}
	}
	want, err := j.Marshal(sample)
	if err != nil {
		return nil
	}
	for _, sep := range []string{",", ", "} {
		e := &msgEncoder[M]{fields: fields, keys: make([][]byte, len(fields)), size: len(want) + 64}
		for i, f := range fields {
			k := `"` + f.name + `":`
			if i > 0 {
				k = sep + k
			}
			e.keys[i] = []byte(k)
		}
		if got, ok := e.encode((*M)(sample)); ok && bytes.Equal(got, want) {
			return e
		}
	}
	return nil
}

// Field writers. Each appends what protojson's encoder appends for the
// value, or reports false where protojson would do something else.

func putString(b []byte, s string) ([]byte, bool) {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				return nil, false // protojson refuses invalid UTF-8
			}
			i += n
			continue
		}
		if c >= ' ' && c != '"' && c != '\\' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"'), true
}

const hexDigits = "0123456789abcdef"

// putInt64 writes a 64-bit integer as protojson does: a JSON string.
func putInt64(b []byte, v int64) ([]byte, bool) {
	b = append(b, '"')
	b = strconv.AppendInt(b, v, 10)
	return append(b, '"'), true
}

func putBool(b []byte, v bool) ([]byte, bool) {
	if v {
		return append(b, "true"...), true
	}
	return append(b, "false"...), true
}

// enumNames are an enum's value names by number, for the numbers 0..n-1
// the enum declares.
type enumNames []string

func namesOf(d protoreflect.EnumDescriptor) enumNames {
	var names enumNames
	for n := protoreflect.EnumNumber(0); ; n++ {
		v := d.Values().ByNumber(n)
		if v == nil {
			return names
		}
		names = append(names, string(v.Name()))
	}
}

// put writes an enum as protojson does: its name as a string, or the bare
// number when the enum declares no value of that number.
func (names enumNames) put(b []byte, n protoreflect.EnumNumber, d protoreflect.EnumDescriptor) ([]byte, bool) {
	if n >= 0 && int(n) < len(names) {
		b = append(b, '"')
		b = append(b, names[n]...)
		return append(b, '"'), true
	}
	if v := d.Values().ByNumber(n); v != nil {
		b = append(b, '"')
		b = append(b, v.Name()...)
		return append(b, '"'), true
	}
	return strconv.AppendInt(b, int64(n), 10), true
}

// Timestamp limits of protojson: 0001-01-01T00:00:00Z to
// 9999-12-31T23:59:59Z.
const (
	timestampSecondsMin = -62135596800
	timestampSecondsMax = 253402300799
)

// putTimestamp writes a Timestamp as protojson does: null when absent,
// else RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits. Out of range is
// protojson's to refuse.
func putTimestamp(b []byte, ts *timestamppb.Timestamp) ([]byte, bool) {
	if ts == nil {
		return append(b, "null"...), true
	}
	secs, nanos := ts.GetSeconds(), ts.GetNanos()
	if secs < timestampSecondsMin || secs > timestampSecondsMax || nanos < 0 || nanos >= 1e9 {
		return nil, false
	}
	// protojson formats "2006-01-02T15:04:05.000000000" and trims "000",
	// "000" and ".000" off the end: the same, laid out by hand.
	t := time.Unix(secs, 0).UTC()
	year, month, day := t.Date()
	hour, minute, second := t.Clock()
	b = append(b, '"')
	b = append4(b, year)
	b = append(b, '-')
	b = append2(b, int(month))
	b = append(b, '-')
	b = append2(b, day)
	b = append(b, 'T')
	b = append2(b, hour)
	b = append(b, ':')
	b = append2(b, minute)
	b = append(b, ':')
	b = append2(b, second)
	if nanos != 0 {
		var frac [9]byte
		for i, n := 8, nanos; i >= 0; i, n = i-1, n/10 {
			frac[i] = '0' + byte(n%10)
		}
		digits := 9
		switch {
		case nanos%1e6 == 0:
			digits = 3
		case nanos%1e3 == 0:
			digits = 6
		}
		b = append(b, '.')
		b = append(b, frac[:digits]...)
	}
	return append(b, 'Z', '"'), true
}

// append2 and append4 write 0 <= v < 100 and 0 <= v < 10000 with leading
// zeros.
func append2(b []byte, v int) []byte { return append(b, '0'+byte(v/10), '0'+byte(v%10)) }

func append4(b []byte, v int) []byte {
	return append(b, '0'+byte(v/1000), '0'+byte(v/100%10), '0'+byte(v/10%10), '0'+byte(v%10))
}

const timestampName protoreflect.FullName = "google.protobuf.Timestamp"

func orderFields() []field[fundv1.Order] {
	kinds, statuses := fundv1.OrderKind(0).Descriptor(), fundv1.OrderStatus(0).Descriptor()
	kindNames, statusNames := namesOf(kinds), namesOf(statuses)
	type o = fundv1.Order
	return []field[o]{
		{name: "request_id", kind: protoreflect.StringKind, put: func(b []byte, m *o) ([]byte, bool) { return putString(b, m.RequestId) }},
		{name: "customer_id", kind: protoreflect.Int64Kind, put: func(b []byte, m *o) ([]byte, bool) { return putInt64(b, m.CustomerId) }},
		{name: "kind", kind: protoreflect.EnumKind, put: func(b []byte, m *o) ([]byte, bool) {
			return kindNames.put(b, protoreflect.EnumNumber(m.Kind), kinds)
		}},
		{name: "amount", kind: protoreflect.StringKind, put: func(b []byte, m *o) ([]byte, bool) { return putString(b, m.Amount) }},
		{name: "status", kind: protoreflect.EnumKind, put: func(b []byte, m *o) ([]byte, bool) {
			return statusNames.put(b, protoreflect.EnumNumber(m.Status), statuses)
		}},
		{name: "reason", kind: protoreflect.StringKind, put: func(b []byte, m *o) ([]byte, bool) { return putString(b, m.Reason) }},
		{name: "trade_date", kind: protoreflect.StringKind, put: func(b []byte, m *o) ([]byte, bool) { return putString(b, m.TradeDate) }},
		{name: "confirm_date", kind: protoreflect.StringKind, put: func(b []byte, m *o) ([]byte, bool) { return putString(b, m.ConfirmDate) }},
		{name: "created_at", kind: protoreflect.MessageKind, msg: timestampName, put: func(b []byte, m *o) ([]byte, bool) { return putTimestamp(b, m.CreatedAt) }},
		{name: "to_customer_id", kind: protoreflect.Int64Kind, put: func(b []byte, m *o) ([]byte, bool) { return putInt64(b, m.ToCustomerId) }},
		{name: "merchant_id", kind: protoreflect.Int64Kind, put: func(b []byte, m *o) ([]byte, bool) { return putInt64(b, m.MerchantId) }},
		{name: "incoming", kind: protoreflect.BoolKind, put: func(b []byte, m *o) ([]byte, bool) { return putBool(b, m.Incoming) }},
	}
}

func customerFields() []field[fundv1.Customer] {
	statuses := fundv1.CustomerStatus(0).Descriptor()
	statusNames := namesOf(statuses)
	type c = fundv1.Customer
	return []field[c]{
		{name: "id", kind: protoreflect.Int64Kind, put: func(b []byte, m *c) ([]byte, bool) { return putInt64(b, m.Id) }},
		{name: "request_id", kind: protoreflect.StringKind, put: func(b []byte, m *c) ([]byte, bool) { return putString(b, m.RequestId) }},
		{name: "name", kind: protoreflect.StringKind, put: func(b []byte, m *c) ([]byte, bool) { return putString(b, m.Name) }},
		{name: "status", kind: protoreflect.EnumKind, put: func(b []byte, m *c) ([]byte, bool) {
			return statusNames.put(b, protoreflect.EnumNumber(m.Status), statuses)
		}},
		{name: "created_at", kind: protoreflect.MessageKind, msg: timestampName, put: func(b []byte, m *c) ([]byte, bool) { return putTimestamp(b, m.CreatedAt) }},
	}
}

func holdingsFields() []field[fundv1.Holdings] {
	statuses := fundv1.CustomerStatus(0).Descriptor()
	statusNames := namesOf(statuses)
	type h = fundv1.Holdings
	str := func(name string, get func(*h) string) field[h] {
		return field[h]{name: name, kind: protoreflect.StringKind, put: func(b []byte, m *h) ([]byte, bool) { return putString(b, get(m)) }}
	}
	return []field[h]{
		{name: "customer_id", kind: protoreflect.Int64Kind, put: func(b []byte, m *h) ([]byte, bool) { return putInt64(b, m.CustomerId) }},
		{name: "status", kind: protoreflect.EnumKind, put: func(b []byte, m *h) ([]byte, bool) {
			return statusNames.put(b, protoreflect.EnumNumber(m.Status), statuses)
		}},
		str("cash", func(m *h) string { return m.Cash }),
		str("shares", func(m *h) string { return m.Shares }),
		str("shares_pending", func(m *h) string { return m.SharesPending }),
		str("shares_redeeming", func(m *h) string { return m.SharesRedeeming }),
		str("frozen_cash", func(m *h) string { return m.FrozenCash }),
		str("frozen_shares", func(m *h) string { return m.FrozenShares }),
		str("fast_redeem_left_today", func(m *h) string { return m.FastRedeemLeftToday }),
		str("yesterday_income", func(m *h) string { return m.YesterdayIncome }),
		str("cumulative_income", func(m *h) string { return m.CumulativeIncome }),
		str("seven_day_yield", func(m *h) string { return m.SevenDayYield }),
		str("seven_day_yield_date", func(m *h) string { return m.SevenDayYieldDate }),
	}
}

// Samples for the start-up check: every field set, so that a field the
// encoder writes in the wrong place or form shows.
func sampleOrder() *fundv1.Order {
	return &fundv1.Order{RequestId: "r-1", CustomerId: 42, Kind: fundv1.OrderKind_SUBSCRIBE, Amount: "12.34",
		Status: fundv1.OrderStatus_PENDING, Reason: "x \"y\"\n", TradeDate: "2026-01-02", ConfirmDate: "2026-01-05",
		CreatedAt: &timestamppb.Timestamp{Seconds: 1_700_000_000, Nanos: 123_000_000}, ToCustomerId: 7, MerchantId: 9, Incoming: true}
}

func sampleCustomer() *fundv1.Customer {
	return &fundv1.Customer{Id: 42, RequestId: "r-1", Name: "Zhang Wei 张伟", Status: fundv1.CustomerStatus_FROZEN,
		CreatedAt: &timestamppb.Timestamp{Seconds: 1_700_000_000, Nanos: 123_456_000}}
}

func sampleHoldings() *fundv1.Holdings {
	return &fundv1.Holdings{CustomerId: 42, Status: fundv1.CustomerStatus_ACTIVE, Cash: "1.00", Shares: "2.00",
		SharesPending: "3.00", SharesRedeeming: "4.00", FrozenCash: "5.00", FrozenShares: "6.00",
		FastRedeemLeftToday: "7.00", YesterdayIncome: "0.01", CumulativeIncome: "0.02", SevenDayYield: "2.398",
		SevenDayYieldDate: "2026-01-02"}
}

// fastEncoders reports which fast encoders are on, for the tests.
func (c *codec) fastEncoders() string {
	return fmt.Sprintf("order=%t customer=%t holdings=%t", c.order != nil, c.customer != nil, c.holdings != nil)
}
