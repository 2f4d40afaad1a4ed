package gatewaybench

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"
)

func TestScratchRun(t *testing.T) {
	w, _ := strconv.Atoi(os.Getenv("W"))
	c, _ := strconv.Atoi(os.Getenv("C"))
	f, _ := strconv.ParseFloat(os.Getenv("F"), 64)
	res, err := Run(context.Background(), Config{Duration: 5 * time.Second, Customers: 2000, Clients: c, OrderWriters: w, OpenRateFactor: f})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Phases {
		t.Logf("%+v", p)
	}
	t.Logf("batches %d mean %.1f steps %v ledger %d/%d", res.OrderBatches, res.OrderBatchMean, res.OrderStepsMs, res.LedgerBatches, res.LedgerEvents)
	t.Logf("ledger steps %v", res.LedgerStepsMs)
}
