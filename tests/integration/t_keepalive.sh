#!/usr/bin/env bash
# Keep-alive to the providers (haproxy/gateway.cfg, backend upstream) end to
# end, on the real stack (tests/lib/gateway.sh) with stand-in providers that
# number their connections (tests/tools/upstream --record-conns):
#   a. 60 upstream credentials (5 users x 4 sessions x 3 countries), 10,200
#      GETs, CONNECT tunnels and POSTs over many client connections at once:
#      every request answered 200, and no upstream connection ever carried
#      two upstream usernames or two provider ports;
#   b. reuse happens: one customer's 200 sequential GETs (a curl per request,
#      then one curl for all) use at most a quarter as many upstream
#      connections as requests;
#   c. POST and DELETE never reuse: each is alone on its upstream connection,
#      and the customer's own connection stays open after a POST;
#   f. billing stays exact: requests of different sizes on one upstream
#      connection each have their own bytes in traffic:logs, as curl counted
#      them;
#   e. GW_UPSTREAM_KEEPALIVE=0 (a second node): one upstream connection per
#      request;
#   d. a provider that closes connections idle for 1 s, hit at intervals
#      around 1 s; one whose close crosses the request on every reuse (reset,
#      unanswered: --drop-after 1), sequentially and 8 at once; and one that
#      closes after every response: no customer sees an error;
#   g. a provider that answers nothing: a GET is sent again (retries 5), a
#      POST never is.
# The record lines read here: "<port> <method> <target> <username> <conn>".
set -u
. "$(dirname "$0")/../lib/services.sh"
. "$GW_ROOT/tests/lib/gateway.sh"

hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -ge 65536 ]; then ulimit -n 65536; else ulimit -n "$hard"; fi

svc_init || exit 1
start_gateway_stack || t_abort "the gateway stack did not start"

O="http://127.0.0.1:$ORIGIN_PORT"
PASSWORDS=(--password demo-global-pass --password 'de:p@ss/w0rd' --password demo-us-pass)
KA_MIN=$(free_port_range 4)
KA_MAX=$((KA_MIN + 3))
KA_REC=$GW_TMP/ka.record
start_standin ka "$KA_MIN-$KA_MAX" --record-conns "${PASSWORDS[@]}" || t_abort "stand-in ka"

hap() { echo "$*" | socat -t 5 - "UNIX-CONNECT:$GW_TMP/haproxy.sock" 2>/dev/null; }

# retries: backend upstream's retried requests so far (show stat "wretr").
retries() {
    hap "show stat" | awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) h[$i] = i }
        $1 == "upstream" && $2 == "BACKEND" { print $h["wretr"] }'
}

# upstream_name <proxy-user> [gateway port]: the stand-in that served a request.
upstream_name() {
    curl -s -o /dev/null -D - --max-time 10 -x "http://$1@127.0.0.1:${2:-$GW_PORT}" "$O/which" |
        tr -d '\r' | sed -n 's/^[Xx]-[Uu]pstream: \(.*\):[0-9]*$/\1/p'
}

# point <name> <first> <last> <slug...>: the providers' ports to a stand-in,
# and wait until the gateway sends there.
point() {
    local name=$1 first=$2 last=$3 slugs
    shift 3
    slugs=$(printf "'%s'," "$@")
    psql_gw "UPDATE proxies SET port_min = $first, port_max = $last WHERE slug IN (${slugs%,})" >/dev/null
    wait_until 15 bash -c "[ \"\$(curl -s -o /dev/null -D - --max-time 5 -x http://myuser-session-probe:mypassword@127.0.0.1:$GW_PORT $O/which | tr -d '\r' | sed -n 's/^[Xx]-[Uu]pstream: \(.*\):[0-9]*\$/\1/p')\" = $name ]" ||
        t_abort "the gateway never sent to stand-in $name"
}

# conn_stats <record lines>: "records conns reused mixed_users mixed_ports",
# reused being the connections that carried more than one request.
conn_stats() {
    awk 'NF == 5 {
            n++; c[$5]++
            if (!($5 in u)) { u[$5] = $4; p[$5] = $1 }
            if (u[$5] != $4) bu[$5] = 1
            if (p[$5] != $1) bp[$5] = 1
        }
        END {
            for (k in c) { conns++; if (c[k] > 1) reused++ }
            for (k in bu) mu++
            for (k in bp) mp++
            printf "%d %d %d %d %d\n", n, conns, reused, mu, mp
        }' <<<"$1"
}

# alone <record lines> <method>: records of <method> whose connection carried
# another request too (none expected).
alone() {
    awk -v m="$2" 'NF == 5 { c[$5]++; if ($2 == m) mine[$5] = $0 }
        END { for (k in mine) if (c[k] > 1) print mine[k] " (" c[k] " requests on it)" }' <<<"$1"
}

codes_other_than_200() { grep -v '^200$' "$@" | sort | uniq -c | tr '\n' ' '; }

point ka "$KA_MIN" "$KA_MAX" demo-global demo-de demo-us

# --- a. many credentials at once --------------------------------------------------------
for u in 1 2 3 4 5; do
    psql_gw "INSERT INTO users (username, password) VALUES ('ka$u', 'pw')" >/dev/null
done
wait_until 10 bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' -x http://ka5:pw@127.0.0.1:$GW_PORT $O/x)\" = 200 ]" ||
    t_abort "the users ka1..ka5 never got in"

N_GET=120 N_TUN=40 N_POST=10
t_begin "a. 60 credentials, GETs, CONNECTs and POSTs at once: no upstream connection carries two credentials or two ports"
JOBS=$GW_TMP/jobs
mkdir -p "$JOBS"
head -c 1000 /dev/urandom >"$GW_TMP/post.bin"
j=0
for u in 1 2 3 4 5; do
    for s in 1 2 3 4; do
        for cc in "" -country-DE -country-US; do
            proxy="http://ka$u$cc-session-k${u}x$s:pw@127.0.0.1:$GW_PORT"
            j=$((j + 1))
            # each kind of request its own curl, 4 (POSTs: 2) transfers at a time
            for kind in get tun post; do
                f=$JOBS/$j.$kind
                case $kind in
                get) n=$N_GET args="" ;;
                tun) n=$N_TUN args="-p -H 'Connection: close'" ;;
                post) n=$N_POST args="--data-binary @$GW_TMP/post.bin" ;;
                esac
                for ((i = 0; i < n; i++)); do
                    if [ "$kind" = post ]; then
                        printf 'url = "%s/echo?%s-%d-%d"\noutput = "/dev/null"\n' "$O" "$kind" "$j" "$i"
                    else
                        printf 'url = "%s/bytes/%d?%s-%d-%d"\noutput = "/dev/null"\n' \
                            "$O" $((100 + (i * 37 + j) % 3000)) "$kind" "$j" "$i"
                    fi
                done >"$f.curl"
                printf '%s\n' "curl -s --no-progress-meter --parallel --parallel-max 4 --max-time 30 -x '$proxy' $args -w '%{http_code}\n' -K '$f.curl' >'$f.codes' 2>'$f.err'" >"$f.sh"
            done
        done
    done
done
mark=$(gw_rec_mark "$KA_REC")
start=$SECONDS
printf '%s\n' "$JOBS"/*.sh | xargs -P 24 -n 1 bash
took=$((SECONDS - start))
total=$((j * (N_GET + N_TUN + N_POST)))
ok=$(cat "$JOBS"/*.codes | grep -c '^200$')
echo "  $total requests by $j credentials in ${took}s: $ok answered 200; others: $(cat "$JOBS"/*.codes | codes_other_than_200)"
assert_eq "$total" "$ok" "requests answered 200"
rec=$(gw_rec_since "$mark" "$KA_REC")
read -r records conns reused mixed_users mixed_ports <<<"$(conn_stats "$rec")"
echo "  at the provider: $records requests on $conns connections, $reused of them reused"
assert_eq $((j * N_GET)) "$(grep -c ' GET ' <<<"$rec")" "GETs at the provider"
assert_eq $((j * N_POST)) "$(grep -c ' POST ' <<<"$rec")" "POSTs at the provider"
assert_eq $((j * N_TUN)) "$(grep -c ' CONNECT ' <<<"$rec")" "CONNECTs at the provider (one tunnel per request)"
assert_eq 60 "$(awk '{ print $4 }' <<<"$rec" | sort -u | wc -l)" "distinct upstream usernames (one per credential)"
assert_eq 0 "$mixed_users" "upstream connections that carried two upstream usernames"
assert_eq 0 "$mixed_ports" "upstream connections that carried two provider ports"
[ "$reused" -gt 0 ] || t_fail "no upstream connection was reused: the check above proves nothing"
[ "$took" -le 60 ] || t_fail "took ${took}s (at most 60 s expected)"
assert_eq "" "$(alone "$rec" POST | head -5)" "POSTs that shared their upstream connection"
t_end

# --- b. reuse happens ----------------------------------------------------------------------
t_begin "b. one customer's 200 sequential GETs use at most 50 upstream connections"
ME=myuser-session-kab:mypassword
mark=$(gw_rec_mark "$KA_REC")
start=$SECONDS
: >"$GW_TMP/b.codes"
for ((i = 0; i < 200; i++)); do
    curl -s -o /dev/null --max-time 10 -x "http://$ME@127.0.0.1:$GW_PORT" -w '%{http_code}\n' \
        "$O/bytes/$((100 + i))?b-$i" >>"$GW_TMP/b.codes"
done
read -r records conns reused _ <<<"$(conn_stats "$(gw_rec_since "$mark" "$KA_REC")")"
echo "  a curl per request: $records requests on $conns upstream connections in $((SECONDS - start))s"
assert_eq 200 "$(grep -c '^200$' "$GW_TMP/b.codes")" "answered 200"
assert_eq 200 "$records" "requests at the provider"
[ "$conns" -le 50 ] || t_fail "$conns upstream connections for 200 requests (at most 50 expected)"
mark=$(gw_rec_mark "$KA_REC")
for ((i = 0; i < 200; i++)); do
    printf 'url = "%s/bytes/%d?b1-%d"\noutput = "/dev/null"\n' "$O" $((100 + i)) "$i"
done >"$GW_TMP/b.curl"
curl -s --max-time 30 -x "http://$ME@127.0.0.1:$GW_PORT" -w '%{http_code}\n' -K "$GW_TMP/b.curl" >"$GW_TMP/b1.codes"
read -r records conns reused _ <<<"$(conn_stats "$(gw_rec_since "$mark" "$KA_REC")")"
echo "  one curl, one client connection: $records requests on $conns upstream connections"
assert_eq 200 "$(grep -c '^200$' "$GW_TMP/b1.codes")" "answered 200 (one curl)"
[ "$conns" -le 50 ] || t_fail "$conns upstream connections for 200 requests in one curl (at most 50 expected)"
t_end

# --- c. POST and DELETE never reuse --------------------------------------------------------
t_begin "c. POSTs and DELETEs are each alone on an upstream connection; GETs between them reuse"
ME=myuser-session-kac:mypassword
mark=$(gw_rec_mark "$KA_REC")
: >"$GW_TMP/c.codes"
for ((i = 0; i < 40; i++)); do
    for m in GET POST DELETE; do
        args=()
        [ "$m" = POST ] && args=(--data-binary "@$GW_TMP/post.bin")
        [ "$m" = DELETE ] && args=(-X DELETE)
        curl -s -o /dev/null --max-time 10 -x "http://$ME@127.0.0.1:$GW_PORT" -w '%{http_code}\n' \
            "${args[@]}" "$O/echo?c-$m-$i" >>"$GW_TMP/c.codes"
    done
done
rec=$(gw_rec_since "$mark" "$KA_REC")
read -r records conns reused _ <<<"$(conn_stats "$rec")"
get_conns=$(awk '$2 == "GET" { print $5 }' <<<"$rec" | sort -u | wc -l)
echo "  $records requests on $conns upstream connections; the 40 GETs on $get_conns"
assert_eq 120 "$(grep -c '^200$' "$GW_TMP/c.codes")" "answered 200"
assert_eq "" "$(alone "$rec" POST | head -5)" "POSTs that shared their upstream connection"
assert_eq "" "$(alone "$rec" DELETE | head -5)" "DELETEs that shared their upstream connection"
[ "$get_conns" -le 10 ] || t_fail "the 40 GETs used $get_conns upstream connections (at most 10 expected)"
t_end

t_begin "c. a POST leaves the customer's own connection open (client-side keep-alive)"
w=(-s -o /dev/null --max-time 10 -w '%{http_code} %{num_connects}\n' -x "http://$ME@127.0.0.1:$GW_PORT")
out=$(curl "${w[@]}" --data-binary x "$O/echo?c-ka" --next "${w[@]}" "$O/bytes/10?c-ka2" \
    --next "${w[@]}" -X DELETE "$O/echo?c-ka3")
assert_eq "200 1
200 0
200 0" "$out" "status and new connections of POST, GET, DELETE in one curl"
t_end

# --- f. billing with reuse -----------------------------------------------------------------
t_begin "f. requests sharing an upstream connection each bill their own bytes"
redis_gw DEL traffic:logs >/dev/null
mark=$(gw_rec_mark "$KA_REC")
: >"$GW_TMP/f.curl"
for n in 1000 5000 20 77777 3 4096 12345 65536 1 250000; do
    curl -s -o /dev/null --max-time 10 -x "http://myuser-session-kaf:mypassword@127.0.0.1:$GW_PORT" \
        -w '%{http_code} %{size_request} %{size_header} %{size_download}\n' "$O/bytes/$n" >>"$GW_TMP/f.curl"
done
curl -s -o /dev/null --max-time 10 -x "http://myuser-session-kaf:mypassword@127.0.0.1:$GW_PORT" \
    -w '%{http_code} %{size_request} %{size_header} %{size_download}\n' \
    --data-binary "@$GW_TMP/post.bin" "$O/echo" >>"$GW_TMP/f.curl"
want=$(awk '{ print $2, $3 + $4 }' "$GW_TMP/f.curl" | sort)
assert_eq 11 "$(grep -c '^200 ' "$GW_TMP/f.curl")" "answered 200"
wait_until 10 bash -c "[ \"\$(redis-cli -p $REDIS_PORT LRANGE traffic:logs 0 -1 | grep -c '\"kaf\"')\" -ge 11 ]"
got=$(redis_gw LRANGE traffic:logs 0 -1 | jq -r 'select(.session_id == "kaf") | "\(.request_bytes) \(.response_bytes)"' | sort)
assert_eq "$want" "$got" "bytes sent and received per request, as curl counted them"
read -r records conns reused _ <<<"$(conn_stats "$(gw_rec_since "$mark" "$KA_REC")")"
echo "  $records requests on $conns upstream connections"
[ "$conns" -le 3 ] || t_fail "the 10 GETs and a POST used $conns upstream connections: too few shared one for this to show anything"
t_end

# --- e. GW_UPSTREAM_KEEPALIVE=0 ------------------------------------------------------------
t_begin "e. GW_UPSTREAM_KEEPALIVE=0: every request on its own upstream connection"
export GW_UPSTREAM_KEEPALIVE=0
start_node_b || t_abort "node B did not start"
unset GW_UPSTREAM_KEEPALIVE
wait_until 15 bash -c "[ \"\$(curl -s -o /dev/null -D - --max-time 5 -x http://myuser:mypassword@127.0.0.1:$B_PORT $O/which | tr -d '\r' | grep -ci '^x-upstream: ka:')\" = 1 ]" ||
    t_fail "node B never sent to stand-in ka"
ME=myuser-session-kae:mypassword
mark=$(gw_rec_mark "$KA_REC")
: >"$GW_TMP/e.codes"
for ((i = 0; i < 100; i++)); do
    curl -s -o /dev/null --max-time 10 -x "http://$ME@127.0.0.1:$B_PORT" -w '%{http_code}\n' \
        "$O/bytes/$((100 + i))?e-$i" >>"$GW_TMP/e.codes"
done
for ((i = 0; i < 100; i++)); do
    printf 'url = "%s/bytes/%d?e1-%d"\noutput = "/dev/null"\n' "$O" $((100 + i)) "$i"
done >"$GW_TMP/e.curl"
curl -s --no-progress-meter --parallel --parallel-max 8 --max-time 30 -x "http://$ME@127.0.0.1:$B_PORT" \
    -w '%{http_code}\n' -K "$GW_TMP/e.curl" >>"$GW_TMP/e.codes"
read -r records conns reused _ <<<"$(conn_stats "$(gw_rec_since "$mark" "$KA_REC")")"
echo "  $records requests on $conns upstream connections"
assert_eq 200 "$(grep -c '^200$' "$GW_TMP/e.codes")" "answered 200"
assert_eq 200 "$records" "requests at the provider"
assert_eq 200 "$conns" "upstream connections"
stop_bg haproxy_b
stop_bg agent_b
t_end

# --- d. providers that close ---------------------------------------------------------------
IDLE_PORT=$(free_port)
CLOSE_PORT=$(free_port)
start_standin idle "$IDLE_PORT" --record-conns --idle-close 1 "${PASSWORDS[@]}" || t_abort "stand-in idle"
start_standin closing "$CLOSE_PORT" --record-conns --close-after-response "${PASSWORDS[@]}" ||
    t_abort "stand-in closing"
DROP_PORT=$(free_port)
start_standin drop "$DROP_PORT" --record-conns --drop-after 1 "${PASSWORDS[@]}" || t_abort "stand-in drop"

# paced <proxy-user> <codes file> <offset> <width>: 30 rounds of <width>
# requests at once (one curl), the pause before each 0.90..1.10 s, in an
# order set by offset.
paced() {
    local user=$1 codes=$2 off=$3 width=$4 i k d urls
    for ((i = 0; i < 30; i++)); do
        d=$((90 + (i * 7 + off) % 21))
        urls=()
        for ((k = 0; k < width; k++)); do
            urls+=(-o /dev/null "$O/bytes/$((1000 + i + k))?d-$off-$i-$k")
        done
        sleep "$((d / 100)).$(printf '%02d' $((d % 100)))"
        curl -s --no-progress-meter --parallel --parallel-max 8 --max-time 10 -x "http://$user@127.0.0.1:$GW_PORT" \
            -w '%{http_code}\n' "${urls[@]}" >>"$codes"
    done
}

t_begin "d. a provider closing connections idle for 1 s, requests every 0.9..1.1 s: no customer-visible error"
point idle "$IDLE_PORT" "$IDLE_PORT" demo-global
IDLE_REC=$GW_TMP/idle.record
mark=$(gw_rec_mark "$IDLE_REC")
retries_before=$(retries)
start=$SECONDS
: >"$GW_TMP/d.codes"
pids=()
paced myuser-session-kd1:mypassword "$GW_TMP/d.codes" 0 1 &
pids+=($!)
paced myuser-session-kd1:mypassword "$GW_TMP/d.codes" 5 1 &
pids+=($!)
paced myuser-session-kd2:mypassword "$GW_TMP/d.codes" 11 1 &
pids+=($!)
# and 8 at once each time: several idle connections under one key
paced myuser-session-kd1:mypassword "$GW_TMP/d.codes" 3 8 &
pids+=($!)
wait "${pids[@]}"
rec=$(gw_rec_since "$mark" "$IDLE_REC")
read -r records conns reused _ <<<"$(conn_stats "$rec")"
idle_closes=$(standin_stat idle idle_closes)
n=$(wc -l <"$GW_TMP/d.codes")
echo "  $n requests in $((SECONDS - start))s: $(grep -c '^200$' "$GW_TMP/d.codes") answered 200, others: $(codes_other_than_200 "$GW_TMP/d.codes")"
echo "  at the provider: $records requests on $conns connections ($reused reused); it closed $idle_closes idle ones; HAProxy retried $(($(retries) - retries_before))"
assert_eq 330 "$n" "requests made"
assert_eq "" "$(codes_other_than_200 "$GW_TMP/d.codes")" "statuses other than 200"
[ "$reused" -gt 0 ] || t_fail "no upstream connection was reused: the case proves nothing"
[ "${idle_closes:-0}" -gt 0 ] || t_fail "the provider never closed an idle connection"
t_end

t_begin "d. a provider whose close crosses the request (reset, unanswered, on every reuse): no customer-visible error"
point drop "$DROP_PORT" "$DROP_PORT" demo-global
DROP_REC=$GW_TMP/drop.record
mark=$(gw_rec_mark "$DROP_REC")
retries_before=$(retries)
: >"$GW_TMP/d3.codes"
for ((i = 0; i < 60; i++)); do
    curl -s -o /dev/null --max-time 10 -x "http://myuser-session-kd4:mypassword@127.0.0.1:$GW_PORT" \
        -w '%{http_code}\n' "$O/bytes/$((100 + i))?d4-$i" >>"$GW_TMP/d3.codes"
done
for ((i = 0; i < 10; i++)); do
    urls=()
    for ((k = 0; k < 8; k++)); do urls+=(-o /dev/null "$O/bytes/$((100 + k))?d5-$i-$k"); done
    curl -s --no-progress-meter --parallel --parallel-max 8 --max-time 10 \
        -x "http://myuser-session-kd4:mypassword@127.0.0.1:$GW_PORT" -w '%{http_code}\n' "${urls[@]}" >>"$GW_TMP/d3.codes"
    sleep 0.2
done
read -r records conns reused _ <<<"$(conn_stats "$(gw_rec_since "$mark" "$DROP_REC")")"
echo "  140 requests: $(grep -c '^200$' "$GW_TMP/d3.codes") answered 200, others: $(codes_other_than_200 "$GW_TMP/d3.codes"); at the provider $records requests on $conns connections, $((records - conns)) reset unanswered; HAProxy retried $(($(retries) - retries_before))"
assert_eq 140 "$(grep -c '^200$' "$GW_TMP/d3.codes")" "answered 200"
[ "$records" -gt "$conns" ] || t_fail "no request met a reset connection: the case proves nothing"
t_end

t_begin "d. a provider closing after every response: no customer-visible error"
point closing "$CLOSE_PORT" "$CLOSE_PORT" demo-global
CLOSE_REC=$GW_TMP/closing.record
mark=$(gw_rec_mark "$CLOSE_REC")
: >"$GW_TMP/d2.codes"
for ((i = 0; i < 100; i++)); do
    curl -s -o /dev/null --max-time 10 -x "http://myuser-session-kd3:mypassword@127.0.0.1:$GW_PORT" \
        -w '%{http_code}\n' "$O/bytes/$((100 + i))?d2-$i" >>"$GW_TMP/d2.codes"
done
for ((i = 0; i < 300; i++)); do
    printf 'url = "%s/bytes/%d?d3-%d"\noutput = "/dev/null"\n' "$O" $((100 + i)) "$i"
done >"$GW_TMP/d2.curl"
curl -s --no-progress-meter --parallel --parallel-max 16 --max-time 30 -x "http://myuser-session-kd3:mypassword@127.0.0.1:$GW_PORT" \
    -w '%{http_code}\n' -K "$GW_TMP/d2.curl" >>"$GW_TMP/d2.codes"
read -r records conns reused _ <<<"$(conn_stats "$(gw_rec_since "$mark" "$CLOSE_REC")")"
echo "  400 requests: $(grep -c '^200$' "$GW_TMP/d2.codes") answered 200, others: $(codes_other_than_200 "$GW_TMP/d2.codes"); at the provider $records requests on $conns connections"
assert_eq 400 "$(grep -c '^200$' "$GW_TMP/d2.codes")" "answered 200"
assert_eq "$records" "$conns" "one connection per request (the provider closed each)"
t_end

t_begin "g. a provider that answers nothing: a GET is sent again (6 times in all), a POST only once"
RESET_PORT=$(free_port)
start_standin reset "$RESET_PORT" --record-conns --mode reset "${PASSWORDS[@]}" || t_abort "stand-in reset"
RESET_REC=$GW_TMP/reset.record
# demo-de to it; session kgp is one that goes there (the probe below waits
# for it), and both requests use it
psql_gw "UPDATE proxies SET port_min = $RESET_PORT, port_max = $RESET_PORT WHERE slug = 'demo-de'" >/dev/null
wait_until 15 bash -c "curl -s -o /dev/null --max-time 5 -x http://myuser-country-DE-session-kgp:mypassword@127.0.0.1:$GW_PORT $O/probe; [ -s $RESET_REC ]" ||
    t_abort "the gateway never sent to stand-in reset"
mark=$(gw_rec_mark "$RESET_REC")
code=$(curl -s -o /dev/null --max-time 10 -w '%{http_code}' --data-binary "@$GW_TMP/post.bin" \
    -x "http://myuser-country-DE-session-kgp:mypassword@127.0.0.1:$GW_PORT" "$O/echo?g-post")
assert_eq 502 "$code" "POST: status"
assert_eq 1 "$(gw_rec_since "$mark" "$RESET_REC" | grep -c ' POST ')" "POST: times the provider saw it"
mark=$(gw_rec_mark "$RESET_REC")
code=$(curl -s -o /dev/null --max-time 10 -w '%{http_code}' \
    -x "http://myuser-country-DE-session-kgp:mypassword@127.0.0.1:$GW_PORT" "$O/bytes/10?g-get")
assert_eq 502 "$code" "GET: status"
assert_eq 6 "$(gw_rec_since "$mark" "$RESET_REC" | grep -c ' GET ')" "GET: times the provider saw it (retries 5)"
t_end

t_summary
