-- +goose Up

-- Opening a customer is idempotent: one customer per client request id,
-- forever. Customers opened before this migration get a key no client can
-- send (client request ids are printable ASCII without spaces).
ALTER TABLE customers ADD COLUMN request_id text;
UPDATE customers SET request_id = 'legacy ' || id;
ALTER TABLE customers ALTER COLUMN request_id SET NOT NULL;
ALTER TABLE customers ADD CONSTRAINT customers_request UNIQUE (request_id);

-- +goose Down
ALTER TABLE customers DROP COLUMN request_id;
