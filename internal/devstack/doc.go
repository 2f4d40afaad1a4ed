// Package devstack starts every role of the fund platform in one process:
// a private Postgres (deploy/localpg, or a given DSN), an in-process
// Kafka-protocol broker (or given brokers), ledger shard 0 (owned through
// its lease by a ledger.Host, as `fundd ledger` owns shards, so that a
// settlement run can take the shard and give it back), the outbox relay to
// Kafka, the accounts service behind the
// gateway's circuit breaker, and the gateway itself (gRPC and REST/JSON on
// loopback ports). `fundd dev`, `fundd gateway`, the end-to-end tests and
// load generators use it.
//
// Other roles plug in as Workers: each gets the running Stack (DSN,
// brokers, topic, ledger client, accounts service, metrics registry,
// logger) and returns a Role whose Run the stack owns, and optionally the
// Settler and Reconciler the admin API serves.
//
//	st, err := devstack.Start(ctx, devstack.Options{Workers: []devstack.Worker{{
//		Name: "settlement",
//		Start: func(ctx context.Context, s *devstack.Stack) (devstack.Role, error) {
//			svc := mysettlement.New(s.DSN, s.Accounts, s.Ledger)
//			return devstack.Role{Run: svc.Run, Settler: svc}, nil
//		},
//	}}})
//	defer st.Stop(context.Background())
//	tok, _ := st.Token(0, true, time.Hour) // an admin token
//	http.Post(st.HTTPURL+"/v1/customers", ...)
package devstack
