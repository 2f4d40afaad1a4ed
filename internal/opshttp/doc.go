// Package opshttp is the operations endpoint every server role serves
// beside its real work: /metrics (Prometheus), /healthz (the process runs)
// and /readyz (every part started, until the process stops). Kubernetes
// probes and Prometheus scrape the same three paths on every role.
//
//	ops, err := opshttp.Listen(cfg.HTTPAddr, registry) // binds now: a taken port fails at start
//	group.Run("http", ops.Run)                           // serves until ctx ends, then shuts down gracefully
//	ops.SetReady(true)
package opshttp
