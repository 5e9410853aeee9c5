#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# t_snapshot.sh: the snapshot store (agent/snapshot*.c) against a real
# PostgreSQL, through tests/tools/snapshot-probe (built here under ASan+UBSan,
# from the same objects as the agent): the first load, LISTEN/NOTIFY (a
# commit is seen within a second), bursts coalesced, bad rows skipped and
# counted, NULL flags read as the column defaults, a killed connection and a
# stopped server (the last snapshot keeps serving, the store recovers), a
# start from the snapshot file while PostgreSQL is down, and the refusal to
# start with neither.
set -u
# shellcheck source=../lib/services.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/services.sh"

svc_init || { echo "0 passed, 1 failed"; exit 1; }

PROBE_BIN=$GW_TMP/snapshot-probe
SNAP_FILE=$GW_TMP/snapshot.bin
PROBE_LOG=$GW_TMP/probe.log
REFRESH=2

# --- the probe ---------------------------------------------------------------------------

t_begin "build snapshot-probe (ASan+UBSan)"
# the Makefile links it from the snapshot module and agent/common/ alone
if ! out=$(make -s -C "$GW_ROOT" build/asan/snapshot-probe 2>&1); then
    t_fail "make build/asan/snapshot-probe" "$out"
    t_abort "the snapshot module does not build"
fi
cp "$GW_ROOT/build/asan/snapshot-probe" "$PROBE_BIN"
[ -x "$PROBE_BIN" ] || t_abort "no probe"
t_end

# probe_start <args...>: start the probe as a coprocess; PROBE_READY is its
# first line ("ready ..." or "start failed"), empty when it said nothing.
PROBE_PID=
probe_start() {
    coproc PROBE { exec "$PROBE_BIN" "$@" 2>>"$PROBE_LOG"; }
    PROBE_READY=
    read -r -t 60 PROBE_READY <&"${PROBE[0]}" || true
}

# probe <command...>: one command, one line of answer on stdout.
probe() {
    local line
    if [ -z "${PROBE_PID:-}" ] || ! kill -0 "$PROBE_PID" 2>/dev/null; then
        echo "probe not running"
        return 1
    fi
    printf '%s\n' "$*" >&"${PROBE[1]}"
    if ! read -r -t 60 line <&"${PROBE[0]}"; then
        echo "probe: no answer to '$*'"
        return 1
    fi
    printf '%s\n' "$line"
}

# probe_stop: quit, and the exit status (LeakSanitizer's verdict included)
# in PROBE_STATUS.
probe_stop() {
    local pid=${PROBE_PID:-} i
    PROBE_STATUS=
    [ -n "$pid" ] || return 0
    { printf 'quit\n' >&"${PROBE[1]}"; } 2>/dev/null
    for ((i = 0; i < 150; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    PROBE_STATUS=$?
    PROBE_PID=
}
probe_kill() {
    [ -n "${PROBE_PID:-}" ] && kill -KILL "$PROBE_PID" 2>/dev/null
    return 0
}
svc_on_exit probe_kill

# field <key> <line>: the value of key=value in a probe answer.
field() {
    sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"
}

generation() {
    field generation "$(probe status)"
}

ms_now() {
    date +%s%3N
}

# --- first load ---------------------------------------------------------------------------

t_begin "first load from PostgreSQL with the demo data"
start_postgres || t_abort "postgres did not start"
db_apply --demo >/dev/null || t_abort "sql/apply.sh --demo failed"
# --full-every -1: no periodic read of every row (the generation counts below
# would move with one); the safety net has its own case
probe_start --uri "$POSTGRES_URI" --path "$SNAP_FILE" --refresh "$REFRESH" --full-every -1 \
    --connect-timeout 2
assert_match '^ready generation=1 from_disk=0 .* users=1 ips=4 providers=3$' "$PROBE_READY" "ready line"
assert_eq "user myuser id=1 hash=0 password=mypassword" "$(probe user myuser)" "demo user"
assert_eq "user MyUser none" "$(probe user MyUser)" "usernames are case-sensitive"
assert_eq "ip 127.0.0.1 allow" "$(probe ip 127.0.0.1)" "127.0.0.1"
assert_eq "ip ::1 allow" "$(probe ip ::1)" "::1"
assert_eq "ip 10.20.30.40 allow" "$(probe ip 10.20.30.40)" "10.0.0.0/8"
assert_eq "ip ::ffff:10.1.1.1 allow" "$(probe ip ::ffff:10.1.1.1)" "mapped IPv4"
assert_eq "ip 192.0.2.1 deny" "$(probe ip 192.0.2.1)" "not whitelisted"
assert_eq "providers global 1 demo-global" "$(probe providers global)" "global providers"
assert_eq "providers country 2 demo-de demo-us" "$(probe providers country)" "country providers"
assert_match '^provider demo-de id=[0-9]+ host=127.0.0.1 addr=127.0.0.1 ports=24000-24003 global=0 format=ISO_LOWERCASE$' \
    "$(probe provider demo-de)" "demo-de fields"
st=$(probe status)
assert_match 'postgres_ok=1 from_disk=0 generation=1 loads_ok=1 loads_failed=0' "$st" "status"
assert_match 'skips bad_cidr=0 bad_port_range=0 bad_country_format=0 bad_template=0 unresolved_host=0 bad_user=0 duplicate=0' \
    "$(probe skips)" "nothing skipped"

t_begin "the snapshot file is written after the load (0600, GWSNAP v2)"
wait_until 10 test -s "$SNAP_FILE" || t_fail "no $SNAP_FILE"
assert_eq "94a6475753" "$(head -c 5 "$SNAP_FILE" | od -An -tx1 | tr -d ' \n')" "magic"
assert_eq "ce00000002" "$(head -c 13 "$SNAP_FILE" | tail -c 5 | od -An -tx1 | tr -d ' \n')" "version"
assert_eq 600 "$(stat -c %a "$SNAP_FILE")" "mode"
assert_eq "" "$(find "$GW_TMP" -maxdepth 1 -name 'snapshot.bin.tmp.*')" "no temporary file left"

# --- NOTIFY ---------------------------------------------------------------------------------

t_begin "a new user is seen within 1 s of the commit (NOTIFY)"
g=$(generation)
t0=$(ms_now)
psql_gw "INSERT INTO users (username, password) VALUES ('alice', 'alice-pw')"
w=$(probe wait-generation $((g + 1)) 1)
t1=$(ms_now)
assert_match '^generation ' "$w" "a new generation within 1 s"
assert_match '^user alice id=[0-9]+ hash=0 password=alice-pw$' "$(probe user alice)" "alice"
echo "    insert -> visible: $((t1 - t0)) ms (psql included)"

t_begin "updates, deletes and flags take effect"
g=$(generation)
psql_gw "UPDATE users SET is_active = false WHERE username = 'alice'"
probe wait-generation $((g + 1)) 2 >/dev/null
assert_eq "user alice none" "$(probe user alice)" "deactivated"
g=$(generation)
psql_gw "UPDATE users SET is_active = NULL, password = '\$6\$salt\$hash' WHERE username = 'alice'"
probe wait-generation $((g + 1)) 2 >/dev/null
assert_match '^user alice id=[0-9]+ hash=1 ' "$(probe user alice)" "is_active NULL counts as true; crypt hash"
g=$(generation)
psql_gw "INSERT INTO authorized_ips (ip) VALUES ('192.0.2.0/24'), ('2001:db8::/32')"
probe wait-generation $((g + 1)) 2 >/dev/null
assert_eq "ip 192.0.2.1 allow" "$(probe ip 192.0.2.1)" "new IPv4 prefix"
assert_eq "ip 2001:db8::99 allow" "$(probe ip 2001:db8::99)" "new IPv6 prefix"
g=$(generation)
psql_gw "UPDATE authorized_ips SET is_active = false WHERE ip = '192.0.2.0/24'"
probe wait-generation $((g + 1)) 2 >/dev/null
assert_eq "ip 192.0.2.1 deny" "$(probe ip 192.0.2.1)" "inactive prefix"
g=$(generation)
psql_gw "UPDATE proxies SET is_disabled = true WHERE slug = 'demo-us'"
probe wait-generation $((g + 1)) 2 >/dev/null
assert_eq "providers country 1 demo-de" "$(probe providers country)" "disabled provider left out"
g=$(generation)
psql_gw "UPDATE proxies SET is_disabled = false WHERE slug = 'demo-us'"
probe wait-generation $((g + 1)) 2 >/dev/null
assert_eq "providers country 2 demo-de demo-us" "$(probe providers country)" "enabled again"
g=$(generation)
psql_gw "DELETE FROM users WHERE username = 'alice'"
probe wait-generation $((g + 1)) 2 >/dev/null
assert_eq "user alice none" "$(probe user alice)" "deleted"

t_begin "a periodic refresh that finds nothing changed publishes no new generation"
wait_until 5 eval '[[ $(probe status) == *" loads_ok="* ]]'
st1=$(probe status)
sleep $((REFRESH * 2 + 1))
st2=$(probe status)
assert_eq "$(field generation "$st1")" "$(field generation "$st2")" "same generation"
assert_match '^[2-9]|^[1-9][0-9]' "$(($(field loads_ok "$st2") - $(field loads_ok "$st1")))" \
    "while the providers were read (loads_ok went up by at least 2)"
psql_gw "UPDATE proxies SET name = 'renamed' WHERE slug = 'demo-us'"
g=$(field generation "$st2")
assert_match '^generation ' "$(probe wait-generation $((g + 1)) 2)" "a real change still publishes"

t_begin "a change to users reads only the changed users (a delta): renames, removals"
psql_gw "INSERT INTO users (username, password) VALUES ('dora', 'dora-pw'), ('eve', 'eve-pw')"
wait_until 2 eval '[[ $(probe user eve) == "user eve id="* ]]'
g=$(generation)
psql_gw "UPDATE users SET username = 'dora2' WHERE username = 'dora';
         UPDATE users SET password = 'eve-pw2' WHERE username = 'eve'"
wait_until 2 eval '[[ $(probe user eve) == *"password=eve-pw2" ]]'
assert_eq "user dora none" "$(probe user dora)" "old name gone after a rename"
assert_match '^user dora2 id=[0-9]+ hash=0 password=dora-pw$' "$(probe user dora2)" "new name"
assert_match 'changed users and 0 changed whitelist rows applied' "$(cat "$PROBE_LOG")" "applied as a delta"
assert_eq "ip 10.20.30.40 allow" "$(probe ip 10.20.30.40)" "whitelist kept by the delta"

t_begin "a change to authorized_ips patches the whitelist (the changed rows alone are read)"
mark=$(wc -l <"$PROBE_LOG")
since_mark() { tail -n +"$((mark + 1))" "$PROBE_LOG"; }
# sync: a new row admitting 198.51.102.<n>, waited for: every commit before
# it has been applied once it is (a delta reads all changes since the last)
sync_n=0
sync() {
    sync_n=$((sync_n + 1))
    psql_gw "INSERT INTO authorized_ips (ip, description) VALUES ('198.51.102.$sync_n', 'sync')"
    wait_until 2 eval "[[ \$(probe ip 198.51.102.$sync_n) == *allow ]]"
}
psql_gw "INSERT INTO authorized_ips (ip) VALUES ('198.51.100.0/24')"
wait_until 2 eval '[[ $(probe ip 198.51.100.1) == *allow ]]'
assert_eq "ip 198.51.100.1 allow" "$(probe ip 198.51.100.1)" "an inserted row"
assert_eq "ip 10.20.30.40 allow" "$(probe ip 10.20.30.40)" "the rows that did not change"
assert_match '^user dora2 id=[0-9]+ hash=0 password=dora-pw$' "$(probe user dora2)" "the earlier user delta kept"
psql_gw "UPDATE authorized_ips SET ip = '198.51.101.0/24' WHERE ip = '198.51.100.0/24'"
wait_until 2 eval '[[ $(probe ip 198.51.100.1) == *deny ]]'
assert_eq "ip 198.51.100.1 deny" "$(probe ip 198.51.100.1)" "an updated row: the old prefix gone"
assert_eq "ip 198.51.101.1 allow" "$(probe ip 198.51.101.1)" "... and the new one in"
# two rows with the same prefix: removing one keeps the other (rows go by id)
psql_gw "INSERT INTO authorized_ips (ip, description) VALUES ('198.51.101.0/24', 'twin')"
sync
psql_gw "DELETE FROM authorized_ips WHERE ip = '198.51.101.0/24' AND description IS NULL"
sync
assert_eq "ip 198.51.101.1 allow" "$(probe ip 198.51.101.1)" "its twin row still admits it"
bad=$(field bad_cidr "$(probe skips)")
psql_gw "UPDATE authorized_ips SET ip = 'no-such-ip' WHERE description = 'twin'"
wait_until 2 eval '[[ $(probe ip 198.51.101.1) == *deny ]]'
assert_eq "ip 198.51.101.1 deny" "$(probe ip 198.51.101.1)" "a row turned bad is left out"
assert_eq $((bad + 1)) "$(field bad_cidr "$(probe skips)")" "and counted"
assert_match "skipped authorized_ips row id=[0-9]+: ip 'no-such-ip' is not an IP address or CIDR" \
    "$(since_mark)" "and logged"
psql_gw "DELETE FROM authorized_ips WHERE description IN ('twin', 'sync')"
wait_until 2 eval '[[ $(probe ip 198.51.102.1) == *deny ]]'
assert_eq "ip 198.51.102.2 deny" "$(probe ip 198.51.102.2)" "deleted rows gone"
assert_eq "ip 10.20.30.40 allow" "$(probe ip 10.20.30.40)" "the other rows kept through it all"
assert_match 'changed users and [0-9]+ changed whitelist rows applied' "$(since_mark)" "applied as patches"
assert_no_match 'from PostgreSQL \((whitelist|everything)' "$(since_mark)" \
    "neither the whitelist nor every user read again"
assert_eq "providers country 2 demo-de demo-us" "$(probe providers country)" "providers kept by the deltas"

t_begin "a statement changing more than 10,000 whitelist rows reads the whole whitelist, not every user"
mark=$(wc -l <"$PROBE_LOG")
psql_gw "INSERT INTO authorized_ips (ip, description) SELECT '100.77.' || (i >> 8) || '.' || (i & 255), 'bulk' FROM generate_series(0, 10000) i"
wait_until 5 eval '[[ $(probe ip 100.77.39.16) == *allow ]]'
assert_eq "ip 100.77.0.0 allow" "$(probe ip 100.77.0.0)" "bulk rows in"
assert_match 'reading the whole whitelist: a statement changed more rows than a delta lists' \
    "$(since_mark)" "why logged"
assert_match 'from PostgreSQL \(whitelist, (providers, )?changed users\)' "$(since_mark)" "a whitelist read"
assert_no_match 'reading every user' "$(since_mark)" "users not read again"
psql_gw "DELETE FROM authorized_ips WHERE description = 'bulk'"
wait_until 5 eval '[[ $(probe ip 100.77.0.0) == *deny ]]'
assert_eq "ip 100.77.39.16 deny" "$(probe ip 100.77.39.16)" "bulk rows gone"
# and a small change after it is a patch again
mark=$(wc -l <"$PROBE_LOG")
sync
assert_match 'changed whitelist rows applied' "$(since_mark)" "patched after the whole read"
psql_gw "DELETE FROM authorized_ips WHERE description = 'sync'"
wait_until 2 eval "[[ \$(probe ip 198.51.102.$sync_n) == *deny ]]"

t_begin "without gw_ip_changes (migration 005 undone), a whitelist change reads the whole whitelist"
mark=$(wc -l <"$PROBE_LOG")
psql_gw "DROP TRIGGER gw_log_authorized_ips_insert ON authorized_ips;
         DROP TRIGGER gw_log_authorized_ips_update ON authorized_ips;
         DROP TRIGGER gw_log_authorized_ips_delete ON authorized_ips;
         DROP TRIGGER gw_log_authorized_ips_truncate ON authorized_ips;
         DROP TABLE gw_ip_changes"
psql_gw "INSERT INTO authorized_ips (ip, description) VALUES ('198.51.103.1', 'no-log')"
wait_until 2 eval '[[ $(probe ip 198.51.103.1) == *allow ]]'
assert_eq "ip 198.51.103.1 allow" "$(probe ip 198.51.103.1)" "the change is seen"
assert_match 'reading the whole whitelist: gw_ip_changes is gone or not readable' "$(since_mark)" \
    "why logged"
assert_no_match 'reading every user' "$(since_mark)" "users not read again"
psql -X -q -v ON_ERROR_STOP=1 -d "$POSTGRES_URI" -f "$GW_ROOT/sql/migrations/005_ip_changes.sql" >/dev/null
psql_gw "DELETE FROM authorized_ips WHERE description = 'no-log'"
wait_until 2 eval '[[ $(probe ip 198.51.103.1) == *deny ]]'
mark=$(wc -l <"$PROBE_LOG")
sync
assert_match 'changed whitelist rows applied' "$(since_mark)" "patched again once the log is back"
psql_gw "DELETE FROM authorized_ips WHERE description = 'sync'"
wait_until 2 eval "[[ \$(probe ip 198.51.102.$sync_n) == *deny ]]"

n=$(field users "$(probe counts)")
psql_gw "DELETE FROM users WHERE username IN ('dora2', 'eve')"
wait_until 2 eval '[[ $(probe user dora2) == "user dora2 none" ]]'
assert_eq "user eve none" "$(probe user eve)" "deleted"
assert_eq $((n - 2)) "$(field users "$(probe counts)")" "user count follows"

t_begin "a statement changing more than 10,000 users makes the next load a whole one"
psql_gw "INSERT INTO users (username, password) SELECT 'bulk' || i, 'pw' FROM generate_series(1, 10001) i"
wait_until 5 eval '[[ $(probe user bulk10001) == "user bulk10001 id="* ]]'
assert_match '^user bulk1 id=' "$(probe user bulk1)" "bulk users loaded"
assert_match 'reading every user: a statement changed more users than a delta lists' \
    "$(cat "$PROBE_LOG")" "why logged"
psql_gw "DELETE FROM users WHERE username LIKE 'bulk%'"
wait_until 5 eval '[[ $(probe user bulk1) == "user bulk1 none" ]]'
assert_eq "user bulk10001 none" "$(probe user bulk10001)" "bulk users removed"
assert_eq $((n - 2)) "$(field users "$(probe counts)")" "user count back"

t_begin "a burst of 50 commits costs fewer than 50 loads, and all are seen"
g=$(generation)
sql=
for i in $(seq 1 50); do sql+="INSERT INTO users (username, password) VALUES ('burst$i', 'pw$i');"$'\n'; done
printf '%s' "$sql" | psql -X -q -v ON_ERROR_STOP=1 -d "$POSTGRES_URI" >/dev/null
for _ in $(seq 50); do
    [ "$(probe user burst50)" != "user burst50 none" ] && break
    sleep 0.1
done
sleep 0.5 # let a load for the last notifications land
g2=$(generation)
found=0
for i in $(seq 1 50); do
    [[ $(probe user "burst$i") == *" password=pw$i" ]] && found=$((found + 1))
done
assert_eq 50 "$found" "burst users visible"
loads=$((g2 - g))
echo "    50 commits -> $loads loads"
if [ "$loads" -lt 1 ] || [ "$loads" -ge 50 ]; then t_fail "loads for 50 commits: $loads"; fi

t_begin "bad rows are skipped, logged and counted; NULL flags are the column defaults"
g=$(generation)
psql_gw "BEGIN;
INSERT INTO authorized_ips (ip) VALUES ('not-an-ip'), ('10.0.0.0/40');
INSERT INTO users (username, password) VALUES ('', 'x');
INSERT INTO proxies (base_url, name, slug, username, password, url_template, port_min, port_max)
VALUES ('127.0.0.1', 'b', 'bad-ports', 'u', 'p', '', 2000, 1000),
       ('127.0.0.1', 'b', 'bad-port-zero', 'u', 'p', '', 0, 10);
INSERT INTO proxies (base_url, name, slug, username, password, url_template, port_min, port_max, country_format)
VALUES ('127.0.0.1', 'b', 'bad-format', 'u', 'p', '', 1, 2, 'ALPHA3');
INSERT INTO proxies (base_url, name, slug, username, password, url_template, port_min, port_max)
VALUES ('127.0.0.1', 'b', 'bad-tpl', 'u', 'p', '{nope}@{host}:{port}', 1, 2),
       ('nowhere.invalid', 'b', 'bad-host', 'u', 'p', '', 1, 2);
INSERT INTO proxies (base_url, name, slug, username, password, url_template, port_min, port_max,
                     is_visible, is_disabled, is_global, country_format)
VALUES ('http://127.0.0.1:3128/', 'n', 'null-flags', 'u', 'p', '', 5, 6, NULL, NULL, NULL, NULL),
       ('127.0.0.1', 'h', 'hidden-bad', 'u', 'p', '{nope}', 9, 1, false, false, false, 'X');
COMMIT;"
probe wait-generation $((g + 1)) 2 >/dev/null
assert_eq "skips bad_cidr=2 bad_port_range=2 bad_country_format=1 bad_template=1 unresolved_host=1 bad_user=1 duplicate=0" \
    "$(probe skips)" "skip counters"
assert_eq "providers country 3 demo-de demo-us null-flags" "$(probe providers country)" "good providers"
assert_match '^provider null-flags id=[0-9]+ host=127.0.0.1 addr=127.0.0.1 ports=5-6 global=0 format=ISO$' \
    "$(probe provider null-flags)" "NULL flags: visible, enabled, not global, ISO; scheme and port stripped"
assert_eq "user myuser id=1 hash=0 password=mypassword" "$(probe user myuser)" "good rows still served"
logs=$(cat "$PROBE_LOG")
assert_match "skipped authorized_ips row id=[0-9]+: ip 'not-an-ip' is not an IP address or CIDR" "$logs" "bad CIDR logged"
assert_match "skipped proxies row id=[0-9]+: port_min..port_max 2000..1000" "$logs" "bad port range logged"
assert_match "skipped proxies row id=[0-9]+: country_format 'ALPHA3'" "$logs" "bad country_format logged"
assert_match "skipped proxies row id=[0-9]+: url_template: " "$logs" "bad template logged"
assert_match "skipped proxies row id=[0-9]+: host 'nowhere.invalid' \\(slug 'bad-host'\\) does not resolve" "$logs" "unresolved host logged"
assert_match "skipped users row id=[0-9]+: empty username" "$logs" "bad user logged"
if grep -q "hidden-bad\|slug 'null-flags'" "$PROBE_LOG"; then t_fail "an ineligible or good provider was reported"; fi
psql_gw "DELETE FROM authorized_ips WHERE ip IN ('not-an-ip', '10.0.0.0/40');
DELETE FROM users WHERE username = '';
DELETE FROM proxies WHERE slug LIKE 'bad-%' OR slug = 'hidden-bad'" >/dev/null

# --- failures -------------------------------------------------------------------------------

t_begin "a killed connection is made again, and NOTIFY works on the new one"
g=$(generation)
assert_eq 1 "$(psql_gw "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                        WHERE application_name = 'gw-agent snapshot'")" "terminated the loader's backend"
# The DELETEs above may still have a NOTIFY in flight, so a new generation
# alone does not prove the reconnect: wait for the loss in the log first.
wait_until 10 grep -q "lost the PostgreSQL connection" "$PROBE_LOG"
assert_match "lost the PostgreSQL connection" "$(cat "$PROBE_LOG")" "loss logged"
g=$(generation)
psql_gw "UPDATE users SET is_active = is_active WHERE username = 'myuser'" >/dev/null
w=$(probe wait-generation $((g + 1)) 5)
assert_match '^generation ' "$w" "NOTIFY reaches the new connection"
psql_gw "INSERT INTO users (username, password) VALUES ('bob', 'bob-pw')"
# (a new generation alone may be the UPDATE's, read apart from the reconnect's load)
wait_until 2 eval '[[ $(probe user bob) == "user bob id="* ]]'
assert_match '^user bob id=' "$(probe user bob)" "bob, within 1 s, through NOTIFY on the new connection"

t_begin "PostgreSQL stopped: the last snapshot keeps serving, postgres_ok=0"
stop_postgres
assert_eq "pg down" "$(probe wait-pg down 10)" "postgres_ok turns false"
assert_eq "user myuser id=1 hash=0 password=mypassword" "$(probe user myuser)" "demo user still served"
assert_match '^user bob id=' "$(probe user bob)" "latest user still served"
assert_eq "ip 127.0.0.1 allow" "$(probe ip 127.0.0.1)" "whitelist still served"
assert_eq "providers country 3 demo-de demo-us null-flags" "$(probe providers country)" "providers still served"
sleep 3.5 # a few retries (1 s, 2 s, then every REFRESH s)
st=$(probe status)
assert_match 'postgres_ok=0 from_disk=0' "$st" "status while down"
failed=$(field loads_failed "$st")
if [ "${failed:-0}" -lt 2 ]; then t_fail "loads_failed=$failed: no retries while down" "$st"; fi
assert_match 'load from PostgreSQL failed: .*still serving the snapshot read at' "$(cat "$PROBE_LOG")" "failure logged with the snapshot's age"

t_begin "PostgreSQL back: the store recovers and follows NOTIFY again"
start_postgres || t_abort "postgres did not restart"
assert_eq "pg ok" "$(probe wait-pg ok $((REFRESH + 5)))" "postgres_ok turns true"
g=$(generation)
psql_gw "INSERT INTO users (username, password) VALUES ('carol', 'carol-pw')"
assert_match '^generation ' "$(probe wait-generation $((g + 1)) 1)" "NOTIFY after the restart"
assert_match '^user carol id=[0-9]+ hash=0 password=carol-pw$' "$(probe user carol)" "carol"
assert_match 'PostgreSQL is reachable again' "$(cat "$PROBE_LOG")" "recovery logged"

t_begin "a change made with the triggers disabled: missed by deltas, read by the periodic full read"
psql_gw "ALTER TABLE users DISABLE TRIGGER USER;
         UPDATE users SET password = 'quiet-pw' WHERE username = 'carol';
         ALTER TABLE users ENABLE TRIGGER USER"
psql_gw "NOTIFY gw_snapshot, 'users'" # a delta: the change log has nothing
sleep $((REFRESH * 2))
assert_match 'password=carol-pw$' "$(probe user carol)" "not seen without the full read"
sleep 0.5 # the file is written after the load
probe_stop
assert_eq 0 "$PROBE_STATUS" "probe exit status (no leaks)"
main_log=$PROBE_LOG
PROBE_LOG=$GW_TMP/probe-full.log
probe_start --uri "$POSTGRES_URI" --path "$GW_TMP/snapshot-full.bin" --refresh 1 --full-every 2 \
    --connect-timeout 2
psql_gw "ALTER TABLE users DISABLE TRIGGER USER;
         UPDATE users SET password = 'quiet-pw2' WHERE username = 'carol';
         ALTER TABLE users ENABLE TRIGGER USER"
wait_until 6 eval '[[ $(probe user carol) == *"password=quiet-pw2" ]]'
assert_match 'password=quiet-pw2$' "$(probe user carol)" "seen at the full read every 2 refreshes"
assert_match 'generation [2-9][0-9]* from PostgreSQL \(everything\)' "$(cat "$PROBE_LOG")" \
    "a periodic read of everything"
probe_stop
assert_eq 0 "$PROBE_STATUS" "probe exit status (no leaks)"
psql_gw "UPDATE users SET password = 'carol-pw' WHERE username = 'carol'"
PROBE_LOG=$main_log

t_begin "start while PostgreSQL is down: from the snapshot file, loudly, then recover"
stop_postgres
PROBE_LOG=$GW_TMP/probe2.log
probe_start --uri "$POSTGRES_URI" --path "$SNAP_FILE" --refresh "$REFRESH" --connect-timeout 2
assert_match '^ready generation=1 from_disk=1 ' "$PROBE_READY" "ready from disk"
assert_match '^user carol id=[0-9]+ hash=0 password=carol-pw$' "$(probe user carol)" "last load's users"
assert_eq "ip 2001:db8::1 allow" "$(probe ip 2001:db8::1)" "last load's whitelist"
assert_match '^provider demo-us id=[0-9]+ host=127.0.0.1 addr=127.0.0.1 ports=24000-24003 global=0 format=NO_SPACES$' \
    "$(probe provider demo-us)" "last load's providers"
assert_match 'postgres_ok=0 from_disk=1 generation=1 loads_ok=0' "$(probe status)" "status from disk"
assert_match 'STARTING ON STALE DATA from the snapshot file .*snapshot.bin, read from PostgreSQL at [0-9T:-]+Z' \
    "$(cat "$PROBE_LOG")" "stale data logged loudly"
start_postgres || t_abort "postgres did not restart"
assert_eq "pg ok" "$(probe wait-pg ok $((REFRESH + 5)))" "recovers once PostgreSQL is back"
assert_match 'postgres_ok=1 from_disk=0 generation=2 loads_ok=1' "$(probe status)" "status after recovery"
probe_stop
assert_eq 0 "$PROBE_STATUS" "probe exit status (no leaks)"

t_begin "PostgreSQL up but without the tables: start from the file, load once they exist"
psql_gw "CREATE DATABASE gw_empty" >/dev/null
EMPTY_URI="postgres://postgres@127.0.0.1:$PG_PORT/gw_empty?sslmode=disable"
PROBE_LOG=$GW_TMP/probe3.log
cp "$SNAP_FILE" "$GW_TMP/snapshot3.bin"
probe_start --uri "$EMPTY_URI" --path "$GW_TMP/snapshot3.bin" --refresh 30 --connect-timeout 2
assert_match '^ready generation=1 from_disk=1 ' "$PROBE_READY" "ready from disk"
assert_match 'cannot load the first snapshot from PostgreSQL: .*relation "proxies" does not exist' \
    "$(cat "$PROBE_LOG")" "why logged"
"$GW_ROOT/sql/apply.sh" "$EMPTY_URI" >/dev/null || t_fail "apply.sh on gw_empty"
# retried after 1 s, 2 s, 4 s: not after the 30 s refresh
assert_eq "pg ok" "$(probe wait-pg ok 10)" "loads once the tables exist"
assert_eq "counts users=0 ips=0 providers=0 global=0 country=0" "$(probe counts)" "the database is the truth"
probe_stop
assert_eq 0 "$PROBE_STATUS" "probe exit status (no leaks)"

t_begin "neither PostgreSQL nor a usable file: a clear error and exit 1"
stop_postgres
rc=0
out=$("$PROBE_BIN" --uri "$POSTGRES_URI" --path "$GW_TMP/missing.bin" --connect-timeout 2 \
    </dev/null 2>"$GW_TMP/probe-fail.log") || rc=$?
assert_eq 1 "$rc" "exit status (missing file)"
assert_eq "start failed" "$out" "probe output"
assert_match 'no snapshot to start with: PostgreSQL is unreachable and there is no usable snapshot file \(cannot open .*missing.bin: No such file or directory\)' \
    "$(cat "$GW_TMP/probe-fail.log")" "error line"
printf 'garbage that is not a snapshot file at all' >"$GW_TMP/garbage.bin"
rc=0
"$PROBE_BIN" --uri "$POSTGRES_URI" --path "$GW_TMP/garbage.bin" --connect-timeout 2 \
    </dev/null >/dev/null 2>"$GW_TMP/probe-fail.log" || rc=$?
assert_eq 1 "$rc" "exit status (garbage file)"
assert_match 'garbage.bin: not a gw-agent snapshot file' "$(cat "$GW_TMP/probe-fail.log")" "garbage refused"
head -c 200 "$SNAP_FILE" >"$GW_TMP/cut.bin"
rc=0
"$PROBE_BIN" --uri "$POSTGRES_URI" --path "$GW_TMP/cut.bin" --connect-timeout 2 \
    </dev/null >/dev/null 2>"$GW_TMP/probe-fail.log" || rc=$?
assert_eq 1 "$rc" "exit status (truncated file)"
assert_match 'cut.bin: truncated: the header announces [0-9]+ body bytes, 173 follow' \
    "$(cat "$GW_TMP/probe-fail.log")" "truncated file refused"

t_summary
