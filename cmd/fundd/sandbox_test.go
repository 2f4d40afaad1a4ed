package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fundplatform/fund/internal/proctest"
)

// The README's sandbox walk-through: the whole money cycle on a fresh
// `fundd dev --test-clock`, one curl per step. The README's block is
// rendered from sandboxWalk (TestSandboxWalkInREADME keeps it equal;
// UPDATE_README=1 rewrites it), and TestSandboxWalk sends exactly those
// requests to a real fundd dev and checks the answers to the cent, so the
// two cannot drift.

// sandboxStart is where the walk's test clock starts: a Monday, before the
// 15:00 cut-off.
const sandboxStart = "2026-11-09T10:00:00+08:00"

// walkStep is one step of the walk: one request, or one per date of dates
// ($d in key and body standing for the date).
type walkStep struct {
	say    string // the README's comment line
	method string // GET or POST
	path   string
	key    string // Idempotency-Key of a POST
	body   string // JSON of a POST
	dates  []string
	// want are fields of the (last) answer, as the JSON shows them.
	want map[string]string
}

func dates(first string, n int) []string {
	d, err := time.Parse(time.DateOnly, first)
	if err != nil {
		panic(err)
	}
	out := make([]string, n)
	for i := range out {
		out[i] = d.AddDate(0, 0, i).Format(time.DateOnly)
	}
	return out
}

var sandboxWalk = []walkStep{
	{say: "1. The business time stands at --start; orders placed now count for today (before the 15:00 cut-off)",
		method: "GET", path: "/v1/admin/clock",
		want: map[string]string{"now": sandboxStart, "test_clock": "true", "trade_date": "2026-11-09", "next_cutoff": "2026-11-09T15:00:00+08:00"}},
	{say: "2. Open a customer (a fresh stack's first is customer 1) and top up 20,000.00 CNY",
		method: "POST", path: "/v1/customers", key: "open-ada", body: `{"name":"Ada"}`,
		want: map[string]string{"id": "1", "status": "ACTIVE"}},
	{method: "POST", path: "/v1/customers/1/topups", key: "top-1", body: `{"amount":"20000.00"}`,
		want: map[string]string{"status": "COMPLETED", "amount": "20000.00"}},
	{say: "3. Subscribe 15,000.00: pending until settlement confirms it on the next trading day",
		method: "POST", path: "/v1/customers/1/subscriptions", key: "sub-1", body: `{"amount":"15000.00"}`,
		want: map[string]string{"status": "PENDING", "trade_date": "2026-11-09", "confirm_date": "2026-11-10"}},
	{say: "4. A week later, past Monday's cut-off",
		method: "POST", path: "/v1/admin/clock:advance", key: "clock-1", body: `{"to":"2026-11-16T15:30:00+08:00"}`,
		want: map[string]string{"now": "2026-11-16T15:30:00+08:00", "settleable_through": "2026-11-16"}},
	{say: "5. Settle each day in order with the fund's income (0.65 CNY per 10,000 shares): the 10th confirms the subscription, every day pays income as shares, the 7th day publishes the 7-day yield",
		method: "POST", path: "/v1/admin/settlements", key: "settle-$d", body: `{"date":"$d","income_per_10k":"0.6500"}`,
		dates: dates("2026-11-09", 7),
		want:  map[string]string{"status": "COMPLETED", "income": "0.97", "seven_day_yield": "2.401"}},
	{say: "6. Holdings: confirmed shares with six days' income (0.97 a day), yesterday's income and the 7-day yield",
		method: "GET", path: "/v1/customers/1/holdings",
		want: map[string]string{"cash": "5000.00", "shares": "15005.82", "yesterday_income": "0.97",
			"cumulative_income": "5.82", "seven_day_yield": "2.401", "fast_redeem_left_today": "10000.00"}},
	{say: "7. Fast-redeem 1,000.00: cash at once, within the day's 10,000.00 cap",
		method: "POST", path: "/v1/customers/1/redemptions", key: "fast-1", body: `{"amount":"1000.00","mode":"FAST"}`,
		want: map[string]string{"status": "COMPLETED"}},
	{say: "8. Register merchant 7 and pay it 500.00 from fund shares",
		method: "POST", path: "/v1/admin/merchants", key: "merchant-7", body: `{"merchant_id":7}`,
		want: map[string]string{"merchant_id": "7"}},
	{method: "POST", path: "/v1/customers/1/payments", key: "pay-1", body: `{"amount":"500.00","merchant_id":7}`,
		want: map[string]string{"status": "COMPLETED"}},
	{say: "9. Standard-redeem 3,000.00: after the cut-off it counts for Tuesday and is paid on Wednesday the 18th",
		method: "POST", path: "/v1/customers/1/redemptions", key: "redeem-1", body: `{"amount":"3000.00","mode":"STANDARD"}`,
		want: map[string]string{"status": "PENDING", "trade_date": "2026-11-17", "confirm_date": "2026-11-18"}},
	{method: "GET", path: "/v1/customers/1/holdings",
		want: map[string]string{"cash": "6000.00", "shares": "10505.82", "shares_redeeming": "3000.00", "fast_redeem_left_today": "9000.00"}},
	{say: "10. Two days on, settle them: the 18th pays the redemption's cash",
		method: "POST", path: "/v1/admin/clock:advance", key: "clock-2", body: `{"by":"48h"}`,
		want: map[string]string{"now": "2026-11-18T15:30:00+08:00"}},
	{method: "POST", path: "/v1/admin/settlements", key: "settle-$d", body: `{"date":"$d","income_per_10k":"0.6500"}`,
		dates: dates("2026-11-16", 3),
		want:  map[string]string{"status": "COMPLETED", "income": "0.68"}},
	{say: "11. Withdraw 8,000.00 to the bank, and look: 20,000 - 15,000 + 1,000 + 3,000 - 8,000 in cash; 15,000 + 8.05 income - 4,500 in shares",
		method: "POST", path: "/v1/customers/1/withdrawals", key: "withdraw-1", body: `{"amount":"8000.00"}`,
		want: map[string]string{"status": "COMPLETED"}},
	{method: "GET", path: "/v1/customers/1/holdings",
		want: map[string]string{"cash": "1000.00", "shares": "10508.05", "shares_redeeming": "0.00",
			"yesterday_income": "0.68", "cumulative_income": "8.05"}},
}

// renderSandboxWalk is the README's block: how to start, then one curl per
// step (a loop for the dates of a step).
func renderSandboxWalk() string {
	var b strings.Builder
	b.WriteString("```sh\n")
	fmt.Fprintf(&b, "go run ./cmd/fundd dev --test-clock --start %s\n", sandboxStart)
	b.WriteString("# in another shell, with the REST URL and the admin token it printed:\n")
	b.WriteString("URL=http://127.0.0.1:8080\nAUTH=\"Authorization: Bearer <admin token>\"\n")
	for _, s := range sandboxWalk {
		if s.say != "" {
			b.WriteString("\n# " + s.say + "\n")
		}
		switch {
		case s.method == "GET":
			fmt.Fprintf(&b, "curl -s -w '\\n' $URL%s -H \"$AUTH\"\n", s.path)
		case s.dates != nil:
			fmt.Fprintf(&b, "for d in %s; do\n", strings.Join(s.dates, " "))
			fmt.Fprintf(&b, "  curl -s -w '\\n' $URL%s -H \"$AUTH\" -H \"Idempotency-Key: %s\" --json '%s'\ndone\n",
				s.path, s.key, strings.ReplaceAll(s.body, "$d", `'"$d"'`))
		default:
			fmt.Fprintf(&b, "curl -s -w '\\n' $URL%s -H \"$AUTH\" -H 'Idempotency-Key: %s' --json '%s'\n", s.path, s.key, s.body)
		}
	}
	b.WriteString("```\n")
	return b.String()
}

// The README's markers around the rendered block.
const (
	walkBegin = "<!-- sandbox walk: rendered by cmd/fundd's TestSandboxWalkInREADME (UPDATE_README=1); do not edit by hand -->\n"
	walkEnd   = "<!-- end of sandbox walk -->\n"
)

func TestSandboxWalkInREADME(t *testing.T) {
	path := filepath.Join("..", "..", "README.md")
	readme, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	i, j := strings.Index(s, walkBegin), strings.Index(s, walkEnd)
	if i < 0 || j < i {
		t.Fatalf("README.md has no sandbox walk between %q and %q", walkBegin, walkEnd)
	}
	want := renderSandboxWalk()
	if got := s[i+len(walkBegin) : j]; got != want {
		if os.Getenv("UPDATE_README") == "1" {
			if err := os.WriteFile(path, []byte(s[:i+len(walkBegin)]+want+s[j:]), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Errorf("README.md's sandbox walk is not the one TestSandboxWalk runs; run UPDATE_README=1 go test -run TestSandboxWalkInREADME ./cmd/fundd/\n--- README\n%s\n--- want\n%s", got, want)
	}
}

// TestSandboxWalk starts `fundd dev --test-clock --start sandboxStart` as
// the README says and sends the walk's requests, checking every answer.
func TestSandboxWalk(t *testing.T) {
	if testing.Short() {
		t.Skip("starts fundd dev")
	}
	url, token := startSandbox(t)
	c := &walkClient{t: t, url: url, auth: "Bearer " + token}
	for n, s := range sandboxWalk {
		reqs := []string{""}
		if s.dates != nil {
			reqs = s.dates
		}
		var got map[string]any
		for _, d := range reqs {
			got = c.do(s.method, s.path, strings.ReplaceAll(s.key, "$d", d), strings.ReplaceAll(s.body, "$d", d))
		}
		for field, want := range s.want {
			if v := fmt.Sprint(got[field]); v != want {
				t.Fatalf("step %d (%s %s): %s = %s, want %s; answer %v", n, s.method, s.path, field, v, want, got)
			}
		}
	}
}

// startSandbox runs fundd dev with a test clock on free ports and returns
// its REST URL and admin token; the test's cleanup stops it (Ctrl-C).
func startSandbox(t *testing.T) (url, token string) {
	t.Helper()
	cmd := startFunddWith(t, func(stdout io.Reader) {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			switch {
			case strings.HasPrefix(line, "REST "):
				url = strings.Fields(line)[1]
			case strings.HasPrefix(line, "admin token"):
				if sc.Scan() {
					token = strings.TrimSpace(sc.Text())
				}
				return
			}
		}
	}, "dev", "--test-clock", "--start", sandboxStart, "--http", proctest.FreeAddr(t), "--grpc", proctest.FreeAddr(t),
		"--shared-buffers", "128MB", "--settlement-dir", t.TempDir())
	if url == "" || token == "" {
		t.Fatalf("fundd dev printed no URL or admin token (exit: %v)", cmd.ProcessState)
	}
	return url, token
}

// startFunddWith starts fundd with args, hands its stdout to read until
// read returns, and stops it with SIGINT (then waits) when the test ends.
func startFunddWith(t *testing.T, read func(io.Reader), args ...string) *exec.Cmd {
	t.Helper()
	// An OS pipe: once the child exits, the read end sees EOF.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stdout = pw
	logs := &proctest.TailBuffer{Max: 64 << 10}
	cmd.Stderr = logs
	err = cmd.Start()
	_ = pw.Close() // the child has its own copy
	if err != nil {
		_ = pr.Close()
		t.Fatal(err)
	}
	read(pr)
	go func() { _, _ = io.Copy(io.Discard, pr) }() // the rest of its output
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = pr.Close()
		if t.Failed() {
			t.Logf("fundd %v stderr (tail):\n%s", args, logs.String())
		}
	})
	return cmd
}

// walkClient sends the walk's requests as curl would, retrying an answer
// of 503 after its Retry-After (a settlement run holds the ledger shard for
// a moment; the Idempotency-Key makes the retry safe), a bounded number of
// times.
type walkClient struct {
	t    *testing.T
	url  string
	auth string
}

const walkRetriesMax = 30

func (c *walkClient) do(method, path, key, body string) map[string]any {
	c.t.Helper()
	for attempt := 0; ; attempt++ {
		var rd io.Reader
		if method == "POST" {
			rd = bytes.NewReader([]byte(body))
		}
		req, err := http.NewRequest(method, c.url+path, rd)
		if err != nil {
			c.t.Fatal(err)
		}
		req.Header.Set("Authorization", c.auth)
		if method == "POST" {
			// What curl --json sends.
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json")
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			c.t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			c.t.Fatal(err)
		}
		if resp.StatusCode == http.StatusServiceUnavailable && attempt < walkRetriesMax {
			after, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
			time.Sleep(time.Duration(max(after, 1)) * time.Second / 4)
			continue
		}
		if resp.StatusCode != http.StatusOK {
			c.t.Fatalf("%s %s %s: %d %s", method, path, body, resp.StatusCode, b)
		}
		var out map[string]any
		if err := json.Unmarshal(b, &out); err != nil {
			c.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
		return out
	}
}
