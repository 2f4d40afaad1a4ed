package ledger

import (
	"container/heap"
	"fmt"
	"math"
)

// Book is a shard's state in memory and the rules that change it. It is not
// safe for concurrent use: exactly one goroutine, the sequencer's writer, owns
// it. Apply methods record what they changed in the open Batch; Seal hands
// that batch over for the Store to write.
type Book struct {
	shard, shards int

	accounts map[AccountID]*Account
	// pendings holds every open pending transfer and, until swept, resolved
	// ones seen recently; older resolved ones are looked up in the store.
	pendings    map[TransferID]*PendingTransfer
	pendingsMax int
	expiry      expiryHeap
	// ids maps recently applied transfer ids to their fingerprints; older
	// ones are looked up in the store.
	ids    genMap
	lastTS int64
	now    int64

	out *Batch
	// unsaved holds the accounts whose stored balances trail the book, and
	// since when (the batch time of the first entry not yet stored);
	// unsavedQ orders them by that time, oldest first.
	unsaved    map[AccountID]int64
	unsavedQ   []unsavedEntry
	closed     []AccountID
	newAccts   map[AccountID]*Account
	dirty      map[AccountID]*Account
	newPend    map[TransferID]*PendingTransfer
	resolved   map[TransferID]*PendingTransfer
	undo       []undoEntry
	chainStart int // len(out.Transfers) when the current chain began
}

// Limits on what the book keeps in memory beyond the open state.
const (
	idsPerGeneration = 1 << 20
	pendingsSweepAt  = 1 << 20
)

// NewBook builds a shard's book from a snapshot loaded from the store.
func NewBook(shard, shards int, snap *Snapshot) *Book {
	b := &Book{
		shard:       shard,
		shards:      shards,
		accounts:    make(map[AccountID]*Account, len(snap.Accounts)),
		pendings:    make(map[TransferID]*PendingTransfer, len(snap.Pending)),
		pendingsMax: pendingsSweepAt,
		ids:         newGenMap(idsPerGeneration),
		unsaved:     map[AccountID]int64{},
		lastTS:      snap.LastTimestamp,
	}
	for i := range snap.Accounts {
		a := snap.Accounts[i]
		b.accounts[a.ID] = &a
	}
	for _, id := range snap.Unsaved {
		if _, ok := b.unsaved[id]; !ok {
			b.unsaved[id] = snap.CheckpointTS + 1
			b.unsavedQ = append(b.unsavedQ, unsavedEntry{id: id, since: snap.CheckpointTS + 1})
		}
	}
	for i := range snap.Pending {
		p := snap.Pending[i]
		b.pendings[p.ID] = &p
		if p.State == PendingOpen && p.ExpiresAt != 0 {
			heap.Push(&b.expiry, &p)
		}
	}
	return b
}

// Account returns a copy of an account's current (possibly uncommitted)
// state.
func (b *Book) Account(id AccountID) (Account, bool) {
	a, ok := b.accounts[id]
	if !ok {
		return Account{}, false
	}
	return *a, true
}

// LastTimestamp is the newest timestamp the book assigned.
func (b *Book) LastTimestamp() int64 { return b.lastTS }

// Missing lists the transfer ids and pending ids of ts that the book does
// not know, so the caller can fetch them from the store in one round trip.
func (b *Book) Missing(ts []Transfer, ids, pendingIDs []TransferID) ([]TransferID, []TransferID) {
	for i := range ts {
		t := &ts[i]
		if !t.ID.IsZero() {
			if _, ok := b.ids.get(t.ID); !ok {
				ids = append(ids, t.ID)
			}
		}
		if t.Flags&(PostPending|VoidPending) != 0 && !t.PendingID.IsZero() {
			if _, ok := b.pendings[t.PendingID]; !ok {
				pendingIDs = append(pendingIDs, t.PendingID)
			}
		}
	}
	return ids, pendingIDs
}

// Learn adds what the store knows about ids the book was missing.
func (b *Book) Learn(k *Known) {
	for id, fp := range k.Fingerprints {
		b.ids.put(id, fp)
	}
	for i := range k.Pending {
		p := k.Pending[i]
		if _, ok := b.pendings[p.ID]; !ok {
			b.pendings[p.ID] = &p
		}
	}
}

// Begin opens a batch at time now (Unix nanoseconds) and expires the
// pending transfers whose timeout has passed, writing one void entry each.
func (b *Book) Begin(now int64) {
	b.out = &Batch{Shard: b.shard}
	b.newAccts = map[AccountID]*Account{}
	b.dirty = map[AccountID]*Account{}
	b.newPend = map[TransferID]*PendingTransfer{}
	b.resolved = map[TransferID]*PendingTransfer{}
	b.closed = b.closed[:0]
	b.undo = b.undo[:0]
	if now <= b.lastTS {
		now = b.lastTS + 1
	}
	b.now = now
	for b.expiry.Len() > 0 && b.expiry[0].ExpiresAt <= now {
		p := heap.Pop(&b.expiry).(*PendingTransfer)
		if cur, ok := b.pendings[p.ID]; !ok || cur != p || p.State != PendingOpen {
			continue // posted or voided since it was scheduled
		}
		dr, cr := b.accounts[p.DebitAccountID], b.accounts[p.CreditAccountID]
		b.touch(dr)
		b.touch(cr)
		dr.DebitsPending -= p.Amount
		cr.CreditsPending -= p.Amount
		p.State = PendingExpired
		b.markResolved(p)
		t := Transfer{
			ID:              ExpiryTransferID(p.ID),
			DebitAccountID:  p.DebitAccountID,
			CreditAccountID: p.CreditAccountID,
			Amount:          p.Amount,
			PendingAmount:   p.Amount,
			Asset:           p.Asset,
			Flags:           VoidPending | Expired,
			PendingID:       p.ID,
			Timestamp:       b.nextTS(),
		}
		fp := t.Fingerprint()
		b.ids.put(t.ID, fp)
		b.appendEntry(t, fp)
	}
}

// ExpiryTransferID is the id of the void the ledger writes when pending
// transfer id expires; deterministic so a replay writes the same entry.
func ExpiryTransferID(id TransferID) TransferID {
	return DeriveTransferID("ledger.expiry", id.String())
}

func (b *Book) nextTS() int64 {
	ts := b.now
	if ts <= b.lastTS {
		ts = b.lastTS + 1
	}
	b.lastTS = ts
	return ts
}

// Unsaved is the number of accounts whose stored balances trail the book.
func (b *Book) Unsaved() int { return len(b.unsaved) }

type unsavedEntry struct {
	id    AccountID
	since int64
}

// Seal closes the open batch and returns it. Balances are not written with
// every batch: journal entries are, and they alone can rebuild any balance.
// Each batch also writes the balances of the flush accounts that have
// trailed longest, so a hot account is written about once per checkpoint
// interval rather than once per batch, and a restart replays only the
// journal after the batch's CheckpointTS.
func (b *Book) Seal(flush int) *Batch {
	out := b.out
	for _, a := range b.newAccts {
		// Created with zero balances: its entries, in this batch or later,
		// are replayed on top until its balances are flushed.
		out.NewAccounts = append(out.NewAccounts, Account{ID: a.ID, Asset: a.Asset, Code: a.Code,
			Flags: a.Flags, Timestamp: a.Timestamp})
	}
	out.Closed = append(out.Closed, b.closed...)
	n := 0
	for n < len(b.unsavedQ) && n < flush {
		id := b.unsavedQ[n].id
		out.Accounts = append(out.Accounts, *b.accounts[id])
		delete(b.unsaved, id)
		n++
	}
	b.unsavedQ = b.unsavedQ[n:]
	if cap(b.unsavedQ) > 1024 && len(b.unsavedQ) < cap(b.unsavedQ)/4 {
		b.unsavedQ = append([]unsavedEntry(nil), b.unsavedQ...) // let the flushed prefix go
	}
	for _, p := range b.newPend {
		out.PendingNew = append(out.PendingNew, *p)
	}
	for id, p := range b.resolved {
		if _, isNew := b.newPend[id]; !isNew {
			out.PendingResolved = append(out.PendingResolved, *p)
		}
	}
	// Every entry at or before CheckpointTS is in the stored balances.
	out.CheckpointTS = b.lastTS
	if len(b.unsavedQ) > 0 {
		out.CheckpointTS = b.unsavedQ[0].since - 1
	}
	out.LastTimestamp = b.lastTS
	// Forget old ids and resolved holds here, between batches, never
	// between Missing (which decided what to fetch) and the apply. Holds
	// resolved by this batch stay: it is not committed yet, so the store
	// would still call them open.
	b.ids.maybeRotate()
	if len(b.pendings) > b.pendingsMax {
		b.sweepPendings()
	}
	b.out = nil
	return out
}

// CheckInvariants verifies what must hold for every account the open batch
// touched: no balance field negative, no flagged account beyond its limit.
// A failure is a bug in the book, never bad input.
func (b *Book) CheckInvariants() error {
	check := func(a *Account) error {
		if a.DebitsPending < 0 || a.DebitsPosted < 0 || a.CreditsPending < 0 || a.CreditsPosted < 0 {
			return fmt.Errorf("%w: account %d has a negative balance field: %+v", ErrInvariantBroke, a.ID, *a)
		}
		if a.Flags&DebitsMustNotExceedCredits != 0 && a.DebitsPosted+a.DebitsPending > a.CreditsPosted {
			return fmt.Errorf("%w: account %d available below zero: %+v", ErrInvariantBroke, a.ID, *a)
		}
		if a.Flags&CreditsMustNotExceedDebits != 0 && a.CreditsPosted+a.CreditsPending > a.DebitsPosted {
			return fmt.Errorf("%w: account %d credits beyond debits: %+v", ErrInvariantBroke, a.ID, *a)
		}
		return nil
	}
	for _, a := range b.dirty {
		if err := check(a); err != nil {
			return err
		}
	}
	for i := range b.out.Transfers {
		t := &b.out.Transfers[i]
		if t.DebitAccountID == t.CreditAccountID || t.Amount <= 0 || !t.Asset.Valid() {
			return fmt.Errorf("%w: malformed journal entry %s: %+v", ErrInvariantBroke, t.ID, *t)
		}
	}
	return nil
}

func (b *Book) touch(a *Account) {
	if b.out == nil {
		panic("ledger: book changed outside a batch")
	}
	b.undo = append(b.undo, undoEntry{acct: a, prevAcct: *a})
	b.dirty[a.ID] = a
	if _, ok := b.unsaved[a.ID]; !ok {
		b.unsaved[a.ID] = b.now
		b.unsavedQ = append(b.unsavedQ, unsavedEntry{id: a.ID, since: b.now})
	}
}

// appendEntry adds a journal entry and the fingerprint of the request that
// made it (which, for a post or void, differs from the entry's own fields).
func (b *Book) appendEntry(t Transfer, fp int64) {
	b.out.Transfers = append(b.out.Transfers, t)
	b.out.Fingerprints = append(b.out.Fingerprints, fp)
}

func (b *Book) markResolved(p *PendingTransfer) { b.resolved[p.ID] = p }

func (b *Book) sweepPendings() {
	for id, p := range b.pendings {
		if _, now := b.resolved[id]; p.State != PendingOpen && !now {
			delete(b.pendings, id)
		}
	}
	if len(b.pendings) > b.pendingsMax/2 {
		b.pendingsMax = 2 * len(b.pendings)
	}
}

// CreateAccounts applies account creations in order, one result each.
func (b *Book) CreateAccounts(in []Account, results []AccountResult) {
	for i := range in {
		results[i] = AccountResult{Result: b.createAccount(&in[i])}
	}
}

func (b *Book) createAccount(in *Account) Result {
	switch {
	case in.ID == 0:
		return ResultIDMustNotBeZero
	case in.Flags&^accountFlagsKnown != 0:
		return ResultReservedFlag
	case in.Flags&DebitsMustNotExceedCredits != 0 && in.Flags&CreditsMustNotExceedDebits != 0:
		return ResultFlagsAreMutuallyExclusive
	case !in.Asset.Valid():
		return ResultInvalidAsset
	case ShardOf(in.ID, b.shards) != b.shard:
		return ResultWrongShard
	}
	if a, ok := b.accounts[in.ID]; ok {
		if a.Asset == in.Asset && a.Code == in.Code && a.Flags == in.Flags {
			return ResultExists
		}
		return ResultExistsWithDifferentFields
	}
	a := &Account{ID: in.ID, Asset: in.Asset, Code: in.Code, Flags: in.Flags, Timestamp: b.nextTS()}
	b.accounts[a.ID] = a
	b.newAccts[a.ID] = a
	return ResultOK
}

// CloseAccounts closes accounts whose balances are all zero, one result each.
// A closed account refuses new transfers; its history stays.
func (b *Book) CloseAccounts(ids []AccountID, results []AccountResult) {
	for i, id := range ids {
		a, ok := b.accounts[id]
		switch {
		case !ok:
			results[i] = AccountResult{Result: ResultAccountNotFound}
		case a.Closed:
			results[i] = AccountResult{Result: ResultAccountAlreadyClosed}
		case a.DebitsPending != 0 || a.CreditsPending != 0 || a.DebitsPosted != a.CreditsPosted:
			results[i] = AccountResult{Result: ResultAccountBalanceNotZero}
		default:
			a.Closed = true
			b.closed = append(b.closed, a.ID)
			results[i] = AccountResult{Result: ResultOK}
		}
	}
}

// CreateTransfers applies transfers strictly in order, one result each.
// Linked chains apply as a whole or not at all: when one member fails, the
// members applied before it are undone and every other member gets
// ResultLinkedEventFailed.
func (b *Book) CreateTransfers(in []Transfer, results []TransferResult) {
	for i := 0; i < len(in); {
		end := i
		for end < len(in)-1 && in[end].Flags&Linked != 0 {
			end++
		}
		open := in[end].Flags&Linked != 0 // the request ended inside a chain
		b.markChain()
		failed, failure := -1, ResultOK
		applied, existed := 0, 0
		for j := i; j <= end; j++ {
			r := b.createTransfer(&in[j])
			if r == ResultExists && end > i && repeatsEarlierMember(in[i:j], in[j].ID) {
				// Known only because this chain just applied it: the chain
				// is malformed, and must not answer "exists" for it.
				r = ResultIDRepeatedInChain
			}
			if open && j == end && r == ResultOK {
				r = ResultLinkedEventChainOpen
			}
			if r == ResultExists && end > i {
				// A member applied by an earlier request: a retry of the
				// whole chain answers exists for every member.
				existed++
				results[j] = TransferResult{Result: ResultExists}
				continue
			}
			if r != ResultOK {
				failed, failure = j, r
				break
			}
			applied++
			results[j] = TransferResult{Result: ResultOK, Timestamp: b.lastTS}
		}
		switch {
		case failed >= 0:
			b.rollbackChain()
			for j := i; j <= end; j++ {
				results[j] = TransferResult{Result: ResultLinkedEventFailed}
			}
			results[failed] = TransferResult{Result: failure}
		case existed > 0 && applied > 0:
			// Part of the chain was applied before and part is new: a chain
			// is atomic, so this is not a retry of it. Refuse the new part.
			b.rollbackChain()
			for j := i; j <= end; j++ {
				if results[j].Result == ResultOK {
					results[j] = TransferResult{Result: ResultLinkedEventFailed}
				}
			}
		}
		i = end + 1
	}
}

func repeatsEarlierMember(earlier []Transfer, id TransferID) bool {
	for i := range earlier {
		if earlier[i].ID == id {
			return true
		}
	}
	return false
}

// createTransfer validates and applies one transfer. On failure it changes
// nothing (chain rollback handles earlier members).
func (b *Book) createTransfer(in *Transfer) Result {
	switch {
	case in.ID.IsZero():
		return ResultIDMustNotBeZero
	case in.Flags&^transferFlagsClient != 0:
		return ResultReservedFlag
	case popcount(in.Flags&(Pending|PostPending|VoidPending)) > 1:
		return ResultFlagsAreMutuallyExclusive
	case len(in.UserData) > MaxUserDataLen:
		return ResultUserDataTooLong
	}
	fp := in.Fingerprint()
	if old, ok := b.ids.get(in.ID); ok {
		if old == fp {
			return ResultExists
		}
		return ResultExistsWithDifferentFields
	}
	var r Result
	if in.Flags&(PostPending|VoidPending) != 0 {
		r = b.resolvePending(in, fp)
	} else {
		r = b.applyTransfer(in, fp)
	}
	if r == ResultOK {
		b.ids.put(in.ID, fp)
		b.undo = append(b.undo, undoEntry{newID: in.ID})
	}
	return r
}

func (b *Book) applyTransfer(in *Transfer, fp int64) Result {
	switch {
	case !in.PendingID.IsZero():
		return ResultPendingIDMustBeZero
	case in.Timeout != 0 && in.Flags&Pending == 0:
		return ResultTimeoutReservedForPending
	case in.Timeout < 0:
		return ResultInvalidTimeout
	case in.Amount <= 0:
		return ResultInvalidAmount
	case in.DebitAccountID == in.CreditAccountID:
		return ResultAccountsMustBeDifferent
	}
	dr, ok := b.accounts[in.DebitAccountID]
	if !ok {
		return ResultDebitAccountNotFound
	}
	cr, ok := b.accounts[in.CreditAccountID]
	if !ok {
		return ResultCreditAccountNotFound
	}
	switch {
	case dr.Asset != in.Asset || cr.Asset != in.Asset:
		return ResultAssetMismatch
	case dr.Closed:
		return ResultDebitAccountClosed
	case cr.Closed:
		return ResultCreditAccountClosed
	}
	amt := in.Amount
	pending := in.Flags&Pending != 0
	// Overflow: every field and every sum a limit check adds must fit.
	if addOverflows(dr.DebitsPending, amt) || addOverflows(dr.DebitsPosted, amt) ||
		addOverflows(cr.CreditsPending, amt) || addOverflows(cr.CreditsPosted, amt) ||
		addOverflows(dr.DebitsPosted, dr.DebitsPending+amt) ||
		addOverflows(cr.CreditsPosted, cr.CreditsPending+amt) {
		return ResultOverflow
	}
	if dr.Flags&DebitsMustNotExceedCredits != 0 && dr.DebitsPosted+dr.DebitsPending+amt > dr.CreditsPosted {
		return ResultExceedsCredits
	}
	if cr.Flags&CreditsMustNotExceedDebits != 0 && cr.CreditsPosted+cr.CreditsPending+amt > cr.DebitsPosted {
		return ResultExceedsDebits
	}
	b.touch(dr)
	b.touch(cr)
	ts := b.nextTS()
	if pending {
		dr.DebitsPending += amt
		cr.CreditsPending += amt
		p := &PendingTransfer{
			ID: in.ID, DebitAccountID: dr.ID, CreditAccountID: cr.ID,
			Amount: amt, Asset: in.Asset, State: PendingOpen,
		}
		if in.Timeout > 0 {
			p.ExpiresAt = ts + int64(in.Timeout)
			if addOverflows(ts, int64(in.Timeout)) {
				p.ExpiresAt = math.MaxInt64 // beyond any clock: never expires
			}
			heap.Push(&b.expiry, p)
		}
		b.pendings[p.ID] = p
		b.newPend[p.ID] = p
		b.undo = append(b.undo, undoEntry{newPending: p})
	} else {
		dr.DebitsPosted += amt
		cr.CreditsPosted += amt
	}
	t := *in
	t.Timestamp = ts
	t.PendingAmount = 0
	b.appendEntry(t, fp)
	return ResultOK
}

func (b *Book) resolvePending(in *Transfer, fp int64) Result {
	switch {
	case in.PendingID.IsZero():
		return ResultPendingIDRequired
	case in.PendingID == in.ID:
		return ResultPendingIDMustBeDifferent
	case in.Timeout != 0:
		return ResultTimeoutReservedForPending
	case in.Amount < 0:
		return ResultInvalidAmount
	}
	p, ok := b.pendings[in.PendingID]
	if !ok {
		return ResultPendingTransferNotFound
	}
	switch p.State {
	case PendingPosted:
		return ResultPendingTransferAlreadyPosted
	case PendingVoided:
		return ResultPendingTransferAlreadyVoided
	case PendingExpired:
		return ResultPendingTransferExpired
	}
	switch {
	case in.DebitAccountID != 0 && in.DebitAccountID != p.DebitAccountID:
		return ResultPendingTransferHasDifferentDebit
	case in.CreditAccountID != 0 && in.CreditAccountID != p.CreditAccountID:
		return ResultPendingTransferHasDifferentCredit
	case in.Asset != 0 && in.Asset != p.Asset:
		return ResultPendingTransferHasDifferentAsset
	}
	dr, cr := b.accounts[p.DebitAccountID], b.accounts[p.CreditAccountID]
	if dr == nil || cr == nil {
		return ResultPendingTransferNotFound
	}
	post := in.Flags&PostPending != 0
	amt := in.Amount
	if post {
		if amt == 0 {
			amt = p.Amount
		}
		if amt > p.Amount {
			return ResultExceedsPendingAmount
		}
		if addOverflows(dr.DebitsPosted, amt) || addOverflows(cr.CreditsPosted, amt) {
			return ResultOverflow
		}
	} else if amt != 0 && amt != p.Amount {
		return ResultVoidAmountMismatch
	} else {
		amt = p.Amount
	}
	b.touch(dr)
	b.touch(cr)
	b.undo = append(b.undo, undoEntry{pend: p, prevState: p.State})
	dr.DebitsPending -= p.Amount
	cr.CreditsPending -= p.Amount
	if post {
		dr.DebitsPosted += amt
		cr.CreditsPosted += amt
		p.State = PendingPosted
	} else {
		p.State = PendingVoided
	}
	b.markResolved(p)
	t := *in
	t.DebitAccountID, t.CreditAccountID, t.Asset = p.DebitAccountID, p.CreditAccountID, p.Asset
	t.Amount = amt
	t.PendingAmount = p.Amount
	t.Timestamp = b.nextTS()
	b.appendEntry(t, fp)
	return ResultOK
}

func (b *Book) markChain() {
	b.undo = b.undo[:0]
	b.chainStart = len(b.out.Transfers)
}

// rollbackChain undoes every change since markChain. Timestamps are not
// reused, which keeps them strictly increasing without a gap check.
func (b *Book) rollbackChain() {
	for i := len(b.undo) - 1; i >= 0; i-- {
		u := b.undo[i]
		switch {
		case u.acct != nil:
			*u.acct = u.prevAcct
		case u.pend != nil:
			u.pend.State = u.prevState
			if u.prevState == PendingOpen {
				delete(b.resolved, u.pend.ID)
			}
		case u.newPending != nil:
			delete(b.pendings, u.newPending.ID)
			delete(b.newPend, u.newPending.ID)
		case !u.newID.IsZero():
			b.ids.del(u.newID)
		}
	}
	b.undo = b.undo[:0]
	b.out.Transfers = b.out.Transfers[:b.chainStart]
	b.out.Fingerprints = b.out.Fingerprints[:b.chainStart]
}

type undoEntry struct {
	acct       *Account
	prevAcct   Account
	pend       *PendingTransfer
	prevState  PendingState
	newPending *PendingTransfer
	newID      TransferID
}

func addOverflows(a, b int64) bool { return b > 0 && a > math.MaxInt64-b }

func popcount(f TransferFlags) int {
	n := 0
	for ; f != 0; f &= f - 1 {
		n++
	}
	return n
}

// genMap is a map that forgets its oldest generation once the newest fills
// up, bounding memory while keeping at least one full generation.
type genMap struct {
	cur, old map[TransferID]int64
	max      int
}

func newGenMap(max int) genMap {
	return genMap{cur: make(map[TransferID]int64), old: map[TransferID]int64{}, max: max}
}

func (g *genMap) get(id TransferID) (int64, bool) {
	if v, ok := g.cur[id]; ok {
		return v, true
	}
	v, ok := g.old[id]
	return v, ok
}

func (g *genMap) put(id TransferID, v int64) { g.cur[id] = v }

func (g *genMap) del(id TransferID) { delete(g.cur, id) }

func (g *genMap) maybeRotate() {
	if len(g.cur) >= g.max {
		g.old = g.cur
		g.cur = make(map[TransferID]int64, g.max/4)
	}
}

// expiryHeap orders pending transfers by expiry time.
type expiryHeap []*PendingTransfer

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].ExpiresAt < h[j].ExpiresAt }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(*PendingTransfer)) }
func (h *expiryHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	*h = old[:len(old)-1]
	return p
}
