package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fundplatform/fund/internal/localpg"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/internal/pgmigrate"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/postgres"
)

// migrateAsOwner applies the ledger's migrations as the owner role and
// grants the service role its privileges, as the migration step does, and
// returns the owner's pool.
func migrateAsOwner(t *testing.T, roles localpg.Roles) *pgxpool.Pool {
	t.Helper()
	ctx := t.Context()
	pool, err := pgxpool.New(ctx, roles.Owner)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := postgres.Migrate(ctx, pool); err != nil {
		t.Fatalf("migrate as owner: %v", err)
	}
	if err := postgres.GrantService(ctx, pool, roles.ServiceRole); err != nil {
		t.Fatalf("grant: %v", err)
	}
	return pool
}

// partitionOwners returns the owner of each of the journal's partitions.
func partitionOwners(t *testing.T, pool *pgxpool.Pool) map[string]string {
	t.Helper()
	rows, err := pool.Query(t.Context(), `
		SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'transfers'::regclass`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, owner string
		if err := rows.Scan(&name, &owner); err != nil {
			t.Fatal(err)
		}
		out[name] = owner
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestServiceRoleDoesItsWork: connected as the service role, the ledger
// opens (its migrations found applied), commits batches, creates a future
// date's partition (owned by the owner role, not by the service), books a
// shard set-based through InShard (a temporary staging table included),
// and publishes and clears its outbox.
func TestServiceRoleDoesItsWork(t *testing.T) {
	t.Parallel()
	roles := pgtest.NewDatabaseWithRoles(t)
	ownerPool := migrateAsOwner(t, roles)
	store := openStoreDSN(t, roles.Service)
	ctx := t.Context()

	seq := startSeq(t, store, ledger.SequencerConfig{})
	user := ledger.DebitsMustNotExceedCredits
	accts := []ledger.Account{{ID: 1, Asset: ledger.AssetCNY, Code: 1}, {ID: 2, Asset: ledger.AssetCNY, Code: 10, Flags: user}}
	if rs, err := seq.CreateAccounts(ctx, accts); err != nil || rs[0].Result != ledger.ResultOK || rs[1].Result != ledger.ResultOK {
		t.Fatalf("create accounts: %v %v", rs, err)
	}
	hold := ledger.DeriveTransferID("roles", "hold")
	rs, err := seq.CreateTransfers(ctx, []ledger.Transfer{
		{ID: ledger.DeriveTransferID("roles", "fund"), DebitAccountID: 1, CreditAccountID: 2, Amount: 1000, Asset: ledger.AssetCNY},
		{ID: hold, DebitAccountID: 2, CreditAccountID: 1, Amount: 300, Asset: ledger.AssetCNY, Flags: ledger.Pending},
		{ID: ledger.DeriveTransferID("roles", "post"), PendingID: hold, Amount: 200, Flags: ledger.PostPending},
	})
	wantResults(t, "commit as the service role", rs, err, ledger.ResultOK, ledger.ResultOK, ledger.ResultOK)

	future := ledger.BusinessDate(time.Now().UnixNano()).AddDate(0, 0, 40)
	if err := store.EnsurePartitions(ctx, future, future); err != nil {
		t.Fatalf("create a future partition as the service role: %v", err)
	}
	owners := partitionOwners(t, ownerPool)
	name := "transfers_" + future.Format("20060102")
	if owners[name] == "" {
		t.Fatalf("partition %s not created; partitions: %v", name, owners)
	}
	for part, owner := range owners {
		if owner != localpg.OwnerRole {
			t.Errorf("partition %s is owned by %s, want the owner role %s", part, owner, localpg.OwnerRole)
		}
	}

	epoch, ok, err := store.TakeLease(ctx, 1, "settle", "", time.Minute, false)
	if err != nil || !ok {
		t.Fatalf("take lease of shard 1: %v %v", ok, err)
	}
	err = store.InShard(ctx, 1, epoch, func(ctx context.Context, w *postgres.ShardTx) error {
		if err := w.EnsureAccounts(ctx, []ledger.Account{{ID: 11, Asset: ledger.AssetCNY, Code: 1},
			{ID: 12, Asset: ledger.AssetCNY, Code: 10}}); err != nil {
			return err
		}
		return w.WriteEntries(ctx, []ledger.Transfer{{ID: ledger.DeriveTransferID("roles", "bulk"),
			DebitAccountID: 11, CreditAccountID: 12, Amount: 5, Asset: ledger.AssetCNY}}, postgres.WriteOptions{})
	})
	if err != nil {
		t.Fatalf("InShard as the service role: %v", err)
	}
	if err := store.ReleaseLease(ctx, 1, "settle", epoch); err != nil {
		t.Fatal(err)
	}

	batches, err := store.OutboxPending(ctx, []int{0, 1}, 100)
	if err != nil || len(batches) == 0 {
		t.Fatalf("outbox as the service role: %d batches, %v", len(batches), err)
	}
	upTo := map[int]int64{}
	for _, b := range batches {
		upTo[b.Shard] = max(upTo[b.Shard], b.LastTS)
	}
	if err := store.OutboxAck(ctx, upTo); err != nil {
		t.Fatalf("ack outbox as the service role: %v", err)
	}
	for _, shard := range []int{0, 1} {
		if rep, err := store.Verify(ctx, shard); err != nil || !rep.OK() {
			t.Errorf("verify shard %d: %+v %v", shard, rep, err)
		}
	}
}

// TestServiceRoleCannotRewriteHistory: connected as the service role,
// every way to change or remove history, or to take away what protects it,
// is refused by Postgres's privileges (42501), before any trigger has a
// say: the service role owns nothing, so it can neither rewrite rows nor
// drop, detach or disable what refuses rewrites.
func TestServiceRoleCannotRewriteHistory(t *testing.T) {
	t.Parallel()
	roles := pgtest.NewDatabaseWithRoles(t)
	migrateAsOwner(t, roles)
	store := openStoreDSN(t, roles.Service)
	ctx := t.Context()
	seq := startSeq(t, store, ledger.SequencerConfig{})
	if rs, err := seq.CreateAccounts(ctx, []ledger.Account{{ID: 1, Asset: ledger.AssetCNY, Code: 1},
		{ID: 2, Asset: ledger.AssetCNY, Code: 1}}); err != nil || rs[0].Result != ledger.ResultOK {
		t.Fatalf("create accounts: %v %v", rs, err)
	}
	rs, err := seq.CreateTransfers(ctx, []ledger.Transfer{{ID: ledger.DeriveTransferID("roles", "t"),
		DebitAccountID: 1, CreditAccountID: 2, Amount: 10, Asset: ledger.AssetCNY}})
	wantResults(t, "setup", rs, err, ledger.ResultOK)
	pool := store.Pool()
	var part string
	if err := pool.QueryRow(ctx, `SELECT tableoid::regclass::text FROM transfers LIMIT 1`).Scan(&part); err != nil {
		t.Fatal(err)
	}
	before := countTables(t, pool)
	for _, stmt := range []string{
		`UPDATE transfers SET amount = amount + 1`,
		`DELETE FROM transfers`,
		`TRUNCATE transfers`,
		`UPDATE transfer_ids SET fingerprint = 0`,
		`DELETE FROM transfer_ids`,
		`TRUNCATE transfer_ids`,
		`UPDATE ` + part + ` SET amount = 1`,
		`DELETE FROM ` + part,
		`TRUNCATE ` + part,
		`DROP TABLE transfers`,
		`DROP TABLE transfer_ids`,
		`DROP TABLE ` + part,
		`ALTER TABLE transfers DETACH PARTITION ` + part,
		`ALTER TABLE transfers DISABLE TRIGGER transfers_append_only`,
		`ALTER TABLE transfers DISABLE TRIGGER ALL`,
		`ALTER TABLE transfer_ids DISABLE TRIGGER transfer_ids_append_only`,
		`ALTER TABLE ` + part + ` DISABLE TRIGGER no_truncate`,
		`DROP TRIGGER transfers_append_only ON transfers`,
		`DROP TRIGGER transfer_ids_no_truncate ON transfer_ids`,
		`DROP TRIGGER no_truncate ON ` + part,
		// Replacing or dropping the function the triggers call would
		// disarm them all at once.
		`CREATE OR REPLACE FUNCTION ledger_refuse_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$`,
		`DROP FUNCTION ledger_refuse_rewrite() CASCADE`,
		`ALTER FUNCTION ledger_create_partition(date) SECURITY INVOKER`,
		`ALTER TABLE transfers OWNER TO ` + localpg.ServiceRole,
		// No tables of its own either: a table it created it could
		// attach as a partition, then own and empty.
		`CREATE TABLE transfers_rogue (LIKE transfers)`,
	} {
		_, err := pool.Exec(ctx, stmt)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42501" {
			t.Errorf("%s: got %v, want insufficient_privilege (42501)", stmt, err)
		}
	}
	if after := countTables(t, pool); after != before {
		t.Errorf("history rewritten: rows before %+v, after %+v", before, after)
	}
	mustVerify(t, store)
}

// TestGrantRefusesRolesItCannotRestrict: a superuser, or a role that is a
// member of the owner role, would bypass the grants; the migration step
// refuses to call such a role the service role instead of granting.
func TestGrantRefusesRolesItCannotRestrict(t *testing.T) {
	t.Parallel()
	roles := pgtest.NewDatabaseWithRoles(t)
	owner := migrateAsOwner(t, roles)
	ctx := t.Context()
	var super string
	if err := owner.QueryRow(ctx, `SELECT rolname FROM pg_roles WHERE rolsuper LIMIT 1`).Scan(&super); err != nil {
		t.Fatal(err)
	}
	for role, want := range map[string]string{super: "superuser", "no_such_role_x": "does not exist"} {
		err := pgmigrate.Grant(ctx, owner, role, postgres.ServicePrivileges())
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("grant to %s: got %v, want an error saying %q", role, err, want)
		}
	}
	// A role that owns a partition (one that created it while it was the
	// only role) could drop it whatever is granted.
	admin, err := pgxpool.New(ctx, roles.Admin)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var part string
	if err := owner.QueryRow(ctx, `SELECT ledger_create_partition('2026-11-11'), 'transfers_20261111'`).
		Scan(nil, &part); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, `ALTER TABLE `+part+` OWNER TO `+localpg.ServiceRole); err != nil {
		t.Fatal(err)
	}
	if err := pgmigrate.Grant(ctx, owner, localpg.ServiceRole, postgres.ServicePrivileges()); err == nil ||
		!strings.Contains(err.Error(), "owns 2 relations") { // the partition and its index
		t.Errorf("grant to a role owning %s: got %v, want an error saying it owns it", part, err)
	}
	// Granting to the owner itself (one role for both) changes nothing.
	if err := pgmigrate.Grant(ctx, owner, localpg.OwnerRole, postgres.ServicePrivileges()); err != nil {
		t.Errorf("grant to the owner itself: %v", err)
	}
}
