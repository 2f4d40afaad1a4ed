package gatewaybench

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/fundplatform/fund/internal/localpg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestRunSmall runs the engine briefly so that it keeps working; the
// figures are for `fundctl bench gateway`, not for tests.
func TestRunSmall(t *testing.T) {
	res, err := Run(context.Background(), Config{DSN: pgtest.NewDatabase(t), Customers: 20, Clients: 4,
		Duration: 500 * time.Millisecond, OpenRate: 40})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Phases) != 2 {
		t.Fatalf("phases %+v", res.Phases)
	}
	for _, p := range res.Phases {
		if p.OK == 0 || p.Errors != 0 || p.Rejected != 0 {
			t.Errorf("phase %+v", p)
		}
	}
	if res.OrderBatches == 0 || res.LedgerBatches == 0 {
		t.Errorf("no batch counters: %+v", res)
	}
}

func TestParseShardCounts(t *testing.T) {
	for in, want := range map[string][]int{"1,2,4,8": {1, 2, 4, 8}, "8": {8}, " 1, 8 ,1": {1, 8, 1}, "256": {256}} {
		got, err := ParseShardCounts(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ParseShardCounts(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1", "1,,2", "1;2", "two", "1.5", "257", "1,2,"} {
		if got, err := ParseShardCounts(in); err == nil {
			t.Errorf("ParseShardCounts(%q) = %v, want an error", in, got)
		}
	}
}

// TestRunShards compares two shard counts briefly: a row each, in order,
// the first the base of the ratios.
func TestRunShards(t *testing.T) {
	rows, err := RunShards(context.Background(), Config{Customers: 40, Clients: 4, Duration: 500 * time.Millisecond,
		Databases: 2}, []int{1, 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Shards != 1 || rows[0].Databases != 1 || rows[1].Shards != 4 || rows[1].Databases != 2 {
		t.Fatalf("rows %+v", rows)
	}
	for _, r := range rows {
		if r.OKPerSec == 0 || r.Errors != 0 || r.Result.LedgerBatches == 0 {
			t.Errorf("row %+v", r)
		}
	}
	if rows[0].OKPerSecRatio != 1 || rows[1].OKPerSecRatio == 0 {
		t.Errorf("ratios %+v", rows)
	}
}
