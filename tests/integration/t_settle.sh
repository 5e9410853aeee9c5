#!/usr/bin/env bash
# The settlement worker (gw-settle) against real PostgreSQL and Redis: records
# pushed on traffic:logs become exactly one traffic_logs row each, their
# bytes are charged once to balances.used_bytes, and balance:cache:{user}
# follows traffic_bytes - used_bytes; through duplicates, malformed records,
# SIGTERM, SIGKILL in the middle of a batch, and Redis and PostgreSQL
# restarts. Also: what survives to PostgreSQL of every JSON escape, users
# without a balances row, a record PostgreSQL itself refuses, and a balance
# changed in PostgreSQL reaching the cache within a second.
set -u
. "$(dirname "$0")/../lib/services.sh"
svc_init
SETTLE=${GW_SETTLE:-$GW_ROOT/build/asan/gw-settle}
[ -x "$SETTLE" ] || t_abort "no $SETTLE (make build/asan/gw-settle)"
start_postgres || t_abort "postgres did not start"
db_apply --demo >/dev/null || t_abort "schema"
start_redis || t_abort "redis did not start"

# gen <prefix> <n> [user]: n records, request_id <prefix>-1 .. <prefix>-n;
# record i moves i + (2i + 1) bytes: the n records 3n(n+1)/2 + n in all.
gen() {
    awk -v p="$1" -v n="$2" -v u="${3:-myuser}" 'BEGIN {
        for (i = 1; i <= n; i++)
            printf "{\"username\":\"%s\",\"request_bytes\":%d,\"response_bytes\":%d," \
                "\"target_host\":\"example.com:443\",\"target_method\":\"CONNECT\"," \
                "\"proxy_slug\":\"demo-de\",\"country\":\"DE\",\"session_id\":\"s%d\"," \
                "\"duration\":5,\"status_code\":200,\"client_ip\":\"127.0.0.1\"," \
                "\"timestamp\":%.0f,\"request_id\":\"%s-%d\"}\n",
                u, i, 2 * i + 1, i, 1703001234567 + i, p, i
    }'
}
total_of() { echo $((3 * $1 * ($1 + 1) / 2 + $1)); }

# push [list]: JSON lines on stdin, RPUSHed in order (RESP through redis-cli --pipe).
push() {
    LC_ALL=C awk -v k="${1:-traffic:logs}" '{
        printf "*3\r\n$5\r\nRPUSH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, length($0), $0
    }' | redis_gw --pipe >/dev/null
}

rows_of() { # <prefix>: "count|bytes" of its rows
    psql_gw "SELECT count(*), COALESCE(sum(total_bytes), 0) FROM traffic_logs WHERE request_id LIKE '$1-%'"
}
# used_bytes equals what traffic_logs holds for the user: nothing charged twice or missed
check_ledger() { # <user>
    assert_eq "$(psql_gw "SELECT COALESCE(sum(t.total_bytes), 0) FROM traffic_logs t
                          JOIN users u ON u.id = t.user_id WHERE u.username = '$1'")" \
        "$(psql_gw "SELECT b.used_bytes FROM balances b JOIN users u ON u.id = b.user_id
                    WHERE u.username = '$1'")" "$1: balances.used_bytes = sum of its traffic_logs rows"
}
remaining_of() {
    psql_gw "SELECT b.traffic_bytes - b.used_bytes FROM balances b JOIN users u ON u.id = b.user_id
             WHERE u.username = '$1'"
}
cache_is() { [ "$(redis_gw GET "balance:cache:$1")" = "$2" ]; }
key_absent() { [ -z "$(redis_gw GET "$1")" ]; }
check_cache() { # <user>: balance:cache:<user> = traffic - used (within 2 s)
    local want
    want=$(remaining_of "$1")
    wait_until 2 cache_is "$1" "$want"
    assert_eq "$want" "$(redis_gw GET "balance:cache:$1")" "balance:cache:$1 = traffic_bytes - used_bytes"
}
drained() {
    [ "$(redis_gw LLEN traffic:logs)" = 0 ] && [ "$(redis_gw LLEN traffic:logs:processing)" = 0 ]
}
wait_drained() {
    wait_until "${1:-60}" drained
    assert_eq "0 0" "$(redis_gw LLEN traffic:logs) $(redis_gw LLEN traffic:logs:processing)" \
        "traffic:logs and traffic:logs:processing drained"
}
at_least() { # <prefix> <n>: at least n rows settled
    local c
    c=$(rows_of "$1")
    [ "${c%%|*}" -ge "$2" ]
}
settle_up() {
    start_bg settle "$SETTLE" --postgres-uri "$POSTGRES_URI" --redis-addr "$REDIS_ADDR" \
        --backoff-max-ms 1000 "$@"
}
settle_down() { # [signal]: stop, expect exit 0 after TERM
    stop_bg settle "${1:-TERM}"
    [ "${1:-TERM}" != TERM ] || assert_eq 0 "$BG_STATUS" "gw-settle exit status after SIGTERM"
}

t_begin "--help lists every setting; bad configuration exits 2"
out=$("$SETTLE" --help)
assert_eq 0 $? "--help exit status"
for v in POSTGRES_URI REDIS_ADDR REDIS_PASSWORD REDIS_DB LOG_LEVEL GW_SETTLE_BATCH \
    GW_SETTLE_IDLE_MS GW_SETTLE_PAUSE_MS GW_SETTLE_TIMEOUT_MS GW_SETTLE_BACKOFF_MAX_MS; do
    assert_match "env $v," "$out" "--help names $v"
done
rc=0
out=$(env -u POSTGRES_URI "$SETTLE" 2>&1) || rc=$?
assert_eq 2 "$rc" "no POSTGRES_URI: exit 2"
assert_match 'POSTGRES_URI is required' "$out" "says why"
rc=0
GW_SETTLE_BATCH=0 "$SETTLE" --postgres-uri x >/dev/null 2>&1 || rc=$?
assert_eq 2 "$rc" "GW_SETTLE_BATCH=0: exit 2"
rc=0
"$SETTLE" --postgres-uri x --redis-addr nohost >/dev/null 2>&1 || rc=$?
assert_eq 2 "$rc" "REDIS_ADDR without a port: exit 2"
t_end

t_begin "at start: leftovers in traffic:logs:processing settled first; cache SET, or DEL without a balances row"
psql_gw "INSERT INTO users (username, password) VALUES ('nobal', 'pw')" >/dev/null
redis_gw SET balance:cache:nobal 5 >/dev/null
redis_gw SET balance:cache:myuser 1 >/dev/null
gen left 3 | push traffic:logs:processing
gen fresh 2 | push
settle_up
wait_drained 30
assert_eq "3|$(total_of 3)" "$(rows_of left)" "the 3 left in processing"
assert_eq "2|$(total_of 2)" "$(rows_of fresh)" "the 2 in the queue"
assert_eq "1 2 3 4 5" "$(psql_gw "SELECT string_agg(t.id::text, ' ' ORDER BY t.id) FROM traffic_logs t")" \
    "ids in order: processing first"
assert_eq "left-1 left-2 left-3 fresh-1 fresh-2" \
    "$(psql_gw "SELECT string_agg(request_id, ' ' ORDER BY id) FROM traffic_logs")" "leftovers first"
check_cache myuser
wait_until 2 key_absent balance:cache:nobal
assert_eq "" "$(redis_gw GET balance:cache:nobal)" "no balances row: key deleted (absent = allow)"
assert_eq "2023-12-19 15:53:54.568|myuser|1|3|4|example.com:443|CONNECT|demo-de|DE|s1|5|200|127.0.0.1" \
    "$(psql_gw "SELECT t.created_at, u.username, t.request_bytes, t.response_bytes, t.total_bytes,
                t.target_host, t.target_method, t.proxy_slug, t.country, t.session_id, t.duration,
                t.status_code, t.client_ip FROM traffic_logs t JOIN users u ON u.id = t.user_id
                WHERE request_id = 'left-1'")" "a row: every column (created_at in UTC)"
t_end

t_begin "10,000 records: exactly 10,000 rows, used_bytes their sum, cache = traffic - used"
used0=$(psql_gw "SELECT used_bytes FROM balances WHERE user_id = (SELECT id FROM users WHERE username = 'myuser')")
gen a 10000 >"$GW_TMP/a.jsonl"
start=$(date +%s%N)
push <"$GW_TMP/a.jsonl"
wait_drained 120
ms=$((($(date +%s%N) - start) / 1000000))
echo "    (10,000 records settled in ${ms} ms by the ASan build)"
assert_eq "10000|$(total_of 10000)" "$(rows_of a)" "rows and bytes"
assert_eq "$((used0 + $(total_of 10000)))" \
    "$(psql_gw "SELECT used_bytes FROM balances WHERE user_id = (SELECT id FROM users WHERE username = 'myuser')")" \
    "used_bytes grew by exactly the sum"
check_ledger myuser
check_cache myuser
t_end

t_begin "the same records pushed again: applied once"
push <"$GW_TMP/a.jsonl"
gen dup 1 >"$GW_TMP/dup.jsonl"
cat "$GW_TMP/dup.jsonl" "$GW_TMP/dup.jsonl" "$GW_TMP/dup.jsonl" | push # three copies, one batch
wait_drained 120
assert_eq "10000|$(total_of 10000)" "$(rows_of a)" "still 10,000 rows"
assert_eq "1|4" "$(rows_of dup)" "three copies in one batch: one row"
check_ledger myuser
check_cache myuser
assert_eq 0 "$(redis_gw LLEN traffic:logs:dead)" "duplicates are not dead letters"
t_end

t_begin "malformed records go to traffic:logs:dead with a reason and do not block the rest"
{
    gen b 1
    echo 'not json'
    echo '{"username":"myuser"}'
    gen b 2 | tail -n 1
    gen ghost 1 nosuchuser
    gen b 3 | tail -n 1 | sed 's/"duration":5/"duration":{"x":1}/'
    gen b 3 | tail -n 1 | sed 's/"request_id":"b-3"/"request_id":"b-3","request_id":"b-3"/'
    gen b 3 | tail -n 1 | sed 's/"request_bytes":3/"request_bytes":-3/'
    gen b 3 | tail -n 1 | sed 's/}$/} trailing/'
    gen b 3 | tail -n 1
} | push
printf '{"username":"myuser","bad":"\xff\xfe"}' | redis_gw -x RPUSH traffic:logs >/dev/null
gen b 4 | tail -n 1 | push
wait_drained 30
assert_eq "4|$(total_of 4)" "$(rows_of b)" "the 4 good records settled"
assert_eq 8 "$(redis_gw LLEN traffic:logs:dead)" "8 dead letters"
dead=$(redis_gw LRANGE traffic:logs:dead 0 -1)
assert_match '^\{"reason":"invalid JSON at byte 0: expected an object","record":"not json"\}' "$dead" "bad JSON"
assert_match '\{"reason":"missing member \\"request_bytes\\"","record":"\{\\"username\\":\\"myuser\\"\}"\}' "$dead" "missing member"
assert_match '\{"reason":"unknown username","record":"\{\\"username\\":\\"nosuchuser\\"' "$dead" "unknown user"
assert_match '"reason":"invalid JSON at byte [0-9]+: nested objects and arrays are not accepted"' "$dead" "nested"
assert_match '"reason":"duplicate member \\"request_id\\""' "$dead" "duplicate member"
assert_match '"reason":"request_bytes: -3 is out of range' "$dead" "negative bytes"
assert_match '"reason":"invalid JSON at byte [0-9]+: trailing bytes after the object"' "$dead" "trailing bytes"
assert_match '"reason":"invalid JSON at byte 28: invalid UTF-8 in a string","record":"\{\\"username\\":\\"myuser\\",\\"bad\\":\\"\\ufffd\\ufffd\\"\}","record_base64":"eyJ1c2VybmFtZSI6Im15dXNlciIsImJhZCI6Iv/\+In0="' \
    "$dead" "not UTF-8: record_base64 keeps the exact bytes"
assert_match 'dead letter to traffic:logs:dead: unknown username' "$(cat "$GW_TMP/settle.log")" "logged"
check_ledger myuser
t_end

t_begin "every JSON escape reaches PostgreSQL intact; U+0000 as U+FFFD; long hosts cut to the column"
host='q\" b\\ s\/ {a,b} \u00e9\u20ac\ud83d\ude00 \u0001\t NULL \u0000 end'
long=$(printf 'h%.0s' $(seq 300))
rec() { # <target_host as JSON text> <request_id>
    printf '{"username":"myuser","request_bytes":1,"response_bytes":3,"target_host":"%s",' "$1"
    printf '"target_method":"GET","proxy_slug":"p","country":"","session_id":"","duration":5,'
    printf '"status_code":200,"client_ip":"::1","timestamp":1703001234567,"request_id":"%s"}\n' "$2"
}
{
    rec "$host" esc-1
    rec "$long" esc-2
} | push
wait_drained 30
want=$(printf 'q" b\\ s/ {a,b} \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 \x01\t NULL \xef\xbf\xbd end' | od -An -tx1 | tr -d ' \n')
assert_eq "$want" "$(psql_gw "SELECT encode(convert_to(target_host, 'UTF8'), 'hex') FROM traffic_logs WHERE request_id = 'esc-1'")" \
    "target_host byte for byte"
assert_eq 255 "$(psql_gw "SELECT length(target_host) FROM traffic_logs WHERE request_id = 'esc-2'")" \
    "a 300-character host cut to VARCHAR(255), still billed"
t_end

t_begin "a user without a balances row: one is created (traffic 0), charged, cache <= 0"
psql_gw "INSERT INTO users (username, password) VALUES ('newbie', 'pw')" >/dev/null
gen nb 2 newbie | push
wait_drained 30
assert_eq "0|$(total_of 2)" "$(psql_gw "SELECT b.traffic_bytes, b.used_bytes FROM balances b
                                         JOIN users u ON u.id = b.user_id WHERE u.username = 'newbie'")" \
    "balances row created"
check_cache newbie
assert_eq "-$(total_of 2)" "$(redis_gw GET balance:cache:newbie)" "cache is negative: 402 from now on"
t_end

t_begin "a record PostgreSQL refuses is dead-lettered alone; the rest of its batch is settled"
psql_gw "ALTER TABLE traffic_logs ADD CONSTRAINT t_settle_no_teapot CHECK (status_code <> 418)" >/dev/null
{
    gen tea 5 | sed '3s/"status_code":200/"status_code":418/'
} | push
wait_drained 30
assert_eq "4|$(($(total_of 5) - 10))" "$(rows_of tea)" "4 of 5 settled (not the third)"
assert_match '"reason":"PostgreSQL refused the record: .*t_settle_no_teapot.*SQLSTATE 23514' \
    "$(redis_gw LINDEX traffic:logs:dead -1)" "the third is a dead letter, with PostgreSQL's reason"
psql_gw "ALTER TABLE traffic_logs DROP CONSTRAINT t_settle_no_teapot" >/dev/null
check_ledger myuser
t_end

t_begin "a balance changed in PostgreSQL reaches balance:cache within a second"
for delta in 1000 -250000 77; do
    psql_gw "UPDATE balances SET traffic_bytes = traffic_bytes + ($delta)
             WHERE user_id = (SELECT id FROM users WHERE username = 'myuser')" >/dev/null
    want=$(remaining_of myuser)
    start=$(date +%s%N)
    wait_until 3 cache_is myuser "$want"
    ms=$((($(date +%s%N) - start) / 1000000))
    assert_eq "$want" "$(redis_gw GET balance:cache:myuser)" "cache after traffic_bytes += $delta"
    [ "$ms" -lt 1000 ] || t_fail "took $ms ms (want < 1000)"
done
psql_gw "DELETE FROM balances WHERE user_id = (SELECT id FROM users WHERE username = 'newbie')" >/dev/null
wait_until 3 key_absent balance:cache:newbie
assert_eq "" "$(redis_gw GET balance:cache:newbie)" "balances row deleted: key deleted"
t_end

t_begin "SIGTERM finishes the current batch, then exits 0"
settle_down
settle_up --batch 100 --pause-ms 1500
gen term 300 | push
wait_until 20 at_least term 100
settle_down TERM
assert_eq 0 "$(redis_gw LLEN traffic:logs:processing)" "the batch was acknowledged before exit"
c=$(rows_of term)
assert_eq 300 "$((${c%%|*} + $(redis_gw LLEN traffic:logs)))" "settled + still queued = 300"
settle_up
wait_drained 60
assert_eq "300|$(total_of 300)" "$(rows_of term)" "all 300 after a restart"
t_end

t_begin "SIGKILL between COMMIT and acknowledgement, twice: every record applied exactly once"
settle_down
gen kill 5000 | push
# the first processing record is in PostgreSQL: committed, not yet acknowledged
committed_unacked() {
    local head rid
    head=$(redis_gw LINDEX traffic:logs:processing 0)
    rid=$(printf '%s' "$head" | sed -n 's/.*"request_id":"\([^"]*\)".*/\1/p')
    [ -n "$rid" ] && [ "$(psql_gw "SELECT count(*) FROM traffic_logs WHERE request_id = '$rid'")" = 1 ]
}
for round in 1 2; do
    settle_up --batch 500 --pause-ms 400
    wait_until 60 at_least kill $((round * 1000))
    wait_until 10 committed_unacked
    assert_ok "round $round: a committed batch still in processing" committed_unacked
    settle_down KILL
    echo "    (round $round: killed with $(redis_gw LLEN traffic:logs:processing) records in processing)"
done
settle_up
wait_drained 120
assert_eq "5000|$(total_of 5000)" "$(rows_of kill)" "5,000 rows, exact bytes"
check_ledger myuser
check_cache myuser
t_end

t_begin "Redis stopped and restarted mid-run: nothing lost, nothing doubled"
settle_down
settle_up --batch 200 --pause-ms 100
gen redis 3000 | push
wait_until 60 at_least redis 600
redis_gw SAVE >/dev/null # the restarted Redis reloads this (its config saves nothing itself)
stop_redis
sleep 1.5
start_redis "$REDIS_PORT" || t_abort "redis did not restart"
assert_match '^[1-9]' "$(redis_gw LLEN traffic:logs)" "the restarted Redis still has the queue"
wait_drained 120
assert_eq "3000|$(total_of 3000)" "$(rows_of redis)" "3,000 rows, exact bytes"
check_ledger myuser
check_cache myuser
assert_ok "still running" bg_alive settle
assert_match 'Redis 127.0.0.1:[0-9]+ connected' "$(tail -n 50 "$GW_TMP/settle.log")" "reconnected"
t_end

t_begin "PostgreSQL stopped and restarted mid-run: nothing lost, nothing doubled"
# 20,000 records: the ASan build settles ~15,000/s, so the stop lands mid-run
# (with 3,000 it could find everything settled already)
gen pg 20000 | push
wait_until 60 at_least pg 600
stop_postgres
sleep 2
assert_match '^[1-9]' "$(redis_gw LLEN traffic:logs:processing)" "a batch waits in processing"
start_postgres || t_abort "postgres did not restart"
wait_drained 120
assert_eq "20000|$(total_of 20000)" "$(rows_of pg)" "20,000 rows, exact bytes"
check_ledger myuser
check_cache myuser
assert_ok "still running" bg_alive settle
t_end

t_begin "SIGTERM while idle: exit 0, nothing left behind (no leak under ASan)"
settle_down TERM
assert_eq 0 "$(redis_gw LLEN traffic:logs:processing)" "processing empty"
assert_match 'stopping: [0-9]+ records taken' "$(tail -n 3 "$GW_TMP/settle.log")" "final counters logged"
t_end

t_summary
