// Package settlement moves what the ledger committed onward: the exact
// income allocation, the nightly fund settlement run (Runner) and its
// custodian file; reconciliation lives in settlement/recon. (The ledger's
// own outbox relay and event transport are ledger/outbox and ledger/kafka.)
//
// The settlement run settles one business date after another. It holds
// each ledger shard only for each of its steps on it, taken from the
// shard's ledger host by a hand-off (the host drains the shard and
// releases its lease; no live commit is fenced) and given back at once,
// so orders keep flowing with a short pause per shard. It confirms the
// subscriptions and pays the standard redemptions
// due, takes a snapshot of every holder's eligible shares at the date's
// cut, allocates the day's income over all of them (Allocate: truncation,
// largest remainder, negative days), books it per shard with one entry per
// holder from the shard's income account (deductions a holder cannot bear
// go to the rounding account), records each customer's income and the
// fund's 7-day yield, writes the custodian file (CSV with totals and a
// SHA-256 checksum line) and publishes events. Each step is stored with
// what it wrote in one transaction (Store, implemented by
// settlement/postgres), and every entry id is derived from the date and
// the account or order, so a re-run or a resume after a crash anywhere
// writes each entry exactly once.
//
// A run that cannot go on is an answer, not a stuck date. What is refused
// before anything is recorded (too early, not the next date, a settled
// date asked with other income, income on a fund nobody holds shares of)
// is a *Refusal naming the cause and, where there is one, the command that
// resolves it. A run that stops later records why (RunState.Failure), so
// its status says FAILED with the reason and the command, and the dates
// after it are refused naming it; a refused income may be corrected while
// none of it is booked, and the run resumes after the steps it finished.
//
//	in, err := settlement.ParseInput("2026-11-11", "", "0.6543")
//	runner := settlement.NewRunner(settlement.Config{Shards: 64}, store, accountsService, events, logger)
//	summary, err := runner.Run(ctx, in, progress)
package settlement
