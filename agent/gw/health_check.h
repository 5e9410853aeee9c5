/*
 * The health thread: the timed side of provider health (health.h) and its
 * active checks, on a thread and event loop of its own (never on the loops
 * that answer verdicts).
 *
 * Every 100 ms it runs health_tick (back-offs ending, stuck trial places)
 * and, with checks on, starts the checks that are due: a non-blocking TCP
 * connect to the provider's resolved address and a random port of its range,
 * bounded by timeout_ms. Each provider is checked once per interval_ms, at a
 * phase of its own (a hash of its slug: checks are spread over the interval,
 * the same on every restart), and at once when its back-off ends (a
 * successful connect is what lets it into half-open). At most rate_per_s
 * checks start per second and HEALTH_CHECK_INFLIGHT run at once; a check
 * that does not fit waits for the next tick (due) or interval (periodic).
 */
#ifndef GW_HEALTH_CHECK_H
#define GW_HEALTH_CHECK_H

#include "health.h"
#include "snapshot.h"

#define HEALTH_CHECK_INFLIGHT 64

struct health_checker_config {
    struct health *health;        /* required */
    struct snapshot_store *store; /* the providers to check */
    unsigned interval_ms;         /* per provider; 0: no checks (ticks only) */
    unsigned timeout_ms;          /* a connect slower than this failed */
    unsigned rate_per_s;          /* checks started per second, at most (>= 1) */
};

struct health_checker;

/* Starts the thread; NULL (logged) when it cannot. */
struct health_checker *health_checker_start(const struct health_checker_config *cfg);
/* Stops it (checks in flight are abandoned) and frees it; NULL is fine. */
void health_checker_stop(struct health_checker *c);

#endif
