#!/usr/bin/env bash
# End-to-end tests of provider health (README "Provider health") on the real
# stack (tests/lib/gateway.sh), with stand-in providers started and killed:
#   one of two global providers killed under steady load: out after its first
#   failures, >= 99.5 % of the next 1,000 requests succeed, and started
#   again it gets traffic back within its back-off (the floor: 30 s);
#   sticky sessions of the healthy provider never move, those of the dead one
#   move, stay put while it is out, and return when it is back;
#   a provider answering 407 to the gateway's credentials, and one that
#   stalls, are taken out too; every provider out: requests still go to them
#   (the least bad choice: 502 while they are down), /health says degraded,
#   and they come back; /health shows each provider's state throughout.
# Back-offs are short here (2 s doubling to 8 s; checks every second).
set -u
. "$(dirname "$0")/../lib/services.sh"
. "$GW_ROOT/tests/lib/gateway.sh"
svc_init || exit 1
GW_AGENT_ARGS="${GW_AGENT_ARGS:-} --health-fails 5 --health-backoff-min-ms 2000 --health-backoff-max-ms 8000 --health-check-interval-ms 1000 --health-check-timeout-ms 500"
start_gateway_stack || t_abort "the gateway stack did not start"

O="http://127.0.0.1:$ORIGIN_PORT"
ME=myuser:mypassword
PROXY="http://$ME@127.0.0.1:$GW_PORT"
PA=$(free_port)
PB=$(free_port)
[ "$PA" != "$PB" ] || PB=$(free_port)

health() { curl -s --max-time 5 "http://127.0.0.1:$GW_PORT/health"; }

# state_of <slug>: the provider's state in /health ("in", "out", "half_open").
state_of() {
    health | jq -r --arg s "$1" '.providers[] | select(.slug == $s) | .state'
}

# wait_state <timeout_s> <slug> <regex> [url]: until the provider's state
# matches; with a url, one request to it per round (a half-open provider
# needs requests to come back in).
wait_state() {
    local t=$1 slug=$2 re=$3 url=${4:-} deadline got
    deadline=$((SECONDS + t))
    while :; do
        [ -z "$url" ] || curl -s -o /dev/null --max-time 10 -x "$PROXY" "$url"
        got=$(state_of "$slug")
        [[ $got =~ ^($re)$ ]] && return 0
        if [ "$SECONDS" -ge "$deadline" ]; then
            _svc_log "wait_state: $slug still '$got' (want $re) after ${t}s: $(health)"
            return 1
        fi
        sleep 0.2
    done
}

# upstream_of <proxy-user>: "name:port" of the stand-in that served a request.
upstream_of() {
    curl -s -o /dev/null -D - --max-time 10 -x "http://$1@127.0.0.1:$GW_PORT" "$O/sticky" |
        tr -d '\r' | sed -n 's/^[Xx]-[Uu]pstream: //p'
}

# Two global providers, each its own stand-in (so one can die): demo-global on
# PA and a copy of it, demo-global-b, on PB. The country providers stay on the
# stack's stand-in.
start_standin pa "$PA" --password demo-global-pass || t_abort "stand-in pa"
start_standin pb "$PB" --password demo-global-pass || t_abort "stand-in pb"
psql_gw "UPDATE proxies SET port_min = $PA, port_max = $PA WHERE slug = 'demo-global'" >/dev/null
psql_gw "INSERT INTO proxies (base_url, name, slug, username, password, url_template, port_min,
        port_max, is_global, country_format)
    SELECT base_url, 'Global B', 'demo-global-b', username, password, url_template, $PB, $PB,
        true, country_format FROM proxies WHERE slug = 'demo-global'" >/dev/null ||
    t_abort "insert demo-global-b"
gw_wait_health 15 '"proxy_count":4[,}]' || t_abort "the snapshot never showed 4 providers"

t_begin "/health: every provider listed, all in, status healthy"
out=$(health)
assert_ok "/health is JSON" jq -e . <<<"$out"
assert_eq healthy "$(jq -r .status <<<"$out")" "status"
assert_eq 0 "$(jq -r .providers_out <<<"$out")" "providers_out"
assert_eq "demo-de demo-global demo-global-b demo-us" \
    "$(jq -r '[.providers[].slug] | sort | join(" ")' <<<"$out")" "slugs"
assert_eq "in" "$(jq -r '[.providers[].state] | unique | join(" ")' <<<"$out")" "states"
assert_eq "null" "$(jq -r '.providers[0].last_error' <<<"$out")" "no error yet"
t_end

# Sessions and their upstream while both are healthy.
declare -A SESS_UP
t_begin "sticky sessions spread over both providers"
for i in $(seq 1 30); do
    SESS_UP[$i]=$(upstream_of "myuser-session-hs$i:mypassword")
done
on_a=$(printf '%s\n' "${SESS_UP[@]}" | grep -c "^pa:")
on_b=$(printf '%s\n' "${SESS_UP[@]}" | grep -c "^pb:")
assert_eq 30 "$((on_a + on_b))" "every session served"
[ "$on_a" -gt 0 ] && [ "$on_b" -gt 0 ] || t_fail "sessions on both providers" "pa $on_a, pb $on_b"
t_end

# --- one of two killed under steady load -------------------------------------------------
CODES=$GW_TMP/load.codes
: >"$CODES"
# Steady load: 4 clients, fresh connections, one status per line.
load() {
    seq 1 100000 | xargs -P 4 -I{} curl -s -o /dev/null -w '%{http_code}\n' --max-time 10 \
        -x "$PROXY" "$O/load" >>"$CODES" 2>/dev/null
}
setsid bash -c "$(declare -f load); CODES=$CODES PROXY=$PROXY O=$O load" &
LOAD_PID=$!
stop_load() { kill -- -"$LOAD_PID" 2>/dev/null; wait "$LOAD_PID" 2>/dev/null; }
svc_on_exit stop_load
lines() { wc -l <"$CODES" | tr -d ' '; }
wait_until 60 bash -c "[ \$(wc -l <'$CODES') -ge 100 ]" || t_fail "the load never started"

t_begin "one of two providers killed under load: out after its first failures"
killed_at=$(lines)
stop_bg pb KILL
wait_state 30 demo-global-b out || t_fail "demo-global-b never went out"
out_at=$(lines)
before=$(tail -n +"$((killed_at + 1))" "$CODES" | head -n "$((out_at - killed_at))" | grep -vc '^200$')
echo "  requests between the kill and 'out': $((out_at - killed_at)), of which failed: $before"
out=$(health)
assert_eq degraded "$(jq -r .status <<<"$out")" "status"
assert_eq 1 "$(jq -r .providers_out <<<"$out")" "providers_out"
assert_match '^(connect|check)$' "$(jq -r '.providers[] | select(.slug == "demo-global-b") | .last_error' <<<"$out")" "last_error"
t_end

t_begin ">= 99.5 % of the next 1,000 requests succeed"
wait_until 180 bash -c "[ \$(wc -l <'$CODES') -ge $((out_at + 1000)) ]" || t_fail "1,000 more requests did not run"
next=$(tail -n +"$((out_at + 1))" "$CODES" | head -n 1000)
ok=$(grep -c '^200$' <<<"$next")
echo "  of the 1,000 requests after 'out': $ok succeeded; others: $(grep -v '^200$' <<<"$next" | sort | uniq -c | tr '\n' ' ')"
[ "$ok" -ge 995 ] || t_fail "at least 995 of 1,000 succeed" "$ok"
assert_match '^(out|half_open)$' "$(state_of demo-global-b)" "still out while dead"
t_end

t_begin "while it is out: sessions of the healthy provider stay, those of the dead one move and stay"
moved=0
for i in $(seq 1 30); do
    now=$(upstream_of "myuser-session-hs$i:mypassword")
    again=$(upstream_of "myuser-session-hs$i:mypassword")
    assert_eq "$now" "$again" "session hs$i stable while out"
    case ${SESS_UP[$i]} in
    pa:*) assert_eq "${SESS_UP[$i]}" "$now" "session hs$i (healthy provider) did not move" ;;
    *)
        assert_match '^pa:' "$now" "session hs$i moved off the dead provider"
        moved=$((moved + 1))
        ;;
    esac
done
assert_eq "$on_b" "$moved" "sessions moved"
t_end

t_begin "started again, it gets traffic back within its back-off (and under 30 s)"
up_at=$SECONDS
mark=$(gw_rec_mark "$GW_TMP/pb.record")
start_standin pb "$PB" --password demo-global-pass || t_fail "restart pb"
back=
while [ $((SECONDS - up_at)) -le 30 ]; do
    if [ "$(gw_rec_mark "$GW_TMP/pb.record")" -gt "$mark" ]; then
        back=$((SECONDS - up_at))
        break
    fi
    sleep 0.2
done
echo "  demo-global-b got traffic again ${back:-never} s after it was started"
[ -n "$back" ] || t_fail "demo-global-b got no traffic within 30 s"
wait_state 15 demo-global-b in || t_fail "demo-global-b never back in"
t_end

t_begin "its sessions return when it is back in"
for i in $(seq 1 30); do
    assert_eq "${SESS_UP[$i]}" "$(upstream_of "myuser-session-hs$i:mypassword")" "session hs$i"
done
assert_eq healthy "$(health | jq -r .status)" "status"
t_end

stop_load
total=$(lines)
echo "  load: $total requests, $(grep -vc '^200$' "$CODES") not 200"

# --- a provider refusing the gateway's credentials, one that stalls ------------------------
P407=$(free_port)
start_standin refuser "$P407" --mode refuse-auth || t_fail "start the refuse-auth stand-in"
PSTALL=$(free_port)
start_standin staller "$PSTALL" --mode stall || t_fail "start the stalling stand-in"
psql_gw "INSERT INTO proxies (base_url, name, slug, username, password, url_template, port_min,
        port_max, is_global, country_format)
    SELECT base_url, 'Refuses', 'demo-407', username, password, url_template, $P407, $P407,
        true, country_format FROM proxies WHERE slug = 'demo-global'
    UNION ALL
    SELECT base_url, 'Stalls', 'demo-stall', username, password, url_template, $PSTALL, $PSTALL,
        true, country_format FROM proxies WHERE slug = 'demo-global'" >/dev/null ||
    t_fail "insert demo-407 and demo-stall"
gw_wait_health 15 '"proxy_count":6[,}]' || t_fail "the snapshot never showed 6 providers"

t_begin "a provider answering 407 to the gateway's credentials is taken out"
for _ in $(seq 1 60); do
    curl -s -o /dev/null --max-time 10 -x "$PROXY" "$O/p407"
    [[ $(state_of demo-407) =~ ^(out|half_open)$ ]] && break
done
wait_state 10 demo-407 'out|half_open' || t_fail "demo-407 never went out"
assert_eq auth_407 "$(health | jq -r '.providers[] | select(.slug == "demo-407") | .last_error')" "last_error"
t_end

t_begin "a provider that stalls (no answer within the 5 s server timeout) is taken out"
# 40 requests 10 at a time: a quarter of them reach it and wait 5 s each.
seq 1 40 | xargs -P 10 -I{} curl -s -o /dev/null --max-time 15 -x "$PROXY" "$O/pstall" 2>/dev/null
wait_state 20 demo-stall 'out|half_open' || t_fail "demo-stall never went out"
assert_eq stall "$(health | jq -r '.providers[] | select(.slug == "demo-stall") | .last_error')" "last_error"
ok=0
for _ in $(seq 1 20); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -x "$PROXY" "$O/after")" = 200 ] && ok=$((ok + 1))
done
echo "  after both went out: $ok of 20 requests succeeded"
[ "$ok" -ge 18 ] || t_fail "requests succeed with both out" "$ok of 20"
t_end
psql_gw "DELETE FROM proxies WHERE slug IN ('demo-407', 'demo-stall')" >/dev/null
gw_wait_health 15 '"proxy_count":4[,}]' || t_fail "the snapshot never dropped them"

# --- every provider out ------------------------------------------------------------------------
t_begin "every global provider out: requests still go to them (502 while down), /health degraded"
stop_bg pa KILL
stop_bg pb KILL
for _ in $(seq 1 40); do
    curl -s -o /dev/null --max-time 10 -x "$PROXY" "$O/allout"
    [ "$(state_of demo-global)" = out ] && [ "$(state_of demo-global-b)" = out ] && break
done
wait_state 10 demo-global out || t_fail "demo-global never went out"
wait_state 10 demo-global-b out || t_fail "demo-global-b never went out"
gw_req "$ME" "$O/allout"
assert_eq 502 "$GW_CODE" "the answer with every provider out"
assert_eq "502 Bad Gateway: the upstream proxy could not be reached" "$(cat "$GW_BODY")" "body"
out=$(health)
assert_eq degraded "$(jq -r .status <<<"$out")" "status"
assert_eq 2 "$(jq -r .providers_out <<<"$out")" "providers_out"
gw_req "myuser-country-DE:mypassword" "$O/de"
assert_eq 200 "$GW_CODE" "a country request (other providers) still served"
t_end

t_begin "every provider out, one started again: requests are served again, /health healthy"
start_standin pa "$PA" --password demo-global-pass || t_fail "restart pa"
start_standin pb "$PB" --password demo-global-pass || t_fail "restart pb"
gw_wait_status 30 200 "$ME" "$O/back" || t_fail "requests never served again"
wait_state 30 demo-global in "$O/back" || t_fail "demo-global never back in"
wait_state 30 demo-global-b in "$O/back" || t_fail "demo-global-b never back in"
assert_eq healthy "$(health | jq -r .status)" "status"
t_end

t_summary
