# tests/bench/compare/plain-haproxy.awk: haproxy/gateway.cfg -> "plain
# HAProxy" for tests/bench/compare.sh: the same config with the agent taken
# out, so the difference between the two is what the agent costs.
#   - no SPOE filter, no send-spoe-group, no rule that reads a txn.gw.*
#     verdict variable (the /health answers go too: they come from the agent);
#   - the upstream is static: server upstream "${CMP_UPSTREAM}" instead of
#     0.0.0.0:0 + set-dst from the verdict;
#   - Proxy-Authorization is set to the static "${CMP_UP_AUTH}" (the stand-in's
#     credentials) instead of the verdict's up_auth;
#   - the upstream pool key (txn.upkey) is made of that static upstream and
#     credential;
#   - the per-user limits go (they read the verdict's limits);
#   - the gw-agents backend (SPOE connections, health checks) and the
#     gw-billing-hold frontend are dropped;
#   - so is the billing that feeds the agent: the ring sections, "log
#     ring@..." lines, the billing log-format, the unique id and the
#     variables only the billing record uses (txn.bill, txn.req_headers,
#     txn.res_headers). The per-request log line to the global log target
#     stays (httplog format).
# Everything else (timeouts, logging, the not-a-proxy-request and
# target-is-the-gateway refusals, header clean-up, one upstream connection
# per request, errorfiles) is left as it is.
#   awk -f plain-haproxy.awk haproxy/gateway.cfg > plain.cfg
/^[.a-z]/ { skip = (($1 == "backend" && $2 == "gw-agents") || ($1 == "frontend" && $2 == "gw-billing-hold") || $1 == "ring") }
skip { next }
/^[ \t]*log[ \t]+"?ring@/ { next }
/^[ \t]*unique-id-format[ \t]/ { next }
/^[ \t]*log-format[ \t]+"gw/ { next }
/txn\.(bill|req_headers|res_headers)/ && !/^[ \t]*#/ { next }
/^[ \t]*filter[ \t]+spoe/ { next }
/send-spoe-group/ { next }
/set-header Proxy-Authorization .*txn\.gw\.up_auth/ {
    sub(/set-header Proxy-Authorization .*/, "set-header Proxy-Authorization \"${CMP_UP_AUTH}\"")
    print
    next
}
/set-var-fmt\(txn\.upkey\) .*txn\.gw\.up_auth/ {
    sub(/"[^"]*"/, "\"${CMP_UPSTREAM} ${CMP_UP_AUTH}\"")
    print
    next
}
/txn\.gw\./ && !/^[ \t]*#/ { next }
/track-sc1|sc-inc-gpc|conns_limited|rps_limited/ && !/^[ \t]*#/ { next }
/^[ \t]*server[ \t]+upstream[ \t]+0\.0\.0\.0:0/ {
    sub(/0\.0\.0\.0:0/, "\"${CMP_UPSTREAM}\"")
    print
    next
}
{ print }
