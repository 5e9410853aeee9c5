-- 005_ip_changes: which whitelist rows changed, so the agent can apply a
-- change to authorized_ips without reading every row again (the same scheme
-- as 004_user_changes, keyed by the row id).
--
--   gw_ip_changes(xid, id, changed_at)
--     one row per authorized_ips row a statement touched (the old and the new
--     id of an UPDATE that changes it); xid is the writing transaction's
--     txid_current(). id NULL means "too many to list" (a statement touching
--     more than 10,000 rows, or TRUNCATE): readers read the whole whitelist.
--
-- Readers use the cursor they keep for gw_user_changes (the xmin of the
-- transaction they last read in):
--
--   SELECT DISTINCT id FROM gw_ip_changes WHERE xid >= <remembered>
--
-- joined with authorized_ips on id. Rows are kept an hour. The trigger
-- function is SECURITY DEFINER, so roles that may write authorized_ips need
-- no rights on gw_ip_changes. Idempotent.
BEGIN;

CREATE TABLE IF NOT EXISTS gw_ip_changes (
    xid        BIGINT      NOT NULL DEFAULT txid_current(),
    id         INTEGER,
    changed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX IF NOT EXISTS idx_gw_ip_changes_xid ON gw_ip_changes (xid);
CREATE INDEX IF NOT EXISTS idx_gw_ip_changes_changed_at ON gw_ip_changes (changed_at);

CREATE OR REPLACE FUNCTION gw_log_ip_changes() RETURNS trigger
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
        INSERT INTO gw_ip_changes (id) VALUES (NULL);
    ELSE
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            INSERT INTO gw_ip_changes (id) SELECT id FROM old_rows;
        END IF;
        IF TG_OP = 'INSERT' THEN
            INSERT INTO gw_ip_changes (id) SELECT id FROM new_rows;
        ELSIF TG_OP = 'UPDATE' THEN
            INSERT INTO gw_ip_changes (id)
                SELECT n.id FROM new_rows n WHERE NOT EXISTS (SELECT 1 FROM old_rows o WHERE o.id = n.id);
        END IF;
    END IF;
    DELETE FROM gw_ip_changes WHERE changed_at < clock_timestamp() - interval '1 hour';
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS gw_log_authorized_ips_insert ON authorized_ips;
CREATE TRIGGER gw_log_authorized_ips_insert
    AFTER INSERT ON authorized_ips REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION gw_log_ip_changes();

DROP TRIGGER IF EXISTS gw_log_authorized_ips_update ON authorized_ips;
CREATE TRIGGER gw_log_authorized_ips_update
    AFTER UPDATE ON authorized_ips REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION gw_log_ip_changes();

DROP TRIGGER IF EXISTS gw_log_authorized_ips_delete ON authorized_ips;
CREATE TRIGGER gw_log_authorized_ips_delete
    AFTER DELETE ON authorized_ips REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION gw_log_ip_changes();

DROP TRIGGER IF EXISTS gw_log_authorized_ips_truncate ON authorized_ips;
CREATE TRIGGER gw_log_authorized_ips_truncate
    AFTER TRUNCATE ON authorized_ips
    FOR EACH STATEMENT EXECUTE FUNCTION gw_log_ip_changes();

COMMIT;
