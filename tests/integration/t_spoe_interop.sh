#!/usr/bin/env bash
# Interop with the real peer: Debian's HAProxy talks SPOP to the agent (echo
# handler). Checks every data type's round trip, pipelined and asynchronous
# answers under concurrency, HAProxy's SPOP health check, fail-closed 503 when
# the agent is down, recovery, and graceful agent shutdown with requests in
# flight.
set -u
. "$(dirname "$0")/../lib/services.sh"
svc_init

FE_PORT=$(free_port)
AGENT_PORT=$(free_port)
export FE_PORT AGENT_PORT
CFG=$GW_ROOT/tests/integration/conf/echo-haproxy.cfg

start_agent() { # [extra agent options]
    start_bg agent "$GW_AGENT" --handler echo --listen "127.0.0.1:$AGENT_PORT" --threads 2 \
        --shutdown-timeout 5 "$@" || return 1
    wait_port "$AGENT_PORT" 10
}

# Waits until HAProxy's SPOP health check reports the agent as UP or DOWN.
server_state() {
    echo "show servers state spoe-agents" | socat - "UNIX-CONNECT:$GW_TMP/haproxy.sock" 2>/dev/null |
        awk '$4 == "agent" {print ($6 == 2 ? "UP" : "DOWN")}'
}

start_agent || t_abort "agent did not start"
start_haproxy "$CFG" GW_TMP="$GW_TMP" GW_ROOT="$GW_ROOT" FE_PORT="$FE_PORT" \
    AGENT_PORT="$AGENT_PORT" || t_abort "haproxy did not start"
wait_port "$FE_PORT" 10

t_begin "every SPOP type makes the round trip through HAProxy"
hdrs=$(curl -s -D - -o /dev/null --data-binary 'hello body' "http://127.0.0.1:$FE_PORT/some/path?x=1")
assert_match $'x-path: /some/path\r' "$hdrs" "string (path)"
assert_match $'x-ip: 127.0.0.1\r' "$hdrs" "IPv4 (src)"
assert_match $'x-method: POST\r' "$hdrs" "method"
assert_match $'x-port: '"$FE_PORT"$'\r' "$hdrs" "integer (dst_port)"
assert_match $'x-hdrs: [0-9]+\r' "$hdrs" "integer (hdr_cnt)"
assert_match $'x-secure: 0\r' "$hdrs" "boolean (ssl_fc)"
assert_match $'x-body: hello body\r' "$hdrs" "binary (req.body)"
assert_match $'x-neg: -42\r' "$hdrs" "negative integer"
assert_match $'x-big: 9000000000\r' "$hdrs" "64-bit integer"
assert_match $'x-msg: echo\r' "$hdrs" "message name"
t_end

t_begin "IPv6 client address"
hdrs=$(curl -s -g -D - -o /dev/null "http://[::1]:$FE_PORT/v6")
assert_match $'x-ip: ::1\r' "$hdrs" "IPv6 (src)"
t_end

# Each response must carry its own request's path: pipelined ACKs on shared
# agent connections never answer the wrong stream.
concurrent_check() { # <n> <label>
    local n=$1 i urls=() out bad
    for ((i = 0; i < n; i++)); do urls+=(-o /dev/null "http://127.0.0.1:$FE_PORT/req/$i"); done
    out=$(curl -s --parallel --parallel-max 64 -w "%{http_code} %{url_effective}\n" "${urls[@]}" 2>/dev/null)
    assert_eq "$n" "$(grep -c '^200 ' <<<"$out")" "$2: all $n answered 200"
    out=$(for ((i = 0; i < 200; i++)); do echo "-o /dev/null -D - http://127.0.0.1:$FE_PORT/check/$i"; done |
        xargs -P 16 -n 5 curl -s 2>/dev/null | tr -d '\r' | grep '^x-path:' | sort)
    bad=$(for ((i = 0; i < 200; i++)); do echo "x-path: /check/$i"; done | sort | diff - <(echo "$out") | head -5)
    assert_eq "" "$bad" "$2: every response carries its own path"
}

t_begin "1000 concurrent requests, synchronous answers"
concurrent_check 1000 "sync"
t_end

t_begin "HAProxy's SPOP health check sees the agent UP"
wait_until 10 bash -c '[ "$(echo "show servers state spoe-agents" | socat - UNIX-CONNECT:'"$GW_TMP"'/haproxy.sock | awk '"'"'$4=="agent"{print $6}'"'"')" = 2 ]'
assert_eq "UP" "$(server_state)" "server state"
t_end

t_begin "agent stopped: HAProxy refuses with 503 (fail closed)"
stop_bg agent TERM
assert_eq "0" "$BG_STATUS" "agent exit status after SIGTERM"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$FE_PORT/down")
assert_eq "503" "$code" "status with no agent"
t_end

t_begin "agent restarted with asynchronous answers: service recovers"
start_agent --echo-delay-ms 20 || t_fail "agent restart"
wait_until 10 bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$FE_PORT/up)\" = 200 ]"
concurrent_check 500 "async"
t_end

t_begin "SIGTERM with requests in flight: they are answered, agent exits 0"
stop_bg agent TERM
start_agent --echo-delay-ms 300 || t_fail "agent restart"
wait_until 10 bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$FE_PORT/up)\" = 200 ]"
out=$GW_TMP/inflight.out
: >"$out"
for i in 1 2 3 4 5; do
    curl -s -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:$FE_PORT/inflight/$i" >>"$out" &
done
sleep 0.1
signal_bg agent TERM
wait_until 10 bash -c "! kill -0 $(bg_pid agent) 2>/dev/null"
wait
assert_eq "200 200 200 200 200" "$(sort "$out" | tr '\n' ' ' | sed 's/ $//')" "in-flight answers"
stop_bg agent TERM
assert_eq "0" "$BG_STATUS" "agent exit status"
t_end

t_begin "no sanitizer report in the agent's log"
assert_eq "" "$(grep -E 'ERROR: AddressSanitizer|runtime error:|LeakSanitizer' "$GW_TMP/agent.log" | head -3)" "sanitizer findings"
t_end

t_summary
