package audit

import (
	"cmp"
	"fmt"
	"testing"
	"time"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/xshard"
	"github.com/fundplatform/fund/loadtest"
)

// books builds what the journal and the order table would hold for r when
// it applied: every leg once, with the accounts its chain names.
func books(r loadtest.Record, journal map[ledger.TransferID][]entry, rows map[string]order, status accounts.OrderStatus) {
	booksOn(r, 1, journal, rows, status)
}

// booksOn is books with the customers spread over shards.
func booksOn(r loadtest.Record, shards int, journal map[ledger.TransferID][]entry, rows map[string]order, status accounts.OrderStatus) {
	for i, l := range chainOf(r, shards) {
		e := entry{amount: r.Amount, asset: l.asset}
		if l.debit != nil {
			e.debit = l.debit(r)
		} else {
			e.debit = accounts.QuotaAccount(accounts.CustomerID(r.Customer), accounts.NaturalDay(time.Now()))
		}
		e.credit = l.credit(r)
		if l.pending {
			e.flags = ledger.Pending
		}
		journal[LegID(r.Customer, r.Key, i)] = append(journal[LegID(r.Customer, r.Key, i)], e)
	}
	rows[rowKey(r.Customer, r.Key)] = order{kind: string(orderKinds[r.Op]), amount: r.Amount, counterparty: r.Counterparty, status: string(status)}
}

// settle adds what settlement books for a pending order: the post of its
// pending leg and, for a standard redemption, payouts cash entries of
// amount paid.
func settle(r loadtest.Record, j map[ledger.TransferID][]entry, rows map[string]order, paid int64, payouts int) {
	books(r, j, rows, accounts.OrderCompleted)
	post, cash, _ := followUps(r)
	j[post] = append(j[post], entry{amount: r.Amount, flags: ledger.PostPending})
	if r.Op == loadtest.OpStandardRedeem {
		for range payouts {
			j[cash] = append(j[cash], entry{debit: accounts.FundOmnibusCash, credit: accounts.CashAccount(accounts.CustomerID(r.Customer)),
				amount: paid, asset: ledger.AssetCNY})
		}
	}
}

// TestCheckClassifies runs every kind of finding through check, without a
// database: what the books hold is built by hand for each case.
func TestCheckClassifies(t *testing.T) {
	rec := func(op loadtest.Op, key string, o loadtest.Outcome) loadtest.Record {
		r := loadtest.Record{Op: op, Customer: 7, Amount: 1234, Key: key, Outcome: o, Attempts: 1}
		switch op {
		case loadtest.OpTransfer:
			r.Counterparty = 8
		case loadtest.OpPay:
			r.Counterparty = 2
		}
		return r
	}
	cases := []struct {
		name  string
		r     loadtest.Record
		plant func(r loadtest.Record, j map[ledger.TransferID][]entry, rows map[string]order)
		want  func(a *loadtest.Audit) int64
	}{
		{"accepted and booked", rec(loadtest.OpFastRedeem, "k1", loadtest.Accepted),
			func(r loadtest.Record, j map[ledger.TransferID][]entry, rows map[string]order) {
				books(r, j, rows, accounts.OrderCompleted)
			}, func(a *loadtest.Audit) int64 { return a.Applied }},
		{"accepted, pending subscription", rec(loadtest.OpSubscribe, "k2", loadtest.Accepted),
			func(r loadtest.Record, j map[ledger.TransferID][]entry, rows map[string]order) {
				books(r, j, rows, accounts.OrderPending)
			}, func(a *loadtest.Audit) int64 { return a.Applied }},
		{"accepted, nothing in the books", rec(loadtest.OpPay, "k3", loadtest.Accepted),
			func(loadtest.Record, map[ledger.TransferID][]entry, map[string]order) {},
			func(a *loadtest.Audit) int64 { return a.Lost }},
		{"accepted, one leg of two missing", rec(loadtest.OpPay, "k4", loadtest.Accepted),
			func(r loadtest.Record, j map[ledger.TransferID][]entry, rows map[string]order) {
				books(r, j, rows, accounts.OrderCompleted)
				delete(j, LegID(r.Customer, r.Key, 1))
			}, func(a *loadtest.Audit) int64 { return a.Lost }},
		{"accepted, booked twice", rec(loadtest.OpTransfer, "k5", loadtest.Accepted),
			func(r loadtest.Record, j map[ledger.TransferID][]entry, rows map[string]order) {
				books(r, j, rows, accounts.OrderCompleted)
				id := LegID(r.Customer, r.Key, 0)
				j[id] = append(j[id], j[id][0])
			}, func(a *loadtest.Audit) int64 { return a.Duplicated }},
		{"accepted, other amount", rec(loadtest.OpTransfer, "k6", loadtest.Accepted),
			func(r loadtest.Record, j map[ledger.TransferID][]entry, rows map[string]order) {
				books(r, j, rows, accounts.OrderCompleted)
				j[LegID(r.Customer, r.Key, 0)][0].amount++
			}, func(a *loadtest.Audit) int64 { return a.Wrong }},
		{"accepted, paid to another merchant", rec(loadtest.OpPay, "k7", loadtest.Accepted),
			func(r loadtest.Record, j map[ledger.TransferID][]entry, rows map[string]order) {
				books(r, j, rows, accounts.OrderCompleted)
				j[LegID(r.Customer, r.Key, 1)][0].credit = accounts.MerchantAccountOn(3, 0, 1)
			}, func(a *loadtest.Audit) int64 { return a.Wrong }},
		{"refused, and nothing moved", rec(loadtest.OpFastRedeem, "k8", loadtest.Rejected),
			func(r loadtest.Record, _ map[ledger.TransferID][]entry, rows map[string]order) {
				rows[rowKey(r.Customer, r.Key)] = order{kind: "fast_redeem", amount: r.Amount, status: "rejected"}
			}, func(a *loadtest.Audit) int64 { return a.Checked - a.Lost - a.Wrong - a.HalfApplied - a.Duplicated }},
		{"refused, but money moved", rec(loadtest.OpTransfer, "k9", loadtest.Rejected),
			func(r loadtest.Record, j map[ledger.TransferID][]entry, rows map[string]order) {
				books(r, j, rows, accounts.OrderRejected)
			}, func(a *loadtest.Audit) int64 { return a.Wrong }},
		{"timed out, applied whole", rec(loadtest.OpSubscribe, "k10", loadtest.Failed),
			func(r loadtest.Record, j map[ledger.TransferID][]entry, rows map[string]order) {
				books(r, j, rows, accounts.OrderPending)
			}, func(a *loadtest.Audit) int64 { return a.UnackedApplied }},
		{"timed out, applied whole, order row lost", rec(loadtest.OpSubscribe, "k11", loadtest.Failed),
			func(r loadtest.Record, j map[ledger.TransferID][]entry, rows map[string]order) {
				books(r, j, rows, accounts.OrderPending)
				delete(rows, rowKey(r.Customer, r.Key))
			}, func(a *loadtest.Audit) int64 { return a.UnackedApplied }},
		{"timed out, half of a chain", rec(loadtest.OpFastRedeem, "k12", loadtest.Failed),
			func(r loadtest.Record, j map[ledger.TransferID][]entry, rows map[string]order) {
				books(r, j, rows, accounts.OrderCompleted)
				delete(j, LegID(r.Customer, r.Key, 2))
			}, func(a *loadtest.Audit) int64 { return a.HalfApplied }},
		{"shed, order row completed but no money", rec(loadtest.OpTransfer, "k13", loadtest.Shed),
			func(r loadtest.Record, j map[ledger.TransferID][]entry, rows map[string]order) {
				rows[rowKey(r.Customer, r.Key)] = order{kind: "transfer", amount: r.Amount, counterparty: 8, status: "completed"}
			}, func(a *loadtest.Audit) int64 { return a.HalfApplied }},
		{"shed on the only attempt, yet booked", rec(loadtest.OpSubscribe, "k15", loadtest.Shed),
			func(r loadtest.Record, j map[ledger.TransferID][]entry, rows map[string]order) {
				books(r, j, rows, accounts.OrderPending)
			}, func(a *loadtest.Audit) int64 { return a.Wrong }},
		{"shed on a retry after a timed-out attempt that applied", func() loadtest.Record {
			r := rec(loadtest.OpSubscribe, "k16", loadtest.Shed)
			r.Attempts = 2
			return r
		}(),
			func(r loadtest.Record, j map[ledger.TransferID][]entry, rows map[string]order) {
				books(r, j, rows, accounts.OrderPending)
			}, func(a *loadtest.Audit) int64 { return a.UnackedApplied }},
		{"subscription confirmed once", rec(loadtest.OpSubscribe, "s1", loadtest.Accepted),
			func(r loadtest.Record, j map[ledger.TransferID][]entry, rows map[string]order) {
				settle(r, j, rows, r.Amount, 1)
			}, func(a *loadtest.Audit) int64 { return a.Settled }},
		{"redemption paid once", rec(loadtest.OpStandardRedeem, "s2", loadtest.Accepted),
			func(r loadtest.Record, j map[ledger.TransferID][]entry, rows map[string]order) {
				settle(r, j, rows, r.Amount, 1)
			}, func(a *loadtest.Audit) int64 { return a.Settled }},
		{"redemption paid twice", rec(loadtest.OpStandardRedeem, "s3", loadtest.Accepted),
			func(r loadtest.Record, j map[ledger.TransferID][]entry, rows map[string]order) {
				settle(r, j, rows, r.Amount, 2)
			}, func(a *loadtest.Audit) int64 { return a.Duplicated }},
		{"redemption's shares posted, cash never paid", rec(loadtest.OpStandardRedeem, "s4", loadtest.Accepted),
			func(r loadtest.Record, j map[ledger.TransferID][]entry, rows map[string]order) {
				settle(r, j, rows, r.Amount, 0)
			}, func(a *loadtest.Audit) int64 { return a.HalfApplied }},
		{"redemption paid another amount", rec(loadtest.OpStandardRedeem, "s5", loadtest.Accepted),
			func(r loadtest.Record, j map[ledger.TransferID][]entry, rows map[string]order) {
				settle(r, j, rows, r.Amount+1, 1)
			}, func(a *loadtest.Audit) int64 { return a.Wrong }},
		{"never sent, yet booked", rec(loadtest.OpTransfer, "k14", loadtest.Dropped),
			func(r loadtest.Record, j map[ledger.TransferID][]entry, rows map[string]order) {
				books(r, j, rows, accounts.OrderCompleted)
			}, func(a *loadtest.Audit) int64 { return a.Wrong }},
	}
	for _, c := range cases {
		journal, rows := map[ledger.TransferID][]entry{}, map[string]order{}
		c.plant(c.r, journal, rows)
		a := &loadtest.Audit{}
		var problems []string
		check(a, c.r, 1, journal, rows, func(f string, args ...any) { problems = append(problems, f) })
		if c.want(a) != 1 {
			t.Errorf("%s: %+v, problems %v", c.name, *a, problems)
		}
	}
}

// TestCheckSagaShape: with customers on several shards, a transfer between
// two of them is leg 1 of a saga (payer's cash to the in-transit account
// for the payee's shard) and its row may be pending, completed or
// refunded; a transfer within one shard is still cash to cash.
func TestCheckSagaShape(t *testing.T) {
	const shards = 8
	payer := int64(7)
	var far, near int64
	for c := payer + 1; far == 0 || near == 0; c++ {
		if accounts.ShardOf(accounts.CustomerID(c), shards) == accounts.ShardOf(accounts.CustomerID(payer), shards) {
			near = cmp.Or(near, c)
		} else {
			far = cmp.Or(far, c)
		}
	}
	rec := func(key string, to int64) loadtest.Record {
		return loadtest.Record{Op: loadtest.OpTransfer, Customer: payer, Counterparty: to, Amount: 500, Key: key,
			Outcome: loadtest.Accepted, Attempts: 1}
	}
	cases := []struct {
		name  string
		r     loadtest.Record
		plant func(r loadtest.Record, j map[ledger.TransferID][]entry, rows map[string]order)
		want  func(a *loadtest.Audit) int64
	}{
		{"saga in flight", rec("x1", far), func(r loadtest.Record, j map[ledger.TransferID][]entry, rows map[string]order) {
			booksOn(r, shards, j, rows, accounts.OrderPending)
		}, func(a *loadtest.Audit) int64 { return a.Applied }},
		{"saga refunded", rec("x2", far), func(r loadtest.Record, j map[ledger.TransferID][]entry, rows map[string]order) {
			booksOn(r, shards, j, rows, accounts.OrderRefunded)
		}, func(a *loadtest.Audit) int64 { return a.Applied }},
		{"saga leg 1 into the wrong in-transit account", rec("x3", far),
			func(r loadtest.Record, j map[ledger.TransferID][]entry, rows map[string]order) {
				booksOn(r, shards, j, rows, accounts.OrderCompleted)
				j[LegID(r.Customer, r.Key, 0)][0].credit = accounts.CashAccount(accounts.CustomerID(far))
			}, func(a *loadtest.Audit) int64 { return a.Wrong }},
		{"same shard, one chain", rec("x4", near), func(r loadtest.Record, j map[ledger.TransferID][]entry, rows map[string]order) {
			booksOn(r, shards, j, rows, accounts.OrderCompleted)
			if e := j[LegID(r.Customer, r.Key, 0)][0]; e.credit != accounts.CashAccount(accounts.CustomerID(near)) {
				t.Errorf("same-shard transfer credits %d", e.credit)
			}
		}, func(a *loadtest.Audit) int64 { return a.Applied }},
		{"saga never acknowledged, leg 1 applied", func() loadtest.Record {
			r := rec("x5", far)
			r.Outcome = loadtest.Failed
			return r
		}(), func(r loadtest.Record, j map[ledger.TransferID][]entry, rows map[string]order) {
			booksOn(r, shards, j, rows, accounts.OrderPending)
		}, func(a *loadtest.Audit) int64 { return a.UnackedApplied }},
	}
	for _, c := range cases {
		journal, rows := map[ledger.TransferID][]entry{}, map[string]order{}
		c.plant(c.r, journal, rows)
		a := &loadtest.Audit{}
		var problems []string
		check(a, c.r, shards, journal, rows, func(f string, args ...any) { problems = append(problems, fmt.Sprintf(f, args...)) })
		if c.want(a) != 1 {
			t.Errorf("%s: %+v, problems %v", c.name, *a, problems)
		}
	}
	// The saga's closing legs count as its own entries, not as strays.
	ids := allIDs(rec("x6", far), shards)
	in, back := xshard.ClosingIDs(LegID(payer, "x6", 0))
	if len(ids) != 3 || ids[1] != in || ids[2] != back {
		t.Errorf("ids of a saga: %v", ids)
	}
}
