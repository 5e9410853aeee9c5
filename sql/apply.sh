#!/usr/bin/env bash
# sql/apply.sh: bring a PostgreSQL database up to the gateway's schema.
#
#   sql/apply.sh <postgres-uri> [--demo]
#
# 1. When the `users` table does not exist (in the search_path), applies
#    sql/schema.sql, the reference implementation's schema, unchanged.
# 2. Applies every sql/migrations/NNN_name.sql not yet recorded in
#    schema_migrations(version, applied_at), in file-name order, and records it.
# 3. With --demo, loads sql/demo.sql (idempotent; see that file).
#
# Prints one line per thing it applied, or "nothing to apply". Idempotent: a
# second run applies nothing. Everything runs in one psql session holding a
# PostgreSQL advisory lock, so concurrent runs (two gateway nodes starting at
# once) serialize instead of racing. Exits non-zero, with psql's error and the
# step that failed, when anything goes wrong.
#
# Environment for --demo (each maps to the psql variable named in demo.sql):
#   GW_DEMO_HOST (demo_host, default 127.0.0.1)
#   GW_DEMO_PORT_MIN / GW_DEMO_PORT_MAX (demo_port_min / demo_port_max,
#     defaults 24000 / 24003): the port range of all demo providers
#   GW_DEMO_GLOBAL_PORT_MIN, GW_DEMO_GLOBAL_PORT_MAX, GW_DEMO_DE_PORT_MIN,
#   GW_DEMO_DE_PORT_MAX, GW_DEMO_US_PORT_MIN, GW_DEMO_US_PORT_MAX: per provider
# PGCONNECT_TIMEOUT defaults to 10 seconds.
set -euo pipefail

prog=apply.sh
sql_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() {
    printf '%s: error: %s\n' "$prog" "$*" >&2
    exit 1
}

usage() {
    printf 'usage: %s <postgres-uri> [--demo]\n' "$0" >&2
    exit 2
}

uri=
demo=0
for arg in "$@"; do
    case $arg in
    --demo) demo=1 ;;
    -h | --help) usage ;;
    -*) printf '%s: unknown option: %s\n' "$prog" "$arg" >&2; usage ;;
    *)
        [ -z "$uri" ] || usage
        uri=$arg
        ;;
    esac
done
[ -n "$uri" ] || usage

command -v psql >/dev/null 2>&1 || die "psql not found (Debian: apt-get install postgresql-client)"
[ -r "$sql_dir/schema.sql" ] || die "missing $sql_dir/schema.sql"

# The URI without its password, for messages.
shown_uri=$(printf '%s' "$uri" | sed -E 's#^([a-z]+://[^:/@]*):[^@/]*@#\1:***@#')

# A path as a psql backslash-command argument: single-quoted, quotes doubled.
psql_quote() {
    local s=${1//\'/\'\'}
    printf "'%s'" "$s"
}

psql_vars=()
if [ "$demo" = 1 ]; then
    [ -r "$sql_dir/demo.sql" ] || die "missing $sql_dir/demo.sql"
    check_port() { # name value
        if ! [[ $2 =~ ^[0-9]{1,5}$ ]] || [ "$2" -lt 1 ] || [ "$2" -gt 65535 ]; then
            die "$1=$2 is not a TCP port (1-65535)"
        fi
    }
    # env name -> psql variable name
    for pair in GW_DEMO_PORT_MIN:demo_port_min GW_DEMO_PORT_MAX:demo_port_max \
        GW_DEMO_GLOBAL_PORT_MIN:demo_global_port_min GW_DEMO_GLOBAL_PORT_MAX:demo_global_port_max \
        GW_DEMO_DE_PORT_MIN:demo_de_port_min GW_DEMO_DE_PORT_MAX:demo_de_port_max \
        GW_DEMO_US_PORT_MIN:demo_us_port_min GW_DEMO_US_PORT_MAX:demo_us_port_max; do
        env_name=${pair%%:*}
        val=${!env_name:-}
        if [ -n "$val" ]; then
            check_port "$env_name" "$val"
            psql_vars+=(-v "${pair#*:}=$val")
        fi
    done
    for p in GLOBAL_ DE_ US_ ''; do
        lo_name=GW_DEMO_${p}PORT_MIN hi_name=GW_DEMO_${p}PORT_MAX
        lo=${!lo_name:-${GW_DEMO_PORT_MIN:-24000}}
        hi=${!hi_name:-${GW_DEMO_PORT_MAX:-24003}}
        [ "$lo" -le "$hi" ] || die "demo port range ${p:+${p%_} }$lo-$hi is empty (min > max)"
    done
    if [ -n "${GW_DEMO_HOST:-}" ]; then
        psql_vars+=(-v "demo_host=$GW_DEMO_HOST")
    fi
fi

# Migrations, in name order (the glob sorts; LC_ALL=C makes it bytewise).
migrations=()
while IFS= read -r f; do
    [ -n "$f" ] || continue
    name=${f##*/}
    [[ $name =~ ^[0-9]{3}_[A-Za-z0-9_]+\.sql$ ]] \
        || die "bad migration file name: $f (want NNN_name.sql, name in [A-Za-z0-9_])"
    migrations+=("$f")
done < <(LC_ALL=C find "$sql_dir/migrations" -maxdepth 1 -name '*.sql' -type f 2>/dev/null | LC_ALL=C sort)

# One psql script: lock, schema if needed, each pending migration, demo.
script=$(mktemp "${TMPDIR:-/tmp}/gw-apply.XXXXXX")
trap 'rm -f "$script"' EXIT
emit() { printf '%s\n' "$@"; }
{
    emit 'SET client_min_messages = warning;'
    # Session-level lock, released when psql exits (also on error).
    emit "SELECT pg_advisory_lock(hashtext('gw sql/apply.sh')) IS NOT NULL AS gw_locked \\gset"
    emit "SELECT to_regclass('users') IS NULL AS gw_need_schema \\gset"
    emit '\if :gw_need_schema' \
        "\\echo '$prog: applying schema.sql'" \
        'BEGIN;' \
        "\\i $(psql_quote "$sql_dir/schema.sql")" \
        'COMMIT;' \
        "\\echo '$prog: applied schema.sql'" \
        '\endif'
    emit 'CREATE TABLE IF NOT EXISTS schema_migrations (' \
        '    version text PRIMARY KEY,' \
        '    applied_at timestamptz DEFAULT now());'
    for f in "${migrations[@]}"; do
        v=${f##*/}
        v=${v%.sql}
        emit "SELECT NOT EXISTS (SELECT 1 FROM schema_migrations WHERE version = '$v') AS gw_need \\gset" \
            '\if :gw_need' \
            "\\echo '$prog: applying migration $v'" \
            "\\i $(psql_quote "$f")" \
            "INSERT INTO schema_migrations (version) VALUES ('$v') ON CONFLICT (version) DO NOTHING;" \
            "\\echo '$prog: applied migration $v'" \
            '\endif'
    done
    if [ "$demo" = 1 ]; then
        emit "\\echo '$prog: loading demo.sql'" \
            "\\i $(psql_quote "$sql_dir/demo.sql")" \
            "\\echo '$prog: loaded demo.sql'"
    fi
} >"$script"

export PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-10}
rc=0
out=$(psql -v ON_ERROR_STOP=1 -X -q "${psql_vars[@]}" -d "$uri" -f "$script") || rc=$?
if [ "$rc" != 0 ]; then
    # Progress lines: the last "applying" one names the step that failed.
    printf '%s\n' "$out" | grep -v ': applying \|: loading ' || true
    step=$(printf '%s\n' "$out" | grep ': applying \|: loading ' | tail -n 1 | sed 's/^[^:]*: //' || true)
    die "psql failed (exit $rc) on $shown_uri${step:+ while $step}; nothing after that step was applied"
fi
applied=$(printf '%s\n' "$out" | grep -v ': applying \|: loading \|: loaded ' || true)
if [ -n "$applied" ]; then
    printf '%s\n' "$applied"
fi
if ! printf '%s\n' "$applied" | grep -q ': applied '; then
    echo "$prog: nothing to apply (schema and ${#migrations[@]} migrations up to date)"
fi
printf '%s\n' "$out" | grep ': loaded ' || true
