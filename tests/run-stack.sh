#!/usr/bin/env bash
# The local stack behind `make run`: PostgreSQL (own data directory, schema and
# demo data), Redis, the gw-agent, HAProxy with haproxy/gateway.cfg and a demo
# upstream provider (tests/tools/upstream) in front of a local origin, all from
# Debian packages, on this machine. Ctrl-C stops everything, HAProxy first.
#
# Environment:
#   PORT          the proxy port (default 8080)
#   POSTGRES_URI  use this database instead of starting one (not modified:
#                 apply sql/ yourself with sql/apply.sh)
#   REDIS_ADDR    use this Redis (host:port) instead of starting one
#   GW_AGENT      agent binary (default agent/gw-agent)
set -u
GW_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GW_AGENT=${GW_AGENT:-$GW_ROOT/agent/gw-agent}
GW_EXTERNAL_POSTGRES_URI=${POSTGRES_URI:-}
GW_EXTERNAL_REDIS_ADDR=${REDIS_ADDR:-}
PORT=${PORT:-8080}
GW_WITH_SETTLE=1
export GW_ROOT GW_AGENT GW_EXTERNAL_POSTGRES_URI GW_EXTERNAL_REDIS_ADDR PORT GW_WITH_SETTLE
. "$GW_ROOT/tests/lib/services.sh"
. "$GW_ROOT/tests/lib/gateway.sh"

if ss -Htln "sport = :$PORT" | grep -q .; then
    echo "run: port $PORT is already in use (set PORT=... to pick another)" >&2
    exit 1
fi
svc_init
# Stop order on Ctrl-C: HAProxy lets in-flight requests finish, then the
# agent, then the settlement worker.
svc_on_exit stop_bg settle TERM
svc_on_exit stop_bg agent TERM
svc_on_exit stop_haproxy
start_gateway_stack || { echo "run: the stack did not start; logs are in $GW_TMP" >&2; GW_KEEP=1; exit 1; }

if [ -n "$GW_EXTERNAL_POSTGRES_URI" ]; then
    customers="Customers: the external database's (sql/apply.sh --demo adds myuser / mypassword)."
else
    customers="Demo customer: myuser / mypassword (10 GB balance)."
fi
cat <<INFO

Proxy gateway running on http://127.0.0.1:$PORT   (Ctrl-C stops everything)

  PostgreSQL  ${GW_EXTERNAL_POSTGRES_URI:-$POSTGRES_URI (demo data from sql/demo.sql)}
  Redis       $REDIS_ADDR
  gw-agent    127.0.0.1:$AGENT_PORT   ($GW_AGENT), billing records on 127.0.0.1:$BILLING_PORT
  gw-settle   traffic:logs -> PostgreSQL traffic_logs, balances and balance:cache
  HAProxy     127.0.0.1:$PORT, PROXY protocol on 127.0.0.1:$GW_PROXY_PORT
              reload: echo reload | socat - $GW_TMP/haproxy-master.sock
  upstream    demo provider stand-in on 127.0.0.1:$UP_PORT_MIN-$UP_PORT_MAX
  origin      http://127.0.0.1:$ORIGIN_PORT and https://localhost:$ORIGIN_TLS_PORT (test CA: $GW_CA)
  logs        $GW_TMP/*.log

$customers Try:

  curl http://127.0.0.1:$PORT/health
  curl -x "myuser-country-US-session-abc123-sessTime-10:mypassword@127.0.0.1:$PORT" http://127.0.0.1:$ORIGIN_PORT/bytes/64 | od -An -tx1 | head -2
  curl -x "myuser-country-DE:mypassword@127.0.0.1:$PORT" --cacert $GW_CA https://localhost:$ORIGIN_TLS_PORT/hello
  curl -x "myuser:mypassword@127.0.0.1:$PORT" -i http://127.0.0.1:$ORIGIN_PORT/hello
  curl -x "myuser:wrong@127.0.0.1:$PORT" -i http://127.0.0.1:$ORIGIN_PORT/hello      # 407

Billing: redis-cli -h ${REDIS_ADDR%:*} -p ${REDIS_ADDR##*:} LRANGE traffic:logs 0 -1 shows records not yet settled;
psql "$POSTGRES_URI" -c 'SELECT username, used_bytes FROM balances JOIN users ON users.id = user_id'

The demo provider only reaches this machine's origin (no Internet here); with
real providers in the proxies table, any target works.
INFO
while :; do sleep 1; done
