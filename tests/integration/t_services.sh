#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# t_services.sh: the harness itself (tests/lib/services.sh) and sql/ against
# real PostgreSQL, Redis and HAProxy: schema + migrations + demo data,
# LISTEN/NOTIFY triggers, restarts on the same ports, background processes,
# and cleanup at exit (also after a failure or a TERM).
set -u
# shellcheck source=../lib/services.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/services.sh"

svc_init || { echo "0 passed, 1 failed"; exit 1; }

# --- ports -----------------------------------------------------------------------
t_begin "free_port: 20 distinct unused ports below the ephemeral range"
ports=()
for _ in $(seq 20); do ports+=("$(free_port)"); done
bad=
for p in "${ports[@]}"; do
    { [[ $p =~ ^[0-9]+$ ]] && [ "$p" -ge 10000 ] && [ "$p" -lt "$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range)" ]; } || bad+=" $p(range)"
    [ -z "$(ss -Htln "sport = :$p")" ] || bad+=" $p(listening)"
done
assert_eq "" "$bad" "bad ports"
assert_eq 20 "$(printf '%s\n' "${ports[@]}" | sort -u | wc -l)" "distinct ports"

t_begin "free_port_range: 4 consecutive unused ports"
base=$(free_port_range 4)
assert_match '^[0-9]+$' "$base" "range start"
busy=0
for ((i = 0; i < 4; i++)); do [ -z "$(ss -Htan "sport = :$((base + i))")" ] || busy=$((busy + 1)); done
assert_eq 0 "$busy" "ports of the range in use"

# --- PostgreSQL, schema, migrations ------------------------------------------------
t_begin "start_postgres"
start_postgres || t_abort "postgres did not start"
assert_match '^[0-9]+$' "$PG_PORT" "PG_PORT"
assert_eq "postgres://postgres@127.0.0.1:$PG_PORT/gw?sslmode=disable" "$POSTGRES_URI" "POSTGRES_URI"
assert_eq 1 "$(psql_gw 'SELECT 1')" "SELECT 1 on gw"
assert_match "127.0.0.1:$PG_PORT" "$(ss -Htln "sport = :$PG_PORT")" "listens on 127.0.0.1 only"
assert_eq off "$(psql_gw 'SHOW fsync')" "fsync"

t_begin "apply.sh on an empty database: schema and all migrations"
out=$(db_apply 2>&1)
rc=$?
assert_eq 0 "$rc" "apply.sh exit status"
assert_match 'applied schema\.sql' "$out" "schema applied"
for m in 001_notify_triggers 002_indexes 003_traffic_request_id 004_user_changes 005_ip_changes 006_user_limits; do
    assert_match "applied migration $m" "$out" "migration $m applied"
done
assert_eq "001_notify_triggers 002_indexes 003_traffic_request_id 004_user_changes 005_ip_changes 006_user_limits" \
    "$(psql_gw "SELECT string_agg(version, ' ' ORDER BY version) FROM schema_migrations")" \
    "schema_migrations rows"

t_begin "apply.sh a second time applies nothing"
out=$(db_apply 2>&1)
rc=$?
assert_eq 0 "$rc" "apply.sh exit status"
assert_match 'nothing to apply' "$out" "says nothing to apply"
if [[ $out =~ applied ]]; then t_fail "second run applied something" "$out"; fi
assert_eq 6 "$(psql_gw 'SELECT count(*) FROM schema_migrations')" "schema_migrations rows"

t_begin "tables, columns and indexes exist"
assert_eq "authorized_ips balances gw_ip_changes gw_user_changes proxies schema_migrations traffic_logs users" \
    "$(psql_gw "SELECT string_agg(tablename, ' ' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'")" \
    "tables"
assert_eq "text YES" \
    "$(psql_gw "SELECT data_type || ' ' || is_nullable FROM information_schema.columns
                WHERE table_name = 'traffic_logs' AND column_name = 'request_id'")" \
    "traffic_logs.request_id"
assert_eq "max_conns integer YES max_rps integer YES" \
    "$(psql_gw "SELECT string_agg(column_name || ' ' || data_type || ' ' || is_nullable, ' ' ORDER BY column_name)
                FROM information_schema.columns WHERE table_name = 'users' AND column_name LIKE 'max_%'")" \
    "006 users.max_conns, users.max_rps"
assert_fails "006 refuses a negative max_conns" \
    psql_gw "INSERT INTO users (username, password, max_conns) VALUES ('neg', 'x', -1)"
assert_fails "006 refuses a negative max_rps" \
    psql_gw "INSERT INTO users (username, password, max_rps) VALUES ('neg', 'x', -1)"
assert_match 'CREATE UNIQUE INDEX idx_traffic_logs_request_id ON public.traffic_logs USING btree \(request_id\)' \
    "$(psql_gw "SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_traffic_logs_request_id'")" \
    "unique index on request_id"
assert_eq 3 "$(psql_gw "SELECT count(*) FROM pg_indexes WHERE indexname IN
    ('idx_users_active_login', 'idx_authorized_ips_active_ip', 'idx_proxies_enabled')")" \
    "002 partial indexes"
for idx in idx_users_username idx_users_active idx_balances_user_id idx_authorized_ips_active \
    idx_proxies_visible_disabled idx_traffic_logs_user_id idx_traffic_logs_created_at; do
    assert_eq 1 "$(psql_gw "SELECT count(*) FROM pg_indexes WHERE indexname = '$idx'")" "reference index $idx"
done

assert_eq "gw_log_users_delete gw_log_users_insert gw_log_users_truncate gw_log_users_update" \
    "$(psql_gw "SELECT string_agg(tgname, ' ' ORDER BY tgname) FROM pg_trigger
                WHERE tgname LIKE 'gw_log_users_%'")" "004 triggers on users"
assert_eq "gw_log_authorized_ips_delete gw_log_authorized_ips_insert gw_log_authorized_ips_truncate gw_log_authorized_ips_update" \
    "$(psql_gw "SELECT string_agg(tgname, ' ' ORDER BY tgname) FROM pg_trigger
                WHERE tgname LIKE 'gw_log_authorized_ips_%'")" "005 triggers on authorized_ips"

t_begin "gw_user_changes: the usernames each statement touched, NULL for a bulk one"
psql_gw "DELETE FROM gw_user_changes"
psql_gw "INSERT INTO users (username, password) VALUES ('chg_a', 'x');
         UPDATE users SET username = 'chg_b' WHERE username = 'chg_a';
         DELETE FROM users WHERE username = 'chg_b'"
assert_eq "chg_a chg_a chg_b chg_b" \
    "$(psql_gw "SELECT string_agg(username, ' ' ORDER BY username) FROM gw_user_changes")" \
    "insert, rename (old and new), delete"
psql_gw "DELETE FROM gw_user_changes"
psql_gw "INSERT INTO users (username, password) SELECT 'chg' || i, 'x' FROM generate_series(1, 10001) i"
assert_eq "1|0" "$(psql_gw "SELECT count(*), count(username) FROM gw_user_changes")" \
    "more than 10,000 rows: one NULL row"
psql_gw "DELETE FROM users WHERE username LIKE 'chg%'"
psql_gw "UPDATE users SET password = password WHERE false"
assert_eq 2 "$(psql_gw "SELECT count(*) FROM gw_user_changes")" "a statement touching no row adds nothing"

t_begin "gw_ip_changes: the row ids each statement touched, NULL for a bulk one"
psql_gw "DELETE FROM gw_ip_changes"
id=$(psql_gw "INSERT INTO authorized_ips (ip) VALUES ('203.0.113.9') RETURNING id" | head -1)
psql_gw "UPDATE authorized_ips SET ip = '203.0.113.10' WHERE id = $id;
         UPDATE authorized_ips SET id = $id + 100000 WHERE id = $id;
         DELETE FROM authorized_ips WHERE id = $id + 100000"
assert_eq "$id $id $id $((id + 100000)) $((id + 100000))" \
    "$(psql_gw "SELECT string_agg(id::text, ' ' ORDER BY id) FROM gw_ip_changes")" \
    "insert, update, id change (old and new), delete"
psql_gw "DELETE FROM gw_ip_changes"
psql_gw "INSERT INTO authorized_ips (ip) SELECT '10.9.' || (i >> 8) || '.' || (i & 255) FROM generate_series(1, 10001) i"
assert_eq "1|0" "$(psql_gw "SELECT count(*), count(id) FROM gw_ip_changes")" \
    "more than 10,000 rows: one NULL row"
psql_gw "DELETE FROM authorized_ips WHERE ip LIKE '10.9.%'"
psql_gw "DELETE FROM gw_ip_changes"

t_begin "request_id: unique, NULL allowed many times"
uid=$(psql_gw "INSERT INTO users (username, password) VALUES ('rid_probe', 'x') RETURNING id")
psql_gw "INSERT INTO traffic_logs (user_id, total_bytes) VALUES ($uid, 1), ($uid, 2)"
psql_gw "INSERT INTO traffic_logs (user_id, total_bytes, request_id) VALUES ($uid, 3, 'r-1')"
assert_eq "" "$(psql_gw "INSERT INTO traffic_logs (user_id, request_id) VALUES ($uid, 'r-1')
                         ON CONFLICT (request_id) DO NOTHING RETURNING id")" \
    "ON CONFLICT (request_id) DO NOTHING skips a duplicate"
assert_fails "a duplicate request_id is rejected" \
    psql_gw "INSERT INTO traffic_logs (user_id, request_id) VALUES ($uid, 'r-1')"
assert_eq 3 "$(psql_gw "SELECT count(*) FROM traffic_logs WHERE user_id = $uid")" "rows"
psql_gw "DELETE FROM traffic_logs WHERE user_id = $uid; DELETE FROM users WHERE id = $uid"

t_begin "notify triggers exist on users, authorized_ips, proxies, balances"
assert_eq "authorized_ips:gw_notify_authorized_ips balances:gw_notify_balances proxies:gw_notify_proxies users:gw_notify_users" \
    "$(psql_gw "SELECT string_agg(tgrelid::regclass || ':' || tgname, ' ' ORDER BY tgrelid::regclass::text)
                FROM pg_trigger WHERE NOT tgisinternal AND tgname LIKE 'gw_notify_%'")" \
    "triggers"
# tgtype bits: 1 row, 4 insert, 8 delete, 16 update, 32 truncate; statement level, all four events.
assert_eq "60 60 60 60" \
    "$(psql_gw "SELECT string_agg(tgtype::text, ' ') FROM pg_trigger WHERE tgname LIKE 'gw_notify_%'")" \
    "statement-level INSERT/UPDATE/DELETE/TRUNCATE"

t_begin "LISTEN gw_snapshot in one session sees an INSERT INTO users from another"
listen_out=$GW_TMP/listen.out
psql -X -q -d "$POSTGRES_URI" >"$listen_out" 2>&1 <<'EOF' &
LISTEN gw_snapshot;
DO $$
BEGIN
    -- gw-listen-probe: wait (at most 10 s) until the other session's row is visible
    FOR i IN 1..200 LOOP
        EXIT WHEN EXISTS (SELECT 1 FROM users WHERE username = 'notify_probe');
        PERFORM pg_sleep(0.05);
    END LOOP;
END $$;
SELECT 'listener done';
EOF
listener=$!
listener_active() {
    [ "$(psql_gw "SELECT count(*) FROM pg_stat_activity
                  WHERE query LIKE '%gw-listen-probe%' AND state = 'active'
                  AND pid <> pg_backend_pid()")" = 1 ]
}
wait_until 10 listener_active || t_fail "listener session never became active"
psql_gw "INSERT INTO users (username, password) VALUES ('notify_probe', 'x')"
wait "$listener"
assert_match 'Asynchronous notification "gw_snapshot" with payload "users" received' \
    "$(cat "$listen_out")" "notification in the listening session"
psql_gw "DELETE FROM users WHERE username = 'notify_probe'"

t_begin "triggers notify for authorized_ips, proxies (incl. TRUNCATE), balances; not on rollback"
out=$(psql -X -q -d "$POSTGRES_URI" 2>&1 <<'EOF'
LISTEN gw_snapshot;
LISTEN gw_balances;
INSERT INTO authorized_ips (ip) VALUES ('192.0.2.1');
SELECT 'after authorized_ips';
TRUNCATE proxies;
SELECT 'after proxies';
INSERT INTO users (username, password) VALUES ('bal_probe', 'x');
INSERT INTO balances (user_id, traffic_bytes) SELECT id, 1 FROM users WHERE username = 'bal_probe';
SELECT 'after balances';
BEGIN;
UPDATE authorized_ips SET description = 'rolled back';
ROLLBACK;
SELECT 'after rollback';
DELETE FROM balances WHERE user_id IN (SELECT id FROM users WHERE username = 'bal_probe');
DELETE FROM users WHERE username = 'bal_probe';
DELETE FROM authorized_ips WHERE ip = '192.0.2.1';
EOF
)
assert_match 'notification "gw_snapshot" with payload "authorized_ips" received' "$out" "authorized_ips"
assert_match 'notification "gw_snapshot" with payload "proxies" received' "$out" "proxies (TRUNCATE)"
assert_match 'notification "gw_balances" with payload "balances" received' "$out" "balances on gw_balances"
after_rollback=$(printf '%s\n' "$out" | sed -n '/after balances/,/after rollback/p')
if [[ $after_rollback =~ notification ]]; then
    t_fail "a rolled-back transaction notified" "$after_rollback"
fi
if [[ $out =~ \"gw_snapshot\"\ with\ payload\ \"balances\" ]]; then
    t_fail "balances notified on gw_snapshot" "$out"
fi

# --- demo data -------------------------------------------------------------------------
t_begin "apply.sh --demo loads the demo data"
out=$(db_apply --demo 2>&1)
assert_eq 0 "$?" "apply.sh --demo exit status"
assert_match 'loaded demo\.sql' "$out" "demo loaded"
assert_eq "myuser|mypassword|t|10737418240|0" \
    "$(psql_gw "SELECT u.username, u.password, u.is_active, b.traffic_bytes, b.used_bytes
                FROM users u JOIN balances b ON b.user_id = u.id")" \
    "user and 10 GB balance"
assert_eq "10.0.0.0/8 127.0.0.1/32 203.0.113.50 ::1/128" \
    "$(psql_gw "SELECT string_agg(ip, ' ' ORDER BY ip) FROM authorized_ips WHERE is_active")" \
    "authorized ips"
providers=$(psql_gw "SELECT slug, is_global, country_format, base_url, port_min, port_max, is_visible, is_disabled
                     FROM proxies ORDER BY slug")
assert_eq "demo-de|f|ISO_LOWERCASE|127.0.0.1|24000|24003|t|f
demo-global|t|ISO|127.0.0.1|24000|24003|t|f
demo-us|f|NO_SPACES|127.0.0.1|24000|24003|t|f" "$providers" "providers"
assert_eq "de:p@ss/w0rd" "$(psql_gw "SELECT password FROM proxies WHERE slug = 'demo-de'")" \
    "demo-de password with ':' '@' '/'"
assert_match '^\{username\}.*\{country\}.*\{session_id\}.*\{duration\}:\{password\}@\{host\}:\{port\}$' \
    "$(psql_gw "SELECT url_template FROM proxies WHERE slug = 'demo-global'")" "template"

t_begin "apply.sh --demo again changes nothing"
before=$(psql_gw "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM balances),
                         (SELECT count(*) FROM authorized_ips), (SELECT count(*) FROM proxies)")
out=$(db_apply --demo 2>&1)
assert_eq 0 "$?" "exit status"
assert_eq "$before" "$(psql_gw "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM balances),
                              (SELECT count(*) FROM authorized_ips), (SELECT count(*) FROM proxies)")" \
    "row counts"
assert_eq "1|1|4|3" "$before" "users|balances|ips|proxies counts"
if [[ $out =~ applied ]]; then t_fail "second --demo applied a migration" "$out"; fi

t_begin "demo provider ports follow GW_DEMO_* overrides"
out=$(GW_DEMO_PORT_MIN=31000 GW_DEMO_PORT_MAX=31003 GW_DEMO_DE_PORT_MIN=32000 GW_DEMO_DE_PORT_MAX=32000 \
    db_apply --demo 2>&1)
assert_eq 0 "$?" "exit status ($out)"
assert_eq "demo-de|32000|32000 demo-global|31000|31003 demo-us|31000|31003" \
    "$(psql_gw "SELECT string_agg(slug || '|' || port_min || '|' || port_max, ' ' ORDER BY slug) FROM proxies")" \
    "overridden ports"
out=$(db_apply --demo 2>&1)
assert_eq "demo-de|24000|24003 demo-global|24000|24003 demo-us|24000|24003" \
    "$(psql_gw "SELECT string_agg(slug || '|' || port_min || '|' || port_max, ' ' ORDER BY slug) FROM proxies")" \
    "defaults restored"
out=$(GW_DEMO_PORT_MIN=70000 db_apply --demo 2>&1)
rc=$?
assert_eq 1 "$rc" "bad port: exit status"
assert_match 'GW_DEMO_PORT_MIN=70000 is not a TCP port' "$out" "bad port: message"
out=$(GW_DEMO_PORT_MIN=24005 db_apply --demo 2>&1)
assert_fails "min > max is refused" test "$?" = 0
out=$(psql -X -q -v ON_ERROR_STOP=1 -v demo_port_min=25000 -v demo_port_max=25001 \
    -f "$GW_ROOT/sql/demo.sql" -d "$POSTGRES_URI" 2>&1)
assert_eq "25000-25001" "$(psql_gw "SELECT DISTINCT port_min || '-' || port_max FROM proxies")" \
    "psql -v demo_port_min/max directly ($out)"
db_apply --demo >/dev/null 2>&1

# --- apply.sh on other databases --------------------------------------------------------
t_begin "apply.sh on a database created from the reference schema keeps its data"
psql_gw "CREATE DATABASE legacy"
legacy_uri="postgres://postgres@127.0.0.1:$PG_PORT/legacy?sslmode=disable"
psql -X -q -v ON_ERROR_STOP=1 -d "$legacy_uri" -f "$GW_ROOT/sql/schema.sql" >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -d "$legacy_uri" \
    -c "INSERT INTO users (username, password) VALUES ('old', 'pw');
        INSERT INTO traffic_logs (user_id, total_bytes) SELECT id, 42 FROM users" >/dev/null
out=$("$GW_ROOT/sql/apply.sh" "$legacy_uri" 2>&1)
assert_eq 0 "$?" "exit status"
if [[ $out =~ schema\.sql ]]; then t_fail "schema.sql re-applied over an existing database" "$out"; fi
assert_match 'applied migration 006_user_limits' "$out" "migrations applied"
assert_eq "old|42|" "$(psql -X -At -d "$legacy_uri" -c "SELECT u.username, t.total_bytes, t.request_id
                                                     FROM traffic_logs t JOIN users u ON u.id = t.user_id")" \
    "old rows intact, request_id NULL"

t_begin "two concurrent apply.sh runs apply each migration once"
psql_gw "CREATE DATABASE race"
race_uri="postgres://postgres@127.0.0.1:$PG_PORT/race?sslmode=disable"
"$GW_ROOT/sql/apply.sh" "$race_uri" >"$GW_TMP/race1.out" 2>&1 &
r1=$!
"$GW_ROOT/sql/apply.sh" "$race_uri" >"$GW_TMP/race2.out" 2>&1 &
r2=$!
wait "$r1"
rc1=$?
wait "$r2"
rc2=$?
assert_eq "0 0" "$rc1 $rc2" "both exit 0 ($(cat "$GW_TMP/race1.out" "$GW_TMP/race2.out"))"
assert_eq 1 "$(cat "$GW_TMP/race1.out" "$GW_TMP/race2.out" | grep -c 'applied schema.sql')" \
    "schema applied by exactly one run"
assert_eq 6 "$(psql -X -At -d "$race_uri" -c 'SELECT count(*) FROM schema_migrations')" "migrations recorded"

t_begin "apply.sh failures: clear message, non-zero, failed migration rolled back"
cp -r "$GW_ROOT/sql" "$GW_TMP/sqlcopy"
cat >"$GW_TMP/sqlcopy/migrations/004_broken.sql" <<'EOF'
BEGIN;
CREATE TABLE gw_broken_probe (x int);
SELECT 1 / 0;
COMMIT;
EOF
out=$("$GW_TMP/sqlcopy/apply.sh" "$POSTGRES_URI" 2>&1)
rc=$?
assert_fails "exit status non-zero" test "$rc" = 0
assert_match 'division by zero' "$out" "psql error shown"
assert_match 'psql failed \(exit [0-9]+\).*while applying migration 004_broken' "$out" "failed step named"
assert_eq "" "$(psql_gw "SELECT to_regclass('gw_broken_probe')")" "migration rolled back"
assert_eq 0 "$(psql_gw "SELECT count(*) FROM schema_migrations WHERE version = '004_broken'")" "not recorded"
dead_port=$(free_port)
out=$("$GW_ROOT/sql/apply.sh" "postgres://postgres:secret@127.0.0.1:$dead_port/gw" 2>&1)
rc=$?
assert_fails "unreachable server: exit status non-zero" test "$rc" = 0
assert_match "psql failed .* on postgres://postgres:\*\*\*@127.0.0.1:$dead_port/gw" "$out" \
    "unreachable server: message, password hidden"
assert_eq 2 "$("$GW_ROOT/sql/apply.sh" >/dev/null 2>&1; echo $?)" "no arguments: usage, exit 2"

t_begin "restart_postgres keeps the port and the data"
old_port=$PG_PORT
restart_postgres
assert_eq "$old_port" "$PG_PORT" "same port"
assert_eq 1 "$(psql_gw "SELECT count(*) FROM users WHERE username = 'myuser'")" "data survives"

# --- Redis --------------------------------------------------------------------------------
t_begin "start_redis: SET/GET"
start_redis || t_abort "redis did not start"
assert_eq "127.0.0.1:$REDIS_PORT" "$REDIS_ADDR" "REDIS_ADDR"
assert_eq OK "$(redis_gw SET balance:cache:myuser 12345)" "SET"
assert_eq 12345 "$(redis_gw GET balance:cache:myuser)" "GET"
assert_match "127.0.0.1:$REDIS_PORT" "$(ss -Htln "sport = :$REDIS_PORT")" "listens on 127.0.0.1"

t_begin "restart_redis: same port, answers again, nothing persisted"
old_port=$REDIS_PORT
old_pid=$REDIS_PID
restart_redis
assert_eq "$old_port" "$REDIS_PORT" "same port"
assert_eq PONG "$(redis_gw PING)" "PING after restart"
assert_fails "old redis process gone" kill -0 "$old_pid"
assert_eq "" "$(redis_gw GET balance:cache:myuser)" "no persistence (save \"\")"
assert_eq OK "$(redis_gw SET k v)" "SET after restart"

# --- HAProxy ---------------------------------------------------------------------------------
t_begin "start_haproxy with a port from the environment; stop_haproxy"
cat >"$GW_TMP/haproxy-test.cfg" <<'EOF'
global
    log stdout format raw local0
defaults
    mode http
    log global
    option httplog
    timeout connect 2s
    timeout client 5s
    timeout server 5s
frontend fe
    bind 127.0.0.1:"${T_HTTP_PORT}"
    http-request return status 200 content-type text/plain string "hello from haproxy"
EOF
http_port=$(free_port)
if start_haproxy "$GW_TMP/haproxy-test.cfg" T_HTTP_PORT="$http_port"; then
    assert_ok "wait_port $http_port" wait_port "$http_port" 5
    assert_eq "hello from haproxy" "$(curl -s --max-time 5 "http://127.0.0.1:$http_port/")" "curl"
    hp=$HAPROXY_PID
    stop_haproxy
    assert_fails "haproxy master gone" kill -0 "$hp"
    assert_eq "" "$(ss -Htln "sport = :$http_port")" "port released"
    assert_match 'GET / HTTP/1.1' "$(cat "$GW_TMP/haproxy.log")" "request logged to haproxy.log"
fi
cat >"$GW_TMP/bad.cfg" <<'EOF'
frontend broken
    bind 127.0.0.1:"${T_NOPE}"
    no-such-keyword
EOF
fails_before=$T_CASE_FAILED
start_haproxy "$GW_TMP/bad.cfg" >"$GW_TMP/bad-start.out" 2>&1
rc=$?
T_CASE_FAILED=$fails_before # the failure start_haproxy records is the expected one
assert_eq 1 "$rc" "a bad config is refused by haproxy -c"
assert_match 'rejected the config' "$(cat "$GW_TMP/bad-start.out")" "message"

# --- start_bg / stop_bg / wait_port ---------------------------------------------------------
t_begin "start_bg / stop_bg: a listener, its log, its exit status"
bg_port=$(free_port)
start_bg bgredis redis-server --port "$bg_port" --bind 127.0.0.1 --save '' --appendonly no
assert_ok "wait_port $bg_port" wait_port "$bg_port" 10
assert_ok "bg_alive" bg_alive bgredis
assert_eq "$BG_PID" "$(bg_pid bgredis)" "bg_pid"
stop_bg bgredis
assert_fails "not alive after stop_bg" bg_alive bgredis
assert_eq 0 "$BG_STATUS" "redis exit status after TERM"
assert_match 'Ready to accept connections' "$(cat "$GW_TMP/bgredis.log")" "log in \$GW_TMP/bgredis.log"
assert_fails "wait_port times out on a closed port" wait_port "$bg_port" 1

t_begin "stop_bg stops the whole process group, reports the signal"
# live (non-zombie) processes in a process group
group_live() { ps -eo pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/' | wc -l; }
start_bg tree bash -c 'sleep 300 & sleep 301 & wait'
tree_pgid=$(ps -o pgid= -p "$BG_PID" | tr -d ' ')
assert_eq "$BG_PID" "$tree_pgid" "the process leads its own group"
three_live() { [ "$(group_live "$tree_pgid")" -ge 3 ]; }
assert_ok "bash and its two sleeps run" wait_until 5 three_live
stop_bg tree
assert_eq 0 "$(group_live "$tree_pgid")" "live processes left in the group"
assert_eq 143 "$BG_STATUS" "exit status 128+TERM"
start_bg stubborn bash -c 'trap "" TERM; sleep 300 & wait; sleep 300'
GW_STOP_TIMEOUT=1 stop_bg stubborn
assert_fails "a process ignoring TERM is killed" bg_alive stubborn

t_begin "services are not children of the test shell: a bare wait returns"
start_bg sleeper sleep 300
curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$bg_port/" &
# A watchdog outside our job table: if the bare wait hangs, TERM ends the test.
( (sleep 20 && kill -TERM $$) >/dev/null 2>&1 & echo $! >"$GW_TMP/watchdog.pid")
start=$SECONDS
wait
kill "$(cat "$GW_TMP/watchdog.pid")" 2>/dev/null
assert_ok "bare wait returned within 6 s with redis, postgres and a start_bg process running" \
    test $((SECONDS - start)) -le 6
assert_ok "sleeper still running" bg_alive sleeper
assert_eq PONG "$(redis_gw PING)" "redis still running"

t_begin "signal_bg, bg_status, then stop_bg reports the status of an exited process"
start_bg quitter bash -c 'trap "exit 7" USR1; while :; do sleep 0.1; done'
signal_bg quitter USR1
quitter_done() { bg_status quitter >/dev/null; }
assert_ok "exit status recorded" wait_until 5 quitter_done
assert_eq 7 "$(bg_status quitter)" "bg_status"
stop_bg quitter
assert_eq 7 "$BG_STATUS" "BG_STATUS after stop_bg"
start_bg nosuch /nonexistent/command
nosuch_done() { bg_status nosuch >/dev/null; }
wait_until 5 nosuch_done
stop_bg nosuch
assert_eq 127 "$BG_STATUS" "a command that cannot run: 127"

# --- cleanup at exit -------------------------------------------------------------------------
# A child test script starts services, then fails (exit 3) or gets SIGTERM:
# its services and temp dir must be gone, its exit status kept.
child_test() { # <how: exit|term|keep> <info file>
    GW_KEEP=$([ "$1" = keep ] && echo 1 || echo 0) bash -c '
        . "$GW_ROOT/tests/lib/services.sh"
        svc_init
        start_redis >/dev/null 2>&1
        start_bg sleeper sleep 300
        echo "$GW_TMP $REDIS_PID $BG_PID" >"$2"
        case $1 in
        term) kill -TERM $$; sleep 5 ;;
        *) exit 3 ;;
        esac' child "$1" "$2" >/dev/null 2>&1
}

t_begin "cleanup after a failing test: services stopped, temp dir removed, status kept"
child_test exit "$GW_TMP/child1"
rc=$?
read -r c_tmp c_redis c_sleep <"$GW_TMP/child1"
assert_eq 3 "$rc" "exit status preserved"
assert_fails "redis stopped" kill -0 "$c_redis"
assert_fails "start_bg process stopped" kill -0 "$c_sleep"
assert_fails "temp dir removed" test -e "$c_tmp"

t_begin "cleanup after SIGTERM"
child_test term "$GW_TMP/child2"
rc=$?
read -r c_tmp c_redis c_sleep <"$GW_TMP/child2"
assert_eq 143 "$rc" "exit status 128+TERM"
assert_fails "redis stopped" kill -0 "$c_redis"
assert_fails "start_bg process stopped" kill -0 "$c_sleep"
assert_fails "temp dir removed" test -e "$c_tmp"

t_begin "GW_KEEP=1 keeps the temp dir (services still stopped)"
child_test keep "$GW_TMP/child3"
read -r c_tmp c_redis c_sleep <"$GW_TMP/child3"
assert_ok "temp dir kept" test -d "$c_tmp/redis"
assert_fails "redis stopped" kill -0 "$c_redis"
rm -rf "${c_tmp:?}"

t_summary
