package postgres

import (
	"cmp"
	"slices"

	"github.com/fundplatform/fund/accounts"
)

// The store's advisory locks. Orders and status changes meet on one lock per
// customer, which an order batch takes shared for each party and a status
// change exclusive: orders never wait for one another, a freeze or close
// waits for the batches in flight on the customer, and a batch waits for a
// status change in progress, then reads the new status. A second lock per
// order key (customer, request id), taken exclusive, makes a concurrent
// placement of the same key (another writer, another process) wait for the
// first one's commit and then find its row, so that the row can be written
// once, with its outcome, and the key applied once.
//
// Advisory locks rather than row locks: locking a customer's row writes
// the tuple (its xmax, and WAL) in every batch, and concurrent lockers of
// one row need a MultiXact; an advisory lock is an entry in the server's
// lock table and writes nothing. They are transaction-scoped, so a
// connection never keeps one past its transaction.
//
// Namespace. These are the two-int4 form of Postgres's advisory locks
// (pg_advisory_xact_lock(int, int)), which Postgres keeps apart from the
// one-bigint form that the repository's other advisory locks use (goose's
// and the stores' migration locks, reconciliation's compare lock). Within
// the two-int4 form, the accounts store owns the first keys whose top 16
// bits are 0x6163 ("ac"):
//
//	first key   second key           lock
//	0x616301xx  low 32 bits of id    customer id (xx = id >> 32; ids are below 2^40)
//	0x616302xx  low 32 bits of hash  order key: 40 bits (xx, then the second key)
//	                                 of the FNV-1a hash of customer id and request id
//
// Two order keys with one hash share a lock: that only makes one wait for
// the other, since what decides whether a key is stored is the read of its
// own row after the lock.
//
// A transaction takes its locks in one statement, in ascending (first key,
// second key) order, so customers before keys: two batches cannot wait for
// each other in a cycle, and a status change holds a single lock.
//
// Lock table: a batch holds a lock per distinct party and per order, up to
// 2 x OrderBatchMax, in the server's shared lock table, whose size is
// max_locks_per_transaction x (max_connections + max_prepared_transactions)
// entries shared by all sessions (a single transaction may use more than
// max_locks_per_transaction). Size it for writers x 2 x OrderBatchMax per
// process using the database, plus what else runs there.
const (
	lockSpaceCustomer int32 = 0x61630100
	lockSpaceOrderKey int32 = 0x61630200
)

type advisoryKey struct{ a, b int32 }

func (k advisoryKey) compare(o advisoryKey) int {
	return cmp.Or(cmp.Compare(k.a, o.a), cmp.Compare(k.b, o.b))
}

func customerLockKey(id accounts.CustomerID) advisoryKey {
	return advisoryKey{lockSpaceCustomer | int32(uint64(id)>>32&0xff), int32(uint32(id))}
}

func orderLockKey(hash uint64) advisoryKey {
	return advisoryKey{lockSpaceOrderKey | int32(hash>>32&0xff), int32(uint32(hash))}
}

// orderKeyHash is the 64-bit FNV-1a hash of the customer id (8 bytes, big
// endian) followed by the request id. Every process must compute the same
// hash, so it is spelled out here rather than taken from a seeded hash.
func orderKeyHash(c accounts.CustomerID, requestID string) uint64 {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	h := uint64(offset64)
	for i := 56; i >= 0; i -= 8 {
		h ^= uint64(c) >> i & 0xff
		h *= prime64
	}
	for i := 0; i < len(requestID); i++ {
		h ^= uint64(requestID[i])
		h *= prime64
	}
	return h
}

type advisoryLock struct {
	key    advisoryKey
	shared bool
}

// lockArgs sorts locks into the one order every transaction takes them in,
// merges repeats (exclusive wins), and returns them as lockSQL's arguments.
func lockArgs(locks []advisoryLock) (a, b []int32, shared []bool) {
	slices.SortFunc(locks, func(x, y advisoryLock) int { return x.key.compare(y.key) })
	a, b, shared = make([]int32, 0, len(locks)), make([]int32, 0, len(locks)), make([]bool, 0, len(locks))
	for i, l := range locks {
		if i > 0 && l.key == locks[i-1].key {
			shared[len(shared)-1] = shared[len(shared)-1] && l.shared
			continue
		}
		a, b, shared = append(a, l.key.a), append(b, l.key.b), append(shared, l.shared)
	}
	return a, b, shared
}

// lockSQL takes the locks given as three arrays, in array order (a function
// scan yields its rows in order, and each row's lock is taken as the row is
// produced); it waits for each as long as it takes, within the
// transaction's statement timeout, if any.
const lockSQL = `SELECT count(*) FROM (
	SELECT CASE WHEN t.shared THEN pg_advisory_xact_lock_shared(t.a, t.b) ELSE pg_advisory_xact_lock(t.a, t.b) END
	FROM unnest($1::int4[], $2::int4[], $3::bool[]) AS t(a, b, shared)) AS locked`

// statusLockSQL takes a customer's lock exclusively, for a status change.
const statusLockSQL = `SELECT pg_advisory_xact_lock($1, $2)`
