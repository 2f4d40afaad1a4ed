package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fundplatform/fund/internal/kafkabroker"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/internal/proctest"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/kafka"
	"github.com/fundplatform/fund/ledger/outbox"
	"github.com/fundplatform/fund/ledger/postgres"
)

// waitFor polls cond until it holds or within passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(within)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// metricValue reads one series from a /metrics page; -1 when absent.
func metricValue(page, series string) float64 {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(page)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return -1
	}
	return v
}

// `fundd recon` as a real process: it consumes what the relay publishes,
// serves the contract's metrics, finds a journal row rewritten behind the
// triggers on its next comparison, and stops cleanly on SIGTERM.
func TestReconProcess(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	store, err := postgres.Open(ctx, postgres.Config{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	seq := ledger.NewSequencer(ledger.SequencerConfig{}, store, nil)
	stopSeq, err := seq.Start(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer stopSeq()
	broker, err := kafkabroker.Start(0, 2, "ledger-events")
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	pub := kafka.NewPublisher(broker.Addrs(), "ledger-events")
	defer pub.Close()
	relay := outbox.NewRelay(outbox.RelayConfig{Shards: []int{0}}, store, pub, nil)
	rctx, stopRelay := context.WithCancel(ctx)
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(rctx) }()
	defer func() { stopRelay(); <-relayDone }()

	if _, err := seq.CreateAccounts(ctx, []ledger.Account{{ID: 1, Asset: ledger.AssetCNY}, {ID: 2, Asset: ledger.AssetCNY}}); err != nil {
		t.Fatal(err)
	}
	var ids []ledger.TransferID
	for i := 0; i < 20; i++ {
		id := ledger.NewTransferID()
		ids = append(ids, id)
		if rs, err := seq.CreateTransfers(ctx, []ledger.Transfer{{ID: id, DebitAccountID: 1, CreditAccountID: 2,
			Amount: int64(100 + i), Asset: ledger.AssetCNY, Kind: 1}}); err != nil || rs[0].Result != ledger.ResultOK {
			t.Fatalf("transfer: %v %v", rs, err)
		}
	}

	addr := proctest.FreeAddr(t)
	cmd := startFundd(t, "recon", "--dsn", dsn, "--kafka-brokers", strings.Join(broker.Addrs(), ","), "--shards", "1",
		"--http-addr", addr, "--grace", "1ms", "--compare-every", "200ms", "--full-every", "1s")
	page := func() string {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	waitFor(t, time.Minute, "20 events applied", func() bool {
		return metricValue(page(), `fund_recon_events_total{result="applied"}`) == 20
	})
	waitFor(t, 30*time.Second, "a clean comparison", func() bool {
		p := page()
		return metricValue(p, "fund_recon_last_compare_timestamp_seconds") > 0 &&
			metricValue(p, `fund_recon_breaks{kind="missing_event"}`) == 0
	})
	if code, _ := proctest.Get(t, "http://"+addr+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz %d", code)
	}

	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SET session_replication_role = replica`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `UPDATE transfers SET amount = amount + 1 WHERE id = $1`, ids[7]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the tampered row reported", func() bool {
		return metricValue(page(), `fund_recon_breaks{kind="amount_mismatch"}`) == 1
	})
	waitFor(t, 30*time.Second, "lag probed", func() bool {
		return metricValue(page(), "fund_recon_consumer_lag_messages") == 0
	})

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("fundd recon exited with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("fundd recon did not stop within 30 s of SIGTERM")
	}
}
