package gatewaybench

import (
	"context"
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
