package recon

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// A brokers' outage fails every lag probe; the worker says so once when it
// begins and once when it ends, not once per probe (a healthy platform's
// log stays quiet, and an outage is one line an operator can act on).
func TestLagProbeOutageLoggedOnce(t *testing.T) {
	var buf bytes.Buffer
	fails := 0
	w := &Worker{log: slog.New(slog.NewTextHandler(&buf, nil)), m: newMetrics(), cfg: WorkerConfig{
		LagEvery: 1 << 30,
		Lag: func(context.Context) (int64, error) {
			if fails > 0 {
				fails--
				return 0, errors.New("dial tcp: connection refused")
			}
			return 7, nil
		},
	}}
	ctx := context.Background()
	w.pollLag(ctx)
	fails = 20
	for range 25 {
		w.pollLag(ctx)
	}
	log := buf.String()
	if n := strings.Count(log, "level=WARN"); n != 1 {
		t.Fatalf("%d warnings for one outage, want 1:\n%s", n, log)
	}
	if !strings.Contains(log, "consumer lag known again") || w.Stats().Lag != 7 {
		t.Fatalf("end of the outage not noted (lag %d):\n%s", w.Stats().Lag, log)
	}
}
