-- +goose Up

-- The journal's daily partitions are created at run time, by the shards'
-- writers, a week ahead. The writers connect as the service role, which
-- may not create tables: a table's creator owns it, and an owner can drop
-- its triggers, detach it or drop it, which is exactly what the journal
-- must be safe from. So the service calls this function instead: it runs
-- with the rights of its owner (the role that ran the migrations) and
-- creates only a partition of transfers for one date, with the TRUNCATE
-- trigger that partitions do not inherit, owned by that owner.
-- SECURITY DEFINER with a fixed search_path (the schema the migrations ran
-- in, then pg_temp) so that a caller cannot make it resolve transfers or
-- ledger_refuse_rewrite to objects of their own; only roles granted
-- EXECUTE may call it.
-- +goose StatementBegin
CREATE FUNCTION ledger_create_partition(p_date date) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    part text;
BEGIN
    IF p_date IS NULL THEN
        RAISE EXCEPTION 'ledger_create_partition: no date' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    part := 'transfers_' || to_char(p_date, 'YYYYMMDD');
    EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF transfers FOR VALUES FROM (%L) TO (%L)',
        part, to_char(p_date, 'YYYY-MM-DD'), to_char(p_date + 1, 'YYYY-MM-DD'));
    EXECUTE format('CREATE OR REPLACE TRIGGER no_truncate BEFORE TRUNCATE ON %I ' ||
        'FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_rewrite()', part);
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION ledger_create_partition(date) SET search_path = %I, pg_temp', current_schema());
END
$$;
-- +goose StatementEnd

REVOKE ALL ON FUNCTION ledger_create_partition(date) FROM PUBLIC;

-- +goose Down
DROP FUNCTION ledger_create_partition(date);
