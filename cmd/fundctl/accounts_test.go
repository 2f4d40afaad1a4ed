package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/fundplatform/fund/deploy/localpg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// fundctl runs one command line and returns its standard output.
func fundctl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// TestAccountsCommands walks a customer through the CLI: open, top up,
// subscribe, a retried fast redemption, a conflicting retry, bad input,
// holdings and history, in table and JSON form.
func TestAccountsCommands(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	run := func(args ...string) string {
		t.Helper()
		out, err := fundctl(t, append([]string{"accounts", "--dsn", dsn}, args...)...)
		if err != nil {
			t.Fatalf("fundctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	out := run("open", "Alice", "--json")
	var c struct {
		ID     int64  `json:"id"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &c); err != nil || c.ID != 1 || c.Status != "active" {
		t.Fatalf("open: %s (%v)", out, err)
	}
	run("open", "Bob")
	run("top-up", "1", "1000.50", "--request-id", "t1")
	run("subscribe", "1", "300", "--request-id", "s1")
	run("transfer", "1", "2", "0.50", "--request-id", "x1")
	// The shares are not confirmed yet, so there is nothing to redeem: the
	// order is stored as rejected, shown, and the exit status says so.
	out, err := fundctl(t, "accounts", "--dsn", dsn, "fast-redeem", "1", "100.00", "--request-id", "f1")
	if err == nil || !strings.Contains(err.Error(), "insufficient") || !strings.Contains(out, "rejected") {
		t.Fatalf("fast redeem of unconfirmed shares: %v\n%s", err, out)
	}
	if _, err := fundctl(t, "accounts", "--dsn", dsn, "withdraw", "1", "1000.50", "--request-id", "t1"); err == nil ||
		!strings.Contains(err.Error(), "different order") {
		t.Fatalf("conflicting retry: %v", err)
	}
	for _, bad := range []string{"0", "-1", "0.001", "1e3", "NaN", "", "99999999999999999999"} {
		// "--" so that "-1" reaches the command as an argument, not a flag.
		if _, err := fundctl(t, "accounts", "--dsn", dsn, "top-up", "--request-id", "bad", "--", "1", bad); err == nil ||
			!strings.Contains(err.Error(), "amount") {
			t.Fatalf("top-up %q: %v", bad, err)
		}
	}
	out = run("holdings", "1")
	for _, want := range []string{"available cash                700.00", "shares awaiting confirmation  300.00"} {
		if !strings.Contains(out, want) {
			t.Fatalf("holdings lack %q:\n%s", want, out)
		}
	}
	out = run("history", "1", "--limit", "2", "--json")
	var page struct {
		Orders []struct {
			RequestID string `json:"request_id"`
			Amount    string `json:"amount"`
		} `json:"orders"`
		NextCursor string `json:"next_cursor"`
	}
	if err := json.Unmarshal([]byte(out), &page); err != nil || len(page.Orders) != 2 || page.NextCursor == "" ||
		page.Orders[0].RequestID != "f1" || page.Orders[1].Amount != "0.50" {
		t.Fatalf("history: %s (%v)", out, err)
	}
	out = run("history", "1", "--cursor", page.NextCursor)
	if !strings.Contains(out, "s1") || !strings.Contains(out, "t1") || strings.Contains(out, "f1") {
		t.Fatalf("second page:\n%s", out)
	}
	out = run("history", "2", "--kind", "transfer")
	if !strings.Contains(out, "transfer (in)") {
		t.Fatalf("recipient's history:\n%s", out)
	}
	out = run("order", "1", "s1")
	if !strings.Contains(out, "pending") {
		t.Fatalf("order status:\n%s", out)
	}
	run("holiday", "add", "2026-10-01", "National Day")
	out = run("holiday", "list", "--json")
	if !strings.Contains(out, `"2026-10-01"`) {
		t.Fatalf("holidays: %s", out)
	}
	run("freeze", "2")
	if _, err := fundctl(t, "accounts", "--dsn", dsn, "withdraw", "2", "0.50", "--request-id", "w1"); err == nil ||
		!strings.Contains(err.Error(), "frozen") {
		t.Fatalf("withdraw while frozen: %v", err)
	}
	t.Log(run("holdings", "2"))
}
