package ledger

import (
	"context"
	"errors"
	"fmt"
)

// ShardMap places the logical shards on databases: shard s lives on database
// s*Databases/Shards, so each database holds one contiguous range of shards
// and the ranges differ in size by at most one. It is a pure function of
// the two counts, so every process that is given the same list of databases
// (in the same order) computes the same placement without asking anyone.
// Changing either count moves data: it is a migration, not a setting.
type ShardMap struct {
	Shards    int // logical shards; at least 1
	Databases int // databases (Postgres DSNs); at least 1, at most Shards
}

// NewShardMap checks the counts and returns the map.
func NewShardMap(shards, databases int) (ShardMap, error) {
	if shards < 1 || databases < 1 || databases > shards {
		return ShardMap{}, fmt.Errorf("shard map: %d shards on %d databases: want 1 <= databases <= shards", shards, databases)
	}
	return ShardMap{Shards: shards, Databases: databases}, nil
}

// DatabaseOf returns the index of the database that holds shard.
func (m ShardMap) DatabaseOf(shard int) int {
	if m.Databases <= 1 {
		return 0
	}
	return shard * m.Databases / m.Shards
}

// ShardsOn returns the shards database db holds, in order.
func (m ShardMap) ShardsOn(db int) []int {
	var out []int
	for s := 0; s < m.Shards; s++ {
		if m.DatabaseOf(s) == db {
			out = append(out, s)
		}
	}
	return out
}

// ShardOwner is where a shard is served right now, as its lease says.
type ShardOwner struct {
	Shard int
	Owner string // the owner's name; empty when nobody holds a live lease
	Addr  string // where the owner serves calls (host:port); empty when unknown
	Epoch int64
	// ReservedFor names the owner a free shard was handed off to, while the
	// hand-off lasts: only that owner may take it meanwhile. "" otherwise.
	ReservedFor string
}

// Directory tells who owns each shard (the lease tables).
type Directory interface {
	// ShardOwners returns the current owner of every shard it could read;
	// shards without a live lease come back with an empty Owner and Addr.
	// When part of the leases could not be read (one database down) it
	// returns the rest together with the error, leaving those shards out.
	ShardOwners(ctx context.Context) ([]ShardOwner, error)
}

// Errors of routing a call to a shard's owner.
var (
	// ErrNotOwner: the process asked does not own the shard (any more).
	// Nothing was applied; the caller should find the current owner and
	// retry.
	ErrNotOwner = errors.New("ledger: shard not owned by this process")
	// ErrNoOwner: no live owner is known for the shard right now (it is
	// moving, or every owner is down).
	ErrNoOwner = errors.New("ledger: no live owner for the shard")
	// ErrCrossShard: one request touched accounts on more than one shard.
	// A single request applies on one shard atomically; money between
	// shards goes through a saga (ledger/xshard).
	ErrCrossShard = errors.New("ledger: request spans shards (move money between shards with xshard)")
	// ErrShardUnknown: the request names no account to route it by (a
	// post or void without accounts); send it to a shard explicitly.
	ErrShardUnknown = errors.New("ledger: request names no account to find its shard by")
	// ErrShardMapMismatch: caller and server disagree on the number of
	// logical shards, so they would put accounts on different shards.
	ErrShardMapMismatch = errors.New("ledger: shard count differs between caller and server")
)

// ShardOfTransfers returns the one shard that every account the transfers
// name lives on: ErrCrossShard when they name accounts of two shards,
// ErrShardUnknown when they name none (posts and voids may leave both
// accounts zero).
func ShardOfTransfers(ts []Transfer, shards int) (int, error) {
	ids := make([]AccountID, 0, 2*len(ts))
	for i := range ts {
		ids = append(ids, ts[i].DebitAccountID, ts[i].CreditAccountID)
	}
	return ShardOfAccounts(ids, shards)
}

// ShardOfAccounts returns the one shard all the non-zero ids live on, with
// the errors of ShardOfTransfers.
func ShardOfAccounts(ids []AccountID, shards int) (int, error) {
	shard := -1
	for _, id := range ids {
		if id == 0 {
			continue
		}
		s := ShardOf(id, shards)
		if shard >= 0 && s != shard {
			return 0, fmt.Errorf("accounts on shards %d and %d: %w", shard, s, ErrCrossShard)
		}
		shard = s
	}
	if shard < 0 {
		return 0, ErrShardUnknown
	}
	return shard, nil
}
