#!/usr/bin/env bash
# Live balance (agent/live.h, meter.h, live_lua.h): bytes of running requests
# and tunnels count against the balance while they flow, and a customer whose
# live balance runs out is cut on every gateway node.
#
#   1. the accounting arithmetic, run by the real Redis: progress, final
#      count, settlement, idempotence, the gw:cut message;
#   2. one node: a CONNECT tunnel and a plain download are cut, the next
#      request gets 402, the records carry cut_reason and the bytes that moved;
#   3. two nodes sharing PostgreSQL and Redis: traffic on node A uses the
#      balance up and the tunnel on node B is cut;
#   4. gw-settle: settled records leave the unsettled count.
set -u
. "$(dirname "$0")/../lib/services.sh"
. "$(dirname "$0")/../lib/gateway.sh"
svc_init
start_gateway_stack || t_abort "stack did not start"
SCRIPT=$(gw_tool live-script) || t_abort "build tests/tools/live-script"

# lua <name> <numkeys> [args...]: runs one of the live scripts
lua() {
    local name=$1
    shift
    redis_gw EVAL "$("$SCRIPT" "$name")" "$@"
}
unsettled() { redis_gw GET "gw:unsettled:$1"; }

# --- 1. arithmetic --------------------------------------------------------------------------

t_begin "progress counts bytes in flight; only growth counts"
redis_gw DEL gw:live:ann gw:unsettled:ann balance:cache:ann >/dev/null
lua progress 0 ann r1 1000 ann r2 500 >/dev/null
assert_eq 1500 "$(unsettled ann)" "two streams in flight"
lua progress 0 ann r1 800 >/dev/null
assert_eq 1500 "$(unsettled ann)" "a smaller total is not a change (progress only grows)"
lua progress 0 ann r1 3000 >/dev/null
assert_eq 3500 "$(unsettled ann)" "r1 grew by 2000"
assert_eq 3000 "$(redis_gw HGET gw:live:ann r1)" "r1's total"
t_end

t_begin "the final count replaces the progress (also downwards), once with its record"
rec() { # <user> <rid> <req> <res>
    printf '{"username":"%s","request_bytes":%d,"response_bytes":%d,"request_id":"%s"}' "$1" "$3" "$4" "$2"
}
redis_gw DEL traffic:logs >/dev/null
out=$(lua push 2 traffic:logs gw:test:pushed 7 60 "$(rec ann r1 100 2800)")
assert_eq "1 OK 0" "$(echo $out)" "push answers like MULTI/EXEC, plus 0 not understood"
assert_eq 3400 "$(unsettled ann)" "r1 ended with 2900 (the meter had seen 3000), r2 still 500"
assert_eq 0 "$(redis_gw HEXISTS gw:live:ann r1)" "r1 is no longer running"
assert_eq 7 "$(redis_gw GET gw:test:pushed)" "the pushed marker"
lua push 2 traffic:logs gw:test:pushed 8 60 "$(rec ann r3 10 90)" >/dev/null
assert_eq 3500 "$(unsettled ann)" "r3 ended without the meter seeing it: its 100 bytes"
out=$(lua push 2 traffic:logs gw:test:pushed 9 60 'not json' '{"username":1}')
assert_eq "4 OK 2" "$(echo $out)" "records Redis cannot read are pushed and counted"
t_end

t_begin "settlement releases each settled record's bytes; the sum never goes below zero"
lua release 0 "$(rec ann r1 100 2800)" >/dev/null
assert_eq 600 "$(unsettled ann)" "r1 settled: r2 running (500) and r3 (100) left"
lua push 2 traffic:logs gw:test:pushed 10 60 "$(rec ann r2 0 500)" >/dev/null
lua release 0 "$(rec ann r2 0 500)" >/dev/null
lua release 0 "$(rec ann r3 10 90)" >/dev/null
assert_eq "" "$(unsettled ann)" "nothing left: no sum"
assert_eq 0 "$(redis_gw EXISTS gw:live:ann)" "no running request"
lua release 0 "$(rec ann r9 0 700)" >/dev/null
assert_eq "" "$(unsettled ann)" "a record pushed without its count (live off on a node): no negative sum"
t_end

t_begin "reaching zero publishes the user on gw:cut, once per script"
redis_gw SET balance:cache:bob 1000 >/dev/null
redis_gw DEL gw:live:bob gw:unsettled:bob >/dev/null # bob's balance is 1000
timeout 5 redis-cli -p "$REDIS_PORT" SUBSCRIBE gw:cut >"$GW_TMP/sub.out" &
sub=$!
wait_until 5 grep -q subscribe "$GW_TMP/sub.out"
# the reply: users cut, then in how many intervals like the last one the
# first user in credit runs out at this pace (the meter looks again then)
assert_eq "0 9.000" "$(lua progress 0 bob a 50 bob b 50 | xargs)" "100 of 1000: left 900 at 100 per interval: 9"
assert_eq "0 0.125" "$(lua progress 0 bob a 400 bob b 500 | xargs)" "900 of 1000: nobody cut, left 100 at 800: 0.125"
assert_eq "1" "$(lua progress 0 bob a 450 bob b 600 | xargs)" "1050 of 1000: bob cut, nobody in credit"
assert_eq "1" "$(lua progress 0 bob a 460 | xargs)" "still over: cut again (a cut that failed is retried)"
redis_gw DEL balance:cache:carl >/dev/null
assert_eq "0" "$(lua progress 0 carl a 99999999 | xargs)" "no balance key: never cut (the reference allows)"
sleep 0.3
kill "$sub" 2>/dev/null
wait "$sub" 2>/dev/null
assert_eq 2 "$(grep -c '^bob$' "$GW_TMP/sub.out")" "gw:cut heard bob twice"
t_end

# --- 2. one node ----------------------------------------------------------------------------

USER=myuser
PROXY="http://$USER-session-live1:mypassword@127.0.0.1:$GW_PORT"
BAL=20000000
reset_user() {
    redis_gw DEL "gw:live:$USER" "gw:unsettled:$USER" traffic:logs >/dev/null
    redis_gw SET "balance:cache:$USER" "$1" >/dev/null
}
# record_of <jq filter>: the first record on traffic:logs matching
records() { redis_gw LRANGE traffic:logs 0 -1; }

t_begin "a running CONNECT tunnel is cut when the balance runs out"
reset_user "$BAL"
start=$SECONDS
curl -s -p -x "$PROXY" --limit-rate 10M --max-time 60 -o /dev/null \
    -w '%{http_code} %{size_download} %{size_header}\n' "http://127.0.0.1:$ORIGIN_PORT/bytes/200m" >"$GW_TMP/tunnel.out" 2>/dev/null
took=$((SECONDS - start))
read -r code got heads <"$GW_TMP/tunnel.out"
echo "tunnel: status $code, $got bytes received in ${took}s (balance $BAL)"
[ "$got" -lt 100000000 ] || t_fail "the tunnel was not cut" "$got bytes received"
[ "$got" -ge $((BAL / 2)) ] || t_fail "cut far too early" "$got bytes received"
wait_until 10 bash -c "redis-cli -p $REDIS_PORT LRANGE traffic:logs 0 -1 | grep -q cut_reason"
rec=$(records | jq -c 'select(.target_method == "CONNECT")' | head -1)
assert_eq balance "$(jq -r .cut_reason <<<"$rec")" "the record says why it ended"
resp=$(jq -r .response_bytes <<<"$rec")
# what HAProxy read from the provider: what the client received, plus at most
# what was still in HAProxy's buffer when the session was shut down
echo "record: response_bytes $resp, the client received $((got + heads)) (heads included): $((resp - got - heads)) more"
[ "$resp" -ge $((got + heads)) ] || t_fail "record bills less than the client received" "$resp < $((got + heads))"
[ "$resp" -le $((got + heads + 65536)) ] || t_fail "record bills more than the client received (+64 KiB)" "$resp vs $((got + heads))"
assert_eq 1 "$(records | jq -r .request_id | sort -u | wc -l)" "one record"
t_end

t_begin "the customer's next request gets 402"
assert_eq 402 "$(gw_status "$USER:mypassword" "http://127.0.0.1:$ORIGIN_PORT/bytes/10")" "after the cut"
t_end

t_begin "a running plain-HTTP download is cut too"
reset_user "$BAL"
curl -s -x "$PROXY" --limit-rate 10M --max-time 60 -o /dev/null \
    -w '%{http_code} %{size_download} %{size_header}\n' "http://127.0.0.1:$ORIGIN_PORT/bytes/200m" >"$GW_TMP/plain.out" 2>/dev/null
read -r code got heads <"$GW_TMP/plain.out"
echo "plain: status $code, $got bytes received (balance $BAL)"
[ "$got" -lt 100000000 ] || t_fail "the download was not cut" "$got bytes received"
wait_until 10 bash -c "redis-cli -p $REDIS_PORT LRANGE traffic:logs 0 -1 | grep -q cut_reason"
rec=$(records | jq -c 'select(.target_method == "GET")' | head -1)
assert_eq balance "$(jq -r .cut_reason <<<"$rec")" "cut_reason"
resp=$(jq -r .response_bytes <<<"$rec")
echo "record: response_bytes $resp, the client received $((got + heads)): $((resp - got - heads)) more"
[ "$resp" -ge $((got + heads)) ] && [ "$resp" -le $((got + heads + 65536)) ] ||
    t_fail "record's response_bytes not what the client received (+64 KiB)" "$resp vs $((got + heads))"
t_end

t_begin "a customer with balance left is not cut, and unsettled bytes count at the verdict"
reset_user 1000000000
curl -s -p -x "$PROXY" --limit-rate 20M --max-time 30 -o /dev/null -w '%{size_download}\n' \
    "http://127.0.0.1:$ORIGIN_PORT/bytes/30m" >"$GW_TMP/full.out" 2>/dev/null
assert_eq 31457280 "$(cat "$GW_TMP/full.out")" "the whole 30 MiB"
wait_until 10 bash -c "[ \"\$(redis-cli -p $REDIS_PORT LLEN traffic:logs)\" -ge 1 ]"
u=$(unsettled "$USER")
[ "${u:-0}" -ge 31457280 ] || t_fail "unsettled bytes after the transfer" "${u:-none}"
# the balance is untouched (gw-settle is not running here): live = balance - unsettled
redis_gw SET "balance:cache:$USER" $((u + 10)) >/dev/null
assert_eq 200 "$(gw_status "$USER:mypassword" "http://127.0.0.1:$ORIGIN_PORT/bytes/10")" "10 bytes left: allowed"
redis_gw SET "balance:cache:$USER" "$u" >/dev/null
assert_eq 402 "$(gw_status "$USER:mypassword" "http://127.0.0.1:$ORIGIN_PORT/bytes/10")" "0 left (settled - unsettled): 402"
t_end

# --- 3. two nodes ---------------------------------------------------------------------------

start_node_b || t_abort "node B did not start"

t_begin "two nodes: traffic on node A uses the balance up, the tunnel on node B is cut"
reset_user 30000000
# node B: a slow tunnel (5 MB/s: 40 s for all of it)
curl -s -p -x "http://$USER-session-b1:mypassword@127.0.0.1:$B_PORT" --limit-rate 5M --max-time 60 \
    -o /dev/null -w '%{size_download}\n' "http://127.0.0.1:$ORIGIN_PORT/bytes/200m" \
    >"$GW_TMP/node-b.out" 2>/dev/null &
b_pid=$!
sleep 1.5
# node A: at full speed, far more than what is left
curl -s -x "$PROXY" --max-time 30 -o /dev/null "http://127.0.0.1:$ORIGIN_PORT/bytes/100m" 2>/dev/null
a_done=$(date +%s%N)
wait "$b_pid"
b_done=$(date +%s%N)
got=$(cat "$GW_TMP/node-b.out")
echo "node B's tunnel ended $(((b_done - a_done) / 1000000)) ms after node A's download, with $got bytes"
[ "$got" -lt 100000000 ] || t_fail "node B's tunnel was not cut" "$got bytes"
wait_until 10 bash -c "redis-cli -p $REDIS_PORT LRANGE traffic:logs 0 -1 | grep -q '\"target_method\":\"CONNECT\".*cut_reason'"
rec=$(records | jq -c 'select(.target_method == "CONNECT")' | head -1)
assert_eq balance "$(jq -r .cut_reason <<<"$rec")" "node B's record says why"
assert_eq 402 "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -x "http://$USER:mypassword@127.0.0.1:$B_PORT" \
    "http://127.0.0.1:$ORIGIN_PORT/bytes/10")" "node B refuses the next request"
t_end

# --- 4. settlement ----------------------------------------------------------------------------

t_begin "gw-settle settles the records and they leave the unsettled count"
reset_user 1000000000
psql_gw "UPDATE balances SET used_bytes = 0 FROM users WHERE users.id = balances.user_id AND users.username = '$USER'" >/dev/null
for i in 1 2 3; do
    curl -s -p -x "$PROXY" -o /dev/null "http://127.0.0.1:$ORIGIN_PORT/bytes/1m" 2>/dev/null
done
wait_until 10 bash -c "[ \"\$(redis-cli -p $REDIS_PORT LLEN traffic:logs)\" -ge 3 ]"
sum=$(records | jq -s 'map(.request_bytes + .response_bytes) | add')
assert_eq "$sum" "$(unsettled "$USER")" "unsettled = the records' bytes before settlement"
start_bg settle "${GW_SETTLE:-$GW_ROOT/build/asan/gw-settle}" --postgres-uri "$POSTGRES_URI" \
    --redis-addr "$REDIS_ADDR" || t_fail "gw-settle did not start"
wait_until 20 bash -c "[ \"\$(redis-cli -p $REDIS_PORT EXISTS gw:unsettled:$USER)\" = 0 ]" ||
    t_fail "unsettled bytes still there" "$(unsettled "$USER")"
assert_eq 0 "$(redis_gw EXISTS "gw:live:$USER")" "no request left unsettled"
assert_eq "$sum" "$(psql_gw "SELECT b.used_bytes FROM balances b JOIN users u ON u.id = b.user_id WHERE u.username = '$USER'")" \
    "used_bytes in PostgreSQL"
t_end

t_summary
