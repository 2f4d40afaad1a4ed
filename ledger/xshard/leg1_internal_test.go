package xshard

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/fundplatform/fund/ledger"
)

// Leg 1 carries what leg 2 needs in its user data; data that would pass the
// ledger's bound is cut to fit, never in the middle of a character.
func TestLeg1PacksAndCuts(t *testing.T) {
	const shards = 4
	var payer, payee ledger.AccountID
	for id := ledger.AccountID(16); payer == 0 || payee == 0; id += 16 {
		switch ledger.ShardOf(id, shards) {
		case 1:
			payer = id
		case 3:
			payee = id
		}
	}
	for _, data := range []string{"", "req-1", strings.Repeat("r", ledger.MaxUserDataLen), strings.Repeat("é", 40)} {
		tr := ledger.Transfer{ID: ledger.NewTransferID(), DebitAccountID: payer, CreditAccountID: payee,
			Amount: 5, Asset: ledger.AssetCNY, Kind: 8, UserData: data}
		leg1 := Leg1(tr, shards)
		if leg1.ID != tr.ID || leg1.DebitAccountID != payer || leg1.Amount != 5 || leg1.Kind != KindOut ||
			leg1.CreditAccountID != InTransitAccount(1, 3, shards, ledger.AssetCNY) {
			t.Fatalf("leg 1 of %+v: %+v", tr, leg1)
		}
		if len(leg1.UserData) > ledger.MaxUserDataLen || !utf8.ValidString(leg1.UserData) {
			t.Fatalf("leg 1 user data %q: %d bytes", leg1.UserData, len(leg1.UserData))
		}
		p, kind, got, err := parseUserData(leg1.UserData)
		if err != nil || p != payee || kind != 8 || !strings.HasPrefix(data, got) {
			t.Fatalf("unpacked %d %d %q %v from %q", p, kind, got, err, leg1.UserData)
		}
		if fits := len(userDataHead(&tr))+len(data) <= ledger.MaxUserDataLen; fits != (got == data) {
			t.Fatalf("data %q (fits %v) came back as %q", data, fits, got)
		}
	}
}
