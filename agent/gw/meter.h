/*
 * The live meter: puts the bytes of this node's running requests and tunnels
 * into Redis while they flow, and cuts a customer's streams when the live
 * balance runs out (live.h has the accounting, live_lua.h the scripts).
 *
 * On the billing thread's loop, never on a verdict loop:
 *   - every interval, while the registry holds a stream: one
 *     "show info; show sess all" on HAProxy's CLI (sess_dump.h), then one
 *     script call with the totals of the streams that grew; the script
 *     publishes a user on gw:cut when its live balance reaches zero, and
 *     says when the first user in credit would run out at the pace just
 *     measured: if that is sooner than the interval, the next dump comes
 *     then (no sooner than 50 ms), so a fast transfer is caught close to
 *     the end of its balance, not up to a whole interval later;
 *   - a subscriber connection to Redis hears gw:cut from every node; for
 *     each user it takes a fresh dump and sends "shutdown session <ptr>" for
 *     each of the user's streams (the CLI needs level admin).
 * Progress goes out on the billing push's own Redis connection (send_fn), so
 * a request's progress always reaches Redis before its final count.
 * Redis or the CLI unreachable: nothing is cut (fail open, counted), the
 * final counts still land with the records.
 */
#ifndef GW_METER_H
#define GW_METER_H

#include <ev.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "live.h"
#include "redis_conn.h"

struct meter_config {
    const char *haproxy_cli;        /* unix socket path or host:port, level admin */
    unsigned interval_ms;           /* between dumps */
    struct redis_conn_config redis; /* for the gw:cut subscription */
};

struct meter_stats {
    atomic_uint_fast64_t dumps;         /* "show sess all" read to the end */
    atomic_uint_fast64_t dump_errors;   /* dumps that failed (CLI down, timeout) */
    atomic_uint_fast64_t progress;      /* stream totals sent to Redis */
    atomic_uint_fast64_t progress_lost; /* not sent: Redis not connected */
    atomic_uint_fast64_t cut_messages;  /* gw:cut messages heard */
    atomic_uint_fast64_t sessions_shut; /* "shutdown session" sent */
    atomic_uint_fast64_t last_dump_us;  /* how long the last dump took */
    atomic_uint_fast64_t last_streams;  /* streams in the last dump */
    atomic_uint_fast64_t early_dumps;   /* dumps brought forward: a user about to run out */
};

/* Sends one command (hiredis argv form) on the push connection, its reply to
 * cb (hiredis's callback, may be NULL); false when it is not connected. */
typedef bool (*meter_send_fn)(void *arg, int argc, const char **argv, const size_t *argvlen,
                              redisCallbackFn *cb, void *privdata);

struct meter;

struct meter *meter_start(struct ev_loop *loop, const struct meter_config *cfg, struct live *live,
                          struct meter_stats *stats, meter_send_fn send, void *send_arg);
/* On the loop's thread, before the loop ends. */
void meter_stop(struct meter *m);

#endif
