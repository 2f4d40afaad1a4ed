// Package supervise runs the parts of a server process (a gRPC server, an
// HTTP endpoint, a relay, a consumer) as one: the first part to fail, or
// the parent context ending, stops all of them, and Wait returns the first
// failure. Every role (the ledger owner, the settle scheduler, the
// reconciliation worker) is put together with it, so they start and stop
// the same way.
//
//	var g supervise.Group
//	ctx := g.Start(parent)
//	g.Run("grpc", func(ctx context.Context) error {
//		return supervise.ServeUntil(ctx, func() error { return srv.Serve(lis) }, srv.Stop)
//	})
//	g.Run("relay", supervise.KeepRunning(logger, "relay", relay.Run))
//	<-ctx.Done()
//	err := g.Wait()
//
// KeepRunning starts a part that gave up (Kafka away for longer than the
// relay's own retries) again after a pause, a bounded number of times in a
// row, so that a dependency's outage does not stop the process while it
// can wait it out.
package supervise
