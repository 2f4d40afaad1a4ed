package kafkabroker

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Broker is an in-process Kafka-protocol broker (kfake) on loopback.
type Broker struct {
	c    *kfake.Cluster
	down atomic.Bool
}

var errOutage = errors.New("kafka: broker down (simulated outage)")

// Down makes the broker close every client connection on its next request
// until Up, keeping its data: an outage as clients see it, for tests.
func (b *Broker) Down() {
	if b.down.Swap(true) {
		return
	}
	b.c.Control(func(kmsg.Request) (kmsg.Response, error, bool) {
		if !b.down.Load() {
			b.c.DropControl()
			return nil, nil, false
		}
		b.c.KeepControl()
		return nil, errOutage, true
	})
}

// Hiccup leaves the next n (>= 1) fetch requests unanswered, as a broker
// that stalls for a moment would: each of those clients' reads times out,
// and it reconnects. The channel is closed once n were left unanswered.
// For tests of what clients log about a broker that is healthy but for a
// moment.
func (b *Broker) Hiccup(n int) <-chan struct{} {
	done := make(chan struct{})
	left := max(n, 1)
	// Control functions run one at a time on the cluster's loop: left
	// needs no lock.
	b.c.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		// KeepControl sticks to the function until DropControl.
		b.c.KeepControl()
		if left--; left == 0 {
			b.c.DropControl()
			close(done)
		}
		return nil, nil, true // handled, and no answer
	})
	return done
}

// Up ends an outage started by Down.
func (b *Broker) Up() { b.down.Store(false) }

// Start starts a one-node broker on 127.0.0.1:port (0 = any free
// port) with the given topics created, each with partitions partitions.
func Start(port, partitions int, topics ...string) (*Broker, error) {
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(int32(partitions), topics...)}
	if port != 0 {
		opts = append(opts, kfake.Ports(port))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start kafka broker: %w", err)
	}
	return &Broker{c: c}, nil
}

// Addrs returns the broker addresses.
func (b *Broker) Addrs() []string { return b.c.ListenAddrs() }

// Close stops the broker; its data is gone.
func (b *Broker) Close() { b.c.Close() }
