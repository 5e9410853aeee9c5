-- 002_indexes: make the agent's snapshot load queries index-only scans.
--
-- The agent loads its whole snapshot in a few queries; the tables are small,
-- so these indexes matter only when users or authorized_ips grow large (they
-- then also keep inactive rows out of the read). For the planner to use the
-- partial indexes the queries must carry the same predicate, spelled as here:
--
--   SELECT username, password FROM users WHERE is_active;
--   SELECT ip FROM authorized_ips WHERE is_active;
--   SELECT ... FROM proxies WHERE is_visible AND NOT is_disabled;
--
-- (NULL flags count as false in those predicates; the schema defaults them to
-- true/false, so NULL appears only if someone writes it explicitly.)
--
-- The reference schema's own indexes are left alone. Idempotent: IF NOT EXISTS.
BEGIN;

CREATE INDEX IF NOT EXISTS idx_users_active_login
    ON users (username) INCLUDE (password) WHERE is_active;

CREATE INDEX IF NOT EXISTS idx_authorized_ips_active_ip
    ON authorized_ips (ip) WHERE is_active;

CREATE INDEX IF NOT EXISTS idx_proxies_enabled
    ON proxies (slug) WHERE is_visible AND NOT is_disabled;

COMMIT;
