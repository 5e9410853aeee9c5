#!/usr/bin/env bash
# tests/bench/spop.sh: SPOP throughput and latency of the agent on one worker
# thread, next to the load generator's own ceiling.
#
#   bash tests/bench/spop.sh        (or `make bench`, through tests/bench/run.sh)
#
# On loopback, with free ports:
#   (a) ceiling: tests/tools/spop-echo (a no-op agent) driven by spop-client;
#   (b) agent:   agent/gw-agent --handler echo --threads 1, same client run;
#   (a) and (b) alternate REPEAT times and the medians are reported;
#   (c) the same agent with --echo-delay-ms 1 (asynchronous answers): rate and
#       p99 shown for information, not judged against the goal;
#   and one run of each with a deeper pipeline.
# The load is what HAProxy does: a few connections (CONNS) each keeping DEPTH
# NOTIFY frames in flight (HAProxy's max-waiting-frames defaults to 20), one
# realistic `gw-req` message per frame (ip, method, authority, auth, id).
# The agent/echo run on CPU 0 and the client on CPU 1 (taskset) so they do not
# fight over one core. Nothing is asserted: figures are printed, and written to
# build/bench/spop.csv (one row per run plus the medians).
#
# Environment: SPOP_BENCH_SECONDS (per run, default 5), SPOP_BENCH_CONNS (4),
# SPOP_BENCH_PIPELINE (32), SPOP_BENCH_DEEP_PIPELINE (256), SPOP_BENCH_REPEAT
# (3), GW_BENCH_AGENT (default agent/gw-agent: the optimized build).
set -uo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../lib/services.sh"
svc_init || exit 1

CLIENT=$GW_ROOT/tests/tools/spop-client
ECHO=$GW_ROOT/tests/tools/spop-echo
AGENT=${GW_BENCH_AGENT:-$GW_ROOT/agent/gw-agent}
SECS=${SPOP_BENCH_SECONDS:-5}
CONNS=${SPOP_BENCH_CONNS:-4}
DEPTH=${SPOP_BENCH_PIPELINE:-32}
DEEP=${SPOP_BENCH_DEEP_PIPELINE:-256}
REPEAT=${SPOP_BENCH_REPEAT:-3}
GOAL_RATE=300000
GOAL_P99_US=1000
CSV_DIR=$GW_ROOT/build/bench
CSV=$CSV_DIR/spop.csv

for bin in "$CLIENT" "$ECHO" "$AGENT"; do
    if [ ! -x "$bin" ]; then
        echo "spop bench: $bin is missing: run 'make' first" >&2
        exit 1
    fi
done

# Two cores or more: servers on CPU 0, client on CPU 1. One core: no pinning.
ncpu=$(nproc 2>/dev/null || echo 1)
if [ "$ncpu" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
    SERVER_PIN=(taskset -c 0)
    CLIENT_PIN=(taskset -c 1)
    pin_note="agent/echo on CPU 0, client on CPU 1"
else
    SERVER_PIN=()
    CLIENT_PIN=()
    pin_note="one CPU (or no taskset): client and agent share it, figures are pessimistic"
fi

mkdir -p "$CSV_DIR"
echo "target,server,conns,pipeline,run,seconds,frames,rate,p50_us,p99_us,p999_us,max_us,errors" >"$CSV"

# start_server <name> <cmd...>: start pinned on a free port; prints nothing,
# sets PORT. Aborts the benchmark when the server does not come up.
start_server() {
    local name=$1
    shift
    PORT=$(free_port) || exit 1
    start_bg "$name" "${SERVER_PIN[@]}" "$@" --listen "127.0.0.1:$PORT"
    if ! wait_port "$PORT" 10; then
        echo "spop bench: $name did not start:" >&2
        tail -n 20 "$GW_TMP/$name.log" >&2
        exit 1
    fi
}

# field <key> <line>: the value of key=value in the client's result line.
field() {
    local k=$1 line=$2
    sed -n "s/.*\\b$k=\\([^ ]*\\).*/\\1/p" <<<"$line"
}

# bench_run <target> <server> <port> <conns> <depth> <run>: one client run;
# appends a CSV row and sets R_RATE R_P50 R_P99 R_P999 R_MAX R_ERR (NA when the
# client printed no result).
bench_run() {
    local target=$1 server=$2 port=$3 conns=$4 depth=$5 run=$6 out line
    out=$("${CLIENT_PIN[@]}" "$CLIENT" --connect "127.0.0.1:$port" bench --conns "$conns" \
        --pipeline "$depth" --duration "$SECS" 2>"$GW_TMP/client.err")
    line=$(grep '^frames=' <<<"$out" | tail -n 1)
    if [ -z "$line" ]; then
        echo "spop bench: $target run $run printed no result:" >&2
        tail -n 5 "$GW_TMP/client.err" >&2
        R_RATE=NA R_P50=NA R_P99=NA R_P999=NA R_MAX=NA R_ERR=NA
        echo "$target,$server,$conns,$depth,$run,NA,NA,NA,NA,NA,NA,NA,NA" >>"$CSV"
        return 0
    fi
    if [ -s "$GW_TMP/client.err" ]; then
        sed 's/^/    client: /' "$GW_TMP/client.err" | head -n 5 >&2
    fi
    R_RATE=$(field rate "$line")
    R_P50=$(field p50_us "$line")
    R_P99=$(field p99_us "$line")
    R_P999=$(field p999_us "$line")
    R_MAX=$(field max_us "$line")
    R_ERR=$(field errors "$line")
    echo "$target,$server,$conns,$depth,$run,$(field seconds "$line"),$(field frames "$line"),$R_RATE,$R_P50,$R_P99,$R_P999,$R_MAX,$R_ERR" >>"$CSV"
    printf '  %-22s run %s: %s\n' "$target" "$run" "$(grep '^# ' <<<"$out" | sed 's/^# //')"
}

# median <values...>: the middle value (NA ignored; NA when nothing is left).
median() {
    printf '%s\n' "$@" | grep -v '^NA$' | sort -g |
        awk '{v[NR] = $1} END {if (NR == 0) print "NA"; else print v[int((NR + 1) / 2)]}'
}

# sum <values...>
sum() {
    printf '%s\n' "$@" | awk '$1 != "NA" {s += $1} END {print s + 0}'
}

# thousands <n>: 1234567 -> 1,234,567
thousands() {
    awk -v n="$1" 'BEGIN {
        if (n == "NA") { print n; exit }
        s = sprintf("%.0f", n); o = ""
        while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) }
        print s o }'
}

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "NA" || b == "NA" || b == 0) print "-"; else printf "%.2f\n", a / b }'
}

echo "SPOP benchmark: $CONNS connections x $DEPTH frames in flight, ${SECS} s per run; $pin_note"

start_server spop-echo "$ECHO"
ECHO_PORT=$PORT
start_server gw-agent "$AGENT" --handler echo --threads 1 --log-level warn
AGENT_PORT=$PORT
start_server gw-agent-async "$AGENT" --handler echo --threads 1 --echo-delay-ms 1 --log-level warn
ASYNC_PORT=$PORT

e_rate=() e_p50=() e_p99=() e_p999=() e_err=()
a_rate=() a_p50=() a_p99=() a_p999=() a_err=()
for ((i = 1; i <= REPEAT; i++)); do
    bench_run ceiling spop-echo "$ECHO_PORT" "$CONNS" "$DEPTH" "$i"
    e_rate+=("$R_RATE") e_p50+=("$R_P50") e_p99+=("$R_P99") e_p999+=("$R_P999") e_err+=("$R_ERR")
    bench_run agent gw-agent "$AGENT_PORT" "$CONNS" "$DEPTH" "$i"
    a_rate+=("$R_RATE") a_p50+=("$R_P50") a_p99+=("$R_P99") a_p999+=("$R_P999") a_err+=("$R_ERR")
done

bench_run agent-async-1ms gw-agent "$ASYNC_PORT" "$CONNS" "$DEPTH" 1
c_rate=$R_RATE c_p50=$R_P50 c_p99=$R_P99 c_p999=$R_P999 c_err=$R_ERR

bench_run ceiling-deep spop-echo "$ECHO_PORT" "$CONNS" "$DEEP" 1
de_rate=$R_RATE de_p50=$R_P50 de_p99=$R_P99 de_p999=$R_P999 de_err=$R_ERR
bench_run agent-deep gw-agent "$AGENT_PORT" "$CONNS" "$DEEP" 1
da_rate=$R_RATE da_p50=$R_P50 da_p99=$R_P99 da_p999=$R_P999 da_err=$R_ERR

stop_bg gw-agent-async
stop_bg gw-agent
agent_status=$BG_STATUS
stop_bg spop-echo

m_e_rate=$(median "${e_rate[@]}") m_e_p50=$(median "${e_p50[@]}")
m_e_p99=$(median "${e_p99[@]}") m_e_p999=$(median "${e_p999[@]}")
m_a_rate=$(median "${a_rate[@]}") m_a_p50=$(median "${a_p50[@]}")
m_a_p99=$(median "${a_p99[@]}") m_a_p999=$(median "${a_p999[@]}")
echo "ceiling,spop-echo,$CONNS,$DEPTH,median,,,$m_e_rate,$m_e_p50,$m_e_p99,$m_e_p999,,$(sum "${e_err[@]}")" >>"$CSV"
echo "agent,gw-agent,$CONNS,$DEPTH,median,,,$m_a_rate,$m_a_p50,$m_a_p99,$m_a_p999,,$(sum "${a_err[@]}")" >>"$CSV"

row() { # label conns x depth, rate p50 p99 p999 ratio errors
    printf '%-34s %9s %13s %9s %9s %10s %7s %7s\n' "$1" "$2" "$(thousands "$3")" "$4" "$5" "$6" "$7" "$8"
}

echo
printf '%-34s %9s %13s %9s %9s %10s %7s %7s\n' "target" "load" "frames/s" "p50 us" "p99 us" \
    "p99.9 us" "/ceil" "errors"
row "ceiling: spop-echo (median of $REPEAT)" "${CONNS}x$DEPTH" "$m_e_rate" "$m_e_p50" "$m_e_p99" \
    "$m_e_p999" "1.00" "$(sum "${e_err[@]}")"
row "gw-agent 1 thread (median of $REPEAT)" "${CONNS}x$DEPTH" "$m_a_rate" "$m_a_p50" "$m_a_p99" \
    "$m_a_p999" "$(ratio "$m_a_rate" "$m_e_rate")" "$(sum "${a_err[@]}")"
row "gw-agent --echo-delay-ms 1 (info)" "${CONNS}x$DEPTH" "$c_rate" "$c_p50" "$c_p99" "$c_p999" \
    "$(ratio "$c_rate" "$m_e_rate")" "$c_err"
row "ceiling: spop-echo, deep pipeline" "${CONNS}x$DEEP" "$de_rate" "$de_p50" "$de_p99" "$de_p999" \
    "1.00" "$de_err"
row "gw-agent 1 thread, deep pipeline" "${CONNS}x$DEEP" "$da_rate" "$da_p50" "$da_p99" "$da_p999" \
    "$(ratio "$da_rate" "$de_rate")" "$da_err"
echo
verdict=$(awk -v r="$m_a_rate" -v p="$m_a_p99" -v gr="$GOAL_RATE" -v gp="$GOAL_P99_US" 'BEGIN {
    if (r == "NA") { print "no result"; exit }
    printf "rate %s, p99 %s", (r >= gr ? "met" : "not met"), (p < gp ? "met" : "not met") }')
echo "goal: >= 300,000 frames/s on one agent thread, p99 < 1 ms  ->  gw-agent ${CONNS}x$DEPTH:" \
    "$(thousands "$m_a_rate") frames/s, p99 $m_a_p99 us ($verdict)"
echo "(the async line is bounded by Little's law: $((CONNS * DEPTH)) frames in flight / 1 ms" \
    "= at most $(thousands $((CONNS * DEPTH * 1000))) frames/s)"
if [ -n "$agent_status" ] && [ "$agent_status" != 0 ]; then
    echo "note: gw-agent exited with status $agent_status after SIGTERM; its log:"
    tail -n 20 "$GW_TMP/gw-agent.log" | sed 's/^/    /'
fi
echo "csv: ${CSV#"$GW_ROOT"/}"
exit 0
