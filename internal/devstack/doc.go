// Package devstack starts every role of the fund platform in one process,
// for development (`fundd dev`), the demo (`fundctl demo`), the gateway
// bench and the end-to-end tests. It assembles nothing itself: it composes
// the roles the servers run, each assembled by its own package.
//
//   - a private Postgres (internal/localpg, or given databases: DSN or
//     DSNs) with Options.Databases databases (2 by default), and an in-process
//     Kafka-protocol broker (internal/kafkabroker, or given brokers);
//   - the ledger owner (ledger/owner, as `fundd ledger` runs it) owning
//     every one of Options.Shards shards (8 by default, placed on the
//     databases by ledger.ShardMap) through their leases, with its outbox
//     relay and the saga's consumer of cross-shard second legs, so that a
//     settlement run can take the shards and give them back;
//   - the gateway (gateway/server, as `fundd gateway` assembles it) with
//     the customers spread over the shards (accounts.ShardOf), each
//     one's row and orders in its shard's database, its ledger client calling
//     the owner in-process (owner.Local), each shard behind its circuit
//     breaker, serving gRPC and REST/JSON on loopback ports;
//   - with Options.Settle, the settle role on demand
//     (settlement/nightly.OpenOnDemand), answering the admin API's
//     settlement calls; with Options.Recon, the reconciliation worker
//     (settlement/recon/worker.OpenEmbedded) and its report. Both work
//     over every database, as `fundd settle` and `fundd recon` do: each
//     shard's settlement steps and each event's record in its shard's
//     database.
//
// Every role reads one business clock (Options.Clock, Stack.Clock): the
// wall clock, or a test clock (internal/clock) that stands still until the
// admin API moves it, which makes the stack a sandbox (`fundd dev
// --test-clock`). A settlement call answers once the owner serves every
// ledger shard the run took again, so that the next read shows the run.
//
// Every role's metrics share one registry, served at the gateway's
// /metrics. Other roles plug in as Workers: each gets the running Stack
// (DSN, brokers, topic, ledger client, accounts service, metrics
// registry, logger) and returns a Role whose Run the stack owns, and
// optionally the Settler and Reconciler the admin API serves.
//
//	st, err := devstack.Start(ctx, devstack.Options{
//		Shards: 8, Databases: 2,
//		Settle: &devstack.SettleOptions{FileDir: dir},
//		Recon:  &devstack.ReconOptions{},
//	})
//	defer st.Stop(context.Background())
//	tok, _ := st.Token(0, true, time.Hour) // an admin token
//	http.Post(st.HTTPURL+"/v1/customers", ...)
//
// devstack sits on top of the domains, beside loadtest, deploy and cmd:
// only those (and tests) import it.
package devstack
