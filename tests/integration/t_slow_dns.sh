#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# t_slow_dns.sh: no event loop of the agent waits on DNS. The agent (ASan
# build) runs under tests/tools/slow-dns.c, an LD_PRELOAD shim that makes
# every name ending in .slow.test take SLOW_MS to resolve (to 127.0.0.1),
# with REDIS_ADDR=redis.slow.test:<port> (as the compose stack's redis:6379)
# and the HAProxy CLI at cli.slow.test:<port>. Meanwhile:
#   - verdicts are answered at once, at start and while Redis reconnects (the
#     worker loops' Redis connections resolve the name off their loops);
#   - a billing record streamed in reaches Redis at once while the read-back
#     of HAProxy's ring is still resolving the CLI's name (the billing loop);
# and Redis is used once the name is known.
set -u
# shellcheck source=../lib/services.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/services.sh"

svc_init || { echo "0 passed, 1 failed"; exit 1; }

SLOW_MS=3000
CLIENT=$GW_ROOT/tests/tools/spop-client
SHIM=$GW_ROOT/build/slow-dns.so
AGENT=${GW_AGENT:-$GW_ROOT/build/asan/gw-agent}

t_begin "build the slow resolver shim and the SPOP client"
out=$(make -s -C "$GW_ROOT" build/slow-dns.so tests/tools/spop-client 2>&1) || t_fail "make" "$out"
[ -f "$SHIM" ] && [ -x "$CLIENT" ] || t_abort "no shim or client"
[ -x "$AGENT" ] || t_abort "no $AGENT (make build/asan/gw-agent)"

t_begin "PostgreSQL with the demo data, Redis"
start_postgres || t_abort "postgres did not start"
db_apply --demo >/dev/null || t_abort "sql/apply.sh --demo"
start_redis || t_abort "redis did not start"

AGENT_PORT=$(free_port)
BILLING_PORT=$(free_port)
CLI_PORT=$(free_port) # nothing listens there: the read-back fails, after resolving
DNS_LOG=$GW_TMP/slow-dns.log

# verdicts <seconds>: 100 verdicts/s on one connection for that long; prints
# spop-client's result line (max_us=, errors=...)
verdicts() {
    "$CLIENT" --connect "127.0.0.1:$AGENT_PORT" --timeout-ms 10000 bench --conns 1 --pipeline 1 \
        --rate 100 --duration "$1" 2>>"$GW_TMP/client.log" | grep -v '^#'
}
field() { # <name> <line>: the value of name= in line, without its decimals
    sed -n "s/.*\\b$1=\\([0-9]*\\).*/\\1/p" <<<"$2"
}
redis_ok() {
    "$CLIENT" --connect "127.0.0.1:$AGENT_PORT" notify gw-health 2>>"$GW_TMP/client.log" |
        sed -n 's/^set-var txn redis_ok = [a-z0-9]*://p'
}

t_begin "the agent starts while Redis's name takes ${SLOW_MS} ms to resolve"
SLOW_DNS_SUFFIX=.slow.test SLOW_DNS_MS=$SLOW_MS SLOW_DNS_LOG=$DNS_LOG LD_PRELOAD=$SHIM \
    ASAN_OPTIONS=verify_asan_link_order=0 \
    start_bg agent "$AGENT" --listen "127.0.0.1:$AGENT_PORT" --threads 1 \
    --postgres-uri "$POSTGRES_URI" --redis-addr "redis.slow.test:$REDIS_PORT" \
    --snapshot-path '' --billing-listen "127.0.0.1:$BILLING_PORT" \
    --spool-path "$GW_TMP/billing.spool" --haproxy-cli "cli.slow.test:$CLI_PORT" \
    --shutdown-timeout 2 || t_abort "agent did not start"
wait_port "$AGENT_PORT" 15 || t_abort "agent did not listen"
started=$(date +%s%N)

t_begin "verdicts are answered at once while the worker's Redis name resolves"
res=$(verdicts 2)
took_ms=$((($(date +%s%N) - started) / 1000000))
assert_eq 0 "$(field errors "$res")" "errors ($res)"
assert_match '^[0-9]+$' "$(field max_us "$res")" "max_us ($res)"
[ "$(field max_us "$res")" -lt 500000 ] 2>/dev/null || t_fail "slowest verdict: $(field max_us "$res") us, want < 500 ms" "$res"
[ "$took_ms" -lt "$SLOW_MS" ] || t_fail "the verdicts took $took_ms ms: not within the resolution window"
assert_eq 0 "$(redis_ok)" "redis_ok while the name resolves"

t_begin "Redis is used once the name is known (numeric address to hiredis)"
wait_until 10 bash -c "[ \"\$(\"$CLIENT\" --connect 127.0.0.1:$AGENT_PORT notify gw-health 2>/dev/null | sed -n 's/^set-var txn redis_ok = [a-z0-9]*://p')\" = 1 ]" ||
    t_fail "redis_ok never became 1"
assert_match "^redis\\.slow\\.test " "$(head -1 "$DNS_LOG")" "the name went through the resolver"
# every slow lookup ran on a thread that is not an event loop's: the loops'
# threads answered meanwhile (above); here, each lookup took the whole delay
while read -r name _ start end; do
    [ $((end - start)) -ge $((SLOW_MS - 50)) ] || t_fail "lookup of $name took $((end - start)) ms"
done <"$DNS_LOG"

t_begin "a billing record reaches Redis at once while the ring's read-back resolves cli.slow.test"
rec="gw2 11111111-0000-4000-8000-000000000001 200 bXl1c2Vy ZGVtby1kZQ== REU= YmVuY2gx 5 Q09OTkVDVA== ZXhhbXBsZS5jb206NDQz 200 300 20000 203.0.113.50 1795656352917 4 0"
before=$(grep -c '^cli\.slow\.test ' "$DNS_LOG" 2>/dev/null)
exec 7<>"/dev/tcp/127.0.0.1/$BILLING_PORT" # a new stream: the agent starts a read-back
sent=$(date +%s%N)
printf '%d %s' "${#rec}" "$rec" >&7
wait_until 10 bash -c "[ \"\$(redis-cli -h 127.0.0.1 -p $REDIS_PORT LLEN traffic:logs)\" = 1 ]" ||
    t_fail "the record never reached traffic:logs"
landed_ms=$((($(date +%s%N) - sent) / 1000000))
[ "$landed_ms" -lt 1500 ] || t_fail "the record took $landed_ms ms to reach Redis (the resolution takes $SLOW_MS ms)"
assert_match '"request_id":"11111111-0000-4000-8000-000000000001"' \
    "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" LINDEX traffic:logs 0)" "the record"
wait_until $((SLOW_MS / 1000 + 5)) bash -c "[ \$(grep -c '^cli\\.slow\\.test ' '$DNS_LOG') -gt ${before:-0} ]" ||
    t_fail "the read-back never resolved cli.slow.test"
exec 7>&-

t_begin "verdicts are answered at once while Redis reconnects through the slow name"
restart_redis || t_abort "redis did not restart"
wait_until 5 bash -c "[ \"\$(\"$CLIENT\" --connect 127.0.0.1:$AGENT_PORT notify gw-health 2>/dev/null | sed -n 's/^set-var txn redis_ok = [a-z0-9]*://p')\" = 0 ]" ||
    t_fail "the agent never noticed Redis going away"
n_before=$(grep -c '^redis\.slow\.test ' "$DNS_LOG")
res=$(verdicts 4) # the reconnect attempts resolve the name meanwhile
assert_eq 0 "$(field errors "$res")" "errors ($res)"
[ "$(field max_us "$res")" -lt 500000 ] 2>/dev/null || t_fail "slowest verdict: $(field max_us "$res") us, want < 500 ms" "$res"
wait_until 15 bash -c "[ \"\$(\"$CLIENT\" --connect 127.0.0.1:$AGENT_PORT notify gw-health 2>/dev/null | sed -n 's/^set-var txn redis_ok = [a-z0-9]*://p')\" = 1 ]" ||
    t_fail "redis_ok never came back"
[ "$(grep -c '^redis\.slow\.test ' "$DNS_LOG")" -gt "$n_before" ] || t_fail "the reconnect did not resolve the name again"

t_begin "no sanitizer report in the agent's log"
stop_bg agent
assert_eq "" "$(grep -E 'AddressSanitizer|runtime error:|LeakSanitizer' "$GW_TMP/agent.log" | head -3)" "sanitizer findings"

t_summary
