#!/usr/bin/env bash
# tests/bench/billing.sh: how fast the agent moves billing records from
# HAProxy's log stream into Redis. Plays HAProxy's ring: BENCH_BILLING_RECORDS
# (default 200,000) billable gw2 lines, octet-counted, over one TCP
# connection to the agent's billing listener (the release build, default
# dedup window); times them until traffic:logs holds them all (parse, dedup,
# spool write, MULTI/RPUSH/SET batches). Baseline, in the same run: the same
# records as JSON pushed by redis-cli --pipe (RPUSH one by one, pipelined),
# i.e. what Redis itself takes. Prints figures and the ratio, asserts nothing
# (`make bench` runs it).
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/services.sh"
svc_init || exit 1

AGENT=${GW_BENCH_AGENT:-$GW_ROOT/agent/gw-agent}
N=${BENCH_BILLING_RECORDS:-200000}
[ -x "$AGENT" ] || { echo "no $AGENT (make)" >&2; exit 1; }
start_postgres || exit 1
db_apply --demo >/dev/null || exit 1
start_redis || exit 1

# The fields every record shares: user myuser, provider demo-de, country DE,
# session bench1, CONNECT to example.com:443 (base64, as HAProxy logs them).
B64_FIELDS="bXl1c2Vy ZGVtby1kZQ== REU= YmVuY2gx 5 Q09OTkVDVA== ZXhhbXBsZS5jb206NDQz"
# ids: uuid-shaped and distinct per run (prefix) and record
lines() { # <prefix>: "<len> gw2 ..." frames, as HAProxy's ring sends them
    LC_ALL=C awk -v p="$1" -v n="$N" -v f="$B64_FIELDS" 'BEGIN {
        for (i = 1; i <= n; i++) {
            r = sprintf("gw2 %s-0000-4000-8000-%012d 200 %s 200 %d %d 203.0.113.50 %.0f 4 0",
                p, i, f, 300 + i % 1000, 20000 + i % 50000, 1795656352917 + i)
            printf "%d %s", length(r), r
        }
    }'
}
json() { # <prefix>: the same records as the agent pushes them, in RESP for --pipe
    LC_ALL=C awk -v p="$1" -v n="$N" 'BEGIN {
        for (i = 1; i <= n; i++) {
            r = sprintf("{\"username\":\"myuser\",\"request_bytes\":%d,\"response_bytes\":%d," \
                "\"target_host\":\"example.com:443\",\"target_method\":\"CONNECT\"," \
                "\"proxy_slug\":\"demo-de\",\"country\":\"DE\",\"session_id\":\"bench1\"," \
                "\"duration\":5,\"status_code\":200,\"client_ip\":\"203.0.113.50\"," \
                "\"timestamp\":%.0f,\"request_id\":\"%s-0000-4000-8000-%012d\"}",
                300 + i % 1000 + 1, 20000 + i % 50000 - 15, 1795656352917 + i, p, i)
            printf "*3\r\n$5\r\nRPUSH\r\n$12\r\ntraffic:logs\r\n$%d\r\n%s\r\n", length(r), r
        }
    }'
}
now_ns() { date +%s%N; }
# until_llen <n>: waits (1 ms polls, up to 300 s) until traffic:logs holds n
until_llen() {
    local deadline=$((SECONDS + 300))
    until [ "$(redis_gw LLEN traffic:logs)" -ge "$1" ]; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.001
    done
}
report() { # <label> <ns> [baseline rate]
    local rate=$((N * 1000000000 / $2))
    printf '  %-58s %6d ms %8d records/s' "$1" $(($2 / 1000000)) "$rate"
    [ $# -gt 2 ] && printf '  (%s of the baseline)' "$(awk -v a="$rate" -v b="$3" 'BEGIN { printf "%.2f", a / b }')"
    printf '\n'
    RATE=$rate
}

echo "billing: $N records, one stream; Redis and the agent on loopback"
json base >"$GW_TMP/base.resp"
lines agent >"$GW_TMP/agent.ring"
printf '  %-58s %6d bytes per record (JSON)\n' "record size" $(($(stat -c %s "$GW_TMP/base.resp") / N - 40))

start=$(now_ns)
redis_gw --pipe <"$GW_TMP/base.resp" >/dev/null
until_llen "$N" || { echo "baseline: Redis never held $N records" >&2; exit 1; }
report "baseline: redis-cli --pipe, RPUSH each JSON record" $(($(now_ns) - start))
base=$RATE
redis_gw DEL traffic:logs >/dev/null

BILLING_PORT=$(free_port)
start_bg agent "$AGENT" --listen "127.0.0.1:$(free_port)" --threads 1 \
    --postgres-uri "$POSTGRES_URI" --redis-addr "$REDIS_ADDR" --snapshot-path '' \
    --billing-listen "127.0.0.1:$BILLING_PORT" --spool-path "$GW_TMP/billing.spool" \
    --log-level warn || exit 1
wait_port "$BILLING_PORT" 15 || { echo "the agent did not listen" >&2; exit 1; }
start=$(now_ns)
socat -u "FILE:$GW_TMP/agent.ring" "TCP:127.0.0.1:$BILLING_PORT" || exit 1
until_llen "$N" || { echo "agent: Redis never held $N records" >&2; exit 1; }
report "gw-agent: stream -> dedup -> spool -> MULTI/RPUSH batches" $(($(now_ns) - start)) "$base"

# the same records again: every one is a duplicate, dropped by the window
redis_gw DEL traffic:logs >/dev/null
start=$(now_ns)
socat -u "FILE:$GW_TMP/agent.ring" "TCP:127.0.0.1:$BILLING_PORT" || exit 1
lines again >"$GW_TMP/again.ring"
socat -u "FILE:$GW_TMP/again.ring" "TCP:127.0.0.1:$BILLING_PORT" || exit 1
until_llen "$N" || { echo "agent: the fresh records never arrived" >&2; exit 1; }
report "gw-agent: the same again (dropped), then new (mean of both)" $((($(now_ns) - start) / 2)) "$base"
printf '  %-58s %6s records (want %d: the duplicates were dropped)\n' "traffic:logs after both" \
    "$(redis_gw LLEN traffic:logs)" "$N"
stop_bg agent TERM
