#!/usr/bin/env bash
# Traffic accounting end to end: requests through the real gateway (HAProxy,
# agent, PostgreSQL, Redis, stand-in, curl) give exactly one JSON record each
# on traffic:logs, with the reference's fields and types; refused requests
# give none; nothing is lost or doubled when Redis is away for 20 s or the
# agent is SIGKILLed under load; hostile values still make valid JSON.
set -u
. "$(dirname "$0")/../lib/services.sh"
. "$(dirname "$0")/../lib/gateway.sh"
svc_init
start_gateway_stack || t_abort "stack did not start"

N_HTTP=${BILLING_N_HTTP:-8000}
N_TUNNEL=${BILLING_N_TUNNEL:-2000}
ME=myuser-country-DE-session-bill1:mypassword

# load <n> <name> [curl options...]: n GETs through the gateway, 32 at a
# time; the status of each in $GW_TMP/<name>.codes
load() {
    local n=$1 name=$2 i
    shift 2
    {
        for ((i = 0; i < n; i++)); do
            printf 'url = "http://127.0.0.1:%s/bytes/%d?%s-%d"\noutput = "/dev/null"\n' \
                "$ORIGIN_PORT" $((100 + i % 900)) "$name" "$i"
        done
    } >"$GW_TMP/$name.curl"
    curl -s --parallel --parallel-max 32 --max-time 20 -x "http://$ME@127.0.0.1:$GW_PORT" \
        -w '%{http_code}\n' "$@" -K "$GW_TMP/$name.curl" >"$GW_TMP/$name.codes" 2>/dev/null
}
ok_count() { grep -c '^200$' "$GW_TMP/$1.codes"; }
llen() { redis_gw LLEN traffic:logs; }
# wait_llen <n> <timeout>: until traffic:logs holds n records
wait_llen() {
    wait_until "${2:-30}" bash -c "[ \"\$(redis-cli -p $REDIS_PORT LLEN traffic:logs)\" -ge $1 ]"
}
reset_logs() { redis_gw DEL traffic:logs >/dev/null; }

t_begin "$N_HTTP HTTP requests and $N_TUNNEL CONNECT tunnels: exactly one record each"
reset_logs
load "$N_HTTP" http
# Connection: close inside each tunnel: one tunnel per request (curl would
# otherwise reuse its tunnels, and a tunnel is billed once, when it ends)
load "$N_TUNNEL" tunnel -p -H 'Connection: close'
want=$(($(ok_count http) + $(ok_count tunnel)))
assert_eq $((N_HTTP + N_TUNNEL)) "$want" "requests answered 200"
wait_llen "$want" 30
assert_eq "$want" "$(llen)" "records on traffic:logs"
redis_gw LRANGE traffic:logs 0 -1 >"$GW_TMP/records.json"
assert_eq "$want" "$(jq -r .request_id "$GW_TMP/records.json" | sort -u | wc -l)" "distinct request ids"
assert_eq "$N_TUNNEL" "$(jq -r 'select(.target_method == "CONNECT") | .request_id' "$GW_TMP/records.json" | wc -l)" "CONNECT records"
t_end

t_begin "records have the reference's fields and types"
types=$(head -1 "$GW_TMP/records.json" | jq -c 'to_entries | map({(.key): (.value | type)}) | add')
assert_eq '{"username":"string","request_bytes":"number","response_bytes":"number","target_host":"string","target_method":"string","proxy_slug":"string","country":"string","session_id":"string","duration":"number","status_code":"number","client_ip":"string","timestamp":"number","request_id":"string"}' "$types" "field names and types"
first=$(head -1 "$GW_TMP/records.json")
assert_eq myuser "$(jq -r .username <<<"$first")" "username"
assert_eq DE "$(jq -r .country <<<"$first")" "country"
assert_eq bill1 "$(jq -r .session_id <<<"$first")" "session id"
assert_eq 127.0.0.1 "$(jq -r .client_ip <<<"$first")" "client ip"
assert_eq "127.0.0.1:$ORIGIN_PORT" "$(jq -r .target_host <<<"$first")" "target host"
now_ms=$(($(date +%s) * 1000))
ts=$(jq -r .timestamp <<<"$first")
[ $((now_ms - ts)) -lt 600000 ] && [ $((now_ms - ts)) -gt -60000 ] || t_fail "timestamp $ts is not ms near now ($now_ms)"
# every body was 100..999 bytes: the response counts it plus the headers
bad=$(jq -r 'select(.target_method == "GET") | select(.response_bytes < 100 or .response_bytes > 2000) | .request_id' "$GW_TMP/records.json" | head -3)
assert_eq "" "$bad" "response_bytes within body + headers"
t_end

t_begin "request_bytes and response_bytes are the bytes on the wire (curl's own counts)"
reset_logs
head -c 50000 /dev/urandom >"$GW_TMP/body.bin"
# wire <session> [curl args...]: one request; prints "sent received" as curl counted them
wire() {
    local session=$1
    shift
    curl -s -o /dev/null --max-time 10 -x "http://myuser-session-$session:mypassword@127.0.0.1:$GW_PORT" \
        -w '%{size_request} %{size_header} %{size_download}\n' "$@" |
        awk '{ print $1, $2 + $3 }'
}
declare -A sent
sent[wget]=$(wire wget "http://127.0.0.1:$ORIGIN_PORT/bytes/1000")
sent[wpost]=$(wire wpost --data-binary @"$GW_TMP/body.bin" "http://127.0.0.1:$ORIGIN_PORT/echo")
sent[wtunnel]=$(wire wtunnel -p -H 'Connection: close' "http://127.0.0.1:$ORIGIN_PORT/bytes/100000")
sent[wtunpost]=$(wire wtunpost -p -H 'Connection: close' --data-binary @"$GW_TMP/body.bin" "http://127.0.0.1:$ORIGIN_PORT/echo")
wait_llen 4 10
for s in wget wpost wtunnel wtunpost; do
    got=$(redis_gw LRANGE traffic:logs 0 -1 | jq -r --arg s "$s" 'select(.session_id == $s) | "\(.request_bytes) \(.response_bytes)"')
    assert_eq "${sent[$s]}" "$got" "$s: bytes sent and received, as curl counted them"
done
t_end

t_begin "refused requests are not billed"
reset_logs
for u in myuser:wrong nobody:x myuser-country-XX:mypassword; do
    gw_status "$u" "http://127.0.0.1:$ORIGIN_PORT/bytes/10" >/dev/null
done
curl -s -o /dev/null "http://127.0.0.1:$GW_PORT/health"
gw_status "$ME" "http://127.0.0.1:$ORIGIN_PORT/bytes/10" >/dev/null
wait_llen 1 10
sleep 1
assert_eq 1 "$(llen)" "only the allowed request has a record"
assert_eq "" "$(grep -m 3 'malformed record' "$GW_TMP/agent.log")" "refused requests' records parse (as not billable)"
t_end

t_begin "Redis away for 20 s in the middle of the load: nothing lost, nothing doubled"
reset_logs
log_mark=$(wc -l <"$GW_TMP/haproxy.log")
load 3000 before
wait_llen "$(ok_count before)" 30
# The harness's Redis keeps nothing across a restart: set aside what it holds.
redis_gw LRANGE traffic:logs 0 -1 >"$GW_TMP/before.json"
stop_redis
load 2000 during &
loader=$!
sleep 20
for attempt in 1 2 3; do
    restart_redis && break
    sleep 1
done
wait "$loader"
load 1000 after
want=$(($(ok_count during) + $(ok_count after)))
wait_llen "$want" 60
sleep 1
assert_eq "$want" "$(llen)" "records pushed after Redis came back (spooled meanwhile)"
redis_gw LRANGE traffic:logs 0 -1 >"$GW_TMP/after.json"
assert_eq $((want + $(ok_count before))) "$(cat "$GW_TMP/before.json" "$GW_TMP/after.json" | jq -r .request_id | sort -u | wc -l)" "distinct request ids over the whole run"
if [ "$T_CASE_FAILED" != 0 ]; then
    # Which billable requests (HAProxy's own log: verdict 200) never reached
    # Redis, and what the agent counted: evidence for whoever reads the failure.
    tail -n +"$((log_mark + 1))" "$GW_TMP/haproxy.log" | awk '$1 == "gw3" && $3 == "200" { print $2 }' | sort -u >"$GW_TMP/billable.ids"
    cat "$GW_TMP/before.json" "$GW_TMP/after.json" | jq -r .request_id | sort -u >"$GW_TMP/pushed.ids"
    echo "    billable in HAProxy's log: $(wc -l <"$GW_TMP/billable.ids"), in Redis: $(wc -l <"$GW_TMP/pushed.ids")"
    comm -23 "$GW_TMP/billable.ids" "$GW_TMP/pushed.ids" | head -3 | while read -r id; do
        echo "    missing: $(grep -m 1 "^gw3 $id " "$GW_TMP/haproxy.log")"
    done
    for f in before during after; do echo "    curl $f: $(sort "$GW_TMP/$f.codes" | uniq -c | tr '\n' ' ')"; done
    curl -s --max-time 5 "http://127.0.0.1:$AGENT_METRICS_PORT/metrics" | grep -E '^gw_billing_[a-z_]+(_total)? ' | sed 's/^/    /'
fi
t_end

# A SIGKILL loses what was in flight on HAProxy's log stream (the ring has
# no acknowledgements); the restarted agent reads the ring back through
# HAProxy's CLI and bills what it had not seen, once (dedup window).
t_begin "agent killed (SIGKILL) in the middle of the load and restarted: exactly one record each"
reset_logs
load 3000 k1 &
loader=$!
sleep 1
signal_bg agent KILL
sleep 0.5
start_agent || t_fail "agent restart"
wait "$loader"
load 1000 k2
want=$(($(ok_count k1) + $(ok_count k2)))
wait_llen "$want" 30
sleep 2
assert_eq "$want" "$(llen)" "records for the requests answered 200"
assert_eq "$want" "$(redis_gw LRANGE traffic:logs 0 -1 | jq -r .request_id | sort -u | wc -l)" "distinct request ids"
grep -o 'read back [0-9]* lines of the ring gw-billing: [0-9]* records not seen before' "$GW_TMP/agent.log" | tail -1 | sed 's/^/    /'
t_end

# The ring keeps what ends while the agent is away: tunnels that close
# during a 30 s agent outage (with refused requests streaming meanwhile) are
# billed when it is back.
t_begin "agent away for ${BILLING_DOWNTIME:-30} s under load: the tunnels that ended meanwhile are billed after the restart"
reset_logs
auth=$(printf 'myuser-session-held:mypassword' | base64 -w0)
fds=()
for i in $(seq 100); do
    exec {fd}<>"/dev/tcp/127.0.0.1/$GW_PORT" || break
    printf 'CONNECT 127.0.0.1:%s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nProxy-Authorization: Basic %s\r\n\r\n' \
        "$ORIGIN_PORT" "$ORIGIN_PORT" "$auth" >&"$fd"
    IFS= read -r -t 5 status <&"$fd" || status=
    [[ $status == "HTTP/1.1 200"* ]] || { t_fail "tunnel $i: '$status'"; break; }
    printf 'GET /bytes/%d HTTP/1.1\r\nHost: origin\r\n\r\n' "$((1000 + i))" >&"$fd"
    fds+=("$fd")
done
assert_eq 100 "${#fds[@]}" "tunnels open"
stop_bg agent TERM
load 2000 away & # refused (503) meanwhile: records in the ring, none billable
loader=$!
sleep "${BILLING_DOWNTIME:-30}"
wait "$loader"
for fd in "${fds[@]}"; do exec {fd}>&-; done
sleep 1
assert_eq 0 "$(llen)" "nothing reaches Redis while the agent is away"
assert_eq 0 "$(ok_count away)" "requests answered 200 while the agent was away"
start_agent || t_fail "agent restart"
wait_llen 100 30
sleep 1
assert_eq 100 "$(llen)" "one record per tunnel, after the restart"
assert_eq 100 "$(redis_gw LRANGE traffic:logs 0 -1 | jq -r 'select(.session_id == "held") | .request_id' | sort -u | wc -l)" "distinct tunnel records"
t_end

t_begin "hostile values in every logged field still make valid JSON"
reset_logs
psql_gw "INSERT INTO users (username, password) VALUES (E'we\"ird\\\\us\\ter', 'pw')" >/dev/null
name=$(psql_gw "SELECT username FROM users WHERE password = 'pw' AND username LIKE 'we%'")
# curl's -x URL cannot carry these bytes: send the header; the new user is
# in the agent's snapshot within a second (NOTIFY)
hostile_get() {
    curl -s -o /dev/null -w '%{http_code}' -x "http://127.0.0.1:$GW_PORT" \
        -H "Proxy-Authorization: Basic $(printf '%s:pw' "$name" | base64 -w0)" \
        "http://127.0.0.1:$ORIGIN_PORT/bytes/10?q=%22%5C%00"
}
code=
for _ in $(seq 50); do
    code=$(hostile_get)
    [ "$code" = 200 ] && break
    sleep 0.1
done
assert_eq 200 "$code" "request as the hostile user"
wait_llen 1 10
rec=$(redis_gw LRANGE traffic:logs 0 -1 | head -1)
assert_eq "$name" "$(jq -r .username <<<"$rec")" "username survives the round trip"
t_end

t_begin "no sanitizer report in the agent's log"
assert_eq "" "$(grep -E 'AddressSanitizer|runtime error:|LeakSanitizer' "$GW_TMP/agent.log" | head -3)" "sanitizer findings"
t_end

t_summary
