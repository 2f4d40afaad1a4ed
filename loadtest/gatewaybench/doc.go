// Package gatewaybench measures subscribe requests per second through the
// gateway's REST API on loopback, end to end (HTTP, JSON, JWT, limits,
// accounts service, order rows in Postgres, ledger batch commit): the engine
// behind `fundctl bench gateway`.
//
// It lives under loadtest, above the gateway, because it drives the whole
// platform from outside: the dev stack (internal/devstack) in this process.
//
// Two phases against one dev stack: a closed loop (Clients connections each
// sending as fast as answers come) that finds what the stack sustains, and
// optionally an open loop at a fixed offered rate (requests start on a
// schedule, whether or not earlier ones have been answered; latency counts
// from the scheduled start, so a slow server cannot hide queueing) that
// shows shedding at twice that rate.
//
// Back of the envelope: a subscribe is one order row claimed and finished
// in Postgres (a transaction of a few statements, one WAL flush unless
// group commit shares it) plus a 2-transfer chain in a ledger batch; the
// HTTP/JSON/JWT side costs some 50-100 µs of CPU. The load generator runs
// in the same process on the same two cores and costs about as much again.
//
//	res, err := gatewaybench.Run(ctx, gatewaybench.Config{Customers: 2000, Clients: 256,
//		Duration: 10 * time.Second, OpenRateFactor: 2})
//	fmt.Println(res.Phases[0].OKPerSec, res.Phases[0].P99Ms)
package gatewaybench
