/*
 * The gateway handler: SPOE messages in, verdict variables out (see
 * handler_gw.c for the message and variable names).
 */
#ifndef GW_HANDLER_GW_H
#define GW_HANDLER_GW_H

#include <stdatomic.h>
#include <stdbool.h>

#include "crypt_pool.h"
#include "health.h"
#include "live.h"
#include "snapshot.h"
#include "spoa.h"
#include "verdict_stats.h"

struct gw_config {
    struct snapshot_store *store;
    struct crypt_pool *crypt;
    bool balance_checks; /* ENABLE_TRAFFIC_LOGGING: ask Redis for balances */
    const char *redis_host;
    int redis_port;
    const char *redis_password; /* NULL or empty: no AUTH */
    unsigned redis_db;
    unsigned balance_timeout_ms; /* after this the request is allowed (fail open) */
    struct live *live;           /* NULL: no live balance (allowed streams not registered) */
    unsigned max_conns;          /* limits of users whose column is NULL (0: unlimited) */
    unsigned max_rps;
    struct health *health; /* provider health (health.h); NULL: off, every provider in */
};

/* Counters for logs and /health; relaxed atomics. */
struct gw_stats {
    atomic_uint_fast64_t verdicts[6];         /* by status: 200 400 402 403 407 503 */
    atomic_uint_fast64_t balance_missing;     /* no key: allowed */
    atomic_uint_fast64_t balance_unreachable; /* Redis down or error: allowed */
    atomic_uint_fast64_t balance_timeout;     /* no reply in time: allowed */
    atomic_uint_fast64_t balance_unreadable;  /* not an integer: allowed, logged */
    atomic_uint_fast64_t hash_checks;
    atomic_uint_fast64_t hash_queue_full;   /* refused with 503 */
    atomic_uint_fast64_t bad_messages;      /* NOTIFY without usable arguments */
    atomic_uint_fast64_t live_unregistered; /* allowed, but not metered live (live.h) */
    atomic_int_fast64_t queue_length;       /* LLEN traffic:logs, -1 unknown */
    atomic_bool redis_ok;
    struct verdict_stats by_reason; /* verdicts by reason, allowed requests by provider */
};

/* Fills *h; cfg and stats must outlive the server. */
void handler_gw_init(struct spoa_handler *h, struct gw_config *cfg, struct gw_stats *stats);

#endif
