package main

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fundplatform/fund/accounts"
	accountspg "github.com/fundplatform/fund/accounts/postgres"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/ledger/postgres"
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
	out := run("open", "Alice", "--json", "--request-id", "open-alice")
	var c struct {
		ID        int64  `json:"id"`
		RequestID string `json:"request_id"`
		Status    string `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &c); err != nil || c.ID != 1 || c.Status != "active" || c.RequestID != "open-alice" {
		t.Fatalf("open: %s (%v)", out, err)
	}
	// A retry shows the same customer; another name under the request id
	// is refused.
	if again := run("open", "Alice", "--json", "--request-id", "open-alice"); again != out {
		t.Fatalf("retried open: %s, first %s", again, out)
	}
	if out, err := fundctl(t, "accounts", "--dsn", dsn, "open", "Eve", "--request-id", "open-alice"); err == nil ||
		!strings.Contains(err.Error(), "different request") || !strings.Contains(out, "Alice") {
		t.Fatalf("conflicting open: %v\n%s", err, out)
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
		!strings.Contains(err.Error(), "different request") {
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

// TestAccountsJSONAmounts checks the --json output of holdings and history:
// every amount is a JSON string holding a plain decimal with exactly two
// places (three for the yield), never a JSON number, negative income
// included.
func TestAccountsJSONAmounts(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	run := func(args ...string) string {
		t.Helper()
		out, err := fundctl(t, append([]string{"accounts", "--dsn", dsn}, args...)...)
		if err != nil {
			t.Fatalf("fundctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	run("open", "Uma", "--request-id", "open-uma")
	run("open", "Vic", "--request-id", "open-vic")
	run("top-up", "1", "1000.5", "--request-id", "t1")
	run("subscribe", "1", "300", "--request-id", "s1")
	run("transfer", "1", "2", "0.05", "--request-id", "x1")
	// No confirmed shares yet: rejected, and still listed in the history.
	if _, err := fundctl(t, "accounts", "--dsn", dsn, "fast-redeem", "1", "12.34", "--request-id", "f1"); err == nil {
		t.Fatal("fast redeem without confirmed shares succeeded")
	}

	// Settlement's records, written straight to the store: a gain two days
	// ago, a loss yesterday, and a published 7-day yield.
	st, err := accountspg.Open(ctx, accountspg.Config{DSN: dsn, ConnsMax: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	yesterday := accounts.NaturalDay(time.Now()).AddDate(0, 0, -1)
	if err := st.RecordDailyIncome(ctx, []accounts.DailyIncome{
		{CustomerID: 1, Date: yesterday.AddDate(0, 0, -1), Amount: 125},
		{CustomerID: 1, Date: yesterday, Amount: -7},
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.RecordFundYield(ctx, accounts.FundYield{Date: yesterday, IncomePer10k: 6501, SevenDayYield: 2398,
		HasSevenDayYield: true}); err != nil {
		t.Fatal(err)
	}

	amountRE := regexp.MustCompile(`^-?[0-9]+\.[0-9]{2}$`)
	out := run("holdings", "1", "--json")
	var h map[string]any
	if err := json.Unmarshal([]byte(out), &h); err != nil {
		t.Fatalf("holdings: %v\n%s", err, out)
	}
	want := map[string]string{
		"available_cash": "700.45", "shares": "0.00", "shares_awaiting_confirmation": "300.00",
		"shares_awaiting_payout": "0.00", "frozen_cash": "0.00", "frozen_shares": "0.00",
		"cumulative_income": "1.18", "seven_day_yield": "2.398",
		"seven_day_yield_date": yesterday.Format(time.DateOnly),
	}
	// Across midnight, "yesterday" moves under the test; the rest holds.
	if accounts.NaturalDay(time.Now()).AddDate(0, 0, -1).Equal(yesterday) {
		want["yesterday_income"] = "-0.07"
	}
	for key, w := range want {
		if got, ok := h[key].(string); !ok || got != w {
			t.Errorf("holdings %s = %#v, want the string %q", key, h[key], w)
		}
	}
	for _, key := range []string{"available_cash", "shares", "shares_awaiting_confirmation", "shares_awaiting_payout",
		"frozen_cash", "frozen_shares", "yesterday_income", "cumulative_income"} {
		if s, ok := h[key].(string); !ok || !amountRE.MatchString(s) {
			t.Errorf("holdings %s = %#v: want a decimal string with two places", key, h[key])
		}
	}
	if s, _ := h["seven_day_yield"].(string); !regexp.MustCompile(`^-?[0-9]+\.[0-9]{3}$`).MatchString(s) {
		t.Errorf("seven_day_yield = %#v: want a decimal string with three places", h["seven_day_yield"])
	}
	table := run("holdings", "1")
	for _, w := range []string{"yesterday's income", "cumulative income             1.18",
		"7-day annualised yield        2.398% (" + yesterday.Format(time.DateOnly) + ")"} {
		if !strings.Contains(table, w) {
			t.Errorf("holdings table lacks %q:\n%s", w, table)
		}
	}

	for c, wantAmounts := range map[string]map[string]string{
		"1": {"f1": "12.34", "x1": "0.05", "s1": "300.00", "t1": "1000.50"},
		"2": {"x1": "0.05"},
	} {
		out = run("history", c, "--json")
		var page struct {
			Orders []map[string]any `json:"orders"`
		}
		if err := json.Unmarshal([]byte(out), &page); err != nil {
			t.Fatalf("history of %s: %v\n%s", c, err, out)
		}
		if len(page.Orders) != len(wantAmounts) {
			t.Fatalf("history of %s: %d orders, want %d\n%s", c, len(page.Orders), len(wantAmounts), out)
		}
		for _, o := range page.Orders {
			req, _ := o["request_id"].(string)
			if got, ok := o["amount"].(string); !ok || got != wantAmounts[req] || !amountRE.MatchString(got) {
				t.Errorf("history of %s: order %q amount %#v, want the string %q", c, req, o["amount"], wantAmounts[req])
			}
		}
	}
	// An empty history is an empty list, not null.
	run("open", "Wes", "--request-id", "open-wes")
	if out := run("history", "3", "--json"); !strings.Contains(out, `"orders": []`) {
		t.Errorf("empty history: %s", out)
	}
}

// TestAccountsCommandsFollowLeases: the commands own the ledger shard
// through its lease. After another owner (a settlement run) took the shard
// at a higher epoch and let it go, they still write; while a live owner
// holds it, they refuse to start and change nothing.
func TestAccountsCommandsFollowLeases(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	if out, err := fundctl(t, "accounts", "--dsn", dsn, "open", "Alice", "--request-id", "o1"); err != nil {
		t.Fatalf("open: %v\n%s", err, out)
	}
	lstore, err := postgres.Open(ctx, postgres.Config{DSN: dsn, ConnsMax: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer lstore.Close()
	epoch, ok, err := lstore.AcquireLease(ctx, 0, "settlement-run", "", time.Minute)
	if err != nil || !ok {
		t.Fatalf("take the shard: ok=%v %v", ok, err)
	}
	if out, err := fundctl(t, "accounts", "--dsn", dsn, "top-up", "1", "10.00", "--request-id", "t1"); err == nil ||
		!strings.Contains(err.Error(), "owned by another process") {
		t.Fatalf("top-up beside a live owner: %v\n%s", err, out)
	}
	if err := lstore.ReleaseLease(ctx, 0, "settlement-run", epoch); err != nil {
		t.Fatal(err)
	}
	if out, err := fundctl(t, "accounts", "--dsn", dsn, "top-up", "1", "10.00", "--request-id", "t1"); err != nil {
		t.Fatalf("top-up after the takeover: %v\n%s", err, out)
	}
	out, err := fundctl(t, "accounts", "--dsn", dsn, "holdings", "1", "--json")
	if err != nil || !strings.Contains(out, `"10.00"`) {
		t.Fatalf("holdings: %v\n%s", err, out)
	}
}
