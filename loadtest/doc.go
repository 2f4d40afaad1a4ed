// Package loadtest drives the gateway's REST API with an open-loop load: a
// Double-11 night (or a constant, a ramp, or a profile read from a file) and
// measures what came back.
//
// Open loop: requests leave on a schedule computed from the profile's
// arrival rate (NewArrivalSchedule: a Poisson process from the run's seed
// by default, or evenly spaced), never waiting for earlier answers, so a slow
// system cannot hide its latency by slowing the generator down; latency is
// measured from each request's scheduled send time into HDR histograms. At
// most MaxInFlight requests are out at once; one due beyond that is not
// sent and is counted as "dropped by the generator", so the generator's own
// limit is never mistaken for the system's.
//
// Every order carries an Idempotency-Key; an attempt that times out (or
// whose connection breaks) is sent again with the same key, at most
// TimeoutRetries times, as the mobile app does. Customers are drawn with a
// Zipf skew, and most payments go to a few hot merchants. Each order's
// request and outcome is kept as a Record, which package loadtest/audit
// checks against the books afterwards; package loadtest/report draws the
// Result.
//
// The setup (Setup) opens customers with cash and subscriptions sized for
// the busiest customer (BudgetFor); on a sandbox with a test clock,
// ConfirmShares then moves the clock past the subscriptions' confirm date
// and settles the dates between, so that redemptions and payments find
// confirmed shares. A run can be split over processes (Part): each part
// its customers, keys and share of the rate; their results carry encoded
// HDR histograms, and Merge adds them up exactly. FindCapacity steps a
// constant rate up until p99 passes an SLO or too much is shed.
//
//	customers, merchants, _ := loadtest.Setup(ctx, loadtest.SetupConfig{Target: url, ...})
//	res, err := loadtest.Run(ctx, loadtest.Config{
//		Target:  url,
//		Profile: loadtest.Double11(2*time.Minute, 1500, 15),
//		Customers: customers, Merchants: merchants, Tokens: tokens,
//	})
package loadtest
