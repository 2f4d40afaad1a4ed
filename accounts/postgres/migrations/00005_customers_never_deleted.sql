-- +goose Up

-- Customers are never deleted (closing is a status): orders refer to them
-- without a foreign key since 00004, relying on the order writer reading
-- the customer in the transaction that inserts the order, under the
-- customer's advisory lock (accounts/postgres/locks.go). This trigger makes
-- "never deleted" a rule of the database rather than a habit of the code.
-- It fires once per statement, so it costs the write path nothing.

-- +goose StatementBegin
CREATE FUNCTION customers_never_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'customers are never deleted: orders refer to them (close the customer instead)'
        USING ERRCODE = 'restrict_violation';
END
$$;
-- +goose StatementEnd

CREATE TRIGGER customers_never_deleted BEFORE DELETE OR TRUNCATE ON customers
    FOR EACH STATEMENT EXECUTE FUNCTION customers_never_deleted();

-- +goose Down
DROP TRIGGER customers_never_deleted ON customers;
DROP FUNCTION customers_never_deleted();
