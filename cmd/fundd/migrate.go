package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/fundplatform/fund/internal/localpg"
	"github.com/fundplatform/fund/settlement/schema"
)

// envMigrateDSN names the owner role's DSNs (a comma list) for `fundd
// migrate`, kept apart from FUND_PG_DSN, which is the services'.
const envMigrateDSN = "FUND_MIGRATE_DSN"

// newMigrateCmd is `fundd migrate`: the migration step, run as the owner
// role before the services start (settlement/schema).
func newMigrateCmd() *cobra.Command {
	var (
		cfg     schema.Config
		timeout time.Duration
	)
	defaultDSNs := dsnList(os.Getenv(envMigrateDSN))
	if len(defaultDSNs) == 0 {
		defaultDSNs = dsnList(os.Getenv(localpg.EnvDSN))
	}
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply the schema's migrations as the owner role and grant the service role its privileges",
		Long: `Applies every component's migrations (ledger, accounts, settlement, reconciliation) to each
database, connected as the owner role, which then owns every table and the journal's partition
function; then grants --service-role exactly what the services need (the journal: SELECT and
INSERT only). Run it before the services start, and again before a new release's services: it
is idempotent. The services connect as the service role and can neither change the schema nor
rewrite history. Without --service-role nothing is granted: the role that migrates serves too.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(cfg.DSNs) == 0 {
				return fmt.Errorf("--dsn (or %s) is required", envMigrateDSN)
			}
			cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return schema.Migrate(ctx, cfg)
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&cfg.DSNs, "dsn", defaultDSNs,
		"Postgres DSN of each database as the owner role; repeat or give a comma list (default $"+envMigrateDSN+", else $"+localpg.EnvDSN+")")
	fl.StringVar(&cfg.ServiceRole, "service-role", "", "role the services connect as, granted their privileges (it must exist); empty = none")
	fl.DurationVar(&timeout, "timeout", 10*time.Minute, "give up after this long (a migration waits for the tables' locks)")
	return cmd
}
