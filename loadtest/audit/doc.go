// Package audit proves, after a load test, that the books agree with what
// the clients were told and with themselves:
//
//   - from the run's records: every order acknowledged as accepted is in
//     the ledger journal exactly once, leg by leg, with its accounts and
//     amount (the transfer ids are derived from customer and request id
//     exactly as package accounts derives them, see LegID) and has its
//     order row; no order that was refused or never acknowledged is
//     half-applied (a linked chain is all or nothing); no journal entry
//     carrying one of the run's request ids is a second application. A
//     transfer between customers on two shards is checked as leg 1 of a
//     saga (ledger/xshard): the payer's cash into the in-transit account;
//   - from the databases alone, whoever wrote them (orphans.go): every
//     journal entry of a customer order on the run's business dates has
//     its order row, so it shows in the customer's history, and every
//     order row stored since the run's first whose money moved has its
//     entry; set-based in SQL where the accounts' tables share the
//     ledger's database;
//   - sagas (sagas.go): after a bounded wait for the pending ones, every
//     saga of the run's dates ended with exactly one of leg 2 and the
//     compensation, as its order row says, and the in-transit accounts of
//     all shards net to zero;
//   - the ledger's own Verify holds on every shard, and, when a reconciler
//     is given, it reports no break.
//
// It reads the ledger's and the accounts' tables directly (read-only, but
// for temporary tables): the audit must not trust the API it is checking.
// The ledger may span several databases (Config.LedgerDSNs), the
// customers several shards (Config.Shards, derived when 0), and the
// customers' rows and orders several databases (Config.AccountsDSNs; by
// default, with several ledger databases, each holds its own shards'
// customers, as the gateway role keeps them): every order is looked up in
// its customer's database and the orphan checks run in each.
//
//	a, err := audit.Run(ctx, audit.Config{LedgerDSN: dsn}, res.Records)
//	fmt.Println("lost", a.Lost, "orphans", a.EntriesWithoutRow+a.RowsWithoutEntry, "ok", a.OK)
package audit
