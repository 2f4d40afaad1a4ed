package schema

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"

	accountspg "github.com/fundplatform/fund/accounts/postgres"
	"github.com/fundplatform/fund/internal/clock/pgclock"
	"github.com/fundplatform/fund/internal/pgmigrate"
	ledgerpg "github.com/fundplatform/fund/ledger/postgres"
	settlepg "github.com/fundplatform/fund/settlement/postgres"
	reconpg "github.com/fundplatform/fund/settlement/recon/postgres"
)

// Config for Migrate.
type Config struct {
	// DSNs are the platform's databases (the ledger's, in any order),
	// connecting as the owner role: the role that owns every table and
	// the partition function.
	DSNs []string
	// ServiceRole is the role the platform's processes connect as; it must
	// exist (the cluster's operator creates it, with its password). Empty
	// = no grants: the owner role serves too.
	ServiceRole string
	Logger      *slog.Logger // may be nil
}

// component is one set of tables with its migrations and the privileges
// the service role needs on them.
type component struct {
	name    string
	migrate func(context.Context, *pgxpool.Pool) error
	privs   func() []pgmigrate.Privilege
}

// components in the order their migrations must run: the accounts' refer
// to nothing, settlement's index the accounts' orders, reconciliation
// reads the journal. The test clock's table refers to nothing; it stays
// empty unless a rehearsal's processes run with --test-clock.
var components = []component{
	{"ledger", ledgerpg.Migrate, ledgerpg.ServicePrivileges},
	{"accounts", accountspg.Migrate, accountspg.ServicePrivileges},
	{"settlement", settlepg.Migrate, settlepg.ServicePrivileges},
	{"reconciliation", reconpg.Migrate, reconpg.ServicePrivileges},
	{"test clock", pgclock.Migrate, pgclock.ServicePrivileges},
}

// Migrate applies every component's migrations to each database and grants
// the service role its privileges there. Each migration is its own
// transaction and the grants of a database one more, so a failed step
// leaves each database at a consistent version; running Migrate again
// carries on from there.
func Migrate(ctx context.Context, cfg Config) error {
	if len(cfg.DSNs) == 0 {
		return errors.New("schema: no database given")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	for i, dsn := range cfg.DSNs {
		if err := migrateOne(ctx, dsn, cfg.ServiceRole); err != nil {
			return fmt.Errorf("database %d of %d: %w", i+1, len(cfg.DSNs), err)
		}
		logger.Info("schema: database migrated", "database", i+1, "of", len(cfg.DSNs), "service_role", cfg.ServiceRole)
	}
	return nil
}

func migrateOne(ctx context.Context, dsn, role string) error {
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return fmt.Errorf("parse dsn: %w", err)
	}
	pcfg.MaxConns = 4 // goose locks on one connection; the grants need one
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer pool.Close()
	var privs []pgmigrate.Privilege
	for _, c := range components {
		if err := c.migrate(ctx, pool); err != nil {
			return fmt.Errorf("%s migrations: %w", c.name, err)
		}
		privs = append(privs, c.privs()...)
	}
	if role == "" {
		return nil
	}
	if err := pgmigrate.Grant(ctx, pool, role, privs); err != nil {
		return fmt.Errorf("grants to %s: %w", role, err)
	}
	return nil
}
