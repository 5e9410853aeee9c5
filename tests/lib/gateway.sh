# shellcheck shell=bash
# tests/lib/gateway.sh: the whole gateway on loopback, for end-to-end tests,
# benchmarks and the local stack (`make run`). Source after services.sh.
#
#   start_gateway_stack [--no-db]   PostgreSQL (schema + demo data), Redis,
#                                   the upstream stand-in, an origin, the agent
#                                   and HAProxy with haproxy/gateway.cfg
#
# Exports: GW_PORT (HAProxy's proxy port), GW_PROXY_PORT (PROXY protocol
# port), AGENT_PORT, UP_PORT_MIN..UP_PORT_MAX (stand-in ports, used by all
# demo providers), ORIGIN_PORT, ORIGIN_TLS_PORT, GW_CA (test CA file),
# UP_RECORD (the stand-in's username record), GW_SNAPSHOT (agent snapshot
# file). Variables read: GW_AGENT (agent binary), GW_AGENT_ARGS (extra agent
# options), PORT (fixed proxy port instead of a free one).

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
    GW_PORT=${PORT:-$(free_port)}
    GW_PROXY_PORT=$(free_port)
    UP_RECORD=$GW_TMP/upstream.record
    GW_SNAPSHOT=$GW_TMP/agent.snapshot
    GW_CA=$GW_TMP/ca/ca.pem
    export UP_PORT_MIN UP_PORT_MAX ORIGIN_PORT ORIGIN_TLS_PORT AGENT_PORT GW_PORT \
        GW_PROXY_PORT UP_RECORD GW_SNAPSHOT GW_CA

    start_postgres || return 1
    GW_DEMO_PORT_MIN=$UP_PORT_MIN GW_DEMO_PORT_MAX=$UP_PORT_MAX db_apply --demo >/dev/null ||
        { t_fail "sql/apply.sh --demo"; return 1; }
    start_redis || return 1

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
    start_haproxy "$GW_ROOT/haproxy/gateway.cfg" PORT="$GW_PORT" GW_BIND=127.0.0.1 \
        GW_PROXY_PORT="$GW_PROXY_PORT" GW_TRUSTED_PROXIES="127.0.0.1/32" \
        GW_AGENT_ADDR="127.0.0.1:$AGENT_PORT" \
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
        --snapshot-path "$GW_SNAPSHOT" --shutdown-timeout 5 ${GW_AGENT_ARGS:-} "$@" || return 1
    wait_port "$AGENT_PORT" 15 || { t_fail "agent did not listen"; return 1; }
}

# wait_gateway_ready: /health answers 200 (HAProxy sees the agent).
wait_gateway_ready() {
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
