-- +goose Up

-- The transactional outbox: one row per committed batch, written in the
-- batch's own transaction, holding its journal entries packed
-- (ledger.EncodeEntries). The relay publishes a row's events and only then
-- deletes it, so nothing leaves the outbox before it is published; a crash
-- in between republishes, and consumers are idempotent by transfer id.
CREATE TABLE ledger_outbox (
    shard   integer NOT NULL,
    last_ts bigint  NOT NULL,
    events  integer NOT NULL,
    payload bytea   NOT NULL,
    PRIMARY KEY (shard, last_ts)
);
-- Packed ids and amounts barely compress; skip pglz's attempt on the hot path.
ALTER TABLE ledger_outbox ALTER COLUMN payload SET STORAGE EXTERNAL;

-- +goose Down
DROP TABLE ledger_outbox;
