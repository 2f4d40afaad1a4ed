package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fundplatform/fund/accounts"
	accountspg "github.com/fundplatform/fund/accounts/postgres"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/ledger"
	ledgerpg "github.com/fundplatform/fund/ledger/postgres"
	"github.com/fundplatform/fund/settlement/recon"
	reconpg "github.com/fundplatform/fund/settlement/recon/postgres"
)

// Top-ups and withdrawals booked by the accounts service, then bank
// statements matched against the bank settlement account's movements:
// matched lines, a wrong amount (unmatched on both sides, with hints), a
// line the journal does not have, a movement the statement does not have,
// one reference used by two customers; a corrected statement resolves the
// breaks of the first; a malformed one is refused with its line numbers.
func TestStatementMatching(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	lstore, err := ledgerpg.Open(ctx, ledgerpg.Config{DSN: dsn, ConnsMax: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer lstore.Close()
	astore, err := accountspg.Open(ctx, accountspg.Config{DSN: dsn, ConnsMax: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer astore.Close()
	rstore, err := reconpg.Open(ctx, reconpg.Config{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer rstore.Close()
	clk := &clock{}
	clk.setDay(0)
	seq := ledger.NewSequencer(ledger.SequencerConfig{Now: clk.Now}, lstore, nil)
	stop, err := seq.Start(ctx, readyTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	svc, err := accounts.NewService(ctx, accounts.Config{Now: clk.Now}, astore, seq, nil)
	if err != nil {
		t.Fatal(err)
	}
	alice, err := svc.OpenCustomer(ctx, "open-alice", "Alice")
	if err != nil {
		t.Fatal(err)
	}
	bob, err := svc.OpenCustomer(ctx, "open-bob", "Bob")
	if err != nil {
		t.Fatal(err)
	}
	order := func(o accounts.Order, err error) {
		t.Helper()
		if err != nil || o.Status == accounts.OrderRejected {
			t.Fatalf("order %+v: %v", o, err)
		}
	}
	order(svc.TopUp(ctx, alice.ID, "t1", 100_00))
	order(svc.TopUp(ctx, bob.ID, "t2", 50_00))
	order(svc.Withdraw(ctx, alice.ID, "w1", 30_00))
	order(svc.TopUp(ctx, alice.ID, "t3", 20_00))
	order(svc.TopUp(ctx, bob.ID, "t1", 70_00)) // Bob's own "t1"
	order(svc.TopUp(ctx, bob.ID, "t4", 10_00))
	order(svc.Subscribe(ctx, alice.ID, "s1", 10_00)) // not a bank movement

	day := ledger.BusinessDate(clk.Now().UnixNano())
	moves, err := rstore.BankMovements(ctx, accounts.BankSettlement, day)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range moves {
		got = append(got, fmt.Sprintf("%s %s %s", m.Reference, m.Direction, m.AmountText))
	}
	if want := "t1 IN 100.00, t2 IN 50.00, w1 OUT 30.00, t3 IN 20.00, t1 IN 70.00, t4 IN 10.00"; strings.Join(got, ", ") != want {
		t.Fatalf("movements %q, want %q", strings.Join(got, ", "), want)
	}

	d := day.Format(time.DateOnly)
	importStatement := func(csv string) *recon.MatchResult {
		t.Helper()
		lines, err := recon.ParseStatement(strings.NewReader(csv), day)
		if err != nil {
			t.Fatal(err)
		}
		res := recon.Match(lines, moves)
		if err := rstore.SaveStatement(ctx, recon.StatementImport{Day: day, Account: accounts.BankSettlement,
			FileName: "bank.csv", Lines: len(lines), Result: res}); err != nil {
			t.Fatal(err)
		}
		return res
	}
	res := importStatement("reference,amount,direction,value_date,description\n" +
		"t1,70.00,IN," + d + ",bob\n" +
		"t1,100.00,IN," + d + ",alice\n" +
		"t2,50.00,IN," + d + ",\n" +
		"w1,30.00,OUT," + d + ",\n" +
		"t3,20.01,IN," + d + ",typo at the bank\n" +
		"zz,5.00,OUT," + d + ",unknown to the ledger\n")
	if len(res.Matched) != 4 || len(res.UnmatchedStatement) != 2 || len(res.UnmatchedLedger) != 2 {
		t.Fatalf("matched %d, unmatched %d statement / %d ledger; want 4, 2, 2: %+v", len(res.Matched),
			len(res.UnmatchedStatement), len(res.UnmatchedLedger), res)
	}
	for _, p := range res.Matched {
		if p.Line.Reference != p.Movement.Reference || p.Line.Amount != p.Movement.Amount || p.Line.Direction != p.Movement.Direction {
			t.Errorf("mismatched pair %+v", p)
		}
	}
	if u := res.UnmatchedStatement; u[0].Reference != "t3" || u[0].Hint != "the ledger has IN 20.00 for this reference" ||
		u[1].Reference != "zz" || u[1].Hint != "" {
		t.Errorf("unmatched statement lines %+v", u)
	}
	if u := res.UnmatchedLedger; u[0].Reference != "t3" || u[1].Reference != "t4" {
		t.Errorf("unmatched movements %+v", u)
	}
	open, err := rstore.OpenBreaks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if open[recon.UnmatchedStatementLine] != 2 || open[recon.UnmatchedLedgerMovement] != 2 {
		t.Fatalf("open breaks %v", open)
	}

	// The bank sends a corrected statement: everything matches, and the
	// breaks of the first import are resolved.
	res = importStatement("reference,amount,direction,value_date\n" +
		"t1,100.00,IN," + d + "\n" + "t1,70.00,IN," + d + "\n" + "t2,50.00,IN," + d + "\n" +
		"w1,30.00,OUT," + d + "\n" + "t3,20.00,IN," + d + "\n" + "t4,10.00,IN," + d + "\n")
	if !res.Clean() || len(res.Matched) != 6 {
		t.Fatalf("corrected statement: %+v", res)
	}
	if open, err = rstore.OpenBreaks(ctx); err != nil || len(open) != 0 {
		t.Fatalf("open breaks after the corrected statement: %v %v", open, err)
	}

	// A malformed statement is refused as a whole, each bad line named.
	_, err = recon.ParseStatement(strings.NewReader("reference,amount,direction,value_date\n"+
		"t1,100.00,IN,"+d+"\n"+
		"t2,50,IN\n"+
		"t3,abc,IN,"+d+"\n"+
		"w1,30.00,SIDEWAYS,"+d+"\n"), day)
	var se *recon.StatementError
	if !errors.As(err, &se) || len(se.Errors) != 3 || se.Errors[0].Line != 3 || se.Errors[1].Line != 4 || se.Errors[2].Line != 5 {
		t.Fatalf("malformed statement: %v", err)
	}
}
