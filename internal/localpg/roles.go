package localpg

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The two roles of a database made by CreateDatabaseWithRoles, as in
// production (docs/operations.md): the owner role owns the database and
// every table, and runs the migrations; the service role is what the
// platform's processes connect as, with only the privileges the
// migration step grants it. Roles belong to the server, not to one
// database, so every database of a server shares the two.
const (
	OwnerRole   = "fund_owner"
	ServiceRole = "fund_service"
	// rolePassword lets the same DSNs work on a FUND_PG_DSN server that
	// asks for passwords; the private server trusts loopback connections
	// and ignores it. For local use only.
	rolePassword = "fund-local-only"
)

// Roles are one database's DSNs for its two roles.
type Roles struct {
	Admin       string // DSN as the server's administrator (DSN), for what only a superuser may do
	Owner       string // DSN as OwnerRole: migrations
	Service     string // DSN as ServiceRole: the platform's processes
	ServiceRole string // the service role's name, for the migration step's grants
}

// CreateDatabaseWithRoles creates database name owned by OwnerRole, the
// two roles first if the server has not got them, and returns the DSNs of
// both. Nobody but the owner may create objects in its public schema
// (PostgreSQL 15's default, made explicit for older servers).
func (s *Server) CreateDatabaseWithRoles(ctx context.Context, name string) (Roles, error) {
	if name == "" {
		return Roles{}, errors.New("localpg: create database: empty name")
	}
	for _, role := range []string{OwnerRole, ServiceRole} {
		if err := s.ensureRole(ctx, role); err != nil {
			return Roles{}, err
		}
	}
	db := pgx.Identifier{name}.Sanitize()
	if err := s.exec(ctx, "CREATE DATABASE "+db+" OWNER "+pgx.Identifier{OwnerRole}.Sanitize()); err != nil {
		return Roles{}, fmt.Errorf("localpg: create database %q: %w", name, err)
	}
	if err := s.execIn(ctx, name, "REVOKE CREATE ON SCHEMA public FROM PUBLIC"); err != nil {
		return Roles{}, fmt.Errorf("localpg: database %q: %w", name, err)
	}
	return Roles{Admin: s.DSN(name), Owner: s.RoleDSN(name, OwnerRole), Service: s.RoleDSN(name, ServiceRole), ServiceRole: ServiceRole}, nil
}

// ensureRole creates a login role unless it exists. Processes or parallel
// tests may race to create it; the loser's duplicate is success.
func (s *Server) ensureRole(ctx context.Context, role string) error {
	err := s.exec(ctx, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", pgx.Identifier{role}.Sanitize(), rolePassword))
	var pe *pgconn.PgError
	if err == nil || errors.As(err, &pe) && (pe.Code == "42710" || pe.Code == "23505") {
		return nil
	}
	return fmt.Errorf("localpg: create role %s: %w", role, err)
}

// RoleDSN is DSN(database) connecting as role, with the roles' local
// password (see CreateDatabaseWithRoles).
func (s *Server) RoleDSN(database, role string) string {
	u, err := url.Parse(s.DSN(database))
	if err != nil {
		// DSN builds or copies a URL that parsed; it cannot fail.
		panic(fmt.Sprintf("localpg: own DSN does not parse: %v", err))
	}
	u.User = url.UserPassword(role, rolePassword)
	return u.String()
}

// execIn runs sql in database as the server's administrator.
func (s *Server) execIn(ctx context.Context, database, sql string) error {
	cfg, err := pgx.ParseConfig(s.adminDSN())
	if err != nil {
		return err
	}
	cfg.Database = database
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}
