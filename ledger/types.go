package ledger

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"math"
	"strconv"
	"time"
)

// AccountID identifies an account. Zero is never a valid id.
type AccountID int64

// TransferID is a client-chosen 128-bit identifier that doubles as the
// transfer's idempotency key: a transfer id is applied at most once, forever.
type TransferID [16]byte

// NewTransferID returns a random (version 4 layout) transfer id.
func NewTransferID() TransferID {
	var id TransferID
	if _, err := rand.Read(id[:]); err != nil {
		// crypto/rand never fails on Linux; if it does the process cannot
		// mint safe ids at all.
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	id[6] = id[6]&0x0f | 0x40
	id[8] = id[8]&0x3f | 0x80
	return id
}

// DeriveTransferID returns a deterministic id for a name inside a namespace,
// so that the same business request (say, customer 42's request "abc") always
// maps to the same transfer id and a retry can never apply twice.
func DeriveTransferID(namespace string, parts ...string) TransferID {
	h := sha256.New()
	h.Write([]byte(namespace))
	for _, p := range parts {
		h.Write([]byte{0})
		h.Write([]byte(p))
	}
	var id TransferID
	copy(id[:], h.Sum(nil))
	id[6] = id[6]&0x0f | 0x50
	id[8] = id[8]&0x3f | 0x80
	return id
}

// IsZero reports whether the id is all zeros.
func (id TransferID) IsZero() bool { return id == TransferID{} }

// String formats the id as a UUID.
func (id TransferID) String() string {
	var b [36]byte
	hex.Encode(b[0:8], id[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], id[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], id[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], id[8:10])
	b[23] = '-'
	hex.Encode(b[24:], id[10:])
	return string(b[:])
}

// MarshalText writes the UUID form, so ids read well in JSON.
func (id TransferID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText parses the UUID form.
func (id *TransferID) UnmarshalText(b []byte) error {
	v, err := ParseTransferID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// ParseTransferID parses the UUID form written by String.
func ParseTransferID(s string) (TransferID, error) {
	var id TransferID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return id, fmt.Errorf("transfer id %q: want the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", s)
	}
	compact := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:]
	if _, err := hex.Decode(id[:], []byte(compact)); err != nil {
		return id, fmt.Errorf("transfer id %q: %w", s, err)
	}
	return id, nil
}

// Asset is what an account holds. Every asset here has two decimal places
// (fen for CNY, 0.01 share for fund shares); the scale travels with the asset
// so that adding one with another scale is a data change, not a code change.
type Asset uint16

// Assets known to the platform.
const (
	AssetCNY        Asset = 1 // cash, minor unit 0.01 CNY (fen)
	AssetFundShares Asset = 2 // money-market fund shares, 1 share = 1.00 CNY, minor unit 0.01
	// AssetQuota is not money: an allowance counted in CNY-sized units
	// (minor unit 0.01), such as the fast-redemption daily cap. Being its
	// own asset keeps it out of every CNY total.
	AssetQuota Asset = 3
)

// Valid reports whether the asset is one the ledger knows.
func (a Asset) Valid() bool { return a == AssetCNY || a == AssetFundShares || a == AssetQuota }

// Scale is the number of decimal places of the asset's minor unit.
func (a Asset) Scale() int32 { return 2 }

func (a Asset) String() string {
	switch a {
	case AssetCNY:
		return "CNY"
	case AssetFundShares:
		return "FUND"
	case AssetQuota:
		return "QUOTA"
	}
	return "asset(" + strconv.Itoa(int(a)) + ")"
}

// AccountFlags constrain an account's balance.
type AccountFlags uint16

const (
	// DebitsMustNotExceedCredits keeps a credit-normal account (a customer's
	// cash or shares) from going below zero available, counting holds.
	DebitsMustNotExceedCredits AccountFlags = 1 << iota
	// CreditsMustNotExceedDebits is the mirror image for debit-normal accounts.
	CreditsMustNotExceedDebits

	accountFlagsKnown = DebitsMustNotExceedCredits | CreditsMustNotExceedDebits
)

// Account is one ledger account and its running balances, in minor units.
// System accounts (bank settlement, omnibus, in-transit) carry no balance
// flag and may go either way.
type Account struct {
	ID     AccountID
	Asset  Asset
	Code   uint16 // what the account is for; meaning belongs to the caller
	Flags  AccountFlags
	Closed bool

	DebitsPending  int64
	DebitsPosted   int64
	CreditsPending int64
	CreditsPosted  int64

	Timestamp int64 // when the ledger created it, Unix nanoseconds
}

// Available is what a credit-normal account can spend: posted credits less
// posted debits less debits held by pending transfers.
func (a *Account) Available() int64 {
	return a.CreditsPosted - a.DebitsPosted - a.DebitsPending
}

// Balance is the posted credit-normal balance.
func (a *Account) Balance() int64 { return a.CreditsPosted - a.DebitsPosted }

// TransferFlags select what kind of transfer it is.
type TransferFlags uint16

const (
	// Linked chains this transfer to the next one in the same request: the
	// chain (ending with the first transfer without the flag) applies as a
	// whole or not at all.
	Linked TransferFlags = 1 << iota
	// Pending reserves the amount (a hold) without moving it yet.
	Pending
	// PostPending moves a pending transfer's amount, fully or partly.
	PostPending
	// VoidPending releases a pending transfer.
	VoidPending
	// Expired marks the void the ledger itself writes when a pending
	// transfer's timeout passes. Clients may not set it.
	Expired

	transferFlagsClient = Linked | Pending | PostPending | VoidPending
)

// MaxUserDataLen bounds the user data carried by a transfer.
const MaxUserDataLen = 64

// Transfer moves Amount minor units of Asset from DebitAccountID to
// CreditAccountID.
type Transfer struct {
	ID              TransferID
	DebitAccountID  AccountID
	CreditAccountID AccountID
	Amount          int64
	Asset           Asset
	Kind            uint16 // what the transfer is for (top-up, subscription...); meaning belongs to the caller
	Flags           TransferFlags
	PendingID       TransferID    // for PostPending and VoidPending: the pending transfer
	Timeout         time.Duration // for Pending: how long the hold lives; 0 = until posted or voided
	UserData        string        // the caller's reference, such as an order id

	// Set by the ledger.
	Timestamp     int64 // Unix nanoseconds, strictly increasing per shard
	PendingAmount int64 // for post and void: the pending amount released
}

// Fingerprint summarises the client-chosen fields, so that a retry with the
// same id can be told apart from a conflicting reuse of the id without
// keeping the whole original forever. It is stored with every id; writers
// other than the sequencer (the settlement's set-based booking) store it
// too, so that a later request repeating their entry answers "exists".
func (t *Transfer) Fingerprint() int64 {
	h := fnv.New64a()
	var b [8 * 8]byte
	put := func(i int, v uint64) {
		for j := 0; j < 8; j++ {
			b[i*8+j] = byte(v >> (8 * j))
		}
	}
	put(0, uint64(t.DebitAccountID))
	put(1, uint64(t.CreditAccountID))
	put(2, uint64(t.Amount))
	put(3, uint64(t.Asset)|uint64(t.Kind)<<16|uint64(t.Flags)<<32)
	put(4, uint64(t.Timeout))
	put(5, uint64(len(t.UserData)))
	copy(b[48:], t.PendingID[:])
	h.Write(b[:])
	h.Write([]byte(t.UserData))
	return int64(h.Sum64() & math.MaxInt64)
}

// PendingState is the life-cycle of a pending transfer.
type PendingState uint8

const (
	PendingOpen PendingState = iota + 1
	PendingPosted
	PendingVoided
	PendingExpired
)

func (s PendingState) String() string {
	switch s {
	case PendingOpen:
		return "pending"
	case PendingPosted:
		return "posted"
	case PendingVoided:
		return "voided"
	case PendingExpired:
		return "expired"
	}
	return "unknown"
}

// PendingTransfer is the state of one two-phase transfer.
type PendingTransfer struct {
	ID              TransferID
	DebitAccountID  AccountID
	CreditAccountID AccountID
	Amount          int64
	Asset           Asset
	ExpiresAt       int64 // Unix nanoseconds; 0 = never
	State           PendingState
}

// businessZone is never reassigned; BusinessZone hands it out.
var businessZone = time.FixedZone("CST", 8*3600)

// BusinessZone is the zone the platform's calendar dates are in (China
// Standard Time, no daylight saving), fixed so no tzdata is needed.
func BusinessZone() *time.Location { return businessZone }

// BusinessDate returns the calendar date (in BusinessZone) of a ledger
// timestamp; the journal is partitioned by it.
func BusinessDate(ts int64) time.Time {
	t := time.Unix(0, ts).In(businessZone)
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// An account id's home is its bits 4 to 43. Only the home decides the
// shard: the low 4 bits (a slot) and the top bits (a namespace) do not. So
// a product can keep a customer's accounts together (one home, several
// slots, any namespace) and place its own copy of a system account on a
// chosen shard (search the home, keep the slot and namespace).
const (
	homeShift = 4
	homeBits  = 40
)

// HomeOf is the part of an account id that decides its shard.
func HomeOf(id AccountID) int64 { return int64(id>>homeShift) & (1<<homeBits - 1) }

// WithHome returns id with its home replaced by home (which must be below
// 2^40): the same slot and namespace, on home's shard.
func WithHome(id AccountID, home int64) AccountID {
	const mask = AccountID(1<<homeBits-1) << homeShift
	return id&^mask | AccountID(home)<<homeShift&mask
}

// ShardOf is the logical shard of an account, a pure function of its home
// (HomeOf) that every component computes the same way. Homes are spread by
// a multiplicative hash so that sequential ones do not pile onto one shard.
func ShardOf(id AccountID, shards int) int {
	if shards <= 1 {
		return 0
	}
	h := uint64(HomeOf(id)) * 0x9E3779B97F4A7C15
	return int((h >> 32) % uint64(shards))
}

// OnShard returns the account with id's slot and namespace whose home is
// the first one at or after id's that lives on shard: the copy of a system
// account on that shard. With one shard it is id itself.
func OnShard(id AccountID, shard, shards int) AccountID {
	if shard < 0 || shard >= max(shards, 1) {
		panic(fmt.Sprintf("ledger.OnShard: shard %d of %d", shard, shards))
	}
	for home := HomeOf(id); ; home++ {
		if c := WithHome(id, home); ShardOf(c, shards) == shard {
			return c
		}
	}
}
