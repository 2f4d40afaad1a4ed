package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/internal/localpg"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/settlement/recon"
	reconpg "github.com/fundplatform/fund/settlement/recon/postgres"
)

// Bounds of the recon commands.
const (
	reconOpenTimeout = time.Minute
	statementMaxSize = 512 << 20 // bytes read from a statement file
)

// reconOpts are the flags every recon subcommand shares.
type reconOpts struct {
	dsns   []string
	shards int
	asJSON bool
}

// newReconCmd is `fundctl recon`: reconciliation's breaks and statement
// matching, against the ledger databases (reconciliation's tables live in
// them).
func newReconCmd() *cobra.Command {
	o := &reconOpts{}
	cmd := &cobra.Command{Use: "recon", Short: "Reconciliation: list breaks, compare with the journal, match bank statements"}
	pf := cmd.PersistentFlags()
	env := os.Getenv(localpg.EnvDSN)
	var def []string
	if env != "" {
		def = strings.Split(env, ",")
	}
	pf.StringSliceVar(&o.dsns, "dsn", def, "Postgres DSN of a ledger database; repeat (or a comma list) for several, in the ledger's order")
	pf.IntVar(&o.shards, "shards", 64, "logical shards in the system (places shards on the databases)")
	pf.BoolVar(&o.asJSON, "json", false, "print JSON instead of a table")
	cmd.AddCommand(o.reportCmd(), o.statementCmd())
	return cmd
}

func (o *reconOpts) withSet(ctx context.Context, fn func(*recon.Set) error) error {
	if len(o.dsns) == 0 {
		return fmt.Errorf("--dsn (or %s) is required", localpg.EnvDSN)
	}
	smap, err := ledger.NewShardMap(o.shards, len(o.dsns))
	if err != nil {
		return err
	}
	octx, cancel := context.WithTimeout(ctx, reconOpenTimeout)
	defer cancel()
	var stores []recon.Store
	for i, dsn := range o.dsns {
		s, err := reconpg.Open(octx, reconpg.Config{DSN: dsn})
		if err != nil {
			return fmt.Errorf("database %d: %w", i, err)
		}
		defer s.Close()
		stores = append(stores, s)
	}
	set, err := recon.NewSet(smap, stores...)
	if err != nil {
		return err
	}
	return fn(set)
}

func (o *reconOpts) reportCmd() *cobra.Command {
	var (
		all     bool
		kind    string
		date    string
		limit   int
		compare bool
		deep    bool
		grace   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "report",
		Short: "List reconciliation breaks (open ones unless --all); --compare first compares a day with the journal",
		Long: `Lists the breaks the reconciliation workers, comparisons and statement imports stored: what is
wrong (kind), where (shard, business date), about what (transfer, account or reference), the journal's
figure and the other side's (event stream or statement), and since when. Kinds: missing_event,
unexpected_event, duplicate, amount_mismatch, content_mismatch, account_mismatch, shard_day_mismatch,
in_transit_not_zero, unmatched_statement_line, unmatched_ledger_movement.

With --compare --date D it first compares business day D with the journal (up to --grace ago when D
is today) and prints the per-shard totals.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := recon.BreakFilter{IncludeResolved: all, Kind: recon.BreakKind(kind), Limit: limit}
			var day time.Time
			if date != "" {
				d, err := recon.ParseDay(date)
				if err != nil {
					return err
				}
				day, f.BusinessDate = d, &d
			}
			if compare && date == "" {
				return errors.New("--compare needs --date")
			}
			return o.withSet(cmd.Context(), func(set *recon.Set) error {
				var rep *recon.Report
				if compare {
					cutoff := time.Now().Add(-grace)
					var err error
					if rep, err = set.Compare(cmd.Context(), day, recon.CompareOptions{Cutoff: cutoff, Deep: deep}); err != nil {
						return err
					}
				}
				bs, err := set.Breaks(cmd.Context(), f)
				if err != nil {
					return err
				}
				return o.printReport(cmd.OutOrStdout(), rep, bs)
			})
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&all, "all", false, "include resolved breaks")
	fl.StringVar(&kind, "kind", "", "only breaks of this kind")
	fl.StringVar(&date, "date", "", "only breaks of this business date (YYYY-MM-DD)")
	fl.IntVar(&limit, "limit", 1000, "most breaks listed (at most 10000)")
	fl.BoolVar(&compare, "compare", false, "compare --date with the journal first")
	fl.BoolVar(&deep, "deep", false, "with --compare: entry by entry on every shard, not only where totals differ")
	fl.DurationVar(&grace, "grace", 2*time.Minute, "with --compare: leave out entries newer than this (still on their way)")
	return cmd
}

func (o *reconOpts) printReport(w io.Writer, rep *recon.Report, bs []recon.Break) error {
	if bs == nil {
		bs = []recon.Break{}
	}
	if o.asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if rep != nil {
			return enc.Encode(struct {
				Comparison *recon.Report `json:"comparison"`
				Breaks     []recon.Break `json:"breaks"`
			}{rep, bs})
		}
		return enc.Encode(struct {
			Breaks []recon.Break `json:"breaks"`
		}{bs})
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if rep != nil {
		fmt.Fprintf(tw, "comparison of %s up to %s (%.1fs): %d breaks, %d resolved, %d sagas open\n",
			rep.BusinessDate, rep.Cutoff.UTC().Format(time.RFC3339), rep.Took.Seconds(), len(rep.Breaks), rep.Resolved, rep.OpenSagas)
		fmt.Fprintln(tw, "SHARD\tASSET\tJOURNAL ENTRIES\tSTREAM ENTRIES\tJOURNAL AMOUNT\tSTREAM AMOUNT\tEQUAL")
		for _, sd := range rep.Shards {
			fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%s\t%s\t%v\n", sd.Shard, sd.Asset, sd.JournalEntries, sd.StreamEntries,
				sd.JournalAmount, sd.StreamAmount, sd.Equal)
		}
		for asset, v := range rep.InTransit {
			fmt.Fprintf(tw, "in transit %s: %s\n", asset, accounts.FormatAmount(int64(v)))
		}
		fmt.Fprintln(tw)
	}
	if len(bs) == 0 {
		fmt.Fprintln(tw, "no breaks")
		return tw.Flush()
	}
	fmt.Fprintln(tw, "KIND\tSTATUS\tDATE\tSHARD\tSUBJECT\tJOURNAL\tOTHER\tLAST SEEN\tDETAIL")
	for _, b := range bs {
		status := "open"
		if b.ResolvedAt != nil {
			status = "resolved"
		}
		shard := "-"
		if b.Shard != nil {
			shard = strconv.Itoa(*b.Shard)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", b.Kind, status, orDash(b.BusinessDate), shard, subject(&b),
			optAmount(b.Journal), optAmount(b.Other), b.LastSeen.UTC().Format(time.RFC3339), b.Detail)
	}
	return tw.Flush()
}

func subject(b *recon.Break) string {
	switch {
	case b.TransferID != nil:
		return "transfer " + b.TransferID.String()
	case b.Reference != "":
		return "ref " + b.Reference
	case b.AccountID != nil:
		return fmt.Sprintf("account %d", *b.AccountID)
	}
	return "-"
}

// optAmount prints a break's figure.
func optAmount(v *recon.Amount) string {
	if v == nil {
		return "-"
	}
	return accounts.FormatAmount(int64(*v))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// statementOutput is what `recon statement --json` prints.
type statementOutput struct {
	Date               string                    `json:"date"`
	Account            string                    `json:"account"`
	File               string                    `json:"file"`
	SHA256             string                    `json:"sha256"`
	Lines              int                       `json:"lines"`
	Movements          int                       `json:"movements"`
	Matched            int                       `json:"matched"`
	UnmatchedStatement []recon.UnmatchedLine     `json:"unmatched_statement"`
	UnmatchedLedger    []recon.UnmatchedMovement `json:"unmatched_ledger"`
	LineErrors         []recon.LineError         `json:"line_errors,omitempty"`
}

func (o *reconOpts) statementCmd() *cobra.Command {
	var (
		date    string
		account int64
	)
	cmd := &cobra.Command{
		Use:   "statement FILE",
		Short: "Import a bank or custodian statement (CSV) and match it with the bank settlement account's movements of --date",
		Long: `Reads a statement CSV and matches it one to one, by reference, direction and amount, with the
posted movements of the bank settlement account (money from and to bank cards) on business date
--date in the journal; lists what is unmatched on either side and stores it as breaks of that date
(a later import for the same date resolves the ones it matches).

The file: UTF-8 CSV (RFC 4180 quoting, optional byte-order mark); lines starting with # are comments,
blank lines are skipped; the first other line is the header naming the columns in any order:
  reference    the order's request id (the Idempotency-Key the top-up or withdrawal was placed with)
  amount       CNY, positive, at most two decimals: 1234.50
  direction    IN (received from a card: a top-up) or OUT (paid to a card: a withdrawal)
  value_date   YYYY-MM-DD, must be --date
  description  optional; other columns are ignored
A statement with bad lines is refused as a whole; every bad line is listed with its number.
Exits with status 1 when anything is unmatched or the file is refused.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if date == "" {
				return errors.New("--date is required")
			}
			day, err := recon.ParseDay(date)
			if err != nil {
				return err
			}
			acct := ledger.AccountID(account)
			data, err := readStatement(args[0])
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			out := statementOutput{Date: date, Account: strconv.FormatInt(account, 10), File: args[0],
				SHA256: hex.EncodeToString(sum[:])}
			lines, err := recon.ParseStatement(strings.NewReader(string(data)), day)
			var se *recon.StatementError
			if errors.As(err, &se) {
				if o.asJSON {
					out.LineErrors = se.Errors
					_ = o.printStatement(cmd.OutOrStdout(), &out)
				}
				return err
			}
			if err != nil {
				return err
			}
			return o.withSet(cmd.Context(), func(set *recon.Set) error {
				moves, err := set.BankMovements(cmd.Context(), acct, day)
				if err != nil {
					return err
				}
				res := recon.Match(lines, moves)
				if err := set.SaveStatement(cmd.Context(), recon.StatementImport{Day: day, Account: acct,
					FileName: filepath.Base(args[0]), FileSHA256: out.SHA256, Lines: len(lines), Result: res}); err != nil {
					return err
				}
				out.Lines, out.Movements, out.Matched = len(lines), len(moves), len(res.Matched)
				out.UnmatchedStatement, out.UnmatchedLedger = res.UnmatchedStatement, res.UnmatchedLedger
				if err := o.printStatement(cmd.OutOrStdout(), &out); err != nil {
					return err
				}
				if !res.Clean() {
					return fmt.Errorf("%d statement lines and %d ledger movements unmatched", len(res.UnmatchedStatement), len(res.UnmatchedLedger))
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&date, "date", "", "business date of the statement (YYYY-MM-DD)")
	cmd.Flags().Int64Var(&account, "account", int64(accounts.BankSettlement), "ledger account the statement is of (default: the bank settlement account)")
	return cmd
}

func readStatement(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, statementMaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > statementMaxSize {
		return nil, fmt.Errorf("%s: larger than %d MiB", path, statementMaxSize>>20)
	}
	return data, nil
}

func (o *reconOpts) printStatement(w io.Writer, out *statementOutput) error {
	if out.UnmatchedStatement == nil {
		out.UnmatchedStatement = []recon.UnmatchedLine{}
	}
	if out.UnmatchedLedger == nil {
		out.UnmatchedLedger = []recon.UnmatchedMovement{}
	}
	if o.asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "statement %s for %s, account %s: %d lines, %d movements in the journal, %d matched\n",
		out.File, out.Date, out.Account, out.Lines, out.Movements, out.Matched)
	if len(out.UnmatchedStatement) > 0 {
		fmt.Fprintln(tw, "\non the statement, not in the journal:")
		fmt.Fprintln(tw, "LINE\tREFERENCE\tDIRECTION\tAMOUNT\tHINT")
		for _, u := range out.UnmatchedStatement {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", u.Line, u.Reference, u.Direction, u.AmountText, u.Hint)
		}
	}
	if len(out.UnmatchedLedger) > 0 {
		fmt.Fprintln(tw, "\nin the journal, not on the statement:")
		fmt.Fprintln(tw, "TRANSFER\tREFERENCE\tDIRECTION\tAMOUNT\tAT\tHINT")
		for _, u := range out.UnmatchedLedger {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", u.TransferID, u.Reference, u.Direction, u.AmountText,
				u.Timestamp.Format(time.RFC3339), u.Hint)
		}
	}
	return tw.Flush()
}
