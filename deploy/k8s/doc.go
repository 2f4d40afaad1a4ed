// Package k8s holds the Kubernetes manifests of the fund platform as a
// kustomize base (base/) with a dev and a prod overlay (overlays/), and the
// test that renders every overlay with kustomize's Go API (krusty) and
// checks what it renders: resource requests and limits on every container,
// probes where a container serves HTTP, a PodDisruptionBudget for every
// replicated workload, pinned images, no secret in plain configuration,
// the database roles (the migration Job alone reads the owner role's
// secrets; every service connects as the service role), the shard map (64
// shards on 4 database groups; the owners, settlement, reconciliation, the
// gateway and the migration get every group's database in shard-map
// order, the gateway's accounts path group 0's first),
// Kafka topics with replication 3 and min.insync.replicas 2, synchronous
// Postgres standbys in production. The same test checks the Prometheus rules
// and the Grafana dashboard in deploy/monitoring against the metric names
// the services export.
//
// The package has no code of its own: the manifests are the product, the
// test keeps them honest. Render an overlay with
//
//	go run sigs.k8s.io/kustomize/kustomize/v5@v5.8.0 build deploy/k8s/overlays/prod
//
// or any kustomize v5; run the checks with
//
//	go test ./deploy/k8s/
package k8s
