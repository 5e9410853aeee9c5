#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# t_standins.sh: the test stand-ins do what the end-to-end tests, the demo
# stack and the benchmarks rely on. tests/tools/upstream (a residential proxy
# provider: Basic proxy auth, a record of every username, absolute-form
# forwarding, CONNECT tunnels, failure modes) and tests/tools/origin (the
# target: pattern bytes, echo, status, request-header echo, over HTTP and TLS),
# with curl and a raw bash client, against a CA from tests/tools/make-test-ca.sh.
#
# The tools come from tests/tools/ when built there and newer than their
# source; otherwise they are compiled into $GW_TMP (CFLAGS from
# GW_STANDINS_CFLAGS, default "-O2 -g"; e.g. add -fsanitize=address,undefined).
set -u
export LC_ALL=C
# shellcheck source=../lib/services.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/services.sh"

svc_init || { echo "0 passed, 1 failed"; exit 1; }

# --- build --------------------------------------------------------------------------
# tool_bin <name> <libs...>: print the binary to use, compiling it when needed.
tool_bin() {
    local name=$1 src=$GW_ROOT/tests/tools/$1.c bin=$GW_ROOT/tests/tools/$1
    shift
    if [ -x "$bin" ] && [ "$bin" -nt "$src" ] && [ -z "${GW_STANDINS_CFLAGS:-}" ]; then
        printf '%s\n' "$bin"
        return 0
    fi
    # shellcheck disable=SC2086 # word-split flags on purpose
    gcc -std=gnu11 -D_GNU_SOURCE ${GW_STANDINS_CFLAGS:--O2 -g} -Wall -Wextra -Werror -Wshadow \
        -Wstrict-prototypes -Wmissing-prototypes "$src" -o "$GW_TMP/$name" "$@" \
        >"$GW_TMP/build-$name.log" 2>&1 || { cat "$GW_TMP/build-$name.log" >&2; return 1; }
    printf '%s\n' "$GW_TMP/$name"
}

t_begin "the tools build and describe themselves"
UPSTREAM=$(tool_bin upstream -lev) || t_abort "upstream does not build"
ORIGIN=$(tool_bin origin -lev -lssl -lcrypto) || t_abort "origin does not build"
assert_match 'usage: upstream --listen' "$("$UPSTREAM" --help)" "upstream --help"
assert_match 'usage: origin --listen' "$("$ORIGIN" --help)" "origin --help"
assert_fails "upstream without --listen" "$UPSTREAM"
assert_fails "upstream with a bad mode" "$UPSTREAM" --listen 127.0.0.1:1 --mode nope

t_begin "origin --pattern is the documented formula"
# byte i = (uint8_t)(((uint32_t)(i % 65521) * 2654435761) >> 24)
expect=$(awk 'BEGIN { for (i = 65519; i < 65524; i++) { k = i % 65521;
    printf "%02x", int(((k * 2654435761) % 4294967296) / 16777216) } }')
got=$("$ORIGIN" --pattern 65524 | tail -c 5 | od -An -tx1 | tr -d ' \n')
assert_eq "$expect" "$got" "pattern bytes 65519..65523 (the period wraps at 65521)"
assert_eq 1048576 "$("$ORIGIN" --pattern 1m | wc -c)" "--pattern 1m length"

t_begin "make-test-ca.sh: a CA and a server certificate for 127.0.0.1, ::1, localhost"
CA=$GW_TMP/ca
assert_ok "make-test-ca.sh" bash "$GW_ROOT/tests/tools/make-test-ca.sh" "$CA"
assert_ok "chain verifies" openssl verify -CAfile "$CA/ca.pem" "$CA/server.pem"
assert_match 'IP Address:127\.0\.0\.1.*DNS:localhost' \
    "$(openssl x509 -in "$CA/server.pem" -noout -ext subjectAltName 2>&1)" "SAN"

# --- services -------------------------------------------------------------------------
ORIGIN_PORT=$(free_port)
TLS_PORT=$(free_port)
UP_BASE=$(free_port_range 4)
UP_LAST=$((UP_BASE + 3))
REC=$GW_TMP/upstream.rec
start_bg origin "$ORIGIN" --name o1 --listen "127.0.0.1:$ORIGIN_PORT" \
    --tls-listen "127.0.0.1:$TLS_PORT" --cert "$CA/server.pem" --key "$CA/server.key"
start_bg upstream "$UPSTREAM" --name prov1 --listen "127.0.0.1:$UP_BASE-$UP_LAST" \
    --password secret --user bob:b0b --record "$REC"
for p in "$ORIGIN_PORT" "$TLS_PORT" $(seq "$UP_BASE" "$UP_LAST"); do
    wait_port "$p" || t_abort "nothing listens on $p"
done
O=http://127.0.0.1:$ORIGIN_PORT
OS=https://127.0.0.1:$TLS_PORT
PX=http://127.0.0.1:$UP_BASE
E=$GW_TMP/expect
mkdir -p "$E"
"$ORIGIN" --pattern 1000 >"$E/1000"
"$ORIGIN" --pattern 1m >"$E/1m"

# rec_has <line>: is this exact line in the record file?
rec_has() { grep -qxF -- "$1" "$REC"; }

# --- plain HTTP through the proxy ----------------------------------------------------------
t_begin "GET /bytes/1000 through the proxy is byte-exact, recorded, tagged X-Upstream"
user=alice-country-DE-session-abc123-sessTime-10
code=$(curl -s -o "$GW_TMP/b1000" -D "$GW_TMP/h" -w '%{http_code}' --max-time 10 \
    -x "http://$user:secret@127.0.0.1:$((UP_BASE + 2))" "$O/bytes/1000")
assert_eq 200 "$code" "status"
assert_ok "body equals the pattern" cmp "$E/1000" "$GW_TMP/b1000"
assert_match $'X-Upstream: prov1:'$((UP_BASE + 2))$'\r' "$(cat "$GW_TMP/h")" "X-Upstream names the port"
assert_match $'X-Origin: o1\r' "$(cat "$GW_TMP/h")" "X-Origin"
rec_has "$((UP_BASE + 2)) GET $O/bytes/1000 $user" || t_fail "record line" "$(cat "$REC")"

t_begin "every port of the range serves and records its own port"
for p in $(seq "$UP_BASE" "$UP_LAST"); do
    h=$(curl -s -o /dev/null -D - --max-time 10 -x "http://u$p:secret@127.0.0.1:$p" "$O/p$p")
    assert_match "X-Upstream: prov1:$p" "$h" "X-Upstream on port $p"
    rec_has "$p GET $O/p$p u$p" || t_fail "record line for port $p" "$(cat "$REC")"
done

t_begin "the origin sees origin-form requests without the proxy's headers"
body=$(curl -s --max-time 10 -x "http://carol:secret@127.0.0.1:$UP_BASE" -H 'X-Probe: 42' \
    -H 'Proxy-Connection: keep-alive' "$O/headers?q=1")
assert_match "^GET /headers\\?q=1 HTTP/1\\.1"$'\n' "$body" "origin-form request line"
assert_match $'\nHost: 127\\.0\\.0\\.1:'"$ORIGIN_PORT"$'\n' "$body" "Host is the target"
assert_match $'\nX-Probe: 42(\n|$)' "$body" "other headers pass"
if [[ ${body,,} == *proxy-authorization* || ${body,,} == *proxy-connection* ]]; then
    t_fail "a Proxy-* header reached the origin" "$body"
fi

t_begin "POST /echo streams bodies both ways (Content-Length and chunked)"
head -c 3000000 /dev/urandom >"$GW_TMP/rand"
want=$(sha256sum <"$GW_TMP/rand" | cut -d' ' -f1)
got=$(curl -s --max-time 20 -x "$PX" -U a:secret --data-binary @"$GW_TMP/rand" "$O/echo" | sha256sum | cut -d' ' -f1)
assert_eq "$want" "$got" "Content-Length body echoed"
got=$(curl -s --max-time 20 -x "$PX" -U a:secret -H 'Transfer-Encoding: chunked' \
    --data-binary @"$GW_TMP/rand" "$O/echo" | sha256sum | cut -d' ' -f1)
assert_eq "$want" "$got" "chunked body echoed"
rec_has "$UP_BASE POST $O/echo a" || t_fail "record line for POST" "$(cat "$REC")"

t_begin "chunked responses, HEAD and bodiless statuses are framed right"
assert_ok "/chunked/1m byte-exact" cmp "$E/1m" \
    <(curl -s --max-time 10 -x "$PX" -U a:secret "$O/chunked/1m")
h=$(curl -s -I --max-time 10 -x "$PX" -U a:secret "$O/bytes/1m")
assert_match $'Content-Length: 1048576\r' "$h" "HEAD keeps Content-Length"
for s in 204 304 404 503; do
    assert_eq "$s" "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -x "$PX" -U a:secret "$O/status/$s")" "status $s"
done

# --- keep-alive with a raw client ----------------------------------------------------------
# read_response <fd>: one response with a Content-Length body: RESP_STATUS, RESP_HEADERS, RESP_BODY.
read_response() {
    local fd=$1 line len=0
    RESP_STATUS='' RESP_HEADERS='' RESP_BODY=''
    IFS= read -r -t 5 line <&"$fd" || return 1
    RESP_STATUS=${line%$'\r'}
    while IFS= read -r -t 5 line <&"$fd"; do
        line=${line%$'\r'}
        [ -z "$line" ] && break
        RESP_HEADERS+=$line$'\n'
        if [[ ${line,,} =~ ^content-length:\ *([0-9]+)$ ]]; then len=${BASH_REMATCH[1]}; fi
    done
    [ "$len" = 0 ] || IFS= read -r -t 5 -N "$len" RESP_BODY <&"$fd"
}
# basic <user:pass>: the Proxy-Authorization value.
basic() { printf 'Basic %s' "$(printf '%s' "$1" | base64 -w0)"; }

t_begin "keep-alive: two requests on one connection, different credentials, both recorded"
exec {fd}<>"/dev/tcp/127.0.0.1/$((UP_BASE + 1))"
printf 'GET %s/ka1 HTTP/1.1\r\nHost: x\r\nProxy-Authorization: %s\r\n\r\n' "$O" "$(basic ka-one:secret)" >&"$fd"
read_response "$fd"
assert_eq "HTTP/1.1 200 OK" "$RESP_STATUS" "first status"
assert_match '^GET /ka1 ' "$RESP_BODY" "first body"
printf 'GET %s/ka2 HTTP/1.1\r\nHost: x\r\nProxy-Authorization: %s\r\n\r\n' "$O" "$(basic bob:b0b)" >&"$fd"
read_response "$fd"
assert_eq "HTTP/1.1 200 OK" "$RESP_STATUS" "second status, same connection"
assert_match '^GET /ka2 ' "$RESP_BODY" "second body"
printf 'GET %s/ka3 HTTP/1.1\r\nHost: x\r\nProxy-Authorization: %s\r\n\r\n' "$O" "$(basic bob:wrong)" >&"$fd"
read_response "$fd"
assert_eq "HTTP/1.1 407 Proxy Authentication Required" "$RESP_STATUS" "third: wrong password"
printf 'GET %s/ka4 HTTP/1.1\r\nHost: x\r\nProxy-Authorization: %s\r\nConnection: close\r\n\r\n' "$O" "$(basic ka-four:secret)" >&"$fd"
read_response "$fd"
assert_eq "HTTP/1.1 200 OK" "$RESP_STATUS" "fourth: still the same connection after a 407"
rest=$(timeout 5 cat <&"$fd" | wc -c)
assert_eq 0 "$rest" "closed after Connection: close"
exec {fd}>&-
for l in "ka-one $O/ka1" "bob $O/ka2" "bob $O/ka3" "ka-four $O/ka4"; do
    rec_has "$((UP_BASE + 1)) GET ${l#* } ${l%% *}" || t_fail "record line: $l" "$(cat "$REC")"
done

t_begin "pipelined requests are answered in order"
out=$(printf 'GET %s/p1 HTTP/1.1\r\nHost: x\r\nProxy-Authorization: %s\r\n\r\nPOST %s/echo HTTP/1.1\r\nHost: x\r\nProxy-Authorization: %s\r\nContent-Length: 5\r\n\r\nhelloGET %s/p3 HTTP/1.1\r\nHost: x\r\nProxy-Authorization: %s\r\nConnection: close\r\n\r\n' \
    "$O" "$(basic a:secret)" "$O" "$(basic a:secret)" "$O" "$(basic a:secret)" |
    timeout 10 socat -t 5 - "TCP:127.0.0.1:$UP_BASE" | tr -d '\r' | grep -E '^(HTTP/|GET /|hello)' | tr '\n' '|')
# "hello" has no newline: the third response follows it on the same line.
assert_eq "HTTP/1.1 200 OK|GET /p1 HTTP/1.1|HTTP/1.1 200 OK|helloHTTP/1.1 200 OK|GET /p3 HTTP/1.1|" \
    "$out" "responses"

# --- CONNECT -------------------------------------------------------------------------------
t_begin "CONNECT + HTTPS to the TLS origin, chain verified with --cacert"
code=$(curl -s -o "$GW_TMP/tls1000" -w '%{http_code}' --max-time 10 --cacert "$CA/ca.pem" \
    -x "http://dave-country-US:secret@127.0.0.1:$((UP_BASE + 3))" "$OS/bytes/1000")
assert_eq 200 "$code" "status"
assert_ok "body equals the pattern" cmp "$E/1000" "$GW_TMP/tls1000"
rec_has "$((UP_BASE + 3)) CONNECT 127.0.0.1:$TLS_PORT dave-country-US" || t_fail "record line" "$(cat "$REC")"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 --cacert "$CA/ca.pem" \
    -x "http://dave:secret@127.0.0.1:$UP_BASE" "https://localhost:$TLS_PORT/x")
assert_eq 200 "$code" "https://localhost (CONNECT localhost:port, DNS SAN)"
assert_fails "an unknown CA is refused" curl -s -o /dev/null --max-time 10 \
    -x "http://dave:secret@127.0.0.1:$UP_BASE" "$OS/x"
got=$(curl -s --max-time 20 --cacert "$CA/ca.pem" -x "$PX" -U a:secret \
    -H 'Transfer-Encoding: chunked' --data-binary @"$GW_TMP/rand" "$OS/echo" | sha256sum | cut -d' ' -f1)
assert_eq "$want" "$got" "3 MB echoed over TLS in a tunnel"

t_begin "100 MB through a tunnel, byte-exact (plain and TLS)"
want100=$("$ORIGIN" --pattern 100m | sha256sum | cut -d' ' -f1)
for kind in plain tls; do
    if [ "$kind" = plain ]; then
        args=(-p "$O/bytes/100m")
    else
        args=(--cacert "$CA/ca.pem" "$OS/bytes/100m")
    fi
    stats=$(curl -s -o "$GW_TMP/big" -w '%{http_code} %{size_download} %{speed_download}' \
        --max-time 60 -x "$PX" -U big:secret "${args[@]}")
    read -r code size speed <<<"$stats"
    assert_eq "200 104857600" "$code $size" "$kind: status and size"
    assert_eq "$want100" "$(sha256sum <"$GW_TMP/big" | cut -d' ' -f1)" "$kind: sha256"
    rm -f "$GW_TMP/big"
    printf '  note: 100 MB %s tunnel: %s MB/s\n' "$kind" "$(awk -v s="${speed:-0}" 'BEGIN { printf "%.0f", s / 1e6 }')"
done

t_begin "1000 concurrent tunnels"
n=1000
conc=$(
    ulimit -n 4096 2>/dev/null || { echo "ulimit"; exit 0; }
    fds=()
    for ((i = 0; i < n; i++)); do
        exec {f}<>"/dev/tcp/127.0.0.1/$((UP_BASE + i % 4))" || break
        fds+=("$f")
        printf 'CONNECT 127.0.0.1:%s HTTP/1.1\r\nHost: x\r\nProxy-Authorization: %s\r\n\r\n' \
            "$ORIGIN_PORT" "$(basic many:secret)" >&"$f"
    done
    est=0
    for f in "${fds[@]}"; do
        IFS= read -r -t 10 line <&"$f" && [[ $line == "HTTP/1.1 200 "* ]] && est=$((est + 1))
        IFS= read -r -t 10 line <&"$f"
    done
    # All open at once: the origin holds one connection per tunnel.
    open=$(ss -Htn state established "( dport = :$ORIGIN_PORT )" | wc -l)
    for f in "${fds[@]}"; do
        printf 'GET /bytes/10 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&"$f"
    done
    ok=0
    for f in "${fds[@]}"; do
        IFS= read -r -t 10 line <&"$f" && [[ $line == "HTTP/1.1 200 OK"* ]] && ok=$((ok + 1))
        exec {f}>&-
    done
    echo "$est $open $ok"
)
if [ "$conc" = ulimit ]; then
    printf '  note: skipped: cannot raise the open-files limit to 4096\n'
else
    assert_eq "$n $n $n" "$conc" "established, open at the origin at once, answered"
fi

# --- refusals ------------------------------------------------------------------------------
t_begin "407 without or with wrong credentials, with Proxy-Authenticate"
for creds in "" "a:wrong" "bob:secret-not" "nobody:b0b"; do
    args=()
    [ -z "$creds" ] || args=(-U "$creds")
    h=$(curl -s -o /dev/null -D - --max-time 10 -x "$PX" "${args[@]}" "$O/x")
    assert_match '^HTTP/1.1 407 ' "$h" "status with '${creds:-no credentials}'"
    assert_match $'Proxy-Authenticate: Basic realm="upstream"\r' "$h" "challenge with '${creds:-none}'"
done
rec_has "$UP_BASE GET $O/x -" || t_fail "a request without credentials records '-'" "$(cat "$REC")"
code=$(curl -s -o /dev/null -w '%{http_connect}' --max-time 10 -x "$PX" -U a:wrong "$OS/x")
assert_eq 407 "$code" "CONNECT with a wrong password"

t_begin "403 for targets off loopback, 502 when the target refuses"
assert_eq 403 "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -x "$PX" -U a:secret http://192.0.2.1/x)" "192.0.2.1"
assert_eq 403 "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -x "$PX" -U a:secret http://example.com/x)" "a name"
assert_eq 403 "$(curl -s -o /dev/null -w '%{http_connect}' --max-time 10 -x "$PX" -U a:secret https://example.com/x)" "CONNECT to a name"
dead=$(free_port)
assert_eq 502 "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -x "$PX" -U a:secret "http://127.0.0.1:$dead/x")" "GET to a closed port"
assert_eq 502 "$(curl -s -o /dev/null -w '%{http_connect}' --max-time 10 -x "$PX" -U a:secret "https://127.0.0.1:$dead/x")" "CONNECT to a closed port"

t_begin "400 for a malformed request, 431 for a head over 16 KiB"
out=$(printf 'NOT A REQUEST\r\n\r\n' | timeout 10 socat -t 5 - "TCP:127.0.0.1:$UP_BASE" | head -n 1)
assert_eq $'HTTP/1.1 400 Bad Request\r' "$out" "malformed"
out=$(printf 'GET /relative HTTP/1.1\r\nHost: x\r\nProxy-Authorization: %s\r\n\r\n' "$(basic a:secret)" |
    timeout 10 socat -t 5 - "TCP:127.0.0.1:$UP_BASE" | head -n 1)
assert_eq $'HTTP/1.1 400 Bad Request\r' "$out" "origin-form to a proxy"
out=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -x "$PX" -U a:secret \
    -H "X-Big: $(head -c 17000 /dev/zero | tr '\0' a)" "$O/x")
assert_eq 431 "$out" "17 KB header"

# --- failure modes -------------------------------------------------------------------------
t_begin "--mode refuse-auth answers 407 to good credentials"
RP=$(free_port)
start_bg up-refuse "$UPSTREAM" --name refuser --listen "127.0.0.1:$RP" --password secret \
    --mode refuse-auth --record "$GW_TMP/refuse.rec"
wait_port "$RP" || t_fail "refuse-auth upstream did not start"
assert_eq 407 "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -x "http://a:secret@127.0.0.1:$RP" "$O/x")" "GET"
assert_eq 407 "$(curl -s -o /dev/null -w '%{http_connect}' --max-time 10 -x "http://a:secret@127.0.0.1:$RP" "$OS/x")" "CONNECT"
assert_eq "$RP GET $O/x a" "$(head -n 1 "$GW_TMP/refuse.rec")" "recorded"

t_begin "--mode reset resets the connection after the request"
RP=$(free_port)
start_bg up-reset "$UPSTREAM" --listen "127.0.0.1:$RP" --password secret --mode reset \
    --record "$GW_TMP/reset.rec"
wait_port "$RP" || t_fail "reset upstream did not start"
curl -s -o /dev/null --max-time 10 -x "http://a:secret@127.0.0.1:$RP" "$O/x"
assert_eq 56 "$?" "curl exit (receive failure) on GET"
curl -s -o /dev/null --max-time 10 --cacert "$CA/ca.pem" -x "http://a:secret@127.0.0.1:$RP" "$OS/x"
assert_eq 56 "$?" "curl exit on CONNECT"
assert_eq 2 "$(wc -l <"$GW_TMP/reset.rec")" "both recorded"

t_begin "--mode stall never answers (and keeps serving others)"
RP=$(free_port)
start_bg up-stall "$UPSTREAM" --listen "127.0.0.1:$RP" --password secret --mode stall
wait_port "$RP" || t_fail "stall upstream did not start"
start=$SECONDS
curl -s -o /dev/null --max-time 2 -x "http://a:secret@127.0.0.1:$RP" "$O/x"
assert_eq 28 "$?" "curl exit (timeout) on GET"
curl -s -o /dev/null --max-time 2 -x "http://a:secret@127.0.0.1:$RP" "$OS/x"
assert_eq 28 "$?" "curl exit on CONNECT"
[ $((SECONDS - start)) -lt 10 ] || t_fail "timeouts took $((SECONDS - start)) s"
bg_alive up-stall || t_fail "stalling upstream died"

# --- shutdown -------------------------------------------------------------------------------
t_begin "both tools survived everything and stop with exit 0 on SIGTERM"
bg_alive upstream || t_fail "upstream died" "$(tail -n 20 "$GW_TMP/upstream.log")"
bg_alive origin || t_fail "origin died" "$(tail -n 20 "$GW_TMP/origin.log")"
signal_bg upstream USR1
wait_until 5 grep -q 'stats: conns=' "$GW_TMP/upstream.log" || t_fail "no stats on SIGUSR1"
stop_bg upstream
assert_eq 0 "$BG_STATUS" "upstream exit status"
stop_bg origin
assert_eq 0 "$BG_STATUS" "origin exit status"
if grep -E 'ERROR: (Address|Leak|Undefined)Sanitizer|runtime error:' "$GW_TMP"/*.log >/dev/null 2>&1; then
    t_fail "sanitizer reports" "$(grep -h -A 20 -E 'Sanitizer|runtime error:' "$GW_TMP"/*.log | head -n 40)"
fi

t_summary
