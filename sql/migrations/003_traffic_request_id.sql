-- 003_traffic_request_id: one traffic_logs row per gateway request, for
-- exactly-once settlement.
--
-- request_id is the id the gateway gives each request (also in the JSON record
-- on traffic:logs). It is nullable, so rows written before this migration (and
-- by writers that do not know it) keep working; a UNIQUE index allows any
-- number of NULLs. The settlement worker inserts with
--
--   INSERT INTO traffic_logs (..., request_id) VALUES (..., $1)
--   ON CONFLICT (request_id) DO NOTHING
--
-- and charges used_bytes only when the row was actually inserted.
-- The index is not partial on purpose: ON CONFLICT (request_id) can then use it
-- without repeating a WHERE clause. Idempotent: IF NOT EXISTS.
BEGIN;

ALTER TABLE traffic_logs ADD COLUMN IF NOT EXISTS request_id TEXT;

CREATE UNIQUE INDEX IF NOT EXISTS idx_traffic_logs_request_id
    ON traffic_logs (request_id);

COMMIT;
