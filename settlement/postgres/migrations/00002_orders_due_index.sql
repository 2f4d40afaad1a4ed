-- +goose Up

-- The run reads the orders still pending (subscriptions to confirm,
-- standard redemptions to pay or still held) every night; the orders table
-- keeps every order forever, so it needs an index over the few pending
-- ones rather than a scan of all. (The orders table is the accounts
-- store's; this index serves only the settlement's queries.)
CREATE INDEX IF NOT EXISTS settlement_orders_pending ON orders (confirm_date)
    WHERE status = 'pending' AND kind IN ('subscribe', 'standard_redeem');

-- +goose Down
DROP INDEX IF EXISTS settlement_orders_pending;
