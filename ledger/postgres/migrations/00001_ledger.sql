-- +goose Up

-- One row per logical shard: the lease (owner, fencing epoch), the newest
-- timestamp written (checked and advanced by every batch commit) and the
-- checkpoint: every journal entry up to checkpoint_ts is in the stored
-- balances of its accounts.
CREATE TABLE ledger_shards (
    shard            integer PRIMARY KEY,
    epoch            bigint  NOT NULL DEFAULT 0,
    owner            text    NOT NULL DEFAULT '',
    lease_expires_at timestamptz,
    last_timestamp   bigint  NOT NULL DEFAULT 0,
    checkpoint_ts    bigint  NOT NULL DEFAULT 0
);

-- Balances are state: each row holds its account's balances as of
-- balance_ts, flushed by the shard's single writer a few seconds after they
-- change rather than with every batch. The journal below is history: the
-- entries after balance_ts bring a balance up to date when a shard loads, and
-- ledger verify recomputes every balance from it. A low fillfactor keeps
-- balance updates HOT (no index churn).
CREATE TABLE accounts (
    id              bigint   PRIMARY KEY CHECK (id <> 0),
    shard           integer  NOT NULL,
    asset           smallint NOT NULL,
    code            integer  NOT NULL,
    flags           integer  NOT NULL,
    closed          boolean  NOT NULL DEFAULT false,
    debits_pending  bigint   NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
    debits_posted   bigint   NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
    credits_pending bigint   NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
    credits_posted  bigint   NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
    created_ts      bigint   NOT NULL,
    balance_ts      bigint   NOT NULL,
    -- flag 1: debits must not exceed credits (available never below zero)
    CONSTRAINT accounts_available_not_negative
        CHECK (flags & 1 = 0 OR debits_posted + debits_pending <= credits_posted),
    -- flag 2: credits must not exceed debits
    CONSTRAINT accounts_credits_not_beyond_debits
        CHECK (flags & 2 = 0 OR credits_posted + credits_pending <= debits_posted)
) WITH (fillfactor = 70);
CREATE INDEX accounts_shard ON accounts (shard);

-- The journal: append-only, partitioned by business date (CST calendar
-- date of the ledger timestamp). Uniqueness of ids lives in transfer_ids,
-- because a partitioned table can only enforce keys that contain the
-- partition key.
CREATE TABLE transfers (
    id                uuid     NOT NULL,
    shard             integer  NOT NULL,
    ts                bigint   NOT NULL,
    business_date     date     NOT NULL,
    debit_account_id  bigint   NOT NULL,
    credit_account_id bigint   NOT NULL,
    amount            bigint   NOT NULL CHECK (amount > 0),
    pending_amount    bigint   NOT NULL DEFAULT 0 CHECK (pending_amount >= 0),
    asset             smallint NOT NULL,
    kind              integer  NOT NULL,
    flags             integer  NOT NULL,
    pending_id        uuid,
    timeout_ns        bigint   NOT NULL DEFAULT 0,
    user_data         text     NOT NULL DEFAULT '',
    CHECK (debit_account_id <> credit_account_id)
) PARTITION BY RANGE (business_date);
CREATE INDEX transfers_ts ON transfers USING brin (ts);

-- Every transfer id ever applied, with a fingerprint of its fields: a retry
-- gets "exists" forever, whatever partition the original went to.
CREATE TABLE transfer_ids (
    id            uuid    PRIMARY KEY,
    shard         integer NOT NULL,
    business_date date    NOT NULL,
    fingerprint   bigint  NOT NULL
);

-- Two-phase transfers and their state (1 open, 2 posted, 3 voided, 4 expired).
CREATE TABLE pending_transfers (
    id                uuid     PRIMARY KEY,
    shard             integer  NOT NULL,
    debit_account_id  bigint   NOT NULL,
    credit_account_id bigint   NOT NULL,
    amount            bigint   NOT NULL CHECK (amount > 0),
    asset             smallint NOT NULL,
    expires_at        bigint   NOT NULL DEFAULT 0,
    state             smallint NOT NULL
);
CREATE INDEX pending_transfers_open ON pending_transfers (shard) WHERE state = 1;

-- The fencing check of every batch commit: advances the shard's timestamps
-- only for the writer holding the current epoch, and otherwise fails the
-- whole transaction (SQLSTATE LF001). The row lock it takes also serialises
-- two writers that both believe they own the shard.
-- +goose StatementBegin
CREATE FUNCTION ledger_fence(p_shard integer, p_epoch bigint, p_last bigint, p_checkpoint bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ledger_shards SET last_timestamp = p_last, checkpoint_ts = p_checkpoint
        WHERE shard = p_shard AND epoch = p_epoch;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'shard % is fenced: epoch % is not current', p_shard, p_epoch
            USING ERRCODE = 'LF001';
    END IF;
END
$$;
-- +goose StatementEnd

-- History is never rewritten: corrections are new entries.
-- +goose StatementBegin
CREATE FUNCTION ledger_refuse_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger history is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END
$$;
-- +goose StatementEnd
CREATE TRIGGER transfers_append_only BEFORE UPDATE OR DELETE ON transfers
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_rewrite();
CREATE TRIGGER transfers_no_truncate BEFORE TRUNCATE ON transfers
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_rewrite();
CREATE TRIGGER transfer_ids_append_only BEFORE UPDATE OR DELETE ON transfer_ids
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_rewrite();
CREATE TRIGGER transfer_ids_no_truncate BEFORE TRUNCATE ON transfer_ids
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_rewrite();

-- +goose Down
DROP TABLE pending_transfers;
DROP TABLE transfer_ids;
DROP TABLE transfers;
DROP FUNCTION ledger_refuse_rewrite();
DROP FUNCTION ledger_fence(integer, bigint, bigint, bigint);
DROP TABLE accounts;
DROP TABLE ledger_shards;
