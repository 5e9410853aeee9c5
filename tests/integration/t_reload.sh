#!/usr/bin/env bash
# HAProxy reloads lose no billing record. Master-worker HAProxy, as `make run`
# and the compose image run it: under HTTP load, with long CONNECT tunnels
# open, HAProxy is reloaded several times (the master CLI's "reload", and
# SIGUSR2), then once with a different ring size and once with a different
# billing address for the agent. Every request answered 200 and every tunnel
# is billed exactly once (exactly N records in traffic:logs), each tunnel with
# its full byte counts (curl's own), and no request is refused because of a
# reload. How (billing_hold.c): after a reload the old worker's ring stops
# streaming; the agent's hold connection keeps that worker alive until it has
# no request left, and the agent reads its ring one last time through the
# master CLI before letting it go.
# Last, what cannot be carried over: a tunnel cut by hard-stop-after is logged
# by HAProxy as the old worker exits, too late for the agent, which says so in
# its log; the README's recovery (HAProxy's own log fed back) bills it.
set -u
. "$(dirname "$0")/../lib/services.sh"
. "$GW_ROOT/tests/lib/gateway.sh"
svc_init || exit 1

# A copy of the config, edited between reloads (the master re-reads its -f
# file; its environment cannot change).
CFG=$GW_TMP/gateway.cfg
cp "$GW_ROOT/haproxy/gateway.cfg" "$CFG"
GW_HAPROXY_CFG=$CFG start_gateway_stack || t_abort "the gateway stack did not start"
MASTER=$GW_TMP/haproxy-master.sock
ME=myuser-country-DE-session-reload:mypassword

master() { echo "$1" | socat -t 5 - "UNIX-CONNECT:$MASTER"; }
old_workers() { master "show proc" | awk '/^# old workers/ { o = 1; next } /^#/ { o = 0 } o && $2 == "worker"' | wc -l; }
llen() { redis_gw LLEN traffic:logs; }
# reload_via <how>: one reload, then wait until the new worker's ring has
# connected to the agent and the agent holds it (a second at most).
reloads=0
reload_via() {
    local before
    before=$(grep -c 'is now old' "$GW_TMP/agent.log")
    case $1 in
    cli) master reload >/dev/null ;;
    usr2) reload_haproxy ;;
    esac
    reloads=$((reloads + 1))
    wait_until 10 bash -c "[ \$(grep -c 'is now old' '$GW_TMP/agent.log') -gt $before ]" ||
        t_fail "reload $reloads ($1): the agent did not see the old worker"
    sleep 1.5 # the agent's next look opens a hold in the new worker
}

# http_load <n> <name>: n GETs, 16 at a time, each on its own connection
# (a reload closes idle keep-alive connections; a client would retry those).
http_load() {
    local n=$1 name=$2 i
    for ((i = 0; i < n; i++)); do
        printf 'url = "http://127.0.0.1:%s/bytes/%d?%s-%d"\noutput = "/dev/null"\n' \
            "$ORIGIN_PORT" $((100 + i % 900)) "$name" "$i"
    done >"$GW_TMP/$name.curl"
    curl -s --parallel --parallel-max 16 --max-time 30 -H 'Connection: close' \
        -x "http://$ME@127.0.0.1:$GW_PORT" -w '%{http_code}\n' -K "$GW_TMP/$name.curl" \
        >"$GW_TMP/$name.codes" 2>/dev/null
}
# tunnel <i> <bytes> <rate>: one CONNECT tunnel downloading <bytes> at <rate>
# (so that it stays open across the reloads); curl's counts of what it sent
# and received go to $GW_TMP/tunnel.<i>.
tunnel() {
    curl -s -o /dev/null --max-time 120 -p -H 'Connection: close' --limit-rate "$3" \
        -x "http://myuser-session-tun$1:mypassword@127.0.0.1:$GW_PORT" \
        -w '%{http_code} %{size_request} %{size_header} %{size_download}\n' \
        "http://127.0.0.1:$ORIGIN_PORT/bytes/$2" >"$GW_TMP/tunnel.$1" 2>/dev/null
}

t_begin "the agent reads reloads through the master CLI"
assert_match 'holds the current worker' "$(cat "$GW_TMP/agent.log")" "the agent's start-up line"
assert_eq 0 "$(old_workers)" "no old worker before the first reload"
t_end

redis_gw DEL traffic:logs >/dev/null
N_TUN=8
t_begin "5 reloads under load with $N_TUN tunnels open across them: exactly one record per request and tunnel"
for ((i = 0; i < N_TUN; i++)); do
    tunnel "$i" 3000000 200k & # ~15 s each
done
http_load 4000 load &
loader=$!
sleep 2
reload_via cli
reload_via usr2
reload_via cli
# the ring's size changes
sed -i 's/^\( *size \).*$/\1 67108864/' "$CFG"
assert_match 'size +67108864' "$(grep -A5 '^ring gw-billing' "$CFG")" "the ring's new size in the config"
reload_via cli
# the billing address changes: a second address that reaches the same agent
NEW_BILLING=$(free_port)
start_bg billing-fwd socat "TCP-LISTEN:$NEW_BILLING,bind=127.0.0.1,reuseaddr,fork" "TCP:127.0.0.1:$BILLING_PORT"
wait_port "$NEW_BILLING" 5
sed -i "s/^\\( *server agent \\).*\\( log-proto octet-count\\)\$/\\1127.0.0.1:$NEW_BILLING\\2/" "$CFG"
reload_via usr2
assert_match "server agent 127.0.0.1:$NEW_BILLING " "$(grep 'server agent' "$CFG")" "the new billing address in the config"
wait_until 10 bash -c "ss -Htn state established '( dport = :$NEW_BILLING )' | grep -q ." ||
    t_fail "the new worker's ring never connected to the new address"
wait "$loader"
wait # the tunnels
want_http=$(grep -c '^200$' "$GW_TMP/load.codes")
assert_eq 4000 "$want_http" "HTTP requests answered 200 (none refused because of a reload)"
other=$(grep -v '^200$' "$GW_TMP/load.codes" | sort | uniq -c | tr '\n' ' ')
assert_eq "" "$other" "other statuses"
tun_ok=$(cat "$GW_TMP"/tunnel.* | grep -c '^200 ')
assert_eq "$N_TUN" "$tun_ok" "tunnels that completed"
want=$((want_http + tun_ok))
wait_until 30 bash -c "[ \$(redis-cli -p $REDIS_PORT LLEN traffic:logs) -ge $want ]"
wait_until 30 bash -c "[ \$(echo 'show proc' | socat -t 5 - UNIX-CONNECT:$MASTER | awk '/^# old workers/ { o = 1; next } /^#/ { o = 0 } o && \$2 == \"worker\"' | wc -l) = 0 ]" ||
    t_fail "old workers still running"
sleep 2
assert_eq "$want" "$(llen)" "records on traffic:logs"
redis_gw LRANGE traffic:logs 0 -1 >"$GW_TMP/records.json"
assert_eq "$want" "$(jq -r .request_id "$GW_TMP/records.json" | sort -u | wc -l)" "distinct request ids"
for ((i = 0; i < N_TUN; i++)); do
    read -r code sent hdr body <"$GW_TMP/tunnel.$i"
    got=$(jq -r --arg s "tun$i" 'select(.session_id == $s) | "\(.request_bytes) \(.response_bytes)"' "$GW_TMP/records.json")
    assert_eq "$sent $((hdr + body))" "$got" "tunnel $i: bytes sent and received, as curl counted them"
done
t_end

t_begin "the agent's log: each reload seen, each old worker read and released, nothing lost"
assert_eq "$reloads" "$(grep -c 'is now old' "$GW_TMP/agent.log")" "old workers seen"
assert_eq "$reloads" "$(grep -c 'read its ring one last time' "$GW_TMP/agent.log")" "old workers read and released"
assert_eq "" "$(grep -E 'NOT billed|not held|LOST' "$GW_TMP/agent.log" | head -3)" "errors about lost records"
grep -o 'worker [0-9]* (old) has no request left: read its ring one last time ([0-9]* lines)' "$GW_TMP/agent.log" | sed 's/^/    /'
t_end

# hard-stop-after (GW_GRACE, 10 s in this stack) kills an old worker with
# what it still serves: HAProxy logs those streams as it exits.
t_begin "a tunnel cut by hard-stop-after after a reload: the agent logs that its record is likely lost, and what to do"
auth=$(gw_b64 myuser-session-cut:mypassword)
exec {fd}<>"/dev/tcp/127.0.0.1/$GW_PORT"
printf 'CONNECT 127.0.0.1:%s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nProxy-Authorization: Basic %s\r\n\r\n' \
    "$ORIGIN_PORT" "$ORIGIN_PORT" "$auth" >&"$fd"
IFS= read -r -t 5 line <&"$fd" || line=
assert_match '^HTTP/1.1 200' "$line" "tunnel open"
reload_via cli
wait_until 20 bash -c "grep -q 'reached hard-stop-after' '$GW_TMP/agent.log'" ||
    t_fail "no error in the agent's log"
exec {fd}>&-
assert_match 'NOT billed.*own log.*GW_GRACE' "$(grep 'reached hard-stop-after' "$GW_TMP/agent.log")" "the error says what is lost and what to do"
t_end

# The README's recovery (Operations, Reload): HAProxy's own log lines fed
# back to the billing listener: what was billed is dropped (dedup window),
# the tunnel cut at hard-stop-after is billed.
t_begin "the README's recovery command: HAProxy's own log fed back, exactly one record per billable line"
cmd=$(sed -n '/^  grep -o .gw3 /,/socat -u /p' "$GW_ROOT/README.md" | sed 's/^  //')
assert_match 'socat' "$cmd" "the command is in the README"
cmd=${cmd//haproxy.log/$GW_TMP/haproxy.log}
cmd=${cmd//127.0.0.1:12346/127.0.0.1:$BILLING_PORT}
want=$(grep -o 'gw3 [0-9a-f-]* 200 .*' "$GW_TMP/haproxy.log" | awk '{ print $2 }' | sort -u | wc -l)
bash -c "$cmd"
wait_until 10 bash -c "[ \$(redis-cli -p $REDIS_PORT LLEN traffic:logs) -ge $want ]"
sleep 1
assert_eq "$want" "$(llen)" "records on traffic:logs: one per billable line of HAProxy's log"
assert_eq "$want" "$(redis_gw LRANGE traffic:logs 0 -1 | jq -r .request_id | sort -u | wc -l)" "distinct request ids"
assert_eq 1 "$(redis_gw LRANGE traffic:logs 0 -1 | jq -r 'select(.session_id == "cut") | .request_id' | wc -l)" "the tunnel cut at hard-stop-after, billed once"
assert_eq "" "$(grep -m 3 'bad framing\|malformed record' "$GW_TMP/agent.log")" "the agent took the framing"
t_end

t_begin "no sanitizer report in the agent's log"
assert_eq "" "$(grep -E 'AddressSanitizer|runtime error:|LeakSanitizer' "$GW_TMP/agent.log" | head -3)" "sanitizer findings"
t_end

t_summary
