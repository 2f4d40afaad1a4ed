-- +goose Up

-- A transfer to a customer on another shard is a saga: its order is
-- 'pending' while the money is in transit, then 'completed' or, when the
-- payee's shard refused it, 'refunded' (reason says why).
ALTER TABLE orders DROP CONSTRAINT orders_status;
ALTER TABLE orders ADD CONSTRAINT orders_status
    CHECK (status IN ('placing', 'completed', 'pending', 'rejected', 'refunded'));

-- The pending transfers, for the sweep that resolves them: few rows (only
-- the sagas in flight), so a partial index costs the other orders nothing.
CREATE INDEX orders_pending_transfers ON orders (id) WHERE kind = 'transfer' AND status = 'pending';

-- +goose Down
DROP INDEX orders_pending_transfers;
ALTER TABLE orders DROP CONSTRAINT orders_status;
ALTER TABLE orders ADD CONSTRAINT orders_status CHECK (status IN ('placing', 'completed', 'pending', 'rejected'));
