#!/usr/bin/env bash
# End-to-end tests of the gateway's refusals and failures as a customer sees
# them (status, headers, body), on the real stack (tests/lib/gateway.sh):
#   400 bad username options, non-proxy requests, requests aimed at the gateway
#   402 balance, 403 whitelist, 407 credentials (and curl --proxy-anyauth),
#   the order of the checks, 502 upstream unreachable / refusing our
#   credentials / resetting / stalling, 503 no provider and no verdict (agent
#   down) with recovery, /health in each state, and graceful shutdown.
# What works end to end: t_gateway.sh.
set -u
. "$(dirname "$0")/../lib/services.sh"
. "$GW_ROOT/tests/lib/gateway.sh"
svc_init || exit 1
start_gateway_stack || t_abort "the gateway stack did not start"

ORIGIN=$(gw_tool origin)
O="http://127.0.0.1:$ORIGIN_PORT"
TLS="https://localhost:$ORIGIN_TLS_PORT"
ME=myuser:mypassword
REALM='Basic realm="proxy-gateway"'
S='[A-Za-z0-9_]{6,64}'

hdr() { # <name>: value of a header in GW_HDRS (last occurrence)
    sed -n "s/^$1: //p" <<<"$GW_HDRS" | tail -n 1
}

# connect_raw <proxy-user|-> [target] [extra header lines]: a raw CONNECT on a
# fresh connection; sets RAW (the whole answer, CRs stripped), RAW_STATUS (the
# status line) and RAW_BODY (after the blank line).
connect_raw() {
    local user=$1 target=${2:-127.0.0.1:$ORIGIN_PORT} extra=${3:-} auth=
    [ "$user" = - ] || auth="Proxy-Authorization: Basic $(gw_b64 "$user")\r\n"
    RAW=$(gw_raw "$GW_PORT" "CONNECT $target HTTP/1.1\r\nHost: $target\r\n$auth$extra\r\n" 2 | tr -d '\r')
    RAW_STATUS=$(head -n 1 <<<"$RAW")
    RAW_BODY=$(sed '1,/^$/d' <<<"$RAW")
}

# refused <code> <body> <what>: the last gw_req was refused by the gateway
# itself: this status, a text/plain body, and nothing reached the upstream.
refused() {
    assert_eq "$1" "$GW_CODE" "$3: status"
    assert_eq "$2" "$(cat "$GW_BODY")" "$3: body"
    assert_eq text/plain "$(hdr content-type)" "$3: Content-Type"
    assert_eq "" "$GW_REC" "$3: nothing reached the upstream"
}

# refused_connect <code> <body> <what>: the same for the last connect_raw.
refused_connect() {
    assert_match "^HTTP/1.1 $1 " "$RAW_STATUS" "$3 (CONNECT): status"
    assert_eq "$2" "$RAW_BODY" "$3 (CONNECT): body"
}

# wait_routed <timeout_s> <record file> <proxy-user> <url>: repeat a short
# request until the given stand-in records one (the snapshot has reloaded).
wait_routed() {
    local t=$1 rec=$2 user=$3 url=$4 deadline mark
    deadline=$((SECONDS + t))
    while :; do
        mark=$(gw_rec_mark "$rec")
        curl -s -o /dev/null --max-time 1 -x "http://$user@127.0.0.1:$GW_PORT" "$url" >/dev/null 2>&1
        [ "$(gw_rec_mark "$rec")" -gt "$mark" ] && return 0
        [ "$SECONDS" -lt "$deadline" ] || { _svc_log "wait_routed: nothing reached $rec"; return 1; }
        sleep 0.1
    done
}

# set_global_ports <min> [max]: re-point demo-global (the provider of every
# request without a country).
set_global_ports() {
    psql_gw "UPDATE proxies SET port_min = $1, port_max = ${2:-$1} WHERE slug = 'demo-global'"
}

HEALTH_RE_COMMON='(,"[a-z_]+":(-?[0-9]+|"[^"]*"|true|false))*\}$'

# --- 400 --------------------------------------------------------------------------------

bad_option() { # <proxy user> <reason>
    gw_req "$1:mypassword" "$O/bad"
    refused 400 "400 Bad Request: $2" "$1"
}

t_begin "400: malformed username options, each with its reason"
bad_option myuser-country-XX "country: unknown code"
bad_option myuser-country-UK "country: unknown code"
bad_option myuser-country-USA "country: must be a 2-letter ISO 3166-1 code"
bad_option myuser-country- "country: empty value"
bad_option myuser-session-a.b "session: must be 1-64 of A-Z a-z 0-9 _"
bad_option "myuser-session-$(printf 'a%.0s' $(seq 65))" "session: must be 1-64 of A-Z a-z 0-9 _"
bad_option myuser-sessTime-0 "sessTime: must be an integer from 1 to 1440 (minutes)"
bad_option myuser-sessTime-1441 "sessTime: must be an integer from 1 to 1440 (minutes)"
bad_option myuser-sessTime-ten "sessTime: must be an integer from 1 to 1440 (minutes)"
bad_option myuser-country-DE-country-US "country: repeated"
bad_option myuser-session-a-session-b "session: repeated"
bad_option myuser-sessTime-5-sessTime-6 "sessTime: repeated"
t_end

t_begin "400: malformed options on CONNECT (HTTPS) too"
connect_raw myuser-country-XX:mypassword
refused_connect 400 "400 Bad Request: country: unknown code" "country XX"
connect_raw myuser-sessTime-0:mypassword
refused_connect 400 "400 Bad Request: sessTime: must be an integer from 1 to 1440 (minutes)" "sessTime 0"
gw_req myuser-country-XX:mypassword "$TLS/" --cacert "$GW_CA"
assert_eq 400 "$GW_CODE" "curl's view of the HTTPS request"
t_end

t_begin "the option bounds themselves are accepted: sessTime 1 and 1440, a 64-character session"
for u in myuser-sessTime-1 myuser-sessTime-1440 "myuser-session-$(printf 'b%.0s' $(seq 64))"; do
    gw_req "$u:mypassword" "$O/ok"
    assert_eq 200 "$GW_CODE" "$u"
done
check_rec_user=$(awk '{print $4}' <<<"$GW_REC")
assert_eq "demo-global-user-country-US-session-$(printf 'b%.0s' $(seq 64))-sessTime-5" "$check_rec_user" \
    "64-character session rendered as given"
t_end

t_begin "400: a request that is not a proxy request (origin form), except GET /health"
for path in /foo / /health/x; do
    mark=$(gw_rec_mark)
    out=$(curl -s -D - --max-time 5 "http://127.0.0.1:$GW_PORT$path" | tr -d '\r')
    assert_match '^HTTP/1.1 400 ' "$out" "GET $path: status"
    assert_match $'\n\n400 Bad Request: not a proxy request \\(use this address as an HTTP proxy\\)$' "$out" "GET $path: body"
    assert_eq "" "$(gw_rec_since "$mark")" "GET $path: nothing reached the upstream"
done
t_end

t_begin "400: a request aimed at the gateway itself is refused, never looped"
for url in "http://127.0.0.1:$GW_PORT/x" "http://localhost:$GW_PORT/" "http://LOCALHOST:$GW_PORT/health" \
    "http://127.1:$GW_PORT/" "http://localhost.:$GW_PORT/" "http://127.0.0.1:$GW_PROXY_PORT/"; do
    gw_req "$ME" "$url"
    refused 400 "400 Bad Request: the target is this gateway" "absolute form $url"
done
for target in "127.0.0.1:$GW_PORT" "localhost:$GW_PORT" "[::ffff:127.0.0.1]:$GW_PORT" \
    "[::1]:$GW_PORT" "127.0.0.2:$GW_PROXY_PORT"; do
    mark=$(gw_rec_mark)
    connect_raw "$ME" "$target"
    refused_connect 400 "400 Bad Request: the target is this gateway" "CONNECT $target"
    assert_eq "" "$(gw_rec_since "$mark")" "CONNECT $target: nothing reached the upstream"
done
gw_req "$ME" "http://127.0.0.1:$GW_PORT/x" -p
assert_eq 400 "$GW_CODE" "curl -p to the gateway's own address"
t_end

# --- 402 ----------------------------------------------------------------------------------

t_begin "402: balance 0 in Redis refuses; a positive balance allows again; no key allows"
redis_gw SET balance:cache:myuser 0 >/dev/null
gw_req "$ME" "$O/pay"
refused 402 "402 Payment Required: insufficient balance" "balance 0"
gw_req "myuser-country-DE-session-pay1:mypassword" "$O/pay"
refused 402 "402 Payment Required: insufficient balance" "balance 0, with options (keyed by the user)"
connect_raw "$ME"
refused_connect 402 "402 Payment Required: insufficient balance" "balance 0"
redis_gw SET balance:cache:myuser -1 >/dev/null
gw_req "$ME" "$O/pay"
refused 402 "402 Payment Required: insufficient balance" "balance -1"
# 1 byte left: settled 1, nothing unsettled (no gw-settle runs in this stack,
# so the bytes of this script's earlier requests would count: live balance)
redis_gw DEL gw:live:myuser gw:unsettled:myuser >/dev/null
redis_gw SET balance:cache:myuser 1 >/dev/null
gw_req "$ME" "$O/pay"
assert_eq 200 "$GW_CODE" "balance 1"
redis_gw SET balance:cache:myuser 10737418240 >/dev/null
gw_req "$ME" "$TLS/bytes/10" --cacert "$GW_CA"
assert_eq 200 "$GW_CODE" "balance 10 GB (HTTPS)"
redis_gw DEL balance:cache:myuser >/dev/null
gw_req "$ME" "$O/pay"
assert_eq 200 "$GW_CODE" "no balance key (fail open, as the reference)"
redis_gw SET balance:cache:myuser not-a-number >/dev/null
gw_req "$ME" "$O/pay"
assert_eq 200 "$GW_CODE" "unreadable balance (fail open)"
redis_gw DEL balance:cache:myuser >/dev/null
t_end

# --- 403 ----------------------------------------------------------------------------------
# demo.sql whitelists 127.0.0.1/32, ::1/128, 203.0.113.50 and 10.0.0.0/8.

t_begin "403: a client address not on the whitelist (127.0.0.2), with or without credentials"
gw_req "$ME" "$O/ip" --interface 127.0.0.2
refused 403 "403 Forbidden: client IP not authorized" "127.0.0.2"
gw_req - "$O/ip" --interface 127.0.0.2
refused 403 "403 Forbidden: client IP not authorized" "127.0.0.2 without credentials (403 before 407)"
gw_req myuser:wrong "$O/ip" --interface 127.0.0.2
refused 403 "403 Forbidden: client IP not authorized" "127.0.0.2 with a wrong password"
assert_eq "" "$(hdr proxy-authenticate)" "no Proxy-Authenticate challenge on a 403"
gw_req "$ME" "$TLS/" --interface 127.0.0.2 --cacert "$GW_CA"
assert_eq 403 "$GW_CODE" "127.0.0.2 over HTTPS (CONNECT)"
t_end

t_begin "403: whitelist changes in PostgreSQL apply without a restart (NOTIFY)"
psql_gw "INSERT INTO authorized_ips (ip, description) VALUES ('127.0.0.2/32', 'test')" >/dev/null
gw_wait_status 10 200 "$ME" "$O/ip" --interface 127.0.0.2 || t_fail "127.0.0.2 never allowed after INSERT"
psql_gw "UPDATE authorized_ips SET is_active = false WHERE ip = '127.0.0.2/32'" >/dev/null
gw_wait_status 10 403 "$ME" "$O/ip" --interface 127.0.0.2 || t_fail "127.0.0.2 still allowed after is_active=false"
psql_gw "DELETE FROM authorized_ips WHERE ip = '127.0.0.2/32'" >/dev/null
psql_gw "INSERT INTO authorized_ips (ip, description) VALUES ('127.0.0.0/29', 'test range')" >/dev/null
gw_wait_status 10 200 "$ME" "$O/ip" --interface 127.0.0.2 || t_fail "127.0.0.2 never allowed by 127.0.0.0/29"
psql_gw "DELETE FROM authorized_ips WHERE ip = '127.0.0.0/29'" >/dev/null
gw_wait_status 10 403 "$ME" "$O/ip" --interface 127.0.0.2 || t_fail "127.0.0.2 still allowed after DELETE"
# The loopback row itself: delete it and 127.0.0.1 is refused; restore it.
psql_gw "DELETE FROM authorized_ips WHERE ip = '127.0.0.1/32'" >/dev/null
gw_wait_status 10 403 "$ME" "$O/ip" || t_fail "127.0.0.1 still allowed after deleting its row"
gw_req "$ME" "$O/ip"
refused 403 "403 Forbidden: client IP not authorized" "127.0.0.1 after its row was deleted"
psql_gw "INSERT INTO authorized_ips (ip, description) VALUES ('127.0.0.1/32', 'Local tests (IPv4 loopback)')" >/dev/null
gw_wait_status 10 200 "$ME" "$O/ip" || t_fail "127.0.0.1 not allowed again"
t_end

# --- 407 ----------------------------------------------------------------------------------

challenge() { # <what> <reason>: the last gw_req was a 407 challenge
    refused 407 "407 Proxy Authentication Required: $2" "$1"
    assert_eq "$REALM" "$(hdr proxy-authenticate)" "$1: Proxy-Authenticate"
}

t_begin "407: missing, wrong, unknown, not Basic, malformed; always with the Basic challenge"
gw_req - "$O/auth"
challenge "no credentials" "proxy credentials required"
gw_req myuser:wrong "$O/auth"
challenge "wrong password" "invalid proxy credentials"
gw_req nobody:mypassword "$O/auth"
challenge "unknown user" "invalid proxy credentials"
gw_req myuser-foo-bar:mypassword "$O/auth"
challenge "unknown option words make another user name" "invalid proxy credentials"
gw_req - "$O/auth" -H "Proxy-Authorization: Bearer $(gw_b64 "$ME")"
challenge "Bearer scheme" "malformed proxy credentials"
gw_req - "$O/auth" -H 'Proxy-Authorization: Basic !!!not-base64!!!'
challenge "malformed base64" "malformed proxy credentials"
gw_req - "$O/auth" -H "Proxy-Authorization: Basic $(gw_b64 myuser)"
challenge "no ':' in the credentials" "malformed proxy credentials"
gw_req - "$O/auth" -H 'Proxy-Authorization: Basic'
challenge "Basic without a credential" "malformed proxy credentials"
t_end

t_begin "407 on CONNECT, with the challenge and the body"
for user in - myuser:wrong; do
    connect_raw "$user"
    assert_match '^HTTP/1.1 407 ' "$RAW_STATUS" "CONNECT as '$user': status"
    assert_match $'\nproxy-authenticate: Basic realm="proxy-gateway"\n' "$RAW" "CONNECT as '$user': challenge"
    assert_match '^407 Proxy Authentication Required: ' "$RAW_BODY" "CONNECT as '$user': body"
done
t_end

t_begin "407: an inactive user is refused like an unknown one"
psql_gw "UPDATE users SET is_active = false WHERE username = 'myuser'" >/dev/null
gw_wait_status 10 407 "$ME" "$O/auth" || t_fail "the inactive user was still allowed"
gw_req "$ME" "$O/auth"
challenge "inactive user" "invalid proxy credentials"
psql_gw "UPDATE users SET is_active = true WHERE username = 'myuser'" >/dev/null
gw_wait_status 10 200 "$ME" "$O/auth" || t_fail "the user was not allowed again"
t_end

t_begin "curl --proxy-anyauth: answers the challenge and gets through (HTTP, CONNECT, HTTPS)"
out=$(curl -sv -o /dev/null -w '%{http_code}' --max-time 10 --proxy-anyauth -U "$ME" \
    -x "http://127.0.0.1:$GW_PORT" "$O/anyauth" 2>"$GW_TMP/anyauth.err")
assert_eq 200 "$out" "HTTP status after the challenge"
assert_eq 2 "$(grep -c '^> GET http' "$GW_TMP/anyauth.err")" "requests curl sent (without, then with credentials)"
assert_match '< HTTP/1.1 407' "$(cat "$GW_TMP/anyauth.err")" "curl saw the 407 first"
out=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 --proxy-anyauth -U "$ME" -p \
    -x "http://127.0.0.1:$GW_PORT" "$O/anyauth")
assert_eq 200 "$out" "CONNECT (-p) status after the challenge"
out=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 --proxy-anyauth -U "$ME" --cacert "$GW_CA" \
    -x "http://127.0.0.1:$GW_PORT" "$TLS/bytes/100")
assert_eq 200 "$out" "HTTPS status after the challenge"
t_end

# --- the order of the checks: 403, 407, 400, 402, 503 -----------------------------------

t_begin "order of the checks: 403 > 407 > 400 > 402 > 503"
gw_req myuser-country-XX:wrong "$O/order" --interface 127.0.0.2
assert_eq 403 "$GW_CODE" "not whitelisted, wrong password, bad option"
gw_req myuser-country-XX:wrong "$O/order"
assert_eq 407 "$GW_CODE" "wrong password, bad option"
redis_gw SET balance:cache:myuser 0 >/dev/null
gw_req myuser-country-XX:mypassword "$O/order"
assert_eq 400 "$GW_CODE" "bad option, no balance"
psql_gw "UPDATE proxies SET is_disabled = true" >/dev/null
gw_wait_health 10 '"proxy_count":0[,}]' || t_fail "providers never disabled"
gw_req "$ME" "$O/order"
assert_eq 402 "$GW_CODE" "no balance, no provider"
redis_gw DEL balance:cache:myuser >/dev/null
gw_req "$ME" "$O/order"
assert_eq 503 "$GW_CODE" "no provider"
t_end

# --- 503: no provider -------------------------------------------------------------------------
# (all providers are disabled at this point)

t_begin "503: no provider available (every provider disabled)"
gw_req "$ME" "$O/none"
refused 503 "503 Service Unavailable: no upstream provider available" "no country"
gw_req "myuser-country-DE:mypassword" "$O/none"
refused 503 "503 Service Unavailable: no upstream provider available" "country DE"
connect_raw "$ME"
refused_connect 503 "503 Service Unavailable: no upstream provider available" "no country"
t_end

t_begin "/health with no provider: 503 unhealthy, valid JSON with the reference's fields"
out=$(curl -s -D "$GW_TMP/h.hdrs" --max-time 5 "http://127.0.0.1:$GW_PORT/health")
assert_match '^HTTP/1.1 503 ' "$(head -n 1 "$GW_TMP/h.hdrs")" "status"
assert_match '^\{"status":"unhealthy","proxy_count":0,"user_count":1,"queue_length":(0|[1-9][0-9]*)'"$HEALTH_RE_COMMON" \
    "$out" "body"
if command -v jq >/dev/null 2>&1; then assert_ok "valid JSON" jq -e . <<<"$out"; fi
t_end

t_begin "/health with no provider: the agent, which answered, is not reported as down"
out=$(curl -s --max-time 5 "http://127.0.0.1:$GW_PORT/health")
if [[ $out =~ \"agent_ok\":([^,}]*) ]]; then
    assert_eq 1 "${BASH_REMATCH[1]}" "agent_ok while the agent answers (body: $out)"
else
    t_pass
fi
t_end

t_begin "only the global provider disabled: requests without a country use the others with country US"
psql_gw "UPDATE proxies SET is_disabled = false WHERE slug <> 'demo-global'" >/dev/null
gw_wait_health 10 '"proxy_count":2[,}]' || t_fail "the two country providers never came back"
gw_req "$ME" "$O/fallback"
assert_eq 200 "$GW_CODE" "status"
assert_match "^[0-9]+ GET $O/fallback (demo-de-user_cc-us_sid-${S}_ttl-5|demo-us-user-country-UnitedStates-session-$S-sessTime-5)\$" \
    "$GW_REC" "rendered by a country provider with the default country US"
psql_gw "UPDATE proxies SET is_disabled = false" >/dev/null
gw_wait_health 10 '"proxy_count":3[,}]' || t_fail "demo-global never came back"
gw_req "$ME" "$O/back"
assert_match "^[0-9]+ GET $O/back demo-global-user-country-US-" "$GW_REC" "the global provider is used again"
t_end

# --- 502: the upstream fails ------------------------------------------------------------------

CLOSED=$(free_port)
t_begin "502: the provider's port is closed (unreachable)"
set_global_ports "$CLOSED" >/dev/null
deadline=$((SECONDS + 10))
until gw_req "$ME" "$O/down" && [ "$GW_CODE" = 502 ]; do
    [ "$SECONDS" -lt "$deadline" ] || break
    sleep 0.1
done
assert_eq 502 "$GW_CODE" "HTTP status"
assert_eq "502 Bad Gateway: the upstream proxy could not be reached" "$(cat "$GW_BODY")" "HTTP body"
connect_raw "$ME"
assert_match '^HTTP/1.1 502 ' "$RAW_STATUS" "CONNECT status"
assert_eq "502 Bad Gateway: the upstream proxy could not be reached" "$RAW_BODY" "CONNECT body"
gw_req "$ME" "$TLS/" --cacert "$GW_CA"
assert_eq 502 "$GW_CODE" "HTTPS (curl's view of the CONNECT)"
t_end

REFUSE_PORT=$(free_port)
start_standin refuser "$REFUSE_PORT" --mode refuse-auth || t_fail "start the refuse-auth stand-in"
t_begin "502, not 407: the upstream refuses the gateway's credentials"
set_global_ports "$REFUSE_PORT" >/dev/null
wait_routed 10 "$GW_TMP/refuser.record" "$ME" "$O/refused" || t_fail "requests never reached the refusing stand-in"
mark=$(gw_rec_mark "$GW_TMP/refuser.record")
gw_req "$ME" "$O/refused"
assert_eq 502 "$GW_CODE" "HTTP status"
assert_eq "502 Bad Gateway: the upstream proxy refused the gateway's credentials" "$(cat "$GW_BODY")" "HTTP body"
assert_eq "" "$(hdr proxy-authenticate)" "no Proxy-Authenticate reaches the client"
assert_match "^$REFUSE_PORT GET $O/refused demo-global-user-country-US-session-$S-sessTime-5\$" \
    "$(gw_rec_since "$mark" "$GW_TMP/refuser.record")" "the upstream got the provider's credentials"
connect_raw "$ME"
assert_match '^HTTP/1.1 502 ' "$RAW_STATUS" "CONNECT status"
assert_eq "502 Bad Gateway: the upstream proxy refused the gateway's credentials" "$RAW_BODY" "CONNECT body"
if grep -qi '^proxy-authenticate' <<<"$RAW"; then t_fail "CONNECT: Proxy-Authenticate reached the client"; fi
gw_req "$ME" "$O/refused" --proxy-anyauth
assert_eq 502 "$GW_CODE" "curl --proxy-anyauth does not loop on it"
t_end

RESET_PORT=$(free_port)
start_standin resetter "$RESET_PORT" --mode reset || t_fail "start the reset stand-in"
t_begin "502: the upstream resets the connection"
set_global_ports "$RESET_PORT" >/dev/null
wait_routed 10 "$GW_TMP/resetter.record" "$ME" "$O/reset" || t_fail "requests never reached the resetting stand-in"
gw_req "$ME" "$O/reset"
assert_eq 502 "$GW_CODE" "HTTP status"
connect_raw "$ME"
assert_match '^HTTP/1.1 502 ' "$RAW_STATUS" "CONNECT status"
t_end

STALL_PORT=$(free_port)
start_standin staller "$STALL_PORT" --mode stall || t_fail "start the stalling stand-in"
t_begin "502: the upstream never answers: 502 after the server timeout (5 s in this stack)"
set_global_ports "$STALL_PORT" >/dev/null
wait_routed 10 "$GW_TMP/staller.record" "$ME" "$O/stall" || t_fail "requests never reached the stalling stand-in"
start=$(date +%s.%N)
(
    curl -s -o "$GW_TMP/stall.connect" -w '%{http_connect}' --max-time 20 -p \
        -x "http://$ME@127.0.0.1:$GW_PORT" "$O/stall" >"$GW_TMP/stall.connect.code"
    date +%s.%N >"$GW_TMP/stall.connect.end"
) &
gw_req "$ME" "$O/stall" --max-time 20
end=$(date +%s.%N)
wait
assert_eq 502 "$GW_CODE" "HTTP status"
assert_eq "502 Bad Gateway: the upstream proxy did not answer" "$(cat "$GW_BODY")" "HTTP body"
secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
awk -v s="$secs" 'BEGIN { exit !(s >= 4.5 && s <= 9) }' || t_fail "HTTP 502 after ${secs}s, not after the 5 s server timeout"
assert_eq 502 "$(cat "$GW_TMP/stall.connect.code")" "CONNECT status"
secs=$(awk -v a="$start" -v b="$(cat "$GW_TMP/stall.connect.end")" 'BEGIN { printf "%.1f", b - a }')
awk -v s="$secs" 'BEGIN { exit !(s >= 4.5 && s <= 9) }' || t_fail "CONNECT 502 after ${secs}s, not after the 5 s server timeout"
t_end

t_begin "after the upstream failures, the restored provider works again"
set_global_ports "$UP_PORT_MIN" "$UP_PORT_MAX" >/dev/null
wait_routed 10 "$UP_RECORD" "$ME" "$O/restored" || t_fail "requests never reached the demo stand-in again"
gw_req "$ME" "$O/restored"
assert_eq 200 "$GW_CODE" "status"
t_end

# --- 503: no verdict (agent down), recovery -------------------------------------------------

STICKY=myuser-country-DE-session-agent1:mypassword
gw_req "$STICKY" "$O/sticky-before"
before=$(awk '{print $1, $4}' <<<"$GW_REC")

t_begin "503: no verdict when the agent is down (the gateway fails closed)"
stop_bg agent
mark=$(gw_rec_mark)
gw_req "$ME" "$O/noagent"
assert_eq 503 "$GW_CODE" "HTTP status"
assert_eq "503 Service Unavailable: the gateway cannot authorize requests right now" "$(cat "$GW_BODY")" "HTTP body"
connect_raw "$ME"
assert_match '^HTTP/1.1 503 ' "$RAW_STATUS" "CONNECT status"
gw_req - "$O/noagent"
assert_eq 503 "$GW_CODE" "without credentials: 503, not a challenge (nothing can be checked)"
gw_req myuser:wrong "$O/noagent"
assert_eq 503 "$GW_CODE" "wrong password"
assert_eq "" "$(gw_rec_since "$mark")" "nothing reached the upstream"
t_end

t_begin "/health with the agent down: 503 unhealthy, valid JSON"
out=$(curl -s -D "$GW_TMP/h.hdrs" --max-time 5 "http://127.0.0.1:$GW_PORT/health")
assert_match '^HTTP/1.1 503 ' "$(head -n 1 "$GW_TMP/h.hdrs")" "status"
assert_match '^\{"status":"unhealthy"'"$HEALTH_RE_COMMON" "$out" "body is JSON with a status"
assert_match '"proxy_count":-?[0-9]+' "$out" "proxy_count is a number"
assert_match '"user_count":-?[0-9]+' "$out" "user_count is a number"
assert_match '"queue_length":-?[0-9]+' "$out" "queue_length is a number"
if command -v jq >/dev/null 2>&1; then assert_ok "valid JSON" jq -e . <<<"$out"; fi
t_end

t_begin "recovery: the agent restarted, requests pass again and sessions keep their upstream"
start_agent || t_fail "the agent did not start again"
wait_gateway_ready
gw_wait_status 10 200 "$ME" "$O/recovered" || t_fail "requests never passed again"
gw_req "$ME" "$O/recovered"
assert_eq 200 "$GW_CODE" "status"
gw_req "$STICKY" "$O/sticky-after"
assert_eq "$before" "$(awk '{print $1, $4}' <<<"$GW_REC")" "port and upstream username of session agent1 before and after the restart"
out=$(curl -s --max-time 5 "http://127.0.0.1:$GW_PORT/health")
assert_match '^\{"status":"healthy","proxy_count":3,"user_count":1,' "$out" "/health"
t_end

# --- graceful shutdown (last: HAProxy is gone afterwards) ------------------------------------

t_begin "soft stop: in-flight downloads (tunnel and plain HTTP) complete, new connections are refused"
want=$("$ORIGIN" --pattern 104857600 | sha256sum | cut -c1-64)
(curl -s -p --limit-rate 25M --max-time 30 -x "http://$ME@127.0.0.1:$GW_PORT" "$O/bytes/100m" |
    sha256sum | cut -c1-64 >"$GW_TMP/soft.tunnel") &
(curl -s --limit-rate 25M --max-time 30 -x "http://$ME@127.0.0.1:$GW_PORT" "$O/bytes/100m" |
    sha256sum | cut -c1-64 >"$GW_TMP/soft.http") &
sleep 1
hp=$HAPROXY_PID
kill -USR1 "$hp"
sleep 0.5
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -x "http://$ME@127.0.0.1:$GW_PORT" "$O/new")
assert_eq 000 "$code" "a new proxy request during the soft stop: connection refused"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$GW_PORT/health")
assert_eq 000 "$code" "a new /health request during the soft stop"
_svc_alive "$hp" || t_fail "HAProxy exited before its in-flight transfers completed"
wait
assert_eq "$want" "$(cat "$GW_TMP/soft.tunnel")" "sha256 of the 100 MB download in the tunnel"
assert_eq "$want" "$(cat "$GW_TMP/soft.http")" "sha256 of the 100 MB plain HTTP download"
wait_until 10 bash -c "! kill -0 $hp 2>/dev/null" || t_fail "HAProxy did not exit after its transfers completed"
stop_haproxy
t_end

t_summary
