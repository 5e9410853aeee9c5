#!/usr/bin/env bash
# The agent's state through the real gateway (HAProxy + agent + PostgreSQL +
# Redis + stand-in, curl as the client): database changes apply within a
# second (NOTIFY), verdicts continue while PostgreSQL is down, a restart with
# PostgreSQL down starts from the snapshot file, no database and no file
# refuses to start, balances changed in Redis apply on the next request,
# Redis down fails open, and crypt(3) password hashes work.
set -u
. "$(dirname "$0")/../lib/services.sh"
. "$(dirname "$0")/../lib/gateway.sh"
svc_init
start_gateway_stack || t_abort "stack did not start"

URL=http://127.0.0.1:$ORIGIN_PORT/bytes/16

# wait_status <want> <user:pass>: until a request through the gateway gets <want>
wait_status() {
    wait_until "${3:-5}" bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 -x http://$2@127.0.0.1:$GW_PORT $URL)\" = $1 ]"
}

t_begin "a user added in PostgreSQL can use the gateway within a second"
assert_eq 407 "$(gw_status newbie:pw1 "$URL")" "before the insert"
psql_gw "INSERT INTO users (username, password) VALUES ('newbie', 'pw1')" >/dev/null
start=$(date +%s%N)
wait_status 200 newbie:pw1 5
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
assert_eq 200 "$(gw_status newbie:pw1 "$URL")" "after the insert"
assert_match '^[0-9]+$' "$elapsed_ms" "took ${elapsed_ms} ms"
[ "$elapsed_ms" -lt 1000 ] || t_fail "the change took ${elapsed_ms} ms (NOTIFY should make it < 1 s)"
t_end

t_begin "a password change and a deactivation apply at once"
psql_gw "UPDATE users SET password = 'pw2' WHERE username = 'newbie'" >/dev/null
wait_status 407 newbie:pw1
assert_eq 200 "$(gw_status newbie:pw2 "$URL")" "new password"
assert_eq 407 "$(gw_status newbie:pw1 "$URL")" "old password"
psql_gw "UPDATE users SET is_active = false WHERE username = 'newbie'" >/dev/null
wait_status 407 newbie:pw2
assert_eq 407 "$(gw_status newbie:pw2 "$URL")" "deactivated user"
t_end

t_begin "crypt(3) hashes: SHA-512, bcrypt and yescrypt verified, wrong passwords refused"
# perl's crypt() is libcrypt's, the library the agent verifies with
for kind in 'sha:$6$s4ltS4lt$' 'bcrypt:$2b$05$abcdefghijklmnopqrstuu' 'yescrypt:$y$j9T$abcdefghijklmnop$'; do
    name=${kind%%:*}
    hash=$(perl -e 'print crypt($ARGV[0], $ARGV[1])' hashpw "${kind#*:}")
    psql_gw "INSERT INTO users (username, password) VALUES ('$name', '$hash')" >/dev/null
    wait_status 200 "$name:hashpw"
    assert_eq 200 "$(gw_status "$name:hashpw" "$URL")" "$name user, right password"
    assert_eq 200 "$(gw_status "$name:hashpw" "$URL")" "$name again (cached verification)"
    assert_eq 407 "$(gw_status "$name:nope" "$URL")" "$name user, wrong password"
done
t_end

t_begin "balance in Redis: 0 refuses with 402, a positive value allows on the next request"
redis_gw SET balance:cache:myuser 0 >/dev/null
assert_eq 402 "$(gw_status myuser:mypassword "$URL")" "balance 0"
redis_gw SET balance:cache:myuser -5 >/dev/null
assert_eq 402 "$(gw_status myuser:mypassword "$URL")" "negative balance"
redis_gw SET balance:cache:myuser 1000 >/dev/null
assert_eq 200 "$(gw_status myuser:mypassword "$URL")" "balance 1000"
redis_gw SET balance:cache:myuser notanumber >/dev/null
assert_eq 200 "$(gw_status myuser:mypassword "$URL")" "unreadable balance: allowed (counted, logged)"
redis_gw DEL balance:cache:myuser >/dev/null
assert_eq 200 "$(gw_status myuser:mypassword "$URL")" "no key: allowed"
t_end

t_begin "Redis down: requests are allowed (fail open), /health says so"
redis_gw SET balance:cache:myuser 0 >/dev/null
stop_redis
assert_eq 200 "$(gw_status myuser:mypassword "$URL")" "Redis down, balance unknown"
wait_until 5 bash -c "curl -s http://127.0.0.1:$GW_PORT/health | grep -q '\"redis_ok\":0'"
assert_match '"redis_ok":0' "$(curl -s "http://127.0.0.1:$GW_PORT/health")" "health"
restart_redis
redis_gw SET balance:cache:myuser 0 >/dev/null
wait_status 402 myuser:mypassword 10
assert_eq 402 "$(gw_status myuser:mypassword "$URL")" "Redis back: balance 0 applies again"
redis_gw DEL balance:cache:myuser >/dev/null
t_end

t_begin "PostgreSQL down: verdicts continue from the last snapshot"
stop_postgres
assert_eq 200 "$(gw_status myuser:mypassword "$URL")" "known user"
assert_eq 407 "$(gw_status myuser:wrong "$URL")" "wrong password still refused"
wait_until 10 bash -c "curl -s http://127.0.0.1:$GW_PORT/health | grep -q '\"postgres_ok\":0'"
assert_match '"status":"healthy".*"postgres_ok":0' "$(curl -s "http://127.0.0.1:$GW_PORT/health")" "health"
t_end

t_begin "agent restarted while PostgreSQL is down starts from its snapshot file"
stop_bg agent TERM
assert_eq 0 "$BG_STATUS" "agent exit status"
assert_eq 503 "$(gw_status myuser:mypassword "$URL")" "no agent: 503"
start_agent || t_fail "agent restart"
wait_status 200 myuser:mypassword 10
assert_eq 200 "$(gw_status myuser:mypassword "$URL")" "verdicts from the file"
assert_match 'STALE' "$(cat "$GW_TMP/agent.log")" "the log says the data is stale"
t_end

t_begin "PostgreSQL back: the agent reloads and sees new rows"
restart_postgres
psql_gw "INSERT INTO users (username, password) VALUES ('later', 'pw3')" >/dev/null
wait_status 200 later:pw3 15
assert_eq 200 "$(gw_status later:pw3 "$URL")" "user added after the outage"
wait_until 10 bash -c "curl -s http://127.0.0.1:$GW_PORT/health | grep -q '\"postgres_ok\":1'"
assert_match '"postgres_ok":1' "$(curl -s "http://127.0.0.1:$GW_PORT/health")" "health"
t_end

t_begin "no database and no snapshot file: the agent refuses to start, clearly"
stop_postgres
out=$("$GW_AGENT" --listen "127.0.0.1:$(free_port)" --postgres-uri "$POSTGRES_URI" \
    --snapshot-path "$GW_TMP/absent.snapshot" 2>&1)
rc=$?
assert_eq 1 "$rc" "exit status"
assert_match 'no snapshot to start with' "$out" "message"
out=$(env -u POSTGRES_URI "$GW_AGENT" --listen "127.0.0.1:$(free_port)" 2>&1)
rc=$?
assert_eq 2 "$rc" "exit status without POSTGRES_URI"
assert_match 'POSTGRES_URI is required' "$out" "message without POSTGRES_URI"
t_end

t_begin "no sanitizer report in the agent's log"
assert_eq "" "$(grep -E 'AddressSanitizer|runtime error:|LeakSanitizer' "$GW_TMP/agent.log" | head -3)" "sanitizer findings"
t_end

t_summary
