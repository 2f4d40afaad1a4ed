-- +goose Up

-- Customers. Ids stay below 2^40: the ledger account ids are derived from
-- them (accounts.CashAccount).
CREATE TABLE customers (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text        NOT NULL,
    status     text        NOT NULL DEFAULT 'active',
    created_at timestamptz NOT NULL,
    CONSTRAINT customers_id_range CHECK (id > 0 AND id < 1099511627776),
    CONSTRAINT customers_status CHECK (status IN ('active', 'frozen', 'closed'))
);

-- Orders: one row per (customer, request id), forever; the money is in the
-- ledger under transfer ids derived from the same key. A row is inserted as
-- 'placing' and set to its outcome in the same transaction, so only
-- outcomes are ever committed.
CREATE TABLE orders (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id  bigint      NOT NULL REFERENCES customers (id),
    request_id   text        NOT NULL,
    kind         text        NOT NULL,
    amount       bigint      NOT NULL,
    counterparty bigint      NOT NULL DEFAULT 0,
    trade_date   date        NOT NULL,
    confirm_date date,
    status       text        NOT NULL,
    reason       text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL,
    CONSTRAINT orders_request UNIQUE (customer_id, request_id),
    CONSTRAINT orders_amount CHECK (amount > 0 AND amount <= 10000000000),
    CONSTRAINT orders_kind CHECK (kind IN ('top_up', 'subscribe', 'fast_redeem', 'standard_redeem',
        'transfer', 'pay', 'withdraw')),
    CONSTRAINT orders_status CHECK (status IN ('placing', 'completed', 'pending', 'rejected'))
);
CREATE INDEX orders_history ON orders (customer_id, id DESC);
CREATE INDEX orders_incoming ON orders (counterparty, id DESC) WHERE kind = 'transfer';

-- The trading calendar: weekdays that are not trading days. Weekends are
-- never trading days and are not listed.
CREATE TABLE trading_holidays (
    date date PRIMARY KEY,
    name text NOT NULL DEFAULT ''
);

-- +goose Down
DROP TABLE trading_holidays;
DROP TABLE orders;
DROP TABLE customers;
