/*
 * gw-settle's /metrics: the worker's counters (struct settle_stats, the ones
 * its log lines report) and the lengths of its Redis lists, the settlement
 * lag, rendered in the Prometheus text format on the metrics listener's
 * thread (metrics_http.h). The lists are read with LLEN on a connection of
 * the metrics thread's own, never the worker's: a scrape reads, it never
 * writes, and never waits on the worker.
 */
#ifndef GW_SETTLE_METRICS_H
#define GW_SETTLE_METRICS_H

#include <hiredis/hiredis.h>

#include "prom.h"
#include "redis_conn.h"
#include "settle.h"

struct settle_metrics {
    const struct settle_stats *st; /* written by the worker's thread only */
    struct redis_conn_config redis;
    unsigned timeout_ms; /* connect and LLEN timeout */
    redisContext *rc;    /* the metrics thread's own, reconnected when lost */
};

/* A metrics_render_fn: arg is a struct settle_metrics. */
void settle_metrics_render(void *arg, struct prom_out *o);
/* Closes the connection (after the listener stopped). */
void settle_metrics_close(struct settle_metrics *m);

#endif
