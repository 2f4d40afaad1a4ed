package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/accounts/postgres"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/internal/pgmigrate"
	ledgerpg "github.com/fundplatform/fund/ledger/postgres"
)

// serviceDSN returns a fresh database migrated by the owner role, with the
// service role granted the ledger's and the accounts' privileges, as the
// migration step leaves it, and the service role's DSN.
func serviceDSN(t *testing.T) string {
	t.Helper()
	roles := pgtest.NewDatabaseWithRoles(t)
	ctx := t.Context()
	pool, err := pgxpool.New(ctx, roles.Owner)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := ledgerpg.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if err := postgres.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	privs := append(ledgerpg.ServicePrivileges(), postgres.ServicePrivileges()...)
	if err := pgmigrate.Grant(ctx, pool, roles.ServiceRole, privs); err != nil {
		t.Fatal(err)
	}
	return roles.Service
}

// TestRandomisedAgainstModelAsServiceRole: the service's whole range of
// orders, retries and freezes works with the service role's grants alone.
func TestRandomisedAgainstModelAsServiceRole(t *testing.T) {
	t.Parallel()
	randomisedAgainstModel(t, serviceDSN(t))
}

// TestServiceRoleKeepsCalendarAndIncome: holidays are set and removed,
// income and yields recorded, as the service role; customers are still
// never deleted, now refused by the privileges.
func TestServiceRoleKeepsCalendarAndIncome(t *testing.T) {
	t.Parallel()
	e := newEnvOn(t, accounts.Config{}, serviceDSN(t))
	ctx := context.Background()
	a := e.open("Rita")
	h := accounts.Holiday{Date: time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC), Name: "New Year's Eve"}
	if err := e.store.AddHoliday(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := e.store.AddHoliday(ctx, h); err != nil { // again: an upsert
		t.Fatal(err)
	}
	if err := e.store.RemoveHoliday(ctx, h.Date); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.RecordDailyIncome(ctx, []accounts.DailyIncome{{CustomerID: a, Date: day("2026-11-17"), Amount: 12}}); err != nil {
		t.Fatal(err)
	}
	if err := e.store.RecordFundYield(ctx, accounts.FundYield{Date: day("2026-11-17"), IncomePer10k: 6543}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Freeze(ctx, a); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{`DELETE FROM customers`, `TRUNCATE customers`, `DELETE FROM orders`,
		`DROP TRIGGER customers_never_deleted ON customers`} {
		if _, err := e.pool.Exec(ctx, stmt); !pgmigrate.IsPermissionDenied(err) {
			t.Errorf("%s as the service role: got %v, want permission denied", stmt, err)
		}
	}
}
