#!/usr/bin/env bash
# t_spop_protocol.sh: the agent's side of SPOP 2.0, byte for byte, against the
# real agent ($GW_AGENT, an ASan+UBSan build) driven by tests/tools/spop-client
# playing HAProxy: the handshake, every typed value's round trip, pipelined
# answers in any order, each protocol error's DISCONNECT status, resets, and a
# graceful SIGTERM. Ends by checking that no agent logged a sanitizer report.
. "$(dirname "${BASH_SOURCE[0]}")/../lib/services.sh"

svc_init || { echo "0 passed, 1 failed"; exit 1; }

CLIENT=$GW_ROOT/tests/tools/spop-client
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

for bin in "$GW_AGENT" "$CLIENT"; do
    [ -x "$bin" ] || t_abort "$bin missing: run 'make all build/asan/gw-agent'"
done

# --- helpers ----------------------------------------------------------------------

# spop <port> <client args...>: runs the client; sets `out` to its stdout and
# RC to its exit status. Its stderr goes to $GW_TMP/client.log (shown when a
# case fails).
spop() {
    local port=$1
    shift
    printf -- '---- spop-client %s\n' "$*" >>"$GW_TMP/client.log"
    out=$("$CLIENT" --connect "127.0.0.1:$port" "$@" 2>>"$GW_TMP/client.log")
    RC=$?
}

lines() { printf '%s\n' "$@"; }

# Hex encoders for hand-made frames (SPOE.txt 3.1, 3.2).
varint() { # HAProxy's varint of an integer, as hex
    local v=$1 out
    if [ "$v" -lt 240 ]; then
        printf '%02x' "$v"
        return
    fi
    out=$(printf '%02x' $(((v & 0xff) | 0xf0)))
    v=$(((v - 240) >> 4))
    while [ "$v" -ge 128 ]; do
        out+=$(printf '%02x' $(((v & 0xff) | 0x80)))
        v=$(((v - 128) >> 7))
    done
    printf '%s%02x' "$out" "$v"
}
str() { # length-prefixed string
    varint "${#1}"
    printf '%s' "$1" | od -An -v -tx1 | tr -d ' \n'
}
# frame <type> <flags> <stream-id> <frame-id> [payload hex...]: a whole frame.
frame() {
    local body
    body=$(printf '%02x%08x' "$1" "$2")$(varint "$3")$(varint "$4")$(printf '%s' "${@:5}" | tr -d ' ')
    printf '%08x%s' $((${#body} / 2)) "$body"
}
# A NOTIFY payload: message "m" with one argument x = STRING $1.
msg_x() { printf '%s01%s08%s' "$(str m)" "$(str x)" "$(str "$1")"; }
# HAPROXY-DISCONNECT, status 0.
BYE=$(frame 2 1 0 0 "$(str status-code)03$(varint 0)$(str message)08$(str bye)")

# --- agents -------------------------------------------------------------------------

start_agent() { # <name> <agent args...>: sets PORT
    local name=$1
    shift
    PORT=$(free_port) || t_abort "no free port"
    start_bg "$name" "$GW_AGENT" --handler echo --listen "127.0.0.1:$PORT" "$@" || t_abort "$name did not start"
}
start_agent agent --threads 2 --log-level info
A=$PORT
start_agent agent-small --threads 1 --max-frame-size 4096
PORT_agent_small=$PORT
start_agent agent-delay --threads 1 --echo-delay-ms 100
PORT_agent_delay=$PORT
start_agent agent-term --threads 1 --echo-delay-ms 700 --shutdown-timeout 10
PORT_agent_term=$PORT
# its own agent: a crash there must not take the other cases down with it
start_agent agent-long --threads 1
PORT_agent_long=$PORT
for p in "$A" "$PORT_agent_small" "$PORT_agent_delay" "$PORT_agent_term" "$PORT_agent_long"; do
    wait_port "$p" 20 || t_abort "an agent does not listen on port $p"
done

# --- handshake ----------------------------------------------------------------------

t_begin "HELLO: version 2.0, capabilities exactly pipelining, max-frame-size 16380"
spop "$A" hello
assert_eq 0 "$RC" "exit status"
assert_eq "$(lines version=2.0 max-frame-size=16380 capabilities=pipelining \
    'disconnect status=0 message=bye')" "$out" "AGENT-HELLO fields, then DISCONNECT"

t_begin "HELLO: max-frame-size is min(agent's, HAProxy's)"
spop "$A" hello --max-frame-size 1000
assert_match $'\nmax-frame-size=1000\n' "$out" "HAProxy's 1000 < agent's 16380"
spop "$PORT_agent_small" hello
assert_match $'\nmax-frame-size=4096\n' "$out" "agent's 4096 < HAProxy's 16380"
spop "$PORT_agent_small" hello --max-frame-size 256
assert_match $'\nmax-frame-size=256\n' "$out" "the smallest legal size, 256"

t_begin "HELLO: health check answered, then the agent closes"
spop "$A" hello --healthcheck
assert_eq 0 "$RC" "exit status"
assert_eq "$(lines version=2.0 max-frame-size=16380 capabilities=pipelining agent-closed=yes)" \
    "$out" "health-check answer"

t_begin "HELLO errors: missing version (5), frame size below 256 (9), second HELLO (4)"
no_vsn=$(frame 1 1 0 0 "$(str max-frame-size)03$(varint 16380)$(str capabilities)08$(str pipelining)")
spop "$A" raw --no-hello "$no_vsn"
assert_eq "$(lines 'disconnect status=5 message=version value not found' closed)" "$out" \
    "HELLO without supported-versions"
small=$(frame 1 1 0 0 "$(str supported-versions)08$(str 2.0)$(str max-frame-size)03$(varint 100)$(str capabilities)08$(str pipelining)")
spop "$A" raw --no-hello "$small"
assert_eq "$(lines 'disconnect status=9 message=max-frame-size too big or too small' closed)" \
    "$out" "HELLO with max-frame-size 100"
spop "$A" raw "$small"
assert_eq "$(lines 'disconnect status=4 message=second HAPROXY-HELLO' closed)" "$out" \
    "a HELLO after the handshake"

# --- NOTIFY / ACK -------------------------------------------------------------------

t_begin "NOTIFY: every type makes the round trip"
spop "$A" notify gw-req \
    s=str:hello e=str: w='str:a b\c' b=bin:00ff10 eb=bin: \
    i32=int32:-2147483648 i32x=int32:2147483647 u32=uint32:4294967295 \
    i64=int64:-9223372036854775808 u64=uint64:18446744073709551615 small=uint32:239 \
    t=bool:true f=bool:false v4=ipv4:10.1.2.3 v6=ipv6:2001:db8::ff00:42:8329 n=null:
assert_eq 0 "$RC" "exit status"
assert_eq "$(lines \
    'set-var txn msg = str:gw-req' \
    'set-var txn arg_s = str:hello' \
    'set-var txn arg_e = str:' \
    'set-var txn arg_w = str:a b\x5cc' \
    'set-var txn arg_b = bin:00ff10' \
    'set-var txn arg_eb = bin:' \
    'set-var txn arg_i32 = int32:-2147483648' \
    'set-var txn arg_i32x = int32:2147483647' \
    'set-var txn arg_u32 = uint32:4294967295' \
    'set-var txn arg_i64 = int64:-9223372036854775808' \
    'set-var txn arg_u64 = uint64:18446744073709551615' \
    'set-var txn arg_small = uint32:239' \
    'set-var txn arg_t = bool:true' \
    'set-var txn arg_f = bool:false' \
    'set-var txn arg_v4 = ipv4:10.1.2.3' \
    'set-var txn arg_v6 = ipv6:2001:db8::ff00:42:8329' \
    'set-var txn arg_n = null:' \
    'disconnect status=0 message=bye')" "$out" "ACK actions"

t_begin "NOTIFY: large ids are echoed; a NOTIFY without messages gets one action"
spop "$A" notify --stream-id 1099511627776 --frame-id 4294967297 m x=str:y
assert_eq 0 "$RC" "exit status (the client checks the echoed ids)"
assert_match 'set-var txn arg_x = str:y' "$out" "answer"
spop "$A" notify --empty
assert_eq 0 "$RC" "exit status"
assert_eq "$(lines 'unset-var txn noop' 'disconnect status=0 message=bye')" "$out" \
    "ACK of an empty NOTIFY"

t_begin "NOTIFY: argument names of 64 bytes and more are answered (echo handler)"
for len in 63 64 100; do
    spop "$PORT_agent_long" notify m "$(printf 'n%.0s' $(seq "$len"))=str:v"
    assert_eq 0 "$RC" "exit status, $len-byte name"
    assert_match $'\nset-var txn arg_n{60,100} = str:v\n' "$out" "answer, $len-byte name"
done
assert_ok "agent-long still running" bg_alive agent-long

t_begin "NOTIFY of exactly max-frame-size accepted; its oversized ACK becomes error=3"
# Announce 1024: header 7 + payload 8 + 1009 string bytes = 1024 bytes.
big=$(printf 'a%.0s' $(seq 1009))
f1024=$(frame 3 1 1 1 "$(msg_x "$big")")
assert_eq 1028 $((${#f1024} / 2)) "frame bytes including the length prefix"
spop "$A" raw --max-frame-size 1024 "$f1024" "$BYE"
assert_eq "$(lines 'ack stream-id=1 frame-id=1 actions=1' 'set-var txn error = uint32:3' \
    'disconnect status=0 message=bye' closed)" "$out" "answer"

t_begin "pipelining: 200 frames in flight, answers in any order, every id matched"
spop "$PORT_agent_delay" notify --frames 200 m x=str:y
assert_eq 0 "$RC" "exit status (every ACK matched a frame in flight)"
assert_match $'acks=200 reordered=[0-9]+\n' "$out" "all answered"
# Three connections at once, plus the load generator: ids checked per frame.
pids=()
for k in 1 2 3; do
    "$CLIENT" --connect "127.0.0.1:$PORT_agent_delay" notify --frames 100 m x=str:$k \
        >"$GW_TMP/pipe$k.out" 2>>"$GW_TMP/client.log" &
    pids+=($!)
done
spop "$PORT_agent_delay" bench --conns 4 --pipeline 32 --duration 1
bench=$out
for k in 1 2 3; do
    wait "${pids[k - 1]}"
    assert_eq 0 "$?" "concurrent connection $k exit status"
    assert_match "arg_x = str:$k" "$(cat "$GW_TMP/pipe$k.out")" "connection $k got its own answer"
done
assert_match '^frames=[1-9][0-9]* .* errors=0 ' "$bench" "bench against the delayed agent"

# --- protocol errors ------------------------------------------------------------------

t_begin "NOTIFY before HELLO -> DISCONNECT status 4"
spop "$A" raw --no-hello "$(frame 3 1 1 1 "$(msg_x y)")"
assert_eq "$(lines 'disconnect status=4 message=NOTIFY before HELLO' closed)" "$out" "answer"

t_begin "frame larger than max-frame-size -> DISCONNECT status 3"
# The length prefix alone decides: no payload follows.
spop "$A" raw 00003ffd 03 00000001 01 01
assert_eq "$(lines 'disconnect status=3 message=frame is too big' closed)" "$out" \
    "16381 bytes against 16380"
spop "$A" raw --max-frame-size 1024 00000401 03 00000001 01 01
assert_eq "$(lines 'disconnect status=3 message=frame is too big' closed)" "$out" \
    "1025 bytes against the negotiated 1024"

t_begin "fragmented frame (FIN clear) -> DISCONNECT status 10"
spop "$A" raw "$(frame 3 0 1 1 "$(msg_x y)")"
assert_eq "$(lines 'disconnect status=10 message=payload fragmentation is not supported' closed)" \
    "$out" "answer"

t_begin "unknown frame type skipped; the connection still answers"
spop "$A" raw "$(frame 99 1 0 0 0102)" "$(frame 200 1 7 7)" "$(frame 3 1 5 9 "$(msg_x y)")" "$BYE"
assert_eq "$(lines 'ack stream-id=5 frame-id=9 actions=2' 'set-var txn msg = str:m' \
    'set-var txn arg_x = str:y' 'disconnect status=0 message=bye' closed)" "$out" "answer"

t_begin "truncated or garbage payload -> DISCONNECT status 4"
# message name announces 10 bytes, 1 follows
spop "$A" raw "$(frame 3 1 1 1 0a6d)"
assert_eq "$(lines 'disconnect status=4 message=malformed NOTIFY' closed)" "$out" "truncated name"
# argument of reserved type 15
spop "$A" raw "$(frame 3 1 1 1 "$(str m)01$(str x)0f")"
assert_eq "$(lines 'disconnect status=4 message=malformed NOTIFY' closed)" "$out" "reserved type"
# the string's length runs past the frame
spop "$A" raw "$(frame 3 1 1 1 "$(str m)01$(str x)08ff01")"
assert_eq "$(lines 'disconnect status=4 message=malformed NOTIFY' closed)" "$out" "string length"
# a frame too short for its header, and a stream-id varint cut short
spop "$A" raw 00000005 0102030405
assert_eq "$(lines 'disconnect status=4 message=invalid frame received' closed)" "$out" "5-byte frame"
spop "$A" raw 00000007 03 00000001 ff ff
assert_eq "$(lines 'disconnect status=4 message=invalid frame received' closed)" "$out" "cut varint"
# an agent frame type sent to the agent
spop "$A" raw "$(frame 103 1 1 1)"
assert_eq "$(lines 'disconnect status=4 message=agent frame type sent to the agent' closed)" \
    "$out" "ACK sent to the agent"

t_begin "HAPROXY-DISCONNECT -> AGENT-DISCONNECT status 0, then close"
spop "$A" raw "$BYE"
assert_eq "$(lines 'disconnect status=0 message=bye' closed)" "$out" "answer"

t_begin "abrupt client resets do not disturb other connections"
"$CLIENT" --connect "127.0.0.1:$PORT_agent_delay" notify --frames 50 m x=str:keep \
    >"$GW_TMP/keep.out" 2>>"$GW_TMP/client.log" &
keep_pid=$!
sleep 0.03
for k in 1 2 3 4 5; do
    # frames in flight when the reset lands: their late answers must be dropped
    spop "$PORT_agent_delay" raw --reset "$(frame 3 1 1 1 "$(msg_x "r$k")")" \
        "$(frame 3 1 2 1 "$(msg_x "r$k")")"
    assert_eq reset-sent "$out" "reset $k"
done
# a reset in the middle of a frame, and one before the HELLO completes
spop "$PORT_agent_delay" raw --reset 00000040 03 00000001 01 01 0000
assert_eq reset-sent "$out" "reset mid-frame"
spop "$A" raw --no-hello --reset 00000010 01 00000001 00 00
assert_eq reset-sent "$out" "reset mid-HELLO"
wait "$keep_pid"
assert_eq 0 "$?" "the other connection's exit status"
assert_match $'arg_x = str:keep\n.*acks=50 reordered=[0-9]+\ndisconnect status=0 message=bye' \
    "$(cat "$GW_TMP/keep.out")" "the other connection got all 50 answers"
sleep 0.2 # the orphans' timers fire
spop "$PORT_agent_delay" notify m x=str:after
assert_eq 0 "$RC" "a new connection afterwards"
assert_match 'arg_x = str:after' "$out" "answer afterwards"
assert_ok "agent-delay still running" bg_alive agent-delay

# --- graceful stop ----------------------------------------------------------------------

t_begin "SIGTERM with frames in flight: ACKs, then DISCONNECT, then exit 0"
T=$PORT_agent_term
"$CLIENT" --connect "127.0.0.1:$T" notify --frames 10 m x=str:late \
    >"$GW_TMP/term.out" 2>>"$GW_TMP/client.log" &
term_client=$!
sleep 0.3 # frames in flight for another 400 ms
signal_bg agent-term TERM
sleep 0.1
assert_fails "new connections refused while draining" "$CLIENT" --connect "127.0.0.1:$T" hello
wait "$term_client"
assert_eq 0 "$?" "client exit status"
assert_eq "$(lines 'set-var txn msg = str:m' 'set-var txn arg_x = str:late')" \
    "$(head -n 2 "$GW_TMP/term.out")" "the in-flight frames were answered"
assert_match $'acks=10 reordered=[0-9]+\ndisconnect status=0 message=agent shutting down$' \
    "$(cat "$GW_TMP/term.out")" "all 10 ACKs, then the agent's DISCONNECT"
wait_until 10 bash -c "! kill -0 $(bg_pid agent-term) 2>/dev/null"
stop_bg agent-term
assert_eq 0 "$BG_STATUS" "agent exit status"
assert_match 'stopped: ' "$(cat "$GW_TMP/agent-term.log")" "agent logged its stop"

# --- sanitizers -----------------------------------------------------------------------------

t_begin "every agent stops cleanly and logged no ASan/UBSan report"
for name in agent agent-small agent-delay agent-long; do
    stop_bg "$name"
    assert_eq 0 "$BG_STATUS" "$name exit status after SIGTERM"
done
for name in agent agent-small agent-delay agent-term agent-long; do
    report=$(grep -E -m 5 'AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:' \
        "$GW_TMP/$name.log")
    assert_eq "" "$report" "sanitizer report in $name.log"
done

t_summary
