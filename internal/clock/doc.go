// Package clock is the platform's business clock: the one time source that
// everything reading business time (the cut-off, trade and confirm dates,
// the fast-redemption day, settlement eligibility, the settle scheduler,
// yields, and the ledger's journal timestamps) reads.
//
// In production it is Wall, the machine's clock (business dates are taken
// in China Standard Time by ledger.BusinessZone, not here). In the sandbox
// (`fundd dev --test-clock`) it is a Test clock: it stands still at its
// start until it is moved forward (Set, Advance; the admin API's
// clock:advance), so a whole money cycle, subscribe to income to
// redemption, runs in a minute and comes out the same every time.
//
// A rehearsal cluster's processes share one test clock instead, kept in
// Postgres by the sub-package pgclock (`fundd ledger|gateway|settle|recon
// --test-clock`); moves from any gateway apply once, and only forward.
//
// Components take the clock as a `Now func() time.Time` in their configs,
// so the domains import nothing of this package; the process that composes
// them (the dev stack) passes the same clock's Now to all of them. Real
// durations (token expiry, leases, timeouts, rate limits) stay on
// time.Now.
//
//	c := clock.NewTest(time.Date(2026, 11, 9, 10, 0, 0, 0, cst))
//	cfg := accounts.Config{Now: c.Now}
//	_, err := c.Advance(29 * time.Hour) // past 2026-11-10 15:00
package clock
