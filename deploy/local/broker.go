package local

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ErrNoBroker: the cluster runs against an external Kafka (Config.Brokers),
// so it has no broker process to fail.
var ErrNoBroker = errors.New("local: the cluster has no broker process (external Kafka)")

// brokerControlTimeout bounds one call to the broker's control endpoint.
const brokerControlTimeout = 5 * time.Second

// startBroker starts deploy/local/cmd/fundbroker with both topics on a
// fixed port: a restarted broker comes back at the address every client
// was given.
func (c *Cluster) startBroker(bin string) (*Process, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	p := &Process{Name: "broker", HTTPAddr: httpAddr, LogPath: filepath.Join(c.Dir, "broker.log"), Args: []string{
		"--addr=" + addr,
		"--http-addr=" + httpAddr,
		"--partitions=" + strconv.Itoa(partitionsDefault),
		"--topics=" + strings.Join([]string{c.Topic, c.SettlementTopic}, ","),
	}}
	c.Brokers = []string{addr}
	return p, p.start(bin, nil)
}

// SetBrokerDown starts (true) or ends (false) a broker outage that keeps
// the broker's data: while it lasts the broker closes every client's
// connection on its next request, as an unreachable Kafka looks to its
// clients (the owners' relays, the recon worker, fundd settle). Prefer it
// to killing the broker process, which loses every topic's data and every
// consumer group's offsets (docs/operations.md, 6.2).
func (c *Cluster) SetBrokerDown(ctx context.Context, down bool) error {
	if c.Broker == nil {
		return ErrNoBroker
	}
	path := "/up"
	if down {
		path = "/down"
	}
	ctx, cancel := context.WithTimeout(ctx, brokerControlTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+c.Broker.HTTPAddr+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("broker %s: %w", path, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("broker %s: %s", path, resp.Status)
	}
	c.log.Info("cluster: broker outage", "down", down)
	return nil
}

// BrokerDown makes the broker unreachable for d (SetBrokerDown) and brings
// it back, also when ctx ends first.
func (c *Cluster) BrokerDown(ctx context.Context, d time.Duration) error {
	if err := c.SetBrokerDown(ctx, true); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
	return c.SetBrokerDown(context.WithoutCancel(ctx), false)
}
