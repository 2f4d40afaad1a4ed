// Package settlebench fills a database with a business day for the
// settlement run (holders, pending subscriptions and standard redemptions
// due, the ledger entries behind every balance) set-based inside Postgres,
// and times the run over it: the engine behind `fundctl bench settle`.
// The crash tests use the same seed on twin databases.
//
// Back of the envelope for 10 million holders on this 2-core machine: each
// holder costs the run one snapshot row read (~1 µs), one journal row and
// one idempotency row written by COPY (~5 µs with the id index), one HOT
// balance update (~3 µs), one customer-income row (~3 µs with its key and
// foreign key), an outbox share and a custodian-file line (<1 µs): about
// 12-15 µs, so 2-3 minutes for ten million when Postgres has one core.
package settlebench
