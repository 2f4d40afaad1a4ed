package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// requestTimeout bounds each request to the brokers.
const requestTimeout = 5 * time.Second

// LagProbe asks the brokers for a group's lag on a topic.
type LagProbe struct {
	c            *kafkago.Client
	topic, group string
}

// NewLagProbe returns a probe for group on topic.
func NewLagProbe(brokers []string, topic, group string) *LagProbe {
	return &LagProbe{c: &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: requestTimeout}, topic: topic, group: group}
}

// Lag returns, summed over the topic's partitions, the messages after the
// group's committed offset (from the start of the partition when the group
// has committed nothing there yet).
func (p *LagProbe) Lag(ctx context.Context) (int64, error) {
	md, err := p.c.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{p.topic}})
	if err != nil {
		return 0, fmt.Errorf("topic metadata: %w", err)
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil {
		if len(md.Topics) == 1 {
			return 0, fmt.Errorf("topic %s: %w", p.topic, md.Topics[0].Error)
		}
		return 0, fmt.Errorf("topic %s not found", p.topic)
	}
	var parts []int
	var reqs []kafkago.OffsetRequest
	for _, pt := range md.Topics[0].Partitions {
		parts = append(parts, pt.ID)
		reqs = append(reqs, kafkago.FirstOffsetOf(pt.ID), kafkago.LastOffsetOf(pt.ID))
	}
	lo, err := p.c.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{p.topic: reqs}})
	if err != nil {
		return 0, fmt.Errorf("list offsets: %w", err)
	}
	of, err := p.c.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: p.group, Topics: map[string][]int{p.topic: parts}})
	if err != nil {
		return 0, fmt.Errorf("group offsets: %w", err)
	}
	// A group that never committed is unknown to some brokers: everything
	// is lag then.
	if of.Error != nil && !errors.Is(of.Error, kafkago.GroupIdNotFound) {
		return 0, fmt.Errorf("group offsets: %w", of.Error)
	}
	committed := map[int]int64{}
	for _, o := range of.Topics[p.topic] {
		if o.Error != nil {
			return 0, fmt.Errorf("group offset of partition %d: %w", o.Partition, o.Error)
		}
		committed[o.Partition] = o.CommittedOffset
	}
	var lag int64
	for _, po := range lo.Topics[p.topic] {
		if po.Error != nil {
			return 0, fmt.Errorf("offsets of partition %d: %w", po.Partition, po.Error)
		}
		from, ok := committed[po.Partition]
		if !ok || from < po.FirstOffset {
			from = po.FirstOffset // nothing committed yet (-1), or the log was truncated past it
		}
		lag += max(po.LastOffset-from, 0)
	}
	return lag, nil
}
