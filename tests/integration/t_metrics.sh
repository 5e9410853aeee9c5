#!/usr/bin/env bash
# Metrics, end to end: HAProxy's built-in Prometheus exporter (enabled by
# GW_METRICS_PORT in haproxy/gateway.cfg), gw-agent's and gw-settle's
# GET /metrics, scraped by a real Prometheus server (Debian's `prometheus`
# package, installed by `make test`; this script installs nothing).
#
#   - every output passes `promtool check metrics`;
#   - N requests through the gateway move the verdict counter by exactly N,
#     seen through Prometheus's HTTP API (/api/v1/query), and the settlement
#     worker's applied records by N;
#   - the exporter refuses sources outside GW_METRICS_ALLOW (403) and is not
#     on the proxy port;
#   - malformed and hostile requests to the daemons' listeners get a clear
#     4xx, a slow client is cut (408), connections are bounded (503), and none
#     of it changes a counter.
# Nothing here asserts on timing: waits are bounded polls.
set -u
. "$(dirname "$0")/../lib/services.sh"
. "$GW_ROOT/tests/lib/gateway.sh"

svc_init || exit 1
for tool in prometheus promtool; do
    command -v "$tool" >/dev/null || t_abort "$tool is missing: install Debian's prometheus package (make test-deps)"
done

# HAProxy's exporter: gateway.cfg reads these from the environment.
GW_METRICS_PORT=$(free_port)
GW_METRICS_BIND=127.0.0.1
GW_METRICS_ALLOW=127.0.0.1/32
export GW_METRICS_PORT GW_METRICS_BIND GW_METRICS_ALLOW
GW_SETTLE=${GW_SETTLE:-$GW_ROOT/build/asan/gw-settle}
GW_WITH_SETTLE=1
export GW_SETTLE GW_WITH_SETTLE
start_gateway_stack || t_abort "the gateway stack did not start"
wait_port "$AGENT_METRICS_PORT" 15 || t_abort "the agent's metrics listener did not open"
wait_port "$SETTLE_METRICS_PORT" 15 || t_abort "gw-settle's metrics listener did not open"

AGENT_M=http://127.0.0.1:$AGENT_METRICS_PORT/metrics
SETTLE_M=http://127.0.0.1:$SETTLE_METRICS_PORT/metrics
HAPROXY_M=http://127.0.0.1:$GW_METRICS_PORT/metrics
USER=myuser:mypassword
URL=http://127.0.0.1:$ORIGIN_PORT/metrics-test

# scrape <url> <file>: GET it into file; prints the status.
scrape() {
    curl -s --max-time 10 -o "$2" -w '%{http_code}' "$1"
}

# value <file> <sample>: the value of the exact sample line (name{labels}).
value() {
    awk -v s="$2" '$1 == s { print $2; found = 1 } END { if (!found) print "absent" }' "$1"
}

# --- 1. each output is valid Prometheus text ------------------------------------

for who in agent settle haproxy; do
    case $who in
    agent) url=$AGENT_M ;;
    settle) url=$SETTLE_M ;;
    haproxy) url=$HAPROXY_M ;;
    esac
    t_begin "$who: GET /metrics answers 200 and promtool check metrics finds nothing to fix"
    f=$GW_TMP/$who.metrics
    assert_eq 200 "$(scrape "$url" "$f")" "status of $url"
    lint=$(promtool check metrics <"$f" 2>&1)
    rc=$?
    if [ $who = haproxy ]; then
        # HAProxy 2.6's own exporter names one counter without _total; that
        # line is HAProxy's to fix (README, Metrics), anything else is ours.
        lint=$(grep -vx 'haproxy_process_failed_resolutions counter metrics should have "_total" suffix' <<<"$lint")
        rc=0
    fi
    assert_eq "0:" "$rc:$lint" "promtool check metrics on $who's output"
    t_end
done

t_begin "agent: the families the README lists are there, with their types"
f=$GW_TMP/agent.metrics
for fam in "gw_verdicts_total counter" "gw_verdict_duration_seconds histogram" \
    "gw_balance_fail_open_total counter" "gw_provider_requests_total counter" \
    "gw_crypt_queue_length gauge" "gw_postgres_up gauge" "gw_redis_up gauge" \
    "gw_snapshot_age_seconds gauge" "gw_snapshot_generation gauge" "gw_snapshot_rows gauge" \
    "gw_snapshot_rows_skipped gauge" "gw_snapshot_last_load_duration_seconds gauge" \
    "gw_billing_records_received_total counter" "gw_billing_records_duplicate_total counter" \
    "gw_billing_records_pushed_total counter" "gw_billing_spool_bytes gauge" \
    "gw_billing_ring_readbacks_total counter" "gw_live_streams_registered_total counter" \
    "gw_live_dumps_total counter" "gw_live_cut_messages_total counter" \
    "gw_live_sessions_shut_total counter" "gw_spoa_connections gauge"; do
    assert_match "^# TYPE $fam\$" "$(grep "^# TYPE ${fam%% *} " "$f")" "TYPE line of ${fam%% *}"
done
assert_eq 1 "$(value "$f" gw_postgres_up)" "gw_postgres_up"
assert_eq 1 "$(value "$f" gw_redis_up)" "gw_redis_up"
assert_match '^[1-9][0-9]*$' "$(value "$f" 'gw_snapshot_rows{table="users"}')" "users in the snapshot"
assert_no_match 'myuser' "$(cat "$f")" "a user name in the agent's metrics"
t_end

t_begin "settle: the worker's families are there"
f=$GW_TMP/settle.metrics
for fam in gw_settle_records_applied_total gw_settle_batches_total gw_settle_dead_letters_total \
    gw_settle_failures_total gw_settle_queue_length; do
    assert_match "^# TYPE $fam " "$(grep "^# TYPE $fam " "$f")" "TYPE line of $fam"
done
assert_eq 1 "$(value "$f" gw_settle_redis_up)" "gw_settle_redis_up"
assert_match '^[0-9]+$' "$(value "$f" 'gw_settle_queue_length{list="traffic:logs"}')" "the settlement lag"
t_end

# --- 2. the exporter is for the operator only -------------------------------------

t_begin "haproxy: the exporter refuses sources outside GW_METRICS_ALLOW, and is not on the proxy port"
code=$(curl -s --max-time 10 --interface 127.0.0.3 -o "$GW_TMP/h403" -w '%{http_code}' "$HAPROXY_M")
assert_eq 403 "$code" "status of the exporter from 127.0.0.3"
assert_match 'GW_METRICS_ALLOW' "$(cat "$GW_TMP/h403")" "the 403 says why"
assert_eq 404 "$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GW_METRICS_PORT/stats")" "another path on the exporter"
code=$(curl -s --max-time 10 -o "$GW_TMP/proxy-metrics" -w '%{http_code}' "http://127.0.0.1:$GW_PORT/metrics")
assert_eq 400 "$code" "GET /metrics on the proxy port"
assert_no_match 'haproxy_' "$(cat "$GW_TMP/proxy-metrics")" "the proxy port's answer"
t_end

# --- 3. hostile clients on the daemons' listeners (before Prometheus scrapes them: --
# its scrapes would take connection slots while the bound is checked)

# counters <url>: the lines a client could try to move (everything but gauges
# that move by themselves: ages, durations, queue lengths, connection counts).
counters() {
    curl -s --max-time 10 "$1" | grep -E '^gw_(verdicts|provider|balance|billing_records|settle_records|settle_batches|settle_dead|spoa_notify|hash)[a-z_]*(\{[^}]*\})? '
}

# status_of_raw <port> <bytes>: the status line's code of the raw request's answer.
status_of_raw() {
    gw_raw "$1" "$2" 10 | head -1 | tr -d '\r' | awk '{ print $2 }'
}

for who in agent settle; do
    if [ $who = agent ]; then port=$AGENT_METRICS_PORT; url=$AGENT_M; else port=$SETTLE_METRICS_PORT; url=$SETTLE_M; fi
    before=$(counters "$url")
    t_begin "$who: anything but GET /metrics gets a clear 4xx"
    assert_eq 405 "$(status_of_raw "$port" 'POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n')" "POST"
    assert_eq 405 "$(status_of_raw "$port" 'DELETE /metrics HTTP/1.1\r\n\r\n')" "DELETE"
    assert_eq 404 "$(status_of_raw "$port" 'GET /admin HTTP/1.1\r\n\r\n')" "another path"
    assert_eq 404 "$(status_of_raw "$port" 'GET /metrics/../health HTTP/1.1\r\n\r\n')" "a path that starts like it"
    assert_eq 505 "$(status_of_raw "$port" 'GET /metrics HTTP/2.0\r\n\r\n')" "HTTP/2.0"
    assert_eq 400 "$(status_of_raw "$port" 'GET /metrics HTTP/1.1\nHost: x\n\n')" "bare LF"
    assert_eq 400 "$(status_of_raw "$port" 'GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n')" "a chunked body"
    assert_eq 400 "$(status_of_raw "$port" 'GET /metrics HTTP/1.1\r\n folded: x\r\n\r\n')" "obsolete line folding"
    assert_eq 400 "$(status_of_raw "$port" '\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03')" "a TLS hello"
    big=$(head -c 9000 /dev/zero | tr '\0' a)
    assert_eq 431 "$(status_of_raw "$port" "GET /metrics HTTP/1.1\\r\\nX-Big: $big\\r\\n\\r\\n")" "a 9000-byte header"
    code=$(curl -s --max-time 10 -o "$GW_TMP/body" -w '%{http_code}' -X POST "$url")
    assert_eq 405 "$code" "curl -X POST"
    assert_match 'only GET /metrics' "$(cat "$GW_TMP/body")" "the 405's body says why"
    t_end

    t_begin "$who: a slow client is cut with 408, and connections are bounded"
    # a head that never ends: the listener answers 408 and closes (5 s)
    exec {slow}<>"/dev/tcp/127.0.0.1/$port"
    printf 'GET /metrics HTTP/1.1\r\nX-Slow: ' >&"$slow"
    assert_eq "HTTP/1.1 408 Request Timeout" "$(timeout 15 head -1 <&"$slow" | tr -d '\r')" "answer to a head that never ends"
    exec {slow}<&-
    # 16 idle connections fill the listener: the 17th is refused with 503
    # (once the listener has closed every earlier connection)
    wait_until 10 bash -c "[ -z \"\$(ss -Htn state established '( sport = :$port )')\" ]" ||
        t_fail "connections to $port still open" "$(ss -Htn state established "( sport = :$port )")"
    fds=()
    for ((i = 0; i < 16; i++)); do
        exec {fd}<>"/dev/tcp/127.0.0.1/$port"
        fds+=("$fd")
    done
    sleep 0.5 # let the listener accept them (a 503 below needs them counted)
    assert_eq 503 "$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' "$url")" \
        "a 17th connection (open now: $(ss -Htn state established "( sport = :$port )" | wc -l))"
    for fd in "${fds[@]}"; do exec {fd}<&-; done
    wait_until 10 bash -c "[ \"\$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' '$url')\" = 200 ]" ||
        t_fail "the listener did not answer 200 again after the idle connections closed"
    t_end

    t_begin "$who: none of it changed a counter"
    assert_eq "$before" "$(counters "$url")" "counters before and after the hostile requests"
    t_end
done

# --- 4. a real Prometheus scrapes all three ------------------------------------------------

PROM_PORT=$(free_port)
PROM=http://127.0.0.1:$PROM_PORT
mkdir -p "$GW_TMP/prometheus"
# The README's example alerts, as they are written there, are loaded too.
awk '/^### Alerts$/ { s = 1; next } s && /^#/ { exit } s && /^```/ { f = !f; next } s && f' \
    "$GW_ROOT/README.md" >"$GW_TMP/prometheus/alerts.yml"
t_begin "README: the example alerts are valid rules (promtool check rules)"
assert_match 'alert: GatewayAgentDown' "$(cat "$GW_TMP/prometheus/alerts.yml")" "the README's ### Alerts block"
out=$(promtool check rules "$GW_TMP/prometheus/alerts.yml" 2>&1)
assert_eq "0" "$?" "promtool check rules: $out"
t_end
cat >"$GW_TMP/prometheus/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: ['$GW_TMP/prometheus/alerts.yml']
scrape_configs:
  - job_name: haproxy
    static_configs: [{targets: ['127.0.0.1:$GW_METRICS_PORT']}]
  - job_name: gw-agent
    static_configs: [{targets: ['127.0.0.1:$AGENT_METRICS_PORT']}]
  - job_name: gw-settle
    static_configs: [{targets: ['127.0.0.1:$SETTLE_METRICS_PORT']}]
EOF
start_bg prometheus prometheus --config.file="$GW_TMP/prometheus/prometheus.yml" \
    --storage.tsdb.path="$GW_TMP/prometheus/data" --web.listen-address="127.0.0.1:$PROM_PORT" \
    --log.level=warn || t_abort "prometheus did not start"

# promq <expr>: the query's single value through /api/v1/query ("none" when empty).
promq() {
    curl -s --max-time 10 -G "$PROM/api/v1/query" --data-urlencode "query=$1" |
        jq -r 'if .status == "success" and (.data.result | length) > 0
               then .data.result[0].value[1] else "none" end' 2>/dev/null
}

# The last value Prometheus scraped equals <want>.
prom_is() { [ "$(promq "$1")" = "$2" ]; }

t_begin "prometheus: the three targets are up"
wait_until 60 prom_is 'count(up == 1)' 3 || t_fail "targets up: $(promq 'count(up == 1)') of 3" \
    "$(curl -s --max-time 10 "$PROM/api/v1/targets" | jq -c '[.data.activeTargets[] | {job: .labels.job, health, lastError}]' 2>&1)"
t_end

t_begin "prometheus: the README's alerts evaluate, and none fires on a healthy gateway"
wait_until 30 prom_is 'count(up == 1)' 3
wait_until 30 bash -c "[ \"\$(curl -s --max-time 10 '$PROM/api/v1/rules' | jq -r '[.data.groups[].rules[] | select(.health == \"ok\")] | length')\" = 5 ]" ||
    t_fail "rules evaluated ok" "$(curl -s --max-time 10 "$PROM/api/v1/rules" | jq -c '[.data.groups[].rules[] | {name, health, lastError}]')"
assert_eq "none" "$(promq 'ALERTS{alertstate="firing"}')" "firing alerts"
# every metric the alerts name exists (a renamed metric would leave an alert silent forever)
for m in $(grep -oE '\b(gw|haproxy)_[a-z_]+' "$GW_TMP/prometheus/alerts.yml" | sort -u); do
    assert_match '^[0-9]+$' "$(promq "count($m)")" "series of $m in Prometheus"
done
t_end

N=20
t_begin "prometheus: $N requests through the gateway move the 200 verdicts by $N"
q200='sum(gw_verdicts_total{status="200"})'
direct0=$(value <(curl -s --max-time 10 "$AGENT_M") 'gw_verdicts_total{status="200",reason="ok"}')
wait_until 30 prom_is "$q200" "$direct0" || t_fail "Prometheus never saw the agent's $direct0 verdicts" "$(promq "$q200")"
applied0=$(promq 'gw_settle_records_applied_total')
fe0=$(promq 'sum(haproxy_frontend_http_requests_total{proxy="gateway"})')
ok=0
for ((i = 0; i < N; i++)); do
    [ "$(gw_status "$USER" "$URL")" = 200 ] && ok=$((ok + 1))
done
assert_eq "$N" "$ok" "requests answered 200"
want=$((direct0 + N))
wait_until 30 prom_is "$q200" "$want" || t_fail "200 verdicts in Prometheus" "want $want, have $(promq "$q200")"
assert_eq "$want" "$(value <(curl -s --max-time 10 "$AGENT_M") 'gw_verdicts_total{status="200",reason="ok"}')" "the agent's own counter"
wait_until 30 prom_is "gw_settle_records_applied_total - $applied0 >= bool $N" 1 ||
    t_fail "records applied by gw-settle" "$(promq 'gw_settle_records_applied_total') (was $applied0)"
qfe="sum(haproxy_frontend_http_requests_total{proxy=\"gateway\"}) - $fe0 >= bool $N"
wait_until 30 prom_is "$qfe" 1 ||
    t_fail "HAProxy's frontend request counter did not move by $N" "$(promq 'sum(haproxy_frontend_http_requests_total{proxy="gateway"})') (was $fe0)"
assert_match '^[0-9.e+-]+$' "$(promq 'histogram_quantile(0.99, sum(gw_verdict_duration_seconds_bucket) by (le))')" \
    "p99 verdict latency from the histogram"
assert_eq 1 "$(promq "sum(gw_provider_requests_total{provider!=\"_other\"}) >= bool $N")" "requests per provider add up"
t_end

t_begin "prometheus: a refusal counts under its status and reason"
r0=$(value <(curl -s --max-time 10 "$AGENT_M") 'gw_verdicts_total{status="407",reason="credentials_invalid"}')
assert_eq 407 "$(gw_status myuser:wrong "$URL")" "status with a wrong password"
wait_until 30 prom_is 'gw_verdicts_total{status="407",reason="credentials_invalid"}' "$((r0 + 1))" ||
    t_fail "407 verdicts" "want $((r0 + 1)), have $(promq 'gw_verdicts_total{status="407",reason="credentials_invalid"}')"
t_end

t_begin "the daemons still serve verdicts and metrics"
assert_eq 200 "$(gw_status "$USER" "$URL")" "a request through the gateway"
assert_ok "agent alive" bg_alive agent
assert_ok "settle alive" bg_alive settle
t_end

t_summary
