package postgres_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/fundplatform/fund/internal/testseed"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/postgres"
)

// This file holds a randomised model test: thousands of random requests go
// to a real Sequencer on a real postgres.Store and to refModel, a small
// reference written here from the rules (not from ledger.Book), and every
// result code and every balance must agree.

// ---------------------------------------------------------------------------
// The reference model.

type refAccount struct {
	id     ledger.AccountID
	asset  ledger.Asset
	code   uint16
	flags  ledger.AccountFlags
	closed bool

	dpend, dpost, cpend, cpost int64
}

type refPending struct {
	id        ledger.TransferID
	dr, cr    ledger.AccountID
	amount    int64
	asset     ledger.Asset
	expiresAt int64 // Unix ns; 0 = never
	state     ledger.PendingState
}

// refModel is the ledger's rules stated as plainly as possible. Chains are
// applied tentatively and undone through closures on failure.
type refModel struct {
	accounts map[ledger.AccountID]*refAccount
	pending  map[ledger.TransferID]*refPending
	applied  map[ledger.TransferID]ledger.Transfer // client fields of every transfer that took effect
	entries  int64                                 // journal rows, the ledger's expiry voids included
	expired  int                                   // expiry voids written
	undo     []func()
}

func newRefModel() *refModel {
	return &refModel{
		accounts: map[ledger.AccountID]*refAccount{},
		pending:  map[ledger.TransferID]*refPending{},
		applied:  map[ledger.TransferID]ledger.Transfer{},
	}
}

// begin opens a batch at time now: every open pending transfer whose
// deadline has come (expiresAt <= now) is released by the ledger.
func (m *refModel) begin(now int64) {
	for _, p := range m.pending {
		if p.state == ledger.PendingOpen && p.expiresAt != 0 && p.expiresAt <= now {
			m.accounts[p.dr].dpend -= p.amount
			m.accounts[p.cr].cpend -= p.amount
			p.state = ledger.PendingExpired
			m.entries++
			m.expired++
		}
	}
}

// expiring counts the pending transfers a batch at time now would expire.
func (m *refModel) expiring(now int64) int {
	n := 0
	for _, p := range m.pending {
		if p.state == ledger.PendingOpen && p.expiresAt != 0 && p.expiresAt <= now {
			n++
		}
	}
	return n
}

func (m *refModel) createAccounts(in []ledger.Account) []ledger.Result {
	out := make([]ledger.Result, len(in))
	for i, a := range in {
		out[i] = m.createAccount(a)
	}
	return out
}

func (m *refModel) createAccount(a ledger.Account) ledger.Result {
	const known = ledger.DebitsMustNotExceedCredits | ledger.CreditsMustNotExceedDebits
	switch {
	case a.ID == 0:
		return ledger.ResultIDMustNotBeZero
	case a.Flags&^known != 0:
		return ledger.ResultReservedFlag
	case a.Flags == known:
		return ledger.ResultFlagsAreMutuallyExclusive
	case a.Asset != ledger.AssetCNY && a.Asset != ledger.AssetFundShares:
		return ledger.ResultInvalidAsset
	}
	if old, ok := m.accounts[a.ID]; ok {
		if old.asset == a.Asset && old.code == a.Code && old.flags == a.Flags {
			return ledger.ResultExists
		}
		return ledger.ResultExistsWithDifferentFields
	}
	m.accounts[a.ID] = &refAccount{id: a.ID, asset: a.Asset, code: a.Code, flags: a.Flags}
	return ledger.ResultOK
}

func (m *refModel) closeAccounts(ids []ledger.AccountID) []ledger.Result {
	out := make([]ledger.Result, len(ids))
	for i, id := range ids {
		a, ok := m.accounts[id]
		switch {
		case !ok:
			out[i] = ledger.ResultAccountNotFound
		case a.closed:
			out[i] = ledger.ResultAccountAlreadyClosed
		case a.dpend != 0 || a.cpend != 0 || a.dpost != a.cpost:
			out[i] = ledger.ResultAccountBalanceNotZero
		default:
			a.closed = true
			out[i] = ledger.ResultOK
		}
	}
	return out
}

// createTransfers applies a request: chains (runs of Linked transfers and
// the first one after them) apply whole or not at all; the failing member
// reports its own result and the rest of its chain linked_event_failed; a
// request that ends inside a chain fails that chain at its last member with
// linked_event_chain_open. In a chain of two or more, a member applied
// before answers exists and does not fail the chain: a chain retried whole
// answers exists for every member; a chain partly applied before (so not a
// retry of one chain) applies nothing new: its new members answer
// linked_event_failed and the old ones exists. A member whose id an
// earlier member of the same chain already carries fails the chain with
// id_repeated_in_chain (it is not a retry of anything). ts gives the
// timestamp the ledger reported for each transfer, which fixes the deadline
// of a pending transfer.
func (m *refModel) createTransfers(in []ledger.Transfer, ts func(i int) int64) []ledger.Result {
	out := make([]ledger.Result, len(in))
	for i := 0; i < len(in); {
		end := i
		for end < len(in)-1 && in[end].Flags&ledger.Linked != 0 {
			end++
		}
		m.undo = m.undo[:0]
		failed, failure := -1, ledger.ResultOK
		applied, existed := 0, 0
		for j := i; j <= end; j++ {
			r := m.transfer(in[j], ts(j))
			if r == ledger.ResultExists && end > i {
				for k := i; k < j; k++ {
					if in[k].ID == in[j].ID {
						r = ledger.ResultIDRepeatedInChain
						break
					}
				}
			}
			if r == ledger.ResultOK && j == end && in[j].Flags&ledger.Linked != 0 {
				r = ledger.ResultLinkedEventChainOpen
			}
			if r == ledger.ResultExists && end > i {
				existed++
				out[j] = ledger.ResultExists
				continue
			}
			if r != ledger.ResultOK {
				failed, failure = j, r
				break
			}
			applied++
			out[j] = ledger.ResultOK
		}
		undo := func() {
			for k := len(m.undo) - 1; k >= 0; k-- {
				m.undo[k]()
			}
		}
		switch {
		case failed >= 0:
			undo()
			for j := i; j <= end; j++ {
				out[j] = ledger.ResultLinkedEventFailed
			}
			out[failed] = failure
		case existed > 0 && applied > 0:
			undo()
			for j := i; j <= end; j++ {
				if out[j] == ledger.ResultOK {
					out[j] = ledger.ResultLinkedEventFailed
				}
			}
		}
		m.undo = m.undo[:0]
		i = end + 1
	}
	return out
}

func clientFields(t ledger.Transfer) ledger.Transfer {
	t.Timestamp, t.PendingAmount = 0, 0
	return t
}

// fits reports whether the sum of non-negative values fits in an int64.
func fits(vs ...int64) bool {
	var sum int64
	for _, v := range vs {
		if v > math.MaxInt64-sum {
			return false
		}
		sum += v
	}
	return true
}

func (m *refModel) transfer(t ledger.Transfer, ts int64) ledger.Result {
	const clientFlags = ledger.Linked | ledger.Pending | ledger.PostPending | ledger.VoidPending
	kinds := 0
	for _, f := range []ledger.TransferFlags{ledger.Pending, ledger.PostPending, ledger.VoidPending} {
		if t.Flags&f != 0 {
			kinds++
		}
	}
	switch {
	case t.ID == (ledger.TransferID{}):
		return ledger.ResultIDMustNotBeZero
	case t.Flags&^clientFlags != 0:
		return ledger.ResultReservedFlag
	case kinds > 1:
		return ledger.ResultFlagsAreMutuallyExclusive
	case len(t.UserData) > ledger.MaxUserDataLen:
		return ledger.ResultUserDataTooLong
	}
	if prev, ok := m.applied[t.ID]; ok {
		// NOTE: this includes an id applied earlier in the same chain,
		// which may then be rolled back: the ledger answers "exists" for
		// an id that in the end was not applied (see the report).
		if prev == clientFields(t) {
			return ledger.ResultExists
		}
		return ledger.ResultExistsWithDifferentFields
	}
	var r ledger.Result
	if t.Flags&(ledger.PostPending|ledger.VoidPending) != 0 {
		r = m.resolve(t)
	} else {
		r = m.plain(t, ts)
	}
	if r == ledger.ResultOK {
		m.applied[t.ID] = clientFields(t)
		m.entries++
		m.undo = append(m.undo, func() { delete(m.applied, t.ID); m.entries-- })
	}
	return r
}

// change records a's state for undo, then lets the caller modify it.
func (m *refModel) change(a *refAccount) *refAccount {
	old := *a
	m.undo = append(m.undo, func() { *a = old })
	return a
}

func (m *refModel) plain(t ledger.Transfer, ts int64) ledger.Result {
	pending := t.Flags&ledger.Pending != 0
	switch {
	case t.PendingID != (ledger.TransferID{}):
		return ledger.ResultPendingIDMustBeZero
	case t.Timeout != 0 && !pending:
		return ledger.ResultTimeoutReservedForPending
	case t.Timeout < 0:
		return ledger.ResultInvalidTimeout
	case t.Amount <= 0:
		return ledger.ResultInvalidAmount
	case t.DebitAccountID == t.CreditAccountID:
		return ledger.ResultAccountsMustBeDifferent
	}
	dr, ok := m.accounts[t.DebitAccountID]
	if !ok {
		return ledger.ResultDebitAccountNotFound
	}
	cr, ok := m.accounts[t.CreditAccountID]
	if !ok {
		return ledger.ResultCreditAccountNotFound
	}
	amt := t.Amount
	switch {
	case dr.asset != t.Asset || cr.asset != t.Asset:
		return ledger.ResultAssetMismatch
	case dr.closed:
		return ledger.ResultDebitAccountClosed
	case cr.closed:
		return ledger.ResultCreditAccountClosed
	case !fits(dr.dpend, amt) || !fits(dr.dpost, amt) || !fits(cr.cpend, amt) || !fits(cr.cpost, amt) ||
		!fits(dr.dpost, dr.dpend, amt) || !fits(cr.cpost, cr.cpend, amt):
		return ledger.ResultOverflow
	case dr.flags&ledger.DebitsMustNotExceedCredits != 0 && dr.dpost+dr.dpend+amt > dr.cpost:
		return ledger.ResultExceedsCredits
	case cr.flags&ledger.CreditsMustNotExceedDebits != 0 && cr.cpost+cr.cpend+amt > cr.dpost:
		return ledger.ResultExceedsDebits
	}
	m.change(dr)
	m.change(cr)
	if !pending {
		dr.dpost += amt
		cr.cpost += amt
		return ledger.ResultOK
	}
	dr.dpend += amt
	cr.cpend += amt
	p := &refPending{id: t.ID, dr: dr.id, cr: cr.id, amount: amt, asset: t.Asset, state: ledger.PendingOpen}
	if t.Timeout > 0 {
		p.expiresAt = ts + int64(t.Timeout)
	}
	m.pending[p.id] = p
	m.undo = append(m.undo, func() { delete(m.pending, p.id) })
	return ledger.ResultOK
}

func (m *refModel) resolve(t ledger.Transfer) ledger.Result {
	switch {
	case t.PendingID == (ledger.TransferID{}):
		return ledger.ResultPendingIDRequired
	case t.PendingID == t.ID:
		return ledger.ResultPendingIDMustBeDifferent
	case t.Timeout != 0:
		return ledger.ResultTimeoutReservedForPending
	case t.Amount < 0:
		return ledger.ResultInvalidAmount
	}
	p, ok := m.pending[t.PendingID]
	if !ok {
		return ledger.ResultPendingTransferNotFound
	}
	switch p.state {
	case ledger.PendingPosted:
		return ledger.ResultPendingTransferAlreadyPosted
	case ledger.PendingVoided:
		return ledger.ResultPendingTransferAlreadyVoided
	case ledger.PendingExpired:
		return ledger.ResultPendingTransferExpired
	}
	switch {
	case t.DebitAccountID != 0 && t.DebitAccountID != p.dr:
		return ledger.ResultPendingTransferHasDifferentDebit
	case t.CreditAccountID != 0 && t.CreditAccountID != p.cr:
		return ledger.ResultPendingTransferHasDifferentCredit
	case t.Asset != 0 && t.Asset != p.asset:
		return ledger.ResultPendingTransferHasDifferentAsset
	}
	dr, cr := m.accounts[p.dr], m.accounts[p.cr]
	post := t.Flags&ledger.PostPending != 0
	amt := t.Amount
	if post {
		if amt == 0 {
			amt = p.amount
		}
		if amt > p.amount {
			return ledger.ResultExceedsPendingAmount
		}
		if !fits(dr.dpost, amt) || !fits(cr.cpost, amt) {
			return ledger.ResultOverflow
		}
	} else if amt != 0 && amt != p.amount {
		return ledger.ResultVoidAmountMismatch
	}
	m.change(dr)
	m.change(cr)
	prev := p.state
	m.undo = append(m.undo, func() { p.state = prev })
	dr.dpend -= p.amount
	cr.cpend -= p.amount
	if post {
		dr.dpost += amt
		cr.cpost += amt
		p.state = ledger.PendingPosted
	} else {
		p.state = ledger.PendingVoided
	}
	return ledger.ResultOK
}

// ---------------------------------------------------------------------------
// The driver.

// Account ids of the model runs.
const (
	acctCashSystem  = ledger.AccountID(1)  // CNY, no limit: funds the users
	acctShareSystem = ledger.AccountID(2)  // fund shares, no limit
	acctCashUser    = ledger.AccountID(3)  // 3..8 CNY users, debits must not exceed credits
	acctShareUser   = ledger.AccountID(9)  // 9..11 share users
	acctDebitNormal = ledger.AccountID(12) // CNY, credits must not exceed debits
	acctLateFirst   = ledger.AccountID(13) // 13..17 created (or not) during the run
	acctLateLast    = ledger.AccountID(17)
	acctFreshFirst  = ledger.AccountID(20) // 20..40 created and closed during the run
	acctFreshLast   = ledger.AccountID(40)
	acctMidnight    = ledger.AccountID(50) // 50..54 used by the midnight batch only
	acctIDMax       = ledger.AccountID(55)
)

type modelConfig struct {
	ops       int
	start     time.Time
	midnight  time.Time // when set: force a batch across it at ops/2 and retry every older id after it
	restartPc int       // chance per op, in percent
}

type modelRun struct {
	t     *testing.T
	cfg   modelConfig
	rng   *rand.Rand
	clock *fakeClock
	store *postgres.Store
	seq   *runningSeq
	m     *refModel

	history    []ledger.Transfer   // every transfer sent, for retries
	pendingIDs []ledger.TransferID // every pending transfer sent
	lastTS     int64               // newest timestamp the ledger reported
	op         int
	restarts   int
	seen       map[ledger.Result]int
	idSeq      uint64
}

func TestModel(t *testing.T) {
	t.Parallel()
	runModel(t, modelConfig{
		ops:       3000,
		start:     time.Date(2031, 3, 14, 10, 0, 0, 0, ledger.BusinessZone()),
		restartPc: 1,
	})
}

// TestModelAcrossMidnight crosses the business-date boundary (a new journal
// partition) in the middle of a batch, restarts, and retries every id
// applied the day before: they must still be known.
func TestModelAcrossMidnight(t *testing.T) {
	t.Parallel()
	midnight := time.Date(2031, 12, 31, 0, 0, 0, 0, ledger.BusinessZone()).Add(24 * time.Hour)
	runModel(t, modelConfig{
		ops:       1200,
		start:     midnight.Add(-10 * time.Second),
		midnight:  midnight,
		restartPc: 1,
	})
}

func runModel(t *testing.T, cfg modelConfig) {
	seed := testseed.Seed(t)
	r := &modelRun{
		t: t, cfg: cfg, rng: newRand(seed),
		clock: newFakeClock(cfg.start),
		m:     newRefModel(),
		seen:  map[ledger.Result]int{},
		idSeq: seed,
	}
	r.store = openStore(t)
	r.restart()
	r.setup()
	for r.op = 0; r.op < cfg.ops; r.op++ {
		if !cfg.midnight.IsZero() && r.op == cfg.ops/2 {
			r.crossMidnight()
			continue
		}
		r.step()
	}
	r.finish()
	t.Logf("%d ops, %d restarts, %d journal rows (%d expiries), %d pending transfers, results: %s",
		cfg.ops, r.restarts, r.m.entries, r.m.expired, len(r.pendingIDs), r.coverage())
}

func (r *modelRun) newID() ledger.TransferID {
	r.idSeq++
	return ledger.DeriveTransferID("model-test", fmt.Sprint(r.idSeq))
}

func (r *modelRun) restart() {
	if r.seq != nil {
		if err := r.seq.stop(r.t); err != nil {
			r.t.Fatalf("op %d: sequencer stopped with %v", r.op, err)
		}
		r.restarts++
	}
	r.seq = startSeq(r.t, r.store, ledger.SequencerConfig{Now: r.clock.Now})
}

// tick moves the clock forward before a request. Every step is at least
// 100µs, far more than the timestamps one small batch uses, so the ledger's
// batch time is exactly the clock.
func (r *modelRun) tick() {
	now := r.clock.UnixNano()
	switch x := r.rng.IntN(100); {
	case x < 10:
		// Land exactly on (or 1ns before) a pending transfer's deadline.
		var deadlines []int64
		for _, p := range r.m.pending {
			if p.state == ledger.PendingOpen && p.expiresAt > now+int64(100*time.Microsecond) {
				deadlines = append(deadlines, p.expiresAt)
			}
		}
		if len(deadlines) > 0 {
			sort.Slice(deadlines, func(i, j int) bool { return deadlines[i] < deadlines[j] })
			r.clock.Set(deadlines[r.rng.IntN(len(deadlines))] - r.rng.Int64N(2))
			return
		}
		r.clock.Advance(time.Millisecond)
	case x < 15:
		r.clock.Advance(time.Duration(5+r.rng.IntN(35)) * time.Millisecond)
	default:
		r.clock.Advance(time.Millisecond + time.Duration(r.rng.Int64N(int64(2*time.Millisecond))))
	}
}

func (r *modelRun) setup() {
	var as []ledger.Account
	as = append(as, ledger.Account{ID: acctCashSystem, Asset: ledger.AssetCNY, Code: 1},
		ledger.Account{ID: acctShareSystem, Asset: ledger.AssetFundShares, Code: 1})
	for id := acctCashUser; id < acctShareUser; id++ {
		as = append(as, ledger.Account{ID: id, Asset: ledger.AssetCNY, Code: 10, Flags: ledger.DebitsMustNotExceedCredits})
	}
	for id := acctShareUser; id < acctDebitNormal; id++ {
		as = append(as, ledger.Account{ID: id, Asset: ledger.AssetFundShares, Code: 10, Flags: ledger.DebitsMustNotExceedCredits})
	}
	as = append(as, ledger.Account{ID: acctDebitNormal, Asset: ledger.AssetCNY, Code: 20, Flags: ledger.CreditsMustNotExceedDebits})
	r.createAccounts(as)
	var ts []ledger.Transfer
	for id := acctCashUser; id < acctDebitNormal; id++ {
		from, asset := acctCashSystem, ledger.AssetCNY
		if id >= acctShareUser {
			from, asset = acctShareSystem, ledger.AssetFundShares
		}
		ts = append(ts, ledger.Transfer{ID: r.newID(), DebitAccountID: from, CreditAccountID: id,
			Amount: 20_000, Asset: asset, Kind: 1})
	}
	// The debit-normal account starts with debits (so it can take some
	// credits, and is never empty enough to be closed).
	ts = append(ts, ledger.Transfer{ID: r.newID(), DebitAccountID: acctDebitNormal, CreditAccountID: acctCashSystem,
		Amount: 1_500, Asset: ledger.AssetCNY, Kind: 1})
	r.transfers(ts)
}

func (r *modelRun) step() {
	switch x := r.rng.IntN(100); {
	case x < r.cfg.restartPc:
		r.restart()
		r.afterRestart()
	case x < 6:
		r.createAccounts(r.genAccounts())
	case x < 11:
		r.closeAccounts(r.genCloses())
	case x < 14:
		r.compareAccounts()
	default:
		r.transfers(r.genTransfers())
	}
	if r.op%250 == 0 {
		r.compareAccounts()
	}
}

// afterRestart retries what the new sequencer has to fetch from Postgres:
// old ids (transfer_ids) and resolved pending transfers.
func (r *modelRun) afterRestart() {
	for range 3 {
		if len(r.history) > 0 {
			old := r.history[r.rng.IntN(len(r.history))]
			r.transfers([]ledger.Transfer{old})
		}
	}
	if len(r.history) > 0 {
		changed := r.history[r.rng.IntN(len(r.history))]
		changed.Amount++
		r.transfers([]ledger.Transfer{changed})
	}
	for range 2 {
		if len(r.pendingIDs) > 0 {
			pid := r.pendingIDs[r.rng.IntN(len(r.pendingIDs))]
			flag := ledger.PostPending
			if r.rng.IntN(2) == 0 {
				flag = ledger.VoidPending
			}
			r.transfers([]ledger.Transfer{{ID: r.newID(), PendingID: pid, Flags: flag}})
		}
	}
	r.compareAccounts()
}

func (r *modelRun) pickAccount() ledger.AccountID {
	switch x := r.rng.IntN(100); {
	case x < 2:
		return 0
	case x < 8:
		return acctFreshFirst + ledger.AccountID(r.rng.IntN(int(acctFreshLast-acctFreshFirst+1)))
	case x < 13:
		return acctLateFirst + ledger.AccountID(r.rng.IntN(int(acctLateLast-acctLateFirst+1)))
	case x < 25:
		return acctCashSystem + ledger.AccountID(r.rng.IntN(2))
	default:
		return acctCashUser + ledger.AccountID(r.rng.IntN(int(acctDebitNormal-acctCashUser+1)))
	}
}

func (r *modelRun) assetOf(id ledger.AccountID) ledger.Asset {
	if a, ok := r.m.accounts[id]; ok {
		return a.asset
	}
	return ledger.Asset(1 + r.rng.IntN(2))
}

func (r *modelRun) genAccounts() []ledger.Account {
	n := 1 + r.rng.IntN(3)
	out := make([]ledger.Account, 0, n)
	for range n {
		var id ledger.AccountID
		if r.rng.IntN(3) == 0 {
			id = acctLateFirst + ledger.AccountID(r.rng.IntN(int(acctLateLast-acctLateFirst+1)))
		} else {
			id = acctFreshFirst + ledger.AccountID(r.rng.IntN(int(acctFreshLast-acctFreshFirst+1)))
		}
		a := ledger.Account{ID: id, Asset: ledger.Asset(1 + r.rng.IntN(2)), Code: uint16(10 + r.rng.IntN(2))}
		switch x := r.rng.IntN(100); {
		case x < 50:
			a.Flags = ledger.DebitsMustNotExceedCredits
		case x < 60:
			a.Flags = ledger.CreditsMustNotExceedDebits
		case x < 63:
			a.ID = 0
		case x < 66:
			a.Flags = 1 << 5
		case x < 69:
			a.Flags = ledger.DebitsMustNotExceedCredits | ledger.CreditsMustNotExceedDebits
		case x < 72:
			a.Asset = ledger.Asset(r.rng.IntN(2) * 7) // 0 or 7
		}
		if old, ok := r.m.accounts[a.ID]; ok && r.rng.IntN(2) == 0 {
			// An identical retry of an existing account.
			a = ledger.Account{ID: old.id, Asset: old.asset, Code: old.code, Flags: old.flags}
		}
		out = append(out, a)
	}
	return out
}

func (r *modelRun) genCloses() []ledger.AccountID {
	n := 1 + r.rng.IntN(2)
	out := make([]ledger.AccountID, n)
	for i := range out {
		if r.rng.IntN(4) == 0 {
			out[i] = r.pickAccount()
			if out[i] == acctDebitNormal {
				out[i] = acctCashUser // keep the only debit-normal account open
			}
		} else {
			out[i] = acctFreshFirst + ledger.AccountID(r.rng.IntN(int(acctFreshLast-acctFreshFirst+1)))
		}
	}
	return out
}

func (r *modelRun) genAmount(debit ledger.AccountID) int64 {
	switch x := r.rng.IntN(100); {
	case x < 3:
		return 0
	case x < 5:
		return -1 - r.rng.Int64N(1000)
	case x < 6:
		return math.MinInt64
	case x < 14:
		// Exactly what the debit account has available, or one more.
		if a, ok := r.m.accounts[debit]; ok {
			if avail := a.cpost - a.dpost - a.dpend; avail > 0 {
				return avail + r.rng.Int64N(2)
			}
		}
		return 1 + r.rng.Int64N(50_000)
	case x < 20:
		return 5_000 + r.rng.Int64N(50_000)
	default:
		return 1 + r.rng.Int64N(2_000)
	}
}

func (r *modelRun) genUserData() string {
	switch x := r.rng.IntN(100); {
	case x < 2:
		return strings.Repeat("u", ledger.MaxUserDataLen) // the longest allowed
	case x < 50:
		return ""
	default:
		return fmt.Sprintf("order-%d", r.rng.IntN(1_000_000))
	}
}

// genTransfers builds one request of 1-5 transfers of every kind.
func (r *modelRun) genTransfers() []ledger.Transfer {
	n := 1 + r.rng.IntN(3)
	if r.rng.IntN(5) == 0 {
		n += r.rng.IntN(3)
	}
	out := make([]ledger.Transfer, 0, n)
	var fresh []ledger.TransferID // pending transfers created earlier in this request
	for range n {
		var tr ledger.Transfer
		switch x := r.rng.IntN(100); {
		case x < 40:
			tr = r.genPlain()
		case x < 56:
			tr = r.genPlain()
			tr.Flags |= ledger.Pending
			switch y := r.rng.IntN(100); {
			case y < 40:
			case y < 95:
				tr.Timeout = time.Duration(1+r.rng.IntN(12)) * time.Millisecond
			default:
				tr.Timeout = -time.Millisecond
			}
			fresh = append(fresh, tr.ID)
		case x < 79:
			tr = r.genResolve(fresh)
		case x < 91:
			if len(r.history) == 0 {
				tr = r.genPlain()
				break
			}
			tr = r.history[r.rng.IntN(len(r.history))]
			if r.rng.IntN(5) == 0 {
				switch r.rng.IntN(3) {
				case 0:
					tr.Amount++
				case 1:
					tr.UserData += "x"
				default:
					tr.Kind++
				}
			}
		default:
			tr = r.genMalformed()
		}
		if r.rng.IntN(4) == 0 {
			tr.Flags |= ledger.Linked
		}
		if len(out) > 0 && r.rng.IntN(25) == 0 {
			// The same transfer again in the same request: inside a chain
			// a malformed request, outside one an immediate retry.
			tr = out[r.rng.IntN(len(out))]
			if r.rng.IntN(2) == 0 {
				out[len(out)-1].Flags |= ledger.Linked
			}
		}
		out = append(out, tr)
	}
	return out
}

func (r *modelRun) genPlain() ledger.Transfer {
	dr, cr := r.pickAccount(), r.pickAccount()
	if r.rng.IntN(10) < 8 {
		// Mostly a sensible pair: same asset, different accounts.
		for range 10 {
			if cr != dr && r.assetOf(cr) == r.assetOf(dr) {
				break
			}
			cr = r.pickAccount()
		}
	}
	asset := r.assetOf(dr)
	amount := r.genAmount(dr)
	if a, ok := r.m.accounts[cr]; ok && a.flags&ledger.CreditsMustNotExceedDebits != 0 && r.rng.IntN(3) == 0 {
		// Exactly the credit headroom, or one more.
		if room := a.dpost - a.cpost - a.cpend; room > 0 {
			amount = room + r.rng.Int64N(2)
		}
	}
	switch x := r.rng.IntN(100); {
	case x < 5:
		asset = 3 - asset // the other one
	case x < 7:
		asset = ledger.Asset(r.rng.IntN(2) * 9) // 0 or 9
	}
	return ledger.Transfer{
		ID: r.newID(), DebitAccountID: dr, CreditAccountID: cr, Amount: amount, Asset: asset,
		Kind: uint16(1 + r.rng.IntN(5)), UserData: r.genUserData(),
	}
}

func (r *modelRun) genResolve(fresh []ledger.TransferID) ledger.Transfer {
	tr := ledger.Transfer{ID: r.newID(), Kind: uint16(1 + r.rng.IntN(5))}
	switch x := r.rng.IntN(100); {
	case x < 25 && len(fresh) > 0:
		tr.PendingID = fresh[r.rng.IntN(len(fresh))]
	case x < 30:
		tr.PendingID = r.newID() // unknown
	case len(r.pendingIDs) > 0:
		// Recent pending transfers are more likely to be still open;
		// prefer one that exists.
		for range 3 {
			k := len(r.pendingIDs) - 1 - min(len(r.pendingIDs)-1, int(r.rng.ExpFloat64()*8))
			tr.PendingID = r.pendingIDs[k]
			if _, ok := r.m.pending[tr.PendingID]; ok {
				break
			}
		}
	default:
		tr.PendingID = r.newID()
	}
	var p refPending
	if mp, ok := r.m.pending[tr.PendingID]; ok {
		p = *mp
	} else {
		p = refPending{dr: r.pickAccount(), cr: r.pickAccount(), amount: 1 + r.rng.Int64N(1000), asset: ledger.AssetCNY}
	}
	if r.rng.IntN(100) < 65 {
		tr.Flags = ledger.PostPending
		switch x := r.rng.IntN(100); {
		case x < 35:
		case x < 65:
			tr.Amount = 1 + r.rng.Int64N(p.amount)
		case x < 75:
			tr.Amount = p.amount
		case x < 87:
			tr.Amount = p.amount + 1 + r.rng.Int64N(2)*r.rng.Int64N(10) // often exactly one more
		case x < 92:
			tr.Amount = -1
		default:
			tr.Amount = r.rng.Int64N(2000)
		}
	} else {
		tr.Flags = ledger.VoidPending
		switch x := r.rng.IntN(100); {
		case x < 60:
		case x < 85:
			tr.Amount = p.amount
		default:
			tr.Amount = p.amount + 1 + r.rng.Int64N(10)
		}
	}
	switch x := r.rng.IntN(100); {
	case x < 20:
		tr.DebitAccountID, tr.CreditAccountID, tr.Asset = p.dr, p.cr, p.asset
	case x < 24:
		tr.DebitAccountID = p.dr + 1
	case x < 28:
		tr.CreditAccountID = p.cr + 1
	case x < 32:
		tr.Asset = 3 - p.asset
	}
	return tr
}

func (r *modelRun) genMalformed() ledger.Transfer {
	tr := r.genPlain()
	switch r.rng.IntN(10) {
	case 0:
		tr.ID = ledger.TransferID{}
	case 1:
		tr.Flags |= ledger.Expired // only the ledger may set it
	case 2:
		tr.Flags |= 1 << 9
	case 3:
		tr.Flags |= ledger.Pending | ledger.VoidPending
	case 4:
		tr.UserData = strings.Repeat("x", ledger.MaxUserDataLen+1)
	case 5:
		tr.Timeout = time.Millisecond // without Pending
	case 6:
		tr.PendingID = r.newID() // on a plain transfer
	case 7:
		tr.Flags = ledger.PostPending // without a pending id
	case 8:
		tr.Flags, tr.PendingID = ledger.VoidPending, tr.ID
	default:
		tr.Flags, tr.Timeout = ledger.PostPending, time.Second
		if len(r.pendingIDs) > 0 {
			tr.PendingID = r.pendingIDs[r.rng.IntN(len(r.pendingIDs))]
		} else {
			tr.PendingID = r.newID()
		}
	}
	return tr
}

// ---------------------------------------------------------------------------
// Sending requests to both and comparing.

func (r *modelRun) ctx() context.Context { return context.Background() }

func (r *modelRun) createAccounts(as []ledger.Account) {
	r.t.Helper()
	r.tick()
	r.m.begin(r.clock.UnixNano())
	got, err := r.seq.CreateAccounts(r.ctx(), as)
	if err != nil {
		r.t.Fatalf("op %d: create accounts %+v: %v", r.op, as, err)
	}
	want := r.m.createAccounts(as)
	for i := range as {
		r.seen[got[i].Result]++
		if got[i].Result != want[i] {
			r.t.Fatalf("op %d: create account %d of %d %+v: got %s, want %s", r.op, i, len(as), as[i], got[i].Result, want[i])
		}
	}
}

func (r *modelRun) closeAccounts(ids []ledger.AccountID) {
	r.t.Helper()
	r.tick()
	r.m.begin(r.clock.UnixNano())
	got, err := r.seq.CloseAccounts(r.ctx(), ids)
	if err != nil {
		r.t.Fatalf("op %d: close accounts %v: %v", r.op, ids, err)
	}
	want := r.m.closeAccounts(ids)
	for i := range ids {
		r.seen[got[i].Result]++
		if got[i].Result != want[i] {
			r.t.Fatalf("op %d: close account %d: got %s, want %s", r.op, ids[i], got[i].Result, want[i])
		}
	}
}

func (r *modelRun) transfers(ts []ledger.Transfer) []ledger.TransferResult {
	r.t.Helper()
	r.tick()
	now := r.clock.UnixNano()
	r.m.begin(now)
	for _, tr := range ts {
		r.history = append(r.history, tr)
		if tr.Flags&ledger.Pending != 0 && !tr.ID.IsZero() {
			r.pendingIDs = append(r.pendingIDs, tr.ID)
		}
	}
	got, err := r.seq.CreateTransfers(r.ctx(), ts)
	if err != nil {
		r.t.Fatalf("op %d: create transfers: %v", r.op, err)
	}
	if len(got) != len(ts) {
		r.t.Fatalf("op %d: %d results for %d transfers", r.op, len(got), len(ts))
	}
	want := r.m.createTransfers(ts, func(i int) int64 { return got[i].Timestamp })
	var b strings.Builder
	bad := false
	for i := range ts {
		r.seen[got[i].Result]++
		mark := ""
		if got[i].Result != want[i] {
			bad, mark = true, "   <-- differs"
		}
		fmt.Fprintf(&b, "\n  %d %s: got %s, want %s%s", i, describe(ts[i]), got[i].Result, want[i], mark)
	}
	if bad {
		r.t.Fatalf("op %d (clock %d): results differ from the model:%s", r.op, now, b.String())
	}
	for i, res := range got {
		if res.Result != ledger.ResultOK {
			if res.Timestamp != 0 {
				r.t.Fatalf("op %d: transfer %d failed (%s) but has timestamp %d", r.op, i, res.Result, res.Timestamp)
			}
			continue
		}
		if res.Timestamp <= r.lastTS || res.Timestamp < now || res.Timestamp >= now+int64(time.Millisecond) {
			r.t.Fatalf("op %d: transfer %d timestamp %d: want > %d (the last one) and in [%d, %d+1ms)",
				r.op, i, res.Timestamp, r.lastTS, now, now)
		}
		r.lastTS = res.Timestamp
	}
	return got
}

// compareAccounts looks every account id up and compares with the model.
func (r *modelRun) compareAccounts() {
	r.t.Helper()
	r.tick()
	r.m.begin(r.clock.UnixNano())
	ids := make([]ledger.AccountID, 0, acctIDMax+1)
	for id := ledger.AccountID(0); id <= acctIDMax; id++ {
		ids = append(ids, id)
	}
	got, err := r.seq.LookupAccounts(r.ctx(), ids)
	if err != nil {
		r.t.Fatalf("op %d: lookup: %v", r.op, err)
	}
	var want []*refAccount
	for _, id := range ids {
		if a, ok := r.m.accounts[id]; ok {
			want = append(want, a)
		}
	}
	if len(got) != len(want) {
		r.t.Fatalf("op %d: lookup found %d accounts, model has %d", r.op, len(got), len(want))
	}
	for i, g := range got {
		w := want[i]
		if g.ID != w.id || g.Asset != w.asset || g.Code != w.code || g.Flags != w.flags || g.Closed != w.closed ||
			g.DebitsPending != w.dpend || g.DebitsPosted != w.dpost || g.CreditsPending != w.cpend || g.CreditsPosted != w.cpost {
			r.t.Fatalf("op %d: account %d: ledger %+v, model %+v", r.op, w.id, g, *w)
		}
	}
}

// crossMidnight sends one batch whose transfers straddle midnight, then
// restarts and retries every transfer sent before it.
func (r *modelRun) crossMidnight() {
	mid := r.cfg.midnight.UnixNano()
	if r.clock.UnixNano() >= mid-int64(time.Millisecond) {
		r.t.Fatalf("op %d: the clock passed midnight too early; start earlier", r.op)
	}
	before := len(r.history)
	r.createAccounts([]ledger.Account{
		{ID: acctMidnight, Asset: ledger.AssetCNY, Code: 1},
		{ID: acctMidnight + 1, Asset: ledger.AssetCNY, Code: 10, Flags: ledger.DebitsMustNotExceedCredits},
		{ID: acctMidnight + 2, Asset: ledger.AssetCNY, Code: 10, Flags: ledger.DebitsMustNotExceedCredits},
		{ID: acctMidnight + 3, Asset: ledger.AssetCNY, Code: 10, Flags: ledger.DebitsMustNotExceedCredits},
		{ID: acctMidnight + 4, Asset: ledger.AssetCNY, Code: 10, Flags: ledger.DebitsMustNotExceedCredits},
	})
	if r.clock.UnixNano() >= mid-int64(time.Millisecond) {
		r.t.Fatalf("op %d: the clock passed midnight too early; start earlier", r.op)
	}
	// The batch's 4 entries take the timestamps midnight-2 .. midnight+1.
	// Expiries come first in a batch, one timestamp each: start that many
	// nanoseconds earlier.
	start := mid - 2
	for range 10 {
		start = mid - 2 - int64(r.m.expiring(start))
	}
	if start+int64(r.m.expiring(start)) != mid-2 {
		r.t.Fatalf("cannot place the midnight batch (expiries around %d)", start)
	}
	r.clock.Set(start)
	r.m.begin(start)
	var ts []ledger.Transfer
	for i := range 4 {
		ts = append(ts, ledger.Transfer{ID: r.newID(), DebitAccountID: acctMidnight,
			CreditAccountID: acctMidnight + 1 + ledger.AccountID(i), Amount: 100, Asset: ledger.AssetCNY, Kind: 1})
	}
	r.history = append(r.history, ts...)
	got, err := r.seq.CreateTransfers(r.ctx(), ts)
	if err != nil {
		r.t.Fatalf("midnight batch: %v", err)
	}
	want := r.m.createTransfers(ts, func(i int) int64 { return got[i].Timestamp })
	for i := range ts {
		if got[i].Result != want[i] || got[i].Result != ledger.ResultOK {
			r.t.Fatalf("midnight batch transfer %d: got %s, want %s", i, got[i].Result, want[i])
		}
		if ts := got[i].Timestamp; ts != mid-2+int64(i) {
			r.t.Fatalf("midnight batch transfer %d: timestamp %d, want %d", i, ts, mid-2+int64(i))
		}
	}
	r.lastTS = got[3].Timestamp
	// Two on each side of midnight, in two partitions.
	rows, err := r.store.Pool().Query(r.ctx(),
		`SELECT id, business_date, tableoid::regclass::text FROM transfers WHERE id = ANY($1)`, uuidsOf(idsOf(ts)))
	if err != nil {
		r.t.Fatal(err)
	}
	day := map[ledger.TransferID]string{}
	for rows.Next() {
		var id pgtype.UUID
		var date time.Time
		var part string
		if err := rows.Scan(&id, &date, &part); err != nil {
			r.t.Fatal(err)
		}
		day[id.Bytes] = date.Format(time.DateOnly) + " in " + part
	}
	rows.Close()
	prev := r.cfg.midnight.Add(-time.Hour)
	for i, tr := range ts {
		d := prev
		if i >= 2 {
			d = r.cfg.midnight
		}
		want := d.Format(time.DateOnly) + " in transfers_" + d.Format("20060102")
		if day[tr.ID] != want {
			r.t.Errorf("midnight batch transfer %d: stored on %q, want %q", i, day[tr.ID], want)
		}
	}
	r.restart()
	r.clock.Advance(time.Second)
	r.retryAll(r.history[:before])
}

func idsOf(ts []ledger.Transfer) []ledger.TransferID {
	out := make([]ledger.TransferID, len(ts))
	for i := range ts {
		out[i] = ts[i].ID
	}
	return out
}

// retryAll sends each transfer of old again, exactly as it was: the ones
// that took effect must answer "exists" (the model knows which). Transfers
// sent without Linked go in large requests; a Linked one is sent alone, so
// that it is the (open) end of its own chain.
func (r *modelRun) retryAll(old []ledger.Transfer) {
	var bulk []ledger.Transfer
	flush := func() {
		if len(bulk) > 0 {
			r.transfers(bulk)
			bulk = nil
		}
	}
	exists := 0
	for _, tr := range old {
		if _, ok := r.m.applied[tr.ID]; ok {
			exists++
		}
		if tr.Flags&ledger.Linked != 0 {
			r.transfers([]ledger.Transfer{tr})
			continue
		}
		bulk = append(bulk, tr)
		if len(bulk) == 100 {
			flush()
		}
	}
	flush()
	r.t.Logf("op %d: retried %d old transfers, %d of them applied before", r.op, len(old), exists)
}

func (r *modelRun) finish() {
	t := r.t
	r.compareAccounts()
	r.restart()
	r.compareAccounts()
	r.retryAll(r.history)
	// Resolve every pending transfer again: the resolved ones answer from
	// their stored state, the open ones are posted or voided now.
	for i := 0; i < len(r.pendingIDs); i += 50 {
		var ts []ledger.Transfer
		for _, pid := range r.pendingIDs[i:min(i+50, len(r.pendingIDs))] {
			ts = append(ts, ledger.Transfer{ID: r.newID(), PendingID: pid, Flags: ledger.VoidPending})
		}
		r.transfers(ts)
	}
	r.compareAccounts()
	if err := r.seq.stop(t); err != nil {
		t.Fatalf("sequencer: %v", err)
	}

	// What Postgres holds agrees with the model row for row.
	pool := r.store.Pool()
	c := countTables(t, pool)
	if c.Transfers != r.m.entries || c.TransferIDs != r.m.entries {
		t.Errorf("journal has %d rows and %d ids; the model wrote %d entries", c.Transfers, c.TransferIDs, r.m.entries)
	}
	if c.Pending != int64(len(r.m.pending)) {
		t.Errorf("%d pending transfers stored, model has %d", c.Pending, len(r.m.pending))
	}
	rows, err := pool.Query(r.ctx(), `SELECT id, state, amount, expires_at FROM pending_transfers`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id pgtype.UUID
		var state ledger.PendingState
		var amount, expiresAt int64
		if err := rows.Scan(&id, &state, &amount, &expiresAt); err != nil {
			t.Fatal(err)
		}
		p, ok := r.m.pending[id.Bytes]
		if !ok || p.state != state || p.amount != amount || p.expiresAt != expiresAt {
			t.Errorf("pending %s stored as state %s amount %d expires %d; model %+v", ledger.TransferID(id.Bytes), state, amount, expiresAt, p)
		}
	}
	rows.Close()
	ids := make([]ledger.TransferID, 0, len(r.m.applied))
	for id := range r.m.applied {
		ids = append(ids, id)
	}
	for id, n := range journalCounts(t, pool, ids) {
		if n != 1 {
			t.Errorf("transfer %s has %d journal rows", id, n)
		}
	}
	rep := mustVerify(t, r.store)
	if rep.Transfers != r.m.entries {
		t.Errorf("verify counted %d entries, model %d", rep.Transfers, r.m.entries)
	}
	r.restart()
	checkBalancesMatchJournal(t, pool, r.seq.Sequencer)

	// The run must have exercised what it claims to test.
	if r.cfg.ops >= 3000 {
		for _, res := range []ledger.Result{
			ledger.ResultOK, ledger.ResultLinkedEventFailed, ledger.ResultLinkedEventChainOpen,
			ledger.ResultExists, ledger.ResultExistsWithDifferentFields, ledger.ResultExceedsCredits,
			ledger.ResultExceedsDebits, ledger.ResultInvalidAmount, ledger.ResultAssetMismatch,
			ledger.ResultDebitAccountNotFound, ledger.ResultCreditAccountNotFound,
			ledger.ResultDebitAccountClosed, ledger.ResultCreditAccountClosed,
			ledger.ResultPendingTransferNotFound, ledger.ResultPendingTransferAlreadyPosted,
			ledger.ResultPendingTransferAlreadyVoided, ledger.ResultPendingTransferExpired,
			ledger.ResultExceedsPendingAmount, ledger.ResultVoidAmountMismatch,
			ledger.ResultAccountBalanceNotZero, ledger.ResultAccountAlreadyClosed,
		} {
			if r.seen[res] == 0 {
				t.Errorf("the run never produced %s; the generator needs tuning", res)
			}
		}
		if r.m.expired == 0 || r.restarts == 0 {
			t.Errorf("the run had %d expiries and %d restarts; want some of each", r.m.expired, r.restarts)
		}
	}
}

func (r *modelRun) coverage() string {
	type kv struct {
		r ledger.Result
		n int
	}
	var all []kv
	for res, n := range r.seen {
		all = append(all, kv{res, n})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].n > all[j].n })
	var parts []string
	for _, e := range all {
		parts = append(parts, fmt.Sprintf("%s=%d", e.r, e.n))
	}
	return strings.Join(parts, " ")
}
