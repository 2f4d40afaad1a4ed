package pgwarn

import (
	"log/slog"

	"github.com/jackc/pgx/v5/pgconn"
)

// Handler returns the pgx notice handler for a store's connections: each
// notice goes to onNotice when it is set; otherwise warnings are logged with
// slog's default logger under component, and plain notices ("relation
// already exists, skipping") are dropped.
func Handler(onNotice func(*pgconn.Notice), component string) pgconn.NoticeHandler {
	if onNotice != nil {
		return func(_ *pgconn.PgConn, n *pgconn.Notice) { onNotice(n) }
	}
	return func(_ *pgconn.PgConn, n *pgconn.Notice) {
		if n.Severity == "WARNING" {
			slog.Warn("postgres warning", "component", component, "code", n.Code, "message", n.Message)
		}
	}
}
