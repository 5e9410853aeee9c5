#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Per-user limits (README "Per-user limits"), end to end: real HAProxy with
# haproxy/gateway.cfg, the gw-agent, PostgreSQL (migration 006), Redis, the
# stand-in provider and the origin (tests/lib/gateway.sh).
#
#   max_conns  CONNECT tunnels held open and plain downloads in progress count;
#              at the limit they work, one over gets 429 naming the limit;
#              requests one after another on a keep-alive connection count one
#   max_rps    from an idle user, N requests pass and the next gets 429
#              naming the limit, with Retry-After: 1
#   refused    nothing reaches the stand-in (its --record file), no billing
#              record in traffic:logs, counted in HAProxy's table
#   changes    a limit changed in PostgreSQL applies within a second or two
#   defaults   NULL: GW_MAX_CONNS / GW_MAX_RPS from the agent's environment;
#              0: unlimited; without migration 006 every user gets the
#              defaults and the agent says so once
#   two nodes  each node enforces its own count (a customer reaches 2 x)
#   live       a refused stream leaves the agent's live registry with its record
set -u
. "$(dirname "$0")/../lib/services.sh"
. "$GW_ROOT/tests/lib/gateway.sh"

svc_init || exit 1
# The defaults, from the environment (the agent inherits it).
export GW_MAX_CONNS=3 GW_MAX_RPS=4
start_gateway_stack || t_abort "the gateway stack did not start"

O="http://127.0.0.1:$ORIGIN_PORT"
SOCK=$GW_TMP/haproxy.sock

hap() { echo "$*" | socat -t 5 - "UNIX-CONNECT:$SOCK" 2>/dev/null; }
# eventually <timeout_s> <op> <value> <cmd...>: run cmd every 0.1 s until
# its output compares to value with test's <op>; fails after timeout_s
eventually() {
    local deadline=$((SECONDS + $1)) op=$2 want=$3
    shift 3
    until test "$("$@")" "$op" "$want" 2>/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}
# repeat <n> <url>: curl arguments for n requests of url, bodies dropped (no
# spaces in url: the caller splits the words)
repeat() { for _ in $(seq "$1"); do printf -- '-o /dev/null %s ' "$2"; done; }
# field <user> <name>: a counter of the user's entry in the limits table
field() { hap "show table user-limits key $1" | grep -o " $2=[0-9]*" | cut -d= -f2; }

psql_gw "INSERT INTO users (username, password, max_conns, max_rps) VALUES
    ('lim_c', 'pw', 2, 0), ('lim_d', 'pw', NULL, NULL), ('lim_z', 'pw', 0, 0),
    ('lim_r', 'pw', 0, 5), ('lim_k', 'pw', 1, 0), ('lim_x', 'pw', 0, 0),
    ('lim_g', 'pw', 2, 0)"
for u in lim_c lim_d lim_z lim_r lim_k lim_x lim_g; do
    eventually 10 = 204 gw_status "$u:pw" "$O/status/204" ||
        t_abort "user $u is not served"
done
sleep 2.1 # the requests above are out of every rate window

# tunnel_open <user>: a CONNECT tunnel to the origin on a new descriptor,
# kept open; sets TUN_FD and TUN_STATUS (the status line's code).
tunnel_open() {
    local auth line
    auth=$(gw_b64 "$1:pw")
    exec {TUN_FD}<>"/dev/tcp/127.0.0.1/$GW_PORT" || return 1
    printf 'CONNECT 127.0.0.1:%s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nProxy-Authorization: Basic %s\r\n\r\n' \
        "$ORIGIN_PORT" "$ORIGIN_PORT" "$auth" >&"$TUN_FD"
    TUN_STATUS=
    IFS= read -r -t 10 line <&"$TUN_FD" || return 1
    TUN_STATUS=$(awk '{print $2}' <<<"$line")
    # the rest of the head
    while IFS= read -r -t 10 line <&"$TUN_FD" && [ "${line%$'\r'}" != "" ]; do :; done
}
# connect_raw <user>: a CONNECT with "Connection: close"; prints what came
# back (head and body), CRs stripped.
connect_raw() {
    gw_raw "$GW_PORT" "CONNECT 127.0.0.1:$ORIGIN_PORT HTTP/1.1\r\nHost: 127.0.0.1:$ORIGIN_PORT\r\nProxy-Authorization: Basic $(gw_b64 "$1:pw")\r\nConnection: close\r\n\r\n" 5 | tr -d '\r'
}

CONN_BODY="429 Too Many Requests: concurrent connection limit (2) reached"

# --- max_conns ------------------------------------------------------------------------------------

t_begin "max_conns 2: two CONNECT tunnels held open work; a third tunnel and a plain request get 429 naming the limit, and reach nothing"
mark=$(gw_rec_mark)
tunnel_open lim_c && t1=$TUN_FD
assert_eq 200 "$TUN_STATUS" "first tunnel"
tunnel_open lim_c && t2=$TUN_FD
assert_eq 200 "$TUN_STATUS" "second tunnel"
assert_eq 2 "$(field lim_c conn_cur)" "conn_cur with two tunnels open"
# data flows through both
printf 'GET /status/200 HTTP/1.1\r\nHost: o\r\n\r\n' >&"$t1"
IFS= read -r -t 10 line <&"$t1"
assert_eq "HTTP/1.1 200 OK" "${line%$'\r'}" "a request through the first tunnel"
out=$(connect_raw lim_c)
assert_match '^HTTP/1.1 429 Too Many Requests' "$out" "third tunnel"
assert_eq "$CONN_BODY" "$(tail -n 1 <<<"$out")" "third tunnel's body"
assert_no_match 'retry-after' "${out,,}" "no Retry-After for the concurrency limit"
gw_req lim_c:pw "$O/status/200"
assert_eq 429 "$GW_CODE" "a plain request with both tunnels open"
assert_eq "$CONN_BODY" "$(cat "$GW_BODY")" "its body"
assert_eq 2 "$(gw_rec_since "$mark" | grep -c CONNECT)" "CONNECTs that reached the stand-in (the two tunnels)"
assert_eq 2 "$(gw_rec_since "$mark" | wc -l)" "requests that reached the stand-in"
assert_eq 2 "$(field lim_c gpc1)" "refusals counted in the table (gpc1)"
hap "show table user-limits key lim_c" >"$GW_TMP/table-lim_c.txt"
exec {t1}>&-
eventually 10 = 200 gw_status lim_c:pw "$O/status/200" ||
    t_fail "no 200 after one of the two tunnels closed"
tunnel_open lim_c && t3=$TUN_FD
assert_eq 200 "$TUN_STATUS" "a tunnel again, next to the one still open"
exec {t2}>&- {t3}>&-
eventually 10 = 0 field lim_c conn_cur || t_fail "conn_cur stays $(field lim_c conn_cur) after every tunnel closed"
t_end

t_begin "max_conns 2: two plain downloads in progress count; a third request gets 429; the limit frees when they end"
mark=$(gw_rec_mark)
curl -s -o /dev/null --max-time 60 --limit-rate 100k -x "http://lim_g:pw@127.0.0.1:$GW_PORT" "$O/bytes/100m" &
d1=$!
curl -s -o /dev/null --max-time 60 --limit-rate 100k -x "http://lim_g:pw@127.0.0.1:$GW_PORT" "$O/bytes/100m" &
d2=$!
eventually 15 = 2 field lim_g conn_cur || t_fail "conn_cur never 2 with two downloads running"
gw_req lim_g:pw "$O/status/200"
assert_eq 429 "$GW_CODE" "a third request while two downloads run"
assert_eq "$CONN_BODY" "$(cat "$GW_BODY")" "its body"
gw_req lim_g:pw "https://localhost:$ORIGIN_TLS_PORT/" --cacert "$GW_CA"
assert_eq 429 "$GW_CODE" "an HTTPS request (CONNECT) while two downloads run"
kill "$d1" "$d2" 2>/dev/null
wait "$d1" "$d2" 2>/dev/null
eventually 10 = 0 field lim_g conn_cur || t_fail "conn_cur stays $(field lim_g conn_cur) after the downloads were stopped"
assert_eq 2 "$(gw_rec_since "$mark" | wc -l)" "requests that reached the stand-in (the two downloads)"
assert_eq 200 "$(gw_status lim_g:pw "$O/status/200")" "a request after the downloads"
t_end

t_begin "max_conns 1: requests one after another on one keep-alive connection count one"
out=$(curl -s -o /dev/null -o /dev/null -o /dev/null -o /dev/null -w '%{http_code} %{num_connects}\n' \
    --max-time 30 -x "http://lim_k:pw@127.0.0.1:$GW_PORT" "$O/status/200" "$O/status/200" "$O/status/200" "$O/status/200")
assert_eq "200 1
200 0
200 0
200 0" "$out" "four requests on one connection (status, new connections)"
t_end

# --- max_rps ---------------------------------------------------------------------------------------

t_begin "max_rps 5: five requests in a row pass, the sixth gets 429 naming the limit with Retry-After: 1, and reaches nothing"
mark=$(gw_rec_mark)
out=$(curl -s -w '%{http_code} ' -o /dev/null -o /dev/null -o /dev/null -o /dev/null -o /dev/null \
    -o "$GW_TMP/sixth.body" -D "$GW_TMP/rps.hdrs" --max-time 30 -x "http://lim_r:pw@127.0.0.1:$GW_PORT" \
    "$O/status/200" "$O/status/200" "$O/status/200" "$O/status/200" "$O/status/200" "$O/status/200")
assert_eq "200 200 200 200 200 429" "${out% }" "six requests on one connection"
assert_eq "429 Too Many Requests: request rate limit (5/s) reached" "$(cat "$GW_TMP/sixth.body")" "the sixth's body"
assert_match $'\n''retry-after: 1'$'\n' "$(tr -d '\r' <"$GW_TMP/rps.hdrs" | sed 's/^[A-Za-z-]*:/\L&/')"$'\n' "Retry-After"
assert_eq 5 "$(gw_rec_since "$mark" | wc -l)" "requests that reached the stand-in"
assert_eq 1 "$(field lim_r gpc2)" "refusals counted in the table (gpc2)"
gw_req lim_r:pw "https://localhost:$ORIGIN_TLS_PORT/" --cacert "$GW_CA"
assert_eq 429 "$GW_CODE" "a CONNECT (HTTPS) right after the burst"
# refused requests do not count: a client retrying every 100 ms gets through
# once the second is over
eventually 5 = 200 gw_status lim_r:pw "$O/status/200" || t_fail "still refused after 5 s"
t_end

t_begin "max_rps 5 on new connections: five pass, the sixth gets 429"
sleep 2.1
codes=
for _ in 1 2 3 4 5 6; do codes+="$(gw_status lim_r:pw "$O/status/200") "; done
assert_eq "200 200 200 200 200 429" "${codes% }" "six requests, one connection each"
t_end

# --- defaults, unlimited ---------------------------------------------------------------------------

t_begin "NULL limits: the agent's GW_MAX_CONNS (3) and GW_MAX_RPS (4) from its environment"
fds=()
for i in 1 2 3; do
    tunnel_open lim_d && fds+=("$TUN_FD")
    assert_eq 200 "$TUN_STATUS" "tunnel $i"
done
out=$(connect_raw lim_d)
assert_match '429 Too Many Requests: concurrent connection limit \(3\) reached' "$out" "fourth tunnel"
for fd in "${fds[@]}"; do exec {fd}>&-; done
eventually 10 = 0 field lim_d conn_cur || t_fail "conn_cur stays up"
sleep 2.1
codes=$(curl -s -w '%{http_code} ' -o /dev/null -o /dev/null -o /dev/null -o /dev/null -o "$GW_TMP/fifth.body" \
    --max-time 30 -x "http://lim_d:pw@127.0.0.1:$GW_PORT" "$O/status/200" "$O/status/200" "$O/status/200" \
    "$O/status/200" "$O/status/200")
assert_eq "200 200 200 200 429" "${codes% }" "five requests in a row"
assert_eq "429 Too Many Requests: request rate limit (4/s) reached" "$(cat "$GW_TMP/fifth.body")" "the fifth's body"
t_end

t_begin "0: unlimited, whatever the defaults (5 tunnels, 12 requests in a row)"
fds=()
for i in 1 2 3 4 5; do
    tunnel_open lim_z && fds+=("$TUN_FD")
    assert_eq 200 "$TUN_STATUS" "tunnel $i"
done
# shellcheck disable=SC2046 # repeat's words are meant to split
codes=$(curl -s -w '%{http_code} ' --max-time 30 -x "http://lim_z:pw@127.0.0.1:$GW_PORT" \
    $(repeat 12 "$O/status/200"))
assert_eq "$(printf '200 %.0s' $(seq 12))" "$codes" "12 requests in a row with 5 tunnels open"
for fd in "${fds[@]}"; do exec {fd}>&-; done
t_end

# --- changes in PostgreSQL ---------------------------------------------------------------------------

t_begin "a limit changed in PostgreSQL applies within a second or two (max_conns 0 -> 1 -> NULL, max_rps 0 -> 2)"
tunnel_open lim_x && tx=$TUN_FD
assert_eq 200 "$TUN_STATUS" "a tunnel (unlimited)"
assert_eq 200 "$(gw_status lim_x:pw "$O/status/200")" "a request next to it (unlimited)"
t0=$(date +%s%N)
psql_gw "UPDATE users SET max_conns = 1 WHERE username = 'lim_x'"
eventually 10 = 429 gw_status lim_x:pw "$O/status/200" || t_fail "max_conns 1 not applied within 10 s"
echo "  max_conns 0 -> 1 applied after $((($(date +%s%N) - t0) / 1000000)) ms"
gw_req lim_x:pw "$O/status/200"
assert_eq "429 Too Many Requests: concurrent connection limit (1) reached" "$(cat "$GW_BODY")" "the body names the new limit"
t0=$(date +%s%N)
psql_gw "UPDATE users SET max_conns = NULL, max_rps = 2 WHERE username = 'lim_x'"
eventually 10 = 200 gw_status lim_x:pw "$O/status/200" || t_fail "max_conns NULL (default 3) not applied within 10 s"
echo "  max_conns 1 -> NULL applied after $((($(date +%s%N) - t0) / 1000000)) ms"
exec {tx}>&-
sleep 2.1
codes=$(curl -s -w '%{http_code} ' -o /dev/null -o /dev/null -o /dev/null --max-time 30 \
    -x "http://lim_x:pw@127.0.0.1:$GW_PORT" "$O/status/200" "$O/status/200" "$O/status/200")
assert_eq "200 200 429" "${codes% }" "max_rps 2: three requests in a row"
t_end

# --- billing, counters ------------------------------------------------------------------------------

t_begin "refused requests are not billed: traffic:logs holds one record per forwarded request, none with 429"
# Forwarded for lim_r: 1 (the 204 at the start) + 5 (the burst) + 1 (after
# the wait) + 5 (new connections); 3 refused. The records arrive when each
# request ends, pushed every ~10 ms.
records() { redis_gw LRANGE traffic:logs 0 -1; }
lim_r_records() { records | grep -c '"username":"lim_r"'; }
eventually 15 -ge 12 lim_r_records || t_fail "lim_r's records never reached 12"
sleep 1
assert_eq 12 "$(records | grep -c '"username":"lim_r"')" "lim_r's records (12 forwarded)"
assert_eq 0 "$(records | grep -c '"status_code":429')" "records with status 429"
t_end

t_begin "HAProxy counts the refusals: the frontend's intercepted requests and 4xx responses; per user in the table"
stat=$(hap "show stat" | awk -F, 'NR==1{for(i=1;i<=NF;i++) h[$i]=i} $1=="gateway" && $2=="FRONTEND"{print $h["intercepted"], $h["hrsp_4xx"]}')
read -r intercepted h4xx <<<"$stat"
assert_match '^[0-9]+$' "${intercepted:-}" "intercepted"
[ "${h4xx:-0}" -ge 15 ] || t_fail "hrsp_4xx ${h4xx:-?}: fewer than the 429s sent"
assert_match 'conn_cur=[0-9]+ gpc0=[0-9]+ gpc1=2 gpc2=0 gpc0_rate\(1000\)=[0-9]+' \
    "$(cat "$GW_TMP/table-lim_c.txt")" "lim_c's entry"
echo "  $(tail -n +2 "$GW_TMP/table-lim_c.txt" | head -1)"
echo "  $(hap "show pools" | grep -i 'sticktables')"
t_end

# --- two nodes --------------------------------------------------------------------------------------

start_node_b || t_abort "node B did not start"

t_begin "two nodes: the limits hold per node (max_conns 2: two tunnels on each node, the third on each gets 429)"
fds=()
for port in "$GW_PORT" "$B_PORT"; do
    for i in 1 2; do
        GW_PORT=$port tunnel_open lim_c && fds+=("$TUN_FD")
        assert_eq 200 "$TUN_STATUS" "tunnel $i on port $port"
    done
done
assert_match 'concurrent connection limit \(2\) reached' "$(connect_raw lim_c)" "a third tunnel on node A"
assert_match 'concurrent connection limit \(2\) reached' "$(GW_PORT=$B_PORT connect_raw lim_c)" "a third tunnel on node B"
for fd in "${fds[@]}"; do exec {fd}>&-; done
stop_bg haproxy_b
stop_bg agent_b
t_end

# --- without migration 006 ---------------------------------------------------------------------------

t_begin "without migration 006: every user gets the defaults, said once in the agent's log; back once it is applied again"
said() { grep -c "users has no max_conns / max_rps columns" "$GW_TMP/agent.log"; }
seen() { grep -c "per-user limits read from users.max_conns" "$GW_TMP/agent.log"; }
assert_eq 0 "$(said)" "not said while the columns exist"
assert_eq 1 "$(seen)" "the columns' use said once at start"
psql_gw "ALTER TABLE users DROP COLUMN max_conns, DROP COLUMN max_rps"
psql_gw "INSERT INTO users (username, password) VALUES ('lim_n1', 'pw')" # a change to users: a reload
eventually 10 -ge 1 said || t_fail "the agent did not say it"
eventually 10 = 204 gw_status lim_n1:pw "$O/status/204" || t_fail "lim_n1 not served"
sleep 2.1
codes=$(curl -s -w '%{http_code} ' -o /dev/null -o /dev/null -o /dev/null -o /dev/null -o /dev/null \
    --max-time 30 -x "http://lim_z:pw@127.0.0.1:$GW_PORT" "$O/status/200" "$O/status/200" "$O/status/200" \
    "$O/status/200" "$O/status/200")
assert_eq "200 200 200 200 429" "${codes% }" "lim_z (was 0, unlimited) now has the default 4/s"
psql_gw "INSERT INTO users (username, password) VALUES ('lim_n2', 'pw')"
eventually 10 = 204 gw_status lim_n2:pw "$O/status/204" || t_fail "lim_n2 not served"
assert_eq 1 "$(said)" "said once, not at every reload"
psql -X -q -v ON_ERROR_STOP=1 -d "$POSTGRES_URI" -f "$GW_ROOT/sql/migrations/006_user_limits.sql" >/dev/null
psql_gw "UPDATE users SET max_rps = 0 WHERE username = 'lim_z'"
eventually 10 = 2 seen || t_fail "the agent did not see the columns again"
sleep 2.1
# shellcheck disable=SC2046 # repeat's words are meant to split
codes=$(curl -s -w '%{http_code} ' --max-time 30 -x "http://lim_z:pw@127.0.0.1:$GW_PORT" \
    $(repeat 8 "$O/status/200"))
assert_eq "$(printf '200 %.0s' $(seq 8))" "$codes" "lim_z unlimited again"
t_end

t_begin "live balance: a stream HAProxy refused after a 200 verdict leaves the agent's registry with its record"
# The agent registers every stream it allows (live balance); a 429 comes
# after that. Its record (not billed) must end the registration, not a
# later dump's pruning. Let the last records arrive, then stop the agent.
sleep 2
stop_bg agent
line=$(grep -o 'live: [0-9]* streams registered ([0-9]* not[^)]*), [0-9]* ended, [0-9]* pruned' "$GW_TMP/agent.log" | tail -n 1)
read -r registered ended pruned <<<"$(sed -E 's/live: ([0-9]+) streams registered \([0-9]+ not[^)]*\), ([0-9]+) ended, ([0-9]+) pruned/\1 \2 \3/' <<<"$line")"
assert_match '^[0-9]+$' "${registered:-}" "the agent's live line ($line)"
assert_eq "${registered:-?} 0" "${ended:-} ${pruned:-}" "streams ended by their record, pruned ($line)"
t_end

t_summary
