package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	fundv1 "github.com/fundplatform/fund/gateway/api/fund/v1"
	"github.com/fundplatform/fund/internal/testseed"
)

func TestCodecFastEncodersOn(t *testing.T) {
	c := newCodec()
	if got, want := c.fastEncoders(), "order=true customer=true holdings=true"; got != want {
		t.Fatalf("fast encoders %s, want %s: a message changed; update codec.go's field lists", got, want)
	}
}

// randString mixes what JSON escaping treats differently: plain ASCII,
// quotes and backslashes, control characters, DEL, multi-byte UTF-8
// (including U+FFFD and U+2028) and, now and then, invalid UTF-8.
func randString(r *rand.Rand) string {
	if r.IntN(8) == 0 {
		return ""
	}
	pieces := []string{"a", "Z", "0", " ", "\"", "\\", "/", "\n", "\r", "\t", "\b", "\f", "\x00", "\x01", "\x1f",
		"\x7f", "é", "张伟", "\u2028", "\ufffd", "😀", "<", ">", "&", "2026-01-02", "12.34"}
	var b strings.Builder
	invalid := r.IntN(30) == 0 // one string in 30 may hold invalid UTF-8
	for n := r.IntN(12); n >= 0; n-- {
		switch k := r.IntN(40); {
		case k == 0 && invalid:
			b.WriteByte(byte(0x80 + r.IntN(0x80))) // a stray continuation or lead byte
		case k == 1 && invalid:
			b.WriteString("\xed\xa0\x80") // a UTF-16 surrogate: invalid UTF-8
		case k < 6:
			b.WriteRune(rune(r.IntN(0x20))) // any control character
		default:
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
	}
	return b.String()
}

func randInt64(r *rand.Rand) int64 {
	switch r.IntN(6) {
	case 0:
		return 0
	case 1:
		return []int64{math.MinInt64, math.MaxInt64, -1, 1}[r.IntN(4)]
	case 2:
		return -r.Int64N(1 << 40)
	}
	return r.Int64N(1 << 50)
}

func randEnum(r *rand.Rand, n int32) int32 {
	if r.IntN(10) == 0 {
		return []int32{-1, n, n + 5, math.MaxInt32, math.MinInt32}[r.IntN(5)]
	}
	return r.Int32N(n)
}

func randTimestamp(r *rand.Rand) *timestamppb.Timestamp {
	switch r.IntN(10) {
	case 0:
		return nil
	case 1:
		return &timestamppb.Timestamp{}
	case 2: // out of range (protojson refuses) or at the edges
		secs := []int64{timestampSecondsMin - 1, timestampSecondsMax + 1, timestampSecondsMin, timestampSecondsMax, 0}[r.IntN(5)]
		nanos := []int32{-1, 1e9, 999_999_999, 0}[r.IntN(4)]
		return &timestamppb.Timestamp{Seconds: secs, Nanos: nanos}
	}
	secs := timestampSecondsMin + r.Int64N(timestampSecondsMax-timestampSecondsMin+1)
	nanos := r.Int32N(1e9)
	switch r.IntN(4) { // whole seconds, milli-, micro- and nanoseconds
	case 0:
		nanos = 0
	case 1:
		nanos -= nanos % 1e6
	case 2:
		nanos -= nanos % 1e3
	}
	return &timestamppb.Timestamp{Seconds: secs, Nanos: nanos}
}

func randOrder(r *rand.Rand) *fundv1.Order {
	return &fundv1.Order{RequestId: randString(r), CustomerId: randInt64(r), Kind: fundv1.OrderKind(randEnum(r, 8)),
		Amount: randString(r), Status: fundv1.OrderStatus(randEnum(r, 4)), Reason: randString(r),
		TradeDate: randString(r), ConfirmDate: randString(r), CreatedAt: randTimestamp(r),
		ToCustomerId: randInt64(r), MerchantId: randInt64(r), Incoming: r.IntN(2) == 0}
}

func randCustomer(r *rand.Rand) *fundv1.Customer {
	return &fundv1.Customer{Id: randInt64(r), RequestId: randString(r), Name: randString(r),
		Status: fundv1.CustomerStatus(randEnum(r, 4)), CreatedAt: randTimestamp(r)}
}

func randHoldings(r *rand.Rand) *fundv1.Holdings {
	return &fundv1.Holdings{CustomerId: randInt64(r), Status: fundv1.CustomerStatus(randEnum(r, 4)),
		Cash: randString(r), Shares: randString(r), SharesPending: randString(r), SharesRedeeming: randString(r),
		FrozenCash: randString(r), FrozenShares: randString(r), FastRedeemLeftToday: randString(r),
		YesterdayIncome: randString(r), CumulativeIncome: randString(r), SevenDayYield: randString(r),
		SevenDayYieldDate: randString(r)}
}

// TestCodecMatchesProtojson: for random messages of every kind the codec
// writes by hand (and a few it passes on), its output is protojson's byte
// for byte, and it fails exactly when protojson fails.
func TestCodecMatchesProtojson(t *testing.T) {
	r := rand.New(rand.NewPCG(testseed.Seed(t), 0))
	c, ref := newCodec(), jsonPb()
	gens := []func(*rand.Rand) any{
		func(r *rand.Rand) any { return randOrder(r) },
		func(r *rand.Rand) any { return randCustomer(r) },
		func(r *rand.Rand) any { return randHoldings(r) },
		func(r *rand.Rand) any { return &fundv1.Order{} },
		func(r *rand.Rand) any { return (*fundv1.Order)(nil) },
		func(r *rand.Rand) any {
			return &fundv1.ListTransactionsResponse{Transactions: []*fundv1.Order{randOrder(r)}, NextPageToken: randString(r)}
		},
		func(r *rand.Rand) any {
			return withDetails(codes.Code(r.IntN(17)), randString(r),
				&errdetails.ErrorInfo{Reason: "X", Domain: errorDomain}, randOrder(r)).Proto()
		},
	}
	const n = 20_000
	var failed, fast int
	for i := range n {
		m := gens[r.IntN(len(gens))](r)
		want, werr := ref.Marshal(m)
		got, gerr := c.Marshal(m)
		if (werr != nil) != (gerr != nil) || !bytes.Equal(got, want) {
			t.Errorf("message %d (%T %v):\n got  %s (err %v)\n want %s (err %v)", i, m, m, got, gerr, want, werr)
			if failed++; failed > 5 {
				t.FailNow()
			}
		}
		if werr == nil {
			fast++
		}
	}
	t.Logf("%d messages, %d encoded", n, fast)
}

// TestBodyDecoderMatchesJSONPb: the decoder of a checked body decodes as
// JSONPb's (encoding/json, then protojson) does: same message, same error
// text, io.EOF for an empty body; bodies of the shape decodeOrderFields
// takes on itself are frequent.
func TestBodyDecoderMatchesJSONPb(t *testing.T) {
	r := rand.New(rand.NewPCG(testseed.Seed(t), 0))
	c := newCodec()
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	ws := func() string {
		if r.IntN(3) != 0 {
			return ""
		}
		return pick(" ", "\n", "\t", "\r\n", "  ")
	}
	value := func() string {
		if r.IntN(4) == 0 {
			return pick(`1`, `-5`, `null`, `true`, `[]`, `{}`, `1e3`, `"FAST"`, `2`, `"\ud800"`, `"a\"b"`, `"\u00e9"`,
				`"\n"`, `"a\\b"`, `"\/"`, "\"\xff\"", "\"\xe9\"", "\"a\x7fb\"")
		}
		return strconv.Quote(pick("1.00", "0.01", "", "k1", "x y", "张伟", "é", "9999999999.99", "-1", "1e2", "FAST", "2"))
	}
	keys := []string{"amount", "request_id", "amount", "request_id", "customer_id", "mode", "to_customer_id",
		"merchant_id", "unknown", "requestId", "Amount", "amount\u0000", "a\\mount"}
	var checked, direct int
	defer func() { t.Logf("%d bodies, %d decoded without protojson", checked, direct) }()
	for i := range 20_000 {
		var body string
		switch r.IntN(12) {
		case 0:
			body = pick("", " ", "\n\t", "null", "[]", `"x"`, "1", "\u00a0", " \u0085 ", "\r\n", "{}", " { } ", "{,}", `{"amount"}`)
		default:
			var fs []string
			for n := r.IntN(4); n > 0; n-- {
				fs = append(fs, ws()+`"`+pick(keys...)+`"`+ws()+":"+ws()+value()+ws())
			}
			body = ws() + "{" + strings.Join(fs, ",") + ws() + "}" + ws()
		}
		if !json.Valid([]byte(body)) && strings.TrimSpace(body) != "" {
			continue // readBody refuses it before any decoder sees it
		}
		checked++
		if decodeOrderFields(trimJSONSpace([]byte(body)), &fundv1.OrderRequest{}) {
			direct++
		}
		for _, newMsg := range []func() proto.Message{
			func() proto.Message { return &fundv1.OrderRequest{} },
			func() proto.Message { return &fundv1.RedeemRequest{} },
			func() proto.Message { return &fundv1.TransferRequest{} },
			func() proto.Message { return &fundv1.PayRequest{} },
			func() proto.Message { return &fundv1.GetOrderRequest{} },
		} {
			want, got := newMsg(), newMsg()
			werr := c.JSONPb.NewDecoder(bytes.NewReader([]byte(body))).Decode(want)
			gerr := c.NewDecoder(newRequestBody([]byte(body))).Decode(got)
			if errors.Is(werr, io.EOF) != errors.Is(gerr, io.EOF) || (werr == nil) != (gerr == nil) ||
				(werr != nil && werr.Error() != gerr.Error()) || !proto.Equal(want, got) {
				t.Fatalf("body %d %q into %T: got %v (%v), want %v (%v)", i, body, want, got, gerr, want, werr)
			}
		}
	}
}

func BenchmarkCodecDecodeOrder(b *testing.B) {
	c := newCodec()
	body := []byte(`{"amount":"0.01","request_id":"k1"}`)
	for _, bc := range []struct {
		name   string
		decode func(proto.Message) error
	}{
		{"jsonpb", func(m proto.Message) error { return c.JSONPb.NewDecoder(bytes.NewReader(body)).Decode(m) }},
		{"codec", func(m proto.Message) error { return c.NewDecoder(newRequestBody(body)).Decode(m) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := bc.decode(&fundv1.OrderRequest{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkCodecOrder(b *testing.B) {
	m := sampleOrder()
	for _, bc := range []struct {
		name string
		m    interface{ Marshal(any) ([]byte, error) }
	}{{"protojson", jsonPb()}, {"codec", newCodec()}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.m.Marshal(m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
