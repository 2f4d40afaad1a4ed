// Package pgwarn keeps the warnings a Postgres server sends beside results
// from passing unseen. pgx drops notices unless a handler is set; a WARNING
// there means a statement did not do what the code meant (SET LOCAL outside
// a transaction block is ignored with one), so the stores log them.
//
//	pcfg.ConnConfig.OnNotice = pgwarn.Handler(cfg.OnNotice, "ledger")
package pgwarn
