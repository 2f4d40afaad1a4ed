-- +goose Up

-- Why the last attempt at an unfinished run stopped, and what resolves
-- it (settlement.RunFailure): the run's status says FAILED with these
-- until the date is opened again. NULL while none is recorded.
ALTER TABLE settlement_runs
    ADD COLUMN failed_at     timestamptz,
    ADD COLUMN failure       text,
    ADD COLUMN failure_input boolean NOT NULL DEFAULT false,
    ADD COLUMN resolve       text;

-- +goose Down
ALTER TABLE settlement_runs
    DROP COLUMN resolve,
    DROP COLUMN failure_input,
    DROP COLUMN failure,
    DROP COLUMN failed_at;
