-- +goose Up

-- The shared test clock of a rehearsal cluster (pgclock): one row, the
-- business time every process started with --test-clock reads. It exists
-- in every database and stays empty in production, where no process reads
-- it; the first process started with a test clock inserts the row.
CREATE TABLE test_clock (
    id         smallint    PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    now_at     timestamptz NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(), -- wall time the row was made
    moved_at   timestamptz                         -- wall time of the last move
);

-- Moves by request id, so that a retried move applies once whichever
-- gateway it reaches: what was asked ("to <instant>" or "by <duration>")
-- and where it left the clock. Only the newest moves are kept (pgclock
-- prunes the rest in each move's transaction).
CREATE TABLE test_clock_moves (
    request_id text        PRIMARY KEY,
    ask        text        NOT NULL,
    moved_to   timestamptz NOT NULL,
    moved_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX test_clock_moves_moved_at ON test_clock_moves (moved_at);

-- +goose Down
DROP TABLE test_clock_moves;
DROP TABLE test_clock;
