// Package ledgertest is the contract every ledger.Store keeps, as one test
// suite that runs against each implementation (the in-memory MemStore here
// and ledger/postgres), plus MemStore itself for tests that need a store
// without a database, and Routes, the ledger.Client that tests of the
// ledger's callers put in front of several shards (each call to its
// accounts' shard, as the gateway's sharded client routes it).
//
// The suite drives real ledger.Sequencers over the store, since that is how
// commit batches are made, and checks:
//
//   - Model: random requests (payments, holds, posts, voids, linked chains,
//     retries, reused ids) from several clients at once, each result and every
//     balance against a small reference model, with a new sequencer taking
//     over between phases. The seed is logged; FUND_TEST_SEED replays it.
//   - Idempotency: a retry answers exists and changes nothing, even many at
//     once; the same id with other content is refused.
//   - Restart: a new sequencer over the same store serves the same balances
//     and holds and remembers every id.
//   - Fencing: a batch of a stale epoch fails with ledger.ErrFenced (for
//     stores with epochs).
//   - DoubleSpend: many clients spend one balance at once, in several
//     batching modes; exactly as many succeed as it affords.
//
// Every test ends with Store.Verify and the implementation's own checks.
// An implementation wires it in one test:
//
//	func TestStoreContract(t *testing.T) {
//		ledgertest.Run(t, ledgertest.Config{
//			NewStore: func(t *testing.T) ledger.Store { return openStore(t) },
//			TakeOver: func(t *testing.T, s ledger.Store, shard int) int64 { ... },
//		})
//	}
//
// A test over several shards routes its calls with one line:
//
//	lc := ledgertest.NewRoutes(shards, func(s int) ledger.Client { return seqs[s] })
//
// It imports only the ledger and the standard library (and internal/testseed),
// so that any adapter of the ledger, and any domain above it, can use it.
package ledgertest
