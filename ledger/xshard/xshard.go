package xshard

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/fundplatform/fund/ledger"
)

// Transfer kinds the saga writes.
const (
	KindOut  uint16 = 60001 // leg 1 on the payer's shard: payer -> in-transit
	KindIn   uint16 = 60002 // leg 2 on the payee's shard: in-transit -> payee
	KindBack uint16 = 60003 // compensation on the payer's shard: in-transit -> payer
)

// inTransitBase is where in-transit account ids start; far above customer
// and system ids.
const inTransitBase = ledger.AccountID(1) << 56

// InTransitAccount is the account on shard on that holds money in flight
// between on and peer, for asset: a pure function every process computes
// alike, chosen so that it lives on shard on. Each (peer, asset) pair has
// its own range of homes (2^20 of them, far more than the search needs).
func InTransitAccount(on, peer, shards int, asset ledger.Asset) ledger.AccountID {
	return ledger.OnShard(inTransitBase|ledger.AccountID(peer*8+int(asset))<<24, on, shards)
}

// State is where a saga stands.
type State int

const (
	InFlight  State = iota // leg 1 committed, leg 2 not known yet: query again later
	Completed              // the payee was credited
	Refunded               // the payee's shard refused; the payer got the money back
)

func (s State) String() string {
	return [...]string{"in_flight", "completed", "refunded"}[s]
}

// Outcome is what the caller of Transfer learns.
type Outcome struct {
	State  State
	Result ledger.Result // leg 1's result; for Refunded, why the payee's shard refused
}

// Router sends transfers to the right shard and runs cross-shard sagas.
type Router struct {
	shards int
	client func(shard int) ledger.Client

	mu      sync.Mutex
	waiters map[ledger.TransferID]chan Outcome
}

// NewRouter returns a router over shards, reaching each through client.
func NewRouter(shards int, client func(shard int) ledger.Client) *Router {
	return &Router{shards: shards, client: client, waiters: map[ledger.TransferID]chan Outcome{}}
}

// EnsureInTransit creates every shard's in-transit accounts (idempotent).
func (r *Router) EnsureInTransit(ctx context.Context, assets ...ledger.Asset) error {
	for on := 0; on < r.shards; on++ {
		var as []ledger.Account
		for peer := 0; peer < r.shards; peer++ {
			if peer == on {
				continue
			}
			for _, asset := range assets {
				as = append(as, ledger.Account{ID: InTransitAccount(on, peer, r.shards, asset), Asset: asset, Code: KindOut})
			}
		}
		if len(as) == 0 {
			continue
		}
		rs, err := r.client(on).CreateAccounts(ctx, as)
		if err != nil {
			return fmt.Errorf("in-transit accounts on shard %d: %w", on, err)
		}
		for i, res := range rs {
			if !res.Result.Applied() {
				return fmt.Errorf("in-transit account %d: %s", as[i].ID, res.Result)
			}
		}
	}
	return nil
}

// userDataHead is what leg 1's user data carries before the caller's data:
// the payee and the caller's kind.
func userDataHead(t *ledger.Transfer) string {
	return "x:" + strconv.FormatInt(int64(t.CreditAccountID), 10) + ":" + strconv.Itoa(int(t.Kind)) + ":"
}

// Leg1 is leg 1 of the saga that moves the plain transfer t between two
// shards among shards: same id, amount and asset, from t's debit account to
// its shard's in-transit account for the credit account's shard, of kind
// KindOut, with the payee and t's kind and user data packed into the user
// data ("x:<payee>:<kind>:<data>"), which Handle unpacks into leg 2. When
// that would pass ledger.MaxUserDataLen, t's data is cut (at a character
// boundary) to fit: leg 2 then carries the cut data. Leg1 does not check
// that the accounts are on two shards, nor t's flags (a saga carries none):
// Router.Transfer does, for callers that want it to.
//
// A caller that sends leg 1 itself (the accounts service, which records
// the order with it) asks Status later with t, the plain transfer.
func Leg1(t ledger.Transfer, shards int) ledger.Transfer {
	src, dst := ledger.ShardOf(t.DebitAccountID, shards), ledger.ShardOf(t.CreditAccountID, shards)
	head := userDataHead(&t)
	leg1 := t
	leg1.CreditAccountID = InTransitAccount(src, dst, shards, t.Asset)
	leg1.Kind = KindOut
	leg1.UserData = head + cutUTF8(t.UserData, ledger.MaxUserDataLen-len(head))
	return leg1
}

// cutUTF8 is the longest prefix of s of at most n bytes that does not end
// inside a character.
func cutUTF8(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func parseUserData(s string) (payee ledger.AccountID, kind uint16, data string, err error) {
	parts := strings.SplitN(s, ":", 4)
	if len(parts) != 4 || parts[0] != "x" {
		return 0, 0, "", fmt.Errorf("xshard: leg 1 user data %q", s)
	}
	p, err1 := strconv.ParseInt(parts[1], 10, 64)
	k, err2 := strconv.ParseUint(parts[2], 10, 16)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, "", fmt.Errorf("xshard: leg 1 user data %q: %w", s, err)
	}
	return ledger.AccountID(p), uint16(k), parts[3], nil
}

// Transfer applies a plain transfer: directly when both accounts share a
// shard, else as a saga, waiting up to wait for its outcome (after which it
// answers InFlight; the saga still completes, and Status tells how it
// ended).
func (r *Router) Transfer(ctx context.Context, t ledger.Transfer, wait time.Duration) (Outcome, error) {
	src, dst := ledger.ShardOf(t.DebitAccountID, r.shards), ledger.ShardOf(t.CreditAccountID, r.shards)
	if src == dst {
		rs, err := r.client(src).CreateTransfers(ctx, []ledger.Transfer{t})
		if err != nil {
			return Outcome{}, err
		}
		return Outcome{State: Completed, Result: rs[0].Result}, nil
	}
	if t.Flags != 0 {
		return Outcome{Result: ledger.ResultReservedFlag}, nil // two-phase and linked stay within a shard
	}
	// Data that does not fit beside the payee and kind is refused here, as
	// the ledger refuses it in a plain transfer (Leg1 would cut it).
	if len(userDataHead(&t))+len(t.UserData) > ledger.MaxUserDataLen {
		return Outcome{Result: ledger.ResultUserDataTooLong}, nil
	}
	leg1 := Leg1(t, r.shards)
	ch := make(chan Outcome, 1)
	r.mu.Lock()
	r.waiters[t.ID] = ch
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.waiters, t.ID)
		r.mu.Unlock()
	}()
	rs, err := r.client(src).CreateTransfers(ctx, []ledger.Transfer{leg1})
	if err != nil {
		return Outcome{}, err
	}
	if rs[0].Result != ledger.ResultOK && rs[0].Result != ledger.ResultExists {
		return Outcome{State: Completed, Result: rs[0].Result}, nil // refused at once: nothing in flight
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case o := <-ch:
		return o, nil
	case <-timer.C:
		return Outcome{State: InFlight, Result: rs[0].Result}, nil
	case <-ctx.Done():
		return Outcome{State: InFlight, Result: rs[0].Result}, nil
	}
}

// ErrUnknownTransfer is Status's answer for a transfer no shard committed:
// it was never applied (or refused at once), so sending it again is safe.
var ErrUnknownTransfer = errors.New("xshard: transfer not committed")

// Status tells where a transfer sent through Transfer stands, from what
// the shards committed: the caller that was told InFlight asks again with
// the same transfer (its id and accounts). A saga is Completed once leg 2
// is committed on the payee's shard, Refunded once the compensation is
// committed on the payer's, and InFlight while only leg 1 is. For a
// refund the reason the payee's shard gave is not kept (Result is
// ResultOK then); the refund itself is what the caller acts on.
func (r *Router) Status(ctx context.Context, t ledger.Transfer) (Outcome, error) {
	src, dst := ledger.ShardOf(t.DebitAccountID, r.shards), ledger.ShardOf(t.CreditAccountID, r.shards)
	srcIDs := []ledger.TransferID{t.ID}
	if src != dst {
		srcIDs = append(srcIDs, backID(t.ID))
	}
	got, err := r.committed(ctx, src, srcIDs)
	if err != nil {
		return Outcome{}, err
	}
	switch {
	case !got[0]:
		return Outcome{}, fmt.Errorf("transfer %s: %w", t.ID, ErrUnknownTransfer)
	case src == dst:
		return Outcome{State: Completed, Result: ledger.ResultOK}, nil
	case got[1]:
		return Outcome{State: Refunded, Result: ledger.ResultOK}, nil
	}
	in, err := r.committed(ctx, dst, []ledger.TransferID{inID(t.ID)})
	if err != nil {
		return Outcome{}, err
	}
	if in[0] {
		return Outcome{State: Completed, Result: ledger.ResultOK}, nil
	}
	return Outcome{State: InFlight, Result: ledger.ResultOK}, nil
}

func (r *Router) committed(ctx context.Context, shard int, ids []ledger.TransferID) ([]bool, error) {
	tl, ok := r.client(shard).(ledger.TransferLookup)
	if !ok {
		return nil, fmt.Errorf("xshard: the client of shard %d cannot look up transfers", shard)
	}
	got, err := tl.TransfersCommitted(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("transfer status on shard %d: %w", shard, err)
	}
	if len(got) != len(ids) {
		return nil, fmt.Errorf("xshard: %d answers for %d ids from shard %d", len(got), len(ids), shard)
	}
	return got, nil
}

// ClosingIDs are the ids of the entries that end the saga whose leg 1 has
// id leg1: leg 2 on the payee's shard, and the compensation on the payer's.
// Exactly one of them is ever committed. For audits that tell a saga's
// entries from strays.
func ClosingIDs(leg1 ledger.TransferID) (in, back ledger.TransferID) {
	return inID(leg1), backID(leg1)
}

// inID and backID are the ids of a saga's leg 2 and compensation, derived
// from leg 1's so that every attempt (and Status) computes the same ones.
func inID(leg1 ledger.TransferID) ledger.TransferID {
	return ledger.DeriveTransferID("xshard.in", leg1.String())
}

func backID(leg1 ledger.TransferID) ledger.TransferID {
	return ledger.DeriveTransferID("xshard.back", leg1.String())
}

// Wants reports whether Handle acts on events of kind: only leg 1 of a
// saga. A consumer can pass over every other kind undecoded.
func (r *Router) Wants(kind uint16) bool { return kind == KindOut }

// Handle is the consumer's work for one ledger event: for a leg 1 it
// applies leg 2 (or the compensation). Idempotent: a redelivered event
// finds its legs existing. An error means "retry later" (a shard was
// unreachable); refusals are outcomes, not errors.
func (r *Router) Handle(ctx context.Context, e ledger.Event) error {
	if e.Kind != KindOut || e.Flags != 0 {
		return nil
	}
	payee, kind, data, err := parseUserData(e.UserData)
	if err != nil {
		return err
	}
	dst := ledger.ShardOf(payee, r.shards)
	leg2 := ledger.Transfer{
		ID:             inID(e.ID),
		DebitAccountID: InTransitAccount(dst, e.Shard, r.shards, e.Asset), CreditAccountID: payee,
		Amount: e.Amount, Asset: e.Asset, Kind: kind, UserData: data,
	}
	rs, err := r.client(dst).CreateTransfers(ctx, []ledger.Transfer{leg2})
	if err != nil {
		return fmt.Errorf("leg 2 of %s on shard %d: %w", e.ID, dst, err)
	}
	if rs[0].Result.Applied() {
		r.notify(e.ID, Outcome{State: Completed, Result: ledger.ResultOK})
		return nil
	}
	back := ledger.Transfer{
		ID:             backID(e.ID),
		DebitAccountID: e.CreditAccountID, CreditAccountID: e.DebitAccountID,
		Amount: e.Amount, Asset: e.Asset, Kind: KindBack,
	}
	bs, err := r.client(e.Shard).CreateTransfers(ctx, []ledger.Transfer{back})
	if err != nil {
		return fmt.Errorf("compensation of %s on shard %d: %w", e.ID, e.Shard, err)
	}
	if !bs[0].Result.Applied() {
		// The payer's own shard refused to return money it holds in
		// transit: a broken invariant, not a business outcome.
		return fmt.Errorf("%w: compensation of %s: %s", ledger.ErrInvariantBroke, e.ID, bs[0].Result)
	}
	r.notify(e.ID, Outcome{State: Refunded, Result: rs[0].Result})
	return nil
}

func (r *Router) notify(id ledger.TransferID, o Outcome) {
	r.mu.Lock()
	ch := r.waiters[id]
	r.mu.Unlock()
	if ch != nil {
		select {
		case ch <- o:
		default:
		}
	}
}

// InTransitNet sums, per asset, the posted balances of every in-transit
// account on every shard. With no saga in flight it is zero.
func (r *Router) InTransitNet(ctx context.Context, assets ...ledger.Asset) (map[ledger.Asset]int64, error) {
	net := map[ledger.Asset]int64{}
	for on := 0; on < r.shards; on++ {
		var ids []ledger.AccountID
		for peer := 0; peer < r.shards; peer++ {
			for _, asset := range assets {
				if peer != on {
					ids = append(ids, InTransitAccount(on, peer, r.shards, asset))
				}
			}
		}
		if len(ids) == 0 {
			continue
		}
		as, err := r.client(on).LookupAccounts(ctx, ids)
		if err != nil {
			return nil, err
		}
		for _, a := range as {
			net[a.Asset] += a.Balance()
		}
	}
	return net, nil
}
