package ledgerbench_test

import (
	"context"
	"testing"
	"time"

	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/ledger/ledgerbench"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// A short run of every mode the bench has must end verified: journal and
// balances agree on every shard and, with sagas, in-transit nets to zero.
// What it measures is not checked here (speed lives in `fundctl bench
// ledger`); that it measures a correct ledger is.
func TestRunEndsVerified(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  ledgerbench.Config
	}{
		{"one shard, bare", ledgerbench.Config{NoPipeline: true}},
		{"one shard, relay and consumer", ledgerbench.Config{}},
		{"4 shards, half cross-shard", ledgerbench.Config{Shards: 4, CrossShard: 0.5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.DSN = pgtest.NewDatabase(t)
			cfg.Accounts, cfg.Clients, cfg.Batch, cfg.Skew = 400, 16, 1, "uniform"
			cfg.Duration, cfg.Seed = 500*time.Millisecond, 1
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			res, err := ledgerbench.Run(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Verified || res.VerifyProblems != 0 || res.InTransitNet != 0 {
				t.Errorf("not verified: %+v", res)
			}
			if res.Transfers == 0 {
				t.Errorf("no transfer applied: %+v", res)
			}
			if want := cfg.Shards > 1 || !cfg.NoPipeline; res.Pipeline != want {
				t.Errorf("pipeline = %v, want %v", res.Pipeline, want)
			}
		})
	}
}
