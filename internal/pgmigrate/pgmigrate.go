// Package pgmigrate applies a component's embedded SQL migrations to its
// Postgres database with goose: each migration in its own transaction, under
// an advisory lock so that processes starting together do not race. Each
// component keeps its versions in its own table, so several can share one
// database.
//
// Two roles: the owner role runs Up and owns what the migrations create,
// then Grant gives the service role (what the platform's processes connect
// as) the privileges each component lists. A service that runs Up itself
// when nothing is pending only reads the version table (goose checks
// before it locks or writes), so the same Open serves both setups: one role
// that migrates and serves (the dev default), or an owner's migration step
// followed by services that may not alter the schema.
//
//	//go:embed migrations/*.sql
//	var migrations embed.FS
//	err := pgmigrate.Up(ctx, pool, migrations, pgmigrate.Options{Table: "accounts_goose_db_version"})
package pgmigrate

import (
	"context"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// Options name where a component's migrations are recorded and locked.
type Options struct {
	Dir    string // directory inside the embedded FS; "" = "migrations"
	Table  string // goose's version table; "" = goose's default
	LockID int64  // advisory lock id; 0 = goose's default
}

// Up applies every migration not applied yet.
func Up(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS, opts Options) error {
	if opts.Dir == "" {
		opts.Dir = "migrations"
	}
	dir, err := fs.Sub(fsys, opts.Dir)
	if err != nil {
		return err
	}
	var lockOpts []lock.SessionLockerOption
	if opts.LockID != 0 {
		lockOpts = append(lockOpts, lock.WithLockID(opts.LockID))
	}
	locker, err := lock.NewPostgresSessionLocker(lockOpts...)
	if err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	provOpts := []goose.ProviderOption{goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true)}
	if opts.Table != "" {
		provOpts = append(provOpts, goose.WithTableName(opts.Table))
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, dir, provOpts...)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		if IsPermissionDenied(err) {
			// A service role finding migrations pending: only the owner
			// role may apply them (see Grant).
			return fmt.Errorf("migrate: %w (migrations are pending and this role may not apply them: "+
				"run the migration step as the owner role first, fundd migrate)", err)
		}
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}
