// Package nightly is the settle role (`fundd settle`): the nightly
// settlement on a schedule. It settles business dates one after another:
// the date after the last one settled (or Config.From for the first), once
// it has ended plus Config.Delay (China Standard Time) and its income is
// known. The income of date D is read from Config.IncomeDir/D (one line:
// "income=123.45" for the fund total in CNY, or "income_per_10k=0.6543").
// An unfinished run (a crash) is resumed with the income it started with.
// Custodian files go to Config.FileDir; settlement events to Kafka when
// brokers are given; the metrics (fund_settlement_last_success_timestamp_seconds,
// fund_settlement_accounts_total) and the probes are served at
// Config.HTTPAddr (internal/opshttp).
//
//	err := nightly.Run(ctx, nightly.Config{DSNs: dsns, IncomeDir: "/income", FileDir: "/files"})
//
// OpenOnDemand is the same runner and metrics without the schedule, for a
// process that settles when asked (the dev stack's admin API, through the
// gateway's adapter in gateway/server).
package nightly
