#!/usr/bin/env bash
# tests/bench/metrics.sh: what the metrics cost, measured off and on in the
# same run, alternated (off, on, off, on, ...) so that the machine's other
# load falls on both alike.
#
#   bash tests/bench/metrics.sh     (or `make bench`)
#
#   verdicts/s  tests/tools/spop-client straight to the agent (gateway handler,
#               balance GET to a real Redis), 1 worker thread on CPU 0, the
#               client on CPU 1, 4 connections x 32 frames in flight
#   HTTP req/s  wrk (32 keep-alive connections, absolute-form GET of 1 KiB)
#               through the whole gateway (start_gateway_stack: HAProxy, agent,
#               gw-settle, PostgreSQL, Redis, stand-in upstream, origin)
# off: the agent runs with --metrics-listen '' (no listener thread) and
#      nothing is scraped;
# on:  the agent's listener is on and its /metrics (for HTTP also gw-settle's
#      and HAProxy's exporter) is scraped every SCRAPE_S seconds (default 1:
#      15 times Prometheus's default interval).
# The counters themselves (verdicts by reason, per provider, the latency
# histogram) are not optional: they are counted in both runs.
#
# BENCH_SECONDS per run (default 5), BENCH_REPS pairs (default 3); prints each
# run, the medians and the ratio on/off (floor: 0.97). Nothing is asserted.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/services.sh"
. "$GW_ROOT/tests/lib/gateway.sh"
svc_init || exit 1

CLIENT=$(gw_tool spop-client) || exit 1
AGENT=${GW_BENCH_AGENT:-$GW_ROOT/agent/gw-agent}
SECS=${BENCH_SECONDS:-5}
REPS=${BENCH_REPS:-3}
SCRAPE_S=${SCRAPE_S:-1}
AUTH="Basic $(printf 'myuser:mypassword' | base64)"
LUA=$GW_ROOT/tests/bench/compare/proxy-get.lua
pin_agent=(taskset -c 0)
pin_client=(taskset -c 1)
[ "$(nproc)" -ge 2 ] || { pin_agent=(); pin_client=(); }
for tool in wrk taskset curl; do
    command -v "$tool" >/dev/null || { echo "metrics bench: $tool is missing (make bench-deps)" >&2; exit 1; }
done

# scraper <urls...>: GET each every SCRAPE_S seconds until killed; SCRAPER set.
scraper_start() {
    (while :; do
        for u in "$@"; do curl -s --max-time 5 -o /dev/null "$u"; done
        sleep "$SCRAPE_S"
    done) &
    SCRAPER=$!
}
scraper_stop() {
    kill "$SCRAPER" 2>/dev/null
    wait "$SCRAPER" 2>/dev/null
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# --- 1. verdicts/s -------------------------------------------------------------------

GW_AGENT=$AGENT
export GW_AGENT
GW_WITH_SETTLE=1
GW_SETTLE=${GW_SETTLE:-$GW_ROOT/agent/gw-settle}
GW_METRICS_PORT=$(free_port) # HAProxy's exporter: present in both, scraped only when on
export GW_WITH_SETTLE GW_SETTLE GW_METRICS_PORT
start_gateway_stack || { echo "metrics bench: the gateway stack did not start" >&2; exit 1; }
redis_gw SET balance:cache:myuser 1000000000000000 >/dev/null

V_PORT=$(free_port)
V_METRICS=$(free_port)
verdict_run() { # <off|on> <rep>
    local mode=$1 name=v-$1-$2 listen='' out rate
    [ "$mode" = on ] && listen=127.0.0.1:$V_METRICS
    start_bg "$name" "${pin_agent[@]}" "$AGENT" --listen "127.0.0.1:$V_PORT" --threads 1 \
        --postgres-uri "$POSTGRES_URI" --redis-addr "$REDIS_ADDR" --snapshot-path '' \
        --traffic-logging true --live-balance false --billing-listen "127.0.0.1:$(free_port)" \
        --spool-path "$GW_TMP/$name.spool" --metrics-listen "$listen" || exit 1
    wait_port "$V_PORT" 60 || { echo "bench agent did not start" >&2; exit 1; }
    [ "$mode" = on ] && { wait_port "$V_METRICS" 10; scraper_start "http://$listen/metrics"; }
    out=$("${pin_client[@]}" "$CLIENT" --connect "127.0.0.1:$V_PORT" bench --conns 4 \
        --pipeline 32 --duration "$SECS" --ip 127.0.0.1 --auth "$AUTH" 2>&1 | grep '^frames=')
    [ "$mode" = on ] && scraper_stop
    stop_bg "$name" TERM
    rate=$(sed -n 's/.* rate=\([0-9.]*\).*/\1/p' <<<"$out")
    printf '  verdicts/s  metrics %-3s  %10.0f   (%s)\n' "$mode" "${rate:-0}" "${out:-no result}" >&2
    echo "${rate:-0}"
}

# --- 2. HTTP req/s through the gateway -------------------------------------------------

http_run() { # <off|on>
    local mode=$1 out rate
    stop_bg agent TERM
    if [ "$mode" = on ]; then start_agent; else start_agent --metrics-listen ''; fi || exit 1
    gw_wait_status 30 200 myuser:mypassword "http://127.0.0.1:$ORIGIN_PORT/bytes/16" >/dev/null ||
        { echo "gateway not answering after the agent restart" >&2; exit 1; }
    [ "$mode" = on ] && scraper_start "http://127.0.0.1:$AGENT_METRICS_PORT/metrics" \
        "http://127.0.0.1:$SETTLE_METRICS_PORT/metrics" "http://127.0.0.1:$GW_METRICS_PORT/metrics"
    out=$(CMP_URL=http://127.0.0.1:$ORIGIN_PORT/bytes/1024 CMP_AUTH=$AUTH \
        wrk -t1 -c32 -d"${SECS}s" -s "$LUA" "http://127.0.0.1:$GW_PORT/" 2>&1 | grep '^RESULT')
    [ "$mode" = on ] && scraper_stop
    rate=$(sed -n 's/.* rate=\([0-9.]*\).*/\1/p' <<<"$out")
    printf '  HTTP req/s  metrics %-3s  %10.0f   (%s)\n' "$mode" "${rate:-0}" "${out:-no result}" >&2
    echo "${rate:-0}"
}

echo "== metrics off vs on: ${SECS}s runs, $REPS pairs alternated, scrapes every ${SCRAPE_S}s when on"
V_OFF=() V_ON=() H_OFF=() H_ON=()
for ((r = 1; r <= REPS; r++)); do
    V_OFF+=("$(verdict_run off "$r")")
    V_ON+=("$(verdict_run on "$r")")
done
for ((r = 1; r <= REPS; r++)); do
    H_OFF+=("$(http_run off)")
    H_ON+=("$(http_run on)")
done

# What one scrape costs the agent, independent of the machine's other load:
# its CPU time (utime + stime, all threads) across SCRAPES scrapes of an idle agent.
SCRAPES=${BENCH_SCRAPES:-200}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
apid=$(bg_pid agent)
t0=$(cpu_ticks "$apid")
for ((i = 0; i < SCRAPES; i++)); do curl -s --max-time 5 -o /dev/null "http://127.0.0.1:$AGENT_METRICS_PORT/metrics"; done
t1=$(cpu_ticks "$apid")
bytes=$(curl -s --max-time 5 "http://127.0.0.1:$AGENT_METRICS_PORT/metrics" | wc -c)
scrape_us=$(awk -v d=$((t1 - t0)) -v n="$SCRAPES" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.0f", d / hz / n * 1e6 }')

vo=$(printf '%s\n' "${V_OFF[@]}" | median)
vn=$(printf '%s\n' "${V_ON[@]}" | median)
ho=$(printf '%s\n' "${H_OFF[@]}" | median)
hn=$(printf '%s\n' "${H_ON[@]}" | median)
echo
printf '%-12s %12s %12s %8s\n' "median" "off" "on" "on/off"
printf '%-12s %12.0f %12.0f %8.3f\n' "verdicts/s" "$vo" "$vn" "$(awk -v a="$vn" -v b="$vo" 'BEGIN { print b ? a / b : 0 }')"
printf '%-12s %12.0f %12.0f %8.3f\n' "HTTP req/s" "$ho" "$hn" "$(awk -v a="$hn" -v b="$ho" 'BEGIN { print b ? a / b : 0 }')"
echo "one scrape of the agent (${bytes} bytes): ${scrape_us} us of its CPU (${SCRAPES} scrapes; the optimized build: GW_BENCH_AGENT)"
echo "(floor: on/off >= 0.97; on a shared 2-core machine single runs vary by more than that: compare the medians)"
