#!/usr/bin/env bash
# tests/bench/verdict.sh: the agent's verdict rate and latency on one worker
# thread, driven over SPOP by tests/tools/spop-client (what HAProxy sends for a
# proxied request: client address and Basic credentials of the demo user).
#
#   bash tests/bench/verdict.sh     (or `make bench`)
#
# Runs, each BENCH_SECONDS, agent on CPU 0 and client on CPU 1:
#   echo       the trivial handler (the server's own cost; the baseline)
#   verdict    gateway handler without Redis (ENABLE_TRAFFIC_LOGGING=false)
#   +redis     gateway handler with the balance GET to a real Redis
# first with 10 users, then with 1,000,000 users and 100,000 whitelist entries
# (PostgreSQL load time and agent RSS printed), then runs while the snapshot
# changes every second:
#   users      a user is updated (NOTIFY; the agent reads only changed users)
#   providers  a provider row is changed (the agent reads the providers and
#              the changed rows: what the periodic refresh does; one that finds
#              nothing changed publishes nothing)
#   whitelist  a whitelist row is updated (the agent reads that row and
#              patches its whitelist in memory)
#   whitelist bulk  10,005 whitelist rows updated in one statement (too many
#              to list: the agent reads the 100,000 whitelist rows again)
#   writer alone  the same 10,001-row UPDATE on a copy of users (same
#           indexes, no triggers: the agent reads nothing): what the statement
#           itself costs this machine, the control for "all"
#   whole read  a "too many to list" mark written to gw_user_changes: the
#           agent reads everything (as after a reconnect or every 20 refresh
#           intervals) with no writer's cost beside it
#   all     10,001 users are updated in one statement (too many to list: the
#           agent reads everything); whole loads are spaced by their own
#           duration, so about half of these runs has one going on
# each closed loop (as fast as the agent answers, 128 frames in flight: the
# latency is mostly queueing), open loop at RATE frames/s (default 50,000,
# evenly spaced; latency counted from when each frame was due) and open loop
# at LIGHT frames/s (default 10,000: the worker's core has room for the
# loader and PostgreSQL; on this 2-core machine the worker, Redis, the
# generator and PostgreSQL share the two cores, and frames sent one at a time
# cost the worker and Redis far more than pipelined ones).
# Goals (issue "Routing policy"): load < 5 s, RSS < 400 MB, >= 250,000
# verdicts/s without Redis and >= 100,000/s with it, p99 < 2 ms during a
# reload. Printed beside the figures; nothing is asserted.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/services.sh"
svc_init || exit 1

CLIENT=$GW_ROOT/tests/tools/spop-client
AGENT=${GW_BENCH_AGENT:-$GW_ROOT/agent/gw-agent}
SECS=${BENCH_SECONDS:-5}
RATE=${BENCH_VERDICT_RATE:-50000}
LIGHT=${BENCH_VERDICT_LIGHT_RATE:-10000}
AUTH="Basic $(printf 'myuser:mypassword' | base64)"
pin_agent=(taskset -c 0)
pin_client=(taskset -c 1)
[ "$(nproc)" -ge 2 ] || { pin_agent=(); pin_client=(); }

start_postgres || exit 1
db_apply --demo >/dev/null || exit 1
start_redis || exit 1
redis_gw SET balance:cache:myuser 1000000000000 >/dev/null
psql_gw "INSERT INTO users (username, password) SELECT 'user' || i, 'pw' || i FROM generate_series(1, 9) i" >/dev/null

AGENT_PORT=$(free_port)
agent_up() { # <name> [agent options]
    local name=$1
    shift
    start_bg "$name" "${pin_agent[@]}" "$AGENT" --listen "127.0.0.1:$AGENT_PORT" --threads 1 \
        --postgres-uri "$POSTGRES_URI" --redis-addr "$REDIS_ADDR" --snapshot-path '' \
        --billing-listen "127.0.0.1:$(free_port)" --spool-path "$GW_TMP/$name.spool" \
        "$@" || exit 1
    wait_port "$AGENT_PORT" 120 || { echo "agent did not start" >&2; tail "$GW_TMP/$name.log"; exit 1; }
}
agent_down() { stop_bg "$1" TERM; }

# run <label> [client seconds [client options]]: one client run against the running agent.
RESULTS=()
run() {
    local label=$1 secs=${2:-$SECS} out
    shift 2 || shift $#
    out=$("${pin_client[@]}" "$CLIENT" --connect "127.0.0.1:$AGENT_PORT" bench --conns 4 \
        --pipeline 32 --duration "$secs" --ip 127.0.0.1 --auth "$AUTH" "$@" 2>&1 | grep '^frames=')
    local rate p50 p99 errors
    rate=$(sed -n 's/.* rate=\([0-9.]*\).*/\1/p' <<<"$out")
    p50=$(sed -n 's/.* p50_us=\([0-9.]*\).*/\1/p' <<<"$out")
    p99=$(sed -n 's/.* p99_us=\([0-9.]*\).*/\1/p' <<<"$out")
    errors=$(sed -n 's/.* errors=\([0-9]*\).*/\1/p' <<<"$out")
    RESULTS+=("$(printf '%-46s %12.0f %9s %9s %6s' "$label" "${rate:-0}" "${p50:--}" "${p99:--}" "${errors:--}")")
    printf '%s\n' "${RESULTS[-1]}"
}

header() { printf '%-46s %12s %9s %9s %6s\n' "run" "verdicts/s" "p50 us" "p99 us" "errors"; }

echo "== verdict benchmark: 1 agent worker thread (CPU 0), client on CPU 1, 4 conns x 32 in flight, ${SECS}s per run"
header
agent_up echo --handler echo
run "echo handler (baseline)"
agent_down echo
agent_up nored --traffic-logging false
run "verdict, 10 users, no Redis"
agent_down nored
agent_up red
run "verdict, 10 users, + Redis GET"
agent_down red

echo
echo "== loading 1,000,000 users and 100,000 whitelist entries into PostgreSQL"
psql_gw "INSERT INTO users (username, password) SELECT 'user' || i, 'pw' || i FROM generate_series(10, 1000000) i" >/dev/null
psql_gw "INSERT INTO authorized_ips (ip, description) SELECT '10.' || (i >> 16) || '.' || ((i >> 8) & 255) || '.' || (i & 255), 'bench' FROM generate_series(0, 99999) i" >/dev/null
psql_gw "CREATE TABLE bench_users_copy (LIKE users INCLUDING ALL);
         INSERT INTO bench_users_copy SELECT * FROM users; ANALYZE" >/dev/null
echo "users: $(psql_gw 'SELECT count(*) FROM users'), whitelist rows: $(psql_gw 'SELECT count(*) FROM authorized_ips')"

agent_up bignored --traffic-logging false
load_ms=$(grep -o 'from PostgreSQL (everything) in [0-9]* ms' "$GW_TMP/bignored.log" | head -1 | grep -o '[0-9]*')
[ -n "$load_ms" ] || load_ms=$(grep -ho 'in [0-9]* ms' "$GW_TMP/bignored.log" | head -1 | grep -o '[0-9]*')
rss_kb=$(ps -o rss= -p "$(pgrep -f -n "$AGENT.*$AGENT_PORT")" | tr -d ' ')
header
run "verdict, 1M users, no Redis"
agent_down bignored
agent_up bigred
run "verdict, 1M users, + Redis GET"

run "verdict, 1M users, + Redis, ${RATE}/s" "$SECS" --rate "$RATE"

# changing <sql> <seconds>: runs sql every second in the background, from one
# psql session (starting a psql per change costs this 2-core machine more
# than a delta does: p99 1.1 -> 5.3 ms at 50,000/s with a plain SELECT 1).
changing() {
    local sql=$1 n=$2
    (for _ in $(seq 1 "$n"); do printf '%s;\nSELECT pg_sleep(1);\n' "$sql"; done |
        psql -X -q -v ON_ERROR_STOP=1 -d "$POSTGRES_URI" >/dev/null) &
    CHANGER=$!
}
# quiet: waits until the loader is done: its PostgreSQL session idle and no
# new load logged, twice in a row 1 s apart (a whole load builds for a while
# after its COMMIT, so the session alone does not say), and until no
# autovacuum worker runs (the bulk updates leave 100,000s of dead rows: a
# vacuum of them would land in a later run; so they are vacuumed here first).
quiet() {
    local last=-1 now state calm=0
    psql_gw "VACUUM users, authorized_ips, bench_users_copy" # so that autovacuum finds nothing to do later
    for _ in $(seq 1 180); do
        now=$(grep -c 'generation' "$GW_TMP/bigred.log")
        state=$(psql_gw "SELECT string_agg(state, ',') FROM pg_stat_activity
                         WHERE application_name = 'gw-agent snapshot'
                            OR backend_type = 'autovacuum worker'")
        if [ "$now" = "$last" ] && [ "$state" = idle ]; then calm=$((calm + 1)); else calm=0; fi
        [ "$calm" -ge 2 ] && return
        last=$now
        sleep 1
    done
}

echo
echo "== p99 while the snapshot changes every second, 1M users, + Redis"
echo "   (no change: the same psql session running SELECT 1, the control for the rows below it)"
# "label|sql": each change run, in order; the first is the control
CHANGES=(
    "no change (SELECT 1 every 1 s)|SELECT 1"
    "users: a user updated every 1 s|UPDATE users SET is_active = true WHERE username = 'user1'"
    "providers: a provider row every 1 s|UPDATE proxies SET name = 'demo-de ' || clock_timestamp() WHERE slug = 'demo-de'"
    "whitelist: a whitelist row every 1 s|UPDATE authorized_ips SET is_active = true WHERE ip = '10.0.0.1'"
    "whitelist bulk: 10,005 rows every 1 s|UPDATE authorized_ips SET is_active = true WHERE id <= 10005"
    "writer alone: 10,001 rows of a copy|UPDATE bench_users_copy SET is_active = true WHERE id <= 10001"
    "whole read, no writer: every 1 s|INSERT INTO gw_user_changes (username) VALUES (NULL); NOTIFY gw_snapshot, 'users'"
    "all: 10,001 users every 1 s|UPDATE users SET is_active = true WHERE id <= 10001"
)
# kind <pattern>: "count mean_ms" of the loads logged with "<pattern> in N ms" since the mark
mark=$(wc -l <"$GW_TMP/bigred.log")
kind() {
    tail -n +"$((mark + 1))" "$GW_TMP/bigred.log" | grep -o "$1 in [0-9]* ms" |
        awk '{n++; s += $(NF - 1)} END {printf "%d %s", n, n ? sprintf("%.1f", s / n) : "-"}'
}
quiet
for mode in closed open light; do
    args=()
    label=closed
    [ "$mode" = open ] && args=(--rate "$RATE") && label="${RATE}/s"
    [ "$mode" = light ] && args=(--rate "$LIGHT") && label="${LIGHT}/s"
    for change in "${CHANGES[@]}"; do
        changing "${change#*|}" $((SECS * 2))
        run "${change%%|*}, $label" $((SECS * 2)) "${args[@]}"
        wait "$CHANGER"
        quiet
    done
done
# deltas: "PostgreSQL in N ms: U changed users and W changed whitelist rows applied"
deltas() { # <awk condition on u and w>: "count mean_ms"
    tail -n +"$((mark + 1))" "$GW_TMP/bigred.log" |
        grep -o 'PostgreSQL in [0-9]* ms: [0-9]* changed users and [0-9]* changed whitelist rows applied' |
        awk "{ms = \$3; u = \$5; w = \$9} $1 {n++; s += ms} END {printf \"%d %s\", n, n ? sprintf(\"%.1f\", s / n) : \"-\"}"
}
read -r n_users ms_users <<<"$(deltas 'w == 0')"
read -r n_patch ms_patch <<<"$(deltas 'w > 0')"
read -r n_prov ms_prov <<<"$(kind '(providers, changed users)')"
read -r n_ips ms_ips <<<"$(kind '(whitelist, changed users)')"
read -r n_all ms_all <<<"$(kind '(everything)')"
agent_down bigred

echo
echo "== summary"
printf '  snapshot load (1M users, 100k whitelist): %s ms        goal < 5000 ms\n' "${load_ms:-?}"
printf '  agent RSS after load:                     %s MB        goal < 400 MB\n' "$(( ${rss_kb:-0} / 1024 ))"
echo "  loads during the change runs (count, mean duration):"
printf '    changed users only            %4s  %8s ms\n' "$n_users" "$ms_users"
printf '    changed whitelist rows        %4s  %8s ms\n' "$n_patch" "$ms_patch"
printf '    providers + changed users     %4s  %8s ms\n' "$n_prov" "$ms_prov"
printf '    whole whitelist               %4s  %8s ms\n' "$n_ips" "$ms_ips"
printf '    everything (1M users)         %4s  %8s ms\n' "$n_all" "$ms_all"
echo "  goals: >= 250,000 verdicts/s without Redis, >= 100,000/s with Redis, p99 < 2 ms while reloading"
echo "  (the echo line is the server's ceiling with a trivial handler, measured in the same run)"
mkdir -p "$GW_ROOT/build/bench"
printf '%s\n' "${RESULTS[@]}" >"$GW_ROOT/build/bench/verdict.txt"
