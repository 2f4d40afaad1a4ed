package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/fundplatform/fund/internal/localpg"
)

// newDevCmd groups helpers for working on the platform locally.
func newDevCmd() *cobra.Command {
	dev := &cobra.Command{Use: "dev", Short: "Local development helpers"}
	var (
		dir  string
		port int
		db   string
		set  map[string]string
	)
	pg := &cobra.Command{
		Use:   "postgres",
		Short: "Run a private Postgres on loopback until interrupted, printing its DSN",
		Long: `Starts the same private Postgres that tests and benchmarks use (initdb in --dir or a
temporary directory, a free loopback port, as the postgres user when run as root),
creates --database, prints its DSN, and stops the server cleanly on Ctrl-C.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			srv, err := localpg.Start(ctx, localpg.Options{Dir: dir, Port: port, Settings: set})
			if err != nil {
				return err
			}
			defer func() {
				sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				_ = srv.Stop(sctx)
			}()
			dsn := srv.DSN(db)
			if db != "postgres" {
				if dsn, err = srv.CreateDatabase(ctx, db); err != nil && dir == "" {
					return err
				}
				dsn = srv.DSN(db)
			}
			fmt.Fprintln(cmd.OutOrStdout(), dsn)
			<-ctx.Done()
			return nil
		},
	}
	pg.Flags().StringVar(&dir, "dir", "", "data directory parent (kept); empty = a temporary one, removed on exit")
	pg.Flags().IntVar(&port, "port", 0, "port (0 = a free one)")
	pg.Flags().StringVar(&db, "database", "fund", "database to create")
	pg.Flags().StringToStringVar(&set, "pg-set", nil, "settings of the server, name=value (e.g. shared_preload_libraries=pg_stat_statements)")
	dev.AddCommand(pg)
	return dev
}
