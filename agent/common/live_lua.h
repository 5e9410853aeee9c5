/*
 * The Redis side of the live balance (live.h): Lua scripts, so that each
 * step is atomic in Redis whatever the number of gateway nodes and settlement
 * workers.
 *
 * Invariant, per user u: gw:unsettled:u == the sum of the hash gw:live:u,
 * whose fields are the request ids not yet settled and whose values are the
 * bytes counted for each. The live balance is balance:cache:u - gw:unsettled:u;
 * whoever makes it reach zero or less publishes u on gw:cut.
 *
 * Progress (meter) and the final count (billing push) set a request's field
 * to a total, never add to it: a total sent twice, or a final count after an
 * agent restart forgot what progress it had sent, leaves the sum right.
 * Settlement (gw-settle) deletes the field and takes its value off the sum,
 * so settling a record twice changes nothing the second time.
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

/* Shared by the scripts below: set request rid of user u to total bytes, then
 * publish u on gw:cut when its live balance is used up (once per script).
 * Also keeps, per user with a balance, what is left and how much it grew. */
#define LIVE_LUA_SET_TOTAL                                                                         \
    "local cut, left, grew = {}, {}, {}\n"                                                         \
    "local function set_total(u, rid, total, only_up)\n"                                           \
    "  local h = '" LIVE_KEY_HASH "' .. u\n"                                                       \
    "  local old = tonumber(redis.call('HGET', h, rid) or 0) or 0\n"                               \
    "  if only_up and total <= old then return end\n"                                              \
    "  redis.call('HSET', h, rid, string.format('%d', total))\n"                                   \
    "  grew[u] = (grew[u] or 0) + total - old\n"                                                   \
    "  local s = redis.call('INCRBY', '" LIVE_KEY_SUM                                              \
    "' .. u, string.format('%d', total - old))\n"                                                  \
    "  if cut[u] then return end\n"                                                                \
    "  local bal = tonumber(redis.call('GET', '" LIVE_KEY_BALANCE "' .. u) or '')\n"               \
    "  if bal then left[u] = bal - s end\n"                                                        \
    "  if bal and bal - s <= 0 then\n"                                                             \
    "    cut[u] = true\n"                                                                          \
    "    redis.call('PUBLISH', '" LIVE_CHANNEL_CUT "', u)\n"                                       \
    "  end\n"                                                                                      \
    "end\n"

/* The meter's progress. ARGV: (user, request id, bytes so far) triples.
 * Returns {users published on gw:cut, horizon}: horizon is the smallest
 * left / grew over the users still in credit whose streams grew, i.e. in how
 * many of the intervals just measured the first of them runs out at this
 * pace ("%.3f"; nil when none), so the meter can look again in time. */
static const char live_lua_progress[] = LIVE_LUA_SET_TOTAL
    "for i = 1, #ARGV - 2, 3 do\n"
    "  local total = tonumber(ARGV[i + 2])\n"
    "  if total then set_total(ARGV[i], ARGV[i + 1], total, true) end\n"
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
static const char live_lua_push[] = LIVE_LUA_SET_TOTAL
    "local n, bad = 0, 0\n"
    "for i = 3, #ARGV do\n"
    "  n = redis.call('RPUSH', KEYS[1], ARGV[i])\n"
    "  local ok, r = pcall(cjson.decode, ARGV[i])\n"
    "  if ok and type(r) == 'table' and type(r.username) == 'string'\n"
    "     and type(r.request_id) == 'string' and type(r.request_bytes) == 'number'\n"
    "     and type(r.response_bytes) == 'number' then\n"
    "    set_total(r.username, r.request_id, r.request_bytes + r.response_bytes, false)\n"
    "  else\n"
    "    bad = bad + 1\n"
    "  end\n"
    "end\n"
    "redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])\n"
    "return {n, 'OK', bad}\n";

/* Settlement's release of one record (JSON): its request leaves the user's
 * unsettled bytes. A user left with no request is reset to nothing, which
 * also heals a sum that drifted. */
#define LIVE_LUA_RELEASE                                                                           \
    "local function release(rec)\n"                                                                \
    "  local ok, r = pcall(cjson.decode, rec)\n"                                                   \
    "  if not ok or type(r) ~= 'table' or type(r.username) ~= 'string'\n"                          \
    "     or type(r.request_id) ~= 'string' then return end\n"                                     \
    "  local h = '" LIVE_KEY_HASH "' .. r.username\n"                                              \
    "  local v = redis.call('HGET', h, r.request_id)\n"                                            \
    "  if not v then return end\n"                                                                 \
    "  redis.call('HDEL', h, r.request_id)\n"                                                      \
    "  if redis.call('HLEN', h) == 0 then\n"                                                       \
    "    redis.call('DEL', '" LIVE_KEY_SUM "' .. r.username)\n"                                    \
    "  else\n"                                                                                     \
    "    redis.call('DECRBY', '" LIVE_KEY_SUM "' .. r.username, v)\n"                              \
    "  end\n"                                                                                      \
    "end\n"

#endif
