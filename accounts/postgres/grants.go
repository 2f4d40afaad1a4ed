package postgres

import (
	"slices"

	"github.com/fundplatform/fund/internal/pgmigrate"
)

// servicePrivileges are what the platform's processes need on the
// accounts tables, read off this package's statements: customers are
// opened and change status (and are locked FOR UPDATE, which needs
// UPDATE), never deleted (a trigger refuses it too); orders are inserted
// with their outcome, completed by settlement (their status only,
// CompleteOrdersTx), and a pending transfer between shards is resolved
// (its status and reason, ResolveTransfer); the calendar's holidays are
// set and removed; income and yields are appended (income also by COPY,
// RecordIncomeTx). What the settlement run writes here is written through
// this package, so it is granted here.
var servicePrivileges = []pgmigrate.Privilege{
	{Privileges: "SELECT, INSERT, UPDATE", On: "TABLE customers"},
	{Privileges: "SELECT, INSERT", On: "TABLE orders, customer_income, fund_yields"},
	{Privileges: "UPDATE (status, reason)", On: "TABLE orders"},
	{Privileges: "SELECT, INSERT, UPDATE, DELETE", On: "TABLE trading_holidays"},
	// A database of several draws customer ids from the sequence itself
	// (nextval), keeping those of its shards (customerids.go).
	{Privileges: "USAGE", On: "SEQUENCE customers_id_seq"},
	// Open runs Migrate, which reads the version table to find nothing
	// pending.
	{Privileges: "SELECT", On: "TABLE " + gooseTable},
}

// ServicePrivileges returns what the service role needs on the accounts
// tables (for pgmigrate.Grant, with the other components' of the same
// database).
func ServicePrivileges() []pgmigrate.Privilege { return slices.Clone(servicePrivileges) }
