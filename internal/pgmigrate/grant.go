package pgmigrate

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Privilege is one GRANT of a component to the service role: Privileges
// ("SELECT, INSERT") on the objects On names, with their kind ("TABLE
// transfers, transfer_ids", "SEQUENCE recon_breaks_id_seq", "FUNCTION
// ledger_create_partition(date)").
type Privilege struct {
	Privileges string
	On         string
}

// Grant gives role exactly privs on the current schema's objects, in one
// transaction: whatever role held on the schema's tables, sequences and
// functions is revoked first, so the role ends with the union of privs and
// nothing else (a privilege no component lists any more goes), even where
// two components grant on one table. Callers pass every component's list
// of the database at once. It is run by the owner of the objects (the role
// that migrates), after Up.
//
// Granting to the owner itself does nothing: with one role for both jobs
// (the dev default) that role owns the tables, and an owner's rights come
// from owning, not from grants. Otherwise the role must exist and must not
// be able to bypass the grants: a superuser, a member of the owner role
// (which would inherit ownership), a role that owns anything in the schema
// or one allowed to CREATE in it is refused with an error saying so.
func Grant(ctx context.Context, pool *pgxpool.Pool, role string, privs []Privilege) error {
	if role == "" {
		return errors.New("grant: no role")
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	self, schemaName, err := checkServiceRole(ctx, tx, role)
	if err != nil || self {
		return err
	}
	schema := pgx.Identifier{schemaName}.Sanitize()
	r := pgx.Identifier{role}.Sanitize()
	for _, kind := range []string{"TABLES", "SEQUENCES", "FUNCTIONS"} {
		if _, err := tx.Exec(ctx, fmt.Sprintf("REVOKE ALL ON ALL %s IN SCHEMA %s FROM %s", kind, schema, r)); err != nil {
			return fmt.Errorf("revoke %s from %s: %w", strings.ToLower(kind), role, err)
		}
	}
	for _, p := range privs {
		if _, err := tx.Exec(ctx, fmt.Sprintf("GRANT %s ON %s TO %s", p.Privileges, p.On, r)); err != nil {
			return fmt.Errorf("grant %s on %s to %s: %w", p.Privileges, p.On, role, err)
		}
	}
	return tx.Commit(ctx)
}

// checkServiceRole reports whether role is the current user (nothing to
// grant) and refuses a role the grants would not restrict.
func checkServiceRole(ctx context.Context, tx pgx.Tx, role string) (self bool, schema string, err error) {
	var (
		exists, super, member, create bool
		owns                          int
		owned, me                     string
	)
	err = tx.QueryRow(ctx, `
		SELECT r.rolname IS NOT NULL, coalesce(r.rolsuper, false),
			r.rolname IS NOT NULL AND r.rolname <> current_user AND pg_has_role(r.rolname, current_user, 'USAGE'),
			r.rolname IS NOT NULL AND has_schema_privilege(r.rolname, current_schema(), 'CREATE'),
			coalesce(current_schema(), ''), $1 = current_user, current_user::text,
			(SELECT count(*) FROM pg_class c WHERE c.relowner = r.oid AND c.relnamespace = current_schema()::regnamespace),
			(SELECT coalesce(min(c.relname::text), '') FROM pg_class c
				WHERE c.relowner = r.oid AND c.relnamespace = current_schema()::regnamespace)
		FROM (SELECT 1) one LEFT JOIN pg_roles r ON r.rolname = $1`, role).
		Scan(&exists, &super, &member, &create, &schema, &self, &me, &owns, &owned)
	switch {
	case err != nil:
		return false, "", fmt.Errorf("check role %s: %w", role, err)
	case self:
		return true, schema, nil
	case schema == "":
		return false, "", errors.New("grant: no current schema (search_path names none that exists)")
	case !exists:
		return false, "", fmt.Errorf("grant: role %q does not exist (create it first: CREATE ROLE %s LOGIN)", role,
			pgx.Identifier{role}.Sanitize())
	case super:
		return false, "", fmt.Errorf("grant: role %q is a superuser: no grant restricts it", role)
	case member:
		return false, "", fmt.Errorf("grant: role %q is a member of the owner role and would act as the tables' owner", role)
	case owns > 0:
		// Say, journal partitions it created while it was the only role:
		// an owner may drop or detach them whatever is granted.
		return false, "", fmt.Errorf("grant: role %q owns %d relations in schema %q (%s first): "+
			"hand them to the owner role (as a superuser: REASSIGN OWNED BY %s TO %s)",
			role, owns, schema, owned, pgx.Identifier{role}.Sanitize(), pgx.Identifier{me}.Sanitize())
	case create:
		return false, "", fmt.Errorf("grant: role %q may CREATE in schema %q: revoke it (REVOKE CREATE ON SCHEMA %s FROM PUBLIC, %s)",
			role, schema, pgx.Identifier{schema}.Sanitize(), pgx.Identifier{role}.Sanitize())
	}
	return false, schema, nil
}

// insufficientPrivilege is SQLSTATE 42501: a statement the connected role
// may not run (also "must be owner of table").
const insufficientPrivilege = "42501"

// IsPermissionDenied reports whether err is Postgres refusing a statement
// for lack of a privilege.
func IsPermissionDenied(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == insufficientPrivilege
}
