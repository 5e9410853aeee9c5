#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# tests/compose/run.sh (`make compose-test`): the compose stacks of compose/,
# started for real with a container engine, and checked from the outside.
#
# The machines this runs on reach Debian's package archive and no image
# registry, so the test makes what it cannot pull:
#   - a container engine: the one already running (DOCKER_HOST, or
#     /var/run/docker.sock), else Debian's dockerd started here (vfs storage,
#     no iptables, no IP forwarding on the host, no default bridge; data in
#     $GW_COMPOSE_CACHE/docker) and stopped at the end;
#   - a Debian bookworm base image: debootstrap, cached as a tar file in
#     $GW_COMPOSE_CACHE (tests/compose/base-rootfs.sh), then `docker import`;
#   - stand-ins of the three public images (haproxy, postgres, redis) built
#     from Debian's packages (tests/compose/standins/), tagged gw-standin/*:test;
#   - the project's image from compose/Dockerfile, and a provider stand-in
#     (tests/tools/upstream from the Dockerfile's build stage);
# and runs compose/docker-compose.yml and compose/docker-compose.nodes.yml
# with the override files beside this script (images, builds, the provider).
#
# The checks, against the running stacks: the migrate service exits 0 after
# applying the schema; the services become healthy in the documented order;
# the README's compose commands (up, the psql heredoc, /health, curl -x) work
# as written (the proxy port aside: the test's own free port; example.com is
# served by the provider stand-in, with a certificate of the test's CA that
# curl gets in CURL_CA_BUNDLE); billing records
# reach PostgreSQL through gw-settle; `docker-compose restart agent` keeps
# serving at the fixed address; `down` then `up` keeps the volumes; the agent
# and gw-settle run unprivileged; PostgreSQL and Redis cannot be reached from
# HAProxy's network; and with two gateway nodes behind an L4 HAProxy (PROXY
# protocol): a session sticks to one provider and port through either node,
# and every request is billed once across both.
#
# Traffic stays on loopback and on the networks the test creates. Every
# container, network and volume the test created is removed at exit (also
# on failure or INT/TERM), and a dockerd it started is stopped. Images stay
# in the engine (they are the cache). One run at a time per machine (a lock in
# $GW_COMPOSE_CACHE): the stacks use fixed subnets.
#
# Environment: GW_COMPOSE_CACHE (default /var/cache/gw-compose), GW_KEEP=1
# (keep the temp dir), GW_COMPOSE_LOCK_WAIT (seconds to wait for another run,
# default 1500). Ends with "N passed, M failed", after the time of each step.
set -u
# shellcheck source=../lib/services.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/services.sh"

svc_init || { echo "0 passed, 1 failed"; exit 1; }
# The test's own stdout, for what cleanup says: a signal's cleanup runs
# inside whatever redirection the interrupted command had.
exec 7>&1

CACHE=${GW_COMPOSE_CACHE:-/var/cache/gw-compose}
COMPOSE_DIR=$GW_ROOT/compose
TDIR=$GW_ROOT/tests/compose
README=$GW_ROOT/README.md
# shellcheck source=../lib/readme.sh
. "$GW_ROOT/tests/lib/readme.sh"
RUN_ID=gwtest$$
P1=${RUN_ID}s # the single-node stack
P2=${RUN_ID}n # the two-node stack
FILES1=$COMPOSE_DIR/docker-compose.yml:$TDIR/docker-compose.test.yml
FILES2=$COMPOSE_DIR/docker-compose.nodes.yml:$TDIR/docker-compose.nodes.test.yml
OWN_SOCK=/run/gw-compose/docker.sock

# --- steps and their times ------------------------------------------------------------------
STEP=
STEP_T0=0
STEP_TIMES=()
step() {
    step_done
    STEP=$1
    STEP_T0=$SECONDS
    printf '\n==== %s  (%s)\n' "$STEP" "$(date -u +%T)"
}
step_done() {
    [ -n "$STEP" ] || return 0
    local s=$((SECONDS - STEP_T0))
    STEP_TIMES+=("$(printf '%5ss  %s' "$s" "$STEP")")
    printf '==== %s: %ss\n' "$STEP" "$s"
    STEP=
}
print_times() {
    step_done
    echo
    echo "compose test step times:"
    printf '  %s\n' "${STEP_TIMES[@]}"
    printf '  %5ss  total\n' "$SECONDS"
}

# --- helpers ----------------------------------------------------------------------------------

# dc1 / dc2 <docker-compose args>: the single-node / two-node stack; a
# command still running after DC_TIMEOUT seconds (default 180) is stopped.
dc1() { (cd "$COMPOSE_DIR" && COMPOSE_PROJECT_NAME=$P1 COMPOSE_FILE=$FILES1 PORT=$PORT1 timeout -k 10 "${DC_TIMEOUT:-180}" docker-compose "$@"); }
dc2() { (cd "$COMPOSE_DIR" && COMPOSE_PROJECT_NAME=$P2 COMPOSE_FILE=$FILES2 PORT=$PORT2 timeout -k 10 "${DC_TIMEOUT:-180}" docker-compose "$@"); }

# cid <dc1|dc2> <service>: the container id.
cid() { "$1" ps -q "$2" 2>/dev/null | head -n 1; }

# health <dc1|dc2> <service>: healthy, unhealthy, starting, or none.
health() {
    local c
    c=$(cid "$1" "$2")
    [ -n "$c" ] || { echo none; return; }
    docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$c" 2>/dev/null || echo none
}
is_healthy() { [ "$(health "$1" "$2")" = healthy ]; }

# psql1 / psql2 <sql>: run SQL in the stack's PostgreSQL (unaligned, tuples only).
psql1() { dc1 exec -T postgres psql -X -v ON_ERROR_STOP=1 -At -U gateway proxydb -c "$1"; }
psql2() { dc2 exec -T postgres psql -X -v ON_ERROR_STOP=1 -At -U gateway proxydb -c "$1"; }

# stack_logs <dc1|dc2>: the stack's logs into $GW_TMP/<project>.log (shown
# with a failing case).
stack_logs() {
    local p=$P1
    [ "$1" = dc2 ] && p=$P2
    "$1" logs --no-color --tail 40 >"$GW_TMP/$p.log" 2>&1 || true
}

# case_end <dc1|dc2>: end the case; on failure, the stack's logs first.
case_end() {
    [ "$T_CASE_FAILED" = 0 ] || stack_logs "$1"
    t_end
}

# purge <project>: remove the project's containers, networks and volumes.
purge() {
    local ids
    ids=$(docker ps -aq --filter "label=com.docker.compose.project=$1" 2>/dev/null)
    [ -z "$ids" ] || docker rm -f -v $ids >/dev/null 2>&1
    ids=$(docker network ls -q --filter "label=com.docker.compose.project=$1" 2>/dev/null)
    [ -z "$ids" ] || docker network rm $ids >/dev/null 2>&1
    ids=$(docker volume ls -q --filter "label=com.docker.compose.project=$1" 2>/dev/null)
    [ -z "$ids" ] || docker volume rm $ids >/dev/null 2>&1
    return 0
}

# as_user <port> <command>: a README command as a user runs it, from compose/,
# the gateway's port 8080 replaced by the test's; its stdout (stderr goes to
# $GW_TMP/as_user.log, and is shown with a failing case).
as_user() {
    local cmd=${2//localhost:8080/localhost:$1}
    cmd=${cmd//:8080\//:$1/}
    printf -- '---- %s\n' "$cmd" >>"$GW_TMP/as_user.log"
    (cd "$COMPOSE_DIR" && timeout -k 10 300 bash -c "$cmd") 2>>"$GW_TMP/as_user.log"
}

# proxied <port> <user options> <url> [curl args]: status code of a request
# through the gateway (000 when none); headers into $GW_TMP/last.headers.
proxied() {
    local port=$1 opts=$2 url=$3
    shift 3
    curl -sS -o "$GW_TMP/last.body" -D "$GW_TMP/last.headers" -w '%{http_code}' --max-time 20 \
        -x "http://alice$opts:secret@localhost:$port" "$@" "$url" 2>>"$GW_TMP/curl.log" || true
}
upstream_of_last() { tr -d '\r' <"$GW_TMP/last.headers" | sed -n 's/^[Xx]-[Uu]pstream: //p' | tail -n 1; }

# events <project> <since>: "<unix ns>\t<action>\t<service>" of the
# project's containers since then, from the engine's event log.
events() {
    docker events --since "$2" --until "$(date +%s)" --filter "label=com.docker.compose.project=$1" \
        --format '{{.TimeNano}}	{{.Action}}	{{index .Actor.Attributes "com.docker.compose.service"}}' 2>/dev/null
}
# first_event <file> <action regex> <service>: its time (ns), or nothing.
first_event() { awk -F '\t' -v a="$2" -v s="$3" '$3 == s && $2 ~ a { print $1; exit }' "$1"; }

# rows_at_least <dc1|dc2> <n> [where]: traffic_logs has n rows (or more).
rows_at_least() {
    local n
    n=$("$1" exec -T postgres psql -XAt -U gateway proxydb -c "SELECT count(*) FROM traffic_logs ${3:-}" 2>/dev/null)
    [ "${n:-0}" -ge "$2" ]
}
# redis_is <dc1|dc2> <key> <value>
redis_is() { [ "$("$1" exec -T redis redis-cli GET "$2" 2>/dev/null | tr -d '\r')" = "$3" ]; }
# health_has <port> <regex>: /health answers 200 with a body matching.
health_has() { [[ $(curl -sf "http://localhost:$1/health") =~ $2 ]]; }
# serving <port> <url>: a request through the gateway answers 200.
serving() { [ "$(proxied "$1" -country-US-session-s1 "$2")" = 200 ]; }

# --- cleanup -----------------------------------------------------------------------------------

ENGINE_STARTED=0
ADOPTED_PID=
cleanup_engine() {
    local deadline
    if [ "$ENGINE_STARTED" = 1 ] || [ -n "$ADOPTED_PID" ]; then
        # dangling images of older builds: the engine is this test's own
        docker image prune -f >/dev/null 2>&1 || true
    fi
    if [ "$ENGINE_STARTED" = 1 ]; then
        GW_STOP_TIMEOUT=60 stop_bg dockerd
        echo "[compose] stopped the dockerd this test started" >&7
        # the host's network namespace, bind-mounted there by dockerd
        if mountpoint -q "${OWN_SOCK%/*}/exec/netns/default" 2>/dev/null; then
            umount "${OWN_SOCK%/*}/exec/netns/default" 2>/dev/null || true
        fi
    elif [ -n "$ADOPTED_PID" ] && [ "$(ps -o comm= -p "$ADOPTED_PID" 2>/dev/null)" = dockerd ]; then
        kill -TERM "$ADOPTED_PID" 2>/dev/null
        deadline=$((SECONDS + 60))
        while kill -0 "$ADOPTED_PID" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
        echo "[compose] stopped the dockerd an earlier run had left (pid $ADOPTED_PID)" >&7
    fi
}
cleanup_stacks() {
    command -v docker >/dev/null 2>&1 && [ -n "${DOCKER_HOST:-}" ] || return 0
    purge "$P2"
    purge "$P1"
    echo "[compose] removed the containers, networks and volumes of $P1 and $P2" >&7
}
svc_on_exit cleanup_engine
svc_on_exit cleanup_stacks

# --- 1. tools and engine -------------------------------------------------------------------------
step "container engine"
for tool in docker-compose debootstrap curl flock; do
    command -v "$tool" >/dev/null 2>&1 || t_abort "missing $tool (make compose-test installs it)"
done
# Debian's docker CLI (the engine's own version) first on the PATH, and
# `docker compose` (the README's spelling; Debian packages Compose v1 as
# docker-compose) as a CLI plugin running docker-compose, in this test's own
# DOCKER_CONFIG.
mkdir -p "$GW_TMP/bin" "$GW_TMP/docker/cli-plugins"
[ -x /usr/bin/docker ] && ln -s /usr/bin/docker "$GW_TMP/bin/docker"
cat >"$GW_TMP/docker/cli-plugins/docker-compose" <<'EOF'
#!/bin/sh
# `docker compose ARGS` -> `docker-compose ARGS` (Compose v1, Debian's).
if [ "$1" = docker-cli-plugin-metadata ]; then
    echo '{"SchemaVersion":"0.1.0","Vendor":"proxy gateway tests","Version":"1.29","ShortDescription":"Compose v1 (docker-compose)"}'
    exit 0
fi
shift
exec docker-compose "$@"
EOF
chmod 755 "$GW_TMP/docker/cli-plugins/docker-compose"
export PATH=$GW_TMP/bin:$PATH DOCKER_CONFIG=$GW_TMP/docker
# Compose v1 builds through the engine's API (the classic builder), which
# honours `build: network: host`.
export COMPOSE_DOCKER_CLI_BUILD=0 DOCKER_BUILDKIT=0
# exec through the docker CLI (the SDK's exec does not end when stdin does)
unset COMPOSE_INTERACTIVE_NO_CLI
command -v docker >/dev/null 2>&1 || t_abort "no docker CLI (make compose-test installs docker.io)"

mkdir -p "$CACHE"
exec 9>"$CACHE/lock"
if ! flock -n 9; then
    echo "[compose] another compose test holds $CACHE/lock: waiting"
    flock -w "${GW_COMPOSE_LOCK_WAIT:-1500}" 9 || t_abort "another compose test held $CACHE/lock too long"
fi

if [ -n "${DOCKER_HOST:-}" ] && docker info >/dev/null 2>&1; then
    echo "[compose] using the engine at DOCKER_HOST=$DOCKER_HOST"
elif DOCKER_HOST=unix:///var/run/docker.sock docker info >/dev/null 2>&1; then
    export DOCKER_HOST=unix:///var/run/docker.sock
    echo "[compose] using the running engine at $DOCKER_HOST"
elif DOCKER_HOST=unix://$OWN_SOCK docker info >/dev/null 2>&1; then
    # The engine this test starts, left running by a run that was killed
    # (the lock is ours, so no run uses it): used, then stopped like ours.
    export DOCKER_HOST=unix://$OWN_SOCK
    ADOPTED_PID=$(cat "${OWN_SOCK%/*}/dockerd.pid" 2>/dev/null)
    echo "[compose] using the engine at $DOCKER_HOST, left running by an earlier run (pid ${ADOPTED_PID:-?})"
else
    command -v dockerd >/dev/null 2>&1 || t_abort "no dockerd (make compose-test installs docker.io)"
    mkdir -p "${OWN_SOCK%/*}" "$CACHE/docker"
    # fd 9 (the lock) closed: the engine and its containers must not hold it
    start_bg dockerd bash -c 'exec 9>&-; exec "$@"' dockerd dockerd --data-root "$CACHE/docker" --exec-root "${OWN_SOCK%/*}/exec" \
        --pidfile "${OWN_SOCK%/*}/dockerd.pid" -H "unix://$OWN_SOCK" \
        --storage-driver=vfs --iptables=false --ip-forward=false --ip-masq=false --bridge=none \
        --log-level=warn || t_abort "dockerd did not start"
    ENGINE_STARTED=1
    export DOCKER_HOST=unix://$OWN_SOCK
    wait_until 60 docker info || t_abort "dockerd does not answer at $OWN_SOCK"
    echo "[compose] started dockerd (pid $(bg_pid dockerd)), data in $CACHE/docker"
fi
docker version --format 'engine {{.Server.Version}}, client {{.Client.Version}}' || true
docker-compose version --short | sed 's/^/docker-compose /'
# Leftovers of runs that were killed before their cleanup (the lock is ours).
for p in $(docker ps -a --format '{{.Label "com.docker.compose.project"}}' 2>/dev/null | grep -E '^gwtest[0-9]+[sn]$' | sort -u); do
    echo "[compose] removing leftovers of project $p"
    purge "$p"
done
for p in $(docker volume ls --format '{{.Label "com.docker.compose.project"}}' 2>/dev/null | grep -E '^gwtest[0-9]+[sn]$' | sort -u); do
    purge "$p"
done

# --- 2. images -------------------------------------------------------------------------------------
step "base image (debootstrap, cached in $CACHE)"
rootfs=$(bash "$TDIR/base-rootfs.sh" "$CACHE") || t_abort "no bookworm root file system"
tag=${rootfs##*/}
tag=${tag%.tar}
export GW_TEST_DEBIAN_IMAGE=gw-test/debian:$tag
if ! docker image inspect "$GW_TEST_DEBIAN_IMAGE" >/dev/null 2>&1; then
    docker import -c 'CMD ["bash"]' "$rootfs" "$GW_TEST_DEBIAN_IMAGE" >/dev/null \
        || t_abort "docker import $rootfs failed"
fi
echo "base image $GW_TEST_DEBIAN_IMAGE"

step "stand-in images: haproxy, postgres, redis (Debian packages)"
pids=()
for s in haproxy postgres redis; do
    docker build --network host --build-arg "BASE=$GW_TEST_DEBIAN_IMAGE" -t "gw-standin/$s:test" \
        "$TDIR/standins/$s" >"$GW_TMP/build-$s.log" 2>&1 &
    pids+=($!)
done
i=0
for s in haproxy postgres redis; do
    if ! wait "${pids[i]}"; then
        tail -n 30 "$GW_TMP/build-$s.log"
        t_abort "building the $s stand-in failed"
    fi
    i=$((i + 1))
done

step "project image (compose/Dockerfile) and provider stand-in"
PORT1=$(free_port) PORT2=$(free_port)
# The provider stand-in serves example.com (the README's target) from its
# loopback, with a certificate of this test's CA; curl trusts that CA.
bash "$GW_ROOT/tests/tools/make-test-ca.sh" "$GW_TMP/ca" 2 example.com || t_abort "make-test-ca.sh failed"
chmod 755 "$GW_TMP/ca"
export GW_TEST_CERTS=$GW_TMP/ca CURL_CA_BUNDLE=$GW_TMP/ca/ca.pem
# compose/.env as the README has a user write it (.env.example, passwords
# set), in this test's environment instead of the checkout's compose/.env.
{
    sed -E -e "s/^POSTGRES_PASSWORD=.*/POSTGRES_PASSWORD=pg-$RANDOM$RANDOM/" \
        -e "s/^REDIS_PASSWORD=.*/REDIS_PASSWORD=redis-$RANDOM$RANDOM/" \
        -e "s/^PORT=.*/PORT=$PORT1/" -e "s/^COMPOSE_PROJECT_NAME=.*/COMPOSE_PROJECT_NAME=$P1/" \
        "$COMPOSE_DIR/.env.example"
} >"$GW_TMP/compose.env"
set -a
# shellcheck disable=SC1091
. "$GW_TMP/compose.env"
set +a
export COMPOSE_FILE=$FILES1 COMPOSE_PROJECT_NAME=$P1
DC_TIMEOUT=1200 dc1 build >"$GW_TMP/build-project.log" 2>&1 || { tail -n 40 "$GW_TMP/build-project.log"; t_abort "docker-compose build failed"; }
grep -E '^Successfully tagged' "$GW_TMP/build-project.log" | sort -u

# --- 3. the single-node stack ----------------------------------------------------------------------
step "single node: docker compose up -d --build (the README's command)"
UP=$(readme_code "## Running with compose" sh | grep -E '^docker compose up ' | head -n 1)
t_begin "the README's \`docker compose up\` starts the stack; migrate applies the schema and exits 0"
[ -n "$UP" ] || t_fail "no \`docker compose up\` in README's ## Running with compose"
since=$(date +%s)
if as_user "$PORT1" "${UP:-false}" >"$GW_TMP/up1.log" 2>&1; then
    t_pass
else
    t_fail "$UP failed" "$(tail -n 30 "$GW_TMP/up1.log")"
fi
mig=$(docker ps -aq --filter "label=com.docker.compose.project=$P1" --filter "label=com.docker.compose.service=migrate" | head -n 1)
assert_eq "exited 0" "$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$mig" 2>&1)" "migrate container state"
migrate_log=$(docker logs "$mig" 2>&1)
assert_match 'applied schema.sql' "$migrate_log" "migrate's output"
for f in "$GW_ROOT"/sql/migrations/*.sql; do
    v=${f##*/}
    assert_match "applied migration ${v%.sql}" "$migrate_log" "migrate's output"
done
assert_eq 1 "$(psql1 "SELECT count(*) FROM schema_migrations WHERE version = '$(basename "$(ls "$GW_ROOT"/sql/migrations/*.sql | tail -n 1)" .sql)'")" \
    "the last migration is recorded"
case_end dc1

t_begin "services become healthy in the documented order: postgres, redis -> migrate -> agent, settle -> haproxy"
# HAProxy's first health check runs 30 s after its start (interval 30s).
wait_until 90 is_healthy dc1 haproxy || t_fail "haproxy not healthy after 90 s: $(health dc1 haproxy)"
for s in postgres redis agent settle; do
    assert_eq healthy "$(health dc1 "$s")" "$s health"
done
events "$P1" "$since" >"$GW_TMP/events1.txt"
ev() { first_event "$GW_TMP/events1.txt" "$1" "$2"; }
order() { # <earlier ns> <later ns> <what>
    if [ -z "$1" ] || [ -z "$2" ]; then
        t_fail "$3: event missing (earlier '${1}', later '${2}')" "$(cat "$GW_TMP/events1.txt")"
    elif [ "$1" -gt "$2" ]; then
        t_fail "$3: out of order" "$(cat "$GW_TMP/events1.txt")"
    else
        t_pass
    fi
}
order "$(ev '^health_status: healthy' postgres)" "$(ev '^start$' migrate)" "postgres healthy before migrate starts"
order "$(ev '^die$' migrate)" "$(ev '^start$' agent)" "migrate done before the agent starts"
order "$(ev '^die$' migrate)" "$(ev '^start$' settle)" "migrate done before gw-settle starts"
order "$(ev '^health_status: healthy' redis)" "$(ev '^start$' agent)" "redis healthy before the agent starts"
order "$(ev '^health_status: healthy' redis)" "$(ev '^start$' settle)" "redis healthy before gw-settle starts"
order "$(ev '^health_status: healthy' agent)" "$(ev '^start$' haproxy)" "agent healthy before haproxy starts"
order "$(ev '^start$' haproxy)" "$(ev '^health_status: healthy' haproxy)" "haproxy healthy after its start"
case_end dc1

step "single node: the README's commands, billing"
COMPOSE_SH=$(readme_code "## Running with compose" sh)
HEREDOC=$(awk '/psql .*<<.*SQL/ { f = 1 } f { print } f && $0 == "SQL" { exit }' <<<"$COMPOSE_SH")
mapfile -t AFTER < <(awk 'f && !/^[[:space:]]*(#|$)/; $0 == "SQL" { f = 1 }' <<<"$COMPOSE_SH")
HEALTH_CMD=$(printf '%s\n' "${AFTER[@]}" | grep -E '^curl [^|]*/health' | head -n 1)
PROXY_CMD=$(printf '%s\n' "${AFTER[@]}" | grep -E '^curl -x ' | head -n 1)
PROVIDER_SQL=$(readme_code "## Database" sql | awk '/^INSERT INTO proxies/ { f = 1 } f { print } f && /;[[:space:]]*$/ { exit }')

t_begin "the README's psql heredoc runs in the postgres service as written"
[ -n "$HEREDOC" ] || t_fail "no \`docker compose exec ... psql ... <<'SQL'\` heredoc in the README"
out=$(as_user "$PORT1" "$HEREDOC")
assert_eq "$(grep -c '^INSERT' <<<"$HEREDOC")" "$(grep -c '^INSERT 0 1$' <<<"$out")" "INSERT 0 1 lines of: $out"
assert_eq 1 "$(psql1 "SELECT count(*) FROM users u JOIN balances b ON b.user_id = u.id WHERE username = 'alice'")" "alice with a balance"
case_end dc1

# The README: the whitelist sees the address HAProxy logs; a provider row is
# in ## Database. The provider stand-in answers as its proxy.provider.com.
t_begin "the README's /health and curl -x work as written, once a provider exists and the client's address (from HAProxy's log) is whitelisted"
[ -n "$HEALTH_CMD" ] && [ -n "$PROXY_CMD" ] && [ -n "$PROVIDER_SQL" ] \
    || t_fail "README commands not found (health: '$HEALTH_CMD', curl -x: '$PROXY_CMD', provider SQL: '$PROVIDER_SQL')"
out=$(as_user "$PORT1" "${HEALTH_CMD:-false}")
assert_match '"status":"unhealthy","proxy_count":0,"user_count":1' "$out" "/health before any provider"
client_ip=$(dc1 logs --no-color haproxy 2>/dev/null | grep -oE ' gw[23] [^ ]+ .*' | tail -n 1 | grep -oE '([0-9]{1,3}\.){3}[0-9]{1,3}' | head -n 1)
assert_match '^([0-9]+\.){3}[0-9]+$' "$client_ip" "client address in HAProxy's log"
psql1 "INSERT INTO authorized_ips (ip, description) VALUES ('$client_ip', 'the docker host')" >/dev/null
assert_ok "the README's provider row" dc1 exec -T postgres psql -X -v ON_ERROR_STOP=1 -q -U gateway proxydb -c "$PROVIDER_SQL"
wait_until 10 health_has "$PORT1" '"proxy_count":1' || t_fail "/health not 200 within 10 s of the provider row"
out=$(as_user "$PORT1" "${HEALTH_CMD:-false}")
assert_match '^\{"status":"healthy","proxy_count":1,"user_count":1,.*"postgres_ok":1,"redis_ok":1' "$out" "$HEALTH_CMD"
# example.com: the provider stand-in's own origin (upstream --resolve), over
# TLS end to end through the gateway's CONNECT tunnel.
out=$(as_user "$PORT1" "${PROXY_CMD:-false}")
rc=$?
assert_eq 0 "$rc" "exit status of: $PROXY_CMD"
assert_match '^GET / HTTP/1\.1' "$out" "what example.com answered (the origin echoes the request)"
assert_match '(^|
)[Hh]ost: example\.com' "$out" "the Host example.com received"
record=$(dc1 exec -T provider cat /tmp/record 2>/dev/null)
assert_match '(^|
)1[0-9]{4} CONNECT example\.com:443 provideruser-country-US-session-[A-Za-z0-9_]+-sessTime-[0-9]+($|
)' "$record" "the provider's record of the README's curl -x"
case_end dc1

t_begin "plain HTTP and CONNECT through the stack reach the provider's origin; sticky session keeps one port"
N_OK=0
for i in 1 2 3; do
    code=$(proxied "$PORT1" -country-US-session-s1 http://127.0.0.1:8000/bytes/1000)
    assert_eq 200 "$code" "GET through the gateway, try $i"
    [ "$code" = 200 ] && N_OK=$((N_OK + 1))
    ups[i]=$(upstream_of_last)
done
assert_match '^provider:1[0-9]{4}$' "${ups[1]}" "X-Upstream of session s1"
assert_eq "${ups[1]} ${ups[1]}" "${ups[2]} ${ups[3]}" "X-Upstream of session s1, tries 2 and 3"
assert_eq 1000 "$(stat -c %s "$GW_TMP/last.body" 2>/dev/null)" "body bytes"
code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 20 -p -x "http://alice:secret@localhost:$PORT1" \
    http://127.0.0.1:8000/bytes/100 2>>"$GW_TMP/curl.log")
assert_eq 200 "$code" "GET through a CONNECT tunnel (curl -p)"
[ "$code" = 200 ] && N_OK=$((N_OK + 1))
assert_eq 407 "$(curl -sS -o /dev/null -w '%{http_code}' --max-time 20 -x "http://alice:wrong@localhost:$PORT1" \
    http://127.0.0.1:8000/bytes/10 2>>"$GW_TMP/curl.log")" "wrong password"
case_end dc1

t_begin "billing: every forwarded request reaches traffic_logs through gw-settle, once; used_bytes and balance:cache follow"
# forwarded: the README's curl -x and N_OK more
want=$((N_OK + 1))
wait_until 20 rows_at_least dc1 "$want" || true
assert_eq "$want $want" "$(psql1 "SELECT count(*), count(DISTINCT request_id) FROM traffic_logs t JOIN users u ON u.id = t.user_id WHERE u.username = 'alice'" | tr '|' ' ')" \
    "traffic_logs rows and distinct request ids for alice"
assert_eq 1 "$(psql1 "SELECT count(*) FROM traffic_logs WHERE target_host = 'example.com:443' AND target_method = 'CONNECT' AND proxy_slug = 'example-provider' AND country = 'US' AND status_code = 200")" \
    "the README's curl -x billed"
used=$(psql1 "SELECT b.used_bytes FROM balances b JOIN users u ON u.id = b.user_id WHERE u.username = 'alice'")
sum=$(psql1 "SELECT sum(total_bytes) FROM traffic_logs t JOIN users u ON u.id = t.user_id WHERE u.username = 'alice'")
assert_eq "$sum" "$used" "alice's used_bytes = the sum of her traffic_logs"
wait_until 5 redis_is dc1 balance:cache:alice $((10737418240 - ${used:-0})) \
    || t_fail "balance:cache:alice is not traffic - used ($((10737418240 - ${used:-0})))" "$(dc1 exec -T redis redis-cli GET balance:cache:alice 2>&1)"
assert_eq 0 "$(dc1 exec -T redis redis-cli LLEN traffic:logs:dead 2>&1 | tr -d '\r')" "records in traffic:logs:dead"
case_end dc1

step "single node: users, isolation"
t_begin "the agent and gw-settle run as the unprivileged user"
for s in agent settle; do
    c=$(cid dc1 "$s")
    assert_eq gw "$(docker inspect -f '{{.Config.User}}' "$c" 2>&1)" "$s: the image's USER"
    uid=$(docker exec "$c" awk '/^Uid:/ { print $2 }' /proc/1/status 2>&1)
    assert_match '^[1-9][0-9]*$' "$uid" "$s: uid of its process 1"
    assert_eq gw "$(docker exec "$c" id -un "$uid" 2>&1)" "$s: user of its process 1"
done
case_end dc1

t_begin "PostgreSQL and Redis are not reachable from HAProxy's network (by name or address); the agent reaches them"
hc=$(cid dc1 haproxy)
for target in postgres:5432 redis:6379; do
    name=${target%:*} port=${target#*:}
    ip=$(docker inspect -f "{{(index .NetworkSettings.Networks \"${P1}_back\").IPAddress}}" "$(cid dc1 "$name")" 2>/dev/null)
    assert_match '^([0-9]+\.){3}[0-9]+$' "$ip" "$name's address on back"
    assert_ok "the agent connects to $name:$port" docker exec "$(cid dc1 agent)" timeout 5 bash -c "exec 3<>/dev/tcp/$name/$port"
    assert_fails "haproxy connects to $name:$port" docker exec "$hc" timeout 5 bash -c "exec 3<>/dev/tcp/$name/$port"
    assert_fails "haproxy connects to $ip:$port" docker exec "$hc" timeout 5 bash -c "exec 3<>/dev/tcp/$ip/$port"
done
case_end dc1

step "single node: docker-compose restart agent"
t_begin "\`docker-compose restart agent\`: HAProxy keeps running and serves again through the agent's fixed address"
agent_ip() { docker inspect -f "{{(index .NetworkSettings.Networks \"${P1}_front\").IPAddress}}" "$(cid dc1 agent)" 2>/dev/null; }
assert_eq 172.30.84.10 "$(agent_ip)" "the agent's address on front"
h_started=$(docker inspect -f '{{.State.StartedAt}}' "$(cid dc1 haproxy)")
before=$(psql1 "SELECT count(*) FROM traffic_logs")
a_started=$(docker inspect -f '{{.State.StartedAt}}' "$(cid dc1 agent)")
assert_ok "docker-compose restart agent" dc1 restart agent
[ "$a_started" != "$(docker inspect -f '{{.State.StartedAt}}' "$(cid dc1 agent)")" ] || t_fail "the agent was not restarted"
t0=$SECONDS
wait_until 60 serving "$PORT1" http://127.0.0.1:8000/bytes/10
assert_eq 200 "$(proxied "$PORT1" -country-US-session-s1 http://127.0.0.1:8000/bytes/10)" "a request after the restart"
echo "  serving again $((SECONDS - t0)) s after the restart"
assert_eq "${ups[1]}" "$(upstream_of_last)" "the session's provider and port after the restart"
assert_eq 172.30.84.10 "$(agent_ip)" "the agent's address after the restart"
assert_eq "$h_started" "$(docker inspect -f '{{.State.StartedAt}}' "$(cid dc1 haproxy)")" "HAProxy's start time (not restarted)"
wait_until 20 rows_at_least dc1 $((before + 2)) \
    || t_fail "the request after the restart was not billed (traffic_logs: $before rows)"
case_end dc1

step "single node: down, then up: the volumes stay"
t_begin "\`docker compose down\` then \`up\` keeps the database, Redis's data and the agent's state"
assert_ok "redis SET" dc1 exec -T redis redis-cli SET gw:compose-test "$RUN_ID"
rows=$(psql1 "SELECT count(*) FROM traffic_logs")
assert_ok "docker-compose down" dc1 down
assert_eq "" "$(docker ps -aq --filter "label=com.docker.compose.project=$P1")" "containers after down"
assert_eq "${P1}_agent-state ${P1}_postgres-data ${P1}_redis-data" \
    "$(docker volume ls -q --filter "label=com.docker.compose.project=$P1" | sort | tr '\n' ' ' | sed 's/ $//')" "volumes after down"
assert_ok "docker-compose up -d" dc1 up -d
mig=$(docker ps -aq --filter "label=com.docker.compose.project=$P1" --filter "label=com.docker.compose.service=migrate" | head -n 1)
assert_eq "exited 0" "$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$mig" 2>&1)" "migrate on the second up"
assert_match 'nothing to apply' "$(docker logs "$mig" 2>&1)" "migrate's output on the second up"
assert_eq "$rows" "$(psql1 "SELECT count(*) FROM traffic_logs")" "traffic_logs rows"
assert_eq 1 "$(psql1 "SELECT count(*) FROM users WHERE username = 'alice'")" "alice"
assert_eq "$RUN_ID" "$(dc1 exec -T redis redis-cli GET gw:compose-test | tr -d '\r')" "the Redis key set before down (append-only file)"
assert_match 'snapshot\.msgpack' "$(dc1 exec -T agent ls /var/lib/gw-agent 2>&1)" "the agent's state volume"
wait_until 60 serving "$PORT1" http://127.0.0.1:8000/bytes/10
assert_eq 200 "$(proxied "$PORT1" -country-US-session-s1 http://127.0.0.1:8000/bytes/10)" "a request after up"
case_end dc1

step "single node: down -v"
assert_ok "docker-compose down -v" dc1 down -v --remove-orphans
assert_eq "" "$(docker volume ls -q --filter "label=com.docker.compose.project=$P1")" "volumes after down -v"

# --- 4. two gateway nodes behind an L4 balancer --------------------------------------------------
step "two nodes: up"
t_begin "compose/docker-compose.nodes.yml: two nodes behind the L4 HAProxy come up, sharing PostgreSQL and Redis"
DC_TIMEOUT=1200 assert_ok "docker-compose build" dc2 build
assert_ok "docker-compose up -d" dc2 up -d
for s in haproxy-1 haproxy-2; do
    wait_until 90 is_healthy dc2 "$s" || t_fail "$s not healthy after 90 s: $(health dc2 "$s")"
done
wait_until 30 is_healthy dc2 lb || t_fail "lb not healthy: $(health dc2 lb)"
case_end dc2

step "two nodes: sticky sessions and billing"
t_begin "a session reaches the same provider and port through either node"
as_user "$PORT2" "COMPOSE_PROJECT_NAME=$P2 COMPOSE_FILE=$FILES2 $HEREDOC" >/dev/null 2>&1 \
    || t_fail "the README's heredoc in the two-node stack"
curl -s -o /dev/null "http://localhost:$PORT2/health"
curl -s -o /dev/null "http://localhost:$PORT2/health"
client_ip=$( (dc2 logs --no-color haproxy-1; dc2 logs --no-color haproxy-2) 2>/dev/null | grep -oE ' gw[23] [^ ]+ .*' | tail -n 1 | grep -oE '([0-9]{1,3}\.){3}[0-9]{1,3}' | head -n 1)
assert_match '^172\.30\.85\.1$' "$client_ip" "client address the nodes log (the edge network's gateway, from the PROXY header)"
psql2 "INSERT INTO authorized_ips (ip, description) VALUES ('${client_ip:-0.0.0.0}', 'the docker host')" >/dev/null
dc2 exec -T postgres psql -X -v ON_ERROR_STOP=1 -q -U gateway proxydb -c "$PROVIDER_SQL" >/dev/null
psql2 "INSERT INTO proxies (base_url, name, slug, username, password, url_template, port_min, port_max, country_format)
       VALUES ('proxy2.provider.com', 'Second Provider', 'second-provider', 'provideruser', 'providerpass',
               '{username}-country-{country}-session-{session_id}-sessTime-{duration}:{password}@{host}:{port}',
               11000, 11100, 'ISO')" >/dev/null
# twice: each node's agent must have both providers, and the balancer
# alternates
wait_until 10 health_has "$PORT2" '"proxy_count":2' && wait_until 10 health_has "$PORT2" '"proxy_count":2' \
    || t_fail "/health through the balancer does not show 2 providers" "$(curl -s "http://localhost:$PORT2/health")"
N2=0
declare -A seen_up=()
for s in n1 n2 n3 n4; do
    for i in 1 2 3 4; do
        code=$(proxied "$PORT2" "-country-US-session-$s" http://127.0.0.1:8000/bytes/200)
        assert_eq 200 "$code" "session $s, request $i"
        [ "$code" = 200 ] && N2=$((N2 + 1))
        u=$(upstream_of_last)
        if [ -z "${seen_up[$s]:-}" ]; then seen_up[$s]=$u; fi
        assert_eq "${seen_up[$s]}" "$u" "session $s, request $i: X-Upstream (provider:port)"
    done
    echo "  session $s -> ${seen_up[$s]}"
done
# which node served what: each node's log line (the billing record's
# log-format: "gw3 <id> <verdict status> <user> <slug> <country> <session>
# ...", strings base64, "-" in place of the verdict when not forwarded) has
# the request id and session of every request
docker logs "$(cid dc2 haproxy-1)" >"$GW_TMP/node1.txt" 2>&1
docker logs "$(cid dc2 haproxy-2)" >"$GW_TMP/node2.txt" 2>&1
for s in n1 n2 n3 n4; do
    b=$(printf '%s' "$s" | base64)
    for n in 1 2; do
        c=$(awk -v b="$b" '($1 == "gw2" || $1 == "gw3") && $7 == b' "$GW_TMP/node$n.txt" | wc -l)
        [ "$c" -ge 1 ] || t_fail "session $s never went through node $n"
    done
done
case_end dc2

t_begin "billing across both nodes: each request once in traffic_logs, with the client's address from the PROXY header"
wait_until 30 rows_at_least dc2 "$N2" || true
assert_eq "$N2 $N2" "$(psql2 "SELECT count(*), count(DISTINCT request_id) FROM traffic_logs" | tr '|' ' ')" "traffic_logs rows, distinct request ids"
ids_db=$(psql2 "SELECT request_id FROM traffic_logs ORDER BY 1")
ids_logs=$(awk '($1 == "gw2" || $1 == "gw3") && $3 != "-" { print $2 }' "$GW_TMP/node1.txt" "$GW_TMP/node2.txt" | sort)
assert_eq "$ids_logs" "$ids_db" "request ids billed = request ids the two nodes forwarded"
n1=$(awk '($1 == "gw2" || $1 == "gw3") && $3 != "-"' "$GW_TMP/node1.txt" | wc -l)
n2=$(awk '($1 == "gw2" || $1 == "gw3") && $3 != "-"' "$GW_TMP/node2.txt" | wc -l)
echo "  node 1 forwarded $n1, node 2 forwarded $n2"
[ "$n1" -ge 1 ] && [ "$n2" -ge 1 ] || t_fail "one node forwarded nothing ($n1, $n2)"
assert_eq "${client_ip:-?}" "$(psql2 "SELECT string_agg(DISTINCT client_ip, ',') FROM traffic_logs")" "client_ip of the records"
assert_eq "$(psql2 "SELECT sum(total_bytes) FROM traffic_logs")" "$(psql2 "SELECT used_bytes FROM balances b JOIN users u ON u.id = b.user_id WHERE username = 'alice'")" \
    "used_bytes = the sum of traffic_logs"
case_end dc2

step "two nodes: down -v"
assert_ok "docker-compose down -v" dc2 down -v --remove-orphans
assert_eq "" "$(docker ps -aq --filter "label=com.docker.compose.project=$P2")" "containers after down -v"

print_times
t_summary
