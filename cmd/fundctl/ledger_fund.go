package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/postgres"
)

// systemAccountNames names the fund's system accounts (accounts'
// canonical ids) in the fund-level figures.
var systemAccountNames = map[ledger.AccountID]string{
	accounts.BankSettlement:     "bank settlement",
	accounts.FundOmnibusCash:    "fund omnibus cash",
	accounts.FundOmnibusShares:  "fund omnibus shares",
	accounts.InTransitCash:      "in-transit cash",
	accounts.InTransitShares:    "in-transit shares",
	accounts.IncomeDistribution: "income distribution",
	accounts.Rounding:           "rounding",
	accounts.QuotaIssuer:        "fast-redemption quota issued",
	accounts.QuotaUsed:          "fast-redemption quota used",
}

// merchantsShownMax bounds the merchants listed one by one.
const merchantsShownMax = 50

// fundGroup is one fund-level figure: an account summed over its per-shard
// sub-accounts.
type fundGroup struct {
	canonical ledger.AccountID
	asset     ledger.Asset
	net       int64
	subs      []postgres.AccountNet
}

// printFundFigures prints the fund's figures, each the sum over shards of
// its sub-accounts (from the journals of every database): the system
// accounts by the account they stand for (accounts.Canonical), then the
// merchants. It checks that each figure is made of exactly the sub-accounts
// the accounts package places, one per shard, each stored under its own
// shard, so that the sum is the fund's whole figure and nothing else; it
// returns how many figures failed that.
func printFundFigures(ctx context.Context, out io.Writer, dbs *postgres.Databases, shards int) (int, error) {
	nets, err := dbs.NetsByCode(ctx, []uint16{accounts.CodeSystem, accounts.CodeMerchant})
	if err != nil {
		return 0, err
	}
	if len(nets) == 0 {
		fmt.Fprintln(out, "fund accounts: none yet (no accounts service has run on this ledger)")
		return 0, nil
	}
	system, merchants := groupByCanonical(nets, accounts.CodeSystem), groupByCanonical(nets, accounts.CodeMerchant)
	bad := 0
	fmt.Fprintf(out, "fund accounts, each summed over its sub-accounts on %d shards (credits less debits):\n", shards)
	for _, g := range system {
		name, known := systemAccountNames[g.canonical]
		if !known {
			name = fmt.Sprintf("system account %d", g.canonical)
		}
		fmt.Fprintf(out, "  %-30s %5s %18s\n", name, g.asset, accounts.FormatAmount(g.net))
		if p := g.check(shards, func(shard int) ledger.AccountID { return accounts.SystemAccountOn(g.canonical, shard, shards) }); p != "" {
			fmt.Fprintln(out, "    "+p)
			bad++
		}
	}
	// A merchant's canonical account is MerchantAccountOn(m, 0, 1): linear
	// in m, so the merchant comes back from it without the accounts
	// package's layout spelled out here.
	base, stride := accounts.MerchantAccountOn(0, 0, 1), accounts.MerchantAccountOn(1, 0, 1)-accounts.MerchantAccountOn(0, 0, 1)
	totals := map[ledger.Asset]int64{}
	for i, g := range merchants {
		m := accounts.MerchantID((g.canonical - base) / stride)
		totals[g.asset] += g.net
		if i < merchantsShownMax {
			fmt.Fprintf(out, "  %-30s %5s %18s\n", fmt.Sprintf("merchant %d", m), g.asset, accounts.FormatAmount(g.net))
		}
		if p := g.check(shards, func(shard int) ledger.AccountID { return accounts.MerchantAccountOn(m, shard, shards) }); p != "" {
			fmt.Fprintf(out, "    merchant %d: %s\n", m, p)
			bad++
		}
	}
	if len(merchants) > merchantsShownMax {
		fmt.Fprintf(out, "  (%d more merchants)\n", len(merchants)-merchantsShownMax)
	}
	for _, a := range slices.Sorted(maps.Keys(totals)) {
		fmt.Fprintf(out, "  %-30s %5s %18s\n", fmt.Sprintf("all %d merchants", len(merchants)), a, accounts.FormatAmount(totals[a]))
	}
	return bad, nil
}

// groupByCanonical sums the accounts of code by accounts.Canonical, in
// canonical order.
func groupByCanonical(nets []postgres.AccountNet, code uint16) []*fundGroup {
	byID := map[ledger.AccountID]*fundGroup{}
	var out []*fundGroup
	for _, n := range nets {
		if n.Code != code {
			continue
		}
		c := accounts.Canonical(n.ID)
		g := byID[c]
		if g == nil {
			g = &fundGroup{canonical: c, asset: n.Asset}
			byID[c] = g
			out = append(out, g)
		}
		g.net += n.Net
		g.subs = append(g.subs, n)
	}
	slices.SortFunc(out, func(a, b *fundGroup) int { return cmp.Compare(a.canonical, b.canonical) })
	return out
}

// check returns what is wrong with the group's sub-accounts ("" when
// nothing): each must be the one want places on the shard it is stored
// under, in the group's asset, and every shard must have its one.
func (g *fundGroup) check(shards int, want func(shard int) ledger.AccountID) string {
	seen := make([]bool, shards)
	for _, s := range g.subs {
		switch {
		case s.Shard < 0 || s.Shard >= shards:
			return fmt.Sprintf("sub-account %d is stored under shard %d, beyond the %d shards", s.ID, s.Shard, shards)
		case s.ID != want(s.Shard):
			return fmt.Sprintf("sub-account %d under shard %d is not that shard's (%d): placed for another shard count?",
				s.ID, s.Shard, want(s.Shard))
		case s.Asset != g.asset:
			return fmt.Sprintf("sub-account %d is in %s, the others in %s", s.ID, s.Asset, g.asset)
		}
		seen[s.Shard] = true
	}
	if n := len(g.subs); n != shards {
		missing := slices.Index(seen, false)
		return fmt.Sprintf("%d sub-accounts for %d shards (shard %d has none)", n, shards, missing)
	}
	return ""
}
