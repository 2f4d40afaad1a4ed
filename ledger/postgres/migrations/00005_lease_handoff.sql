-- +goose Up

-- A graceful hand-off of a shard (ledger.Host): a party that wants the
-- shard (the settlement run, a host under its fair share) records itself in
-- handoff_to until handoff_until; the holder sees it at its next renewal,
-- drains its sequencer, commits what it holds and releases the lease, which
-- then stays reserved for the requester until handoff_until, so that it
-- takes the shard at once with a new epoch and nobody is fenced mid-commit.
ALTER TABLE ledger_shards
    ADD COLUMN handoff_to    text NOT NULL DEFAULT '',
    ADD COLUMN handoff_until timestamptz;

-- The ledger hosts alive, each renewing its row with its leases (dead once
-- expires_at passed, deleted on a clean stop): a host's fair share of the
-- shards is worked out from how many there are.
CREATE TABLE ledger_hosts (
    owner      text PRIMARY KEY,
    addr       text NOT NULL DEFAULT '',
    expires_at timestamptz NOT NULL
);

-- +goose Down
DROP TABLE ledger_hosts;
ALTER TABLE ledger_shards DROP COLUMN handoff_to, DROP COLUMN handoff_until;
