-- 001_notify_triggers: tell listeners when the data they cache changes.
--
--   users, authorized_ips, proxies -> NOTIFY gw_snapshot, payload = table name
--                                     (the agent LISTENs and rebuilds its snapshot)
--   balances                       -> NOTIFY gw_balances, payload = 'balances'
--                                     (for the settlement worker / balance cache)
--
-- Statement-level AFTER triggers on INSERT, UPDATE, DELETE and TRUNCATE: one
-- notification per statement, not per row, and PostgreSQL folds identical
-- notifications raised in one transaction into one. Notifications are only
-- delivered when the transaction commits; a rollback sends nothing.
--
-- Idempotent: CREATE OR REPLACE FUNCTION, DROP TRIGGER IF EXISTS + CREATE
-- (works on PostgreSQL 11+, unlike CREATE OR REPLACE TRIGGER which needs 14).
BEGIN;

CREATE OR REPLACE FUNCTION gw_notify_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- TG_ARGV[0] is the channel; the payload is the table that changed.
    PERFORM pg_notify(TG_ARGV[0], TG_TABLE_NAME);
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS gw_notify_users ON users;
CREATE TRIGGER gw_notify_users
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION gw_notify_change('gw_snapshot');

DROP TRIGGER IF EXISTS gw_notify_authorized_ips ON authorized_ips;
CREATE TRIGGER gw_notify_authorized_ips
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON authorized_ips
    FOR EACH STATEMENT EXECUTE FUNCTION gw_notify_change('gw_snapshot');

DROP TRIGGER IF EXISTS gw_notify_proxies ON proxies;
CREATE TRIGGER gw_notify_proxies
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON proxies
    FOR EACH STATEMENT EXECUTE FUNCTION gw_notify_change('gw_snapshot');

DROP TRIGGER IF EXISTS gw_notify_balances ON balances;
CREATE TRIGGER gw_notify_balances
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON balances
    FOR EACH STATEMENT EXECUTE FUNCTION gw_notify_change('gw_balances');

COMMIT;
