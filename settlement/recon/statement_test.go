package recon_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/internal/testseed"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/settlement/recon"
)

var day = time.Date(2026, 11, 11, 0, 0, 0, 0, time.UTC)

func TestParseStatement(t *testing.T) {
	in := "\xEF\xBB\xBF# bank of example, settlement account statement\n" +
		"Reference,Amount,Direction,Value_Date,Description,Channel\n" +
		"topup-1,100.00,IN,2026-11-11,card 6222,app\n" +
		"\n" +
		"wd-1,25.5,out,2026-11-11,\"to card, 6222\",app\n"
	lines, err := recon.ParseStatement(strings.NewReader(in), day)
	if err != nil {
		t.Fatal(err)
	}
	want := []recon.StatementLine{
		{Line: 3, Reference: "topup-1", Amount: 10000, AmountText: "100.00", Direction: recon.In, ValueDate: "2026-11-11", Description: "card 6222"},
		{Line: 5, Reference: "wd-1", Amount: 2550, AmountText: "25.50", Direction: recon.Out, ValueDate: "2026-11-11", Description: "to card, 6222"},
	}
	if fmt.Sprint(lines) != fmt.Sprint(want) {
		t.Fatalf("got %+v\nwant %+v", lines, want)
	}
}

// Every bad line is reported with its line number and what is wrong, and
// nothing is returned to match.
func TestParseStatementErrors(t *testing.T) {
	in := "reference,amount,direction,value_date\n" + // 1
		"ok-1,1.00,IN,2026-11-11\n" + // 2
		"bad-amount,1.001,IN,2026-11-11\n" + // 3
		"neg,-5,OUT,2026-11-11\n" + // 4
		",1.00,IN,2026-11-11\n" + // 5
		"dir,1.00,SIDEWAYS,2026-11-11\n" + // 6
		"date,1.00,IN,11/11/2026\n" + // 7
		"otherday,1.00,IN,2026-11-12\n" + // 8
		"short,1.00,IN\n" + // 9
		"\"unclosed,1.00,IN,2026-11-11\n" // 10: a quote never closed swallows the rest
	_, err := recon.ParseStatement(strings.NewReader(in), day)
	var se *recon.StatementError
	if !errors.As(err, &se) {
		t.Fatalf("got %v, want a *StatementError", err)
	}
	got := map[int]string{}
	for _, le := range se.Errors {
		got[le.Line] += le.Error() + ";"
	}
	want := map[int]error{3: accounts.ErrAmountTooPrecise, 4: accounts.ErrAmountNotPositive, 5: recon.ErrReference,
		6: recon.ErrDirection, 7: recon.ErrValueDate, 8: recon.ErrOtherDate, 9: recon.ErrFieldCount}
	for line, werr := range want {
		found := false
		for _, le := range se.Errors {
			if le.Line == line && errors.Is(le.Err, werr) {
				found = true
			}
		}
		if !found {
			t.Errorf("line %d: want %v, got %q", line, werr, got[line])
		}
	}
	if _, ok := got[2]; ok {
		t.Errorf("line 2 is good, got %q", got[2])
	}
	if _, ok := got[10]; !ok {
		t.Errorf("line 10 (unclosed quote) not reported: %v", err)
	}
	t.Logf("the operator sees:\n%v", err)
}

func TestParseStatementHeader(t *testing.T) {
	for name, tc := range map[string]struct {
		in   string
		want error
	}{
		"empty":          {"", recon.ErrNoHeader},
		"only comments":  {"# nothing\n", recon.ErrNoHeader},
		"missing column": {"reference,amount,value_date\nr,1.00,2026-11-11\n", recon.ErrColumnMissing},
		"column twice":   {"reference,amount,direction,value_date,Amount\n", recon.ErrColumnTwice},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := recon.ParseStatement(strings.NewReader(tc.in), day)
			var se *recon.StatementError
			if !errors.As(err, &se) || len(se.Errors) != 1 || !errors.Is(se.Errors[0].Err, tc.want) || se.Errors[0].Line != 1 {
				t.Fatalf("got %v, want line 1: %v", err, tc.want)
			}
		})
	}
	// A header alone is an empty statement, not an error.
	lines, err := recon.ParseStatement(strings.NewReader("reference,amount,direction,value_date\n"), day)
	if err != nil || len(lines) != 0 {
		t.Fatalf("header only: %v %v", lines, err)
	}
}

func TestMatchByHand(t *testing.T) {
	mv := func(ref string, dir recon.Direction, amount int64, sec int) recon.Movement {
		return recon.Movement{TransferID: ledger.DeriveTransferID("t", ref, strconv.Itoa(sec)), Reference: ref, Direction: dir,
			Amount: amount, Timestamp: day.Add(time.Duration(sec) * time.Second)}
	}
	ln := func(n int, ref string, dir recon.Direction, amount int64) recon.StatementLine {
		return recon.StatementLine{Line: n, Reference: ref, Direction: dir, Amount: amount}
	}
	moves := []recon.Movement{
		mv("a", recon.In, 100, 1),
		mv("b", recon.Out, 200, 2),
		mv("c", recon.In, 300, 3), // the statement says 3.01
		mv("d", recon.In, 400, 4), // not on the statement
		mv("e", recon.In, 500, 5), // twice in the journal, once on the statement
		mv("e", recon.In, 500, 6),
		mv("f", recon.In, 600, 7), // the statement says OUT
	}
	lines := []recon.StatementLine{
		ln(2, "a", recon.In, 100),
		ln(3, "b", recon.Out, 200),
		ln(4, "c", recon.In, 301),
		ln(5, "e", recon.In, 500),
		ln(6, "f", recon.Out, 600),
		ln(7, "z", recon.Out, 700), // not in the journal
	}
	res := recon.Match(lines, moves)
	var matched []string
	for _, p := range res.Matched {
		if p.Line.Reference != p.Movement.Reference || p.Line.Amount != p.Movement.Amount {
			t.Errorf("matched %+v with %+v", p.Line, p.Movement)
		}
		matched = append(matched, p.Line.Reference)
	}
	if got := strings.Join(matched, ","); got != "a,b,e" {
		t.Errorf("matched %s, want a,b,e", got)
	}
	var us, ul []string
	for _, u := range res.UnmatchedStatement {
		us = append(us, u.Reference+"|"+u.Hint)
	}
	for _, u := range res.UnmatchedLedger {
		ul = append(ul, u.Reference+"|"+u.Hint)
	}
	wantS := "c|the ledger has IN 3.00 for this reference;f|the ledger has IN 6.00 for this reference;z|"
	wantL := "c|the statement has IN 3.01 for this reference;d|;e|;f|the statement has OUT 6.00 for this reference"
	if got := strings.Join(us, ";"); got != wantS {
		t.Errorf("unmatched statement lines %q, want %q", got, wantS)
	}
	if got := strings.Join(ul, ";"); got != wantL {
		t.Errorf("unmatched movements %q, want %q", got, wantL)
	}
	// The second "e" movement (the later one) is the one left over.
	if res.UnmatchedLedger[2].Timestamp != day.Add(6*time.Second) {
		t.Errorf("left over e at %s, want the later one", res.UnmatchedLedger[2].Timestamp)
	}
}

// Random statements against random movements: the matching is one to one,
// pairs only equal keys, and is maximal (per key, min(lines, movements)
// pairs: the reference model).
func TestMatchRandomised(t *testing.T) {
	seed := testseed.Seed(t)
	rng := rand.New(rand.NewPCG(seed, seed^0x5851F42D4C957F2D))
	for round := 0; round < 200; round++ {
		refs := 1 + rng.IntN(20)
		var moves []recon.Movement
		var lines []recon.StatementLine
		pick := func() (string, recon.Direction, int64) {
			dir := recon.In
			if rng.IntN(2) == 0 {
				dir = recon.Out
			}
			return fmt.Sprintf("r%d", rng.IntN(refs)), dir, int64(1 + rng.IntN(3))
		}
		for i := rng.IntN(40); i > 0; i-- {
			ref, dir, amt := pick()
			moves = append(moves, recon.Movement{TransferID: ledger.NewTransferID(), Reference: ref, Direction: dir,
				Amount: amt, Timestamp: day.Add(time.Duration(rng.IntN(1000)) * time.Second)})
			if rng.IntN(4) > 0 { // most movements are on the statement
				lines = append(lines, recon.StatementLine{Reference: ref, Direction: dir, Amount: amt})
			}
		}
		for i := rng.IntN(5); i > 0; i-- { // and some lines are not in the journal
			ref, dir, amt := pick()
			lines = append(lines, recon.StatementLine{Reference: ref, Direction: dir, Amount: amt})
		}
		rng.Shuffle(len(lines), func(i, j int) { lines[i], lines[j] = lines[j], lines[i] })
		for i := range lines {
			lines[i].Line = i + 2
		}
		res := recon.Match(lines, moves)

		key := func(ref string, d recon.Direction, a int64) string { return fmt.Sprintf("%s/%s/%d", ref, d, a) }
		nl, nm := map[string]int{}, map[string]int{}
		for _, l := range lines {
			nl[key(l.Reference, l.Direction, l.Amount)]++
		}
		for _, m := range moves {
			nm[key(m.Reference, m.Direction, m.Amount)]++
		}
		wantMatched := 0
		for k, n := range nl {
			wantMatched += min(n, nm[k])
		}
		if len(res.Matched) != wantMatched {
			t.Fatalf("round %d: %d matched, want %d", round, len(res.Matched), wantMatched)
		}
		if len(res.Matched)+len(res.UnmatchedStatement) != len(lines) || len(res.Matched)+len(res.UnmatchedLedger) != len(moves) {
			t.Fatalf("round %d: lines or movements lost or counted twice", round)
		}
		usedLine, usedMove := map[int]bool{}, map[ledger.TransferID]bool{}
		for _, p := range res.Matched {
			if key(p.Line.Reference, p.Line.Direction, p.Line.Amount) != key(p.Movement.Reference, p.Movement.Direction, p.Movement.Amount) {
				t.Fatalf("round %d: paired different keys %+v %+v", round, p.Line, p.Movement)
			}
			if usedLine[p.Line.Line] || usedMove[p.Movement.TransferID] {
				t.Fatalf("round %d: not one to one", round)
			}
			usedLine[p.Line.Line], usedMove[p.Movement.TransferID] = true, true
		}
		left := map[string]bool{}
		for _, u := range res.UnmatchedStatement {
			left[key(u.Reference, u.Direction, u.Amount)] = true
		}
		for _, u := range res.UnmatchedLedger {
			if left[key(u.Reference, u.Direction, u.Amount)] {
				t.Fatalf("round %d: %s left unmatched on both sides", round, u.Reference)
			}
		}
	}
}

func TestReferenceOf(t *testing.T) {
	if got := recon.ReferenceOf(accounts.TransferTopUp, "req-1"); got != "req-1" {
		t.Errorf("plain: %q", got)
	}
	if got := recon.ReferenceOf(60001, "x:12345:1:req:with:colons"); got != "req:with:colons" {
		t.Errorf("saga leg 1: %q", got)
	}
}

func TestAmountJSON(t *testing.T) {
	for _, v := range []recon.Amount{0, 7, -7, 1230, -123456789} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var back recon.Amount
		if err := json.Unmarshal(b, &back); err != nil || back != v {
			t.Fatalf("%d -> %s -> %d (%v)", v, b, back, err)
		}
	}
	if b, _ := json.Marshal(recon.Amount(-7)); string(b) != `"-0.07"` {
		t.Fatalf("got %s", b)
	}
	var a recon.Amount
	if err := json.Unmarshal([]byte(`"1.234"`), &a); err == nil {
		t.Fatal("three decimals accepted")
	}
}
