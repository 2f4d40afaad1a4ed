package grpc_test

import (
	"context"
	"testing"

	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/ledger"
	ledgergrpc "github.com/fundplatform/fund/ledger/grpc"
	"github.com/fundplatform/fund/ledger/postgres"
)

// BenchmarkRoutedTransfers sends one-transfer requests through the routing
// client to a host serving 4 shards over loopback gRPC, from many
// goroutines. Back of the envelope for 2 cores: a unary gRPC call costs
// about 30-50 µs of CPU on both ends together, so the Go side tops out near
// 20-30k calls/s before the sequencers and Postgres (good for 50k+
// transfers/s when batches fill) are the limit.
func BenchmarkRoutedTransfers(b *testing.B) {
	ctx := context.Background()
	const shards = 4
	dbs, err := postgres.OpenDatabases(ctx, postgres.DatabasesConfig{DSNs: []string{pgtest.NewDatabase(b), pgtest.NewDatabase(b)}, Shards: shards})
	if err != nil {
		b.Fatal(err)
	}
	defer dbs.Close()
	startHost(b, dbs, "bench", 0)
	waitOwned(b, dbs, map[string]int{"bench": shards})
	c := ledgergrpc.NewClient(ledgergrpc.ClientConfig{Shards: shards}, dbs)
	defer c.Close()
	bank := make([]ledger.AccountID, shards)
	user := make([]ledger.AccountID, shards)
	for s := range bank {
		bank[s], user[s] = accountOn(1<<40, s, shards), accountOn(1000, s, shards)
		if _, err := c.CreateAccounts(ctx, []ledger.Account{{ID: bank[s], Asset: ledger.AssetCNY, Code: 1},
			{ID: user[s], Asset: ledger.AssetCNY, Code: 10}}); err != nil {
			b.Fatal(err)
		}
	}
	b.SetParallelism(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			s := i % shards
			i++
			rs, err := c.CreateTransfers(ctx, []ledger.Transfer{{ID: ledger.NewTransferID(), DebitAccountID: bank[s], CreditAccountID: user[s],
				Amount: 1, Asset: ledger.AssetCNY, Kind: 1}})
			if err != nil || rs[0].Result != ledger.ResultOK {
				b.Errorf("%v %v", rs, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "transfers/s")
}
