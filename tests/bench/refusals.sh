#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# tests/bench/refusals.sh: what the hostile-request refusals (gateway.cfg's
# block "requests the HTTP RFCs say to refuse") cost the gateway's HTTP rate.
#
#   bash tests/bench/refusals.sh       (also part of `make bench`): ~1.5 minutes
#
# One gateway stack (tests/lib/gateway.sh, the optimized agent), and two
# HAProxy instances side by side on the same agent, stand-in and origin:
#   before  haproxy/gateway.cfg without that block (cut out with awk),
#   after   haproxy/gateway.cfg as it is.
# wrk (keep-alive, absolute-form GET of 1 KiB through the proxy,
# compare/proxy-get.lua) runs against each in turn, REFUSALS_REPEAT times,
# alternating which goes first. Pinning as in compare.sh: HAProxy (one thread)
# and the agent (one thread) on CPU 0; wrk, the stand-in, the origin, Redis and
# PostgreSQL on CPU 1. For each run: req/s, and the HAProxy processes' CPU
# time per request (from /proc, what the rules cost whatever else the machine
# runs). Prints every run, and the medians of after/before over the pairs of
# adjacent runs (a shared machine drifts: pairs cancel the drift). Nothing is
# asserted (the goal: within 3 %).
#
# Environment: REFUSALS_REPEAT (8), REFUSALS_SECONDS (3), REFUSALS_CONNS (32),
# GW_BENCH_AGENT (agent/gw-agent, built if missing).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export GW_AGENT=${GW_BENCH_AGENT:-$ROOT/agent/gw-agent}
# shellcheck source=../lib/services.sh
. "$HERE/../lib/services.sh"
# shellcheck source=../lib/gateway.sh
. "$HERE/../lib/gateway.sh"

REPEAT=${REFUSALS_REPEAT:-8}
SECS=${REFUSALS_SECONDS:-3}
CONNS=${REFUSALS_CONNS:-32}
LUA=$HERE/compare/proxy-get.lua
for tool in wrk taskset haproxy; do
    command -v "$tool" >/dev/null || { echo "refusals.sh: missing $tool (make bench-deps)" >&2; exit 1; }
done
[ -x "$GW_AGENT" ] || make -s -C "$ROOT" agent/gw-agent || exit 1

svc_init || exit 1
PIN=0
if [ "$(nproc)" -ge 2 ]; then
    PIN=1
    taskset -p -c 0 $$ >/dev/null # HAProxy and the agent inherit CPU 0
fi
GW_AGENT_ARGS="--threads 1" start_gateway_stack >"$GW_TMP/stack.out" 2>&1 ||
    { cat "$GW_TMP/stack.out" >&2; exit 1; }

before_cfg=$GW_TMP/gateway-before.cfg
awk '/^    # --- requests the HTTP RFCs say to refuse/ { skip = 1 }
     /^    # --- GET \/health/ { skip = 0 }
     !skip' "$ROOT/haproxy/gateway.cfg" >"$before_cfg"
cut=$(($(wc -l <"$ROOT/haproxy/gateway.cfg") - $(wc -l <"$before_cfg")))
[ "$cut" -gt 10 ] || { echo "refusals.sh: the refusal block was not found in gateway.cfg" >&2; exit 1; }
BEFORE_PORT=$(free_port)
start_bg haproxy-before env PORT="$BEFORE_PORT" GW_BIND=127.0.0.1 GW_PROXY_PORT="$(free_port)" \
    GW_AGENT_ADDR="127.0.0.1:$AGENT_PORT" GW_BILLING_ADDR="127.0.0.1:$BILLING_PORT" \
    GW_BILLING_HOLD="127.0.0.1:$(free_port)" GW_SPOE_CONF="$ROOT/haproxy/spoe-gateway.conf" \
    GW_ERRORS_DIR="$ROOT/haproxy/errors" GW_STATS_SOCKET="$GW_TMP/before.sock" \
    GW_TIMEOUT_CONNECT=2s GW_TIMEOUT_SERVER=5s GW_GRACE=10s \
    haproxy -W -db -f "$before_cfg" || exit 1
wait_port "$BEFORE_PORT" 10 || exit 1

if [ "$PIN" = 1 ]; then
    for name in origin upstream; do
        taskset -a -p -c 1 "$(bg_pid "$name")" >/dev/null
    done
    [ -n "${REDIS_PID:-}" ] && taskset -a -p -c 1 "$REDIS_PID" >/dev/null
    for p in $(pgrep -f "postgres.*$PG_PORT" 2>/dev/null); do taskset -a -p -c 1 "$p" >/dev/null 2>&1; done
fi

URL=http://127.0.0.1:$ORIGIN_PORT/bytes/1024
AUTH="Basic $(gw_b64 myuser:mypassword)"
declare -A PORT_OF=([before]=$BEFORE_PORT [after]=$GW_PORT)
declare -A GROUP_OF=([before]=$(bg_pid haproxy-before) [after]=$HAPROXY_PID)
# cpu_ticks <pgid>: user+system clock ticks of the group's processes
cpu_ticks() {
    local p t=0 f
    for p in $(ps -eo pid=,pgid= | awk -v g="$1" '$2 == g { print $1 }'); do
        f=$(cut -d')' -f2 "/proc/$p/stat" 2>/dev/null) || continue
        t=$((t + $(awk '{ print $12 + $13 }' <<<"$f")))
    done
    echo "$t"
}
HZ=$(getconf CLK_TCK)
run() { # <label>: one wrk run; prints "<req/s> <HAProxy CPU us per request>"
    local out line c0 c1 errs n
    c0=$(cpu_ticks "${GROUP_OF[$1]}")
    out=$(CMP_URL=$URL CMP_AUTH=$AUTH taskset -c "$((PIN))" wrk -t1 -c"$CONNS" -d"${SECS}s" \
        --timeout 5s -s "$LUA" "http://127.0.0.1:${PORT_OF[$1]}/" 2>&1)
    c1=$(cpu_ticks "${GROUP_OF[$1]}")
    line=$(grep '^RESULT ' <<<"$out")
    [ -n "$line" ] || { echo "wrk printed no result: $(tail -n 3 <<<"$out")" >&2; echo "0 0"; return; }
    errs=${line##*errors=}
    errs=${errs%% *}
    [ "$errs" = 0 ] || echo "  ($1: $errs wrk errors)" >&2
    n=${line#*requests=}
    n=${n%% *}
    line=${line##*rate=}
    awk -v r="${line%% *}" -v t=$((c1 - c0)) -v hz="$HZ" -v n="$n" \
        'BEGIN { printf "%.1f %.2f\n", r, n ? t / hz * 1e6 / n : 0 }'
}
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# warm-up, and a check that both answer 200
for c in before after; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -x "http://myuser:mypassword@127.0.0.1:${PORT_OF[$c]}" "$URL")
    [ "$code" = 200 ] || { echo "refusals.sh: $c answered $code" >&2; exit 1; }
    CMP_URL=$URL CMP_AUTH=$AUTH wrk -t1 -c8 -d1s -s "$LUA" "http://127.0.0.1:${PORT_OF[$c]}/" >/dev/null 2>&1
done

echo "gateway HTTP rate, before and after the refusal block ($cut lines of gateway.cfg)"
echo "wrk -t1 -c$CONNS, ${SECS} s per run, $REPEAT runs each, alternating; GET of 1 KiB"
[ "$PIN" = 1 ] && echo "HAProxy (1 thread) and the agent (1 thread) on CPU 0, everything else on CPU 1"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
rate_ratios='' cpu_ratios='' rates_b='' rates_a='' cpus_b='' cpus_a=''
for ((r = 1; r <= REPEAT; r++)); do
    if ((r % 2)); then order="before after"; else order="after before"; fi
    for c in $order; do
        read -r rate cpu < <(run "$c")
        printf '  run %d %-6s %10.1f req/s  HAProxy %6.2f us CPU/request\n' "$r" "$c" "$rate" "$cpu"
        if [ "$c" = before ]; then rb=$rate cb=$cpu; else ra=$rate ca=$cpu; fi
    done
    rate_ratios+="$(awk -v a="$ra" -v b="$rb" 'BEGIN { print a / b }') "
    cpu_ratios+="$(awk -v a="$ca" -v b="$cb" 'BEGIN { print (b > 0 ? a / b : 1) }') "
    rates_b+="$rb " rates_a+="$ra " cpus_b+="$cb " cpus_a+="$ca "
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
med() { tr ' ' '\n' <<<"$1" | grep . | median; }
awk -v rb="$(med "$rates_b")" -v ra="$(med "$rates_a")" -v cb="$(med "$cpus_b")" -v ca="$(med "$cpus_a")" \
    -v rr="$(med "$rate_ratios")" -v cr="$(med "$cpu_ratios")" 'BEGIN {
    printf "medians: before %.1f req/s, %.2f us CPU/request; after %.1f req/s, %.2f us CPU/request\n", rb, cb, ra, ca
    printf "after/before, median over the %s pairs: req/s %+.2f %%, HAProxy CPU per request %+.2f %%\n", "'"$REPEAT"'", (rr - 1) * 100, (cr - 1) * 100 }'
