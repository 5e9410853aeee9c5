/*
 * The Prometheus text format writer (prom.h). Everything lands in one
 * growable buffer bounded by a maximum, so a scrape costs one allocation in
 * the common case and can never grow without bound; numbers are written with
 * snprintf into a small stack buffer first.
 */
#include "prom.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const uint64_t prom_lat_bounds_ns[PROM_LAT_BUCKETS] = {
    25000,    50000,    100000,   250000,    500000,    1000000,   2500000,    5000000,
    10000000, 25000000, 50000000, 100000000, 250000000, 500000000, 1000000000, 2500000000,
};
/* The same bounds as Prometheus reads them (le is in seconds). */
static const char *const lat_le[PROM_LAT_BUCKETS] = {
    "2.5e-05", "5e-05", "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005",
    "0.01",    "0.025", "0.05",   "0.1",     "0.25",   "0.5",   "1",      "2.5",
};

void prom_out_init(struct prom_out *o, size_t max)
{
    memset(o, 0, sizeof(*o));
    o->max = max;
}

void prom_out_free(struct prom_out *o)
{
    free(o->p);
    memset(o, 0, sizeof(*o));
}

void prom_put(struct prom_out *o, const char *s, size_t n)
{
    if (o->full || n == 0) return;
    if (n > o->max - o->len) {
        o->full = true;
        return;
    }
    if (o->len + n > o->cap) {
        size_t cap = o->cap ? o->cap : 16384;
        while (cap < o->len + n)
            cap *= 2;
        if (cap > o->max) cap = o->max;
        char *p = realloc(o->p, cap);
        if (!p) {
            o->full = true;
            return;
        }
        o->p = p;
        o->cap = cap;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

void prom_puts(struct prom_out *o, const char *s)
{
    prom_put(o, s, strlen(s));
}

/* HELP text escapes \ and newline; label values \, " and newline. */
static void put_escaped(struct prom_out *o, const char *s, bool quote)
{
    const char *run = s;
    for (; *s; s++) {
        const char *esc = NULL;
        if (*s == '\\')
            esc = "\\\\";
        else if (*s == '\n')
            esc = "\\n";
        else if (quote && *s == '"')
            esc = "\\\"";
        if (!esc) continue;
        prom_put(o, run, (size_t)(s - run));
        prom_puts(o, esc);
        run = s + 1;
    }
    prom_put(o, run, (size_t)(s - run));
}

void prom_head(struct prom_out *o, const char *name, const char *type, const char *help)
{
    prom_puts(o, "# HELP ");
    prom_puts(o, name);
    prom_puts(o, " ");
    put_escaped(o, help, false);
    prom_puts(o, "\n# TYPE ");
    prom_puts(o, name);
    prom_puts(o, " ");
    prom_puts(o, type);
    prom_puts(o, "\n");
}

static void sample_begin(struct prom_out *o, const char *name, const struct prom_label *l,
                         size_t nl)
{
    prom_puts(o, name);
    if (nl == 0) return;
    prom_puts(o, "{");
    for (size_t i = 0; i < nl; i++) {
        if (i) prom_puts(o, ",");
        prom_puts(o, l[i].name);
        prom_puts(o, "=\"");
        put_escaped(o, l[i].value ? l[i].value : "", true);
        prom_puts(o, "\"");
    }
    prom_puts(o, "}");
}

static void sample_end(struct prom_out *o, const char *num, int n)
{
    prom_puts(o, " ");
    if (n > 0) prom_put(o, num, (size_t)n);
    prom_puts(o, "\n");
}

void prom_sample_u64(struct prom_out *o, const char *name, const struct prom_label *l, size_t nl,
                     uint64_t v)
{
    char num[32];
    sample_begin(o, name, l, nl);
    sample_end(o, num, snprintf(num, sizeof(num), "%" PRIu64, v));
}

void prom_sample_i64(struct prom_out *o, const char *name, const struct prom_label *l, size_t nl,
                     int64_t v)
{
    char num[32];
    sample_begin(o, name, l, nl);
    sample_end(o, num, snprintf(num, sizeof(num), "%" PRId64, v));
}

void prom_sample_f64(struct prom_out *o, const char *name, const struct prom_label *l, size_t nl,
                     double v)
{
    char num[40];
    int n;
    if (isnan(v))
        n = snprintf(num, sizeof(num), "NaN");
    else if (isinf(v))
        n = snprintf(num, sizeof(num), v > 0 ? "+Inf" : "-Inf");
    else
        n = snprintf(num, sizeof(num), "%.9g", v);
    sample_begin(o, name, l, nl);
    sample_end(o, num, n);
}

void prom_counter(struct prom_out *o, const char *name, const char *help, uint64_t v)
{
    prom_head(o, name, "counter", help);
    prom_sample_u64(o, name, NULL, 0, v);
}

void prom_gauge(struct prom_out *o, const char *name, const char *help, double v)
{
    prom_head(o, name, "gauge", help);
    prom_sample_f64(o, name, NULL, 0, v);
}

void prom_hist_write(struct prom_out *o, const char *name, const char *help,
                     const struct prom_hist *h)
{
    char metric[128];
    prom_head(o, name, "histogram", help);
    snprintf(metric, sizeof(metric), "%s_bucket", name);
    uint64_t cum = 0;
    for (size_t i = 0; i <= PROM_LAT_BUCKETS; i++) {
        cum += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
        struct prom_label le = {"le", i < PROM_LAT_BUCKETS ? lat_le[i] : "+Inf"};
        prom_sample_u64(o, metric, &le, 1, cum);
    }
    /* the sum in seconds, exact: integer seconds and nanoseconds */
    uint64_t sum_ns = atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
    char num[48];
    int n = snprintf(num, sizeof(num), "%" PRIu64 ".%09" PRIu64, sum_ns / 1000000000u,
                     sum_ns % 1000000000u);
    while (n > 1 && num[n - 1] == '0')
        n--;
    if (num[n - 1] == '.') n--;
    snprintf(metric, sizeof(metric), "%s_sum", name);
    prom_puts(o, metric);
    prom_puts(o, " ");
    prom_put(o, num, (size_t)n);
    prom_puts(o, "\n");
    snprintf(metric, sizeof(metric), "%s_count", name);
    prom_sample_u64(o, metric, NULL, 0, cum);
}
