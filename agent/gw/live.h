/*
 * Live balance: the requests and tunnels this node forwards, while they flow.
 *
 * A customer's balance is a limit, not a report: the bytes of requests and
 * tunnels still in progress count against it, on every gateway node. The
 * shared state lives in Redis (keys below); this registry is the node's own
 * list of the streams it let through, so that the meter (meter.c) can put
 * their bytes in Redis as they move and cut them when the balance runs out.
 *
 *   verdict 200 (handler_gw.c)   live_register: stream (HAProxy pid, %rt),
 *                                request id, user
 *   meter, every interval        "show sess all": each stream's bytes so far;
 *                                live_dump_* hands out the ones that grew
 *   end record (billing.c)       live_finish: the stream is gone; its exact
 *                                bytes go to Redis with the record itself
 *   cut (gw:cut message)         live_cut_user: the streams to shut down
 *
 * Redis keys (the scripts are in live_lua.h):
 *   gw:live:{user}       hash request_id -> bytes the meter saw so far, for
 *                        the user's running requests
 *   gw:unsettled:{user}  the bytes of the user's requests not yet settled:
 *                        the running ones as the meter saw them, the ended
 *                        ones as their records say (integer bytes)
 *   balance:cache:{user} unchanged: the settled remainder (gw-settle)
 *   gw:cut               pub/sub channel: a user whose live balance,
 *                        balance:cache - gw:unsettled, reached zero
 * A verdict reads balance:cache and gw:unsettled together; gw-settle takes a
 * record's bytes off in the same script that acknowledges it.
 *
 * Thread safety: every function takes the registry's mutex; the verdict
 * threads register, the billing thread does everything else.
 */
#ifndef GW_LIVE_H
#define GW_LIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LIVE_USER_MAX 256 /* longer user names are not registered (counted) */
#define LIVE_RID_MAX  64

enum live_cut {
    LIVE_CUT_NONE = 0,
    LIVE_CUT_BALANCE, /* the live balance reached zero */
};

/* The name a cut reason has in billing records ("cut_reason"); NULL for none. */
const char *live_cut_name(enum live_cut why);

struct live;

struct live_counts {
    uint64_t registered; /* streams registered */
    uint64_t refused;    /* not registered: registry full, names too long, no memory */
    uint64_t finished;   /* removed by their end record */
    uint64_t pruned;     /* removed because no dump showed them any more */
    uint64_t entries;    /* registered now */
};

/* max_entries bounds the registry (and its memory: ~100 bytes + names each). */
struct live *live_new(size_t max_entries);
void live_free(struct live *l);

/* Parses the stream id the HAProxy configuration sends: "<pid>.<rt>". */
bool live_sid_parse(const char *s, size_t len, uint64_t *pid, uint64_t *id);

/* Registers a stream the agent allowed. 0, or -1 when it could not (the
 * request is still allowed; its bytes count when it ends). */
int live_register(struct live *l, uint64_t pid, uint64_t id, const char *rid, size_t rid_len,
                  const char *user, size_t user_len, int64_t now_ms);

/* The stream ended: removes it and returns why the gateway cut it, if it did. */
enum live_cut live_finish(struct live *l, uint64_t pid, uint64_t id);

/* A dump of HAProxy process pid begins. */
void live_dump_begin(struct live *l, uint64_t pid);
/* One stream of the dump and its bytes so far (request + response). */
void live_dump_stream(struct live *l, uint64_t id, uint64_t ptr, uint64_t bytes);

/* Called by live_dump_end for every stream whose bytes grew since they were
 * last handed out. */
typedef void (*live_progress_fn)(void *arg, const char *user, size_t user_len, const char *rid,
                                 size_t rid_len, uint64_t bytes);

/* The dump ended: hands out the streams that grew, and forgets the streams
 * no dump shows any more that were registered before prune_before_ms (a
 * stream registered just before the dump began may not have been in it yet).
 * Returns how many streams it handed out. */
size_t live_dump_end(struct live *l, int64_t prune_before_ms, live_progress_fn fn, void *arg);

/* Marks every stream of user seen in the last dump as cut for why and
 * writes their addresses to ptrs (at most cap). Returns how many it wrote. */
size_t live_cut_user(struct live *l, const char *user, size_t user_len, enum live_cut why,
                     uint64_t *ptrs, size_t cap);

/* Whether any stream is registered (the meter sleeps otherwise). */
bool live_active(struct live *l);
struct live_counts live_counts(struct live *l);

#endif
