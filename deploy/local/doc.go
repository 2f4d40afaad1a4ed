// Package local runs the platform as a real multi-process cluster on one
// machine: a private Postgres with several databases (the accounts
// database and the ledger databases of the shard map), a Kafka-protocol
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
// The first ledger database also holds the accounts, because fundd settle
// reads the ledger and the accounts tables from one database; and there is
// one shard by default, because the accounts service keeps a customer's
// and the fund's accounts on one shard today. The three owners share it
// through the lease: one serves, two stand by and take over.
//
// It is what reliability tests start when one process is not enough (kill
// an owner, kill a gateway, and check that nothing acknowledged was lost),
// and what `go run ./deploy/local/cmd/fundcluster` runs by hand:
//
//	go run ./deploy/local/cmd/fundcluster          # prints the front URL, DSNs and a load-test command
//
// In a test:
//
//	c, err := local.Start(ctx, local.Config{})     // 3 owners, 2 gateways
//	defer c.Stop(context.Background())
//	owner, _ := c.OwnerOf(ctx, 0)
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
// its own shards back at once; Stop (the cluster's, or a test's
// Process.Stop) ends a process for good.
//
//	c.Settle.Kill()                                // back within a second
//	c.Restarts()                                   // map[settle:1]
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
