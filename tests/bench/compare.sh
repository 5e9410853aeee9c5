#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# shellcheck disable=SC2086 # lists of process groups ("${C_GROUPS[c]}") are split on purpose
# tests/bench/compare.sh: the gateway against direct, plain HAProxy and Squid,
# in one run, on loopback.
#
#   bash tests/bench/compare.sh          (or `make bench`, through tests/bench/run.sh): ~8 minutes
#   QUICK=1 bash tests/bench/compare.sh  one repetition, 2 s runs, 2,000 idle tunnels: ~2 minutes
#
# Contenders, each doing the same job against the same upstream stand-in
# (tests/tools/upstream) and origin (tests/tools/origin):
#   direct   the client talks to the stand-in itself (the ceiling: no proxy);
#   plain    HAProxy with haproxy/gateway.cfg minus the agent (no SPOE filter,
#            no verdict rules, static upstream and static Proxy-Authorization:
#            compare/plain-haproxy.awk); gateway minus plain = what the agent costs;
#   gateway  this project: start_gateway_stack (tests/lib/gateway.sh) with the
#            optimized agent (agent/gw-agent), PostgreSQL and Redis;
#   squid    Debian's Squid (compare/squid.conf.in): Basic auth of the client
#            (basic_ncsa_auth, htpasswd file), the stand-in as a parent
#            cache_peer with login=, never_direct, nothing cached, no access log.
# Workloads:
#   (a) http     wrk keep-alive clients, absolute-form GET of a 1 KiB body
#                (compare/proxy-get.lua), at each of CMP_HTTP_CONNS connections;
#                the largest is the headline, all of them make the plot. One
#                customer credential: for the gateway a sticky session
#                (myuser-session-cmp1), so one upstream credential, the best
#                case for its keep-alive to the provider;
#   (a2) creds   the same at the largest connection count with CMP_CREDS (1,000)
#                credentials taken in turn (sessions myuser-session-cmpN: as many
#                upstream credentials and provider ports for the gateway;
#                Squid's peer login is one whatever the client's; plain
#                HAProxy's upstream credential is static);
#   (b) connect  a new CONNECT tunnel per exchange (tunnel-load.c, built here):
#                connect, CONNECT + 200, GET 1 KiB inside, close; CMP_TUNNEL_CONNS at once;
#   (c) xfer     one 1 GiB download through a tunnel (curl -p), MB/s;
#   (d) idle     CMP_IDLE tunnels held open and idle (one 1 KiB exchange each
#                first), on freshly (re)started proxy processes: RSS after minus
#                RSS before, per tunnel.
# For each run: rate, latency percentiles, CPU seconds of the proxy processes
# (HAProxy master+worker; gateway: + agent; Squid: + its auth helpers) from
# /proc/<pid>/stat per 10,000 requests (per GiB for xfer), how busy the
# benchmark's processes kept the proxy core and the load core, how busy each
# core was in all, peak RSS (VmHWM, reset before each run), and the share of
# the two cores used by processes outside the benchmark (other engineers' jobs
# on the same machine) plus hypervisor steal.
# Pinning (2+ CPUs): the proxy side (HAProxy, agent, Squid) on CPU
# CMP_PROXY_CPU (0), everything else (wrk, tunnel-load, curl, stand-in, origin,
# Redis, PostgreSQL) on CMP_LOAD_CPU (1): the same for every contender. HAProxy
# sizes its threads from its CPU set: one thread; the agent gets --threads 1.
# Everything runs at nice CMP_NICE. The contenders alternate inside each
# repetition (the order rotates between repetitions); (d) runs after all
# repetitions of (a)-(c). Medians over CMP_REPEAT repetitions are reported.
# (a) and (a2) also count the upstream connections the stand-in accepted (its
# SIGUSR1 counters): per 1,000 requests, what keep-alive to the provider saved.
# Nothing is asserted: the table is printed with the goals beside it, and
# written to CMP_OUT: compare.md (Markdown), compare.csv (every run),
# compare.json (medians, goals, conditions), compare-latency.png (gnuplot:
# req/s, p50 and p99 against wrk connections) and plain-haproxy.diff.
#
# Environment:
#   QUICK            1: one repetition, 2 s runs, 2,000 idle tunnels (default 0)
#   CMP_REPEAT       repetitions (3; QUICK 1)
#   CMP_SECONDS      seconds per run (5; QUICK 2)
#   CMP_HTTP_CONNS   wrk connection counts ("1 8 32 64")
#   CMP_CREDS        credentials in (a2) (1000)
#   CMP_TUNNEL_CONNS tunnels set up at once in (b) (32)
#   CMP_XFER         size of the (c) download (1g)
#   CMP_IDLE         idle tunnels in (d) (10000; QUICK 2000; capped by ulimit -n)
#   CMP_OUT          output directory (tests/bench/results; QUICK: build/bench/compare-quick)
#   CMP_PROXY_CPU, CMP_LOAD_CPU   the two cores (0, 1)
#   CMP_NICE         niceness of everything the script starts (-10), so that
#                    other jobs on the machine disturb the runs less
#   CMP_QUIET_WAIT   seconds to wait before starting until the machine is less
#                    than CMP_QUIET_MAX (15) % busy (0: do not wait, report it)
#   CMP_PROFILE      1: also perf-record the gateway and plain HAProxy under
#                    (a) and (b): profile-*.txt in CMP_OUT
#   GW_BENCH_AGENT   the agent binary (agent/gw-agent, built if missing)
# Needs: wrk, squid, htpasswd (apache2-utils), curl, gcc, taskset, socat;
# gnuplot (gnuplot-nox) for the plot; perf (linux-perf) for CMP_PROFILE=1.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export GW_AGENT=${GW_BENCH_AGENT:-$ROOT/agent/gw-agent}
# shellcheck source=../lib/services.sh
. "$HERE/../lib/services.sh"
# shellcheck source=../lib/gateway.sh
. "$HERE/../lib/gateway.sh"

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
    REPEAT=${CMP_REPEAT:-1} SECS=${CMP_SECONDS:-2} IDLE_WANT=${CMP_IDLE:-2000}
    OUT=${CMP_OUT:-$ROOT/build/bench/compare-quick}
else
    REPEAT=${CMP_REPEAT:-3} SECS=${CMP_SECONDS:-5} IDLE_WANT=${CMP_IDLE:-10000}
    OUT=${CMP_OUT:-$HERE/results}
fi
read -r -a HTTP_CONNS <<<"${CMP_HTTP_CONNS:-1 8 32 64}"
TUNNEL_CONNS=${CMP_TUNNEL_CONNS:-32}
CREDS=${CMP_CREDS:-1000}
XFER=${CMP_XFER:-1g}
PROXY_CPU=${CMP_PROXY_CPU:-0}
LOAD_CPU=${CMP_LOAD_CPU:-1}
PROFILE=${CMP_PROFILE:-0}
CONTENDERS=(direct plain gateway squid)
LUA=$HERE/compare/proxy-get.lua
HZ=$(getconf CLK_TCK)

die() {
    echo "compare bench: $*" >&2
    exit 1
}
note() { printf '[compare] %s\n' "$*" >&2; }

svc_init || exit 1
# Background jobs of this shell (tunnel-load hold, perf record) end with it.
BG_JOBS=()
# shellcheck disable=SC2317 # called by the cleanup hook
end_jobs() {
    local p
    for p in "${BG_JOBS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    return 0
}
svc_on_exit end_jobs

# --- tools ----------------------------------------------------------------------
for tool in wrk squid htpasswd curl gcc taskset haproxy ps; do
    command -v "$tool" >/dev/null 2>&1 || die "missing $tool: run 'make bench-deps'"
done
[ -x /usr/lib/squid/basic_ncsa_auth ] || die "missing /usr/lib/squid/basic_ncsa_auth (package squid)"
HAVE_GNUPLOT=1
command -v gnuplot >/dev/null 2>&1 || { HAVE_GNUPLOT=0; note "gnuplot not installed (apt-get install gnuplot-nox): no plot"; }
if [ ! -x "$GW_AGENT" ]; then
    make -s -C "$ROOT" agent/gw-agent >&2 || die "cannot build $GW_AGENT"
fi
TL=$GW_TMP/tunnel-load
gcc -O2 -Wall -Wextra -Werror -std=gnu11 "$HERE/tunnel-load.c" -o "$TL" || die "cannot build tunnel-load"

# --- limits and pinning -------------------------------------------------------------
# HAProxy derives maxconn from the open-files limit; each idle tunnel holds two
# descriptors in the proxy (and two in the stand-in).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null
NOFILE=$(ulimit -n)
IDLE_N=$IDLE_WANT
if [ "$NOFILE" != unlimited ] && [ $(((NOFILE - 200) / 2)) -lt "$IDLE_N" ]; then
    IDLE_N=$(((NOFILE - 200) / 2))
    note "ulimit -n is $NOFILE (cannot raise it here): $IDLE_N idle tunnels instead of $IDLE_WANT"
fi

NCPU=$(nproc)
if [ "$NCPU" -ge 2 ]; then
    PIN=1
    PIN_NOTE="proxy side (HAProxy, agent, Squid) on CPU $PROXY_CPU; wrk/tunnel-load/curl, stand-in, origin, Redis, PostgreSQL on CPU $LOAD_CPU"
else
    PIN=0
    PIN_NOTE="one CPU: no pinning, everything shares it"
fi
# pin_group <cpu> <pgid...>: every thread of every process in the groups.
pin_group() {
    [ "$PIN" = 1 ] || return 0
    local cpu=$1 p
    shift
    for p in $(group_pids "$@"); do
        taskset -a -p -c "$cpu" "$p" >/dev/null 2>&1
    done
}
pin_self() { [ "$PIN" = 0 ] || taskset -p -c "$1" $$ >/dev/null; }

# --- process accounting -------------------------------------------------------------
# Every service here runs as the leader of its own process group (services.sh):
# a contender's processes are its groups' members (HAProxy: master + worker;
# Squid: + auth helpers).
group_pids() {
    [ $# -gt 0 ] || return 0
    ps -eo pid=,pgid= | awk -v gs=" $* " 'index(gs, " " $2 " ") { print $1 }'
}
_proc_files() { # <file> <pgid...>
    local f=$1 p
    shift
    for p in $(group_pids "$@"); do printf '/proc/%s/%s\n' "$p" "$f"; done
}
group_ticks() { # utime + stime, clock ticks
    local files
    files=$(_proc_files stat "$@")
    [ -n "$files" ] || { echo 0; return; }
    awk '{ sub(/.*\) /, ""); t += $12 + $13 } END { print t + 0 }' $files 2>/dev/null
}
group_status_kb() { # <VmRSS|VmHWM> <pgid...>
    local key=$1 files
    shift
    files=$(_proc_files status "$@")
    [ -n "$files" ] || { echo 0; return; }
    awk -v k="$key:" '$1 == k { s += $2 } END { print s + 0 }' $files 2>/dev/null
}
hwm_reset() {
    local p
    for p in $(group_pids "$@"); do echo 5 >"/proc/$p/clear_refs" 2>/dev/null; done
}
self_child_ticks() { # CPU of this shell's reaped descendants (wrk, tunnel-load, curl)
    awk '{ sub(/.*\) /, ""); print $14 + $15 }' "/proc/$$/stat"
}
cpu_stat() { # "busy steal busy_proxy_cpu busy_load_cpu", ticks (busy: user+nice+system+irq+softirq)
    awk -v p="cpu$PROXY_CPU" -v l="cpu$LOAD_CPU" '$1 == "cpu" { b = $2 + $3 + $4 + $7 + $8; s = $9 }
        $1 == p { bp = $2 + $3 + $4 + $7 + $8 } $1 == l { bl = $2 + $3 + $4 + $7 + $8 }
        END { print b, s, bp + 0, bl + 0 }' /proc/stat
}

# meas_begin <pgid...> / meas_end: around one run. meas_end sets M_WALL (s),
# M_CPU (proxy CPU s), M_CORE (% of one core), M_LOADC (% of one core used by
# the load side: stand-in, origin, Redis, PostgreSQL, wrk/tunnel-load/curl),
# M_PEAK_KB (sum of VmHWM),
# M_OTHER (% of all CPUs used by processes outside the benchmark, plus kernel
# time not charged to a process), M_STEAL (% stolen by the hypervisor),
# M_BUSYP / M_BUSYL (% busy of the proxy CPU / the load CPU, whoever used it).
meas_begin() {
    M_GROUPS="$*"
    hwm_reset $M_GROUPS
    M_T0=$EPOCHREALTIME
    M_P0=$(group_ticks $M_GROUPS)
    M_K0=$(group_ticks $KNOWN_GROUPS)
    M_L0=$(self_child_ticks)
    M_LS0=$(group_ticks $LOADSIDE_GROUPS)
    M_A0=$(group_ticks "$AGENT_GROUP") M_R0=$(group_ticks "$REDIS_PID")
    read -r M_B0 M_S0 M_BP0 M_BL0 < <(cpu_stat)
}
meas_end() {
    local p1 k1 l1 b1 s1 ls1 bp1 bl1
    p1=$(group_ticks $M_GROUPS)
    ls1=$(group_ticks $LOADSIDE_GROUPS)
    M_AGENT_T=$(($(group_ticks "$AGENT_GROUP") - M_A0)) M_REDIS_T=$(($(group_ticks "$REDIS_PID") - M_R0))
    k1=$(group_ticks $KNOWN_GROUPS)
    l1=$(self_child_ticks)
    read -r b1 s1 bp1 bl1 < <(cpu_stat)
    M_WALL=$(awk -v a="$M_T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
    M_CPU=$(awk -v t=$((p1 - M_P0)) -v hz="$HZ" 'BEGIN { printf "%.2f", t / hz }')
    M_CORE=$(awk -v c="$M_CPU" -v w="$M_WALL" 'BEGIN { printf "%.0f", (w > 0 ? 100 * c / w : 0) }')
    M_LOADC=$(awk -v t=$((ls1 - M_LS0 + l1 - M_L0)) -v w="$M_WALL" -v hz="$HZ" \
        'BEGIN { printf "%.0f", (w > 0 ? 100 * t / (w * hz) : 0) }')
    if [ -n "$M_GROUPS" ]; then
        M_PEAK_KB=$(group_status_kb VmHWM $M_GROUPS)
    else
        M_PEAK_KB=NA
    fi
    M_OTHER=$(awk -v b=$((b1 - M_B0)) -v k=$((k1 - M_K0)) -v l=$((l1 - M_L0)) -v w="$M_WALL" \
        -v hz="$HZ" -v n="$NCPU" 'BEGIN { o = b - k - l; if (o < 0) o = 0
            printf "%.0f", (w > 0 ? 100 * o / (w * hz * n) : 0) }')
    M_BUSYP=$(awk -v t=$((bp1 - M_BP0)) -v w="$M_WALL" -v hz="$HZ" 'BEGIN { printf "%.0f", (w > 0 ? 100 * t / (w * hz) : 0) }')
    M_BUSYL=$(awk -v t=$((bl1 - M_BL0)) -v w="$M_WALL" -v hz="$HZ" 'BEGIN { printf "%.0f", (w > 0 ? 100 * t / (w * hz) : 0) }')
    M_STEAL=$(awk -v s=$((s1 - M_S0)) -v w="$M_WALL" -v hz="$HZ" -v n="$NCPU" \
        'BEGIN { printf "%.0f", (w > 0 ? 100 * s / (w * hz * n) : 0) }')
}

# breakdown <contender> <count> <unit>: for the gateway, the agent's and
# Redis's CPU seconds per <unit> of <count> (M_AGENT_PER, M_REDIS_PER; NA for
# the others).
breakdown() {
    M_AGENT_PER=NA M_REDIS_PER=NA
    [ "$1" = gateway ] || return 0
    M_AGENT_PER=$(per "$(awk -v t="$M_AGENT_T" -v hz="$HZ" 'BEGIN { print t / hz }')" "$2" "$3")
    M_REDIS_PER=$(per "$(awk -v t="$M_REDIS_T" -v hz="$HZ" 'BEGIN { print t / hz }')" "$2" "$3")
}
# per <cpu_s> <count> <unit>: CPU seconds per <unit> of <count>.
per() { awk -v c="$1" -v n="$2" -v u="$3" 'BEGIN { if (n > 0) printf "%.3f", c * u / n; else print "NA" }'; }
kv() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }

mkdir -p "$OUT"
CSV_TMP=$GW_TMP/runs.csv
echo "rep,workload,contender,load,count,wall_s,rate,p50_us,p90_us,p99_us,p999_us,setup_p50_us,setup_p99_us,errors,proxy_cpu_s,cpu_per,core_pct,load_core_pct,peak_rss_kb,rss_before_kb,rss_after_kb,kib_per_tunnel,other_pct,steal_pct,closed,agent_cpu_per,redis_cpu_per,proxy_cpu_busy_pct,load_cpu_busy_pct,up_conns_per_k" >"$CSV_TMP"
M_UPK=NA
record() { # the first 25 fields, in the header's order (the rest come from meas_end/breakdown/run_http)
    local IFS=,
    echo "$*,$M_AGENT_PER,$M_REDIS_PER,$M_BUSYP,$M_BUSYL,$M_UPK" >>"$CSV_TMP"
    M_UPK=NA
}

# --- the machine's other load --------------------------------------------------------
# machine_busy: % of all CPUs busy over 2 s (nothing of this benchmark runs yet).
machine_busy() {
    local a b
    a=$(awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
    sleep 2
    b=$(awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ")
        printf "%.0f", (y[2] > x[2] ? 100 * (y[1] - x[1]) / (y[2] - x[2]) : 0) }'
}
BUSY_START=$(machine_busy)
QUIET_DEADLINE=$((SECONDS + ${CMP_QUIET_WAIT:-0}))
while [ "$BUSY_START" -gt "${CMP_QUIET_MAX:-15}" ] && [ "$SECONDS" -lt "$QUIET_DEADLINE" ]; do
    note "the machine is ${BUSY_START}% busy with other work: waiting for a quiet moment (CMP_QUIET_WAIT)"
    sleep 8
    BUSY_START=$(machine_busy)
done
[ "$BUSY_START" -le "${CMP_QUIET_MAX:-15}" ] ||
    note "the machine is ${BUSY_START}% busy with other work before the start: figures will be skewed (see 'other %')"

# Everything this script starts inherits its niceness: at CMP_NICE (-10) the
# benchmark's own processes, all alike, get most of the CPU when other jobs
# compete for it, which shrinks (but does not remove) their noise.
NICE=${CMP_NICE:--10}
if [ "$NICE" != 0 ] && ! renice -n "$NICE" -p $$ >/dev/null 2>&1; then
    note "cannot renice to $NICE: running at nice $(ps -o ni= -p $$ | tr -d ' ')"
    NICE=$(ps -o ni= -p $$ | tr -d ' ')
fi

# --- the stack ------------------------------------------------------------------------
T_START=$SECONDS # the time reported: from here (the quiet wait above not counted)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
note "starting the gateway stack (agent: $GW_AGENT); $PIN_NOTE"
pin_self "$PROXY_CPU" # what starts now inherits the proxy CPU: HAProxy, agent
# The harness picks free ports in 20000-60000, which overlaps the kernel's
# ephemeral range: another job's outgoing connection can take one before the
# service binds it. Start again from scratch when that happens.
stack_down() {
    local n
    for n in haproxy-plain squid agent upstream origin; do stop_bg "$n"; done
    stop_haproxy
    stop_redis
    stop_postgres
    rm -rf "$GW_TMP/pg" "$GW_TMP/redis" "$GW_TMP/ca"
    unset PG_PORT
}
for attempt in 1 2 3; do
    GW_AGENT_ARGS="--threads 1 ${GW_AGENT_ARGS:-}" start_gateway_stack >"$GW_TMP/stack.out" 2>&1 && break
    [ "$attempt" = 3 ] && { cat "$GW_TMP/stack.out" >&2; die "the gateway stack did not start"; }
    note "the gateway stack did not start (attempt $attempt): $(grep -m 1 -iE 'in use|fail' "$GW_TMP/stack.out")"
    stack_down
done
UP_PORT=$UP_PORT_MIN
UP_USER=bench UP_PASS=demo-global-pass # the stand-in accepts any user with a demo password
UP_AUTH="Basic $(gw_b64 "$UP_USER:$UP_PASS")"
PG_GROUP=$(head -n 1 "$GW_TMP/pg/data/postmaster.pid" 2>/dev/null)
PG_GROUP=$(ps -o pgid= -p "$PG_GROUP" 2>/dev/null | tr -d ' ')
AGENT_GROUP=$(bg_pid agent)
LOADSIDE_GROUPS="$(bg_pid upstream) $(bg_pid origin) ${REDIS_PID:-} ${PG_GROUP:-}"
pin_group "$LOAD_CPU" $LOADSIDE_GROUPS

# plain HAProxy: gateway.cfg minus the agent.
PLAIN_CFG=$GW_TMP/plain.cfg
awk -f "$HERE/compare/plain-haproxy.awk" "$ROOT/haproxy/gateway.cfg" >"$PLAIN_CFG"
if grep -qE 'spoe|txn\.gw\.|ring@|gw-billing' <(grep -v '^[[:space:]]*#' "$PLAIN_CFG"); then
    die "plain-haproxy.awk left agent rules in $PLAIN_CFG: update it for haproxy/gateway.cfg"
fi
# Ports below the ephemeral range (32768-60999 here): plain HAProxy and Squid
# are restarted for the idle-tunnel runs, and an outgoing connection's
# TIME_WAIT on the same port number would keep them from binding it again.
low_port() {
    local p
    while p=$(free_port); do
        [ "$p" -lt 32768 ] && { echo "$p"; return 0; }
    done
    return 1
}
PLAIN_PORT=$(low_port) PLAIN_PROXY_PORT=$(low_port)
PLAIN_ENV=(PORT="$PLAIN_PORT" GW_BIND=127.0.0.1 GW_PROXY_PORT="$PLAIN_PROXY_PORT"
    GW_TRUSTED_PROXIES=127.0.0.1/32 GW_ERRORS_DIR="$ROOT/haproxy/errors"
    GW_STATS_SOCKET="$GW_TMP/haproxy-plain.sock" GW_TIMEOUT_CONNECT=2s GW_TIMEOUT_SERVER=5s
    GW_GRACE=10s CMP_UPSTREAM="127.0.0.1:$UP_PORT" CMP_UP_AUTH="$UP_AUTH")
env "${PLAIN_ENV[@]}" haproxy -c -f "$PLAIN_CFG" >"$GW_TMP/plain-check.log" 2>&1 ||
    die "haproxy -c rejected the plain config: $(cat "$GW_TMP/plain-check.log")"
start_bg haproxy-plain env "${PLAIN_ENV[@]}" haproxy -W -db -f "$PLAIN_CFG" || die "plain HAProxy did not start"
wait_port "$PLAIN_PORT" 10 || die "plain HAProxy does not listen"

# Squid.
SQUID_DIR=$GW_TMP/squid
SQUID_PORT=$(low_port)
mkdir -p "$SQUID_DIR"
htpasswd -b -c "$SQUID_DIR/passwd" myuser mypassword >/dev/null 2>&1 || die "htpasswd failed"
# (a2)'s customers: the same password hash under each name
squid_hash=$(cut -d: -f2- "$SQUID_DIR/passwd")
for ((i = 1; i <= CREDS; i++)); do echo "myuser-session-cmp$i:$squid_hash"; done >>"$SQUID_DIR/passwd"
sed -e "s|@PORT@|$SQUID_PORT|g" -e "s|@DIR@|$SQUID_DIR|g" -e "s|@UP_PORT@|$UP_PORT|g" \
    -e "s|@UP_LOGIN@|$UP_USER:$UP_PASS|g" -e "s|@MAXFD@|$NOFILE|g" \
    "$HERE/compare/squid.conf.in" >"$SQUID_DIR/squid.conf"
chown -R proxy: "$SQUID_DIR" 2>/dev/null
squid -k parse -f "$SQUID_DIR/squid.conf" >"$GW_TMP/squid-parse.log" 2>&1 ||
    die "squid rejected its config: $(grep -iE 'error|fatal' "$GW_TMP/squid-parse.log" | head -5)"
start_squid() {
    start_bg squid squid -N -f "$SQUID_DIR/squid.conf" || die "squid did not start"
    wait_port "$SQUID_PORT" 20 || die "squid does not listen: $(tail -n 5 "$SQUID_DIR/cache.log")"
}
start_squid
pin_self "$LOAD_CPU" # from here on: load generators

declare -A C_PORT C_USER C_PASS C_LABEL
C_PORT=([direct]=$UP_PORT [plain]=$PLAIN_PORT [gateway]=$GW_PORT [squid]=$SQUID_PORT)
C_USER=([direct]=$UP_USER [plain]=myuser [gateway]=myuser-session-cmp1 [squid]=myuser)
C_PASS=([direct]=$UP_PASS [plain]=mypassword [gateway]=mypassword [squid]=mypassword)
C_LABEL=([direct]="direct (stand-in)" [plain]="plain HAProxy" [gateway]="gateway" [squid]="Squid")
declare -A C_GROUPS
refresh_groups() {
    C_GROUPS=([direct]="" [plain]="$(bg_pid haproxy-plain)" [gateway]="$HAPROXY_PID $(bg_pid agent)"
        [squid]="$(bg_pid squid)")
    KNOWN_GROUPS="${C_GROUPS[plain]} ${C_GROUPS[gateway]} ${C_GROUPS[squid]} $LOADSIDE_GROUPS"
}
refresh_groups
c_auth() { echo "Basic $(gw_b64 "${C_USER[$1]}:${C_PASS[$1]}")"; }
# (a2)'s credentials, "Basic ..." per line: the stand-in's own users for
# direct, the gateway's customer (as Squid's htpasswd has it) for the others.
creds_file() { # <user prefix> <password> <file>
    local i
    for ((i = 1; i <= CREDS; i++)); do echo "Basic $(gw_b64 "$1-session-cmp$i:$2")"; done >"$3"
}
creds_file "$UP_USER" "$UP_PASS" "$GW_TMP/creds-direct"
creds_file myuser mypassword "$GW_TMP/creds-customer"
declare -A C_CREDS=([direct]=$GW_TMP/creds-direct [plain]=$GW_TMP/creds-customer
    [gateway]=$GW_TMP/creds-customer [squid]=$GW_TMP/creds-customer)
ORIGIN=127.0.0.1:$ORIGIN_PORT
URL=http://$ORIGIN/bytes/1024

# Per-request records pile up: HAProxy's log lines (stderr, as configured),
# the stand-in's --record file, the gateway's billing records in Redis
# (traffic:logs, which the settlement worker would consume). Emptied after
# every run, outside the measurement, so long runs fill neither disk nor memory.
trim_logs() {
    local f
    for f in "$GW_TMP/haproxy.log" "$GW_TMP/haproxy-plain.log" "$UP_RECORD"; do
        [ -f "$f" ] && : >"$f"
    done
    redis_gw UNLINK traffic:logs >/dev/null 2>&1
}

# check <contender>: one plain request and one tunnel must fetch 1 KiB.
check() {
    local c=$1 got mode
    for mode in "" -p; do
        got=$(curl -s $mode -x "http://127.0.0.1:${C_PORT[$c]}" -U "${C_USER[$c]}:${C_PASS[$c]}" \
            -o /dev/null -w '%{http_code} %{size_download}' --max-time 10 "$URL")
        [ "$got" = "200 1024" ] || {
            echo "compare bench: ${C_LABEL[$c]} ${mode:+(tunnel) }answered '$got' for $URL" >&2
            tail -n 20 "$GW_TMP/haproxy.log" "$GW_TMP/haproxy-plain.log" "$SQUID_DIR/cache.log" \
                "$GW_TMP/agent.log" 2>/dev/null >&2
            return 1
        }
    done
}
for c in "${CONTENDERS[@]}"; do check "$c" || exit 1; done
for c in "${CONTENDERS[@]}"; do # warm-up, not recorded
    CMP_URL=$URL CMP_AUTH=$(c_auth "$c") wrk -t1 -c8 -d1s -s "$LUA" "http://127.0.0.1:${C_PORT[$c]}/" >/dev/null 2>&1
    "$TL" --proxy "127.0.0.1:${C_PORT[$c]}" --target "$ORIGIN" --auth "$(c_auth "$c")" rate --conns 8 \
        --duration 1 >/dev/null 2>&1
done
trim_logs

# --- the runs ---------------------------------------------------------------------------
run_http() { # <contender> <conns> <rep> [http|creds]
    local c=$1 n=$2 rep=$3 w=${4:-http} out line req creds= up0 up1
    [ "$w" = creds ] && creds=${C_CREDS[$c]}
    up0=$(standin_stat upstream conns)
    meas_begin ${C_GROUPS[$c]}
    out=$(CMP_URL=$URL CMP_AUTH=$(c_auth "$c") CMP_AUTH_FILE=$creds wrk -t1 -c"$n" -d"${SECS}s" --timeout 5s -s "$LUA" \
        "http://127.0.0.1:${C_PORT[$c]}/" 2>&1)
    meas_end
    up1=$(standin_stat upstream conns)
    trim_logs
    line=$(grep '^RESULT ' <<<"$out" | tail -n 1)
    if [ -z "$line" ]; then
        note "http ${C_LABEL[$c]} -c$n: wrk printed no result: $(tail -n 3 <<<"$out")"
        return 0
    fi
    req=$(kv requests "$line")
    breakdown "$c" "$req" 10000
    [ -n "$up0" ] && [ -n "$up1" ] && [ "$req" -gt 0 ] &&
        M_UPK=$(awk -v a="$up0" -v b="$up1" -v r="$req" 'BEGIN { printf "%.1f", (b - a) * 1000 / r }')
    local upk=$M_UPK
    record "$rep" "$w" "$c" "$n" "$req" "$M_WALL" "$(kv rate "$line")" "$(kv p50_us "$line")" \
        "$(kv p90_us "$line")" "$(kv p99_us "$line")" "$(kv p999_us "$line")" NA NA \
        "$(kv errors "$line")" "$M_CPU" "$(per "$M_CPU" "$req" 10000)" "$M_CORE" "$M_LOADC" "$M_PEAK_KB" \
        NA NA NA "$M_OTHER" "$M_STEAL" NA
    printf '  rep %s  %-8s %-18s -c%-3s %9.0f req/s  p50 %6.2f ms  p99 %6.2f ms  proxy %3s%% load %3s%% other %s%%  cpu%s %s%% cpu%s %s%%  errors %s  upstream conns/1k %s\n' \
        "$rep" "$w" "${C_LABEL[$c]}" "$n" "$(kv rate "$line")" "$(awk -v u="$(kv p50_us "$line")" 'BEGIN { print u / 1000 }')" \
        "$(awk -v u="$(kv p99_us "$line")" 'BEGIN { print u / 1000 }')" "$M_CORE" "$M_LOADC" "$M_OTHER" "$PROXY_CPU" "$M_BUSYP" "$LOAD_CPU" "$M_BUSYL" "$(kv errors "$line")" "$upk"
}

run_connect() { # <contender> <rep>
    local c=$1 rep=$2 out req
    meas_begin ${C_GROUPS[$c]}
    out=$("$TL" --proxy "127.0.0.1:${C_PORT[$c]}" --target "$ORIGIN" --auth "$(c_auth "$c")" \
        --path /bytes/1024 rate --conns "$TUNNEL_CONNS" --duration "$SECS" 2>&1)
    meas_end
    trim_logs
    if ! grep -q '^requests=' <<<"$out"; then
        note "connect ${C_LABEL[$c]}: tunnel-load printed no result: $(tail -n 3 <<<"$out")"
        return 0
    fi
    req=$(kv requests "$out")
    breakdown "$c" "$req" 10000
    record "$rep" connect "$c" "$TUNNEL_CONNS" "$req" "$M_WALL" "$(kv rate "$out")" "$(kv p50_us "$out")" \
        "$(kv p90_us "$out")" "$(kv p99_us "$out")" "$(kv p999_us "$out")" "$(kv setup_p50_us "$out")" \
        "$(kv setup_p99_us "$out")" "$(kv errors "$out")" "$M_CPU" "$(per "$M_CPU" "$req" 10000)" \
        "$M_CORE" "$M_LOADC" "$M_PEAK_KB" NA NA NA "$M_OTHER" "$M_STEAL" NA
    printf '  rep %s  connect  %-18s -c%-3s %9.0f tun/s  p50 %6.2f ms  p99 %6.2f ms  proxy %3s%% load %3s%% other %s%%  cpu%s %s%% cpu%s %s%%  errors %s\n' \
        "$rep" "${C_LABEL[$c]}" "$TUNNEL_CONNS" "$(kv rate "$out")" "$(awk -v u="$(kv p50_us "$out")" 'BEGIN { print u / 1000 }')" \
        "$(awk -v u="$(kv p99_us "$out")" 'BEGIN { print u / 1000 }')" "$M_CORE" "$M_LOADC" "$M_OTHER" "$PROXY_CPU" "$M_BUSYP" "$LOAD_CPU" "$M_BUSYL" "$(kv errors "$out")"
}

run_xfer() { # <contender> <rep>
    local c=$1 rep=$2 out code size total ttfb mbs
    meas_begin ${C_GROUPS[$c]}
    out=$(curl -s -p -x "http://127.0.0.1:${C_PORT[$c]}" -U "${C_USER[$c]}:${C_PASS[$c]}" -o /dev/null \
        -w '%{http_code} %{size_download} %{time_total} %{time_starttransfer}' --max-time 300 \
        "http://$ORIGIN/bytes/$XFER")
    meas_end
    trim_logs
    read -r code size total ttfb <<<"$out"
    if [ "${code:-}" != 200 ] || [ -z "${size:-}" ] || [ "$size" = 0 ]; then
        note "xfer ${C_LABEL[$c]}: curl got '$out'"
        return 0
    fi
    mbs=$(awk -v s="$size" -v t="$total" 'BEGIN { printf "%.1f", s / t / 1e6 }')
    breakdown "$c" "$size" 1073741824
    record "$rep" xfer "$c" 1 "$size" "$M_WALL" "$mbs" NA NA NA NA \
        "$(awk -v t="$ttfb" 'BEGIN { printf "%.0f", t * 1e6 }')" NA 0 "$M_CPU" \
        "$(per "$M_CPU" "$size" 1073741824)" "$M_CORE" "$M_LOADC" "$M_PEAK_KB" NA NA NA "$M_OTHER" "$M_STEAL" NA
    printf '  rep %s  xfer     %-18s %s: %7.1f MB/s  proxy %3s%% load %3s%% other %s%%  cpu%s %s%% cpu%s %s%%\n' \
        "$rep" "${C_LABEL[$c]}" "$XFER" "$mbs" "$M_CORE" "$M_LOADC" "$M_OTHER" "$PROXY_CPU" "$M_BUSYP" "$LOAD_CPU" "$M_BUSYL"
}

# haproxy_reload <master pid>: a new worker (fresh memory), the old one gone.
haproxy_reload() {
    local m=$1 old new deadline=$((SECONDS + 20))
    old=$(pgrep -P "$m" | tr '\n' ' ')
    kill -USR2 "$m" || return 1
    while :; do
        new=$(pgrep -P "$m" | tr '\n' ' ')
        if [ -n "$new" ] && [ "$(wc -w <<<"$new")" = 1 ] && [[ " $old " != *" ${new% } "* ]]; then
            return 0
        fi
        [ "$SECONDS" -lt "$deadline" ] || { note "haproxy $m: reload did not settle (workers: $new)"; return 1; }
        sleep 0.1
    done
}

# fresh <contender>: restart the proxy processes (HAProxy: a reload, new
# worker; Squid: stop and start), then one request through it.
fresh() {
    local c=$1 i
    case $c in
    plain) haproxy_reload "$(bg_pid haproxy-plain)" ;;
    gateway)
        haproxy_reload "$HAPROXY_PID"
        wait_gateway_ready >/dev/null 2>&1
        ;;
    squid)
        stop_bg squid
        start_squid
        ;;
    esac
    refresh_groups
    for i in 1 2 3 4 5 6 7 8 9 10; do
        check "$c" 2>/dev/null && return 0
        sleep 0.5
    done
    check "$c"
}

run_idle() { # <contender> <rep>
    local c=$1 rep=$2 out="$GW_TMP/hold.out" pid line before after deadline closed kib
    fresh "$c" || { note "idle ${C_LABEL[$c]}: no fresh proxy"; return 0; }
    sleep 0.5
    before=$(group_status_kb VmRSS ${C_GROUPS[$c]})
    # the gateway's figure includes the agent, whose growth is not per tunnel
    # (its SPOE connection buffers grow with the setup burst): shown apart
    local agent_before=NA agent_after=NA
    [ "$c" = gateway ] && agent_before=$(group_status_kb VmRSS "$(bg_pid agent)")
    meas_begin ${C_GROUPS[$c]}
    : >"$out"
    "$TL" --proxy "127.0.0.1:${C_PORT[$c]}" --target "$ORIGIN" --auth "$(c_auth "$c")" \
        hold --count "$IDLE_N" --parallel 64 --exchange >"$out" 2>&1 &
    pid=$!
    BG_JOBS+=("$pid")
    deadline=$((SECONDS + 120))
    until grep -q '^held=' "$out" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
            note "idle ${C_LABEL[$c]}: tunnel-load did not finish setting up: $(tail -n 2 "$out")"
            kill -TERM "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
            return 0
        fi
        sleep 0.1
    done
    meas_end # the setup phase: CPU per setup
    line=$(grep '^held=' "$out")
    sleep 2 # idle
    after=$(group_status_kb VmRSS ${C_GROUPS[$c]})
    [ "$c" = gateway ] && agent_after=$(group_status_kb VmRSS "$(bg_pid agent)")
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    closed=$(kv closed_while_held "$(cat "$out")")
    trim_logs
    local held
    held=$(kv held "$line")
    if [ -n "${C_GROUPS[$c]}" ] && [ "${held:-0}" -gt 0 ]; then
        kib=$(awk -v a="$after" -v b="$before" -v n="$held" 'BEGIN { printf "%.2f", (a - b) / n }')
    else
        kib=NA before=NA after=NA
    fi
    breakdown "$c" "${held:-0}" 10000
    record "$rep" idle "$c" "$IDLE_N" "$held" "$M_WALL" "$(kv rate "$line")" NA NA NA NA \
        "$(kv setup_p50_us "$line")" "$(kv setup_p99_us "$line")" "$(kv errors "$line")" "$M_CPU" \
        "$(per "$M_CPU" "$held" 10000)" "$M_CORE" "$M_LOADC" "$M_PEAK_KB" "$before" "$after" "$kib" "$M_OTHER" \
        "$M_STEAL" "${closed:-NA}"
    printf '  rep %s  idle     %-18s %s held (%s failed, %s closed early): %s KiB/tunnel, RSS %s -> %s kB, setup %6.0f/s\n' \
        "$rep" "${C_LABEL[$c]}" "$held" "$(kv failed "$line")" "${closed:-?}" "$kib" "$before" "$after" "$(kv rate "$line")"
    if [ "$agent_before" != NA ] && [ "${held:-0}" -gt 0 ]; then
        printf '           of it the agent: RSS %s -> %s kB (%s KiB/tunnel); HAProxy alone: %s KiB/tunnel\n' \
            "$agent_before" "$agent_after" \
            "$(awk -v a="$agent_after" -v b="$agent_before" -v n="$held" 'BEGIN { printf "%.2f", (a - b) / n }')" \
            "$(awk -v a="$((after - agent_after))" -v b="$((before - agent_before))" -v n="$held" 'BEGIN { printf "%.2f", (a - b) / n }')"
    fi
}

rotate() { # <rep>: the contenders, starting at a different one each repetition
    local r=$1 n=${#CONTENDERS[@]} i
    for ((i = 0; i < n; i++)); do printf '%s ' "${CONTENDERS[$(((i + r - 1) % n))]}"; done
}

note "$REPEAT repetition(s), ${SECS} s per run; http at ${HTTP_CONNS[*]} connections, connect at $TUNNEL_CONNS, $XFER transfer, $IDLE_N idle tunnels"
for ((rep = 1; rep <= REPEAT; rep++)); do
    order=$(rotate "$rep")
    for n in "${HTTP_CONNS[@]}"; do
        for c in $order; do run_http "$c" "$n" "$rep"; done
    done
    for c in $order; do run_http "$c" "${HTTP_CONNS[${#HTTP_CONNS[@]} - 1]}" "$rep" creds; done
    for c in $order; do run_connect "$c" "$rep"; done
    for c in $order; do run_xfer "$c" "$rep"; done
done
# Idle tunnels last: each run restarts the proxies, and what a proxy keeps
# after 10,000 tunnels (HAProxy's pools) must not count in the peaks above.
for ((rep = 1; rep <= REPEAT; rep++)); do
    for c in $(rotate "$rep"); do run_idle "$c" "$rep"; done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
HAPROXY_THREADS=$(echo "show info" | socat - "$GW_TMP/haproxy.sock" 2>/dev/null | awk -F': ' '$1 == "Nbthread" { print $2 }')

# --- profile (CMP_PROFILE=1) ----------------------------------------------------------------
# perf record (software clock: no hardware counters in this VM) on the proxy
# processes during one (a) run at the largest connection count and one (b) run.
if [ "$PROFILE" = 1 ]; then
    if command -v perf >/dev/null 2>&1; then
        main_conns=${HTTP_CONNS[${#HTTP_CONNS[@]} - 1]}
        for c in gateway plain; do
            pids=$(group_pids ${C_GROUPS[$c]} | paste -sd, -)
            for w in http connect; do
                data=$GW_TMP/perf-$c-$w.data
                perf record -q -e cpu-clock -F 1999 -g -p "$pids" -o "$data" -- sleep "$SECS" >/dev/null 2>&1 &
                ppid=$!
                BG_JOBS+=("$ppid")
                if [ "$w" = http ]; then
                    res=$(CMP_URL=$URL CMP_AUTH=$(c_auth "$c") wrk -t1 -c"$main_conns" -d"${SECS}s" -s "$LUA" \
                        "http://127.0.0.1:${C_PORT[$c]}/" 2>&1 | grep '^RESULT')
                else
                    res=$("$TL" --proxy "127.0.0.1:${C_PORT[$c]}" --target "$ORIGIN" --auth "$(c_auth "$c")" \
                        rate --conns "$TUNNEL_CONNS" --duration "$SECS" 2>&1)
                fi
                wait "$ppid"
                trim_logs
                req=$(kv requests "$res")
                samples=$(perf report -i "$data" --stdio -n --no-children -g none --sort comm 2>/dev/null |
                    awk '$1 ~ /%$/ { s += $2 } END { print s + 0 }')
                {
                    printf '# %s, perf record -e cpu-clock -F 1999 on the proxy processes (tests/bench/compare.sh, CMP_PROFILE=1)\n' \
                        "$(date -u '+%Y-%m-%d %H:%M UTC')"
                    printf '# %s under %s: %s requests in %s s; %s samples = %s us of proxy CPU per request\n' \
                        "${C_LABEL[$c]}" "$w" "$req" "$SECS" "$samples" \
                        "$(awk -v s="$samples" -v r="$req" 'BEGIN { if (r > 0) printf "%.1f", s / 1999 * 1e6 / r; else print "?" }')"
                    echo "# by process and object"
                    perf report -i "$data" --stdio -n --no-children --sort comm,dso -g none 2>/dev/null | grep -v '^#' | grep -v '^$'
                    echo "# by symbol (>= 0.4 %)"
                    perf report -i "$data" --stdio -n --no-children --sort comm,dso,sym -g none --percent-limit 0.4 \
                        2>/dev/null | grep -v '^#' | grep -v '^$'
                } >"$OUT/profile-$c-$w.txt"
                note "profile: ${OUT#"$ROOT"/}/profile-$c-$w.txt"
            done
        done
    else
        note "CMP_PROFILE=1 but perf is not installed (apt-get install linux-perf)"
    fi
fi

# --- report ---------------------------------------------------------------------------------
cp "$CSV_TMP" "$OUT/compare.csv"
diff -u --label haproxy/gateway.cfg --label plain-haproxy.cfg "$ROOT/haproxy/gateway.cfg" "$PLAIN_CFG" \
    >"$OUT/plain-haproxy.diff"
ELAPSED=$((SECONDS - T_START))
awk -F, -f "$HERE/compare/report.awk" \
    -v md="$OUT/compare.md" -v json="$OUT/compare.json" -v dat="$OUT/compare-latency.dat" \
    -v date="$(date -u '+%Y-%m-%d %H:%M UTC')" -v kernel="$(uname -r)" \
    -v cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)" -v ncpu="$NCPU" \
    -v haproxy="$(haproxy -v | head -n 1 | awk '{print $3}')" \
    -v squid="$(squid -v | head -n 1 | awk '{print $4}')" -v wrk="$(wrk -v 2>&1 | head -n 1 | awk '{print $2}')" \
    -v pin="$PIN_NOTE; HAProxy threads: ${HAPROXY_THREADS:-?}, agent threads: 1; all at nice $NICE" -v repeat="$REPEAT" -v secs="$SECS" -v quick="$QUICK" \
    -v http_conns="${HTTP_CONNS[*]}" -v tunnel_conns="$TUNNEL_CONNS" -v creds="$CREDS" -v xfer="$XFER" \
    -v idle_n="$IDLE_N" -v idle_want="$IDLE_WANT" -v nofile="$NOFILE" \
    -v load_start="$LOAD_START" -v load_end="$LOAD_END" -v elapsed="$ELAPSED" -v busy_start="$BUSY_START" \
    "$OUT/compare.csv"
if [ "$HAVE_GNUPLOT" = 1 ]; then
    gnuplot -e "dat='$OUT/compare-latency.dat'; out='$OUT/compare-latency.png'; conns='${HTTP_CONNS[*]}'" \
        "$HERE/compare/latency.gp" 2>"$GW_TMP/gnuplot.log" ||
        note "gnuplot failed: $(head -n 5 "$GW_TMP/gnuplot.log")"
fi
echo
echo "files: ${OUT#"$ROOT"/}/{compare.md,compare.csv,compare.json,compare-latency.png,plain-haproxy.diff}; ${ELAPSED} s in all"
exit 0
