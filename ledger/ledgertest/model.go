package ledgertest

import (
	"maps"

	"github.com/fundplatform/fund/ledger"
)

// model is the ledger's transfer rules stated as plainly as possible, for
// the inputs the suite generates: existing accounts, valid flags and ids,
// amounts far from overflow, holds without timeouts, chains that close
// inside their request and never repeat an id. It is written from the
// rules, not from ledger.Book, so that the two can disagree.
type model struct {
	accounts map[ledger.AccountID]ledger.Account
	holds    map[ledger.TransferID]ledger.PendingTransfer
	// applied holds the client's fields of every transfer that took effect:
	// a retry must match them exactly.
	applied map[ledger.TransferID]ledger.Transfer
}

func newModel(accounts []ledger.Account) *model {
	m := &model{
		accounts: map[ledger.AccountID]ledger.Account{},
		holds:    map[ledger.TransferID]ledger.PendingTransfer{},
		applied:  map[ledger.TransferID]ledger.Transfer{},
	}
	for _, a := range accounts {
		m.accounts[a.ID] = a
	}
	return m
}

func (m *model) clone() *model {
	return &model{accounts: maps.Clone(m.accounts), holds: maps.Clone(m.holds), applied: maps.Clone(m.applied)}
}

// clientFields is a transfer as its client sent it: what a retry repeats.
func clientFields(t ledger.Transfer) ledger.Transfer {
	t.Timestamp, t.PendingAmount = 0, 0
	return t
}

// request applies one request: chains (runs of Linked transfers and the
// transfer that ends them) apply whole or not at all.
func (m *model) request(in []ledger.Transfer) []ledger.Result {
	out := make([]ledger.Result, len(in))
	for i := 0; i < len(in); {
		end := i
		for end < len(in)-1 && in[end].Flags&ledger.Linked != 0 {
			end++
		}
		m.chain(in[i:end+1], out[i:end+1])
		i = end + 1
	}
	return out
}

// chain applies one chain. A failing member fails the chain: it answers its
// own result and every other member linked_event_failed. A chain of which
// some members were applied before (they answer exists) and some not is no
// retry of anything: its new members are refused.
func (m *model) chain(in []ledger.Transfer, out []ledger.Result) {
	before := m.clone()
	existed, applied := 0, 0
	for j, t := range in {
		r := m.transfer(t)
		switch {
		case r == ledger.ResultExists && len(in) > 1:
			existed++
		case r == ledger.ResultOK:
			applied++
		default:
			*m = *before
			for k := range out {
				out[k] = ledger.ResultLinkedEventFailed
			}
			out[j] = r
			return
		}
		out[j] = r
	}
	if existed > 0 && applied > 0 {
		*m = *before
		for k, r := range out {
			if r == ledger.ResultOK {
				out[k] = ledger.ResultLinkedEventFailed
			}
		}
	}
}

// transfer applies one transfer outside any chain logic.
func (m *model) transfer(t ledger.Transfer) ledger.Result {
	if prev, ok := m.applied[t.ID]; ok {
		if prev == clientFields(t) {
			return ledger.ResultExists
		}
		return ledger.ResultExistsWithDifferentFields
	}
	var r ledger.Result
	if t.Flags&(ledger.PostPending|ledger.VoidPending) != 0 {
		r = m.resolve(t)
	} else {
		r = m.move(t)
	}
	if r == ledger.ResultOK {
		m.applied[t.ID] = clientFields(t)
	}
	return r
}

// move applies a plain transfer or a hold: an account may not go beyond
// its limit, counting what holds reserve.
func (m *model) move(t ledger.Transfer) ledger.Result {
	dr, cr := m.accounts[t.DebitAccountID], m.accounts[t.CreditAccountID]
	switch {
	case dr.Asset != t.Asset || cr.Asset != t.Asset:
		return ledger.ResultAssetMismatch
	case dr.Flags&ledger.DebitsMustNotExceedCredits != 0 && dr.DebitsPosted+dr.DebitsPending+t.Amount > dr.CreditsPosted:
		return ledger.ResultExceedsCredits
	case cr.Flags&ledger.CreditsMustNotExceedDebits != 0 && cr.CreditsPosted+cr.CreditsPending+t.Amount > cr.DebitsPosted:
		return ledger.ResultExceedsDebits
	}
	if t.Flags&ledger.Pending != 0 {
		dr.DebitsPending += t.Amount
		cr.CreditsPending += t.Amount
		m.holds[t.ID] = ledger.PendingTransfer{ID: t.ID, DebitAccountID: dr.ID, CreditAccountID: cr.ID,
			Amount: t.Amount, Asset: t.Asset, State: ledger.PendingOpen}
	} else {
		dr.DebitsPosted += t.Amount
		cr.CreditsPosted += t.Amount
	}
	m.accounts[dr.ID], m.accounts[cr.ID] = dr, cr
	return ledger.ResultOK
}

// resolve posts (all of a hold, or part of it: the rest is released) or
// voids an open hold.
func (m *model) resolve(t ledger.Transfer) ledger.Result {
	h, ok := m.holds[t.PendingID]
	switch {
	case !ok:
		return ledger.ResultPendingTransferNotFound
	case h.State == ledger.PendingPosted:
		return ledger.ResultPendingTransferAlreadyPosted
	case h.State == ledger.PendingVoided:
		return ledger.ResultPendingTransferAlreadyVoided
	}
	post := t.Flags&ledger.PostPending != 0
	amount := t.Amount
	if amount == 0 {
		amount = h.Amount
	}
	switch {
	case post && amount > h.Amount:
		return ledger.ResultExceedsPendingAmount
	case !post && amount != h.Amount:
		return ledger.ResultVoidAmountMismatch
	}
	dr, cr := m.accounts[h.DebitAccountID], m.accounts[h.CreditAccountID]
	dr.DebitsPending -= h.Amount
	cr.CreditsPending -= h.Amount
	h.State = ledger.PendingVoided
	if post {
		dr.DebitsPosted += amount
		cr.CreditsPosted += amount
		h.State = ledger.PendingPosted
	}
	m.accounts[dr.ID], m.accounts[cr.ID] = dr, cr
	m.holds[h.ID] = h
	return ledger.ResultOK
}
