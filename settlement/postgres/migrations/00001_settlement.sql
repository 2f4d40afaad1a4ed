-- +goose Up

-- One row per settled business date: the income it was run with (a fund
-- total in fen, or per 10,000 shares in 0.0001 CNY), the snapshot totals
-- fixed the first time it allocated (a re-run must find the same), and the
-- summary once completed.
CREATE TABLE settlement_runs (
    date           date        PRIMARY KEY,
    per_10k        boolean     NOT NULL,
    income_value   bigint      NOT NULL,
    shards         integer     NOT NULL CHECK (shards > 0),
    completed      boolean     NOT NULL DEFAULT false,
    started_at     timestamptz NOT NULL DEFAULT now(),
    completed_at   timestamptz,
    holders        bigint,
    total_shares   bigint,
    fund_income    bigint,
    income_per_10k bigint,
    summary        jsonb
);

-- Each shard's cut for a date: the ledger timestamp up to which the
-- shard's activity belongs to the day. Fixed the first time the run closes
-- the shard, so a resumed run snapshots the same holdings.
CREATE TABLE settlement_cuts (
    date   date    NOT NULL REFERENCES settlement_runs (date),
    shard  integer NOT NULL,
    cut_ts bigint  NOT NULL,
    PRIMARY KEY (date, shard)
);

-- Steps done, written in the same transaction as what the step wrote:
-- the run's resume point. Shard -1 holds the whole-run steps.
CREATE TABLE settlement_steps (
    date    date        NOT NULL REFERENCES settlement_runs (date),
    shard   integer     NOT NULL,
    step    text        NOT NULL,
    entries bigint      NOT NULL DEFAULT 0,
    amount  bigint      NOT NULL DEFAULT 0,
    count   bigint      NOT NULL DEFAULT 0,
    detail  text        NOT NULL DEFAULT '',
    done_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (date, shard, step)
);

-- The orders a date settled (subscriptions confirmed, standard redemptions
-- paid), for the custodian file.
CREATE TABLE settlement_movements (
    date        date   NOT NULL REFERENCES settlement_runs (date),
    customer_id bigint NOT NULL,
    request_id  text   NOT NULL,
    kind        text   NOT NULL CHECK (kind IN ('subscribe', 'standard_redeem')),
    amount      bigint NOT NULL CHECK (amount > 0),
    PRIMARY KEY (date, customer_id, request_id)
);

-- +goose Down
DROP TABLE settlement_movements;
DROP TABLE settlement_steps;
DROP TABLE settlement_cuts;
DROP TABLE settlement_runs;
