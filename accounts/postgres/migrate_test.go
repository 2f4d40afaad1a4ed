package postgres_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/accounts/postgres"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
)

// TestMigrateKeepsCustomers applies the first migration, stores a customer
// the way the first version did, and then the rest: the customer gets a
// request id no client can send, and new customers open as usual.
func TestMigrateKeepsCustomers(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, os.DirFS("migrations"),
		goose.WithTableName("accounts_goose_db_version"), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO customers (name, created_at) VALUES ('Old', now())`); err != nil {
		t.Fatal(err)
	}
	st, err := postgres.Open(ctx, postgres.Config{DSN: dsn, ConnsMax: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err := st.Customer(ctx, 1)
	if err != nil || c.Name != "Old" || c.RequestID != "legacy 1" {
		t.Fatalf("customer after migration: %+v, %v", c, err)
	}
}

// TestCustomersNeverDeleted: orders refer to customers without a foreign
// key, so the database refuses to delete or truncate customers.
func TestCustomersNeverDeleted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, accounts.Config{})
	c := e.fund("Wes", yuan, 0)
	ctx := context.Background()
	for _, sql := range []string{`DELETE FROM customers WHERE id = ` + strconv.FormatInt(int64(c), 10), `TRUNCATE customers CASCADE`} {
		_, err := e.pool.Exec(ctx, sql)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "23001" { // restrict_violation
			t.Errorf("%s: %v", sql, err)
		}
	}
	if _, err := e.svc.Customer(ctx, c); err != nil {
		t.Fatal(err)
	}
}
