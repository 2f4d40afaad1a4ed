package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fundplatform/fund/internal/localpg"
	"github.com/fundplatform/fund/ledger"
	ledgergrpc "github.com/fundplatform/fund/ledger/grpc"
	"github.com/fundplatform/fund/ledger/postgres"
	"github.com/fundplatform/fund/ledger/xshard"
)

// newLedgerVerifyCmd is `fundctl ledger verify`: every shard on every
// database of the shard map, journal against balances and accounts against
// their shard on each, then the in-transit accounts of all shards netting
// to zero, then the fund's figures summed over shards.
func newLedgerVerifyCmd() *cobra.Command {
	var (
		dsns   []string
		shards int
	)
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Recompute every balance from the journal on every shard of every database, and net in-transit across shards",
		Long: `Recomputes every balance of every shard from its journal, each shard on the database
the shard map puts it on (give the same --dsn list, in the same order, as to fundd ledger),
reports each difference, checks that no shard's rows sit on another database, that every
account is stored under its own shard (ledger.ShardOf over --shards) and every entry names
accounts of its own shard, and sums the in-transit accounts of cross-shard sagas over all
databases: zero when no saga is in flight. Then prints the fund's figures: each of the fund's
system accounts (omnibus cash and shares, bank settlement, income distribution, rounding,
quota...) and each merchant's account summed over its sub-accounts, one per shard, checking
that each figure is made of exactly the sub-accounts placed on each shard.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			dbs, err := openLedgerDatabases(ctx, dsns, shards)
			if err != nil {
				return err
			}
			defer dbs.Close()
			out := cmd.OutOrStdout()
			bad := 0
			misplaced, err := dbs.CheckPlacement(ctx)
			if err != nil {
				return err
			}
			for _, p := range misplaced {
				fmt.Fprintln(out, p)
				bad++
			}
			for shard := 0; shard < shards; shard++ {
				rep, err := dbs.Verify(ctx, shard)
				if err != nil {
					return fmt.Errorf("shard %d: %w", shard, err)
				}
				fmt.Fprintf(out, "shard %d (database %d): %d accounts, %d entries, %d differences, %d problems (%.1fs)\n",
					shard, dbs.Map.DatabaseOf(shard)+1, rep.Accounts, rep.Transfers, len(rep.Differences), len(rep.Problems), rep.Took.Seconds())
				for _, d := range rep.Differences {
					fmt.Fprintf(out, "  account %d: stored dp=%d dP=%d cp=%d cP=%d journal dp=%d dP=%d cp=%d cP=%d\n",
						d.AccountID, d.Stored.DebitsPending, d.Stored.DebitsPosted, d.Stored.CreditsPending, d.Stored.CreditsPosted,
						d.Journal.DebitsPending, d.Journal.DebitsPosted, d.Journal.CreditsPending, d.Journal.CreditsPosted)
				}
				for _, p := range rep.Problems {
					fmt.Fprintln(out, "  "+p)
				}
				if !rep.OK() {
					bad++
				}
			}
			// Money in flight between shards sits in the in-transit
			// accounts, on both sides of each saga, possibly on different
			// databases; with no saga in flight they net to zero.
			net, err := dbs.NetByCode(ctx, xshard.KindOut)
			if err != nil {
				return err
			}
			for asset, v := range net {
				fmt.Fprintf(out, "in-transit %s: nets to %d across %d shards on %d databases\n", asset, v, shards, dbs.Len())
				if v != 0 {
					fmt.Fprintln(out, "  (not zero: a saga is in flight, or one was lost)")
					bad++
				}
			}
			// The fund's figures: each system and merchant account summed
			// over its sub-accounts, one on every shard.
			n, err := printFundFigures(ctx, out, dbs, shards)
			if err != nil {
				return err
			}
			if bad += n; bad > 0 {
				return fmt.Errorf("%d checks failed", bad)
			}
			return nil
		},
	}
	shardMapFlags(cmd, &dsns, &shards)
	return cmd
}

// newLedgerOwnersCmd is `fundctl ledger owners`: who serves each shard, and
// where, from the lease rows in each shard's own database.
func newLedgerOwnersCmd() *cobra.Command {
	var (
		dsns   []string
		shards int
	)
	cmd := &cobra.Command{
		Use:   "owners",
		Short: "List each shard's database, owner, advertised address and fencing epoch",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			dbs, err := openLedgerDatabases(ctx, dsns, shards)
			if err != nil {
				return err
			}
			defer dbs.Close()
			ls, err := dbs.Leases(ctx)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%-6s %-9s %-24s %-22s %-6s %s\n", "shard", "database", "owner", "address", "epoch", "lease")
			for _, l := range ls {
				owner, state := l.Owner, "live until "+l.ExpiresAt.Format(time.RFC3339)
				if !l.Live {
					owner, state = "-", "none"
				}
				fmt.Fprintf(out, "%-6d %-9d %-24s %-22s %-6d %s\n", l.Shard, dbs.Map.DatabaseOf(l.Shard)+1, owner, l.Addr, l.Epoch, state)
			}
			return nil
		},
	}
	shardMapFlags(cmd, &dsns, &shards)
	return cmd
}

// newLedgerTransferCmd is `fundctl ledger transfer`: where a transfer sent
// through the router stands, asked of the shards' owners over gRPC; what a
// caller told "in flight" runs to learn how its saga ended.
func newLedgerTransferCmd() *cobra.Command {
	var (
		dsns     []string
		shards   int
		from, to int64
	)
	cmd := &cobra.Command{
		Use:   "transfer ID --from ACCOUNT --to ACCOUNT",
		Short: "Tell whether a transfer (or cross-shard saga) is completed, in flight, refunded, or not committed",
		Long: `Asks the owners of the payer's and payee's shards (found in the lease tables, reached over
gRPC, as fundd gateway does) which of the transfer's legs they committed: completed (leg 2 on
the payee's shard, or a same-shard transfer), refunded (the compensation on the payer's shard),
in flight (leg 1 only), or not committed at all (exit status 1; sending it again is safe).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			id, err := ledger.ParseTransferID(args[0])
			if err != nil {
				return err
			}
			if from <= 0 || to <= 0 || from == to {
				return fmt.Errorf("--from and --to must be two different account ids")
			}
			dbs, err := openLedgerDatabases(ctx, dsns, shards)
			if err != nil {
				return err
			}
			defer dbs.Close()
			client := ledgergrpc.NewClient(ledgergrpc.ClientConfig{Shards: shards}, dbs)
			defer client.Close()
			router := xshard.NewRouter(shards, client.ForShard)
			o, err := router.Status(ctx, ledger.Transfer{ID: id, DebitAccountID: ledger.AccountID(from), CreditAccountID: ledger.AccountID(to)})
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), o.State)
			return nil
		},
	}
	shardMapFlags(cmd, &dsns, &shards)
	cmd.Flags().Int64Var(&from, "from", 0, "the debit (payer's) account id")
	cmd.Flags().Int64Var(&to, "to", 0, "the credit (payee's) account id")
	return cmd
}

// shardMapFlags adds the flags naming the shard map: the ledger databases
// (default: the comma list in FUND_PG_DSN) and the number of shards.
func shardMapFlags(cmd *cobra.Command, dsns *[]string, shards *int) {
	var env []string
	if v := os.Getenv(localpg.EnvDSN); v != "" {
		env = strings.Split(v, ",")
	}
	cmd.Flags().StringSliceVar(dsns, "dsn", env, "Postgres DSN of a ledger database; repeat (or a comma list) for several, in shard-map order")
	cmd.Flags().IntVar(shards, "shards", 1, "number of logical shards")
}

// openLedgerDatabases opens the ledger databases of the shard map, as
// fundd ledger is given them (same list, same order).
func openLedgerDatabases(ctx context.Context, dsns []string, shards int) (*postgres.Databases, error) {
	if len(dsns) == 0 {
		return nil, fmt.Errorf("--dsn (or %s) is required", localpg.EnvDSN)
	}
	return postgres.OpenDatabases(ctx, postgres.DatabasesConfig{DSNs: dsns, Shards: shards, ConnsMax: 2})
}
