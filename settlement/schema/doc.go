// Package schema is the migration step of the whole platform: on each of
// its databases it applies every component's migrations (ledger, accounts,
// settlement, reconciliation, in that order, because later ones refer to
// earlier tables; then the shared test clock of rehearsals,
// internal/clock/pgclock, whose table stays empty in production) as the
// owner role, then grants the service role exactly the union of what each
// component lists (pgmigrate.Grant). It is what `fundd migrate` runs, as a
// Kubernetes Job or initContainer with the owner's secret, before the
// services start with theirs.
//
// It lives under settlement because settlement is the one domain that
// sits on every other's tables (the layer rule allows nothing but the
// tools above it); it has no settlement logic.
//
// The services still call their component's Migrate when they open: with
// nothing pending that only reads the version tables, which the grants
// allow, so one role that both migrates and serves (the dev default, the
// tests) keeps working; with migrations pending a service role is refused
// with an error that names this step.
//
//	err := schema.Migrate(ctx, schema.Config{DSNs: ownerDSNs, ServiceRole: "fund_service"})
package schema
