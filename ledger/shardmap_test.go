package ledger

import (
	"errors"
	"testing"
)

// Every shard is on exactly one database, each database holds one
// contiguous range, and the ranges differ in size by at most one.
func TestShardMapContiguousAndBalanced(t *testing.T) {
	for shards := 1; shards <= 70; shards++ {
		for dbs := 1; dbs <= shards && dbs <= 9; dbs++ {
			m, err := NewShardMap(shards, dbs)
			if err != nil {
				t.Fatal(err)
			}
			seen, minN, maxN := 0, shards, 0
			for db := 0; db < dbs; db++ {
				on := m.ShardsOn(db)
				if len(on) == 0 {
					t.Fatalf("%d shards on %d databases: database %d holds none", shards, dbs, db)
				}
				for i, s := range on {
					if s != seen || (i > 0 && s != on[i-1]+1) || m.DatabaseOf(s) != db {
						t.Fatalf("%d shards on %d databases: database %d holds %v", shards, dbs, db, on)
					}
					seen++
				}
				minN, maxN = min(minN, len(on)), max(maxN, len(on))
			}
			if seen != shards || maxN-minN > 1 {
				t.Fatalf("%d shards on %d databases: %d placed, sizes %d..%d", shards, dbs, seen, minN, maxN)
			}
		}
	}
	if _, err := NewShardMap(4, 5); err == nil {
		t.Fatal("5 databases for 4 shards accepted")
	}
	if _, err := NewShardMap(4, 0); err == nil {
		t.Fatal("no database accepted")
	}
}

func TestShardOfTransfers(t *testing.T) {
	const shards = 8
	on := func(shard, n int) AccountID {
		for id := AccountID(1); ; id++ {
			if ShardOf(id, shards) == shard {
				if n--; n == 0 {
					return id
				}
			}
		}
	}
	a, b, c := on(3, 1), on(3, 2), on(5, 1)
	if s, err := ShardOfTransfers([]Transfer{{DebitAccountID: a, CreditAccountID: b}, {DebitAccountID: b}}, shards); err != nil || s != 3 {
		t.Fatalf("same shard: %d %v", s, err)
	}
	if _, err := ShardOfTransfers([]Transfer{{DebitAccountID: a, CreditAccountID: c}}, shards); !errors.Is(err, ErrCrossShard) {
		t.Fatalf("across shards in one transfer: %v", err)
	}
	if _, err := ShardOfTransfers([]Transfer{{DebitAccountID: a, CreditAccountID: b}, {DebitAccountID: c, CreditAccountID: on(5, 2)}}, shards); !errors.Is(err, ErrCrossShard) {
		t.Fatalf("across shards in one request: %v", err)
	}
	if _, err := ShardOfTransfers([]Transfer{{PendingID: TransferID{1}}}, shards); !errors.Is(err, ErrShardUnknown) {
		t.Fatalf("no account named: %v", err)
	}
}

func TestParseResult(t *testing.T) {
	for r := Result(0); r < resultCount; r++ {
		if got, ok := ParseResult(r.String()); !ok || got != r {
			t.Fatalf("%s: parsed as %v %v", r, got, ok)
		}
	}
	if _, ok := ParseResult("no_such_result"); ok {
		t.Fatal("unknown name parsed")
	}
}
