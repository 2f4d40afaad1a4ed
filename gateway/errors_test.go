package gateway

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"

	ledgergrpc "github.com/fundplatform/fund/ledger/grpc"
	"github.com/fundplatform/fund/settlement"
)

// Every settlement error that can reach the admin API has its own reason
// and a 4xx, wrapped as the runner wraps it; none passes for another
// domain's error.
func TestSettlementErrorsHaveTheirOwnRows(t *testing.T) {
	seen := map[string]error{}
	for _, tc := range []struct {
		err    error
		http   int
		reason string
		field  string
	}{
		{settlement.ErrInvalidDate, 400, "SETTLEMENT_INVALID_DATE", "date"},
		{settlement.ErrIncomeForm, 400, "SETTLEMENT_INCOME_FORM", "income"},
		{settlement.ErrInvalidIncome, 400, "SETTLEMENT_INVALID_INCOME", "income"},
		{settlement.ErrIncomeOverflow, 400, "SETTLEMENT_INCOME_OVERFLOW", "income"},
		{settlement.ErrRunConflict, 409, "SETTLEMENT_RUN_CONFLICT", ""},
		{settlement.ErrTooEarly, 422, "SETTLEMENT_TOO_EARLY", ""},
		{settlement.ErrOutOfOrder, 422, "SETTLEMENT_OUT_OF_ORDER", ""},
		{settlement.ErrNoShares, 422, "SETTLEMENT_NO_ELIGIBLE_SHARES", ""},
		{settlement.ErrShardBusy, 422, "SETTLEMENT_SHARD_BUSY", ""},
		{settlement.ErrShardCount, 422, "SETTLEMENT_SHARD_COUNT", ""},
	} {
		st := status.Convert(statusOf(fmt.Errorf("2026-11-11: %w", tc.err), nil))
		if got := httpStatus(st.Code()); got != tc.http {
			t.Errorf("%v: HTTP %d, want %d", tc.err, got, tc.http)
		}
		if got := reasonOf(st); got != tc.reason {
			t.Errorf("%v: reason %q, want %q", tc.err, got, tc.reason)
		}
		if prev, ok := seen[tc.reason]; ok {
			t.Errorf("%v and %v share the reason %s", prev, tc.err, tc.reason)
		}
		seen[tc.reason] = tc.err
		if tc.field != "" && !hasFieldViolation(st, tc.field) {
			t.Errorf("%v: no field violation for %s: %v", tc.err, tc.field, st.Details())
		}
	}
}

// reasonsMarkdown is the reason table of docs/api-errors.md.
func reasonsMarkdown() string {
	var b strings.Builder
	b.WriteString("| reason | HTTP | gRPC code | field | when |\n| --- | --- | --- | --- | --- |\n")
	for _, r := range Reasons() {
		field := ""
		if r.Field != "" {
			field = "`" + r.Field + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %d | %d %s | %s | %s |\n", r.Reason, r.HTTP, int(r.Code), r.Code, field, strings.ReplaceAll(r.When, "|", "/"))
	}
	return b.String()
}

const (
	apiErrorsDoc   = "../docs/api-errors.md"
	reasonsBegin   = "<!-- reasons: generated from gateway/errors.go by TestErrorReasonsDocumented -->\n"
	reasonsEnd     = "<!-- end of reasons -->\n"
	updateDocsHint = "UPDATE_API_ERRORS=1 go test -run TestErrorReasonsDocumented ./gateway/"
)

// docs/api-errors.md lists exactly the error table's reasons, with their
// HTTP status, code and when; UPDATE_API_ERRORS=1 rewrites the list.
func TestErrorReasonsDocumented(t *testing.T) {
	raw, err := os.ReadFile(apiErrorsDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	i, j := strings.Index(doc, reasonsBegin), strings.Index(doc, reasonsEnd)
	if i < 0 || j < i {
		t.Fatalf("%s: no reason table between the markers", apiErrorsDoc)
	}
	want := doc[:i+len(reasonsBegin)] + reasonsMarkdown() + doc[j:]
	if want == doc {
		return
	}
	if os.Getenv("UPDATE_API_ERRORS") != "" {
		if err := os.WriteFile(apiErrorsDoc, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("%s is not the error table's; run %s", apiErrorsDoc, updateDocsHint)
}

// Every reason the gateway answers by itself is a row of the table, and
// the table names each reason with one code and one HTTP status.
func TestGatewayReasonsAreInTheTable(t *testing.T) {
	for _, r := range []string{reasonInvalidArgument, reasonMalformedJSON, reasonInvalidBody, reasonIncompleteBody,
		reasonBodyTooLarge, reasonUnsupportedMedia, reasonInvalidPathParam, reasonInvalidQueryParam, reasonMalformedPath,
		reasonRouteNotFound, reasonMethodNotAllowed, reasonForbidden, reasonRateLimited, reasonOverloaded,
		reasonShardUnreachable, reasonDependencyDown, reasonDeadlineExceeded, reasonInternal} {
		if rowOf(r) == nil {
			t.Errorf("reason %s has no row", r)
		}
	}
	seen := map[string]*errorMapping{}
	for i := range errorTable {
		m := &errorTable[i]
		if m.err == nil || m.when == "" {
			t.Errorf("row %s: no error or no text", m.reason)
		}
		if prev, ok := seen[m.reason]; ok && (prev.code != m.code || prev.httpStatus() != m.httpStatus()) {
			t.Errorf("reason %s on rows of different codes", m.reason)
		}
		seen[m.reason] = m
	}
}

// A ledger call that the routing client gave up on because its deadline
// could not be met (a failover longer than the request's deadline) is 503
// SHARD_FAILING_OVER with Retry-After, through the accounts service's
// wrapping, never a 500 or a 504.
func TestLedgerGaveUpIs503(t *testing.T) {
	gaveUp := fmt.Errorf("ledger: shard 0: %w after 4 attempts (last: rpc error: code = Unavailable)", ledgergrpc.ErrUnreachable)
	st := status.Convert(statusOf(gaveUp, nil))
	if got := httpStatus(st.Code()); got != 503 {
		t.Fatalf("HTTP %d, want 503", got)
	}
	if got := reasonOf(st); got != "SHARD_FAILING_OVER" {
		t.Fatalf("reason %q, want SHARD_FAILING_OVER", got)
	}
	var retry bool
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().AsDuration() > 0 {
			retry = true
		}
	}
	if !retry {
		t.Fatalf("no RetryInfo (Retry-After) in %v", st.Details())
	}
}
