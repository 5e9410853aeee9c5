/*
 * Traffic accounting in the agent: HAProxy's per-request log records arrive
 * over TCP (a HAProxy ring, octet-counted syslog framing), the billable ones
 * become the reference's JSON and go through the spool (spool.h) to the
 * Redis list traffic:logs, pipelined. One thread with its own event loop.
 * After each (re)connection of HAProxy's stream, the ring's retained records
 * are read back through HAProxy's CLI and the dedup window keeps what the
 * stream lost in flight, once.
 */
#ifndef GW_BILLING_H
#define GW_BILLING_H

#include <stdatomic.h>
#include <stdint.h>

#include "health.h"
#include "live.h"
#include "meter.h"

struct billing_config {
    const char *listen;       /* host:port HAProxy's ring connects to */
    const char *spool_path;   /* the spool file */
    uint64_t spool_max_bytes; /* beyond this, reading pauses (HAProxy's ring buffers) */
    const char *redis_host;
    int redis_port;
    const char *redis_password;
    unsigned redis_db;
    unsigned batch;            /* records per RPUSH */
    const char *haproxy_cli;   /* "" or NULL: no reading back (billing_replay.h) */
    const char *ring;          /* the ring's name, for "show events" */
    const char *master_cli;    /* "" or NULL: an old worker's ring is not read (billing_hold.h) */
    const char *hold_addr;     /* the gw-billing-hold frontend (billing_hold.h) */
    uint64_t dedup_records;    /* the dedup window (dedup.h), kept at <spool_path>.ids */
    struct live *live;         /* live balance (live.h): NULL when off; needs haproxy_cli */
    unsigned live_interval_ms; /* between the meter's dumps */
    struct meter_stats *meter_stats; /* with live */
    struct health *health;           /* provider health fed from the records; NULL: off */
};

struct billing_stats {
    atomic_uint_fast64_t received;   /* records read from HAProxy */
    atomic_uint_fast64_t billed;     /* billable, written to the spool */
    atomic_uint_fast64_t not_billed; /* refused by the gateway: not billed */
    atomic_uint_fast64_t malformed;  /* refused: bad framing or fields (logged) */
    atomic_uint_fast64_t pushed;     /* acknowledged by Redis */
    atomic_uint_fast64_t spool_full; /* times reading paused on a full spool */
    atomic_uint_fast64_t duplicates; /* seen before (dedup window): dropped */
    atomic_uint_fast64_t recovered;  /* billed from a read-back of the ring */
    atomic_uint_fast64_t replays;    /* read-backs of the ring, failed ones included */
    atomic_uint_fast64_t replay_bad; /* read-backs that failed (retried) */
    atomic_uint_fast64_t spool_size; /* bytes in the spool not yet pushed (a gauge) */
};

struct billing;

/* Opens the spool, binds the listener and starts the thread. NULL (logged)
 * when the spool or the listener cannot be set up. */
struct billing *billing_start(const struct billing_config *cfg, struct billing_stats *stats);
/* Stops reading, pushes what it can within a second, syncs the spool. */
void billing_stop(struct billing *b);

#endif
