/*
 * The settlement worker (gw-settle): turns the billing records the agent
 * pushes on the Redis list traffic:logs into traffic_logs rows, charges their
 * bytes to balances.used_bytes exactly once per request_id, and keeps
 * balance:cache:{username} equal to traffic_bytes - used_bytes.
 *
 * Reliable take: records move atomically from traffic:logs to
 * traffic:logs:processing (LMOVE, BLMOVE when idle) and leave it only after
 * the batch's PostgreSQL transaction committed, together with their dead
 * letters (one Lua script: both or neither). A crash, or Redis or PostgreSQL
 * going away, leaves the batch in traffic:logs:processing, settled again
 * first on the next start or reconnect; the UNIQUE request_id makes that
 * second pass insert (and charge) nothing already settled.
 *
 * Pure pieces (array literals, SQLSTATE classes, backoff) are exposed for the
 * unit tests; settle_run() is the daemon's loop.
 */
#ifndef GW_SETTLE_H
#define GW_SETTLE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "traffic_record.h"

/* Redis keys (the reference's, plus the two lists of this worker). */
#define SETTLE_KEY_QUEUE        "traffic:logs"
#define SETTLE_KEY_PROCESSING   "traffic:logs:processing"
#define SETTLE_KEY_DEAD         "traffic:logs:dead"
#define SETTLE_KEY_CACHE_PREFIX "balance:cache:"

#define SETTLE_BATCH_MAX 10000 /* records per batch, upper bound of GW_SETTLE_BATCH */

struct settle_config {
    const char *postgres_uri; /* may hold a password: never logged */
    const char *redis_host;
    int redis_port;
    const char *redis_password; /* "" for none */
    unsigned redis_db;
    unsigned batch;          /* records per batch, 1..SETTLE_BATCH_MAX */
    unsigned idle_ms;        /* BLMOVE timeout while traffic:logs is empty, ms */
    unsigned pause_ms;       /* sleep between a batch's COMMIT and its removal from
                                traffic:logs:processing, ms (throttle; tests widen
                                the crash window with it) */
    unsigned timeout_ms;     /* Redis command and PostgreSQL connect timeout, ms */
    unsigned backoff_max_ms; /* longest wait between reconnection attempts, ms */
};

/* Counters since start; only the worker's thread writes them. */
struct settle_stats {
    uint64_t taken;                       /* records taken off the lists (a record settled again
                                             after a crash counts again) */
    uint64_t inserted;                    /* traffic_logs rows inserted, bytes charged */
    uint64_t duplicates;                  /* records whose request_id was already settled */
    uint64_t dead;                        /* records pushed to traffic:logs:dead */
    uint64_t truncated;                   /* records with a descriptive field cut to its column */
    uint64_t batches;                     /* committed batches */
    uint64_t cache_sets;                  /* balance:cache SETs and DELs */
    uint64_t rebuilds;                    /* full balance cache rebuilds */
    uint64_t pg_failures, redis_failures; /* attempts that failed and were retried */
};

/*
 * Runs until *stop becomes non-zero (a signal handler sets it): the batch in
 * progress is finished first. Retries PostgreSQL and Redis forever, with
 * backoff. Returns 0 after a clean stop, 1 on a failure it cannot retry
 * (out of memory).
 */
int settle_run(const struct settle_config *cfg, struct settle_stats *st,
               volatile sig_atomic_t *stop);

/* --- pieces exposed for the unit tests ---------------------------------------------- */

/* A growable byte buffer; `oom` sticks once an allocation failed. */
struct settle_buf {
    char *p;
    size_t len, cap;
    bool oom;
};
void settle_buf_put(struct settle_buf *b, const void *data, size_t len);
void settle_buf_reset(struct settle_buf *b); /* len = 0, keeps the memory */
void settle_buf_free(struct settle_buf *b);
/* p as a C string (NUL-terminated), or NULL after an allocation failure. */
const char *settle_buf_str(struct settle_buf *b);

/* Appends one element to a PostgreSQL array literal being built in b ("{"
 * and "}" are the caller's): text double-quoted with '"' and '\' escaped;
 * integers bare. A comma goes before every element but the first. */
void settle_array_text(struct settle_buf *b, bool first, const char *s);
void settle_array_int(struct settle_buf *b, bool first, int64_t v);

/* The batch statement's parameters, one array literal per column. */
#define SETTLE_NPARAMS 14
struct settle_params {
    struct settle_buf col[SETTLE_NPARAMS];
};
/* Fills p from recs[idx[0]] .. recs[idx[n-1]]; each row's `ord` is its idx.
 * Returns 0, or -1 when out of memory. */
int settle_params_build(struct settle_params *p, const struct traffic_record *recs,
                        const uint32_t *idx, size_t n);
void settle_params_free(struct settle_params *p);

/* The statement that settles one batch; its parameters are settle_params in
 * order. Returns rows (kind, n, username, remaining):
 *   'u', ord, NULL, NULL             the record's username is not in users
 *   'b', rows, username, remaining   rows inserted for this user and its
 *                                    balance after the charge (traffic - used) */
extern const char settle_sql_batch[];
/* Every user: (username, has_balance_row, remaining). */
extern const char settle_sql_balances[];

/* What to do about a failed statement, from its SQLSTATE (NULL: unknown). */
enum settle_sql_fault {
    SETTLE_FAULT_RETRY,  /* transient or configuration: keep the batch, retry later */
    SETTLE_FAULT_RECORD, /* a value PostgreSQL refused (classes 22, 23): find the
                            record by settling one at a time, dead-letter it */
};
enum settle_sql_fault settle_sql_fault(const char *sqlstate);

/* The wait after `failures` consecutive failures (1, 2, ...), ms: 100, 200,
 * 400, ... capped at max_ms. */
unsigned settle_backoff_ms(unsigned failures, unsigned max_ms);

#endif
