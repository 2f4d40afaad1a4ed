package schema_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	accountspg "github.com/fundplatform/fund/accounts/postgres"
	"github.com/fundplatform/fund/internal/clock/pgclock"
	"github.com/fundplatform/fund/internal/localpg"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
	ledgerpg "github.com/fundplatform/fund/ledger/postgres"
	settlepg "github.com/fundplatform/fund/settlement/postgres"
	reconpg "github.com/fundplatform/fund/settlement/recon/postgres"
	"github.com/fundplatform/fund/settlement/schema"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestServicesOpenAfterTheMigrationStep: after the owner's step (run twice:
// it is idempotent) every store opens as the service role on each
// database, and the service role owns nothing there.
func TestServicesOpenAfterTheMigrationStep(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dbs := []localpg.Roles{pgtest.NewDatabaseWithRoles(t), pgtest.NewDatabaseWithRoles(t)}
	cfg := schema.Config{ServiceRole: localpg.ServiceRole}
	for _, r := range dbs {
		cfg.DSNs = append(cfg.DSNs, r.Owner)
	}
	for range 2 {
		if err := schema.Migrate(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	for i, r := range dbs {
		ls, err := ledgerpg.Open(ctx, ledgerpg.Config{DSN: r.Service})
		if err != nil {
			t.Fatalf("database %d: ledger as the service role: %v", i, err)
		}
		ls.Close()
		as, err := accountspg.Open(ctx, accountspg.Config{DSN: r.Service})
		if err != nil {
			t.Fatalf("database %d: accounts as the service role: %v", i, err)
		}
		as.Close()
		ss, err := settlepg.Open(ctx, settlepg.Config{DSN: r.Service})
		if err != nil {
			t.Fatalf("database %d: settlement as the service role: %v", i, err)
		}
		ss.Close()
		rs, err := reconpg.Open(ctx, reconpg.Config{DSN: r.Service})
		if err != nil {
			t.Fatalf("database %d: reconciliation as the service role: %v", i, err)
		}
		rs.Close()
		tc, err := pgclock.Open(ctx, pgclock.Config{DSN: r.Service})
		if err != nil {
			t.Fatalf("database %d: test clock as the service role: %v", i, err)
		}
		if _, err := tc.Advance(time.Hour); err != nil {
			t.Fatalf("database %d: test clock moved by the service role: %v", i, err)
		}
		tc.Close()

		pool, err := pgxpool.New(ctx, r.Owner)
		if err != nil {
			t.Fatal(err)
		}
		var owned []string
		err = pool.QueryRow(ctx, `SELECT coalesce(array_agg(relname::text), '{}') FROM pg_class
			WHERE relowner = (SELECT oid FROM pg_roles WHERE rolname = $1)`, localpg.ServiceRole).Scan(&owned)
		pool.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(owned) > 0 {
			t.Errorf("database %d: the service role owns %v", i, owned)
		}
	}
}

// TestServiceCannotMigrate: with migrations pending, a service opening its
// store is refused, and the error names the migration step.
func TestServiceCannotMigrate(t *testing.T) {
	t.Parallel()
	r := pgtest.NewDatabaseWithRoles(t)
	_, err := ledgerpg.Open(context.Background(), ledgerpg.Config{DSN: r.Service})
	if err == nil || !strings.Contains(err.Error(), "fundd migrate") {
		t.Fatalf("open with migrations pending as the service role: got %v, want an error naming fundd migrate", err)
	}
}
