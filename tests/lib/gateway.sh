# shellcheck shell=bash
# tests/lib/gateway.sh: the whole gateway on loopback, for end-to-end tests,
# benchmarks and the local stack (`make run`). Source after services.sh.
#
#   start_gateway_stack [--no-db]   PostgreSQL (schema + demo data), Redis,
#                                   the upstream stand-in, an origin, the agent
#                                   and HAProxy with haproxy/gateway.cfg
#
# With GW_EXTERNAL_POSTGRES_URI / GW_EXTERNAL_REDIS_ADDR set, that database /
# Redis is used instead of starting one (and the database is not modified:
# no schema, no demo data).
#
# Exports: GW_PORT (HAProxy's proxy port), GW_PROXY_PORT (PROXY protocol
# port), AGENT_PORT, BILLING_PORT (agent's billing listener), HOLD_PORT
# (HAProxy's gw-billing-hold frontend), GW_SPOOL, UP_PORT_MIN..UP_PORT_MAX (stand-in ports, used by all
# demo providers), ORIGIN_PORT, ORIGIN_TLS_PORT, GW_CA (test CA file),
# UP_RECORD (the stand-in's username record), GW_SNAPSHOT (agent snapshot
# file), AGENT_METRICS_PORT and SETTLE_METRICS_PORT (their /metrics).
# Variables read: GW_AGENT (agent binary), GW_HAPROXY_CFG (HAProxy's
# config, default haproxy/gateway.cfg), GW_AGENT_ARGS (extra agent
# options), PORT (fixed proxy port instead of a free one), GW_WITH_SETTLE=1
# (also start the settlement worker, GW_SETTLE: it rewrites balance:cache, so
# tests that set balances by hand leave it off).

gw_tool() { # <name>: path of a tests/tools program, built if missing
    local bin=$GW_ROOT/tests/tools/$1
    if [ ! -x "$bin" ]; then
        make -s -C "$GW_ROOT" "tests/tools/$1" >&2 || return 1
    fi
    echo "$bin"
}

start_gateway_stack() {
    local up origin port
    up=$(gw_tool upstream) || { t_fail "build tests/tools/upstream"; return 1; }
    origin=$(gw_tool origin) || { t_fail "build tests/tools/origin"; return 1; }

    UP_PORT_MIN=$(free_port_range 4)
    UP_PORT_MAX=$((UP_PORT_MIN + 3))
    ORIGIN_PORT=$(free_port)
    ORIGIN_TLS_PORT=$(free_port)
    AGENT_PORT=$(free_port)
    BILLING_PORT=$(free_port)
    HOLD_PORT=$(free_port)
    AGENT_METRICS_PORT=$(free_port)
    SETTLE_METRICS_PORT=$(free_port)
    export AGENT_METRICS_PORT SETTLE_METRICS_PORT
    GW_SPOOL=$GW_TMP/billing.spool
    GW_PORT=${PORT:-$(free_port)}
    GW_PROXY_PORT=$(free_port)
    UP_RECORD=$GW_TMP/upstream.record
    GW_SNAPSHOT=$GW_TMP/agent.snapshot
    GW_CA=$GW_TMP/ca/ca.pem
    export BILLING_PORT HOLD_PORT GW_SPOOL
    export UP_PORT_MIN UP_PORT_MAX ORIGIN_PORT ORIGIN_TLS_PORT AGENT_PORT GW_PORT \
        GW_PROXY_PORT UP_RECORD GW_SNAPSHOT GW_CA

    if [ -n "${GW_EXTERNAL_POSTGRES_URI:-}" ]; then
        POSTGRES_URI=$GW_EXTERNAL_POSTGRES_URI
        export POSTGRES_URI
    else
        start_postgres || return 1
        GW_DEMO_PORT_MIN=$UP_PORT_MIN GW_DEMO_PORT_MAX=$UP_PORT_MAX db_apply --demo >/dev/null ||
            { t_fail "sql/apply.sh --demo"; return 1; }
    fi
    if [ -n "${GW_EXTERNAL_REDIS_ADDR:-}" ]; then
        REDIS_ADDR=$GW_EXTERNAL_REDIS_ADDR
        export REDIS_ADDR
    else
        start_redis || return 1
    fi

    bash "$GW_ROOT/tests/tools/make-test-ca.sh" "$GW_TMP/ca" >/dev/null 2>&1 ||
        { t_fail "make-test-ca.sh"; return 1; }
    start_bg origin "$origin" --listen "127.0.0.1:$ORIGIN_PORT" \
        --tls-listen "127.0.0.1:$ORIGIN_TLS_PORT" \
        --cert "$GW_TMP/ca/server.pem" --key "$GW_TMP/ca/server.key" || return 1
    # The demo providers' credentials (sql/demo.sql): the stand-in accepts
    # exactly these passwords, with any rendered username.
    start_bg upstream "$up" --listen "127.0.0.1:$UP_PORT_MIN-$UP_PORT_MAX" --name stand-in \
        --password demo-global-pass --password 'de:p@ss/w0rd' --password demo-us-pass \
        --record "$UP_RECORD" || return 1

    start_agent || return 1
    if [ "${GW_WITH_SETTLE:-0}" = 1 ]; then
        start_bg settle "${GW_SETTLE:-$GW_ROOT/agent/gw-settle}" --postgres-uri "$POSTGRES_URI" \
            --redis-addr "$REDIS_ADDR" --metrics-listen "127.0.0.1:$SETTLE_METRICS_PORT" || return 1
    fi
    start_haproxy "${GW_HAPROXY_CFG:-$GW_ROOT/haproxy/gateway.cfg}" PORT="$GW_PORT" GW_BIND=127.0.0.1 \
        GW_PROXY_PORT="$GW_PROXY_PORT" GW_TRUSTED_PROXIES="127.0.0.1/32" \
        GW_AGENT_ADDR="127.0.0.1:$AGENT_PORT" GW_BILLING_ADDR="127.0.0.1:$BILLING_PORT" \
        GW_BILLING_HOLD="127.0.0.1:$HOLD_PORT" \
        GW_SPOE_CONF="$GW_ROOT/haproxy/spoe-gateway.conf" \
        GW_ERRORS_DIR="$GW_ROOT/haproxy/errors" GW_STATS_SOCKET="$GW_TMP/haproxy.sock" \
        GW_TIMEOUT_CONNECT=2s GW_TIMEOUT_SERVER=5s GW_GRACE=10s || return 1
    for port in "$ORIGIN_PORT" "$UP_PORT_MIN" "$GW_PORT"; do
        wait_port "$port" 10 || { t_fail "port $port did not open"; return 1; }
    done
    wait_gateway_ready
}

# start_agent [extra options]: the agent for this stack (ASan build by default).
start_agent() {
    # shellcheck disable=SC2086
    start_bg agent "$GW_AGENT" --listen "127.0.0.1:$AGENT_PORT" --threads 2 \
        --postgres-uri "$POSTGRES_URI" --redis-addr "$REDIS_ADDR" \
        --snapshot-path "$GW_SNAPSHOT" --billing-listen "127.0.0.1:$BILLING_PORT" \
        --spool-path "$GW_SPOOL" --haproxy-cli "$GW_TMP/haproxy.sock" \
        --haproxy-master-cli "$GW_TMP/haproxy-master.sock" --billing-hold "127.0.0.1:$HOLD_PORT" \
        --metrics-listen "127.0.0.1:${AGENT_METRICS_PORT:-0}" \
        --shutdown-timeout 5 ${GW_AGENT_ARGS:-} "$@" || return 1
    wait_port "$AGENT_PORT" 15 || { t_fail "agent did not listen"; return 1; }
}

# start_node_b: a second gateway node (its own agent and HAProxy) on the same
# PostgreSQL, Redis and stand-ins, as when the gateway scales out. Exports
# B_PORT (its proxy port), B_AGENT, B_BILLING; its CLI is $GW_TMP/haproxy-b.sock.
start_node_b() {
    B_PORT=$(free_port)
    B_AGENT=$(free_port)
    B_BILLING=$(free_port)
    export B_PORT B_AGENT B_BILLING
    start_bg agent_b "$GW_AGENT" --listen "127.0.0.1:$B_AGENT" --threads 1 \
        --postgres-uri "$POSTGRES_URI" --redis-addr "$REDIS_ADDR" \
        --snapshot-path "$GW_TMP/b.snapshot" --billing-listen "127.0.0.1:$B_BILLING" \
        --spool-path "$GW_TMP/b.spool" --haproxy-cli "$GW_TMP/haproxy-b.sock" \
        --shutdown-timeout 5 || return 1
    wait_port "$B_AGENT" 15 || { t_fail "node B's agent did not listen"; return 1; }
    start_bg haproxy_b env PORT="$B_PORT" GW_BIND=127.0.0.1 GW_PROXY_PORT="$(free_port)" \
        GW_TRUSTED_PROXIES=127.0.0.1/32 GW_AGENT_ADDR="127.0.0.1:$B_AGENT" \
        GW_BILLING_ADDR="127.0.0.1:$B_BILLING" GW_SPOE_CONF="$GW_ROOT/haproxy/spoe-gateway.conf" \
        GW_ERRORS_DIR="$GW_ROOT/haproxy/errors" GW_STATS_SOCKET="$GW_TMP/haproxy-b.sock" \
        GW_TIMEOUT_CONNECT=2s GW_TIMEOUT_SERVER=5s GW_GRACE=10s \
        haproxy -W -db -f "$GW_ROOT/haproxy/gateway.cfg" || return 1
    wait_until 15 bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$B_PORT/health)\" = 200 ]" ||
        { t_fail "node B's /health never answered 200"; return 1; }
}

# wait_gateway_ready: HAProxy's check has marked the agent up, and /health
# answers 200. Until the check (every 2 s) sees a restarted agent, the agent
# server stays down and only some verdicts get through: /health alone can
# answer 200 too early.
wait_gateway_ready() {
    wait_until 15 bash -c "echo 'show stat' | socat -t 5 - UNIX-CONNECT:$GW_TMP/haproxy.sock 2>/dev/null |
        awk -F, '\$1 == \"gw-agents\" && \$2 == \"agent\" { print \$18 }' | grep -qx UP" ||
        { t_fail "HAProxy never marked the agent up (show stat gw-agents/agent)"; return 1; }
    wait_until 15 bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$GW_PORT/health)\" = 200 ]" ||
        { t_fail "gateway /health never answered 200"; return 1; }
}

# gw_curl [curl args...]: curl through the gateway as the demo user; prints
# the response status; options after the first are passed to curl.
gw_status() { # <proxy-user> <url> [curl args...]
    local user=$1 url=$2
    shift 2
    curl -s -o /dev/null -w '%{http_code}' --max-time 10 -x "http://$user@127.0.0.1:$GW_PORT" "$@" "$url"
}

# --- helpers for the end-to-end tests (tests/integration/t_gateway*.sh) --------
#
#   gw_rec_mark [file]             number of lines in the stand-in record now
#   gw_rec_since <mark> [file]     the record lines written after gw_rec_mark
#   gw_req <proxy-user> <url> [curl args...]
#                                  one request through the gateway (password
#                                  included in <proxy-user>, e.g. myuser:mypassword;
#                                  "-" sends no proxy credentials);
#                                  sets GW_CODE (the CONNECT status when a tunnel
#                                  was refused), GW_HDRS (all response heads, CR
#                                  stripped, lower-case names), GW_BODY (a file) and
#                                  GW_REC (record lines written meanwhile)
#   gw_raw <port> <bytes> [timeout_s=5]
#                                  send raw bytes (printf %b escapes) on a fresh
#                                  connection to 127.0.0.1:<port>, print what comes
#                                  back until the peer closes (CRs kept)
#   gw_wait_status <timeout_s> <code> <proxy-user> <url> [curl args...]
#                                  repeat a request until it answers <code>
#                                  (NOTIFY-driven snapshot reloads take a moment)
#   gw_wait_health <timeout_s> <regex>
#                                  wait until GET /health's body matches <regex>
#   start_standin <name> <port|first-last> [upstream options...]
#                                  another stand-in upstream (name <name>),
#                                  record in $GW_TMP/<name>.record
#   standin_stat <name> <counter>  a stand-in's counter now (conns, requests,
#                                  idle_closes...: its SIGUSR1 "stats:" line);
#                                  <name> "upstream" is the stack's own
#   gw_b64 <text>                  base64 without line breaks

gw_b64() {
    printf '%s' "$1" | base64 -w0
}

# shellcheck disable=SC2120 # the file argument is for the sourcing scripts
gw_rec_mark() {
    local f=${1:-$UP_RECORD}
    if [ -f "$f" ]; then wc -l <"$f" | tr -d ' '; else echo 0; fi
}

gw_rec_since() {
    local mark=${1:?gw_rec_since: mark} f=${2:-$UP_RECORD}
    [ -f "$f" ] || return 0
    tail -n +"$((mark + 1))" "$f"
}

gw_req() {
    local user=${1:?gw_req: proxy user} url=${2:?gw_req: url} mark proxy
    shift 2
    mark=$(gw_rec_mark)
    proxy="http://$user@127.0.0.1:$GW_PORT"
    [ "$user" != - ] || proxy="http://127.0.0.1:$GW_PORT"
    GW_BODY=$GW_TMP/gw_req.body
    : >"$GW_BODY"
    : >"$GW_TMP/gw_req.hdrs"
    GW_CODE=$(curl -s -o "$GW_BODY" -D "$GW_TMP/gw_req.hdrs" -w '%{http_code} %{http_connect}' \
        --max-time 30 -x "$proxy" "$@" "$url")
    # A refused CONNECT (HTTPS, or -p) leaves http_code 000: use its status.
    case $GW_CODE in
    "000 000") GW_CODE=000 ;;
    "000 "*) GW_CODE=${GW_CODE#000 } ;;
    *) GW_CODE=${GW_CODE%% *} ;;
    esac
    # shellcheck disable=SC2034 # for the sourcing test script
    GW_HDRS=$(tr -d '\r' <"$GW_TMP/gw_req.hdrs" | sed 's/^[A-Za-z0-9-]*:/\L&/')
    # shellcheck disable=SC2034 # for the sourcing test script
    GW_REC=$(gw_rec_since "$mark")
}

gw_raw() {
    local port=${1:?gw_raw: port} data=${2?gw_raw: bytes} t=${3:-5} fd f=$GW_TMP/gw_raw.out
    # Built in a file first: bash's printf writes a %b argument in pieces
    # (one write per escape run), cat sends it in one write.
    printf '%b' "$data" >"$f"
    exec {fd}<>"/dev/tcp/127.0.0.1/$port" || return 1
    cat "$f" >&"$fd"
    timeout "$t" cat <&"$fd" 2>/dev/null
    exec {fd}<&-
    return 0
}

gw_wait_status() {
    local t=${1:?gw_wait_status: timeout} code=${2:?gw_wait_status: code} user=$3 url=$4 deadline got
    shift 4
    deadline=$((SECONDS + t))
    while :; do
        got=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -x "http://$user@127.0.0.1:$GW_PORT" "$@" "$url")
        [ "$got" = "$code" ] && return 0
        if [ "$SECONDS" -ge "$deadline" ]; then
            _svc_log "gw_wait_status: still $got (want $code) after ${t}s: $url as ${user%%:*}"
            return 1
        fi
        sleep 0.1
    done
}

gw_wait_health() {
    local t=${1:?gw_wait_health: timeout} re=${2:?gw_wait_health: regex} deadline body
    deadline=$((SECONDS + t))
    while :; do
        body=$(curl -s --max-time 5 "http://127.0.0.1:$GW_PORT/health")
        [[ $body =~ $re ]] && return 0
        if [ "$SECONDS" -ge "$deadline" ]; then
            _svc_log "gw_wait_health: /health still '$body' (want /$re/) after ${t}s"
            return 1
        fi
        sleep 0.1
    done
}

start_standin() {
    local name=${1:?start_standin: name} ports=${2:?start_standin: port or range} up first
    shift 2
    up=$(gw_tool upstream) || { t_fail "build tests/tools/upstream"; return 1; }
    start_bg "$name" "$up" --listen "127.0.0.1:$ports" --name "$name" \
        --record "$GW_TMP/$name.record" "$@" || return 1
    first=${ports%%-*}
    wait_port "$first" 10 || { t_fail "stand-in $name did not listen on $first"; return 1; }
}

# The stand-in prints its counters to its log ($GW_TMP/<name>.log, start_bg's)
# on SIGUSR1: this waits for that new line and reads one counter from it.
standin_stat() {
    local name=${1:?standin_stat: name} counter=${2:?standin_stat: counter}
    local log=$GW_TMP/$1.log before deadline=$((SECONDS + 3))
    before=$(grep -c 'stats: conns=' "$log" 2>/dev/null)
    signal_bg "$name" USR1 || return 1
    until [ "$(grep -c 'stats: conns=' "$log" 2>/dev/null)" != "$before" ]; do
        [ "$SECONDS" -ge "$deadline" ] && return 1
        sleep 0.05
    done
    grep 'stats: conns=' "$log" | tail -n 1 | sed -n "s/.* $counter=\([0-9]*\).*/\1/p"
}
