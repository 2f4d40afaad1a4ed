// Command fundd is the fund platform's server; each role is a subcommand.
// `fundd ledger` owns ledger shards through leases: it takes free shards,
// serves them with one single-writer sequencer each, renews its leases,
// stops a shard the moment its lease is lost, and on a clean stop releases
// its shards so another process takes them at once. A process that dies
// without stopping loses its shards when its leases expire.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signalContext()
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fundd:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	root := &cobra.Command{Use: "fundd", Short: "The fund platform's server roles", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(newLedgerCmd())
	root.AddCommand(newGatewayCmd(), newDevCmd())
	root.AddCommand(newReconCmd())
	root.AddCommand(newSettleCmd())
	root.AddCommand(newMigrateCmd())
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}
