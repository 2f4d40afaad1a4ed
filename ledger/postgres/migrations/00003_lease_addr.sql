-- +goose Up

-- Where a shard's owner serves calls (host:port of its gRPC listener), set
-- with the lease and cleared on release, so that clients find the current
-- owner of a shard from the lease table alone.
ALTER TABLE ledger_shards ADD COLUMN owner_addr text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE ledger_shards DROP COLUMN owner_addr;
