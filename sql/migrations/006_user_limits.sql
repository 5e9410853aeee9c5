-- 006_user_limits: per-user limits, enforced by HAProxy on each gateway node
-- (README "Per-user limits").
--
--   users.max_conns  requests and CONNECT tunnels of the user in progress at
--                    once, per gateway node
--   users.max_rps    requests per second forwarded for the user, per node
--
-- NULL: the agent's configured default (GW_MAX_CONNS / GW_MAX_RPS); 0:
-- unlimited; a negative value is refused. A change reaches the agent like
-- any other change to users: the triggers of 001 (NOTIFY) and 004
-- (gw_user_changes) fire for every UPDATE, and the agent reads the changed
-- users with these columns.
--
-- Adding a column without a default rewrites nothing; the CHECKs only scan
-- (every value is NULL). Idempotent: ADD COLUMN IF NOT EXISTS skips the
-- column and its constraint when the column is already there.
BEGIN;

ALTER TABLE users
    ADD COLUMN IF NOT EXISTS max_conns INTEGER
        CONSTRAINT users_max_conns_check CHECK (max_conns >= 0),
    ADD COLUMN IF NOT EXISTS max_rps INTEGER
        CONSTRAINT users_max_rps_check CHECK (max_rps >= 0);

COMMENT ON COLUMN users.max_conns IS
    'gateway: requests and tunnels in progress at once, per node (NULL: the default, 0: unlimited)';
COMMENT ON COLUMN users.max_rps IS
    'gateway: requests forwarded per second, per node (NULL: the default, 0: unlimited)';

COMMIT;
