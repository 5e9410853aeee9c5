/*
 * gw-agent's /metrics: renders, in the Prometheus text format, the counters
 * the agent already keeps for its log lines and /health (gw_stats,
 * spoa_stats, billing_stats, meter_stats, the live registry, the snapshot
 * store's status, the crypt pool's queue). Read-only: a scrape changes
 * nothing. Runs on the metrics listener's thread (metrics_http.h).
 */
#ifndef GW_GW_METRICS_H
#define GW_GW_METRICS_H

#include <stdbool.h>

#include "billing.h"
#include "crypt_pool.h"
#include "handler_gw.h"
#include "health.h"
#include "live.h"
#include "meter.h"
#include "prom.h"
#include "snapshot.h"
#include "spoa.h"

struct gw_metrics {
    struct gw_stats *gw;
    struct spoa_stats *spoa;
    struct billing_stats *billing; /* NULL: traffic logging off */
    struct meter_stats *meter;     /* NULL: live balance off */
    struct live *live;             /* NULL: live balance off */
    struct health *health;         /* NULL: provider health off */
    struct snapshot_store *store;
    struct crypt_pool *crypt;
    bool balance_checks;
    struct snapshot_ref ref; /* the metrics thread's own, released after each scrape */
};

/* A metrics_render_fn: arg is a struct gw_metrics. */
void gw_metrics_render(void *arg, struct prom_out *o);

#endif
