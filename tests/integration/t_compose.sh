#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# shellcheck disable=SC2016 # jq filters: their $names are jq's, single-quoted on purpose
# t_compose.sh: the docker compose stack (compose/), checked statically:
# what can be checked without a container engine (tests/compose/run.sh,
# `make compose-test`, runs the stacks for real).
# Debian's docker-compose (v1, needs no daemon for `config`) resolves
# compose/docker-compose.yml with compose/.env.example as a user fills it in;
# the checks then read that resolved configuration (as JSON, through
# python3-yaml and jq) next to the repository's files: images and the
# Dockerfile, mounted paths, HAProxy's variables, ports and addresses, the
# agent's and worker's variables (against their --help), the SQL applied,
# volumes, credentials, health checks and start order.
#
# GW_COMPOSE_FILE checks another compose file instead (a broken copy, to see a
# check fail); its relative paths resolve from compose/, as the real file's do.
set -u
# shellcheck source=../lib/services.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/services.sh"

svc_init || { echo "0 passed, 1 failed"; exit 1; }

compose_dir=$GW_ROOT/compose
compose_file=${GW_COMPOSE_FILE:-$compose_dir/docker-compose.yml}
case $compose_file in /*) ;; *) compose_file=$PWD/$compose_file ;; esac
cfg=$GW_TMP/compose.json

for tool in docker-compose python3 jq; do
    command -v "$tool" >/dev/null 2>&1 || t_abort "missing $tool (make test-deps installs it)"
done

# compose_config <env file>: the configuration docker compose would run. Only
# the env file feeds ${...}: this shell's variables (PORT, REDIS_ADDR, ... in
# a test run) must not leak into it.
compose_config() {
    env -i PATH="$PATH" HOME="$GW_TMP" docker-compose --project-directory "$compose_dir" \
        --env-file "$1" -f "$compose_file" config
}

# q <jq filter> [jq args...]: query the resolved configuration.
q() {
    local filter=$1
    shift
    jq -r "$@" "$filter" "$cfg"
}

env_of() { # <service> <variable>: its value, or nothing
    q '.services[$s].environment[$v] // empty' --arg s "$1" --arg v "$2"
}

# mounts <service>: "source<TAB>target" per volume; a source is an absolute
# host path (bind mount) or a volume name.
mounts() {
    q '.services[$s].volumes // [] | .[]
       | if type == "string" then (split(":") | "\(.[0])\t\(.[1])") else "\(.source)\t\(.target)" end' \
        --arg s "$1"
}

# mount_covering <service> <container path>: "source<TAB>target" of the
# deepest mount holding that path, or nothing.
mount_covering() {
    local src tgt best='' best_len=-1
    while IFS=$'\t' read -r src tgt; do
        if [ "$2" = "$tgt" ] || [[ $2 == "$tgt"/* ]]; then
            if [ "${#tgt}" -gt "$best_len" ]; then
                best=$src$'\t'$tgt
                best_len=${#tgt}
            fi
        fi
    done < <(mounts "$1")
    [ -n "$best" ] && printf '%s\n' "$best"
}

# host_path <service> <container path>: the host file behind a container
# path, through a bind mount of it or of a directory above it; or nothing.
host_path() {
    local m src tgt
    m=$(mount_covering "$1" "$2") || return 1
    src=${m%%$'\t'*} tgt=${m#*$'\t'}
    [[ $src == /* ]] || return 1
    printf '%s\n' "$src${2#"$tgt"}"
}

# named_volume_at <service> <container path>: the named volume holding that
# path (declared at the top level), or nothing.
named_volume_at() {
    local m src
    m=$(mount_covering "$1" "$2") || return 1
    src=${m%%$'\t'*}
    [[ $src != /* ]] || return 1
    [ "$(q '.volumes | has($v)' --arg v "$src")" = true ] || return 1
    printf '%s\n' "$src"
}

# in_repo <path>: the path, resolved, lies inside the repository.
in_repo() {
    local p
    p=$(realpath -m "$1")
    [ "$p" = "$GW_ROOT" ] || [[ $p == "$GW_ROOT"/* ]]
}

# help_env <binary>: the environment variables its --help lists.
help_env() {
    "$1" --help | sed -nE 's/^[[:space:]]+env ([A-Z][A-Z0-9_]*),.*/\1/p'
}

# help_required <binary>: the variables of the options --help marks required.
help_required() {
    "$1" --help | awk '/\(required/ { req = 1; next }
        req && match($0, /env [A-Z][A-Z0-9_]*,/) { print substr($0, RSTART + 4, RLENGTH - 5) }
        { req = 0 }'
}

# help_default <binary> <variable>: that variable's default, per --help.
help_default() {
    "$1" --help | sed -nE "s/^[[:space:]]+env $2, default (.*)$/\1/p"
}

# dockerfile_instructions <file>: one line per instruction, continuation
# lines joined, comments dropped, each prefixed with its stage number and a tab.
dockerfile_instructions() {
    sed -E '/^[[:space:]]*#/d' "$1" | sed -e ':a' -e '/\\$/{N; s/\\\n//; ta}' \
        | awk 'NF == 0 { next } toupper($1) == "FROM" { n++ } { print n "\t" $0 }'
}

# uri_part <postgres URI> <user|password|host|port|db>
uri_part() {
    local re='^postgres(ql)?://([^:@/]*)(:([^@/]*))?@([^:/]+)(:([0-9]+))?/([^?]*)'
    [[ $1 =~ $re ]] || return 1
    case $2 in
    user) printf '%s\n' "${BASH_REMATCH[2]}" ;;
    password) printf '%s\n' "${BASH_REMATCH[4]}" ;;
    host) printf '%s\n' "${BASH_REMATCH[5]}" ;;
    port) printf '%s\n' "${BASH_REMATCH[7]:-5432}" ;;
    db) printf '%s\n' "${BASH_REMATCH[8]}" ;;
    esac
}

# The services the checks below talk about, by role.
services="agent haproxy migrate postgres redis settle"

# --- 1. resolution --------------------------------------------------------------------
t_begin "docker-compose config resolves the stack with .env.example filled in, refuses without passwords"
env_file=$GW_TMP/compose.env
sed -E 's/^(POSTGRES_PASSWORD|REDIS_PASSWORD)=$/\1=test-\1/' "$compose_dir/.env.example" >"$env_file"
if compose_config "$env_file" >"$GW_TMP/compose.yml" 2>"$GW_TMP/compose-config.log"; then
    t_pass
else
    t_fail "docker-compose config failed" "$(cat "$GW_TMP/compose-config.log")"
    t_abort "no resolved configuration to check"
fi
python3 -c 'import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)' \
    <"$GW_TMP/compose.yml" >"$cfg" || t_abort "the resolved configuration is not YAML"
assert_eq "$services" "$(q '.services | keys | join(" ")')" "services"
: >"$GW_TMP/empty.env"
assert_fails "resolving without POSTGRES_PASSWORD and REDIS_PASSWORD" compose_config "$GW_TMP/empty.env"
assert_match 'set (POSTGRES|REDIS)_PASSWORD' "$(compose_config "$GW_TMP/empty.env" 2>&1)" "the error names the password"

# --- 2. images and the Dockerfile -------------------------------------------------------
t_begin "images pinned; Dockerfile: pinned bases, make in a build stage, runtime libraries only, non-root (structural: Debian has no Dockerfile linter)"
while read -r svc image; do
    [[ ${image##*/} == *:* ]] || t_fail "$svc: image $image has no tag"
    [ "${image##*:}" != latest ] || t_fail "$svc: image $image is not pinned"
done < <(q '.services | to_entries[] | select(.value.image) | "\(.key) \(.value.image)"')
haproxy_tag=$(q '.services.haproxy.image | sub("^haproxy:"; "")')
assert_match '^[0-9]+\.[0-9]+\.[0-9]+(-[a-z]+)?$' "$haproxy_tag" "HAProxy is an exact release of the official image"
haproxy_version=${haproxy_tag%%-*}
assert_eq 2.6 "$(printf '2.6\n%s\n' "$haproxy_version" | sort -V | head -n 1)" "HAProxy >= 2.6 (what gateway.cfg needs)"
dockerfiles=$(q '.services[] | select(.build) | "\(.build.context)/\(.build.dockerfile // "Dockerfile")"' | sort -u)
[ -n "$dockerfiles" ] || t_fail "no service is built from a Dockerfile"
for df in $dockerfiles; do
    [ -f "$df" ] || { t_fail "missing Dockerfile $df"; continue; }
    ins=$(dockerfile_instructions "$df")
    last=$(printf '%s\n' "$ins" | tail -n 1 | cut -f1)
    # ARGs before the first FROM may name the images: their defaults count.
    declare -A arg_default=()
    while read -r line; do
        if [[ $line =~ ^ARG[[:space:]]+([A-Za-z_][A-Za-z0-9_]*)(=([^[:space:]]*))? ]]; then
            arg_default[${BASH_REMATCH[1]}]=${BASH_REMATCH[3]}
        fi
    done < <(printf '%s\n' "$ins" | sed -n 's/^\t//p') # stage "": before any FROM
    stages=" "
    while IFS=$'\t' read -r n line; do
        read -r _ from _ name <<<"$line"
        if [[ $from =~ ^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$ ]]; then
            from=${arg_default[${BASH_REMATCH[1]}]:-}
            [ -n "$from" ] || t_fail "$df: FROM $line: the ARG has no default"
        fi
        if [[ $stages != *" $from "* ]]; then # not an earlier stage: an image
            [[ ${from##*/} == *:* ]] || t_fail "$df: FROM $from has no tag"
            [ "${from##*:}" != latest ] || t_fail "$df: FROM $from is not pinned"
        fi
        stages+="${name:-stage$n} "
    done < <(printf '%s\n' "$ins" | grep -iP '^\d+\tFROM\s')
    unset arg_default
    final=$(printf '%s\n' "$ins" | grep "^$last"$'\t' | cut -f2-)
    printf '%s\n' "$ins" | grep -v "^$last"$'\t' | grep -qE $'^[0-9]+\tRUN (.*(&&|;|\\|\\|) *)?make\\>' \
        || t_fail "$df: no build stage runs make (as a command)"
    user=$(printf '%s\n' "$final" | sed -nE 's/^USER[[:space:]]+([^[:space:]:]+).*/\1/p' | tail -n 1)
    case $user in '' | root | 0) t_fail "$df: the runtime stage runs as root (USER: '$user')" ;; esac
    installs=$(printf '%s\n' "$final" | grep -E '^RUN .*apt-get install' || true)
    if printf '%s\n' "$installs" | grep -qE '(-dev\>|\<gcc\>|\<make\>|\<clang\>)'; then
        t_fail "$df: the runtime stage installs build tools" "$installs"
    fi
    # The programs the services run come from the build stage.
    for prog in $(q '.services[] | select(.build) | .command[0] // empty' | sort -u); do
        printf '%s\n' "$final" | grep -qE "^COPY --from=[^ ]+ (.* )?[^ ]*/$prog( |$)" \
            || t_fail "$df: the runtime stage does not copy $prog from a build stage"
    done
done

# --- 3. host paths -------------------------------------------------------------------------
t_begin "every host path the stack mounts or builds from exists in the repository; HAProxy runs the repository's haproxy/ files"
for svc in $services; do
    while IFS=$'\t' read -r src tgt; do
        [[ $src == /* ]] || continue
        [ -e "$src" ] || t_fail "$svc: $src (mounted at $tgt) does not exist"
        in_repo "$src" || t_fail "$svc: $src (mounted at $tgt) is outside the repository"
    done < <(mounts "$svc")
done
while IFS=$'\t' read -r svc ctx df; do
    if [ ! -d "$ctx" ] || ! in_repo "$ctx"; then
        t_fail "$svc: build context $ctx is not a directory of the repository"
    fi
    [ -f "$ctx/$df" ] || t_fail "$svc: Dockerfile $ctx/$df does not exist"
done < <(q '.services | to_entries[] | select(.value.build) | "\(.key)\t\(.value.build.context)\t\(.value.build.dockerfile // "Dockerfile")"')
haproxy_cfg_path=$(q '.services.haproxy.command as $c | ($c | index("-f")) as $i | if $i then $c[$i + 1] else empty end')
assert_eq "$GW_ROOT/haproxy/gateway.cfg" "$(host_path haproxy "$haproxy_cfg_path")" "the file after haproxy -f"
assert_eq "$GW_ROOT/haproxy/spoe-gateway.conf" "$(host_path haproxy "$(env_of haproxy GW_SPOE_CONF)")" "GW_SPOE_CONF"
assert_eq "$GW_ROOT/haproxy/errors" "$(host_path haproxy "$(env_of haproxy GW_ERRORS_DIR)")" "GW_ERRORS_DIR"

# --- 4. HAProxy's variables -----------------------------------------------------------------
t_begin "HAProxy's environment sets every \${VAR} its config and SPOE file use without a default, and those a container must change"
cfg_host=$(host_path haproxy "$haproxy_cfg_path")
spoe_host=$(host_path haproxy "$(env_of haproxy GW_SPOE_CONF)")
errors_host=$(host_path haproxy "$(env_of haproxy GW_ERRORS_DIR)")
refs=$(cat "$cfg_host" "$spoe_host" 2>/dev/null | grep -vE '^[[:space:]]*#' \
    | grep -oE '\$\{[A-Za-z_][A-Za-z0-9_]*(\[\*\])?(-[^}]*)?\}')
[ -n "$refs" ] || t_fail "no \${VAR} found in $cfg_host and $spoe_host"
ref_names=$(printf '%s\n' "$refs" | sed -nE 's/^\$\{([A-Za-z0-9_]+).*/\1/p' | sort -u | tr '\n' ' ')
for name in $(printf '%s\n' "$refs" | sed -nE 's/^\$\{([A-Za-z0-9_]+)(\[\*\])?\}$/\1/p' | sort -u); do
    [ -n "$(env_of haproxy "$name")" ] || t_fail "\${$name} has no default and the haproxy service does not set it"
done
# Their defaults are the agent on loopback (it is another container here),
# paths under /etc/haproxy (the image's are under /usr/local/etc/haproxy) and
# a socket in /run (not writable by the image's haproxy user).
for name in GW_AGENT_ADDR GW_BILLING_ADDR GW_SPOE_CONF GW_ERRORS_DIR GW_STATS_SOCKET; do
    [[ " $ref_names " == *" $name "* ]] || t_fail "the config no longer reads \${$name}: update this test"
    [ -n "$(env_of haproxy "$name")" ] || t_fail "the haproxy service does not set $name"
done
[ -f "$spoe_host" ] || t_fail "GW_SPOE_CONF is not a mounted file"
while read -r f; do
    [ -f "$errors_host/$f" ] || t_fail "errorfile $f is not in the mounted GW_ERRORS_DIR ($errors_host)"
done < <(grep -vE '^[[:space:]]*#' "$cfg_host" \
    | sed -nE 's#^[[:space:]]*errorfile [0-9]+ "\$\{GW_ERRORS_DIR[^}]*\}/([^"]+)".*#\1#p')

# --- 5. ports and addresses ---------------------------------------------------------------
t_begin "ports: PORT 8080 published as 8080; HAProxy's GW_AGENT_ADDR and GW_BILLING_ADDR are the agent's listeners; the agent reaches HAProxy's CLI"
port=$(env_of haproxy PORT)
assert_eq 8080 "$port" "haproxy PORT"
assert_eq "$port:$port" "$(q '[.services.haproxy.ports[]? | "\(.published):\(.target)"] | join(" ")')" "haproxy ports (host:container)"
# HAProxy resolves server names once, at start: the agent has a fixed address
# on a network it shares with HAProxy, inside that network's subnet.
agent_ip=$(q '[.services.agent.networks // {} | to_entries[] | .value.ipv4_address? // empty][0] // empty')
agent_net=$(q '[.services.agent.networks // {} | to_entries[] | select(.value.ipv4_address?) | .key][0] // empty')
[ -n "$agent_ip" ] || t_fail "the agent has no fixed ipv4_address"
[[ " $(q '.services.haproxy.networks // {} | keys | join(" ")') " == *" $agent_net "* ]] ||
    t_fail "HAProxy is not on $agent_net, the agent's fixed-address network"
subnet=$(q '.networks[$n].ipam.config[0].subnet // empty' --arg n "$agent_net")
python3 -c 'import ipaddress, sys; sys.exit(ipaddress.ip_address(sys.argv[1]) not in ipaddress.ip_network(sys.argv[2]))' \
    "$agent_ip" "$subnet" 2>/dev/null || t_fail "agent address $agent_ip is not in $agent_net's subnet '$subnet'"
for pair in GW_AGENT_ADDR:GW_LISTEN GW_BILLING_ADDR:GW_BILLING_LISTEN; do
    addr=$(env_of haproxy "${pair%%:*}")
    listen=$(env_of agent "${pair#*:}")
    assert_eq "$agent_ip" "${addr%:*}" "host of haproxy ${pair%%:*} ($addr): the agent's fixed address"
    assert_eq "${listen##*:}" "${addr##*:}" "port of haproxy ${pair%%:*} ($addr) vs agent ${pair#*:} ($listen)"
    assert_match '^(0\.0\.0\.0|\*|\[::\]):[0-9]+$' "$listen" "agent ${pair#*:} listens on all addresses"
done
# the agent reads the billing ring back through HAProxy's CLI (TCP here)
cli=$(env_of agent GW_HAPROXY_CLI)
stats=$(env_of haproxy GW_STATS_SOCKET)
assert_eq haproxy "${cli%:*}" "host of the agent's GW_HAPROXY_CLI ($cli)"
assert_match '^ipv4@(0\.0\.0\.0|\*)?:[0-9]+$' "$stats" "HAProxy's GW_STATS_SOCKET listens on its networks"
assert_eq "${stats##*:}" "${cli##*:}" "port of the agent's GW_HAPROXY_CLI vs HAProxy's GW_STATS_SOCKET"
shared=$(jq -rn --argjson a "$(q '.services.haproxy.networks // {default: null} | keys' -c)" \
    --argjson b "$(q '.services.agent.networks // {default: null} | keys' -c)" '$a - ($a - $b) | join(" ")')
[ -n "$shared" ] || t_fail "haproxy and agent share no network"

# --- 6. the agent's and worker's variables ------------------------------------------------
t_begin "every variable set on the agent and settle services is one the binary knows (--help); the required ones are set"
for svc in $(q '.services | to_entries[] | select(.value.build) | .key'); do
    prog=$(q '.services[$s].command[0] // empty' --arg s "$svc")
    bin=$GW_ROOT/agent/$prog
    [ -x "$bin" ] || { t_fail "$svc: $bin is not built (make)"; continue; }
    known=" $(help_env "$bin" | tr '\n' ' ')"
    [ "$known" != " " ] || t_fail "$svc: $prog --help lists no environment variables"
    for name in $(q '.services[$s].environment // {} | keys[]' --arg s "$svc"); do
        [[ $known == *" $name "* ]] || t_fail "$svc: $name is not a $prog variable"
    done
    for name in $(help_required "$bin"); do
        [ -n "$(env_of "$svc" "$name")" ] || t_fail "$svc: $name is required by $prog and not set"
    done
done

# --- 7. the SQL applied ------------------------------------------------------------------
t_begin "sql/apply.sh applies sql/schema.sql and every sql/migrations/*.sql before the agent and worker start"
migrators=$(q '.services | to_entries[] | select([.value.command[]? | tostring | endswith("/apply.sh")] | any) | .key')
assert_eq migrate "$migrators" "the service running apply.sh"
apply=$(q '[.services.migrate.command[]? | select(endswith("/apply.sh"))][0] // empty')
assert_eq "$GW_ROOT/sql/apply.sh" "$(host_path migrate "$apply")" "the apply.sh it runs"
# apply.sh reads schema.sql and migrations/ next to itself.
for f in "$GW_ROOT"/sql/schema.sql "$GW_ROOT"/sql/migrations/*.sql; do
    rel=${f#"$GW_ROOT"/sql/}
    assert_eq "$f" "$(host_path migrate "${apply%/*}/$rel")" "sql/$rel beside apply.sh in the container"
done
assert_eq service_healthy "$(q '.services.migrate.depends_on.postgres.condition // empty')" "migrate waits for a healthy postgres"
for svc in agent settle; do
    assert_eq service_completed_successfully "$(q '.services[$s].depends_on.migrate.condition // empty' --arg s "$svc")" \
        "$svc waits for the migrations"
done

# --- 8. volumes ----------------------------------------------------------------------------
t_begin "state on named volumes: the database, Redis's append-only file, the agent's snapshot and billing spool"
pgdata=$(env_of postgres PGDATA)
[ -n "$(named_volume_at postgres "${pgdata:-/var/lib/postgresql/data}")" ] || t_fail "the database is not on a named volume"
# /data: the official image's working directory, where Redis writes.
[ -n "$(named_volume_at redis /data)" ] || t_fail "Redis's /data is not on a named volume"
assert_match '(^| )--appendonly yes( |$)' "$(q '.services.redis.command | join(" ")')" "redis --appendonly yes"
for name in GW_SNAPSHOT_PATH GW_SPOOL_PATH; do
    path=$(env_of agent "$name")
    path=${path:-$(help_default "$GW_ROOT/agent/gw-agent" "$name")}
    [ -n "$(named_volume_at agent "$path")" ] || t_fail "agent $name ($path) is not on a named volume"
done

# --- 9. credentials and addresses ---------------------------------------------------------------
t_begin "the PostgreSQL URIs and Redis settings match the postgres and redis services"
pg_user=$(env_of postgres POSTGRES_USER) pg_pass=$(env_of postgres POSTGRES_PASSWORD) pg_db=$(env_of postgres POSTGRES_DB)
assert_match '^test-' "$pg_pass" "postgres POSTGRES_PASSWORD (from the env file)"
uris="agent:$(env_of agent POSTGRES_URI) settle:$(env_of settle POSTGRES_URI) migrate:$(q '.services.migrate.command[-1]')"
for entry in $uris; do
    who=${entry%%:*} uri=${entry#*:}
    assert_eq "${pg_user:-postgres} $pg_pass postgres 5432 ${pg_db:-${pg_user:-postgres}}" \
        "$(uri_part "$uri" user) $(uri_part "$uri" password) $(uri_part "$uri" host) $(uri_part "$uri" port) $(uri_part "$uri" db)" \
        "$who's PostgreSQL user, password, host, port, database"
done
redis_pass=$(q '.services.redis.command as $c | ($c | index("--requirepass")) as $i | if $i then $c[$i + 1] else empty end')
assert_match '^test-' "$redis_pass" "redis --requirepass (from the env file)"
assert_eq "$redis_pass" "$(env_of redis REDISCLI_AUTH)" "redis REDISCLI_AUTH (its health check)"
for svc in agent settle; do
    assert_eq "redis:6379 $redis_pass" "$(env_of "$svc" REDIS_ADDR) $(env_of "$svc" REDIS_PASSWORD)" "$svc REDIS_ADDR, REDIS_PASSWORD"
done

# --- 10. health checks and start order -----------------------------------------------------------
t_begin "every long-running service has a health check; each waits for healthy dependencies"
for svc in $services; do
    [ "$svc" = migrate ] && continue # one-shot: the others wait for it to complete
    test_cmd=$(q '.services[$s].healthcheck.test // [] | join(" ")' --arg s "$svc")
    case $test_cmd in '' | NONE*) t_fail "$svc has no health check" ;; esac
done
for dep in haproxy:agent agent:postgres agent:redis settle:postgres settle:redis; do
    assert_eq service_healthy "$(q '.services[$s].depends_on[$d].condition // empty' --arg s "${dep%%:*}" --arg d "${dep#*:}")" \
        "${dep%%:*} waits for a healthy ${dep#*:}"
done
while read -r svc dep; do
    [ -n "$(q '.services[$d].healthcheck.test // empty' --arg d "$dep")" ] \
        || t_fail "$svc waits for $dep to be healthy, but $dep has no health check"
done < <(q '.services | to_entries[] | .key as $s | .value.depends_on // {} | to_entries[]
            | select(.value.condition == "service_healthy") | "\($s) \(.key)"')

# --- 11. the two-node stack -----------------------------------------------------------------------
t_begin "docker-compose.nodes.yml: the balancer sends PROXY headers to each node's GW_PROXY_PORT, which trusts only it; each node's HAProxy reaches its own agent"
nodes_file=$compose_dir/docker-compose.nodes.yml
if env -i PATH="$PATH" HOME="$GW_TMP" docker-compose --project-directory "$compose_dir" --env-file "$env_file" \
    -f "$nodes_file" config >"$GW_TMP/nodes.yml" 2>"$GW_TMP/nodes-config.log"; then
    python3 -c 'import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)' \
        <"$GW_TMP/nodes.yml" >"$GW_TMP/nodes.json"
    nq() { jq -r "$@" "$GW_TMP/nodes.json"; }
    lb_cfg=$(nq '.services.lb.volumes[] | if type == "string" then split(":") | {source: .[0], target: .[1]} else . end
                 | select(.target | endswith("/lb.cfg")) | .source')
    [ -f "$lb_cfg" ] || t_fail "the balancer's lb.cfg ($lb_cfg) is not a file"
    lb_ip=$(nq '.services.lb.networks.edge.ipv4_address // empty')
    for n in 1 2; do
        h=haproxy-$n
        node_ip=$(nq --arg s "$h" '.services[$s].networks.edge.ipv4_address // empty')
        assert_eq "$node_ip:$(nq --arg s "$h" '.services[$s].environment.GW_PROXY_PORT')" \
            "$(nq --arg n "GW_NODE_$n" '.services.lb.environment[$n] // empty')" "the balancer's GW_NODE_$n"
        assert_eq "$lb_ip/32" "$(nq --arg s "$h" '.services[$s].environment.GW_TRUSTED_PROXIES')" "$h GW_TRUSTED_PROXIES"
        agent_ip=$(nq --arg a "agent-$n" --arg f "front-$n" '.services[$a].networks[$f].ipv4_address // empty')
        assert_eq "$agent_ip:12345 $agent_ip:12346" \
            "$(nq --arg s "$h" '"\(.services[$s].environment.GW_AGENT_ADDR) \(.services[$s].environment.GW_BILLING_ADDR)"')" \
            "$h GW_AGENT_ADDR, GW_BILLING_ADDR"
        assert_eq "$h:9999" "$(nq --arg a "agent-$n" '.services[$a].environment.GW_HAPROXY_CLI')" "agent-$n GW_HAPROXY_CLI"
        assert_eq "[]" "$(nq -c --arg s "$h" '.services[$s].ports // []')" "$h publishes no port"
    done
    assert_eq "$(q '.services.haproxy.image')" "$(nq '.services["haproxy-1"].image')" "the nodes' HAProxy image"
    assert_eq true "$(nq '.networks.back.internal')" "back is internal"
    for s in lb haproxy-1 haproxy-2; do
        [[ " $(nq -r --arg s "$s" '.services[$s].networks | keys | join(" ")') " != *" back "* ]] || t_fail "$s is on back"
    done
else
    t_fail "docker-compose config of docker-compose.nodes.yml failed" "$(cat "$GW_TMP/nodes-config.log")"
fi
t_end

t_summary
