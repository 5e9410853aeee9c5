/*
 * gw-settle's metrics (settle_metrics.h). The counters are plain uint64_t
 * that only the worker's thread writes; this thread reads each with a
 * relaxed atomic load (an aligned 64-bit load: never torn), so a value may be
 * a batch old, never garbage. The queue lengths cost one pipelined round
 * trip (three LLENs) per scrape, bounded by timeout_ms.
 */
#include "settle_metrics.h"

#include <string.h>

#include "log.h"

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

static const char *const lists[3] = {SETTLE_KEY_QUEUE, SETTLE_KEY_PROCESSING, SETTLE_KEY_DEAD};

/* The three lists' lengths; false when Redis did not answer them. */
static bool list_lengths(struct settle_metrics *m, long long len[3])
{
    if (!m->rc) {
        char err[256];
        struct timeval tv = {m->timeout_ms / 1000, (m->timeout_ms % 1000) * 1000};
        m->rc = redis_sync_connect(&m->redis, tv, err, sizeof(err));
        if (!m->rc) {
            log_debug("settle metrics: Redis: %s", err);
            return false;
        }
    }
    for (int i = 0; i < 3; i++)
        redisAppendCommand(m->rc, "LLEN %s", lists[i]);
    bool ok = true;
    for (int i = 0; i < 3; i++) {
        redisReply *r = NULL;
        if (redisGetReply(m->rc, (void **)&r) != REDIS_OK || !r) {
            ok = false;
            break; /* the connection is unusable now */
        }
        if (r->type == REDIS_REPLY_INTEGER)
            len[i] = r->integer;
        else
            ok = false;
        freeReplyObject(r);
    }
    if (!ok) settle_metrics_close(m);
    return ok;
}

static void labelled(struct prom_out *o, const char *name, const char *label, const char *value,
                     uint64_t v)
{
    struct prom_label l = {label, value};
    prom_sample_u64(o, name, &l, 1, v);
}

void settle_metrics_render(void *arg, struct prom_out *o)
{
    struct settle_metrics *m = arg;
    const struct settle_stats *st = m->st;
    prom_counter(o, "gw_settle_records_taken_total",
                 "Records taken off traffic:logs (a record settled again after a crash counts "
                 "again).",
                 LOAD(st->taken));
    prom_counter(o, "gw_settle_records_applied_total",
                 "traffic_logs rows inserted and their bytes charged to balances.",
                 LOAD(st->inserted));
    prom_counter(o, "gw_settle_records_duplicate_total",
                 "Records whose request_id was already settled (applied once).",
                 LOAD(st->duplicates));
    prom_counter(o, "gw_settle_dead_letters_total", "Records pushed to traffic:logs:dead.",
                 LOAD(st->dead));
    prom_counter(o, "gw_settle_records_truncated_total",
                 "Records with a descriptive field cut to its column's size.", LOAD(st->truncated));
    prom_counter(o, "gw_settle_batches_total", "Batches committed to PostgreSQL.",
                 LOAD(st->batches));
    prom_counter(o, "gw_settle_cache_sets_total", "balance:cache SETs and DELs.",
                 LOAD(st->cache_sets));
    prom_counter(o, "gw_settle_cache_rebuilds_total", "Full rebuilds of the balance cache.",
                 LOAD(st->rebuilds));
    prom_head(o, "gw_settle_failures_total", "counter",
              "Attempts that failed and were retried, by service.");
    labelled(o, "gw_settle_failures_total", "service", "postgres", LOAD(st->pg_failures));
    labelled(o, "gw_settle_failures_total", "service", "redis", LOAD(st->redis_failures));

    long long len[3];
    bool up = list_lengths(m, len);
    prom_gauge(o, "gw_settle_redis_up",
               "1 when this scrape could read the list lengths from Redis.", up ? 1 : 0);
    if (!up) return;
    prom_head(o, "gw_settle_queue_length", "gauge",
              "Records in the worker's Redis lists: traffic:logs is the settlement lag.");
    for (int i = 0; i < 3; i++)
        labelled(o, "gw_settle_queue_length", "list", lists[i], len[i] < 0 ? 0 : (uint64_t)len[i]);
}

void settle_metrics_close(struct settle_metrics *m)
{
    if (m->rc) redisFree(m->rc);
    m->rc = NULL;
}
