// Package owner is the ledger owner role (`fundd ledger`): a process that
// owns ledger shards through leases and serves them over gRPC. It takes
// free shards, serves each with one single-writer sequencer, renews its
// leases, stops a shard the moment its lease is lost, and on a clean stop
// releases its shards so that another process takes them at once; a
// process that dies without stopping loses its shards when its leases
// expire.
//
// The shards live on the databases of Config.DSNs, placed by
// ledger.ShardMap (contiguous ranges, in the order given: every process
// must get the same list); each shard's lease is kept in its own database
// with this process's address, so that the routing client (ledger/grpc)
// finds the owner. With Config.Brokers it also relays its shards' outboxes
// to Kafka and applies the second legs of cross-shard sagas (as a member
// of a consumer group, through the routing client, so a leg lands wherever
// its shard is served). With Config.HTTPAddr it serves /metrics, /healthz
// and /readyz (internal/opshttp).
//
// Run is the whole role; Start and the Owner it returns let a process that
// composes several roles (the dev stack) reach the host and the stores:
//
//	o, err := owner.Start(ctx, owner.Config{DSNs: dsns, Host: ledger.HostConfig{Owner: "a", Shards: 64}})
//	...
//	seq, ok := o.Host().Sequencer(0)
//	...
//	err = o.Stop()
package owner
