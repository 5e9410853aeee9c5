#!/usr/bin/env bash
# End-to-end tests of the gateway as a customer sees it: real HAProxy
# (haproxy/gateway.cfg), the gw-agent, PostgreSQL, Redis, the stand-in upstream
# provider and the origin (tests/lib/gateway.sh), driven with curl and raw
# sockets. This script covers what works: the reference README's usage
# examples, HTTP and HTTPS through the gateway, sticky sessions and country
# formats, /health, large and many tunnels, keep-alive connections, the headers
# that reach the upstream and the target, and the client address (whitelist,
# X-Forwarded-For, PROXY protocol). Refusals and failures: t_gateway_failures.sh.
#
# What each case reads:
#   the stand-in's record ($UP_RECORD): "<port> <method> <target> <username>",
#     the username being the provider credential the agent rendered from the
#     provider's url_template and country_format (sql/demo.sql);
#   the response header "X-Upstream: stand-in:<port>" (plain HTTP only);
#   the origin's echo of what it received ("X-Seen-<Name>" headers).
set -u
. "$(dirname "$0")/../lib/services.sh"
. "$GW_ROOT/tests/lib/gateway.sh"

# 1,000 tunnels need ~5,000 descriptors across HAProxy, the stand-in and the
# origin (all inherit this limit), and ~1,000 in this shell.
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -ge 65536 ]; then ulimit -n 65536; else ulimit -n "$hard"; fi

svc_init || exit 1
start_gateway_stack || t_abort "the gateway stack did not start"

ORIGIN=$(gw_tool origin)
O="http://127.0.0.1:$ORIGIN_PORT"
TLS="https://localhost:$ORIGIN_TLS_PORT"
ME=myuser:mypassword
PAT=$GW_TMP/pattern
mkdir -p "$PAT"

pattern() { # <n>: path of a file with the origin's first <n> pattern bytes
    [ -f "$PAT/$1" ] || "$ORIGIN" --pattern "$1" >"$PAT/$1"
    echo "$PAT/$1"
}

# Country names the tests use (FULL_NAME; NO_SPACES drops the spaces).
country_name() {
    case $1 in
    US) echo "United States" ;;
    GB) echo "United Kingdom" ;;
    DE) echo Germany ;;
    *) echo "?$1" ;;
    esac
}

# rendered <slug> <CC> <session-regex> <duration>: regex of the upstream
# username the stand-in records for a demo (or test) provider. The record
# writes bytes outside 0x21-0x7e as %XX (a space is %20).
rendered() {
    local slug=$1 cc=$2 s=$3 d=$4 full nospace lower
    full=$(country_name "$cc")
    nospace=${full// /}
    full=${full// /%20}
    lower=$(tr '[:upper:]' '[:lower:]' <<<"$cc")
    case $slug in
    demo-global) echo "demo-global-user-country-$cc-session-$s-sessTime-$d" ;;
    demo-de) echo "demo-de-user_cc-${lower}_sid-${s}_ttl-$d" ;;
    demo-us) echo "demo-us-user-country-$nospace-session-$s-sessTime-$d" ;;
    extra-iso) echo "x-iso\\.$cc\\.$s\\.$d" ;;
    extra-full) echo "x-full\\+$full\\+$s" ;;
    *) echo "no-such-provider-$slug" ;;
    esac
}

# slug_of <recorded username>: which provider rendered it.
slug_of() {
    case $1 in
    demo-global-user-*) echo demo-global ;;
    demo-de-user_*) echo demo-de ;;
    demo-us-user-*) echo demo-us ;;
    x-iso.*) echo extra-iso ;;
    x-full+*) echo extra-full ;;
    *) echo "?" ;;
    esac
}

# check_rec <method> <target> <username-regex>: exactly one request reached
# the stand-in during the last gw_req, with these fields and a port of the
# demo range; sets REC_PORT and REC_USER.
check_rec() {
    local n method target
    REC_PORT='' REC_USER=''
    n=$(grep -c . <<<"$GW_REC")
    assert_eq 1 "$n" "requests that reached the stand-in" || { _t_show record "$GW_REC"; return 1; }
    read -r REC_PORT method target REC_USER <<<"$GW_REC"
    assert_eq "$1" "$method" "method at the stand-in"
    assert_eq "$2" "$target" "target at the stand-in"
    assert_match "^($3)\$" "$REC_USER" "upstream username the stand-in received"
    if [ "$REC_PORT" -lt "$UP_PORT_MIN" ] || [ "$REC_PORT" -gt "$UP_PORT_MAX" ]; then
        t_fail "stand-in port $REC_PORT outside the provider range $UP_PORT_MIN-$UP_PORT_MAX"
    fi
}

hdr() { # <name>: value of a header in GW_HDRS (last occurrence)
    sed -n "s/^$1: //p" <<<"$GW_HDRS" | tail -n 1
}

body_is_pattern() { # <n> <what>
    assert_ok "$2: body is byte-exact ($1 pattern bytes)" cmp "$GW_BODY" "$(pattern "$1")"
}

# --- 1. the reference README's usage examples ------------------------------------
# Each runs as written (an HTTPS URL: a CONNECT tunnel, certificate checked
# against the test CA) and once more over plain HTTP (absolute form).

S='[A-Za-z0-9_]{6,64}' # a session id the agent generated

readme_example() { # <name> <proxy user> <path> <username regex>
    local name=$1 user=$2 path=$3 re=$4
    t_begin "README example, $name: HTTPS $path"
    gw_req "$user:mypassword" "$TLS$path" --cacert "$GW_CA" -A gw-test
    assert_eq 200 "$GW_CODE" "status"
    assert_eq "GET $path HTTP/1.1" "$(head -n 1 "$GW_BODY" | tr -d '\r')" "the origin got the request (echoed request line)"
    check_rec CONNECT "localhost:$ORIGIN_TLS_PORT" "$re"
    gw_req "$user:mypassword" "$TLS/bytes/100000" --cacert "$GW_CA"
    assert_eq 200 "$GW_CODE" "status (bytes)"
    body_is_pattern 100000 "HTTPS"
    check_rec CONNECT "localhost:$ORIGIN_TLS_PORT" "$re"
    t_end

    t_begin "README example, $name: plain HTTP"
    gw_req "$user:mypassword" "$O/bytes/100000"
    assert_eq 200 "$GW_CODE" "status"
    body_is_pattern 100000 "HTTP"
    check_rec GET "$O/bytes/100000" "$re"
    assert_eq "stand-in:$REC_PORT" "$(hdr x-upstream)" "X-Upstream names the stand-in port in the record"
    assert_eq origin "$(hdr x-origin)" "X-Origin"
    t_end
}

# Full format: a country given, so an is_global=false provider (demo-de with
# ISO_LOWERCASE or demo-us with NO_SPACES), the client's session and duration.
readme_example "full format (myuser-country-US-session-abc123-sessTime-10)" \
    myuser-country-US-session-abc123-sessTime-10 / \
    "$(rendered demo-de US abc123 10)|$(rendered demo-us US abc123 10)"
# Country only: a generated session, the default duration 5.
readme_example "country only (myuser-country-DE)" myuser-country-DE /ip \
    "$(rendered demo-de DE "$S" 5)|$(rendered demo-us DE "$S" 5)"
# Minimal: no country, so the global provider, rendered with the default US.
readme_example "minimal (myuser)" myuser /ip "$(rendered demo-global US "$S" 5)"
readme_example "HTTPS request (myuser-country-GB-session-xyz789-sessTime-15)" \
    myuser-country-GB-session-xyz789-sessTime-15 /secure \
    "$(rendered demo-de GB xyz789 15)|$(rendered demo-us GB xyz789 15)"

t_begin "without a session id every request gets a fresh generated one"
sessions=()
for i in 1 2 3 4 5; do
    gw_req "$ME" "$O/fresh/$i"
    assert_eq 200 "$GW_CODE" "status $i"
    check_rec GET "$O/fresh/$i" "$(rendered demo-global US "$S" 5)"
    s=${REC_USER#demo-global-user-country-US-session-}
    sessions+=("${s%-sessTime-5}")
done
assert_eq 5 "$(printf '%s\n' "${sessions[@]}" | sort -u | grep -c .)" "distinct generated session ids"
t_end

# --- 2. HTTP and HTTPS through the gateway ------------------------------------------

t_begin "HTTP GET: Content-Length and chunked bodies are byte-exact"
gw_req "$ME" "$O/bytes/1m"
assert_eq 200 "$GW_CODE" "status (Content-Length)"
body_is_pattern 1048576 "Content-Length"
assert_eq 1048576 "$(hdr content-length)" "Content-Length header"
gw_req "$ME" "$O/chunked/1m"
assert_eq 200 "$GW_CODE" "status (chunked)"
body_is_pattern 1048576 "chunked"
assert_match chunked "$(hdr transfer-encoding)" "Transfer-Encoding"
t_end

head -c 3000000 /dev/urandom >"$GW_TMP/upload.bin"
# curl sends "Expect: 100-continue" for bodies over 1 MB; "Expect:" turns it
# off here (see the next case for uploads with it).
t_begin "HTTP POST: bodies with Content-Length and chunked uploads come back intact"
gw_req "$ME" "$O/echo" --data-binary "@$GW_TMP/upload.bin" -H 'Content-Type: application/octet-stream' -H 'Expect:'
assert_eq 200 "$GW_CODE" "status (Content-Length upload)"
assert_ok "Content-Length upload echoed byte-exact" cmp "$GW_BODY" "$GW_TMP/upload.bin"
check_rec POST "$O/echo" "$(rendered demo-global US "$S" 5)"
gw_req "$ME" "$O/echo" --data-binary "@$GW_TMP/upload.bin" -H 'Transfer-Encoding: chunked' \
    -H 'Content-Type: application/octet-stream' -H 'Expect:'
assert_eq 200 "$GW_CODE" "status (chunked upload)"
assert_ok "chunked upload echoed byte-exact" cmp "$GW_BODY" "$GW_TMP/upload.bin"
gw_req "$ME" "$O/echo" --data-binary 'small=body&x=1'
assert_eq "small=body&x=1" "$(cat "$GW_BODY")" "small form body"
gw_req "$ME" "$O/echo" -p --data-binary "@$GW_TMP/upload.bin"
assert_eq 200 "$GW_CODE" "status (POST inside a CONNECT tunnel)"
assert_ok "POST inside a tunnel echoed byte-exact" cmp "$GW_BODY" "$GW_TMP/upload.bin"
check_rec CONNECT "127.0.0.1:$ORIGIN_PORT" "$(rendered demo-global US "$S" 5)"
t_end

# The origin's /echo answers "100 Continue" and then its response head at
# once, streaming the body back as it arrives. Through the gateway the
# response body is lost and the client waits for a timeout (HAProxy closes the
# upstream connection once it has sent the request body: the upstream's
# response says "Connection: close", which the gateway's http-server-close
# asks for). curl uses Expect for every upload over 1 MB.
t_begin "HTTP POST with Expect: 100-continue (curl's default over 1 MB): the response body arrives"
gw_req "$ME" "$O/echo" --data-binary 'hello-body' -H 'Expect: 100-continue' --max-time 4
assert_eq 200 "$GW_CODE" "status"
assert_eq hello-body "$(cat "$GW_BODY")" "echoed body (small body, explicit Expect)"
gw_req "$ME" "$O/echo" --data-binary "@$GW_TMP/upload.bin" --max-time 4
assert_eq 200 "$GW_CODE" "status (3 MB, curl's own Expect)"
assert_ok "3 MB upload with Expect echoed byte-exact" cmp "$GW_BODY" "$GW_TMP/upload.bin"
t_end

t_begin "HTTPS through CONNECT: curl verifies the origin's certificate end to end"
for url in "$TLS/bytes/1m" "https://127.0.0.1:$ORIGIN_TLS_PORT/bytes/1m"; do
    gw_req "$ME" "$url" --cacert "$GW_CA"
    assert_eq 200 "$GW_CODE" "status $url"
    body_is_pattern 1048576 "$url"
done
gw_req "$ME" "$TLS/echo" --cacert "$GW_CA" --data-binary "@$GW_TMP/upload.bin"
assert_ok "HTTPS POST echoed byte-exact" cmp "$GW_BODY" "$GW_TMP/upload.bin"
# The gateway does not terminate TLS: without the test CA, curl must refuse
# the origin's certificate (exit 60), which it only sees end to end.
rc=0
curl -s -o /dev/null --max-time 10 -x "http://$ME@127.0.0.1:$GW_PORT" "$TLS/" || rc=$?
assert_eq 60 "$rc" "curl exit status without the test CA (certificate problem)"
t_end

# --- 4. sticky sessions, spread, country formats --------------------------------------

t_begin "sticky session: 20 requests with one session id use one provider, port and upstream username"
ups=() users=() ports=()
for i in $(seq 1 20); do
    gw_req "myuser-country-DE-session-stick1-sessTime-30:mypassword" "$O/sticky/$i"
    assert_eq 200 "$GW_CODE" "status $i"
    check_rec GET "$O/sticky/$i" "$(rendered demo-de DE stick1 30)|$(rendered demo-us DE stick1 30)"
    ups+=("$(hdr x-upstream)")
    users+=("$REC_USER")
    ports+=("$REC_PORT")
done
assert_eq 1 "$(printf '%s\n' "${ups[@]}" | sort -u | grep -c .)" "distinct X-Upstream values"
assert_eq 1 "$(printf '%s\n' "${users[@]}" | sort -u | grep -c .)" "distinct upstream usernames"
assert_eq 1 "$(printf '%s\n' "${ports[@]}" | sort -u | grep -c .)" "distinct stand-in ports"
assert_eq "stand-in:${ports[0]}" "${ups[0]}" "X-Upstream matches the recorded port"
# The same session through a CONNECT tunnel: same upstream.
gw_req "myuser-country-DE-session-stick1-sessTime-30:mypassword" "$TLS/bytes/10" --cacert "$GW_CA"
assert_eq 200 "$GW_CODE" "status (HTTPS)"
check_rec CONNECT "localhost:$ORIGIN_TLS_PORT" "${users[0]}"
assert_eq "${ports[0]}" "$REC_PORT" "port of the HTTPS request of the same session"
t_end

# Two more providers (is_global=false) on the same stand-in ports, with their
# own templates and country formats, so that a country has four providers:
# demo-de ISO_LOWERCASE, demo-us NO_SPACES, extra-iso ISO, extra-full FULL_NAME.
psql_gw "INSERT INTO proxies (base_url, name, slug, username, password, url_template,
        port_min, port_max, is_global, country_format) VALUES
    ('127.0.0.1', 'Extra ISO', 'extra-iso', 'x-iso', 'demo-us-pass',
     '{username}.{country}.{session_id}.{duration}:{password}@{host}:{port}',
     $UP_PORT_MIN, $UP_PORT_MAX, false, 'ISO'),
    ('127.0.0.1', 'Extra Full', 'extra-full', 'x-full', 'demo-global-pass',
     '{username}+{country}+{session_id}:{password}@{host}:{port}',
     $UP_PORT_MIN, $UP_PORT_MAX, false, 'FULL_NAME')" ||
    t_fail "insert the extra providers"
gw_wait_health 10 '"proxy_count":5[,}]' || t_fail "the snapshot never showed 5 providers"

spread_pass() { # <CC> <n> <label>: n sessions; fills SPREAD_SEEN, SPREAD_PORTS, SPREAD_LINES
    local cc=$1 n=$2 i slug
    SPREAD_SEEN=() SPREAD_PORTS=() SPREAD_LINES=()
    for ((i = 1; i <= n; i++)); do
        gw_req "myuser-country-$cc-session-sp_${cc}_$i:mypassword" "$O/spread/$cc/$i"
        assert_eq 200 "$GW_CODE" "$3: status of session sp_${cc}_$i" || continue
        check_rec GET "$O/spread/$cc/$i" '.*' || continue
        slug=$(slug_of "$REC_USER")
        assert_match "^$(rendered "$slug" "$cc" "sp_${cc}_$i" 5)\$" "$REC_USER" \
            "$3: session sp_${cc}_$i rendered per $slug's template and country_format"
        SPREAD_SEEN+=("$slug")
        SPREAD_PORTS+=("$REC_PORT")
        SPREAD_LINES+=("$REC_PORT $REC_USER")
    done
}

t_begin "different session ids spread over the country providers and their ports"
spread_pass GB 40 "GB"
seen=$(printf '%s\n' "${SPREAD_SEEN[@]}" | sort -u | tr '\n' ' ')
assert_eq "demo-de demo-us extra-full extra-iso " "$seen" "providers used by 40 GB sessions (never the global one)"
nports=$(printf '%s\n' "${SPREAD_PORTS[@]}" | sort -u | grep -c .)
[ "$nports" -ge 3 ] || t_fail "40 sessions used only $nports of the 4 stand-in ports"
first=$(printf '%s\n' "${SPREAD_LINES[@]}")
spread_pass GB 40 "GB again"
assert_eq "$first" "$(printf '%s\n' "${SPREAD_LINES[@]}")" "the same 40 sessions map to the same provider, port and username again"
t_end

t_begin "each country format rendered: US and GB (ISO, ISO_LOWERCASE, FULL_NAME, NO_SPACES)"
# The spread pass checked every username against its provider's format; here
# the four renderings of each country must all have been seen.
spread_pass US 40 "US"
us_users=$(printf '%s\n' "${SPREAD_LINES[@]}")
for re in 'x-iso\.US\.' 'demo-de-user_cc-us_' 'x-full\+United%20States\+' 'demo-us-user-country-UnitedStates-'; do
    assert_match "[0-9]+ $re" "$us_users" "a US username rendered as /$re/"
done
for re in 'x-iso\.GB\.' 'demo-de-user_cc-gb_' 'x-full\+United%20Kingdom\+' 'demo-us-user-country-UnitedKingdom-'; do
    assert_match "[0-9]+ $re" "$first" "a GB username rendered as /$re/"
done
# A lower-case country in the username is the same country: ISO gives "GB".
for i in $(seq 1 40); do
    gw_req "myuser-country-gb-session-lc_$i:mypassword" "$O/lc/$i"
    [ "$(slug_of "$(awk '{print $4}' <<<"$GW_REC")")" = extra-iso ] && break
done
check_rec GET "$O/lc/$i" "$(rendered extra-iso GB "lc_$i" 5)"
t_end

t_begin "without a session id, requests spread over providers and ports at random"
slugs=() ports=()
for i in $(seq 1 30); do
    gw_req "myuser-country-GB:mypassword" "$O/random/$i"
    assert_eq 200 "$GW_CODE" "status $i"
    check_rec GET "$O/random/$i" '.*'
    slugs+=("$(slug_of "$REC_USER")")
    ports+=("$REC_PORT")
done
n=$(printf '%s\n' "${slugs[@]}" | sort -u | grep -c .)
[ "$n" -ge 2 ] || t_fail "30 requests without a session all went to one provider (${slugs[0]})"
n=$(printf '%s\n' "${ports[@]}" | sort -u | grep -c .)
[ "$n" -ge 2 ] || t_fail "30 requests without a session all went to one port (${ports[0]})"
t_end

psql_gw "DELETE FROM proxies WHERE slug IN ('extra-iso', 'extra-full')" || t_fail "delete the extra providers"
gw_wait_health 10 '"proxy_count":3[,}]' || t_fail "the snapshot never went back to 3 providers"

# --- 5. /health ----------------------------------------------------------------------------

t_begin "/health: 200 JSON with the reference's fields"
gw_req "$ME" "http://127.0.0.1:$GW_PORT/health" --noproxy '*'
assert_eq 200 "$GW_CODE" "status"
assert_eq application/json "$(hdr content-type)" "Content-Type"
body=$(cat "$GW_BODY")
# (the last key, "providers", is an array of objects: README "Provider health")
assert_match '^\{"status":"healthy","proxy_count":3,"user_count":1,"queue_length":(0|[1-9][0-9]*)(,"[a-z_]+":(-?[0-9]+|"[^"]*"|true|false))*,"providers":\[\{.*\}\]\}$' \
    "$body" "body (status, proxy_count, user_count, queue_length first)"
if command -v jq >/dev/null 2>&1; then
    assert_ok "body is valid JSON" jq -e '.status == "healthy"' <<<"$body"
fi
t_end

# --- 6. volume: a 100 MB tunnel, 1,000 tunnels at once, keep-alive --------------------------

want=$("$ORIGIN" --pattern 104857600 | sha256sum | cut -c1-64)
t_begin "100 MB download through a CONNECT tunnel (plain HTTP inside) is byte-exact"
got=$(curl -s -p --max-time 60 -x "http://$ME@127.0.0.1:$GW_PORT" "$O/bytes/100m" | sha256sum | cut -c1-64)
assert_eq "$want" "$got" "sha256 of 100 MB via CONNECT + HTTP"
t_end

t_begin "100 MB download over HTTPS through the gateway is byte-exact"
got=$(curl -s --max-time 60 --cacert "$GW_CA" -x "http://$ME@127.0.0.1:$GW_PORT" "$TLS/bytes/100m" | sha256sum | cut -c1-64)
assert_eq "$want" "$got" "sha256 of 100 MB via CONNECT + TLS"
t_end

t_begin "1,000 concurrent CONNECT tunnels are all established, held open, and all complete"
N=1000
nofile=$(ulimit -n)
if [ "$nofile" != unlimited ] && [ "$nofile" -lt 6000 ]; then
    t_fail "the open-files limit is $nofile (hard $(ulimit -Hn)): 1,000 tunnels need about 6,000 descriptors"
fi
auth=$(gw_b64 "$ME")
mark=$(gw_rec_mark)
fds=() opened=0 established=0 completed=0 bad=()
for ((i = 0; i < N; i++)); do
    exec {fd}<>"/dev/tcp/127.0.0.1/$GW_PORT" || break
    fds+=("$fd")
    printf 'CONNECT 127.0.0.1:%s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nProxy-Authorization: Basic %s\r\n\r\n' \
        "$ORIGIN_PORT" "$ORIGIN_PORT" "$auth" >&"$fd"
done
opened=${#fds[@]}
assert_eq "$N" "$opened" "client connections opened"
for ((i = 0; i < opened; i++)); do
    fd=${fds[i]}
    if IFS= read -r -t 20 -u "$fd" line && [[ $line == "HTTP/1.1 200"* ]]; then
        established=$((established + 1))
        while IFS= read -r -t 5 -u "$fd" line && [ "$line" != $'\r' ]; do :; done
    else
        [ ${#bad[@]} -lt 5 ] && bad+=("tunnel $i: ${line:-no answer}")
    fi
done
assert_eq "$N" "$established" "tunnels established (200 to CONNECT)"
# All of them are open at this point: HAProxy holds one client connection each.
conns=$(echo "show info" | socat -t 5 - "UNIX-CONNECT:$GW_TMP/haproxy.sock" 2>/dev/null | sed -n 's/^CurrConns: //p')
[ "${conns:-0}" -ge "$N" ] || t_fail "HAProxy CurrConns ${conns:-?} while $N tunnels are open"
for ((i = 0; i < opened; i++)); do
    printf 'GET /tunnel/%d HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' "$i" "$ORIGIN_PORT" 1>&"${fds[i]}" 2>/dev/null
done
for ((i = 0; i < opened; i++)); do
    fd=${fds[i]}
    found=0
    while IFS= read -r -t 10 -u "$fd" line; do
        if [[ $line == "GET /tunnel/$i HTTP/1.1"* ]]; then
            found=1
            break
        fi
    done
    if [ "$found" = 1 ]; then completed=$((completed + 1)); else [ ${#bad[@]} -lt 5 ] && bad+=("tunnel $i: no echo of its own request"); fi
    exec {fd}<&-
done
assert_eq "$N" "$completed" "tunnels that carried their own request and response"
[ ${#bad[@]} = 0 ] || t_fail "first problems" "$(printf '%s\n' "${bad[@]}")"
assert_eq "$N" "$(gw_rec_since "$mark" | grep -c " CONNECT 127.0.0.1:$ORIGIN_PORT demo-global-user-")" \
    "CONNECTs the stand-in received with the provider's credentials"
t_end

t_begin "keep-alive: two requests with different credentials on ONE client connection"
a1=$(gw_b64 "myuser-country-DE-session-ka1:mypassword")
a2=$(gw_b64 "myuser-country-GB-session-ka2-sessTime-7:mypassword")
mark=$(gw_rec_mark)
exec {fd}<>"/dev/tcp/127.0.0.1/$GW_PORT"
printf 'GET %s/ka/1 HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nProxy-Authorization: Basic %s\r\n\r\n' "$O" "$ORIGIN_PORT" "$a1" >&"$fd"
first=
while IFS= read -r -t 5 -u "$fd" line; do
    first+="$line"$'\n'
    [[ $line == "GET /ka/1 HTTP/1.1"* ]] && break
done
# The response's body ends with the echo's last header line: read what is left of it.
while IFS= read -r -t 0.3 -u "$fd" line; do first+="$line"$'\n'; done
assert_match '^HTTP/1.1 200' "$first" "first response on the connection"
assert_match $'\nx-upstream: stand-in:' "$first" "first response came through the stand-in"
printf 'GET %s/ka/2 HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nProxy-Authorization: Basic %s\r\nConnection: close\r\n\r\n' \
    "$O" "$ORIGIN_PORT" "$a2" >&"$fd"
second=$(timeout 5 cat <&"$fd" | tr -d '\r')
exec {fd}<&-
assert_match '^HTTP/1.1 200' "$second" "second response on the same connection"
assert_match $'\nGET /ka/2 HTTP/1.1' "$second" "second response echoes the second request"
rec=$(gw_rec_since "$mark")
assert_eq 2 "$(grep -c . <<<"$rec")" "requests at the stand-in"
assert_match "^[0-9]+ GET $O/ka/1 ($(rendered demo-de DE ka1 5)|$(rendered demo-us DE ka1 5))"$'\n'"[0-9]+ GET $O/ka/2 ($(rendered demo-de GB ka2 7)|$(rendered demo-us GB ka2 7))\$" \
    "$rec" "each request reached the upstream with its own credentials, in order"
t_end

t_begin "keep-alive: pipelined requests, one with bad credentials in the middle"
mark=$(gw_rec_mark)
out=$(gw_raw "$GW_PORT" "GET $O/pl/1 HTTP/1.1\r\nHost: 127.0.0.1:$ORIGIN_PORT\r\nProxy-Authorization: Basic $a1\r\n\r\nGET $O/pl/2 HTTP/1.1\r\nHost: 127.0.0.1:$ORIGIN_PORT\r\nProxy-Authorization: Basic $(gw_b64 myuser:wrong)\r\n\r\nGET $O/pl/3 HTTP/1.1\r\nHost: 127.0.0.1:$ORIGIN_PORT\r\nProxy-Authorization: Basic $a2\r\nConnection: close\r\n\r\n" | tr -d '\r')
assert_eq "HTTP/1.1 200 OK|HTTP/1.1 407 Proxy Authentication Required|HTTP/1.1 200 OK" \
    "$(grep -a '^HTTP/1' <<<"$out" | paste -sd '|')" "statuses, in order"
rec=$(gw_rec_since "$mark")
assert_match "^[0-9]+ GET $O/pl/1 ($(rendered demo-de DE ka1 5)|$(rendered demo-us DE ka1 5))"$'\n'"[0-9]+ GET $O/pl/3 ($(rendered demo-de GB ka2 7)|$(rendered demo-us GB ka2 7))\$" "$rec" \
    "only the authenticated requests reached the upstream, each with its own session"
t_end

# --- 8. what reaches the upstream and the target ---------------------------------------------

t_begin "the client's Proxy-Authorization and Proxy-Connection never reach the target"
client_b64=$(gw_b64 "$ME")
gw_req "$ME" "$O/headers" -H 'Proxy-Connection: keep-alive'
assert_eq 200 "$GW_CODE" "status (HTTP)"
check_rec GET "$O/headers" "$(rendered demo-global US "$S" 5)"
assert_eq "" "$(grep -i '^x-seen-proxy-' <<<"$GW_HDRS")" "Proxy-* headers the origin received"
if grep -q -- "$client_b64" "$GW_BODY"; then t_fail "the client's credentials reached the origin"; fi
if grep -qi 'mypassword\|myuser' "$GW_BODY"; then t_fail "the client's user or password reached the origin"; fi
gw_req "$ME" "$O/headers" -p --proxy-header 'Proxy-Connection: keep-alive'
assert_eq 200 "$GW_CODE" "status (CONNECT)"
check_rec CONNECT "127.0.0.1:$ORIGIN_PORT" "$(rendered demo-global US "$S" 5)"
assert_eq "" "$(grep -i '^x-seen-proxy-' <<<"$GW_HDRS")" "Proxy-* headers the origin received in the tunnel"
t_end

# A provider whose "upstream" is the origin itself: the origin echoes the
# exact request head HAProxy sends upstream.
psql_gw "INSERT INTO proxies (base_url, name, slug, username, password, url_template,
        port_min, port_max, is_global, country_format) VALUES
    ('127.0.0.1', 'Mirror', 'mirror', 'mirror-user', 'mirror:p@ss/word',
     '{username}-{country}-{session_id}:{password}@{host}:{port}',
     $ORIGIN_PORT, $ORIGIN_PORT, true, 'FULL_NAME')" || t_fail "insert the mirror provider"
gw_wait_health 10 '"proxy_count":4[,}]' || t_fail "the snapshot never showed the mirror provider"
psql_gw "UPDATE proxies SET is_disabled = true WHERE slug = 'demo-global'" || t_fail "disable demo-global"
gw_wait_health 10 '"proxy_count":3[,}]' || t_fail "the snapshot never dropped demo-global"

t_begin "the upstream receives only the agent's credentials (provider secret with ':' '@' '/'), no Proxy-Connection"
want_auth="Basic $(gw_b64 'mirror-user-United States-hdr1:mirror:p@ss/word')"
gw_req "myuser-session-hdr1:mypassword" "http://example.invalid/headers" -H 'Proxy-Connection: keep-alive'
assert_eq 200 "$GW_CODE" "status (HTTP)"
assert_eq "$want_auth" "$(hdr x-seen-proxy-authorization)" "Proxy-Authorization the upstream received"
assert_eq "" "$(hdr x-seen-proxy-connection)" "Proxy-Connection the upstream received"
assert_eq "GET http://example.invalid/headers HTTP/1.1" "$(head -n 1 "$GW_BODY")" "request line the upstream received"
if grep -q -- "$client_b64" "$GW_BODY"; then t_fail "the client's credentials reached the upstream"; fi
out=$(gw_raw "$GW_PORT" "CONNECT example.invalid:443 HTTP/1.1\r\nHost: example.invalid:443\r\nProxy-Authorization: Basic $(gw_b64 myuser-session-hdr1:mypassword)\r\nProxy-Connection: keep-alive\r\nUser-Agent: gw-test\r\n\r\n" 5 | tr -d '\r')
assert_match '^HTTP/1.1 200' "$out" "status (CONNECT)"
assert_match $'\nx-seen-proxy-authorization: '"$want_auth"$'\n' "$out" "Proxy-Authorization the upstream received on CONNECT"
if grep -qi '^x-seen-proxy-connection' <<<"$out"; then t_fail "Proxy-Connection reached the upstream on CONNECT"; fi
if grep -q -- "$client_b64" <<<"$out"; then t_fail "the client's credentials reached the upstream on CONNECT"; fi
t_end

psql_gw "DELETE FROM proxies WHERE slug = 'mirror'" || t_fail "delete the mirror provider"
gw_wait_health 10 '"proxy_count":2[,}]' || t_fail "the snapshot never dropped the mirror provider"
psql_gw "UPDATE proxies SET is_disabled = false WHERE slug = 'demo-global'" || t_fail "enable demo-global"
gw_wait_health 10 '"proxy_count":3[,}]' || t_fail "the snapshot never went back to the demo providers"
gw_req "$ME" "$O/x"
check_rec GET "$O/x" "$(rendered demo-global US "$S" 5)" || t_fail "minimal requests do not use demo-global again"

t_begin "gateway credentials sent in Authorization (the reference's fallback) are not passed on to the target"
gw_req - "$O/authz" -H "Authorization: Basic $client_b64"
assert_eq 200 "$GW_CODE" "status (Authorization accepted as proxy credentials, as in the reference)"
assert_eq "" "$(hdr x-seen-authorization)" "Authorization header the target received"
if grep -q -- "$client_b64" "$GW_BODY"; then t_fail "the customer's gateway password reached the target"; fi
# With Proxy-Authorization present, Authorization is the target's own: it passes.
target_auth="Basic $(gw_b64 site-user:site-pass)"
gw_req "$ME" "$O/authz" -H "Authorization: $target_auth"
assert_eq 200 "$GW_CODE" "status (Proxy-Authorization and an Authorization for the target)"
assert_eq "$target_auth" "$(hdr x-seen-authorization)" "the target's own Authorization reaches it"
t_end

# --- 7. the client address: whitelist, X-Forwarded-For, PROXY protocol --------------------------
# demo.sql whitelists 127.0.0.1/32, ::1/128, 203.0.113.50 and 10.0.0.0/8:
# 127.0.0.2 is a loopback address that is not whitelisted.

t_begin "X-Forwarded-For (and friends) from the client are ignored"
gw_req "$ME" "$O/xff" --interface 127.0.0.2
assert_eq 403 "$GW_CODE" "127.0.0.2 without headers"
for h in 'X-Forwarded-For: 127.0.0.1' 'X-Forwarded-For: 203.0.113.50, 127.0.0.1' 'X-Real-IP: 127.0.0.1' \
    'Forwarded: for=127.0.0.1' 'X-Client-IP: 10.0.0.1'; do
    gw_req "$ME" "$O/xff" --interface 127.0.0.2 -H "$h"
    assert_eq 403 "$GW_CODE" "127.0.0.2 with '$h'"
    gw_req "$ME" "$O/xff" --interface 127.0.0.2 -p --proxy-header "$h"
    assert_eq 403 "$GW_CODE" "127.0.0.2, CONNECT with '$h'"
done
gw_req "$ME" "$O/xff" -H 'X-Forwarded-For: 192.0.2.99'
assert_eq 200 "$GW_CODE" "127.0.0.1 claiming a foreign address in X-Forwarded-For is still itself"
t_end

proxy_v1() { # <source address> [request target]: status line of a request on the PROXY port
    gw_raw "$GW_PROXY_PORT" "PROXY TCP4 $1 127.0.0.1 40000 $GW_PROXY_PORT\r\nGET ${2:-$O/pp} HTTP/1.1\r\nHost: 127.0.0.1:$ORIGIN_PORT\r\nProxy-Authorization: Basic $(gw_b64 "$ME")\r\nConnection: close\r\n\r\n" |
        head -n 1 | tr -d '\r'
}

# proxy_v2 <a.b.c.d>: the same with a binary PROXY v2 header (TCP over IPv4).
proxy_v2() {
    local IFS=. a hex=
    read -r -a a <<<"$1"
    hex=$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' "${a[@]}")
    gw_raw "$GW_PROXY_PORT" "\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a\x21\x11\x00\x0c${hex}\x7f\x00\x00\x01\x9c\x40\x1f\x90GET $O/pp2 HTTP/1.1\r\nHost: 127.0.0.1:$ORIGIN_PORT\r\nProxy-Authorization: Basic $(gw_b64 "$ME")\r\nConnection: close\r\n\r\n" |
        head -n 1 | tr -d '\r'
}

t_begin "PROXY protocol port: the address in the header from the trusted balancer decides"
gw_req "$ME" "$O/pp" --haproxy-protocol -x "http://$ME@127.0.0.1:$GW_PROXY_PORT"
assert_eq 200 "$GW_CODE" "curl --haproxy-protocol (its real address 127.0.0.1)"
assert_eq "HTTP/1.1 403 Forbidden" "$(proxy_v1 192.0.2.7)" "PROXY v1, non-whitelisted 192.0.2.7"
assert_eq "HTTP/1.1 403 Forbidden" "$(proxy_v1 127.0.0.2)" "PROXY v1, non-whitelisted 127.0.0.2"
assert_eq "HTTP/1.1 200 OK" "$(proxy_v1 203.0.113.50)" "PROXY v1, whitelisted 203.0.113.50"
assert_eq "HTTP/1.1 200 OK" "$(proxy_v1 10.20.30.40)" "PROXY v1, whitelisted 10.0.0.0/8"
assert_eq "HTTP/1.1 403 Forbidden" "$(proxy_v2 192.0.2.7)" "PROXY v2, non-whitelisted 192.0.2.7"
assert_eq "HTTP/1.1 200 OK" "$(proxy_v2 203.0.113.50)" "PROXY v2, whitelisted 203.0.113.50"
t_end

t_begin "PROXY protocol port: a header from an untrusted source, or no header, is refused"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 --interface 127.0.0.2 --haproxy-protocol \
    -x "http://$ME@127.0.0.1:$GW_PROXY_PORT" "$O/pp")
assert_eq 000 "$code" "127.0.0.2 (untrusted) with a PROXY header: no HTTP answer at all"
mark=$(gw_rec_mark)
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 --interface 127.0.0.2 \
    -x "http://$ME@127.0.0.1:$GW_PROXY_PORT" "$O/pp")
assert_eq 000 "$code" "127.0.0.2 (untrusted) without a PROXY header"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -x "http://$ME@127.0.0.1:$GW_PROXY_PORT" "$O/pp")
assert_eq 000 "$code" "the trusted balancer without a PROXY header"
# On the ordinary port a PROXY header is not honoured: it is a bad request.
out=$(gw_raw "$GW_PORT" "PROXY TCP4 203.0.113.50 127.0.0.1 40000 $GW_PORT\r\nGET $O/pp HTTP/1.1\r\nHost: 127.0.0.1:$ORIGIN_PORT\r\nProxy-Authorization: Basic $(gw_b64 "$ME")\r\n\r\n" 3 | head -n 1 | tr -d '\r')
assert_match '^HTTP/1.1 400' "$out" "PROXY header on the ordinary port"
assert_eq "" "$(gw_rec_since "$mark")" "none of these reached the upstream"
t_end

t_summary
