package main

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// The test clock's flags: off by default (nothing is opened), a start
// without the clock or a malformed start refused before any database is
// touched.
func TestTestClockFlags(t *testing.T) {
	for name, c := range map[string]*cobra.Command{"ledger": newLedgerCmd(), "gateway": newGatewayCmd(),
		"settle": newSettleCmd(), "recon": newReconCmd()} {
		f := c.Flags().Lookup("test-clock")
		if f == nil || f.DefValue != "false" || c.Flags().Lookup("test-clock-start") == nil {
			t.Errorf("fundd %s: --test-clock %v, want a flag that defaults off, with --test-clock-start", name, f)
		}
	}
	log := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		flags testClockFlags
		err   string
	}{
		{testClockFlags{}, ""},
		{testClockFlags{start: "2026-11-09T10:00:00+08:00"}, "needs --test-clock"},
		{testClockFlags{on: true, start: "Monday"}, "RFC 3339"},
	} {
		clk, err := tc.flags.open(t.Context(), "postgres://unused", log)
		if clk != nil || tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%+v: %v, %v; want error containing %q", tc.flags, clk, err, tc.err)
		}
	}
}
