package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/ledger"
)

// TestReconCommands books a top-up and a withdrawal through the CLI, then
// imports statements: one that matches, one with a line the journal lacks
// (listed, stored as a break, exit status 1), a malformed one (refused with
// line numbers); lists the breaks; and compares the day with the journal
// while no reconciliation worker ran (every entry is a missing event).
func TestReconCommands(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	run := func(args ...string) (string, error) {
		t.Helper()
		return fundctl(t, args...)
	}
	for _, args := range [][]string{
		{"open", "Alice", "--request-id", "open-alice"},
		{"top-up", "1", "100.00", "--request-id", "t1"},
		{"withdraw", "1", "30.00", "--request-id", "w1"},
	} {
		if out, err := run(append([]string{"accounts", "--dsn", dsn}, args...)...); err != nil {
			t.Fatalf("accounts %v: %v\n%s", args, err, out)
		}
	}
	d := ledger.BusinessDate(time.Now().UnixNano()).Format(time.DateOnly)
	dir := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := file("good.csv", "reference,amount,direction,value_date\nt1,100.00,IN,"+d+"\nw1,30.00,OUT,"+d+"\n")
	out, err := run("recon", "statement", good, "--date", d, "--dsn", dsn)
	if err != nil || !strings.Contains(out, "2 lines, 2 movements in the journal, 2 matched") {
		t.Fatalf("good statement: %v\n%s", err, out)
	}

	extra := file("extra.csv", "reference,amount,direction,value_date\nt1,100.00,IN,"+d+"\nw1,30.00,OUT,"+d+"\nzz9,5.00,IN,"+d+"\n")
	out, err = run("recon", "statement", extra, "--date", d, "--dsn", dsn, "--json")
	if err == nil || !strings.Contains(err.Error(), "1 statement lines and 0 ledger movements unmatched") {
		t.Fatalf("statement with an extra line: %v\n%s", err, out)
	}
	var so statementOutput
	if err := json.Unmarshal([]byte(out), &so); err != nil || so.Matched != 2 || len(so.UnmatchedStatement) != 1 ||
		so.UnmatchedStatement[0].Reference != "zz9" || so.UnmatchedStatement[0].Line != 4 {
		t.Fatalf("extra line JSON: %v\n%s", err, out)
	}

	bad := file("bad.csv", "reference,amount,direction,value_date\nt1,100.00,IN,"+d+"\nw1,30.001,OUT,"+d+"\nx,1.00,UP,"+d+"\n")
	out, err = run("recon", "statement", bad, "--date", d, "--dsn", dsn)
	if err == nil || !strings.Contains(err.Error(), "line 3, amount") || !strings.Contains(err.Error(), "line 4, direction") {
		t.Fatalf("malformed statement: %v\n%s", err, out)
	}

	out, err = run("recon", "report", "--dsn", dsn)
	if err != nil || !strings.Contains(out, "unmatched_statement_line") || !strings.Contains(out, "ref zz9") {
		t.Fatalf("report: %v\n%s", err, out)
	}

	// No worker consumed the events: the comparison finds every journal
	// entry of the day (the top-up, the withdrawal and whatever else the
	// accounts service booked) missing from the stream.
	out, err = run("recon", "report", "--dsn", dsn, "--compare", "--date", d, "--grace", "0s", "--json", "--kind", "missing_event")
	if err != nil {
		t.Fatalf("compare: %v\n%s", err, out)
	}
	var rep struct {
		Comparison struct {
			Shards []struct {
				JournalEntries int64 `json:"journal_entries"`
				StreamEntries  int64 `json:"stream_entries"`
			} `json:"shards"`
		} `json:"comparison"`
		Breaks []struct {
			Kind string `json:"kind"`
		} `json:"breaks"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("compare JSON: %v\n%s", err, out)
	}
	var journal int64
	for _, sd := range rep.Comparison.Shards {
		journal += sd.JournalEntries
		if sd.StreamEntries != 0 {
			t.Fatalf("stream entries without a worker: %s", out)
		}
	}
	if journal < 2 || int64(len(rep.Breaks)) != journal {
		t.Fatalf("%d journal entries, %d missing events; want equal and >= 2:\n%s", journal, len(rep.Breaks), out)
	}
}
