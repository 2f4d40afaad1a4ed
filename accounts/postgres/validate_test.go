package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/fundplatform/fund/accounts"
)

// TestValidationBeforeMoney: an order naming a merchant or payee that does
// not exist, a closed payee, or coming from a frozen payer is answered the
// same whether or not the payer could pay, and leaves no order row and no
// ledger entry behind; the request id stays free for a corrected retry. A
// frozen payee may still receive, so there only the funds decide.
func TestValidationBeforeMoney(t *testing.T) {
	t.Parallel()
	e := newEnv(t, accounts.Config{})
	ctx := context.Background()
	const merchant, unknownMerchant = accounts.MerchantID(4), accounts.MerchantID(99)
	if err := e.svc.RegisterMerchant(ctx, merchant); err != nil {
		t.Fatal(err)
	}
	closed := e.open("Closed")
	if _, err := e.svc.Close(ctx, closed); err != nil {
		t.Fatal(err)
	}
	frozen := e.open("Frozen payee")
	if _, err := e.svc.Freeze(ctx, frozen); err != nil {
		t.Fatal(err)
	}
	const unknownPayee = accounts.CustomerID(123456)

	type place func(payer accounts.CustomerID, req string) (accounts.Order, error)
	pay := func(m accounts.MerchantID) place {
		return func(payer accounts.CustomerID, req string) (accounts.Order, error) {
			return e.svc.Pay(ctx, payer, req, m, 10*yuan)
		}
	}
	transfer := func(to accounts.CustomerID) place {
		return func(payer accounts.CustomerID, req string) (accounts.Order, error) {
			return e.svc.Transfer(ctx, payer, req, to, 10*yuan)
		}
	}
	cases := []struct {
		name         string
		freezePayer  bool
		op           place
		want         error // the same with and without the money
		storesNoRows bool
	}{
		{"merchant unknown", false, pay(unknownMerchant), accounts.ErrMerchantNotFound, true},
		{"payee unknown", false, transfer(unknownPayee), accounts.ErrCustomerNotFound, true},
		{"payee closed", false, transfer(closed), accounts.ErrCustomerClosed, true},
		{"payer frozen, paying", true, pay(merchant), accounts.ErrCustomerFrozen, true},
		{"payer frozen, transferring", true, transfer(frozen), accounts.ErrCustomerFrozen, true},
		{"payer frozen, unknown merchant", true, pay(unknownMerchant), accounts.ErrCustomerFrozen, true},
	}
	for i, c := range cases {
		for _, rich := range []bool{true, false} {
			var payer accounts.CustomerID
			if rich {
				payer = e.fund(fmt.Sprintf("payer %d rich", i), 100*yuan, 100*yuan)
			} else {
				payer = e.open(fmt.Sprintf("payer %d poor", i))
			}
			if c.freezePayer {
				if _, err := e.svc.Freeze(ctx, payer); err != nil {
					t.Fatal(err)
				}
			}
			before := e.counts()
			req := fmt.Sprintf("v-%d", i)
			got, err := c.op(payer, req)
			if !errors.Is(err, c.want) {
				t.Errorf("%s (rich %v): %+v, %v; want %v", c.name, rich, got, err, c.want)
				continue
			}
			t.Logf("%s (rich %v): %v", c.name, rich, err)
			if after := e.counts(); after != before {
				t.Errorf("%s (rich %v): rows %+v -> %+v, want none written", c.name, rich, before, after)
			}
			if _, err := e.svc.OrderStatus(ctx, payer, req); !errors.Is(err, accounts.ErrOrderNotFound) {
				t.Errorf("%s (rich %v): order stored: %v", c.name, rich, err)
			}
		}
	}

	// Nothing was stored, so the same request id, once it names a
	// registered merchant, is placed as a new order.
	p := e.fund("payer retry", 0, 100*yuan)
	if _, err := e.svc.Pay(ctx, p, "retry", unknownMerchant, 10*yuan); !errors.Is(err, accounts.ErrMerchantNotFound) {
		t.Fatalf("unknown merchant: %v", err)
	}
	if err := e.svc.RegisterMerchant(ctx, unknownMerchant); err != nil {
		t.Fatal(err)
	}
	if o, err := e.svc.Pay(ctx, p, "retry", unknownMerchant, 10*yuan); err != nil || o.Status != accounts.OrderCompleted {
		t.Fatalf("after registering the merchant: %+v, %v", o, err)
	}

	// A frozen payee may still receive: with the money the transfer
	// completes, without it the ordinary rejection is stored.
	rich, poor := e.fund("to frozen rich", 100*yuan, 0), e.open("to frozen poor")
	if o, err := e.svc.Transfer(ctx, rich, "tf", frozen, 10*yuan); err != nil || o.Status != accounts.OrderCompleted {
		t.Fatalf("to a frozen payee with the money: %+v, %v", o, err)
	}
	if o, err := e.svc.Transfer(ctx, poor, "tf", frozen, 10*yuan); !errors.Is(err, accounts.ErrInsufficientFunds) ||
		o.Status != accounts.OrderRejected {
		t.Fatalf("to a frozen payee without the money: %+v, %v", o, err)
	}
	e.verify()
}
