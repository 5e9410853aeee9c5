#!/usr/bin/env bash
# The official image's entrypoint contract, for the parts the gateway's
# compose file uses: options alone run postgres with them; `postgres ...`
# started as root fixes the ownership of PGDATA and re-runs this script as
# user postgres; an empty PGDATA is initialized (POSTGRES_USER, default
# postgres; POSTGRES_PASSWORD, required unless POSTGRES_HOST_AUTH_METHOD is
# trust; POSTGRES_DB, default the user; POSTGRES_INITDB_ARGS), then
# /docker-entrypoint-initdb.d/*.sql and *.sh run against a server listening
# on the Unix socket only; anything else runs as given.
set -euo pipefail
case $1 in -*) set -- postgres "$@" ;; esac
if [ "$1" != postgres ]; then
    exec "$@"
fi

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 700 "$PGDATA"
    install -d -o postgres -g postgres -m 3777 /var/run/postgresql
    exec gosu postgres "${BASH_SOURCE[0]}" "$@"
fi

user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
        echo "error: database is uninitialized and POSTGRES_PASSWORD is not set" >&2
        echo "  (set it, or POSTGRES_HOST_AUTH_METHOD=trust to allow all connections without one)" >&2
        exit 1
    fi
    # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of options
    initdb --username="$user" --pwfile=<(printf '%s\n' "${POSTGRES_PASSWORD:-}") \
        ${POSTGRES_INITDB_ARGS:-}
    printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -p 5432" start
    export PGUSER=$user PGPASSWORD=${POSTGRES_PASSWORD:-}
    if [ "$db" != postgres ]; then
        psql -X -v ON_ERROR_STOP=1 -d postgres -v db="$db" <<<'CREATE DATABASE :"db";'
    fi
    for f in /docker-entrypoint-initdb.d/*; do
        case $f in
        *.sql) psql -X -v ON_ERROR_STOP=1 -d "$db" -f "$f" ;;
        *.sh) . "$f" ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop
    unset PGUSER PGPASSWORD
    echo "PostgreSQL init process complete; ready for start up."
fi
exec "$@"
