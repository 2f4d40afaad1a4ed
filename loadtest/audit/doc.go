// Package audit proves, after a load test, that the books agree with what
// the clients were told: every order acknowledged as accepted is in the
// ledger journal exactly once, leg by leg, with its accounts and amount
// (the transfer ids are derived from customer and request id exactly as
// package accounts derives them, see LegID) and has its order row; no
// order that was refused or never acknowledged is half-applied (a linked
// chain is all or nothing); no journal entry carrying one of the run's
// request ids is a second application; the ledger's own Verify holds on
// every shard; and, when a reconciler is given, it reports no break.
//
// It reads the ledger's and the accounts' tables directly (read-only): the
// audit must not trust the API it is checking.
//
//	a, err := audit.Run(ctx, audit.Config{LedgerDSN: dsn}, res.Records)
//	fmt.Println("lost", a.Lost, "duplicated", a.Duplicated, "ok", a.OK)
package audit
