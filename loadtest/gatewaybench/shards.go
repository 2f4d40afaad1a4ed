package gatewaybench

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// shardCountMax bounds a shard count of the comparison: every shard is a
// sequencer (and its pool connections) in this one process.
const shardCountMax = 256

// ParseShardCounts reads a list of shard counts such as "1,2,4,8": each
// one a whole number from 1 to 256, at least one; a count may repeat (to
// see the noise of a row).
func ParseShardCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > shardCountMax {
			return nil, fmt.Errorf("shard count %q: want a whole number from 1 to %d (list: 1,2,4,8)", f, shardCountMax)
		}
		out = append(out, n)
	}
	return out, nil
}

// Row is one shard count's figures: the closed loop's (what the stack
// sustains), and each as a ratio to the first row's, so that a row says
// at a glance whether an order costs more with more shards.
type Row struct {
	Shards    int     `json:"shards"`
	Databases int     `json:"databases"`
	OKPerSec  float64 `json:"ok_per_s"`
	P50Ms     float64 `json:"ok_p50_ms"`
	P99Ms     float64 `json:"ok_p99_ms"`
	Errors    int64   `json:"errors"`
	// CPU per request answered: this process (gateway, accounts, ledger
	// owner, load generator) and the private Postgres (0 with a DSN).
	GoCPUMicros float64 `json:"go_cpu_us_per_order"`
	PGCPUMicros float64 `json:"pg_cpu_us_per_order"`
	// Ratios to the first row (1 on the first; 0 where its figure is 0).
	OKPerSecRatio float64 `json:"ok_per_s_ratio"`
	GoCPURatio    float64 `json:"go_cpu_ratio"`
	PGCPURatio    float64 `json:"pg_cpu_ratio"`
	// Result is the whole run behind the row.
	Result Result `json:"result"`
}

// RunShards runs the bench once per shard count, one after the other,
// each on a fresh stack with cfg's other settings, and returns a row per
// count. The databases of a row are cfg.Databases, or its shard count if
// fewer (a database holds at least one shard). It stops at the first
// failed run.
func RunShards(ctx context.Context, cfg Config, counts []int) ([]Row, error) {
	if len(counts) == 0 {
		return nil, fmt.Errorf("no shard count given")
	}
	cfg.setDefaults()
	var rows []Row
	for _, n := range counts {
		c := cfg
		c.Shards, c.Databases = n, min(max(cfg.Databases, 1), n)
		fmt.Fprintf(cfg.Progress, "== %d shards on %d databases ==\n", c.Shards, c.Databases)
		res, err := Run(ctx, c)
		if err != nil {
			return rows, fmt.Errorf("%d shards on %d databases: %w", c.Shards, c.Databases, err)
		}
		rows = append(rows, rowOf(res))
	}
	for i := range rows {
		rows[i].OKPerSecRatio = ratio(rows[i].OKPerSec, rows[0].OKPerSec)
		rows[i].GoCPURatio = ratio(rows[i].GoCPUMicros, rows[0].GoCPUMicros)
		rows[i].PGCPURatio = ratio(rows[i].PGCPUMicros, rows[0].PGCPUMicros)
	}
	return rows, nil
}

// rowOf takes a run's closed-loop phase (always the first).
func rowOf(res Result) Row {
	r := Row{Shards: res.Shards, Databases: res.Databases, Result: res}
	if len(res.Phases) > 0 {
		p := res.Phases[0]
		r.OKPerSec, r.P50Ms, r.P99Ms, r.Errors = p.OKPerSec, p.P50Ms, p.P99Ms, p.Errors
		r.GoCPUMicros, r.PGCPUMicros = p.GoCPUMicros, p.PGCPUMicros
	}
	return r
}

func ratio(v, base float64) float64 {
	if base == 0 {
		return 0
	}
	return v / base
}
