package kafka

import "time"

// Timings are the consumer's clocks that tests shorten; zero = default.
type Timings struct {
	MaxWait, StallAfter, ReportAfter, WatchEvery time.Duration
}

// WithTimings returns cfg with the consumer's clocks set to t.
func WithTimings(cfg ConsumerConfig, t Timings) ConsumerConfig {
	cfg.timings = timings{maxWait: t.MaxWait, stallAfter: t.StallAfter, reportAfter: t.ReportAfter, watchEvery: t.WatchEvery,
		restartBackoff: 100 * time.Millisecond}
	return cfg
}
