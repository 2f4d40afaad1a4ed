package owner

import (
	"context"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fundplatform/fund/internal/kafkabroker"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/internal/proctest"
	"github.com/fundplatform/fund/ledger"
	ledgergrpc "github.com/fundplatform/fund/ledger/grpc"
	"github.com/fundplatform/fund/ledger/postgres"
	"github.com/fundplatform/fund/ledger/xshard"
)

// An owner process with Brokers runs the whole saga pipeline
// itself: it relays its shards' outboxes to Kafka and, as a consumer group
// member, applies second legs through the routing client. The caller only
// commits leg 1 (through the routing client) and sees in-transit net to
// zero. Its HTTP endpoint serves the contract's ledger metrics and probes.
func TestLedgerProcessRunsSagaPipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	const (
		shards = 4
		topic  = "ledger-events"
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dsns := []string{pgtest.NewDatabase(t), pgtest.NewDatabase(t)}
	dbs, err := postgres.OpenDatabases(ctx, postgres.DatabasesConfig{DSNs: dsns, Shards: shards, ConnsMax: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer dbs.Close()
	broker, err := kafkabroker.Start(0, shards, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	httpAddr := proctest.FreeAddr(t)
	p := startOwner(t, child{DSNs: dsns, Shards: shards, Owner: "x", LeaseTTL: 5 * time.Second,
		Brokers: broker.Addrs(), Topic: topic, HTTPAddr: httpAddr})
	waitOwners(t, dbs, map[string]int{"x": shards}, 30*time.Second)

	client := ledgergrpc.NewClient(ledgergrpc.ClientConfig{Shards: shards}, dbs)
	defer client.Close()
	router := xshard.NewRouter(shards, client.ForShard)
	setupRouted(ctx, t, client, router, shards, 16)
	var legs []ledger.TransferID
	for i := 0; i < 16; i++ {
		dr, cr := 1000+ledger.AccountID(i), 1000+ledger.AccountID((i+5)%16)
		if ledger.ShardOf(dr, shards) == ledger.ShardOf(cr, shards) {
			continue
		}
		tr := ledger.Transfer{ID: ledger.NewTransferID(), DebitAccountID: dr, CreditAccountID: cr, Amount: 1_00, Asset: ledger.AssetCNY, Kind: 2}
		// No wait: this process applies no second legs, the owner does.
		if o, err := router.Transfer(ctx, tr, 0); err != nil || o.State != xshard.InFlight || !o.Result.Applied() {
			t.Fatalf("leg 1 of %d -> %d: %+v %v", dr, cr, o, err)
		}
		legs = append(legs, tr.ID)
	}
	if len(legs) == 0 {
		t.Fatal("no pair crossed shards")
	}
	waitInTransitZero(ctx, t, dbs)
	counts := journalCounts(ctx, t, dbs)
	for _, id := range legs {
		if counts[id] != 1 || counts[ledger.DeriveTransferID("xshard.in", id.String())] != 1 {
			t.Fatalf("saga %s: leg 1 %d times, leg 2 %d times", id, counts[id], counts[ledger.DeriveTransferID("xshard.in", id.String())])
		}
	}

	if code, body := proctest.Get(t, "http://"+httpAddr+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	_, metrics := proctest.Get(t, "http://"+httpAddr+"/metrics")
	for _, want := range []string{`fund_ledger_shard_owned{shard="0"} 1`, `fund_ledger_shard_owned{shard="3"} 1`,
		"fund_ledger_batches_total ", "fund_ledger_transfers_total ", "fund_ledger_commit_duration_seconds_bucket",
		// Second legs write outbox rows too, published moments later: the
		// lag's value is not asserted, only that each served shard has one.
		`fund_outbox_lag_events{shard="2"} `} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if err := p.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err != nil {
		t.Fatalf("clean stop: %v", err)
	}
	t.Logf("%d sagas: leg 1 by the test, relay and leg 2 by the owner process; in-transit nets to zero", len(legs))
}
