#!/usr/bin/env bash
# tests/bench/live.sh: what the live balance (agent/live.h, meter.h) lets
# through past a balance, and what it costs. The whole gateway on loopback
# (release agent, real HAProxy, PostgreSQL, Redis, stand-in provider, origin).
#
# Overshoot: the user's balance is set to BENCH_LIVE_BALANCE (50 MB) with
# nothing unsettled, then the user downloads far more than that through
#   (a) one CONNECT tunnel limited to 10 MB/s,
#   (b) 20 parallel tunnels, each limited to 10 MB/s (the total past the
#       balance counts, not per tunnel),
#   (c) one tunnel at full loopback speed;
# printed: the bytes billed past the balance (the records' sum minus the
# balance: what moved), the bytes the clients received past it, and the
# overshoot in seconds of the transfer's rate. Goal: at most 1 s of the rate
# plus 1 MB.
#
# Cost: HTTP req/s (wrk, keep-alive, 1 KiB bodies) and CPU per request of
# HAProxy + agent, live balance on against off (GW_LIVE_BALANCE=false), in
# the same run, alternating, BENCH_LIVE_ROUNDS rounds of BENCH_LIVE_SECS.
# Prints figures and ratios, asserts nothing (`make bench` runs it).
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/services.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/gateway.sh"
svc_init || exit 1
export GW_AGENT=${GW_BENCH_AGENT:-$GW_ROOT/agent/gw-agent}
[ -x "$GW_AGENT" ] || { echo "no $GW_AGENT (make)" >&2; exit 1; }
for tool in wrk curl jq; do
    command -v "$tool" >/dev/null || { echo "live.sh needs $tool (make bench-deps)" >&2; exit 1; }
done
BAL=${BENCH_LIVE_BALANCE:-50000000}
ROUNDS=${BENCH_LIVE_ROUNDS:-3}
SECS=${BENCH_LIVE_SECS:-5}
start_gateway_stack || exit 1

USER=myuser
ORIGIN=http://127.0.0.1:$ORIGIN_PORT
reset() {
    redis_gw DEL "gw:live:$USER" "gw:unsettled:$USER" traffic:logs >/dev/null
    redis_gw SET "balance:cache:$USER" "$BAL" >/dev/null
}
# settle_wait <n>: until n records are on traffic:logs and nothing is running
settle_wait() {
    wait_until 20 bash -c "[ \"\$(redis-cli -p $REDIS_PORT LLEN traffic:logs)\" -ge $1 ]" ||
        echo "  (only $(redis_gw LLEN traffic:logs) of $1 records arrived)"
}
billed() { redis_gw LRANGE traffic:logs 0 -1 | jq -s 'map(.request_bytes + .response_bytes) | add // 0'; }
cut() { redis_gw LRANGE traffic:logs 0 -1 | jq -s 'map(select(.cut_reason == "balance")) | length'; }

# overshoot <label> <tunnels> <rate limit or ""> <size>
overshoot() {
    local label=$1 n=$2 limit=$3 size=$4 i t0 t1 got=0 secs rate past_b past_c
    reset
    t0=$(date +%s%N)
    for ((i = 0; i < n; i++)); do
        curl -s -p -x "http://$USER-session-ov$i:mypassword@127.0.0.1:$GW_PORT" \
            ${limit:+--limit-rate "$limit"} --max-time 120 -o /dev/null -w '%{size_download}\n' \
            "$ORIGIN/bytes/$size" >"$GW_TMP/ov.$i" 2>/dev/null &
    done
    wait
    t1=$(date +%s%N)
    for ((i = 0; i < n; i++)); do got=$((got + $(cat "$GW_TMP/ov.$i"))); done
    settle_wait "$n"
    local b
    b=$(billed)
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
    rate=$(awk -v g="$got" -v s="$secs" 'BEGIN { printf "%.1f", (s > 0 ? g / s / 1e6 : 0) }')
    past_b=$((b - BAL))
    past_c=$((got - BAL))
    printf '%-34s %3d tunnel(s) %7s MB/s  received %6.1f MB in %5ss  billed past %6.2f MB  received past %6.2f MB  = %.2f s of the rate  (%s of %d cut)\n' \
        "$label" "$n" "$rate" "$(awk -v g="$got" 'BEGIN { print g / 1e6 }')" "$secs" \
        "$(awk -v p="$past_b" 'BEGIN { print p / 1e6 }')" "$(awk -v p="$past_c" 'BEGIN { print p / 1e6 }')" \
        "$(awk -v p="$past_b" -v r="$rate" 'BEGIN { printf "%.2f", (r > 0 ? p / 1e6 / r : 0) }')" "$(cut)" "$n"
}

if [ "${BENCH_LIVE_OVERSHOOT:-1}" = 1 ]; then
    echo "== overshoot past a balance of $BAL bytes (live interval ${GW_LIVE_INTERVAL_MS:-500} ms," \
        "client send buffers ${GW_SNDBUF_CLIENT:-autotuned})"
    overshoot "(a) one tunnel at 10 MB/s" 1 10M 400m
    overshoot "(b) 20 tunnels at 10 MB/s each" 20 10M 100m
    overshoot "(c) one tunnel at full speed" 1 "" 2g
fi

[ "${BENCH_LIVE_COST:-1}" = 1 ] || exit 0

# --- cost -------------------------------------------------------------------------------------
ticks() { # utime+stime of a pid and its children threads
    awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}
haproxy_worker() { pgrep -P "$HAPROXY_PID" haproxy | head -1; }
AUTH="Basic $(printf '%s' "$USER-session-cost:mypassword" | base64 -w0)"
LUA=$GW_ROOT/tests/bench/compare/proxy-get.lua
# run_wrk <label>: prints "rate cpu_ms_per_1k"
run_wrk() {
    local w a h0 a0 h1 a1 r0 r1 out rate reqs
    w=$(haproxy_worker)
    a=$(bg_pid agent)
    h0=$(ticks "$w")
    a0=$(ticks "$a")
    r0=$(ticks "$REDIS_PID")
    out=$(CMP_URL="$ORIGIN/bytes/1024" CMP_AUTH=$AUTH wrk -t1 -c32 -d"${SECS}s" -s "$LUA" \
        "http://127.0.0.1:$GW_PORT/" 2>&1 | grep '^RESULT')
    h1=$(ticks "$w")
    a1=$(ticks "$a")
    r1=$(ticks "$REDIS_PID")
    rate=$(sed -n 's/.* rate=\([0-9.]*\).*/\1/p' <<<"$out")
    reqs=$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$out")
    local tck
    tck=$(getconf CLK_TCK)
    echo "  (HAProxy $((h1 - h0)) ticks, agent $((a1 - a0)) ticks, Redis $((r1 - r0)) ticks, $reqs requests)" >&2
    echo "$rate $(awk -v t=$((h1 - h0 + a1 - a0)) -v r="${reqs:-0}" -v k="$tck" 'BEGIN { printf "%.3f", (r > 0 ? t * 1000 / k / r * 1000 : 0) }')"
}
restart_agent() {
    stop_bg agent TERM
    start_agent "$@" || exit 1
    wait_gateway_ready || exit 1
}

echo "== cost: HTTP req/s (wrk -c32, 1 KiB) and HAProxy + agent CPU ms per 1,000 requests"
redis_gw SET "balance:cache:$USER" 100000000000000 >/dev/null
declare -a ON_R OFF_R ON_C OFF_C
for ((r = 1; r <= ROUNDS; r++)); do
    restart_agent --live-balance false
    read -r rate cpu < <(run_wrk)
    OFF_R+=("$rate")
    OFF_C+=("$cpu")
    restart_agent
    read -r rate cpu < <(run_wrk)
    ON_R+=("$rate")
    ON_C+=("$cpu")
    echo "  round $r: off ${OFF_R[-1]} req/s ${OFF_C[-1]} ms/1k; on ${ON_R[-1]} req/s ${ON_C[-1]} ms/1k"
done
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
mr_off=$(median "${OFF_R[@]}")
mr_on=$(median "${ON_R[@]}")
mc_off=$(median "${OFF_C[@]}")
mc_on=$(median "${ON_C[@]}")
printf 'live off: %s req/s, %s CPU ms per 1,000 requests (medians of %d)\n' "$mr_off" "$mc_off" "$ROUNDS"
printf 'live on:  %s req/s, %s CPU ms per 1,000 requests\n' "$mr_on" "$mc_on"
# the machine's load moves between rounds: the ratio within each round (on
# and off measured back to back) says more than the ratio of the medians
ratios_r=() ratios_c=()
for ((r = 0; r < ROUNDS; r++)); do
    ratios_r+=("$(awk -v a="${ON_R[r]}" -v b="${OFF_R[r]}" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')")
    ratios_c+=("$(awk -v a="${ON_C[r]}" -v b="${OFF_C[r]}" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')")
done
printf 'ratio on/off, median of the rounds'"'"' own ratios: req/s %s, CPU per request %s\n' \
    "$(median "${ratios_r[@]}")" "$(median "${ratios_c[@]}")"
printf 'ratio of the medians on/off: req/s %s, CPU per request %s\n' \
    "$(awk -v a="$mr_on" -v b="$mr_off" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')" \
    "$(awk -v a="$mc_on" -v b="$mc_off" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')"
