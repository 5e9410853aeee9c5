/*
 * One asynchronous Redis connection on a libev loop, kept up: resolve the
 * host off the loop (net.h), connect hiredis to the numeric address, send
 * AUTH and SELECT ahead of everything else, and reconnect after a pause
 * whenever the connection fails or drops. What runs on it is the owner's
 * business: it sends commands with hiredis on redis_conn_ctx() while the
 * connection is up, and hears of ups and downs through two callbacks.
 *
 * Why resolve here: hiredis's redisAsyncConnect calls getaddrinfo on the
 * calling thread, so with REDIS_ADDR=redis:6379 every reconnect would block
 * the event loop on DNS. Given a numeric address, hiredis does not resolve.
 *
 * A second connection (a SUBSCRIBE one, say) is a second redis_conn on the
 * same or another loop. Each up is a fresh connection: up is where to (re)send
 * what the owner needs on it (SUBSCRIBE, SCRIPT LOAD before EVALSHA); down is
 * where to forget what was in flight. Blocking clients (gw-settle's straight loop) use
 * redis_sync_connect, the same AUTH/SELECT sequence on a hiredis
 * redisContext.
 *
 * Everything here runs on the loop's thread.
 */
#ifndef GW_REDIS_CONN_H
#define GW_REDIS_CONN_H

#include <ev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <sys/time.h>

struct redis_conn_config {
    const char *host;     /* a name (resolved off the loop) or a numeric address */
    int port;             /* 1..65535 */
    const char *password; /* AUTH when non-empty; NULL: none */
    unsigned db;          /* SELECT when non-zero */
    const char *name;     /* for the log: "redis", "billing: redis" */
    double retry_s;       /* seconds between a failure and the next attempt */
};

struct redis_conn;

/* The connection is up: commands sent now run after AUTH and SELECT. */
typedef void (*redis_conn_up_fn)(struct redis_conn *c, void *arg);
/* An attempt failed (was_up false) or the connection was lost (was_up true);
 * why says how. The next attempt is already scheduled, retry_s from now.
 * hiredis has called back every command still pending, with a NULL reply. */
typedef void (*redis_conn_down_fn)(struct redis_conn *c, bool was_up, const char *why, void *arg);

/*
 * Starts connecting (and keeps at it). cfg's strings must outlive the
 * connection. up and down may be NULL. Returns NULL when out of memory.
 */
struct redis_conn *redis_conn_start(struct ev_loop *loop, const struct redis_conn_config *cfg,
                                    redis_conn_up_fn up, redis_conn_down_fn down, void *arg);

/* The hiredis context while the connection is up, else NULL. Send commands
 * on it with redisAsyncCommand and friends; never free it. */
redisAsyncContext *redis_conn_ctx(const struct redis_conn *c);

/* Drops the connection now (e.g. after a reply that makes it unusable); down
 * is called and the next attempt follows retry_s later. */
void redis_conn_drop(struct redis_conn *c);

/* Stops for good and frees c: pending commands are called back with a NULL
 * reply, down is not called. NULL is fine. */
void redis_conn_stop(struct redis_conn *c);

/*
 * Blocking connection for a thread that may block: connect (hiredis resolves
 * the host itself, on this thread), set send/receive timeouts to tv, keepalive,
 * AUTH and SELECT as in cfg. Returns the context, or NULL with the reason in
 * err (errlen bytes).
 */
redisContext *redis_sync_connect(const struct redis_conn_config *cfg, struct timeval tv, char *err,
                                 size_t errlen);

#endif
