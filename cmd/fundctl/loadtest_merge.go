package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/fundplatform/fund/gateway/auth"
	"github.com/fundplatform/fund/internal/localpg"
	"github.com/fundplatform/fund/loadtest"
)

// mergePartsMax bounds how many part files one merge reads.
const mergePartsMax = loadtest.PartsMax

func newLoadtestMergeCmd() *cobra.Command {
	var o loadtestOpts
	cmd := &cobra.Command{
		Use:   "merge PART.json...",
		Short: "Merge the part files of a run split over processes (--part i/n) into one report, audited once",
		Long: `Reads the part-i-of-n.json files that the parts of one run wrote (every part 1..n once),
adds up their counts, merges their HDR latency histograms (the percentiles are those of one
histogram fed every answer), lines their timelines up by second, and writes one report.json,
report.html and charts into --out. With --audit it checks the orders of all parts against the
books once (--dsn), and asks --target for reconciliation's view when given.`,
		Args: cobra.RangeArgs(1, mergePartsMax),
		RunE: func(cmd *cobra.Command, files []string) error {
			return runMerge(cmd.Context(), o, files, cmd.ErrOrStderr(), cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.out, "out", "", "report directory (default loadtest-<run id>)")
	f.BoolVar(&o.doAudit, "audit", false, "check every order of every part against the books (needs --dsn)")
	f.StringVar(&o.dsn, "dsn", os.Getenv(localpg.EnvDSN), auditDSNUsage)
	f.StringVar(&o.accountsDSN, "accounts-dsn", "", "accounts database for --audit when apart from the ledger's (default: the --dsn databases, each holding its own shards' customers)")
	f.IntVar(&o.auditShards, "shards", 0, auditShardsUsage)
	f.StringVar(&o.target, "target", "", "--audit: gateway to ask for reconciliation's report (needs --jwt-key-file); none = not checked")
	f.StringVar(&o.jwtKeyFile, "jwt-key-file", "", "token signing key file (default: $"+auth.EnvKey+")")
	f.DurationVar(&o.reconWait, "recon-wait", time.Minute, "--audit: how long to wait for reconciliation to catch up")
	return cmd
}

func runMerge(ctx context.Context, o loadtestOpts, files []string, progress, out io.Writer) error {
	if o.doAudit && o.dsn == "" {
		return fmt.Errorf("--audit needs --dsn (or %s)", localpg.EnvDSN)
	}
	var parts []*loadtest.Result
	for _, f := range files {
		p, err := loadtest.ReadPart(f)
		if err != nil {
			return err
		}
		parts = append(parts, p)
	}
	res, err := loadtest.Merge(parts)
	if err != nil {
		return err
	}
	fmt.Fprintf(progress, "merged %d parts of run %s: %d orders sent, %d records\n", res.Parts, res.RunID, res.Orders.Sent, len(res.Records))
	o.runID = res.RunID
	var recon func(context.Context) (string, int64, error)
	if o.doAudit && o.target != "" {
		if _, err := loadtest.CheckTarget(o.target, true); err != nil {
			return err
		}
		key, err := auth.LoadKey(o.jwtKeyFile)
		if err != nil {
			return err
		}
		tokens, err := loadtest.NewTokens(key, tokenTTL)
		if err != nil {
			return err
		}
		recon = func(ctx context.Context) (string, int64, error) {
			return reconFromAPI(ctx, o.target, tokens.Admin(), o.reconWait)
		}
	}
	return auditAndReport(ctx, o, res, progress, out, recon)
}

// writePart writes a part's result for `fundctl loadtest merge` and prints
// its counts; the report and the audit come with the merge.
func writePart(o loadtestOpts, res *loadtest.Result, out io.Writer) error {
	dir := o.out
	if dir == "" {
		dir = "loadtest-" + o.runID
	}
	path := filepath.Join(dir, fmt.Sprintf("part-%d-of-%d.json", res.Part.Index, res.Part.Count))
	if err := loadtest.WritePart(path, res); err != nil {
		return err
	}
	printCounts(out, res)
	fmt.Fprintf(out, "part file          %s (merge the parts with: fundctl loadtest merge %s --out DIR)\n",
		path, filepath.Join(dir, fmt.Sprintf("part-*-of-%d.json", res.Part.Count)))
	return nil
}
