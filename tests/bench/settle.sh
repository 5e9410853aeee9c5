#!/usr/bin/env bash
# tests/bench/settle.sh: the settlement worker's drain rate. Pushes
# BENCH_SETTLE_RECORDS (default 100,000) billing records on traffic:logs
# (redis-cli --pipe), 100 users, then times gw-settle (the release build)
# draining them into PostgreSQL, for a few batch sizes; prints records/s.
# Also the rate with every record a duplicate (the same records again), and
# the time a balance change in PostgreSQL takes to reach balance:cache.
# Prints figures, asserts nothing (`make bench` runs it).
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/services.sh"
svc_init || exit 1

SETTLE=${GW_BENCH_SETTLE:-$GW_ROOT/agent/gw-settle}
N=${BENCH_SETTLE_RECORDS:-100000}
[ -x "$SETTLE" ] || { echo "no $SETTLE (make agent/gw-settle)" >&2; exit 1; }
start_postgres || exit 1
db_apply --demo >/dev/null || exit 1
start_redis || exit 1
psql_gw "INSERT INTO users (username, password) SELECT 'user' || i, 'pw' FROM generate_series(1, 100) i;
         INSERT INTO balances (user_id, traffic_bytes) SELECT id, 1000000000000 FROM users
         ON CONFLICT (user_id) DO NOTHING" >/dev/null

# records <prefix>: N records as RPUSH commands in RESP, for redis-cli --pipe
records() {
    LC_ALL=C awk -v p="$1" -v n="$N" 'BEGIN {
        for (i = 1; i <= n; i++) {
            r = sprintf("{\"username\":\"user%d\",\"request_bytes\":%d,\"response_bytes\":%d," \
                "\"target_host\":\"host%d.example.com:443\",\"target_method\":\"CONNECT\"," \
                "\"proxy_slug\":\"demo-de\",\"country\":\"DE\",\"session_id\":\"sess%d\"," \
                "\"duration\":5,\"status_code\":200,\"client_ip\":\"203.0.113.50\"," \
                "\"timestamp\":%.0f,\"request_id\":\"%s-%d\"}",
                i % 100 + 1, 500 + i % 1000, 20000 + i % 50000, i % 5000, i % 10000,
                1703001234567 + i, p, i)
            printf "*3\r\n$5\r\nRPUSH\r\n$12\r\ntraffic:logs\r\n$%d\r\n%s\r\n", length(r), r
        }
    }'
}
drained() {
    [ "$(redis_gw LLEN traffic:logs)" = 0 ] && [ "$(redis_gw LLEN traffic:logs:processing)" = 0 ]
}

# run <label> <prefix> [gw-settle options]: push N, time the drain.
run() {
    local label=$1 prefix=$2 start ns rate
    shift 2
    records "$prefix" >"$GW_TMP/records.resp"
    redis_gw --pipe <"$GW_TMP/records.resp" >/dev/null
    start=$(date +%s%N)
    start_bg settle "$SETTLE" --postgres-uri "$POSTGRES_URI" --redis-addr "$REDIS_ADDR" \
        --log-level warn "$@" || exit 1
    if ! wait_until 600 drained; then
        echo "$label: not drained after 600 s" >&2
        stop_bg settle
        return 1
    fi
    ns=$(($(date +%s%N) - start))
    stop_bg settle
    rate=$((N * 1000000000 / ns))
    printf '  %-38s %7d records in %6d ms: %7d records/s\n' "$label" "$N" $((ns / 1000000)) "$rate"
}

echo "gw-settle: $N records, 100 users; PostgreSQL fsync off (the test cluster)"
run "batch 500 (default)" b500 --batch 500
run "batch 100" b100 --batch 100
run "batch 2000" b2000 --batch 2000
run "batch 500, all duplicates" b500 --batch 500
echo "  rows in traffic_logs: $(psql_gw "SELECT count(*) FROM traffic_logs") (want $((3 * N)): three distinct runs)"

# a balance change reaching the cache (worker idle, waiting in BLMOVE)
start_bg settle "$SETTLE" --postgres-uri "$POSTGRES_URI" --redis-addr "$REDIS_ADDR" \
    --log-level warn || exit 1
sleep 1
want=$(psql_gw "UPDATE balances SET traffic_bytes = traffic_bytes + 1
                WHERE user_id = (SELECT id FROM users WHERE username = 'user1')
                RETURNING traffic_bytes - used_bytes")
start=$(date +%s%N)
cache_is() { [ "$(redis_gw GET balance:cache:user1)" = "$want" ]; }
deadline=$((SECONDS + 10))
until cache_is || [ "$SECONDS" -ge "$deadline" ]; do sleep 0.001; done
printf '  %-38s %7d ms (rebuild of %s users)\n' "balance change -> balance:cache" \
    $((($(date +%s%N) - start) / 1000000)) "$(psql_gw "SELECT count(*) FROM users")"
stop_bg settle
