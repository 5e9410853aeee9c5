/*
 * Prometheus text exposition (format 0.0.4): a growable, bounded output
 * buffer, the HELP/TYPE lines and samples written with escaped label values,
 * and a fixed-bucket latency histogram that any thread can feed with relaxed
 * atomics (no lock on the hot path; the scrape reads the buckets as they are).
 *
 * Names follow Prometheus conventions: counters end in _total, durations are
 * in seconds, sizes in bytes. Label values written here are escaped (\\, \",
 * \n); label names and metric names are the caller's constants.
 */
#ifndef GW_PROM_H
#define GW_PROM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The output: grows up to max bytes, then stops writing and remembers it. */
struct prom_out {
    char *p;
    size_t len, cap; /* bytes written, bytes allocated */
    size_t max;      /* never grows past this */
    bool full;       /* something did not fit (or no memory): the text is incomplete */
};

void prom_out_init(struct prom_out *o, size_t max);
void prom_out_free(struct prom_out *o);
void prom_put(struct prom_out *o, const char *s, size_t n);
void prom_puts(struct prom_out *o, const char *s);

struct prom_label {
    const char *name;  /* a constant: [a-zA-Z_][a-zA-Z0-9_]* */
    const char *value; /* any bytes, escaped on output */
};

/* "# HELP name help\n# TYPE name type\n"; type is counter, gauge or histogram. */
void prom_head(struct prom_out *o, const char *name, const char *type, const char *help);
/* One sample line: name{labels} value. */
void prom_sample_u64(struct prom_out *o, const char *name, const struct prom_label *l, size_t nl,
                     uint64_t v);
void prom_sample_i64(struct prom_out *o, const char *name, const struct prom_label *l, size_t nl,
                     int64_t v);
void prom_sample_f64(struct prom_out *o, const char *name, const struct prom_label *l, size_t nl,
                     double v);

/* A family with one unlabelled sample. */
void prom_counter(struct prom_out *o, const char *name, const char *help, uint64_t v);
void prom_gauge(struct prom_out *o, const char *name, const char *help, double v);

/* --- latency histogram ---------------------------------------------------------
 * Upper bounds from 25 us to 2.5 s (1-2.5-5 steps); one more bucket for +Inf.
 * Buckets hold their own counts (not cumulative): the writer sums them. */
#define PROM_LAT_BUCKETS 16
extern const uint64_t prom_lat_bounds_ns[PROM_LAT_BUCKETS];

struct prom_hist {
    atomic_uint_fast64_t bucket[PROM_LAT_BUCKETS + 1];
    atomic_uint_fast64_t sum_ns;
};

static inline void prom_hist_observe_ns(struct prom_hist *h, uint64_t ns)
{
    size_t i = 0;
    while (i < PROM_LAT_BUCKETS && ns > prom_lat_bounds_ns[i])
        i++;
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
}

/* Writes the family (HELP, TYPE histogram, _bucket{le=...}, _sum in seconds,
 * _count). The count is the +Inf bucket, so the buckets stay monotonic even
 * while other threads observe. */
void prom_hist_write(struct prom_out *o, const char *name, const char *help,
                     const struct prom_hist *h);

#endif
