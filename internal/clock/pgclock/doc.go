// Package pgclock is the test clock of a multi-process rehearsal cluster
// (deploy/local with a test clock): one business time shared by every
// process through one row in Postgres, the database of shard group 0.
//
// A process started with --test-clock opens a Clock on that database. The
// first to start inserts the row at its start (Config.Start); the others
// find it and keep its time. Each process keeps the last instant it read
// and reads it again every RefreshEveryDefault (200 ms) in the background,
// so Now is a memory read and a move reaches every process within about
// that long; Refresh reads it at once, for what must not act on a stale
// time (the settle role refreshes before each look at what is due, so a
// run's cut-off check sees the latest move). A poll rather than
// LISTEN/NOTIFY: one tiny row read five times a second per process costs
// nothing, and nothing depends on a notification arriving.
//
// The gateway's admin call moves it (POST /v1/admin/clock:advance,
// through SetOnce and AdvanceOnce). A move locks the row, so moves from
// two gateways apply one after the other, and only forward (the update
// keeps the later instant; a move back is clock.ErrBackwards). A move
// under a request id is stored with what it asked in the same
// transaction, and "by 36h" is turned into an instant there: a retry that
// reaches another gateway moves the clock once and answers the first
// result; the same id with another move is clock.ErrMoveConflict.
//
// It is plumbing for rehearsals and never runs in production: the tables
// exist in every database (the migration step creates them, the service
// role is granted them) and stay empty unless a process is started with a
// test clock.
//
//	c, err := pgclock.Open(ctx, pgclock.Config{DSN: dsn, Start: start})
//	defer c.Close()
//	cfg := accounts.Config{Now: c.Now}
//	now, err := c.AdvanceOnce(ctx, "clock-1", 36*time.Hour)
package pgclock
