package ledger

import (
	"bytes"
	"fmt"
	"math"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Accounts of the book tests.
const (
	bkSystem = AccountID(1) // CNY, no limit
	bkAlice  = AccountID(2) // CNY user holding 100
	bkBob    = AccountID(3) // CNY user holding nothing
	bkShares = AccountID(4) // fund shares
)

func newTestBook(t *testing.T) *Book {
	t.Helper()
	user := DebitsMustNotExceedCredits
	b := NewBook(0, 1, &Snapshot{
		Accounts: []Account{
			{ID: bkSystem, Asset: AssetCNY, Code: 1, DebitsPosted: 100},
			{ID: bkAlice, Asset: AssetCNY, Code: 10, Flags: user, CreditsPosted: 100},
			{ID: bkBob, Asset: AssetCNY, Code: 10, Flags: user},
			{ID: bkShares, Asset: AssetFundShares, Code: 10, Flags: user},
		},
		LastTimestamp: 1_000,
	})
	return b
}

var testIDs atomic.Uint64

func tid() TransferID {
	return DeriveTransferID("book-test", fmt.Sprint(testIDs.Add(1)))
}

func tr(dr, cr AccountID, amount int64, flags TransferFlags) Transfer {
	return Transfer{ID: tid(), DebitAccountID: dr, CreditAccountID: cr, Amount: amount, Asset: AssetCNY, Flags: flags}
}

// apply runs one request in its own batch, the way the sequencer does.
func apply(t *testing.T, b *Book, now int64, in ...Transfer) []Result {
	t.Helper()
	b.Begin(now)
	rs := make([]TransferResult, len(in))
	b.CreateTransfers(in, rs)
	if err := b.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
	out := make([]Result, len(rs))
	for i, r := range rs {
		out[i] = r.Result
		if (r.Result == ResultOK) != (r.Timestamp != 0) {
			t.Errorf("transfer %d: result %s with timestamp %d", i, r.Result, r.Timestamp)
		}
	}
	return out
}

func balanceOf(b *Book, id AccountID) [4]int64 {
	a, _ := b.Account(id)
	return [4]int64{a.DebitsPending, a.DebitsPosted, a.CreditsPending, a.CreditsPosted}
}

func TestLinkedChainResults(t *testing.T) {
	const L = Linked
	ok, lef, open := ResultOK, ResultLinkedEventFailed, ResultLinkedEventChainOpen
	cases := []struct {
		name    string
		in      func() []Transfer
		want    []Result
		entries int
	}{
		{"whole chain applies", func() []Transfer {
			return []Transfer{tr(bkSystem, bkBob, 50, L), tr(bkBob, bkAlice, 50, L), tr(bkAlice, bkBob, 10, 0)}
		}, []Result{ok, ok, ok}, 3},
		{"a member spends what an earlier member credited", func() []Transfer {
			return []Transfer{tr(bkSystem, bkBob, 50, L), tr(bkBob, bkAlice, 50, 0)}
		}, []Result{ok, ok}, 2},
		{"middle member fails", func() []Transfer {
			return []Transfer{tr(bkSystem, bkBob, 50, L), tr(bkBob, bkAlice, 80, L), tr(bkAlice, bkBob, 10, 0)}
		}, []Result{lef, ResultExceedsCredits, lef}, 0},
		{"first member fails", func() []Transfer {
			return []Transfer{tr(bkAlice, bkBob, 101, L), tr(bkSystem, bkBob, 1, 0)}
		}, []Result{ResultExceedsCredits, lef}, 0},
		{"last member fails", func() []Transfer {
			return []Transfer{tr(bkSystem, bkBob, 1, L), tr(bkSystem, bkShares, 1, 0)}
		}, []Result{lef, ResultAssetMismatch}, 0},
		{"request ends inside a chain of one", func() []Transfer {
			return []Transfer{tr(bkSystem, bkBob, 1, L)}
		}, []Result{open}, 0},
		{"request ends inside a chain of two", func() []Transfer {
			return []Transfer{tr(bkSystem, bkBob, 1, L), tr(bkSystem, bkBob, 2, L)}
		}, []Result{lef, open}, 0},
		{"open chain whose last member fails", func() []Transfer {
			return []Transfer{tr(bkSystem, bkBob, 1, L), tr(bkAlice, bkBob, 1000, L)}
		}, []Result{lef, ResultExceedsCredits}, 0},
		{"chains are independent", func() []Transfer {
			return []Transfer{
				tr(bkSystem, bkBob, 1, L), tr(bkSystem, bkBob, 1, 0), // applies
				tr(bkAlice, bkBob, 500, L), tr(bkSystem, bkBob, 1, 0), // fails
				tr(bkSystem, bkBob, 2, 0), // alone, applies
			}
		}, []Result{ok, ok, ResultExceedsCredits, lef, ok}, 3},
		{"a pending transfer and its post, rolled back", func() []Transfer {
			p := tr(bkAlice, bkBob, 60, Pending|L)
			post := Transfer{ID: tid(), PendingID: p.ID, Flags: PostPending | L}
			return []Transfer{p, post, tr(bkSystem, bkShares, 1, 0)}
		}, []Result{lef, lef, ResultAssetMismatch}, 0},
		{"a pending transfer posted in its chain", func() []Transfer {
			p := tr(bkAlice, bkBob, 60, Pending|L)
			return []Transfer{p, {ID: tid(), PendingID: p.ID, Flags: PostPending, Amount: 20}}
		}, []Result{ok, ok}, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newTestBook(t)
			before := map[AccountID][4]int64{}
			for _, id := range []AccountID{bkSystem, bkAlice, bkBob, bkShares} {
				before[id] = balanceOf(b, id)
			}
			in := c.in()
			got := apply(t, b, 2_000, in...)
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
			if n := len(b.out.Transfers); n != c.entries {
				t.Errorf("%d journal entries, want %d", n, c.entries)
			}
			if c.entries == 0 {
				for id, bal := range before {
					if now := balanceOf(b, id); now != bal {
						t.Errorf("account %d changed by a failed request: %v -> %v", id, bal, now)
					}
				}
				// Nothing of a failed chain is remembered: the same
				// transfers, once the failing one is fixed or dropped,
				// apply as new.
				for i := range in {
					if got[i] == ResultLinkedEventFailed {
						if _, known := b.ids.get(in[i].ID); known {
							t.Errorf("member %d of a failed chain left its id behind", i)
						}
						if _, known := b.pendings[in[i].ID]; known {
							t.Errorf("member %d of a failed chain left a pending transfer behind", i)
						}
					}
				}
			}
		})
	}
}

// TestFailedChainKeepsEarlierHolds: a chain that posts an existing hold and
// then fails leaves the hold open and untouched.
func TestFailedChainKeepsEarlierHolds(t *testing.T) {
	b := newTestBook(t)
	hold := tr(bkAlice, bkBob, 60, Pending)
	if got := apply(t, b, 2_000, hold); got[0] != ResultOK {
		t.Fatalf("hold: %s", got[0])
	}
	held := balanceOf(b, bkAlice)
	post := Transfer{ID: tid(), PendingID: hold.ID, Flags: PostPending | Linked}
	got := apply(t, b, 3_000, post, tr(bkSystem, bkShares, 1, 0))
	if fmt.Sprint(got) != fmt.Sprint([]Result{ResultLinkedEventFailed, ResultAssetMismatch}) {
		t.Fatalf("got %v", got)
	}
	if now := balanceOf(b, bkAlice); now != held {
		t.Fatalf("alice: %v -> %v", held, now)
	}
	if p := b.pendings[hold.ID]; p == nil || p.State != PendingOpen {
		t.Fatalf("hold after the failed chain: %+v", p)
	}
	post.Flags = PostPending
	if got := apply(t, b, 4_000, post); got[0] != ResultOK {
		t.Fatalf("post after the failed chain: %s", got[0])
	}
	if now := balanceOf(b, bkAlice); now != [4]int64{0, 60, 0, 100} {
		t.Fatalf("alice after the post: %v", now)
	}
}

// TestBookKeepsIDsItWasAskedAbout follows the sequencer's order of calls:
// Missing decides which ids to fetch from the store, then Begin opens the
// batch. An id Missing found in memory must still be known when the batch
// applies. If the id generations rotated in Begin, after Missing ran, an id
// of the oldest generation would be forgotten in between and a retry
// applied a second time (Postgres then refuses the whole batch on the
// duplicate transfer_ids key, failing every request in it). The same holds
// for resolved pending transfers and the sweep.
func TestBookKeepsIDsItWasAskedAbout(t *testing.T) {
	t.Run("ids", func(t *testing.T) {
		b := newTestBook(t)
		b.ids = newGenMap(2) // a generation of two ids instead of a million
		first := tr(bkSystem, bkBob, 1, 0)
		apply(t, b, 2_000, first, tr(bkSystem, bkBob, 1, 0))                     // fills a generation
		apply(t, b, 3_000, tr(bkSystem, bkBob, 1, 0), tr(bkSystem, bkBob, 1, 0)) // rotates, fills the next
		if missing, _ := b.Missing([]Transfer{first}, nil, nil); len(missing) != 0 {
			t.Fatalf("Missing asks the store for %v", missing)
		}
		if got := apply(t, b, 4_000, first); got[0] != ResultExists {
			t.Errorf("retry of an id the book had in memory when Missing ran: %s, want %s", got[0], ResultExists)
		}
	})
	t.Run("pending", func(t *testing.T) {
		b := newTestBook(t)
		b.pendingsMax = 1
		hold := tr(bkAlice, bkBob, 10, Pending)
		apply(t, b, 2_000, hold, Transfer{ID: tid(), PendingID: hold.ID, Flags: VoidPending})
		apply(t, b, 3_000, tr(bkAlice, bkBob, 10, Pending))
		again := Transfer{ID: tid(), PendingID: hold.ID, Flags: PostPending}
		if _, pmissing := b.Missing([]Transfer{again}, nil, nil); len(pmissing) != 0 {
			t.Fatalf("Missing asks for %v", pmissing)
		}
		if got := apply(t, b, 4_000, again); got[0] != ResultPendingTransferAlreadyVoided {
			t.Errorf("post of a voided hold the book had in memory when Missing ran: %s, want %s", got[0], ResultPendingTransferAlreadyVoided)
		}
	})
}

func TestTransferIDStringRoundTrip(t *testing.T) {
	form := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	ids := []TransferID{{}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		DeriveTransferID("ns", "a"), ExpiryTransferID(DeriveTransferID("ns", "b"))}
	for i := range 1000 {
		var id TransferID
		for j := range id {
			id[j] = byte(i * (j + 7))
		}
		ids = append(ids, id, NewTransferID())
	}
	for _, id := range ids {
		s := id.String()
		if !form.MatchString(s) {
			t.Fatalf("%x formats as %q", id[:], s)
		}
		back, err := ParseTransferID(s)
		if err != nil || back != id {
			t.Fatalf("%q parses as %x, %v; want %x", s, back[:], err, id[:])
		}
		upper, err := ParseTransferID(strings.ToUpper(s))
		if err != nil || upper != id {
			t.Fatalf("upper case %q: %x, %v", strings.ToUpper(s), upper[:], err)
		}
	}
	// A known value, byte order included.
	id, err := ParseTransferID("00112233-4455-6677-8899-aabbccddeeff")
	if err != nil || !bytes.Equal(id[:], []byte{0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}) {
		t.Fatalf("known id: %x %v", id[:], err)
	}
}

func TestParseTransferIDRejects(t *testing.T) {
	for _, s := range []string{
		"",
		"00112233-4455-6677-8899-aabbccddeef",   // short
		"00112233-4455-6677-8899-aabbccddeeff0", // long
		"0011223344556677-8899-aabb-ccddeeff",   // hyphens moved
		"00112233+4455-6677-8899-aabbccddeeff",
		"001122334455667788990aabbccddeeff00",  // no hyphens, 36 chars
		"0011223g-4455-6677-8899-aabbccddeeff", // not hex
		"00112233-4455-6677-8899-aabbccddee f",
		"{0112233-4455-6677-8899-aabbccddeeff",
	} {
		if id, err := ParseTransferID(s); err == nil {
			t.Errorf("ParseTransferID(%q) = %x, want an error", s, id[:])
		}
	}
}

func TestNewAndDerivedTransferIDs(t *testing.T) {
	seen := map[TransferID]bool{}
	for range 10_000 {
		id := NewTransferID()
		if id.IsZero() || seen[id] {
			t.Fatalf("NewTransferID repeated or zero: %s", id)
		}
		seen[id] = true
		if id[6]>>4 != 4 || id[8]>>6 != 2 {
			t.Fatalf("NewTransferID %s: not a version 4 layout", id)
		}
	}
	a := DeriveTransferID("orders", "42", "abc")
	if a != DeriveTransferID("orders", "42", "abc") {
		t.Fatal("DeriveTransferID is not deterministic")
	}
	if a[6]>>4 != 5 || a[8]>>6 != 2 {
		t.Fatalf("DeriveTransferID %s: not a version 5 layout", a)
	}
	// Parts are separated: moving a boundary or the namespace changes the id.
	for _, other := range []TransferID{
		DeriveTransferID("orders", "4", "2abc"),
		DeriveTransferID("orders", "42abc"),
		DeriveTransferID("orders42", "abc"),
		DeriveTransferID("other", "42", "abc"),
		ExpiryTransferID(a),
	} {
		if other == a {
			t.Fatalf("DeriveTransferID collides: %s", a)
		}
	}
}

func TestShardOfSpread(t *testing.T) {
	for _, shards := range []int{0, 1, -3} {
		for _, id := range []AccountID{1, 2, 1 << 40, -5, math.MaxInt64} {
			if s := ShardOf(id, shards); s != 0 {
				t.Fatalf("ShardOf(%d, %d) = %d, want 0", id, shards, s)
			}
		}
	}
	// Sequential homes, and homes in strides that a naive modulo would
	// pile onto one shard, spread within a few percent of even.
	for _, shards := range []int{2, 3, 16, 64, 1000} {
		for _, stride := range []int64{1, int64(shards), 1024, 1 << 20} {
			const perShard = 2_000
			counts := make([]int, shards)
			for i := int64(1); i <= int64(shards*perShard); i++ {
				s := ShardOf(AccountID(i*stride)<<4, shards)
				if s < 0 || s >= shards {
					t.Fatalf("ShardOf(%d, %d) = %d", i*stride<<4, shards, s)
				}
				counts[s]++
			}
			// perShard is 2000: the standard deviation of a fair split is
			// about 45, so 15% is over six of them.
			for s, n := range counts {
				if n < perShard*85/100 || n > perShard*115/100 {
					t.Fatalf("%d shards, stride %d: shard %d got %d ids, want about %d", shards, stride, s, n, perShard)
				}
			}
		}
	}
	// Only the home decides: the slot (low 4 bits) and the namespace (top
	// 20) do not move an account, and OnShard finds a copy on each shard
	// with the same slot and namespace.
	for home := int64(1); home < 5000; home += 7 {
		base := WithHome(0, home)
		for _, other := range []AccountID{base | 0xf, base | 1<<62 | 9<<44 | 3, base | 1<<61 | 7} {
			if HomeOf(other) != home || ShardOf(other, 64) != ShardOf(base, 64) {
				t.Fatalf("account %d (home %d) on shard %d, its home's shard is %d", other, HomeOf(other), ShardOf(other, 64), ShardOf(base, 64))
			}
		}
	}
	for _, canonical := range []AccountID{1<<61 | 3, 1<<60 | 5<<16} {
		for _, shards := range []int{1, 8, 64} {
			for shard := range shards {
				c := OnShard(canonical, shard, shards)
				if ShardOf(c, shards) != shard || c&0xf != canonical&0xf || c>>44 != canonical>>44 {
					t.Fatalf("OnShard(%d, %d, %d) = %d on shard %d", canonical, shard, shards, c, ShardOf(c, shards))
				}
			}
		}
		if OnShard(canonical, 0, 1) != canonical {
			t.Fatalf("one shard: OnShard(%d) = %d, want itself", canonical, OnShard(canonical, 0, 1))
		}
	}
	// Stable: the same answer every time (a pure function of its input).
	for id := AccountID(1); id < 1000; id++ {
		if ShardOf(id, 16) != ShardOf(id, 16) {
			t.Fatal("ShardOf is not stable")
		}
	}
}

func TestBusinessDateIsCST(t *testing.T) {
	cst := time.FixedZone("", 8*3600)
	for _, c := range []struct {
		at   time.Time
		date string
	}{
		{time.Date(2031, 12, 31, 23, 59, 59, 999_999_999, cst), "2031-12-31"},
		{time.Date(2032, 1, 1, 0, 0, 0, 0, cst), "2032-01-01"},
		{time.Date(2031, 12, 31, 16, 0, 0, 0, time.UTC), "2032-01-01"},
		{time.Date(2031, 12, 31, 15, 59, 59, 0, time.UTC), "2031-12-31"},
	} {
		if got := BusinessDate(c.at.UnixNano()).Format(time.DateOnly); got != c.date {
			t.Errorf("BusinessDate(%v) = %s, want %s", c.at, got, c.date)
		}
	}
}

// TestRepeatedIDInChainIsNotReportedApplied: a request that repeats an id
// inside one chain cannot apply (the chain is refused). No element may
// then answer a result whose Applied() is true for an id the ledger does
// not hold: the client would take the transfer as done.
func TestRepeatedIDInChainIsNotReportedApplied(t *testing.T) {
	b := newTestBook(t)
	a := tr(bkSystem, bkBob, 5, Linked)
	other := tr(bkSystem, bkBob, 6, Linked)
	last := a
	last.Flags = 0
	for _, in := range [][]Transfer{{a, a}, {a, other, a}, {a, last}} {
		b.Begin(2_000)
		rs := make([]TransferResult, len(in))
		b.CreateTransfers(in, rs)
		held := map[TransferID]bool{}
		for _, e := range b.out.Transfers {
			held[e.ID] = true
		}
		for i, r := range rs {
			if r.Result.Applied() && !held[in[i].ID] {
				t.Errorf("request %d transfers: element %d answers %s, but %s was not applied", len(in), i, r.Result, in[i].ID)
			}
		}
	}
}
