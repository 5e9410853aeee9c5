/*
 * The Redis side of the live balance (live.h): Lua scripts, so that each
 * step is atomic in Redis whatever the number of gateway nodes and settlement
 * workers.
 *
 * Invariant, per user u: gw:unsettled:u == the bytes of u's requests not yet
 * settled: for a request still running, its field in the hash gw:live:u (the
 * bytes the meter saw so far); for a request that ended, its record's bytes.
 * The live balance is balance:cache:u - gw:unsettled:u; whoever makes it
 * reach zero or less publishes u on gw:cut.
 *
 *   progress (meter)      sets a running request's field to its total so
 *                         far, never lower: a total sent twice changes nothing
 *   final (billing push)  in the script that pushes the record: the field,
 *                         if the meter made one, gives way to the record's
 *                         bytes; with the record's own exactly-once push, a
 *                         record counts once, and an agent that restarted and
 *                         forgot its progress still ends right
 *   release (gw-settle)   in the script that removes the record from
 *                         traffic:logs:processing (LREM: once per record): its
 *                         bytes leave the sum
 * Per record that is two Redis calls when it is pushed and one when it is
 * settled, plus one GET of the balance per user and push.
 *
 * All gateway nodes must agree on GW_LIVE_BALANCE: a record pushed without
 * its final count would be released all the same (the sum never goes below
 * zero, but the user's running requests would count less until they end).
 *
 * Numbers go back to Redis through string.format('%d'): Lua 5.1 would print
 * 1e+15 for a large count.
 */
#ifndef GW_LIVE_LUA_H
#define GW_LIVE_LUA_H

#define LIVE_KEY_HASH    "gw:live:"
#define LIVE_KEY_SUM     "gw:unsettled:"
#define LIVE_CHANNEL_CUT "gw:cut"
#define LIVE_KEY_BALANCE "balance:cache:"

/* Shared by the scripts below. add(u, n) adds n bytes to u's sum; then, once
 * per user and script, the balance is read: what is left is kept, and u is
 * published on gw:cut when nothing is. grew[u] is what u's sum grew by. */
#define LIVE_LUA_ADD                                                                               \
    "local cut, left, grew, bals = {}, {}, {}, {}\n"                                               \
    "local function add(u, n)\n"                                                                   \
    "  grew[u] = (grew[u] or 0) + n\n"                                                             \
    "  local s = redis.call('INCRBY', '" LIVE_KEY_SUM "' .. u, string.format('%d', n))\n"          \
    "  if bals[u] == nil then\n"                                                                   \
    "    bals[u] = tonumber(redis.call('GET', '" LIVE_KEY_BALANCE "' .. u) or '') or false\n"      \
    "  end\n"                                                                                      \
    "  local bal = bals[u]\n"                                                                      \
    "  if not bal then return end\n"                                                               \
    "  left[u] = bal - s\n"                                                                        \
    "  if bal - s <= 0 and not cut[u] then\n"                                                      \
    "    cut[u] = true\n"                                                                          \
    "    redis.call('PUBLISH', '" LIVE_CHANNEL_CUT "', u)\n"                                       \
    "  end\n"                                                                                      \
    "end\n"

/* The meter's progress. ARGV: (user, request id, bytes so far) triples.
 * Returns {users published on gw:cut, horizon}: horizon is the smallest
 * left / grew over the users still in credit whose streams grew, i.e. in how
 * many of the intervals just measured the first of them runs out at this
 * pace ("%.3f"; nil when none), so the meter can look again in time. */
static const char live_lua_progress[] = LIVE_LUA_ADD
    "for i = 1, #ARGV - 2, 3 do\n"
    "  local u, rid, total = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])\n"
    "  local h = '" LIVE_KEY_HASH "' .. u\n"
    "  local old = tonumber(redis.call('HGET', h, rid) or 0) or 0\n"
    "  if total and total > old then\n"
    "    redis.call('HSET', h, rid, string.format('%d', total))\n"
    "    add(u, total - old)\n"
    "  end\n"
    "end\n"
    "local n, horizon = 0, nil\n"
    "for _ in pairs(cut) do n = n + 1 end\n"
    "for u, l in pairs(left) do\n"
    "  local g = grew[u] or 0\n"
    "  if l > 0 and g > 0 and (not horizon or l / g < horizon) then horizon = l / g end\n"
    "end\n"
    "return {n, horizon and string.format('%.3f', horizon) or false}\n";

/* The billing push with live accounting, in place of
 *   MULTI; RPUSH traffic:logs r1..rn; SET <pushed key> <seq> EX <ttl>; EXEC
 * KEYS[1] traffic:logs, KEYS[2] the pushed key; ARGV[1] seq, ARGV[2] ttl,
 * ARGV[3..] the records (JSON). Each record's bytes become its request's
 * final count. Returns {list length, "OK", records not understood}, like
 * EXEC's two replies plus a count. */
static const char live_lua_push[] =
    LIVE_LUA_ADD "local n, bad = 0, 0\n"
                 "for i = 3, #ARGV do\n"
                 "  n = redis.call('RPUSH', KEYS[1], ARGV[i])\n"
                 "  local ok, r = pcall(cjson.decode, ARGV[i])\n"
                 "  if ok and type(r) == 'table' and type(r.username) == 'string'\n"
                 "     and type(r.request_id) == 'string' and type(r.request_bytes) == 'number'\n"
                 "     and type(r.response_bytes) == 'number' then\n"
                 "    local h = '" LIVE_KEY_HASH "' .. r.username\n"
                 "    local seen = tonumber(redis.call('HGET', h, r.request_id) or 0) or 0\n"
                 "    if seen > 0 then redis.call('HDEL', h, r.request_id) end\n"
                 "    add(r.username, r.request_bytes + r.response_bytes - seen)\n"
                 "  else\n"
                 "    bad = bad + 1\n"
                 "  end\n"
                 "end\n"
                 "redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])\n"
                 "return {n, 'OK', bad}\n";

/* Settlement's release of one record (JSON), called once per record (the
 * acknowledgement's LREM removed it): its bytes leave the user's sum, which
 * never goes below zero and is deleted at zero. */
#define LIVE_LUA_RELEASE                                                                           \
    "local function release(rec)\n"                                                                \
    "  local ok, r = pcall(cjson.decode, rec)\n"                                                   \
    "  if not ok or type(r) ~= 'table' or type(r.username) ~= 'string'\n"                          \
    "     or type(r.request_bytes) ~= 'number' or type(r.response_bytes) ~= 'number' then\n"       \
    "    return\n"                                                                                 \
    "  end\n"                                                                                      \
    "  local k = '" LIVE_KEY_SUM "' .. r.username\n"                                               \
    "  local s = redis.call('DECRBY', k,\n"                                                        \
    "                       string.format('%d', r.request_bytes + r.response_bytes))\n"            \
    "  if s <= 0 then redis.call('DEL', k) end\n"                                                  \
    "end\n"

#endif
