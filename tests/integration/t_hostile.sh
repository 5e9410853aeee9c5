#!/usr/bin/env bash
# Hostile HTTP over raw sockets against the real gateway (tests/lib/gateway.sh):
# request smuggling, malformed request lines, header names and values, oversize
# everything, CONNECT targets, URIs, credentials that try to reach into the
# upstream credential or host, slow clients, pipelining, loops to the gateway.
#
# Every request carries the demo user's valid credentials (unless the case is
# about the credentials), so a refusal is the gateway's doing, not the
# verdict's. Each refused case asserts the status (or the close) and, when the
# gateway answered with its own rule, the body naming the problem, AND that
# nothing reached a provider: the stand-in upstream and the origin accepted no
# connection (their counters, read with SIGUSR1), the stand-in recorded no
# request, and HAProxy's "upstream" backend counted no session. At the end,
# Redis holds a billing record for the forwarded controls only.
#
# The "forwarded, normalised" controls at the end are requests the RFCs allow
# and HAProxy passes on in a clean form (CL+TE processed by its
# Transfer-Encoding, obs-fold unfolded, extension methods...): they show that
# the refusals are not over-broad.
set -u
export LC_ALL=C
. "$(dirname "$0")/../lib/services.sh"
. "$GW_ROOT/tests/lib/gateway.sh"
svc_init || exit 1
# This test counts the stand-in's connections: no active provider checks
# (README "Provider health"), which would add theirs.
GW_AGENT_ARGS="${GW_AGENT_ARGS:-} --health-check-interval-ms 0"
start_gateway_stack || t_abort "the gateway stack did not start"
redis_gw DEL traffic:logs >/dev/null

O=127.0.0.1:$ORIGIN_PORT
A=$(gw_b64 myuser:mypassword)
PA="Proxy-Authorization: Basic $A\r\n"
H="Host: $O\r\n$PA"
CL="Connection: close\r\n"

# --- what reached the stand-ins ------------------------------------------------
# standin_conns <name>: the connections the stand-in (start_bg name) accepted
# so far, from the counters it logs on SIGUSR1.
standin_conns() {
    local log=$GW_TMP/$1.log n i
    n=$(grep -c ' stats: ' "$log")
    signal_bg "$1" USR1
    for ((i = 0; i < 200; i++)); do
        [ "$(grep -c ' stats: ' "$log")" -gt "$n" ] && break
        sleep 0.01
    done
    grep ' stats: ' "$log" | tail -n 1 | sed -n 's/.* conns=\([0-9]*\).*/\1/p'
}
# backend_sessions: sessions HAProxy's "upstream" backend has counted (stot).
backend_sessions() {
    echo "show stat upstream 2 -1" | socat -t 2 - "UNIX-CONNECT:$GW_TMP/haproxy.sock" |
        awk -F, '$2 == "BACKEND" { print $8 }'
}
reached_now() {
    printf 'upstream conns %s, origin conns %s, recorded %s, backend sessions %s\n' \
        "$(standin_conns upstream)" "$(standin_conns origin)" "$(gw_rec_mark)" "$(backend_sessions)"
}
REACHED=$(reached_now)
# nothing_reached: no stand-in, origin or backend counter moved since the
# last check.
nothing_reached() {
    local now
    sleep 0.05
    now=$(reached_now)
    assert_eq "$REACHED" "$now" "nothing reached a provider or the origin"
    REACHED=$now
}
# reached_once: exactly one request reached the stand-in (the controls);
# FORWARDED counts them (each is billed).
FORWARDED=0
reached_once() {
    local now mark
    mark=${REACHED#*recorded }
    mark=${mark%%,*}
    now=$(reached_now)
    assert_eq "$((mark + 1))" "$(gw_rec_mark)" "requests recorded by the stand-in: one more"
    FORWARDED=$((FORWARDED + 1))
    REACHED=$now
}

# --- a raw client --------------------------------------------------------------
# hx_open / hx_send <bytes> / hx_read [timeout] / hx_close: one connection to
# the gateway. hx_send writes printf %b escapes in one write (through a file;
# HX_FILE: send that file instead). hx_read reads one response and sets
# HX_STATUS (the status code; "close" when the connection ended without a
# response; "timeout" when nothing came), HX_HEAD (CRs stripped) and HX_BODY
# (Content-Length bytes).
hx_open() { exec {HX_FD}<>"/dev/tcp/127.0.0.1/$GW_PORT"; }
hx_close() { exec {HX_FD}<&-; }
hx_send() {
    local f=$GW_TMP/hx.req
    if [ -n "${HX_FILE:-}" ]; then f=$HX_FILE; else printf '%b' "$1" >"$f"; fi
    { cat "$f" >&"$HX_FD"; } 2>/dev/null || true
}
hx_read() {
    local t=${1:-3} line len=0 rc=0
    HX_STATUS=close HX_HEAD='' HX_BODY=
    IFS= read -r -t "$t" line <&"$HX_FD" || rc=$?
    if [ "$rc" -gt 128 ]; then
        HX_STATUS=timeout
        return 0
    fi
    line=${line%$'\r'}
    [ -n "$line" ] || return 0
    if ! [[ $line =~ ^HTTP/1\.[01]\ ([0-9]{3}) ]]; then
        HX_STATUS="junk: $line"
        return 0
    fi
    HX_STATUS=${BASH_REMATCH[1]}
    while IFS= read -r -t "$t" line <&"$HX_FD"; do
        line=${line%$'\r'}
        [ -n "$line" ] || break
        HX_HEAD+=$line$'\n'
        if [[ ${line,,} =~ ^content-length:\ *([0-9]+) ]]; then len=${BASH_REMATCH[1]}; fi
    done
    if [ "$len" -gt 0 ]; then IFS= read -r -N "$len" -t "$t" HX_BODY <&"$HX_FD" || true; fi
    if [[ ${HX_HEAD,,} == *"transfer-encoding: chunked"* ]]; then
        local chunk
        while IFS= read -r -t "$t" line <&"$HX_FD"; do
            len=$((16#${line%$'\r'}))
            [ "$len" -gt 0 ] || break
            IFS= read -r -N "$len" -t "$t" chunk <&"$HX_FD" || break
            HX_BODY+=$chunk
            IFS= read -r -t "$t" line <&"$HX_FD" || break
        done
        IFS= read -r -t "$t" line <&"$HX_FD" || true
    fi
    return 0
}
# hx_closed [timeout]: the gateway closes the connection (nothing more comes).
hx_closed() {
    local line rc=0
    IFS= read -r -t "${1:-2}" line <&"$HX_FD" || rc=$?
    [ "$rc" = 1 ] && [ -z "$line" ]
}
# hx <bytes> [timeout]: one request on a fresh connection.
hx() {
    hx_open || { HX_STATUS=noconnect; return 0; }
    hx_send "$1"
    hx_read "${2:-3}"
    hx_close
}

# refused <name> <status regex> <body regex|''> <bytes> [timeout]: one case.
refused() {
    t_begin "$1"
    hx "$4" "${5:-3}"
    assert_match "^($2)\$" "$HX_STATUS" "status (or close)"
    [ -z "$3" ] || assert_match "$3" "$HX_BODY" "the body names the problem"
    nothing_reached
    t_end
}
# HAProxy's parser answers with its built-in page (HAProxy 2.6 takes no
# errorfile for errors its HTTP/1 parser finds before a stream exists).
MALFORMED='<h1>400 Bad request</h1>'

# --- 1. request lines ------------------------------------------------------------
refused "HTTP/3.0: 505" 505 'HTTP/1.1 and HTTP/1.0 only' "GET http://$O/ HTTP/3.0\r\n$H$CL\r\n"
refused "HTTP/2.0 in an HTTP/1 request line: 505" 505 'HTTP/1.1 and HTTP/1.0 only' "GET http://$O/ HTTP/2.0\r\n$H$CL\r\n"
refused "HTTP/1.2: 505" 505 'HTTP/1.1 and HTTP/1.0 only' "GET http://$O/ HTTP/1.2\r\n$H$CL\r\n"
refused "HTTP/0.9 (no version): 400" 400 "$MALFORMED" "GET http://$O/\r\n\r\n"
refused "HTTP/11 (no dot): 400" 400 "$MALFORMED" "GET http://$O/ HTTP/11\r\n$H$CL\r\n"
refused "lower-case http/1.1: 400" 400 "$MALFORMED" "GET http://$O/ http/1.1\r\n$H$CL\r\n"
refused "a fourth word in the request line: 400" 400 "$MALFORMED" "GET http://$O/ HTTP/1.1 x\r\n$H$CL\r\n"
refused "a method with a forbidden character: 400" 400 "$MALFORMED" "G(T http://$O/ HTTP/1.1\r\n$H$CL\r\n"
refused "an empty method: 400" 400 "$MALFORMED" " http://$O/ HTTP/1.1\r\n$H$CL\r\n"
refused "a NUL in the request line: 400" 400 "$MALFORMED" "GET http://$O/a\x00b HTTP/1.1\r\n$H$CL\r\n"
refused "a space inside the URI: 400" 400 "$MALFORMED" "GET http://$O/a b HTTP/1.1\r\n$H$CL\r\n"
refused "a fragment in the URI: 400" 400 "$MALFORMED" "GET http://$O/a#frag HTTP/1.1\r\n$H$CL\r\n"
refused "an 8-bit byte in the URI: 400" 400 "$MALFORMED" "GET http://$O/a\xe9 HTTP/1.1\r\n$H$CL\r\n"
refused "a backslash in the URI: 400" 400 "$MALFORMED" "GET http://$O\\\\a HTTP/1.1\r\n$H$CL\r\n"
refused "origin form (not a proxy request): 400" 400 'not a proxy request' "GET /a HTTP/1.1\r\n$H$CL\r\n"
refused "asterisk form (OPTIONS *): 400" 400 'not a proxy request' "OPTIONS * HTTP/1.1\r\n$H$CL\r\n"
refused "https:// in absolute form (not CONNECT): 400" 400 'not a proxy request' "GET https://$O/ HTTP/1.1\r\n$H$CL\r\n"
refused "ftp:// in absolute form: 400" 400 'not a proxy request' "GET ftp://$O/ HTTP/1.1\r\n$H$CL\r\n"

# --- 2. absolute URIs -------------------------------------------------------------
refused "userinfo user:password@ in the URI: 400" 400 'credentials \(userinfo@\)' "GET http://u:pw@$O/ HTTP/1.1\r\n$H$CL\r\n"
refused "userinfo user@ in the URI: 400" 400 'credentials \(userinfo@\)' "GET http://u@$O/ HTTP/1.1\r\n$H$CL\r\n"
refused "userinfo naming the upstream (http://$O@127.0.0.1:$UP_PORT_MIN/): 400" 400 "$MALFORMED|credentials \\(userinfo@\\)" "GET http://$O@127.0.0.1:$UP_PORT_MIN/ HTTP/1.1\r\n$H$CL\r\n"
refused "userinfo with an encoded @ (u%40x:p@): 400" 400 'credentials \(userinfo@\)' "GET http://u%40x:p@$O/ HTTP/1.1\r\n$H$CL\r\n"
refused "no host (http:///a): 400" 400 'malformed host or port' "GET http:///a HTTP/1.1\r\n$H$CL\r\n"
refused "port 0 in the URI: 400" 400 'malformed host or port' "GET http://127.0.0.1:0/ HTTP/1.1\r\nHost: 127.0.0.1:0\r\n$PA$CL\r\n"
refused "port 65536 in the URI: 400" 400 "$MALFORMED|malformed host or port" "GET http://127.0.0.1:65536/ HTTP/1.1\r\nHost: 127.0.0.1:65536\r\n$PA$CL\r\n"
refused "an empty port (http://h:/): 400" 400 "$MALFORMED|malformed host or port" "GET http://127.0.0.1:/ HTTP/1.1\r\n$H$CL\r\n"
refused "a port with a letter: 400" 400 "$MALFORMED|malformed host or port" "GET http://127.0.0.1:8o/ HTTP/1.1\r\n$H$CL\r\n"
refused "a comma in the host: 400" 400 'malformed host or port' "GET http://a,b/ HTTP/1.1\r\nHost: a,b\r\n$PA$CL\r\n"
refused "a percent-encoded slash in the host: 400" 400 'malformed host or port' "GET http://127.0.0.1%2f/ HTTP/1.1\r\nHost: 127.0.0.1%2f\r\n$PA$CL\r\n"
refused "an IPv6 address without brackets: 400" 400 "$MALFORMED|malformed host or port" "GET http://::1/ HTTP/1.1\r\n$H$CL\r\n"
refused "a query without a path (http://h?x): 400" 400 "$MALFORMED|malformed host or port" "GET http://$O?x HTTP/1.1\r\n$H$CL\r\n"
refused "Host differs from the URI's authority: 400" 400 "$MALFORMED" "GET http://$O/ HTTP/1.1\r\nHost: evil.example\r\n$PA$CL\r\n"

# --- 3. CONNECT targets -------------------------------------------------------------
C_BAD='CONNECT needs a host:port target'
connect_refused() { # <name> <target> [body regex]
    refused "CONNECT $1: 400" 400 "${3:-$C_BAD}" "CONNECT $2 HTTP/1.1\r\nHost: $2\r\n$PA\r\n"
}
connect_refused "to an absolute URI" "http://$O/" "$MALFORMED|$C_BAD"
connect_refused "without a port" 127.0.0.1 "$MALFORMED|$C_BAD"
connect_refused "to port 0" 127.0.0.1:0
connect_refused "to port 65536" 127.0.0.1:65536
connect_refused "to port 99999999999" 127.0.0.1:99999999999
connect_refused "with an empty port" 127.0.0.1: "$MALFORMED|$C_BAD"
connect_refused "with userinfo" "u:pw@$O" "$MALFORMED|credentials \\(userinfo@\\)"
connect_refused "to an origin-form target" /a "$MALFORMED|$C_BAD"
connect_refused "to *" '*' "$MALFORMED|$C_BAD"
connect_refused "to host:port/path" "$O/a" "$MALFORMED|$C_BAD"
connect_refused "to a host with a space-free comma" "a,b:443"
refused "CONNECT with a Content-Length body: 400" 400 'CONNECT request has no body' "CONNECT $O HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nhello"
refused "CONNECT with a chunked body: 400" 400 'CONNECT request has no body' "CONNECT $O HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"

# --- 4. loops to the gateway itself ----------------------------------------------------
LOOP='the target is this gateway'
connect_refused "to the gateway (127.0.0.1:$GW_PORT)" "127.0.0.1:$GW_PORT" "$LOOP"
connect_refused "to the gateway as localhost" "localhost:$GW_PORT" "$LOOP"
connect_refused "to the gateway as [::1]" "[::1]:$GW_PORT" "$LOOP"
connect_refused "to the gateway as 127.1" "127.1:$GW_PORT" "$LOOP"
connect_refused "to the gateway as 2130706433" "2130706433:$GW_PORT" "$LOOP"
connect_refused "to the gateway's PROXY-protocol port" "127.0.0.1:$GW_PROXY_PORT" "$LOOP"
refused "GET to the gateway itself: 400" 400 "$LOOP" "GET http://127.0.0.1:$GW_PORT/ HTTP/1.1\r\nHost: 127.0.0.1:$GW_PORT\r\n$PA$CL\r\n"
refused "GET to the gateway as localhost.: 400" 400 "$LOOP" "GET http://localhost.:$GW_PORT/ HTTP/1.1\r\nHost: localhost.:$GW_PORT\r\n$PA$CL\r\n"
refused "GET to the gateway as 0.0.0.0: 400" 400 "$LOOP" "GET http://0.0.0.0:$GW_PORT/ HTTP/1.1\r\nHost: 0.0.0.0:$GW_PORT\r\n$PA$CL\r\n"

# --- 5. header names and values -----------------------------------------------------------
CTL='control character in a header value'
refused "a NUL in a header value: 400" 400 "$CTL" "GET http://$O/ HTTP/1.1\r\n${H}X-A: a\x00b\r\n$CL\r\n"
refused "a NUL in Proxy-Authorization: 400" 400 "$CTL" "GET http://$O/ HTTP/1.1\r\nHost: $O\r\nProxy-Authorization: Basic $A\x00\r\n$CL\r\n"
refused "a NUL at the end of Host: 400" 400 "$MALFORMED|$CTL" "GET http://$O/ HTTP/1.1\r\nHost: $O\x00\r\n$PA$CL\r\n"
refused "a 0x01 in a header value: 400" 400 "$CTL" "GET http://$O/ HTTP/1.1\r\n${H}X-A: a\x01b\r\n$CL\r\n"
refused "an ESC in a header value: 400" 400 "$CTL" "GET http://$O/ HTTP/1.1\r\n${H}X-A: a\x1b[31mb\r\n$CL\r\n"
refused "a DEL in a header value: 400" 400 "$CTL" "GET http://$O/ HTTP/1.1\r\n${H}X-A: a\x7fb\r\n$CL\r\n"
refused "a bare CR in a header value: 400" 400 "$MALFORMED" "GET http://$O/ HTTP/1.1\r\n${H}X-A: a\rInjected: 1\r\n$CL\r\n"
refused "a space in a header name: 400" 400 "$MALFORMED" "GET http://$O/ HTTP/1.1\r\n${H}X A: b\r\n$CL\r\n"
refused "space before the colon (Transfer-Encoding : chunked): 400" 400 "$MALFORMED" "POST http://$O/echo HTTP/1.1\r\n${H}Transfer-Encoding : chunked\r\n$CL\r\n5\r\nhello\r\n0\r\n\r\n"
refused "a header line without a colon: 400" 400 "$MALFORMED" "GET http://$O/ HTTP/1.1\r\n${H}NoColonHere\r\n$CL\r\n"
refused "an empty header name: 400" 400 "$MALFORMED" "GET http://$O/ HTTP/1.1\r\n$H: b\r\n$CL\r\n"
refused "a NUL in a header name: 400" 400 "$MALFORMED" "GET http://$O/ HTTP/1.1\r\n${H}X\x00A: b\r\n$CL\r\n"
refused "a folded line before the first header: 400" 400 "$MALFORMED" "GET http://$O/ HTTP/1.1\r\n X-A: b\r\n$H$CL\r\n"
refused "two different Host headers: 400" 400 "$MALFORMED" "GET http://$O/ HTTP/1.1\r\n${H}Host: evil.example\r\n$CL\r\n"
refused "HTTP/1.1 without Host: 400" 400 'no Host header' "GET http://$O/ HTTP/1.1\r\n$PA$CL\r\n"
refused "two Proxy-Authorization headers: 400" 400 'more than one Proxy-Authorization' "GET http://$O/ HTTP/1.1\r\n$H$PA$CL\r\n"
refused "two Authorization headers (the fallback credentials): 400" 400 'more than one Authorization' "GET http://$O/ HTTP/1.1\r\nHost: $O\r\nAuthorization: Basic $A\r\nAuthorization: Basic $A\r\n$CL\r\n"

# --- 6. message framing (request smuggling) ---------------------------------------------
refused "HTTP/1.0 with Transfer-Encoding: 400" 400 'Transfer-Encoding in an HTTP/1.0' "POST http://$O/echo HTTP/1.0\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
refused "HTTP/1.0 with Transfer-Encoding and Content-Length: 400" 400 'Transfer-Encoding in an HTTP/1.0' "POST http://$O/echo HTTP/1.0\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
refused "Transfer-Encoding: chunked, gzip (chunked not last): 400" 400 "$MALFORMED" "POST http://$O/echo HTTP/1.1\r\n${H}Transfer-Encoding: chunked, gzip\r\n$CL\r\n5\r\nhello\r\n0\r\n\r\n"
refused "Transfer-Encoding: gzip, chunked (unsupported coding): 4xx" '4[0-9][0-9]' '' "POST http://$O/echo HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n$CL\r\n5\r\nhello\r\n0\r\n\r\n"
refused "Transfer-Encoding: xchunked: 400" 400 "$MALFORMED" "POST http://$O/echo HTTP/1.1\r\n${H}Transfer-Encoding: xchunked\r\n$CL\r\n5\r\nhello\r\n0\r\n\r\n"
refused "Transfer-Encoding: identity: 400" 400 "$MALFORMED" "POST http://$O/echo HTTP/1.1\r\n${H}Transfer-Encoding: identity\r\nContent-Length: 5\r\n$CL\r\nhello"
refused "Transfer-Encoding twice: 400" 400 "$MALFORMED" "POST http://$O/echo HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n$CL\r\n5\r\nhello\r\n0\r\n\r\n"
refused "two different Content-Lengths: 400" 400 "$MALFORMED" "POST http://$O/echo HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 6\r\n$CL\r\nhello!"
refused "Content-Length: -5: 400" 400 "$MALFORMED" "POST http://$O/echo HTTP/1.1\r\n${H}Content-Length: -5\r\n$CL\r\nhello"
refused "Content-Length: +5: 400" 400 "$MALFORMED" "POST http://$O/echo HTTP/1.1\r\n${H}Content-Length: +5\r\n$CL\r\nhello"
refused "Content-Length: 0x5: 400" 400 "$MALFORMED" "POST http://$O/echo HTTP/1.1\r\n${H}Content-Length: 0x5\r\n$CL\r\nhello"
refused "Content-Length: 5 5: 400" 400 "$MALFORMED" "POST http://$O/echo HTTP/1.1\r\n${H}Content-Length: 5 5\r\n$CL\r\nhello"
refused "Content-Length over 2^64: 400" 400 "$MALFORMED" "POST http://$O/echo HTTP/1.1\r\n${H}Content-Length: 99999999999999999999999\r\n$CL\r\nhello"
refused "a chunk size that is not hex: 400" 400 "$MALFORMED" "POST http://$O/echo HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n$CL\r\nzz\r\nhello\r\n0\r\n\r\n"
refused "a chunk longer than its size: 400" 400 "$MALFORMED" "POST http://$O/echo HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n$CL\r\n5\r\nhelloXX\r\n0\r\n\r\n"
refused "a chunk size over 2^64: 400" 400 "$MALFORMED" "POST http://$O/echo HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n$CL\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n"

# --- 7. oversize ----------------------------------------------------------------------------------
big() { head -c "$1" /dev/zero | tr '\0' "${2:-a}"; }
refused "a 20 KB URI: 414 or 400, or a close" '400|414|close' '' "GET http://$O/$(big 20000) HTTP/1.1\r\n$H$CL\r\n"
refused "a 20 KB method: 400 or a close" '400|close' '' "$(big 20000 G) http://$O/ HTTP/1.1\r\n$H$CL\r\n"
refused "a 20 KB header value: 400 or a close" '400|close' '' "GET http://$O/ HTTP/1.1\r\n${H}X-A: $(big 20000)\r\n$CL\r\n"
refused "a 20 KB header name: 400 or a close" '400|close' '' "GET http://$O/ HTTP/1.1\r\n${H}X$(big 20000 A): b\r\n$CL\r\n"
many=$(for i in $(seq 150); do printf 'X-H%d: v\\r\\n' "$i"; done)
refused "150 header lines (over tune.http.maxhdr): 400" 400 "$MALFORMED" "GET http://$O/ HTTP/1.1\r\n$H$many$CL\r\n"
many=$(for i in $(seq 90); do printf 'X-H%d: %s\\r\\n' "$i" "$(big 200)"; done)
refused "18 KB of headers in 90 lines: 400 or a close" '400|close' '' "GET http://$O/ HTTP/1.1\r\n$H$many$CL\r\n"
refused "a 20 KB Proxy-Authorization: 400 or a close" '400|close' '' "GET http://$O/ HTTP/1.1\r\nHost: $O\r\nProxy-Authorization: Basic $(big 20000 Q)\r\n$CL\r\n"
refused "a 20 KB chunk-size line: 400 or a close" '400|close' '' "POST http://$O/echo HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n$CL\r\n$(big 20000 0)5\r\nhello\r\n0\r\n\r\n"

# --- 8. credentials that try to reach the upstream credential or host -----------------------------
creds() { # <name> <status regex> <user:password> [body regex]
    refused "credentials $1: $2" "$2" "${4:-}" "GET http://$O/ HTTP/1.1\r\nHost: $O\r\nProxy-Authorization: Basic $(gw_b64 "$3")\r\n$CL\r\n"
}
creds "with @host:port in the username" '400|407' "myuser-session-a@127.0.0.1:$UP_PORT_MIN:mypassword"
creds "with a second :password@host in the password" 407 "myuser:mypassword@127.0.0.1:$UP_PORT_MIN"
creds "with a CRLF and a header in the username" '400|407' "$(printf 'myuser\r\nX-Injected: 1'):mypassword"
creds "with a NUL in the username" '400|407' "$(printf 'myuser-country-DE\001x'):mypassword"
creds "with a / in the session id" 400 "myuser-session-a/b:mypassword"
creds "with a % in the session id" 400 "myuser-session-a%40b:mypassword"
creds "with a country that is not a code" 400 "myuser-country-DE@evil:mypassword"
creds "with a sessTime that overflows" 400 "myuser-session-abc-sessTime-99999999999999999999:mypassword"
creds "with the provider's own credential as password" 407 "myuser:demo-global-pass"
refused "credentials: not base64: 407" 407 '' "GET http://$O/ HTTP/1.1\r\nHost: $O\r\nProxy-Authorization: Basic %%%%\r\n$CL\r\n"
refused "credentials: Bearer scheme: 407" 407 '' "GET http://$O/ HTTP/1.1\r\nHost: $O\r\nProxy-Authorization: Bearer $A\r\n$CL\r\n"

# --- 9. pipelining ---------------------------------------------------------------------------------
t_begin "three hostile requests pipelined in one write: the first refused, then the connection closes"
hx_open
hx_send "GET http://u:pw@$O/ HTTP/1.1\r\n$H\r\nGET http://$O/ HTTP/1.1\r\n${H}X-A: a\x00b\r\n\r\nGET http://$O/ HTTP/3.0\r\n$H\r\n"
codes=
for _ in 1 2 3; do
    hx_read 3
    codes+="$HX_STATUS "
done
hx_close
assert_eq "400 close close " "$codes" "the three statuses"
nothing_reached
t_end

t_begin "a refused HTTP/1.0+Transfer-Encoding request smuggling a credentialed request in its body: 400, closed"
hx_open
hx_send "POST http://$O/echo HTTP/1.0\r\n${H}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET http://$O/smuggled HTTP/1.1\r\n$H\r\n"
hx_read 3
assert_eq 400 "$HX_STATUS" "status"
assert_ok "the gateway closes the connection" hx_closed 3
hx_close
nothing_reached
t_end

t_begin "a refused CONNECT smuggling a credentialed request as its body: 400, the body is not a request"
hx_open
body="GET http://$O/smuggled HTTP/1.1\r\n$H\r\n"
hx_send "CONNECT $O HTTP/1.1\r\n${H}Content-Length: $(printf '%b' "$body" | wc -c)\r\n\r\n$body"
hx_read 3
assert_eq 400 "$HX_STATUS" "status"
hx_read 2
assert_match '^(close|timeout)$' "$HX_STATUS" "no second response"
hx_close
nothing_reached
t_end

t_begin "garbage after a refused request on the same connection: refused, then closed"
hx_open
hx_send "GET http://$O/ HTTP/3.0\r\n$H\r\n\x00\x01\x02garbage\r\n\r\n"
hx_read 3
s1=$HX_STATUS
hx_read 3
hx_close
assert_eq "505 close" "$s1 $HX_STATUS" "statuses"
nothing_reached
t_end

# --- 10. slow clients ------------------------------------------------------------------------------
# Each opens a connection and never completes its head; HAProxy's
# "timeout http-request" (10 s) answers 408 and closes. All run at once.
t_begin "slow clients: heads that never complete get 408 after timeout http-request"
slow_parts=(
    "GET http://$O/ HTTP/1.1\r\n"
    "GET http://$O/ HTTP/1.1\r\n$H"
    "GET http://$O/"
    "CONNECT $O HTTP/1.1\r\n$H"
    "POST http://$O/echo HTTP/1.1\r\n${H}X-A: b"
)
slow_fds=()
for p in "${slow_parts[@]}"; do
    hx_open && hx_send "$p" && slow_fds+=("$HX_FD")
done
# one more, trickling a byte every 0.5 s: the deadline is for the whole head
hx_open
drip_fd=$HX_FD
(
    s="GET http://$O/ HTTP/1.1\r\n${H}X-Drip: $(big 40)\r\n\r\n"
    s=$(printf '%b' "$s")
    for ((i = 0; i < ${#s}; i++)); do
        { printf '%s' "${s:i:1}" >&"$drip_fd"; } 2>/dev/null || break
        sleep 0.5
    done
) &
drip=$!
sleep 11
codes=
for HX_FD in "${slow_fds[@]}" "$drip_fd"; do
    hx_read 3
    codes+="$HX_STATUS "
    hx_close
done
kill "$drip" 2>/dev/null
wait "$drip" 2>/dev/null
assert_eq "408 408 408 408 408 408 " "$codes" "statuses of the six slow clients"
assert_match '<h1>408 Request Time-out</h1>' "$HX_BODY" "HAProxy's page names the problem"
nothing_reached
t_end

# --- 11. forwarded, normalised: what the RFCs allow still works ------------------------------------
# Each reaches the stand-in once, in a clean form.
forwarded() { # <name> <bytes> <origin body regex>
    t_begin "forwarded: $1"
    hx "$2" 5
    assert_eq 200 "$HX_STATUS" "status"
    [ -z "${3:-}" ] || assert_match "$3" "$HX_BODY" "what the origin received"
    reached_once
    t_end
}
forwarded "WebDAV PROPFIND (an extension method)" "PROPFIND http://$O/dav HTTP/1.1\r\n$H$CL\r\n" '^PROPFIND /dav HTTP/1.1'
forwarded "an unregistered method in lower case" "purge http://$O/x HTTP/1.1\r\n$H$CL\r\n" '^purge /x HTTP/1.1'
forwarded "an @ in the query (not userinfo)" "GET http://$O/q?to=a@b HTTP/1.1\r\n$H$CL\r\n" '^GET /q\?to=a@b HTTP/1.1'
forwarded "HTAB and obs-text (8-bit) in a header value" "GET http://$O/t HTTP/1.1\r\n${H}X-A: a\tb\xc3\xa9\r\n$CL\r\n" '[xX]-[aA]: a'$'\t''b'
forwarded "obs-fold, replaced by spaces (RFC 9112 5.2)" "GET http://$O/f HTTP/1.1\r\n${H}X-Fold: a\r\n b\r\n$CL\r\n" '[xX]-[fF]old: a +b'
forwarded "HTTP/1.0 without Host" "GET http://$O/h10 HTTP/1.0\r\n$PA\r\n" '^GET /h10 HTTP/1.'
forwarded "Content-Length: 5, 5 (one value, RFC 9110 8.6)" "POST http://$O/echo HTTP/1.1\r\n${H}Content-Length: 5, 5\r\n$CL\r\nhello" '^hello$'
# HAProxy drops the Content-Length before any rule sees it and forwards the
# request framed by its chunked encoding alone (RFC 9112 6.3 allows that);
# what follows the last chunk is never part of it: HAProxy closes the
# connection (RFC 9112 6.3) or, at worst, takes it as a request of its own,
# judged on its own credentials (none here: 407).
t_begin "forwarded: Content-Length with chunked, by the chunked framing only; what follows is its own request"
hx_open
hx_send "POST http://$O/echo HTTP/1.1\r\n${H}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET http://$O/smuggled HTTP/1.1\r\nHost: $O\r\n\r\n"
hx_read 5
assert_eq 200 "$HX_STATUS" "status"
assert_eq hello "$HX_BODY" "the origin got the chunked body"
hx_read 3
assert_match '^(close|407)$' "$HX_STATUS" "after it: the connection closes (or the tail is a request without credentials)"
hx_close
reached_once
assert_eq "" "$(grep smuggled "$UP_RECORD")" "the tail never reached the stand-in"
t_end

# --- billing -------------------------------------------------------------------------------------------
t_begin "only the $FORWARDED forwarded controls are billed"
wait_until 10 bash -c "[ \"\$(redis-cli -p $REDIS_PORT LLEN traffic:logs)\" -ge $FORWARDED ]"
sleep 1
assert_eq "$FORWARDED" "$(redis_gw LLEN traffic:logs)" "records on traffic:logs"
t_end

t_begin "no sanitizer report in the agent's log"
assert_eq "" "$(grep -E 'AddressSanitizer|runtime error:|LeakSanitizer' "$GW_TMP/agent.log" | head -3)" "sanitizer findings"
t_end

t_summary
