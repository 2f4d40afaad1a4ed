// Package xshard moves money between accounts on different ledger shards as
// a saga, since no single transaction spans two shards.
//
// Leg 1, on the payer's shard: the payer is debited and the shard's
// in-transit account for the payee's shard is credited, in one commit that
// also puts the event in the outbox. The event reaches the payee's shard
// through Kafka; Handle (run by a consumer group) applies leg 2 there: the
// in-transit account for the payer's shard is debited and the payee
// credited. If the payee's shard refuses (closed or unknown account...),
// Handle applies a compensating entry on the payer's shard that returns the
// money. Every leg has an id derived from the original transfer id, so a
// redelivered event never applies twice. While a saga is in flight its money
// is visible in the in-transit accounts; once all are done, the in-transit
// balances of all shards net to zero (InTransitNet).
//
// A caller that records its own state with leg 1 (the accounts service
// keeps a transfer order PENDING until the saga ends) builds leg 1 with
// Leg1, sends it to the payer's shard itself, and asks Status later with
// the plain transfer.
//
// Transfer waits for the saga's end up to a bound and otherwise answers
// InFlight; Status later tells how it ended from what the shards committed
// (leg 2, the compensation, or leg 1 only), through clients that implement
// ledger.TransferLookup (the sequencer, the gRPC shard client):
//
//	o, err := router.Transfer(ctx, t, 2*time.Second)
//	if err == nil && o.State == xshard.InFlight {
//		o, err = router.Status(ctx, t) // again later, with the same transfer
//	}
package xshard
