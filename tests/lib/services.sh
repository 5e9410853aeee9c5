# shellcheck shell=bash
# tests/lib/services.sh: the integration-test harness. Source it from a bash
# test script; it starts REAL services (Debian's PostgreSQL, Redis, HAProxy) on
# 127.0.0.1, each on a free port and in its own directory under a per-test temp
# dir, and stops all of them at exit, also when the test fails or is killed
# with INT/TERM.
#
#   . "$(dirname "$0")/../lib/services.sh"
#   svc_init
#   start_postgres || t_abort "postgres did not start"
#   db_apply --demo >/dev/null
#   start_redis
#   t_begin "demo user exists"
#   assert_eq 1 "$(psql_gw "SELECT count(*) FROM users WHERE username = 'myuser'")" "myuser rows"
#   t_end
#   t_summary          # last line: "N passed, M failed"; non-zero when M > 0
#
# Services and what they export
#   svc_init                   GW_TMP (the per-test dir), GW_ROOT, GW_AGENT
#   free_port                  prints a free TCP port (10000 up to the ephemeral range)
#   free_port_range <n>        prints the first of <n> consecutive free ports
#   start_postgres             PG_PORT, POSTGRES_URI   (stop_postgres, restart_postgres)
#   start_redis                REDIS_PORT, REDIS_ADDR, REDIS_PID (stop_redis, restart_redis)
#   start_haproxy <cfg> [VAR=value...]  HAPROXY_PID    (stop_haproxy, reload_haproxy);
#                              master CLI on $GW_TMP/haproxy-master.sock
#   start_bg <name> <cmd...>   BG_PID (of the last start); bg_pid <name>,
#                              stop_bg <name> [signal] (sets BG_STATUS), signal_bg,
#                              bg_alive <name>, bg_status <name>
#   wait_port <port> [timeout_s], wait_until <timeout_s> <cmd...>
#   db_apply [--demo], psql_gw <sql> [psql args...], redis_gw <redis-cli args...>
#   svc_on_exit <cmd...>       run a command at cleanup, before services stop
#
# Files under $GW_TMP: pg/ (data/, sock/, postgres.log), redis/ (redis.conf,
# redis.log), haproxy.log, <name>.log for start_bg, run/ (pid files, ports).
#
# Redis, HAProxy and start_bg processes run detached from the test's shell,
# each under a tiny supervisor that records its exit status: a bare `wait` in
# a test waits only for the test's own jobs (curl ... &), never for a service.
#
# Assertions: t_begin <name>, assert_eq <expected> <actual> <what>,
# assert_match <regex> <actual> <what>, assert_ok <what> <cmd...>,
# assert_fails <what> <cmd...>, t_fail <what> [detail], t_end, t_summary,
# t_abort <why>. A test case (t_begin .. t_end) passes when none of its
# assertions failed; an assertion outside a case counts as a case of its own.
# On failure it prints the case name, expected and actual, then at t_end the
# tail (GW_LOG_TAIL lines, default 25) of the logs named by T_LOGS (files, or
# names relative to $GW_TMP; default: every *.log under $GW_TMP written to
# since the case began).
#
# Environment: GW_KEEP=1 keeps $GW_TMP at exit; GW_TMPDIR (default $TMPDIR or
# /tmp) is where $GW_TMP is created; GW_PG_BINDIR overrides the PostgreSQL
# binaries' directory; GW_STOP_TIMEOUT (default 10 s) bounds every stop.
#
# Start functions report a failed start as a test failure (so it shows in the
# summary even when unchecked) and return non-zero. Call them in the test's
# main shell, never inside $(...): they set variables and track processes.

if [ -n "${_GW_SERVICES_SH:-}" ]; then
    return 0
fi
_GW_SERVICES_SH=1

GW_ROOT=${GW_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
GW_AGENT=${GW_AGENT:-$GW_ROOT/build/asan/gw-agent}
export GW_ROOT GW_AGENT

T_PASS=0
T_FAIL=0
T_NAME=
T_OPEN=0
T_CASE_FAILED=0
T_LOGS=${T_LOGS:-}

# --- small utilities ----------------------------------------------------------

_svc_log() { printf '[services] %s\n' "$*" >&2; }

_svc_need_init() {
    if [ -z "${GW_TMP:-}" ] || [ ! -d "$GW_TMP/run" ]; then
        _svc_log "call svc_init first"
        return 1
    fi
}

# Is <pid> a live (not zombie) process?
_svc_alive() {
    local pid=$1 state
    kill -0 "$pid" 2>/dev/null || return 1
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# _svc_wait_dead <pid> <timeout_s>: poll until the process is gone.
_svc_wait_dead() {
    local pid=$1 deadline=$((SECONDS + $2))
    while _svc_alive "$pid"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
    return 0
}

# _svc_tail <file> [lines]: a log tail, labelled.
_svc_tail() {
    local f=$1 n=${2:-${GW_LOG_TAIL:-25}}
    [ -f "$f" ] || return 0
    printf -- '---- last %s lines of %s\n' "$n" "$f"
    tail -n "$n" "$f" 2>/dev/null | sed 's/^/    /'
}

# Run as the postgres OS user when root (initdb and postgres refuse root).
_svc_as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

_svc_pg_bindir() {
    local d
    if [ -n "${GW_PG_BINDIR:-}" ]; then
        printf '%s\n' "$GW_PG_BINDIR"
        return 0
    fi
    # shellcheck disable=SC2012 # names are /usr/lib/postgresql/<version>/bin/initdb
    d=$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1)
    if [ -n "$d" ]; then
        dirname "$d"
    elif command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
        pg_config --bindir
    else
        return 1
    fi
}

# --- init and cleanup ------------------------------------------------------------

# svc_init: create $GW_TMP and install the cleanup trap (EXIT, INT, TERM, HUP).
svc_init() {
    local base=${GW_TMPDIR:-${TMPDIR:-/tmp}} tool
    for tool in ss mktemp awk; do
        command -v "$tool" >/dev/null 2>&1 || { _svc_log "missing tool: $tool"; return 1; }
    done
    GW_TMP=$(mktemp -d "$base/gw-test.XXXXXX") || { _svc_log "cannot create a temp dir in $base"; return 1; }
    # The postgres OS user must reach $GW_TMP/pg.
    chmod 755 "$GW_TMP"
    mkdir -p "$GW_TMP/run"
    : >"$GW_TMP/run/ports"
    _t_mark
    export GW_TMP
    _SVC_CLEANED=0
    _SVC_EXIT_HOOKS=()
    trap '_svc_cleanup' EXIT
    trap '_svc_on_signal INT 130' INT
    trap '_svc_on_signal TERM 143' TERM
    trap '_svc_on_signal HUP 129' HUP
}

# svc_on_exit <cmd...>: run at cleanup (in reverse order of registration),
# before the services stop. Use this instead of a trap of your own.
svc_on_exit() {
    _SVC_EXIT_HOOKS+=("$(printf '%q ' "$@")")
}

_svc_on_signal() {
    _svc_log "caught SIG$1, cleaning up"
    _svc_cleanup
    trap - EXIT "$1"
    exit "$2"
}

_svc_cleanup() {
    local rc=$? i f name
    [ "${_SVC_CLEANED:-1}" = 0 ] || return "$rc"
    _SVC_CLEANED=1
    for ((i = ${#_SVC_EXIT_HOOKS[@]} - 1; i >= 0; i--)); do
        eval "${_SVC_EXIT_HOOKS[i]}" || true
    done
    for f in "$GW_TMP"/run/*.pid; do
        [ -e "$f" ] || continue
        name=${f##*/}
        name=${name%.pid}
        case $name in svc-*) continue ;; esac
        stop_bg "$name" || true
    done
    stop_haproxy || true
    stop_redis || true
    stop_postgres || true
    if [ "${GW_KEEP:-0}" = 1 ]; then
        _svc_log "GW_KEEP=1: kept $GW_TMP"
    elif [ -n "${GW_TMP:-}" ] && [ -d "$GW_TMP" ]; then
        rm -rf "$GW_TMP"
    fi
    return "$rc"
}

# --- ports ------------------------------------------------------------------------

# Is TCP port <p> in use on this host (any address, any state)?
_svc_port_used() {
    local p=$1
    if grep -qx "$p" "${GW_TMP:-/nonexistent}/run/ports" 2>/dev/null; then
        return 0
    fi
    [ -n "$(ss -Htan "sport = :$p" 2>/dev/null)" ]
}

_svc_reserve() {
    [ -n "${GW_TMP:-}" ] && [ -d "$GW_TMP/run" ] && printf '%s\n' "$@" >>"$GW_TMP/run/ports"
    return 0
}

# Ports are picked below the kernel's ephemeral range (ip_local_port_range):
# an outgoing connection can take any ephemeral port as its local port, and a
# service restarted on that port would then fail to bind.
_svc_random_port() {
    local r=${SRANDOM:-$((RANDOM * 32768 + RANDOM))} low=32768 hi
    read -r low hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || low=32768
    [ "$low" -gt 12000 ] || low=32768
    printf '%s\n' $((10000 + r % (low - 10000)))
}

# free_port: print a TCP port in 10000..(ephemeral range start - 1) that nothing uses (checked with
# `ss -tan`, all states) and that this test has not handed out before.
free_port() {
    local i p
    for ((i = 0; i < 500; i++)); do
        p=$(_svc_random_port)
        _svc_port_used "$p" && continue
        _svc_reserve "$p"
        printf '%s\n' "$p"
        return 0
    done
    _svc_log "free_port: no free port found"
    return 1
}

# free_port_range <n>: print the first of <n> consecutive free ports.
free_port_range() {
    local n=${1:?free_port_range: count} i j p ok
    for ((i = 0; i < 500; i++)); do
        p=$(_svc_random_port)
        [ $((p + n - 1)) -le 60000 ] || continue
        ok=1
        for ((j = 0; j < n; j++)); do
            if _svc_port_used $((p + j)); then
                ok=0
                break
            fi
        done
        [ "$ok" = 1 ] || continue
        for ((j = 0; j < n; j++)); do _svc_reserve $((p + j)); done
        printf '%s\n' "$p"
        return 0
    done
    _svc_log "free_port_range: no $n consecutive free ports found"
    return 1
}

# wait_port <port> [timeout_s=10]: wait until something listens on the port.
wait_port() {
    local port=${1:?wait_port: port} deadline=$((SECONDS + ${2:-10}))
    while :; do
        if command -v ss >/dev/null 2>&1; then
            [ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ] && return 0
        elif (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            _svc_log "wait_port: nothing listens on port $port after ${2:-10}s"
            return 1
        fi
        sleep 0.1
    done
}

# wait_until <timeout_s> <cmd...>: run cmd every 0.1 s until it succeeds.
wait_until() {
    local deadline=$((SECONDS + ${1:?wait_until: timeout}))
    shift
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            _svc_log "wait_until: timed out: $*"
            return 1
        fi
        sleep 0.1
    done
}

# --- PostgreSQL ---------------------------------------------------------------------

_svc_pg_fail() {
    t_fail "start_postgres" "$1"
    _svc_tail "$GW_TMP/pg/postgres.log" 40
    return 1
}

# start_postgres: a throwaway cluster in $GW_TMP/pg (initdb on first start;
# later starts, e.g. restart_postgres, reuse the data and PG_PORT), listening
# only on 127.0.0.1, trust auth, fsync off, with a database `gw`.
start_postgres() {
    _svc_need_init || return 1
    local bin dir=$GW_TMP/pg data=$GW_TMP/pg/data fresh=0 port attempt ok
    bin=$(_svc_pg_bindir) || { _svc_pg_fail "no PostgreSQL server binaries (apt-get install postgresql)"; return 1; }
    if [ ! -f "$data/PG_VERSION" ]; then
        fresh=1
        mkdir -p "$dir/sock"
        if [ "$(id -u)" = 0 ]; then
            id postgres >/dev/null 2>&1 || { _svc_pg_fail "running as root but there is no postgres OS user"; return 1; }
            chown -R postgres: "$dir"
            if ! runuser -u postgres -- test -w "$dir"; then
                _svc_pg_fail "the postgres OS user cannot write $dir (set GW_TMPDIR to a world-traversable dir)"
                return 1
            fi
        fi
        if ! (cd "$dir" && _svc_as_pg "$bin/initdb" -D "$data" -U postgres -A trust -E UTF8 \
            --locale=C --no-sync) >"$GW_TMP/pg-initdb.log" 2>&1; then
            _svc_pg_fail "initdb failed: $(tail -n 5 "$GW_TMP/pg-initdb.log")"
            return 1
        fi
        cat >>"$data/postgresql.conf" <<EOF

# --- integration tests (tests/lib/services.sh) ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir/sock'
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 32MB
max_connections = 100
log_line_prefix = '%m [%p] %q%u@%d '
EOF
    fi
    for attempt in 1 2 3; do
        if [ "$fresh" = 1 ] || [ -z "${PG_PORT:-}" ]; then
            port=$(free_port) || return 1
        else
            port=$PG_PORT
        fi
        ok=0
        if (cd "$dir" && _svc_as_pg "$bin/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 30 \
            -o "-p $port" start) >"$GW_TMP/pg-ctl.log" 2>&1; then
            ok=1
            break
        fi
        # Lost a race for the port? Try another one (fresh clusters only).
        if [ "$fresh" = 1 ] && grep -q 'could not bind\|Address already in use' "$dir/postgres.log" 2>/dev/null; then
            _svc_log "postgres: port $port taken, retrying (attempt $attempt)"
            continue
        fi
        break
    done
    if [ "$ok" != 1 ]; then
        _svc_pg_fail "pg_ctl start failed on port $port: $(tail -n 3 "$GW_TMP/pg-ctl.log")"
        return 1
    fi
    local deadline=$((SECONDS + 30))
    until "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -t 1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            _svc_pg_fail "not ready on 127.0.0.1:$port after 30s"
            return 1
        fi
        sleep 0.2
    done
    PG_PORT=$port
    POSTGRES_URI="postgres://postgres@127.0.0.1:$PG_PORT/gw?sslmode=disable"
    export PG_PORT POSTGRES_URI
    if [ "$fresh" = 1 ]; then
        if ! "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
            -c 'CREATE DATABASE gw' >"$GW_TMP/pg-createdb.log" 2>&1; then
            _svc_pg_fail "CREATE DATABASE gw failed: $(cat "$GW_TMP/pg-createdb.log")"
            return 1
        fi
    fi
    return 0
}

# stop_postgres: fast shutdown (disconnects clients); the data stays.
stop_postgres() {
    local bin data=${GW_TMP:-/nonexistent}/pg/data pid
    [ -f "$data/postmaster.pid" ] || return 0
    bin=$(_svc_pg_bindir) || return 1
    if (cd "$GW_TMP/pg" && _svc_as_pg "$bin/pg_ctl" -D "$data" -m fast -w -t "${GW_STOP_TIMEOUT:-10}" stop) \
        >>"$GW_TMP/pg-ctl.log" 2>&1; then
        return 0
    fi
    pid=$(head -n 1 "$data/postmaster.pid" 2>/dev/null)
    if [ -n "$pid" ] && _svc_alive "$pid"; then
        _svc_log "postgres: fast stop failed, killing $pid"
        kill -KILL "$pid" 2>/dev/null
        _svc_wait_dead "$pid" 5 || true
    fi
    rm -f "$data/postmaster.pid"
    return 0
}

# restart_postgres: stop, then start again on the same port with the same data.
restart_postgres() {
    stop_postgres && start_postgres
}

# db_apply [--demo]: sql/apply.sh against $POSTGRES_URI (its output on stdout).
db_apply() {
    "$GW_ROOT/sql/apply.sh" "${POSTGRES_URI:?db_apply: start_postgres first}" "$@"
}

# psql_gw <sql> [psql args...]: run SQL on the gw database; unaligned,
# tuples only ("-At"), stops at the first error.
psql_gw() {
    local sql=${1?psql_gw: sql}
    shift
    psql -X -q -v ON_ERROR_STOP=1 -At "$@" -d "${POSTGRES_URI:?psql_gw: start_postgres first}" -c "$sql"
}

# --- detached processes ---------------------------------------------------------------
# Every service and start_bg process runs detached from the test's shell (so a
# bare `wait` in a test only waits for the test's own jobs, never for a
# service), as the leader of its own process group, under a small bash
# supervisor (job control on, in a session of its own) that records its exit
# status; signals to the group never reach the supervisor. Files:
# $GW_TMP/run/<id>.pid (the process = its group id), .status (exit status,
# written once it has exited).

# _svc_spawn <id> <log> <cmd...>: start cmd; sets _SVC_SPAWNED to its pid.
_svc_spawn() {
    local id=$1 log=$2 base deadline
    shift 2
    base=$GW_TMP/run/$id
    rm -f "$base.pid" "$base.status"
    # shellcheck disable=SC2016 # the supervisor's script is single-quoted on purpose
    (setsid bash -c '
        set -m
        "${@:3}" >>"$2" 2>&1 </dev/null &
        c=$!
        echo "$c" >"$1.pid.tmp" && mv -f "$1.pid.tmp" "$1.pid"
        wait "$c"
        echo "$?" >"$1.status"
    ' gw-supervise "$base" "$log" "$@" >/dev/null 2>&1 </dev/null &)
    deadline=$((SECONDS + 5))
    until [ -s "$base.pid" ]; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            _svc_log "$id: the supervisor did not start"
            return 1
        fi
        sleep 0.02
    done
    _SVC_SPAWNED=$(cat "$base.pid")
}

# _svc_group_live <pgid>: are there live (non-zombie) processes in the group?
_svc_group_live() {
    [ -n "$(ps -eo pgid=,stat= 2>/dev/null | awk -v g="$1" '$1 == g && $2 !~ /^Z/')" ]
}

# _svc_kill_group <id> <signal>: signal the process group, else the process.
_svc_kill_group() {
    local pid
    pid=$(cat "$GW_TMP/run/$1.pid" 2>/dev/null) || return 0
    kill -"$2" -- "-$pid" 2>/dev/null || kill -"$2" "$pid" 2>/dev/null
}

# _svc_stop <id> <signal> <group:1|0>: signal (the group, or the process only),
# wait GW_STOP_TIMEOUT (default 10 s), then TERM (when the first signal was
# not TERM: 5 s more), then KILL the group. Sets _SVC_STATUS to the exit
# status (128+n when killed by signal n; empty when unknown). Returns 0.
_svc_stop() {
    local id=$1 sig=$2 group=$3 base pid killed=0 deadline
    base=${GW_TMP:-/nonexistent}/run/$id
    _SVC_STATUS=
    pid=$(cat "$base.pid" 2>/dev/null) || return 0
    if _svc_alive "$pid"; then
        if [ "$group" = 1 ]; then
            _svc_kill_group "$id" "$sig"
        else
            kill -"$sig" "$pid" 2>/dev/null
        fi
        if ! _svc_wait_dead "$pid" "${GW_STOP_TIMEOUT:-10}"; then
            if [ "$sig" != TERM ]; then
                _svc_log "$id (pid $pid): still running ${GW_STOP_TIMEOUT:-10}s after SIG$sig, sending TERM"
                kill -TERM "$pid" 2>/dev/null
            fi
            if [ "$sig" = TERM ] || ! _svc_wait_dead "$pid" 5; then
                _svc_log "$id (pid $pid): no exit after SIGTERM, killing"
                _svc_kill_group "$id" KILL
                killed=1
                _svc_wait_dead "$pid" 5 || true
            fi
        fi
    fi
    # The supervisor writes the status right after the process has gone.
    deadline=$((SECONDS + 3))
    until [ -s "$base.status" ] || [ "$SECONDS" -ge "$deadline" ]; do sleep 0.02; done
    if [ -s "$base.status" ]; then
        _SVC_STATUS=$(cat "$base.status")
    elif [ "$killed" = 1 ]; then
        _SVC_STATUS=137
    fi
    # Whatever is left in its group (a shell wrapper's children, say).
    if _svc_group_live "$pid"; then
        kill -KILL -- "-$pid" 2>/dev/null
    fi
    rm -f "$base.pid" "$base.status"
    return 0
}

# --- Redis ----------------------------------------------------------------------------

# start_redis [port]: redis-server on 127.0.0.1, no persistence, in
# $GW_TMP/redis; a restart (restart_redis) keeps the port so clients reconnect.
# Exports REDIS_PORT, REDIS_ADDR (and REDIS_PID).
start_redis() {
    _svc_need_init || return 1
    local dir=$GW_TMP/redis port=${1:-} attempt pid deadline
    command -v redis-server >/dev/null 2>&1 || { t_fail "start_redis" "redis-server not installed"; return 1; }
    mkdir -p "$dir"
    for attempt in 1 2 3; do
        [ -n "${1:-}" ] || port=$(free_port) || return 1
        cat >"$dir/redis.conf" <<EOF
port $port
bind 127.0.0.1
protected-mode no
dir $dir
save ""
appendonly no
daemonize no
logfile ""
EOF
        _svc_spawn svc-redis "$dir/redis.log" redis-server "$dir/redis.conf" || break
        pid=$_SVC_SPAWNED
        deadline=$((SECONDS + 10))
        while _svc_alive "$pid"; do
            if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ]; then
                REDIS_PORT=$port
                REDIS_ADDR=127.0.0.1:$port
                REDIS_PID=$pid
                export REDIS_PORT REDIS_ADDR REDIS_PID
                return 0
            fi
            [ "$SECONDS" -lt "$deadline" ] || break
            sleep 0.05
        done
        _svc_stop svc-redis KILL 1
        if [ -z "${1:-}" ] && tail -n 5 "$dir/redis.log" | grep -q 'Address already in use'; then
            _svc_log "redis: port $port taken, retrying (attempt $attempt)"
            continue
        fi
        break
    done
    t_fail "start_redis" "redis-server did not answer PING on 127.0.0.1:$port"
    _svc_tail "$dir/redis.log" 30
    return 1
}

# stop_redis: TERM (redis exits at once: no persistence), KILL after the bound.
stop_redis() {
    _svc_stop svc-redis TERM 1
    REDIS_PID=
    return 0
}

# restart_redis: stop and start again on the same port (data is not kept).
restart_redis() {
    local port=${REDIS_PORT:?restart_redis: start_redis first}
    stop_redis && start_redis "$port"
}

# redis_gw <args...>: redis-cli against the test's Redis.
redis_gw() {
    redis-cli -h 127.0.0.1 -p "${REDIS_PORT:?redis_gw: start_redis first}" "$@"
}

# --- HAProxy -------------------------------------------------------------------------------

# start_haproxy <cfg> [VAR=value...]: check the config (haproxy -c), then run
# `haproxy -W -db -S $GW_TMP/haproxy-master.sock -f <cfg>` (master-worker, with
# the master CLI) with the extra variables in its environment (the
# config reads ports as "${VAR}"); output to $GW_TMP/haproxy.log. Returns once
# the master has forked its worker (the listeners are bound by then).
start_haproxy() {
    _svc_need_init || return 1
    local cfg=${1:?start_haproxy: config file} a out deadline
    shift
    for a in "$@"; do
        [[ $a =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || { t_fail "start_haproxy" "not VAR=value: $a"; return 1; }
    done
    if [ -n "${HAPROXY_PID:-}" ] && _svc_alive "$HAPROXY_PID"; then
        t_fail "start_haproxy" "already running (pid $HAPROXY_PID): stop_haproxy first"
        return 1
    fi
    if ! out=$(env "$@" haproxy -c -f "$cfg" 2>&1); then
        t_fail "start_haproxy" "haproxy -c -f $cfg rejected the config:
$out"
        return 1
    fi
    {
        printf -- '---- %s haproxy -W -db -S %s -f %s' "$(date '+%F %T')" "$GW_TMP/haproxy-master.sock" "$cfg"
        printf ' %q' "$@"
        printf '\n'
    } >>"$GW_TMP/haproxy.log"
    _svc_spawn svc-haproxy "$GW_TMP/haproxy.log" env "$@" haproxy -W -db -S "$GW_TMP/haproxy-master.sock" \
        -f "$cfg" || return 1
    HAPROXY_PID=$_SVC_SPAWNED
    export HAPROXY_PID
    deadline=$((SECONDS + 10))
    while _svc_alive "$HAPROXY_PID"; do
        if [ -n "$(pgrep -P "$HAPROXY_PID" 2>/dev/null)" ]; then
            return 0
        fi
        [ "$SECONDS" -lt "$deadline" ] || break
        sleep 0.05
    done
    t_fail "start_haproxy" "haproxy (pid $HAPROXY_PID) exited or started no worker"
    _svc_tail "$GW_TMP/haproxy.log" 30
    stop_haproxy
    return 1
}

# stop_haproxy: SIGUSR1 to the master (soft stop: current connections finish),
# then TERM after GW_STOP_TIMEOUT (default 10 s), then KILL.
stop_haproxy() {
    _svc_stop svc-haproxy USR1 0
    HAPROXY_PID=
    return 0
}

# reload_haproxy: SIGUSR2 to the master (re-reads the config, new worker).
reload_haproxy() {
    [ -n "${HAPROXY_PID:-}" ] && kill -USR2 "$HAPROXY_PID"
}

# --- generic background processes --------------------------------------------------

# start_bg <name> <cmd...>: run cmd detached, in its own process group (so
# stop_bg also stops its children), output appended to $GW_TMP/<name>.log.
# Sets BG_PID. Fails if <name> is already running.
start_bg() {
    _svc_need_init || return 1
    local name=${1:?start_bg: name} pid
    shift
    [ $# -gt 0 ] || { t_fail "start_bg $name" "no command"; return 1; }
    if ! [[ $name =~ ^[A-Za-z0-9_.-]+$ ]] || [[ $name == svc-* ]]; then
        t_fail "start_bg" "bad name: $name (want [A-Za-z0-9_.-]+, not svc-*)"
        return 1
    fi
    if pid=$(bg_pid "$name") && _svc_alive "$pid"; then
        t_fail "start_bg $name" "already running (pid $pid)"
        return 1
    fi
    {
        printf -- '---- %s start:' "$(date '+%F %T')"
        printf ' %q' "$@"
        printf '\n'
    } >>"$GW_TMP/$name.log"
    _svc_spawn "$name" "$GW_TMP/$name.log" "$@" || { t_fail "start_bg $name" "did not start"; return 1; }
    # shellcheck disable=SC2034 # for the sourcing test script
    BG_PID=$_SVC_SPAWNED
    return 0
}

# bg_pid <name>: print the pid of a start_bg process.
bg_pid() {
    cat "${GW_TMP:-/nonexistent}/run/${1:?bg_pid: name}.pid" 2>/dev/null
}

# bg_alive <name>: is the start_bg process running?
bg_alive() {
    local pid
    pid=$(bg_pid "$1") && _svc_alive "$pid"
}

# signal_bg <name> <signal>: send a signal to the process (not its group).
signal_bg() {
    local pid
    pid=$(bg_pid "$1") || return 1
    kill -"${2:?signal_bg: signal}" "$pid"
}

# bg_status <name>: print the exit status of a start_bg process that has
# exited (and not yet been stopped with stop_bg); fails while it runs.
bg_status() {
    cat "${GW_TMP:-/nonexistent}/run/${1:?bg_status: name}.status" 2>/dev/null
}

# stop_bg <name> [signal=TERM]: signal its process group, wait up to
# GW_STOP_TIMEOUT (default 10 s), then KILL. Sets BG_STATUS to the exit status
# (128+n when killed by signal n; empty when unknown); also when the process
# had already exited. Returns 0.
stop_bg() {
    local name=${1:?stop_bg: name}
    _svc_stop "$name" "${2:-TERM}" 1
    # shellcheck disable=SC2034 # for the sourcing test script
    BG_STATUS=$_SVC_STATUS
    return 0
}

# --- assertions --------------------------------------------------------------------------

# t_begin <name>: start a test case (ends an open one first).
t_begin() {
    [ "$T_OPEN" = 1 ] && t_end
    T_NAME=${1:?t_begin: name}
    T_OPEN=1
    T_CASE_FAILED=0
    _t_mark
}

# Logs shown for a failure are those written since the case began.
_t_mark() {
    if [ -n "${GW_TMP:-}" ] && [ -d "$GW_TMP/run" ]; then
        touch -d '-1 second' "$GW_TMP/run/t_mark" 2>/dev/null || touch "$GW_TMP/run/t_mark"
    fi
    return 0
}

# t_end: count the open case as passed or failed.
t_end() {
    [ "$T_OPEN" = 1 ] || return 0
    T_OPEN=0
    if [ "$T_CASE_FAILED" = 0 ]; then
        T_PASS=$((T_PASS + 1))
        printf 'ok    %s\n' "$T_NAME"
    else
        T_FAIL=$((T_FAIL + 1))
        printf 'FAIL  %s\n' "$T_NAME"
        _t_show_logs
    fi
    return 0
}

_t_show_logs() {
    local f
    [ -n "${GW_TMP:-}" ] && [ -d "$GW_TMP" ] || return 0
    if [ -n "$T_LOGS" ]; then
        for f in $T_LOGS; do
            case $f in /*) ;; *) f=$GW_TMP/$f ;; esac
            _svc_tail "$f"
        done
    else
        local newer=()
        [ -f "$GW_TMP/run/t_mark" ] && newer=(-newer "$GW_TMP/run/t_mark")
        while IFS= read -r f; do
            _svc_tail "$f"
        done < <(find "$GW_TMP" -maxdepth 2 -name '*.log' -type f -size +0 "${newer[@]}" 2>/dev/null | sort)
    fi
}

_t_record() { # ok|fail
    if [ "$T_OPEN" = 1 ]; then
        [ "$1" = ok ] || T_CASE_FAILED=1
    elif [ "$1" = ok ]; then
        T_PASS=$((T_PASS + 1))
    else
        T_FAIL=$((T_FAIL + 1))
        _t_show_logs
        _t_mark
    fi
}

# _t_show <label> <value>: print a value, indented, at most 40 lines.
_t_show() {
    local n
    n=$(printf '%s\n' "$2" | wc -l)
    printf '    %s:\n' "$1"
    printf '%s\n' "$2" | head -n 40 | sed 's/^/      |/'
    [ "$n" -le 40 ] || printf '      ... (%s more lines)\n' $((n - 40))
}

_t_where() {
    if [ "$T_OPEN" = 1 ]; then printf '%s: ' "$T_NAME"; fi
}

# t_fail <what> [detail]: record a failure.
t_fail() {
    printf '  FAIL: %s%s\n' "$(_t_where)" "${1:-failure}"
    [ -z "${2:-}" ] || _t_show detail "$2"
    _t_record fail
    return 0
}

# t_pass [what]: record a success (outside a case: one passed case).
t_pass() {
    _t_record ok
}

# assert_eq <expected> <actual> <what>
assert_eq() {
    if [ "$1" = "$2" ]; then
        _t_record ok
        return 0
    fi
    printf '  FAIL: %s%s\n' "$(_t_where)" "${3:-values differ}"
    _t_show expected "$1"
    _t_show actual "$2"
    _t_record fail
    return 1
}

# assert_match <regex> <actual> <what>: bash ERE, unanchored.
assert_match() {
    if [[ $2 =~ $1 ]]; then
        _t_record ok
        return 0
    fi
    printf '  FAIL: %s%s\n' "$(_t_where)" "${3:-no match}"
    _t_show "expected to match" "$1"
    _t_show actual "$2"
    _t_record fail
    return 1
}

# assert_no_match <regex> <actual> <what>: bash ERE, unanchored; must not match.
assert_no_match() {
    if ! [[ $2 =~ $1 ]]; then
        _t_record ok
        return 0
    fi
    printf '  FAIL: %s%s\n' "$(_t_where)" "${3:-unexpected match}"
    _t_show "expected not to match" "$1"
    _t_show actual "$2"
    _t_record fail
    return 1
}

# assert_ok <what> <cmd...>: the command must exit 0.
assert_ok() {
    local what=${1:?assert_ok: what} out rc=0
    shift
    out=$("$@" 2>&1) || rc=$?
    if [ "$rc" = 0 ]; then
        _t_record ok
        return 0
    fi
    printf '  FAIL: %s%s (exit %s): %s\n' "$(_t_where)" "$what" "$rc" "$*"
    _t_show output "$out"
    _t_record fail
    return 1
}

# assert_fails <what> <cmd...>: the command must exit non-zero.
assert_fails() {
    local what=${1:?assert_fails: what} out rc=0
    shift
    out=$("$@" 2>&1) || rc=$?
    if [ "$rc" != 0 ]; then
        _t_record ok
        return 0
    fi
    printf '  FAIL: %s%s (expected failure, got exit 0): %s\n' "$(_t_where)" "$what" "$*"
    _t_show output "$out"
    _t_record fail
    return 1
}

# t_summary: end the open case, print exactly "N passed, M failed" (the last
# line of the script's stdout), return non-zero when M > 0.
t_summary() {
    [ "$T_OPEN" = 1 ] && t_end
    printf '%d passed, %d failed\n' "$T_PASS" "$T_FAIL"
    [ "$T_FAIL" = 0 ]
}

# t_abort <why>: record a failure, print the summary and exit (cleanup runs).
t_abort() {
    t_fail "aborted: ${1:-}"
    t_summary
    exit 1
}
