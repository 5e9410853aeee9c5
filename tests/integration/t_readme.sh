#!/usr/bin/env bash
# Every command README.md shows, run for real, so that a README change that
# breaks a command fails here. The commands are read out of README.md's fenced
# code blocks at test time (each section found by its heading), never copied.
# What cannot work on this machine as written is rewritten mechanically: the
# proxy address (localhost:8080, gw:8080) becomes the gateway the harness
# started (tests/lib/gateway.sh), targets on the Internet become its local
# origin, the example database URI one of its PostgreSQL databases, the example
# Redis its Redis. A section that no longer holds what a case expects fails
# the case instead of passing on nothing.
#
# Not run here: `make test` itself (CI runs it: .ci/run, checked below), the
# docker commands of "Running with compose" (tests/compose/run.sh runs them
# against the real stack, `make compose-test`; their SQL and curl commands are
# also run here).
# shellcheck disable=SC2016 # backquotes in single quotes are Markdown's
set -u
. "$(dirname "$0")/../lib/services.sh"
. "$GW_ROOT/tests/lib/gateway.sh"

README=$GW_ROOT/README.md
. "$GW_ROOT/tests/lib/readme.sh"

svc_init || exit 1
start_gateway_stack || t_abort "the gateway stack did not start"

ORIGIN=http://127.0.0.1:$ORIGIN_PORT
ORIGIN_TLS=https://localhost:$ORIGIN_TLS_PORT

# --- reading the README (readme_section, readme_code: tests/lib/readme.sh) ---------

# readme_commands <heading>: the section's shell commands (```sh blocks,
# without comment and blank lines).
readme_commands() {
    readme_code "$1" sh | grep -Ev '^[[:space:]]*(#|$)'
}

# table_names <heading>: the `NAME`s in the first column of the section's tables.
table_names() {
    readme_section "$1" | awk -F'|' '/^\| *`/ { print $2 }' | grep -oE '`[A-Z][A-Z0-9_]*`' | tr -d '`' | sort -u
}

# --- running README commands here ------------------------------------------------------

# to_local <proxy port> <http origin> <https origin> <CA file>: the commands
# on stdin with what is unreachable here replaced: the proxy address
# (localhost:8080 or gw:8080) by the gateway on <proxy port>; targets on the
# Internet (https://api.example.com, https://httpbin.org/ip, ...) by the local
# origin, path kept (it answers any path; its certificate is the test CA's).
to_local() {
    sed -E -e "s#\\b(localhost|gw):8080\\b#127.0.0.1:$1#g" \
        -e "s#https://[A-Za-z0-9.-]+\\.[A-Za-z]+(/[^[:space:]\"']*)?#$3\\1 --cacert $4#g" \
        -e "s#http://[A-Za-z0-9.-]+\\.[A-Za-z]+(/[^[:space:]\"']*)?#$2\\1#g"
}

# here <command>: the command rewritten for the harness's gateway and origin.
here() {
    to_local "$GW_PORT" "$ORIGIN" "$ORIGIN_TLS" "$GW_CA" <<<"$1"
}

# status_of <curl command>: run it from the repository root, output
# discarded; print the HTTP status.
status_of() {
    (cd "$GW_ROOT" && bash -c "$1 -s -o /dev/null -w '%{http_code}' --max-time 10")
}

# fresh_db <name>: create an empty database on the harness's PostgreSQL;
# print its URI (the harness's, with the database name replaced).
fresh_db() {
    psql_gw "CREATE DATABASE $1" >/dev/null || return 1
    sed -E "s#/[^/?]*(\\?|\$)#/$1\\1#" <<<"$POSTGRES_URI"
}

# with_db <uri> <command>: the command with its example PostgreSQL URI
# (postgres://user:pass@db:5432/proxydb: no host `db` here) replaced by <uri>.
with_db() {
    sed -E "s#postgres://[^[:space:]]+#$1#g" <<<"$2"
}

# run_in_root <command>: run it from the repository root (README commands
# use relative paths); output and exit status are the command's.
run_in_root() {
    (cd "$GW_ROOT" && bash -c "$1" 2>&1)
}

# psql_at <uri> <sql>: unaligned, tuples only, stops at the first error.
psql_at() {
    psql -X -q -At -v ON_ERROR_STOP=1 -d "$1" -c "$2"
}

# db_state <uri>: the tables, the migrations recorded and the row counts of
# the gateway's tables: equal before and after a run that changed nothing.
db_state() {
    psql_at "$1" "
        SELECT (SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'),
               (SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations),
               (SELECT count(*) FROM users), (SELECT count(*) FROM balances),
               (SELECT count(*) FROM authorized_ips), (SELECT count(*) FROM proxies)"
}

# psql_file <uri>: run the SQL on stdin, stopping at the first error.
psql_file() {
    psql -X -q -v ON_ERROR_STOP=1 -d "$1" -f - 2>&1
}

# --- 1. Usage -----------------------------------------------------------------------------

# the example under "What it is" counts as one of them
mapfile -t USAGE < <(readme_commands "## What it is"; readme_commands "## Usage")

t_begin "## What it is, ## Usage: every curl example answers 200 through the gateway"
[ ${#USAGE[@]} -gt 0 ] || t_fail "README.md's ## Usage has no command in a \`\`\`sh block"
for cmd in "${USAGE[@]}"; do
    if [[ $cmd != "curl "* ]]; then
        t_fail "not a curl command, this test cannot run it: $cmd"
        continue
    fi
    run=$(here "$cmd")
    assert_eq 200 "$(status_of "$run")" "status of: $cmd
      run as: $run"
done
t_end

# The grammar claims, on the credentials of the first example with every
# option (plain HTTP to the origin, so that the refusal's body is readable).
t_begin "## Usage: a bad option is a 400 naming it; a wrong password a 407 with the README's challenge"
full=$(printf '%s\n' "${USAGE[@]}" | grep -m1 -E -- '-sessTime-[0-9]+:')
creds=$(sed -nE 's/.*-x "([^"]*)@[^"@]*".*/\1/p' <<<"$full") # user-options:password
if [ -z "$creds" ]; then
    t_fail "no ## Usage example with -x \"user-...-sessTime-N:password@host:port\""
else
    bad=$(sed -E 's/-sessTime-[0-9]+:/-sessTime-1441:/' <<<"$creds") # README: 1..1440
    gw_req "$bad" "$ORIGIN/hello"
    assert_eq 400 "$GW_CODE" "status with ${bad%%:*}"
    assert_match sessTime "$(cat "$GW_BODY")" "the 400 body names the bad option"
    gw_req "${creds%%:*}:not-${creds#*:}" "$ORIGIN/hello"
    assert_eq 407 "$GW_CODE" "status with a wrong password"
    challenge=$(grep -o -m1 'Proxy-Authenticate: Basic realm="[^"]*"' "$README")
    [ -n "$challenge" ] || t_fail "README.md no longer shows the Proxy-Authenticate header of a 407"
    assert_eq "proxy-authenticate: ${challenge#*: }" "$(grep '^proxy-authenticate:' <<<"$GW_HDRS")" \
        "the 407's challenge"
fi
t_end

# --- 2. Health ------------------------------------------------------------------------------

t_begin "## Health: the curl command answers 200 with every key of the README's example JSON"
mapfile -t health < <(readme_commands "## Health")
keys=$(readme_code "## Health" json | jq -r 'keys_unsorted[]')
[ ${#health[@]} -gt 0 ] || t_fail "README.md's ## Health has no command in a \`\`\`sh block"
[ -n "$keys" ] || t_fail "no JSON object with keys in ## Health's \`\`\`json block"
for cmd in "${health[@]}"; do
    out=$(cd "$GW_ROOT" && bash -c "$(here "$cmd") -s --max-time 10 -w '\\n%{http_code}'")
    body=${out%$'\n'*}
    assert_eq 200 "${out##*$'\n'}" "status of: $cmd"
    for key in $keys; do
        jq -e --arg k "$key" 'has($k)' <<<"$body" >/dev/null 2>&1 || t_fail "no \"$key\" in the answer" "$body"
    done
done
t_end

# --- 3. Database ------------------------------------------------------------------------------

APPLY='' APPLY_DEMO=''
t_begin "## Database: the sql/apply.sh commands are there"
mapfile -t db_cmds < <(readme_commands "## Database")
for cmd in "${db_cmds[@]}"; do
    case $cmd in
    "sql/apply.sh "*--demo*) APPLY_DEMO=$cmd ;;
    "sql/apply.sh "*) APPLY=$cmd ;;
    *) t_fail "not a sql/apply.sh command, this test does not run it: $cmd" ;;
    esac
done
[ -n "$APPLY" ] || t_fail "no \`sql/apply.sh <uri>\` command in ## Database"
[ -n "$APPLY_DEMO" ] || t_fail "no \`sql/apply.sh <uri> --demo\` command in ## Database"
t_end

# apply_twice <README command> <db name>: in a new database the command
# applies the schema; run again, it applies nothing and changes nothing.
# Sets DB_URI.
apply_twice() {
    local cmd=$1 out before
    DB_URI=$(fresh_db "$2") || { t_fail "CREATE DATABASE $2"; return 1; }
    out=$(run_in_root "$(with_db "$DB_URI" "$cmd")") || t_fail "exit status $? of: $cmd" "$out"
    assert_match 'applied schema\.sql' "$out" "first run applied the schema"
    before=$(db_state "$DB_URI")
    out=$(run_in_root "$(with_db "$DB_URI" "$cmd")") || t_fail "exit status $? of the second run" "$out"
    assert_match 'nothing to apply' "$out" "second run"
    assert_eq "$before" "$(db_state "$DB_URI")" "tables, migrations and row counts after the second run"
}

if [ -n "$APPLY" ]; then
    t_begin "## Database: \`sql/apply.sh <uri>\` on an empty database applies the schema; a second run is a no-op"
    apply_twice "$APPLY" readme_apply && assert_eq 0 "$(psql_at "$DB_URI" 'SELECT count(*) FROM users')" "users"
    t_end
fi
if [ -n "$APPLY_DEMO" ]; then
    t_begin "## Database: \`sql/apply.sh <uri> --demo\` on an empty database loads the demo user; a second run is a no-op"
    # The demo credentials the README gives for `make run`.
    apply_twice "$APPLY_DEMO" readme_demo &&
        assert_eq "myuser|mypassword" "$(psql_at "$DB_URI" 'SELECT username, password FROM users WHERE is_active')" \
            "active users (the demo user)"
    t_end
fi

t_begin "## Database: the example data (\`\`\`sql) loads into a database made by sql/apply.sh"
example=$(readme_code "## Database" sql)
[ -n "$example" ] || t_fail "no \`\`\`sql block in ## Database"
if [ -n "$APPLY" ] && uri=$(fresh_db readme_example); then
    assert_ok "sql/apply.sh" run_in_root "$(with_db "$uri" "$APPLY")"
    assert_ok "the example data" psql_file "$uri" <<<"$example"
else
    t_fail "no database made by sql/apply.sh to load it into"
fi
t_end

# --- 4. Running with compose ---------------------------------------------------------------------

COMPOSE=$(readme_code "## Running with compose" sh)
# The SQL of the heredoc (<<'SQL' ... SQL) fed to psql in the postgres service.
COMPOSE_SQL=$(awk '/psql .*<<.*SQL/ { f = 1; next } f && $0 == "SQL" { exit } f' <<<"$COMPOSE")
# The commands after it (curl against the gateway).
mapfile -t compose_after < <(awk 'f && !/^[[:space:]]*(#|$)/; $0 == "SQL" { f = 1 }' <<<"$COMPOSE")

t_begin "## Running with compose: the psql heredoc's SQL runs on a database made by sql/apply.sh"
[ -n "$COMPOSE_SQL" ] || t_fail "no \`psql ... <<'SQL' ... SQL\` heredoc in ## Running with compose"
if [ -n "$APPLY" ] && uri=$(fresh_db readme_compose); then
    assert_ok "sql/apply.sh" run_in_root "$(with_db "$uri" "$APPLY")"
    assert_ok "the heredoc's SQL" psql_file "$uri" <<<"$COMPOSE_SQL"
else
    t_fail "no database made by sql/apply.sh to run it in"
fi
t_end

# The same SQL in the gateway's own database (which also holds the demo data:
# providers, and a whitelist with 127.0.0.1), then the curl commands that
# follow it: the customer it adds can use the gateway.
t_begin "## Running with compose: after the heredoc's SQL, its curl commands answer 200"
[ ${#compose_after[@]} -gt 0 ] || t_fail "no command after the heredoc in ## Running with compose"
if assert_ok "the heredoc's SQL in the gateway's database" psql_file "$POSTGRES_URI" <<<"$COMPOSE_SQL"; then
    for cmd in "${compose_after[@]}"; do
        run=$(here "$cmd")
        # The agent reloads on NOTIFY: allow it a few seconds.
        deadline=$((SECONDS + 5))
        until [ "$(status_of "$run")" = 200 ] || [ "$SECONDS" -ge "$deadline" ]; do sleep 0.2; done
        assert_eq 200 "$(status_of "$run")" "status of: $cmd
      run as: $run"
    done
fi
t_end

# --- 5. make run / make test -------------------------------------------------------------------------

t_begin "the README opens with \`make run\` and \`make test\`; CI runs \`make test\`"
top=$(awk '/^```/ { if (f) exit; f = 1; next } f' "$README")
assert_match '^make run( +#.*)?$' "$(sed -n 1p <<<"$top")" "first line of the first code block"
assert_match '^make test( +#.*)?$' "$(sed -n 2p <<<"$top")" "second line of the first code block"
grep -Eq '^[[:space:]]*make test[[:space:]]*$' "$GW_ROOT/.ci/run" || t_fail ".ci/run does not run \`make test\`"
t_end

# A `make run` in the background, as a user starts it in a terminal: in a
# session of its own (setsid), so that a Ctrl-C (SIGINT to its process group)
# can be imitated. env -i: the harness exports POSTGRES_URI, REDIS_ADDR and
# GW_AGENT, which run-stack.sh would take as the user's choices (and make
# integration its MAKEFLAGS). --default-signal=INT: bash starts background
# commands with SIGINT ignored, which no trap could undo.
RUN_PID=
RUN_LOG=
RUN_DIR=
run_start() { # <port> <command>
    RUN_LOG=$GW_TMP/make-run.$1.log
    (cd "$GW_ROOT" && exec env -i --default-signal=INT PATH="$PATH" HOME="${HOME:-/root}" \
        ${TMPDIR:+TMPDIR="$TMPDIR"} PORT="$1" setsid bash -c "$2") >"$RUN_LOG" 2>&1 </dev/null &
    RUN_PID=$!
}

# run_stop: Ctrl-C, and wait up to 20 s for it to exit; KILL the group if it
# does not. Sets RUN_STATUS (empty when it had to be killed).
run_stop() {
    local deadline=$((SECONDS + 20))
    RUN_STATUS=
    [ -n "$RUN_PID" ] || return 0
    kill -INT -- "-$RUN_PID" 2>/dev/null
    while _svc_alive "$RUN_PID" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    if _svc_alive "$RUN_PID"; then
        kill -KILL -- "-$RUN_PID" 2>/dev/null
        wait "$RUN_PID" 2>/dev/null
    else
        wait "$RUN_PID" 2>/dev/null
        RUN_STATUS=$?
    fi
    RUN_PID=
}

# run_leftovers: what is left of its stack: the sessions (the services and
# their supervisors, tests/lib/services.sh, each in a session of its own, out
# of reach of the Ctrl-C) of the processes whose command line names its temp
# dir (never this test's own session). Prints "pid sid args" lines.
run_leftovers() {
    local self
    [ -n "$RUN_DIR" ] || return 0
    self=$(ps -o sid= -p $$ | tr -d ' ')
    ps -eo pid=,sid=,args= | D=$RUN_DIR awk -v self="$self" '
        { sid[NR] = $2; line[NR] = $0 }
        index($0, ENVIRON["D"]) && $2 != self { mine[$2] = 1 }
        END { for (i = 1; i <= NR; i++) if (sid[i] in mine) print line[i] }'
}

# run_reap: stop what a failed Ctrl-C left of its stack, and remove its
# temp dir (kept with GW_KEEP=1, like the harness's).
run_reap() {
    local pids
    pids=$(run_leftovers | awk '{ print $1 }')
    [ -n "$pids" ] || return 0
    # shellcheck disable=SC2086 # a list of pids
    kill -TERM $pids 2>/dev/null
    sleep 2
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null
    [ "${GW_KEEP:-0}" = 1 ] || rm -rf "$RUN_DIR"
    return 0
}

# At exit (also when the test is aborted): the same Ctrl-C, then whatever it left.
run_abort() {
    run_stop
    run_reap
}
svc_on_exit run_abort

# run_up <port> <command>: start it and wait until /health answers 200 and it
# has printed what it started. Sets RUN_ORIGIN (its http origin, https origin
# and test CA), RUN_DIR (its temp dir) and RUN_PORTS (the ports of the
# services it printed, but not the harness's PostgreSQL and Redis, which it
# may have been given).
run_up() {
    local port=$1 cmd=$2 deadline code=
    RUN_ORIGIN=() RUN_DIR='' RUN_PORTS=''
    run_start "$port" "$cmd"
    deadline=$((SECONDS + 60))
    while [ "$SECONDS" -lt "$deadline" ] && _svc_alive "$RUN_PID"; do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/health")
        [ "$code" = 200 ] && break
        sleep 0.5
    done
    assert_eq 200 "$code" "GET http://127.0.0.1:$port/health ($cmd)" || return 1
    # It prints what it started right after the stack is up.
    # (its last line before the curl examples names the customers to try)
    wait_until 10 grep -qE '^(Demo customer|Customers):' "$RUN_LOG" || { t_fail "it printed no 'Demo customer:' or 'Customers:' line"; return 1; }
    # "  origin      http://127.0.0.1:P and https://localhost:Q (test CA: F)"
    read -r -a RUN_ORIGIN < <(sed -nE 's#^ *origin +(http://[^ ]+) and (https://[^ ]+) \(test CA: ([^)]+)\)$#\1 \2 \3#p' "$RUN_LOG")
    [ ${#RUN_ORIGIN[@]} = 3 ] || t_fail "its output has no line 'origin  http://... and https://... (test CA: ...)'"
    RUN_DIR=$(sed -nE 's#^ *logs +(.*)/\*\.log$#\1#p' "$RUN_LOG")
    [ -n "$RUN_DIR" ] || t_fail "its output has no line 'logs  DIR/*.log'"
    RUN_PORTS=$(sed -E '/^(Demo customer|Customers):/q' "$RUN_LOG" | grep -oE '127\.0\.0\.1:[0-9]+(-[0-9]+)?|localhost:[0-9]+' |
        sed 's/.*://' | awk -F- '{ for (p = $1; p <= ($2 ? $2 : $1); p++) print p }' |
        grep -vxF -e "$PG_PORT" -e "$REDIS_PORT" | sort -u)
}

# run_down: Ctrl-C; it must exit within 20 s, leaving no listener on its
# ports, no process of its stack and no temp dir.
run_down() {
    local p left=''
    run_stop
    [ -n "$RUN_STATUS" ] || t_fail "still running 20 s after Ctrl-C (killed)"
    for p in $RUN_PORTS; do
        [ -z "$(ss -Hltn "sport = :$p")" ] || left="$left $p"
    done
    assert_eq "" "$left" "ports still listening after Ctrl-C"
    if [ -n "$RUN_DIR" ]; then
        [ ! -e "$RUN_DIR" ] || t_fail "its temp dir $RUN_DIR is still there"
        assert_eq "" "$(run_leftovers)" "processes of its stack ($RUN_DIR) after Ctrl-C" || run_reap
    fi
}

t_begin "\`make run\` starts the whole gateway, serves a ## Usage example, and Ctrl-C stops all of it"
make_run=$(sed -n '1s/ *#.*//p' <<<"$top")
if [ "$make_run" != "make run" ]; then
    t_fail "the README's first command is not \`make run\`: '$make_run'"
else
    port=$(free_port)
    if run_up "$port" "$make_run" && [ ${#RUN_ORIGIN[@]} = 3 ]; then
        # The first example, on its proxy port and its origin.
        run=$(to_local "$port" "${RUN_ORIGIN[@]}" <<<"${USAGE[0]:-}")
        assert_eq 200 "$(status_of "$run")" "status of: ${USAGE[0]:-(no ## Usage example)}
      run as: $run"
    fi
    run_down
fi
t_end

# "To try it against existing services": the harness's PostgreSQL and Redis.
# The database is made with the README's `sql/apply.sh <uri> --demo`: the
# README says to apply the schema and migrations, but with no provider in the
# database /health answers 503 and run-stack.sh gives up ("the stack did not
# start"). The demo providers point at ports the stand-in it starts does not
# use, so no proxy request is tried here.
t_begin "## Running it locally: the command for existing services starts and stops, the database untouched"
mapfile -t local_cmds < <(readme_commands "## Running it locally")
assert_eq 1 "${#local_cmds[@]}" "commands in ## Running it locally"
if [ ${#local_cmds[@]} != 1 ] || [ -z "$APPLY_DEMO" ]; then
    t_fail "not run: it needs one command here and ## Database's \`sql/apply.sh <uri> --demo\`"
elif ! uri=$(fresh_db readme_external); then
    t_fail "CREATE DATABASE readme_external"
else
    port=$(free_port)
    out=$(run_in_root "$(with_db "$uri" "$APPLY_DEMO")") || t_fail "sql/apply.sh --demo on the database" "$out"
    state=$(db_state "$uri")
    cmd=$(with_db "$uri" "${local_cmds[0]}" |
        sed -E "s#REDIS_ADDR=[^[:space:]]+#REDIS_ADDR=$REDIS_ADDR#; s#\\bPORT=[0-9]+#PORT=$port#")
    run_up "$port" "$cmd"
    run_down
    assert_eq "$state" "$(db_state "$uri")" "tables, migrations and row counts of the database after the run"
fi
t_end

# --- 6. configuration tables ------------------------------------------------------------------------

# both_ways <what> <README names> <names of the program>
both_ways() {
    assert_eq "" "$(comm -23 <(printf '%s\n' "$2") <(printf '%s\n' "$3"))" "in the README's $1 table, unknown to it"
    assert_eq "" "$(comm -13 <(printf '%s\n' "$2") <(printf '%s\n' "$3"))" "missing from the README's $1 table"
}

t_begin "### gw-agent: the table lists exactly the variables of \`agent/gw-agent --help\`"
readme_vars=$(table_names "### gw-agent")
help_cmd=$(readme_section "### gw-agent" | grep -o -m1 '`agent/gw-agent --help`' | tr -d '`')
[ -n "$readme_vars" ] || t_fail "no variable in the ### gw-agent table"
if [ -z "$help_cmd" ]; then
    t_fail "### gw-agent no longer mentions \`agent/gw-agent --help\`"
elif help=$(run_in_root "$help_cmd"); then
    both_ways gw-agent "$readme_vars" "$(grep -oE '\benv [A-Z][A-Z0-9_]*' <<<"$help" | cut -d' ' -f2 | sort -u)"
else
    t_fail "$help_cmd failed" "$help"
fi
t_end

# The HAProxy table's variables are those haproxy/gateway.cfg reads, and
# GW_SPOE_TIMEOUT, which spoe-gateway.conf (loaded by gateway.cfg) reads.
t_begin "### HAProxy: the table lists exactly the \${VARIABLE}s of haproxy/gateway.cfg and spoe-gateway.conf"
readme_vars=$(table_names '### HAProxy (`haproxy/gateway.cfg`, `haproxy/spoe-gateway.conf`)')
[ -n "$readme_vars" ] || t_fail "no variable in the ### HAProxy table"
both_ways HAProxy "$readme_vars" \
    "$(grep -ohE '\$\{[A-Z][A-Z0-9_]*' "$GW_ROOT/haproxy/gateway.cfg" "$GW_ROOT/haproxy/spoe-gateway.conf" | cut -c3- | sort -u)"
t_end

t_begin "## Traffic logging: \`agent/gw-settle --help\` lists the variables the README names"
settle_line=$(readme_section "## Traffic logging" | tr '\n' ' ' | grep -oE '`agent/gw-settle --help`[^.]*')
settle_vars=$(grep -oE '`[A-Z][A-Z0-9_]*`' <<<"$settle_line" | tr -d '`' | sort -u)
[ -n "$settle_vars" ] || t_fail "## Traffic logging no longer names gw-settle's variables after \`agent/gw-settle --help\`"
if help=$(run_in_root "agent/gw-settle --help"); then
    assert_eq "" "$(comm -23 <(printf '%s\n' "$settle_vars") <(grep -oE '\benv [A-Z][A-Z0-9_]*' <<<"$help" | cut -d' ' -f2 | sort -u))" \
        "named in the README, unknown to gw-settle"
else
    t_fail "agent/gw-settle --help failed" "$help"
fi
t_end

t_summary
