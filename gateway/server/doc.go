// Package server is the gateway role (`fundd gateway`): the fund and admin
// APIs (gRPC and REST/JSON) in front of ledger shards served by ledger
// owner processes (ledger/owner), found through the lease tables, each
// shard behind its own circuit breaker. Customers and orders live in the
// accounts database.
//
//	err := server.Run(ctx, server.Config{DSN: dsn, HTTPAddr: ":8080", GRPCAddr: ":9090", JWTKey: key})
//
// Run is Open, then Serve on the configured addresses. A process that
// composes several roles (the dev stack) calls Open itself with
// Config.Ledger set to the shards it owns in-process, hands Accounts to
// its other roles, builds the API with their Settler and Reconciler
// (Gateway) and serves it on listeners of its own: the same gateway,
// assembled here once.
//
// It also holds the gateway's adapters to the settlement domain, so that
// settlement knows nothing of the gateway: Settler serves the admin API's
// settlement calls with a settlement.Settler, Reconciler its
// reconciliation report from the stored breaks. The processes that run
// those workers (the dev stack) put them in gateway.Config.
package server
