-- 004_user_changes: which users changed, so the agent can apply a change to
-- its million-user snapshot in milliseconds instead of reading every user.
--
--   gw_user_changes(xid, username, changed_at)
--     one row per username a statement on users touched (the old and the new
--     name of an UPDATE, the removed name of a DELETE); xid is the writing
--     transaction's txid_current(). username NULL means "too many to list"
--     (a statement touching more than 10,000 rows, or TRUNCATE): readers
--     reload everything.
--
-- A reader remembers txid_snapshot_xmin(txid_current_snapshot()) of the
-- transaction it last read users in; every transaction that commits later
-- has an xid at least that large, so
--
--   SELECT DISTINCT username FROM gw_user_changes WHERE xid >= <remembered>
--
-- (joined with users, in one REPEATABLE READ transaction) gives every
-- username whose row may differ from what the reader holds. Rows are kept an
-- hour: readers reload everything more often than that.
--
-- The trigger function is SECURITY DEFINER, so roles that may write users
-- need no rights on gw_user_changes. Statement-level triggers with
-- transition tables (PostgreSQL 10+; one trigger per event, as PostgreSQL
-- requires). Idempotent.
BEGIN;

CREATE TABLE IF NOT EXISTS gw_user_changes (
    xid        BIGINT      NOT NULL DEFAULT txid_current(),
    username   TEXT,
    changed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX IF NOT EXISTS idx_gw_user_changes_xid ON gw_user_changes (xid);
CREATE INDEX IF NOT EXISTS idx_gw_user_changes_changed_at ON gw_user_changes (changed_at);

CREATE OR REPLACE FUNCTION gw_log_user_changes() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    n BIGINT := 0;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        n := -1;
    ELSIF TG_OP = 'INSERT' THEN
        SELECT count(*) INTO n FROM new_rows;
    ELSE
        SELECT count(*) INTO n FROM old_rows;
    END IF;
    IF n = 0 THEN
        RETURN NULL;
    END IF;
    IF n < 0 OR n > 10000 THEN
        INSERT INTO gw_user_changes (username) VALUES (NULL);
    ELSE
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            INSERT INTO gw_user_changes (username) SELECT username FROM old_rows;
        END IF;
        IF TG_OP IN ('UPDATE', 'INSERT') THEN
            INSERT INTO gw_user_changes (username) SELECT username FROM new_rows;
        END IF;
    END IF;
    DELETE FROM gw_user_changes WHERE changed_at < clock_timestamp() - interval '1 hour';
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS gw_log_users_insert ON users;
CREATE TRIGGER gw_log_users_insert
    AFTER INSERT ON users REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION gw_log_user_changes();

DROP TRIGGER IF EXISTS gw_log_users_update ON users;
CREATE TRIGGER gw_log_users_update
    AFTER UPDATE ON users REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION gw_log_user_changes();

DROP TRIGGER IF EXISTS gw_log_users_delete ON users;
CREATE TRIGGER gw_log_users_delete
    AFTER DELETE ON users REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION gw_log_user_changes();

DROP TRIGGER IF EXISTS gw_log_users_truncate ON users;
CREATE TRIGGER gw_log_users_truncate
    AFTER TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION gw_log_user_changes();

COMMIT;
