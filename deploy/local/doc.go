// Package local runs the platform as a real multi-process cluster on one
// machine: a private Postgres with several databases (the shard map's,
// each with its shards' ledger and accounts tables), a Kafka-protocol
// broker as a process of its own (cmd/fundbroker: internal/kafkabroker,
// data in memory; or an external Kafka), several `fundd ledger`
// owners sharing the shards through their leases, several `fundd gateway`
// processes, a `fundd recon` reconciliation worker, a `fundd settle`
// settlement scheduler, and a round-robin HTTP front in this process that
// spreads requests over the gateways that answer /readyz.
//
// Each database is owned by the owner role, which runs `fundd migrate`
// before anything else starts (as the migration Job does in deploy/k8s);
// every service connects as the service role (localpg's fund_service),
// which may insert into the journal but not update, delete, truncate, drop
// or detach it.
//
// By default 8 shards are spread over 2 databases (ledger.ShardMap), and
// the customers over the shards (accounts.ShardOf): each database holds
// its shards' ledger tables and their customers' rows and orders, the
// first also the fund-wide rows. Every role gets every database in
// shard-map order (fundd gateway's --dsn is the first of them, as it
// requires). The three owners share the shards through their leases, at
// most 4 each, so that two survivors can hold all 8 while one is down.
//
// It is what reliability tests start when one process is not enough (kill
// an owner, kill a gateway, and check that nothing acknowledged was lost),
// and what `go run ./deploy/local/cmd/fundcluster` runs by hand:
//
//	go run ./deploy/local/cmd/fundcluster          # prints the front URL, DSNs and a load-test command
//
// In a test:
//
//	c, err := local.Start(ctx, local.Config{})     // 3 owners, 2 gateways, 8 shards on 2 databases
//	defer c.Stop(context.Background())
//	owner, _ := c.OwnerOf(ctx, 0)
//	held, _ := c.ShardsOf(ctx, owner)              // the shards its leases hold
//	owner.Kill()                                   // SIGKILL: its shards move within the lease TTL
//
// With Config.TestClock every process runs on one shared test clock
// (fundd --test-clock, internal/clock/pgclock) that a gateway's admin API
// moves forward, so that a rehearsal settles its setup day at once; never
// in production (docs/operations.md, 6.1):
//
//	c, err := local.Start(ctx, local.Config{TestClock: true, TestClockStart: monday10am})
//	// POST /v1/admin/clock:advance {"by":"24h"} on any gateway; fundd settle settles Monday
//
// A supervisor restarts any of these processes that ends without Stop (a
// crash, or Kill: SIGKILL is a fault), as Kubernetes restarts a container:
// same arguments and addresses, after a backoff from 200 ms doubling to
// 5 s, at most 10 restarts in 2 minutes, each logged and counted
// (Cluster.Restarts). A restarted owner runs under its name, so it takes
// its own shards back at once; Process.KillFor keeps a killed process down
// for a while (a lost machine), so that the other owners take its shards
// once its leases expire. Stop (the cluster's, or a test's Process.Stop)
// ends a process for good.
//
//	c.Settle.Kill()                                // back within a second
//	c.Restarts()                                   // map[settle:1]
//
// The cluster scales out and back while it serves, as a HorizontalPodAutoscaler
// would: AddOwner starts one more owner and the owners hand it shards
// (graceful hand-offs, no lease left to expire) until they are spread
// evenly (WaitBalanced: at most one shard apart); RemoveOwner stops the
// newest cleanly (SIGTERM: it releases its leases, the others take them at
// once). AddGateway starts one more gateway and puts it into the front's
// rotation once ready; RemoveGateway takes the newest out of the rotation,
// waits for its requests in flight (Front.Remove), and only then stops it.
// A process removed so stays down; the supervisor still restarts the
// others when they crash.
//
//	c.AddOwner(ctx); c.WaitBalanced(ctx)           // 3 -> 4 owners, 2 shards each
//	c.RemoveGateway(ctx)                           // drained, then SIGTERM
//
// A Kafka outage is rehearsed on the broker process without losing its
// data: BrokerDown closes every client's connection until it ends (the
// relays keep events in the outboxes, the consumers wait), SetBrokerDown
// starts or ends one. Killing the broker process is a lost Kafka cluster:
// the restarted broker has empty topics and no consumer offsets.
//
//	err := c.BrokerDown(ctx, 10*time.Second)       // Kafka unreachable for 10 s
//
// Every role process is this module's fundd and the broker its fundbroker
// (built once with one `go build` unless Config.Fundd and
// Config.FundBroker name binaries), started with the same flags the
// Kubernetes manifests in deploy/k8s give it; each one's output goes to a
// log file in the cluster's directory. Stop ends the supervisor, then them
// all (SIGTERM, then SIGKILL after a bound), the broker last, and waits for
// each.
package local
