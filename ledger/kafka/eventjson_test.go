package kafka

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/fundplatform/fund/internal/testseed"
	"github.com/fundplatform/fund/ledger"
)

// The hand-written codec is encoding/json's, byte for byte on the way out
// and value for value (or error for error) on the way in.
func TestEventJSONMatchesEncodingJSON(t *testing.T) {
	seed := testseed.Seed(t)
	rng := rand.New(rand.NewPCG(seed, seed^0x9E3779B97F4A7C15))
	// Ids from the seed too, so that a replay makes the same events.
	newID := func() (id ledger.TransferID) {
		binary.LittleEndian.PutUint64(id[:8], rng.Uint64())
		binary.LittleEndian.PutUint64(id[8:], rng.Uint64())
		return id
	}
	strs := []string{"", "x:123:2:", "plain", `quote"inside`, `back\slash`, "<html>&amp;", "tab\tnew\nline",
		"ünïcødé 收益", "\x00\x1f", "\xff\xfe invalid", "\u2028\u2029", "emoji 😀"}
	ints := []int64{0, 1, -1, 42, math.MaxInt64, math.MinInt64, 1 << 40}
	for i := 0; i < 5000; i++ {
		e := ledger.Event{
			Version: rng.IntN(3), Shard: rng.IntN(70), ID: newID(), Timestamp: ints[rng.IntN(len(ints))],
			DebitAccountID: ledger.AccountID(ints[rng.IntN(len(ints))]), CreditAccountID: ledger.AccountID(rng.Int64()),
			Amount: ints[rng.IntN(len(ints))], Asset: ledger.Asset(rng.IntN(1 << 16)), Kind: uint16(rng.IntN(1 << 16)),
			Flags: ledger.TransferFlags(rng.IntN(1 << 16)), UserData: strs[rng.IntN(len(strs))],
		}
		if rng.IntN(3) == 0 {
			e.PendingAmount = ints[rng.IntN(len(ints))]
		}
		if rng.IntN(3) == 0 {
			e.PendingID = strs[rng.IntN(len(strs))]
		}
		want, err := json.Marshal(&e)
		if err != nil {
			t.Fatal(err)
		}
		got := appendEventJSON(nil, &e)
		if !bytes.Equal(got, want) {
			t.Fatalf("encode %+v:\n got %s\nwant %s", e, got, want)
		}
		checkDecode(t, want)
	}
	// Other producers' forms: another order, spaces, unknown fields, bad
	// numbers, escapes.
	for _, in := range []string{
		`{"shard":1,"v":1,"id":"0190a5d6-8e4a-4b6c-9f1e-0a1b2c3d4e5f","ts":5,"debit_account_id":1,"credit_account_id":2,"amount":3,"asset":1,"kind":2,"flags":0}`,
		`{"v":1, "shard":1,"id":"0190a5d6-8e4a-4b6c-9f1e-0a1b2c3d4e5f","ts":5,"debit_account_id":1,"credit_account_id":2,"amount":3,"asset":1,"kind":2,"flags":0}`,
		`{"v":1,"shard":1,"id":"0190a5d6-8e4a-4b6c-9f1e-0a1b2c3d4e5f","ts":5,"debit_account_id":1,"credit_account_id":2,"amount":3,"asset":1,"kind":2,"flags":0,"extra":7}`,
		`{"v":1,"shard":1,"id":"0190a5d6-8e4a-4b6c-9f1e-0a1b2c3d4e5f","ts":05,"debit_account_id":1,"credit_account_id":2,"amount":3,"asset":1,"kind":2,"flags":0}`,
		`{"v":1,"shard":1,"id":"0190a5d6-8e4a-4b6c-9f1e-0a1b2c3d4e5f","ts":5,"debit_account_id":1,"credit_account_id":2,"amount":3,"asset":70000,"kind":2,"flags":0}`,
		`{"v":1,"shard":1,"id":"not-a-uuid","ts":5,"debit_account_id":1,"credit_account_id":2,"amount":3,"asset":1,"kind":2,"flags":0}`,
		`{"v":1,"shard":1,"id":"0190a5d6-8e4a-4b6c-9f1e-0a1b2c3d4e5f","ts":5,"debit_account_id":1,"credit_account_id":2,"amount":3,"asset":1,"kind":2,"flags":0,"user_data":"a\u0041\"b"}`,
		`{"v":1,"shard":1,"id":"0190a5d6-8e4a-4b6c-9f1e-0a1b2c3d4e5f","ts":5,"debit_account_id":1,"credit_account_id":2,"amount":3,"asset":1,"kind":2,"flags":0} `,
		`{"v":1,"shard":1,"id":"0190a5d6-8e4a-4b6c-9f1e-0a1b2c3d4e5f","ts":5,"debit_account_id":1,"credit_account_id":2,"amount":3,"asset":1,"kind":2,"flags":0}x`,
		`{"v":1,"shard":1,"id":"0190a5d6-8e4a-4b6c-9f1e-0a1b2c3d4e5f","ts":5,"debit_account_id":1,"credit_account_id":2,"amount":-0,"asset":1,"kind":2,"flags":0}`,
		`{"v":1,"shard":-,"id":"0190a5d6-8e4a-4b6c-9f1e-0a1b2c3d4e5f"}`,
		`{"v":1}`, ``, `null`, `{}`,
	} {
		checkDecode(t, []byte(in))
	}
}

func checkDecode(t *testing.T, data []byte) {
	t.Helper()
	var want, got ledger.Event
	wantErr := json.Unmarshal(data, &want)
	gotErr := decodeEvent(data, &got)
	if (wantErr != nil) != (gotErr != nil) {
		t.Fatalf("decode %s: err %v, encoding/json says %v", data, gotErr, wantErr)
	}
	if wantErr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("decode %s:\n got %+v\nwant %+v", data, got, want)
	}
}
