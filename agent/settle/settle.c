/*
 * The settlement worker's loop: take a batch of billing records off Redis,
 * settle it in one PostgreSQL statement, then acknowledge it in Redis. It is
 * a batch worker, not on the request path: blocking libpq and the blocking
 * hiredis client (with timeouts) keep it one straight loop on one thread.
 *
 * One batch, step by step:
 *   1. take: a Lua script LMOVEs up to `batch` records from traffic:logs to
 *      the tail of traffic:logs:processing (atomically, one round trip); when
 *      the queue is empty, BLMOVE waits up to idle_ms for the next one.
 *      After a failure (and at start) the batch is instead the head of
 *      traffic:logs:processing itself: what a crash or an outage left there.
 *   2. parse: each record through traffic_record_parse(); a refused one gets
 *      its dead-letter entry, the others go to PostgreSQL.
 *   3. settle: one statement (settle_sql_batch, autocommit: one transaction)
 *      inserts the rows with ON CONFLICT (request_id) DO NOTHING, charges the
 *      bytes of the rows actually inserted to balances (creating a missing
 *      row), and returns the records with an unknown username and each
 *      charged user's balance. If PostgreSQL refuses a value (SQLSTATE class
 *      22 or 23), the batch is settled again one record per statement and the
 *      record it refuses is dead-lettered with PostgreSQL's message.
 *   4. acknowledge: one Lua script pushes the dead letters to
 *      traffic:logs:dead and LREMs the batch from traffic:logs:processing:
 *      both or neither. In the same round trip, SET balance:cache:{user} for
 *      every charged user.
 * A failure anywhere leaves the batch in traffic:logs:processing; it is
 * settled again (and charged nothing twice) once the failure is over. LREM by
 * value rather than LTRIM keeps acknowledgements correct even if a second
 * worker shares the lists by mistake.
 *
 * The balance cache: SET for every user with a balances row (DEL for those
 * without: absent means "allow", as in the reference) at start, after every
 * reconnection, and when another session changes balances (LISTEN
 * gw_balances, sql/migrations/001; our own statements' notifications are told
 * apart by the backend pid and ignored: the batch already SET what it
 * changed). Rebuilds are spaced by their own duration so a busy balances
 * table cannot starve settlement. While the worker waits in BLMOVE, a second
 * Redis connection serves rebuilds, so a change shows within milliseconds.
 */
#include "settle.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "live_lua.h"
#include "log.h"
#include "pg.h"
#include "redis_conn.h"

#define FETCH_ROWS           10000 /* balances rows per FETCH during a rebuild */
#define STATEMENT_TIMEOUT_S  60
#define STATS_INTERVAL_MS    60000
#define DEAD_LOGS_PER_MINUTE 20 /* dead letters logged one by one, then only counted */
#define BACKOFF_FIRST_MS     100
#define BATCH_STMT           "gw_settle_batch" /* settle_sql_batch, prepared */

/* --- SQL --------------------------------------------------------------------------- */

/* traffic_bytes - used_bytes, NULLs as 0, clamped to bigint (never an error). */
#define REMAINING(b)                                                                               \
    "GREATEST(LEAST(COALESCE(" b ".traffic_bytes, 0)::numeric - COALESCE(" b ".used_bytes, 0), "   \
    "9223372036854775807), -9223372036854775808)::bigint"

const char settle_sql_batch[] =
    "WITH input AS (\n"
    "    SELECT *\n"
    "    FROM unnest($1::int[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[],\n"
    "                $7::text[], $8::text[], $9::text[], $10::int[], $11::int[], $12::text[],\n"
    "                $13::bigint[], $14::text[])\n"
    "         AS r(ord, username, request_bytes, response_bytes, target_host, target_method,\n"
    "              proxy_slug, country, session_id, duration, status_code, client_ip, ts_ms,\n"
    "              request_id)\n"
    "),\n"
    "known AS (\n"
    "    SELECT i.*, u.id AS user_id FROM input i JOIN users u ON u.username = i.username\n"
    "),\n"
    "ins AS (\n"
    "    INSERT INTO traffic_logs (user_id, request_bytes, response_bytes, total_bytes,\n"
    "                              target_host, target_method, proxy_slug, country, session_id,\n"
    "                              duration, status_code, client_ip, created_at, request_id)\n"
    "    SELECT user_id, request_bytes, response_bytes, request_bytes + response_bytes,\n"
    "           target_host, target_method, proxy_slug, country, session_id,\n"
    "           duration, status_code, client_ip,\n"
    "           TIMESTAMP 'epoch' + ts_ms * INTERVAL '1 millisecond', request_id\n"
    "    FROM known\n"
    "    ORDER BY ord\n"
    "    ON CONFLICT (request_id) DO NOTHING\n"
    "    RETURNING user_id, total_bytes\n"
    "),\n"
    "charged AS (\n"
    "    SELECT user_id, sum(total_bytes) AS bytes, count(*) AS rows FROM ins GROUP BY user_id\n"
    "),\n"
    "bal AS (\n"
    "    INSERT INTO balances (user_id, traffic_bytes, used_bytes)\n"
    "    SELECT user_id, 0, bytes FROM charged\n"
    "    ON CONFLICT (user_id) DO UPDATE\n"
    "        SET used_bytes = COALESCE(balances.used_bytes, 0) + EXCLUDED.used_bytes,\n"
    "            updated_at = CURRENT_TIMESTAMP\n"
    "    RETURNING user_id, " REMAINING(
        "balances") " AS remaining\n"
                    ")\n"
                    "SELECT 'u', i.ord::bigint, NULL::text, NULL::bigint\n"
                    "FROM input i WHERE NOT EXISTS (SELECT 1 FROM known k WHERE k.ord = i.ord)\n"
                    "UNION ALL\n"
                    "SELECT 'b', c.rows, u.username, b.remaining\n"
                    "FROM bal b JOIN charged c USING (user_id) JOIN users u ON u.id = b.user_id";

const char settle_sql_balances[] = "SELECT u.username, b.user_id IS NOT NULL, " REMAINING(
    "b") "\n"
         "FROM users u LEFT JOIN balances b ON b.user_id = u.id";

/* KEYS[1] queue, KEYS[2] processing; ARGV[1] how many. Returns the records moved. */
static const char take_lua[] =
    "local out = {}\n"
    "for i = 1, tonumber(ARGV[1]) do\n"
    "  local v = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')\n"
    "  if not v then break end\n"
    "  out[i] = v\n"
    "end\n"
    "return out\n";

/* KEYS[1] processing, KEYS[2] dead; ARGV[1] = d, then d dead letters, then
 * c, then c (user, remaining bytes) pairs for balance:cache, then the records
 * to remove. Each removed record also leaves its user's unsettled bytes
 * (live_lua.h): the settled balance and the live count change together.
 * Returns how many records it removed. */
static const char ack_lua[] =
    LIVE_LUA_RELEASE "local d = tonumber(ARGV[1])\n"
                     "for i = 2, d + 1 do redis.call('RPUSH', KEYS[2], ARGV[i]) end\n"
                     "local c = tonumber(ARGV[d + 2])\n"
                     "for i = d + 3, d + 2 + 2 * c, 2 do\n"
                     "  redis.call('SET', '" SETTLE_KEY_CACHE_PREFIX "' .. ARGV[i], ARGV[i + 1])\n"
                     "end\n"
                     "local n = 0\n"
                     "for i = d + 3 + 2 * c, #ARGV do\n"
                     "  local removed = redis.call('LREM', KEYS[1], 1, ARGV[i])\n"
                     "  n = n + removed\n"
                     "  if removed > 0 then release(ARGV[i]) end\n"
                     "end\n"
                     "return n\n";

enum settle_sql_fault settle_sql_fault(const char *sqlstate)
{
    if (sqlstate != NULL && sqlstate[0] == '2' && (sqlstate[1] == '2' || sqlstate[1] == '3'))
        return SETTLE_FAULT_RECORD;
    return SETTLE_FAULT_RETRY;
}

unsigned settle_backoff_ms(unsigned failures, unsigned max_ms)
{
    uint64_t ms = BACKOFF_FIRST_MS;
    for (unsigned i = 1; i < failures && ms < max_ms; i++)
        ms *= 2;
    return ms > max_ms ? max_ms : (unsigned)ms;
}

/* --- buffers and array literals ----------------------------------------------------- */

void settle_buf_put(struct settle_buf *b, const void *data, size_t len)
{
    if (b->oom) return;
    if (len > SIZE_MAX / 4 - b->len) {
        b->oom = true;
        return;
    }
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = '\0';
}

void settle_buf_reset(struct settle_buf *b)
{
    b->len = 0;
    b->oom = false;
    if (b->p != NULL) b->p[0] = '\0';
}

void settle_buf_free(struct settle_buf *b)
{
    free(b->p);
    *b = (struct settle_buf){0};
}

const char *settle_buf_str(struct settle_buf *b)
{
    if (b->p == NULL) settle_buf_put(b, "", 0);
    return b->oom ? NULL : b->p;
}

void settle_array_text(struct settle_buf *b, bool first, const char *s)
{
    if (!first) settle_buf_put(b, ",", 1);
    settle_buf_put(b, "\"", 1);
    const char *run = s;
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') {
            settle_buf_put(b, run, (size_t)(s - run));
            settle_buf_put(b, "\\", 1);
            run = s;
        }
    }
    settle_buf_put(b, run, (size_t)(s - run));
    settle_buf_put(b, "\"", 1);
}

void settle_array_int(struct settle_buf *b, bool first, int64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof(num), "%s%" PRId64, first ? "" : ",", v);
    settle_buf_put(b, num, (size_t)n);
}

int settle_params_build(struct settle_params *p, const struct traffic_record *recs,
                        const uint32_t *idx, size_t n)
{
    for (int c = 0; c < SETTLE_NPARAMS; c++) {
        settle_buf_reset(&p->col[c]);
        settle_buf_put(&p->col[c], "{", 1);
    }
    for (size_t k = 0; k < n; k++) {
        const struct traffic_record *r = &recs[idx[k]];
        bool first = k == 0;
        struct settle_buf *c = p->col;
        settle_array_int(&c[0], first, idx[k]);
        settle_array_text(&c[1], first, r->username);
        settle_array_int(&c[2], first, r->request_bytes);
        settle_array_int(&c[3], first, r->response_bytes);
        settle_array_text(&c[4], first, r->target_host);
        settle_array_text(&c[5], first, r->target_method);
        settle_array_text(&c[6], first, r->proxy_slug);
        settle_array_text(&c[7], first, r->country);
        settle_array_text(&c[8], first, r->session_id);
        settle_array_int(&c[9], first, r->duration);
        settle_array_int(&c[10], first, r->status_code);
        settle_array_text(&c[11], first, r->client_ip);
        settle_array_int(&c[12], first, r->timestamp_ms);
        settle_array_text(&c[13], first, r->request_id);
    }
    for (int c = 0; c < SETTLE_NPARAMS; c++) {
        settle_buf_put(&p->col[c], "}", 1);
        if (p->col[c].oom) return -1;
    }
    return 0;
}

void settle_params_free(struct settle_params *p)
{
    for (int c = 0; c < SETTLE_NPARAMS; c++)
        settle_buf_free(&p->col[c]);
}

/* --- the worker ------------------------------------------------------------------------ */

enum outcome {
    OK = 0,
    PG_DOWN,     /* the connection is gone: reconnect */
    PG_RETRY,    /* a statement failed on a live connection: retry later */
    REDIS_DOWN,  /* a Redis connection is gone or timed out: reconnect */
    REDIS_RETRY, /* Redis answered with an error: retry later */
    FATAL,       /* out of memory */
};

struct item {
    const char *raw; /* the record, inside a held reply */
    size_t len;
    int32_t rec; /* index in recs, or -1 when refused */
    char *dead;  /* dead-letter entry when refused (malloc'd) */
    size_t dead_len;
};

struct cache_update {
    char *username;          /* malloc'd */
    char remaining_text[24]; /* bytes left, in decimal */
};

struct worker {
    const struct settle_config *cfg;
    struct settle_stats *st;
    volatile sig_atomic_t *stop;

    PGconn *pg;
    int pg_pid;                           /* our backend: its notifications are our own batches */
    redisContext *rq;                     /* the lists (may wait in BLMOVE) */
    redisContext *rc;                     /* cache rebuilds */
    bool need_recover;                    /* settle traffic:logs:processing before taking more */
    bool need_rebuild;                    /* SET the whole balance cache again */
    int64_t rebuild_after;                /* monotonic ms: triggered rebuilds are spaced */
    unsigned pg_failures, redis_failures; /* consecutive, for the backoff */

    /* the batch in progress */
    redisReply *held[2]; /* replies the items point into */
    unsigned nheld;
    struct item *items;
    size_t nitems;
    struct traffic_record *recs; /* parsed records */
    uint32_t *rec_item;          /* recs index -> items index */
    uint32_t *idx;               /* scratch list of recs indexes */
    size_t nrecs;
    struct settle_params params;
    struct cache_update *cache;
    size_t ncache, cache_cap;
    const char **argv; /* the acknowledgement's EVAL */
    size_t *argvlen;

    /* logging */
    int64_t stats_at;
    struct settle_stats stats_logged;
    int64_t dead_log_minute;
    unsigned dead_logged;
};

/* Sleeps ms, or less when a stop was asked for. */
static void nap(struct worker *w, unsigned ms)
{
    int64_t end = clock_mono_ms() + ms;
    while (!*w->stop) {
        int64_t left = end - clock_mono_ms();
        if (left <= 0) break;
        struct timespec ts = {left / 1000, (left % 1000) * 1000000};
        nanosleep(&ts, NULL); /* EINTR: look at *stop again */
    }
}

static void pg_close(struct worker *w)
{
    if (w->pg != NULL) PQfinish(w->pg);
    w->pg = NULL;
    w->need_recover = true; /* the batch's outcome may be unknown */
    w->need_rebuild = true; /* notifications may be lost */
    w->rebuild_after = 0;
}

static void redis_close(struct worker *w)
{
    if (w->rq != NULL) redisFree(w->rq);
    if (w->rc != NULL) redisFree(w->rc);
    w->rq = w->rc = NULL;
    w->need_recover = true;
    w->need_rebuild = true; /* Redis may have restarted empty */
    w->rebuild_after = 0;
}

static int pg_open(struct worker *w)
{
    char err[512];
    unsigned s = (w->cfg->timeout_ms + 999) / 1000;
    const struct pg_params p = {.uri = w->cfg->postgres_uri,
                                .application_name = "gw-settle",
                                .connect_timeout_s = s < 2 ? 2 : s,
                                .statement_timeout_s = STATEMENT_TIMEOUT_S,
                                .listen = "gw_balances",
                                .log_prefix = "settle"};
    PGconn *c = pg_connect(&p, err, sizeof(err));
    if (c == NULL) {
        log_warn("settle: PostgreSQL: %s", err);
        return -1;
    }
    /* Prepared once: planning the batch statement costs as much as a fifth
     * of running it. */
    PGresult *r = PQprepare(c, BATCH_STMT, settle_sql_batch, SETTLE_NPARAMS, NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        pg_message(err, sizeof(err), NULL, PQresultErrorMessage(r));
        log_error("settle: PostgreSQL: preparing the batch statement: %s", err);
        PQclear(r);
        PQfinish(c);
        return -1;
    }
    PQclear(r);
    w->pg = c;
    w->pg_pid = PQbackendPID(c);
    log_info("settle: PostgreSQL connected (backend pid %d), listening on gw_balances", w->pg_pid);
    return 0;
}

/* One blocking connection with AUTH and SELECT (agent/common/redis_conn.h). */
static redisContext *redis_connect_one(const struct settle_config *cfg, char *err, size_t errlen)
{
    struct timeval tv = {cfg->timeout_ms / 1000, (cfg->timeout_ms % 1000) * 1000};
    struct redis_conn_config rc = {
        .host = cfg->redis_host,
        .port = cfg->redis_port,
        .password = cfg->redis_password,
        .db = cfg->redis_db,
        .name = "settle: Redis",
    };
    return redis_sync_connect(&rc, tv, err, errlen);
}

static int redis_open(struct worker *w)
{
    char err[256];
    w->rq = redis_connect_one(w->cfg, err, sizeof(err));
    if (w->rq != NULL) w->rc = redis_connect_one(w->cfg, err, sizeof(err));
    if (w->rq == NULL || w->rc == NULL) {
        log_warn("settle: Redis %s:%d: %s", w->cfg->redis_host, w->cfg->redis_port, err);
        redis_close(w);
        return -1;
    }
    log_info("settle: Redis %s:%d connected", w->cfg->redis_host, w->cfg->redis_port);
    return 0;
}

/* A reply was expected: NULL means the connection broke or timed out. */
static enum outcome redis_check(struct worker *w, redisContext *c, const redisReply *r,
                                const char *what)
{
    if (r == NULL) {
        log_warn("settle: Redis: %s: %s", what, c->errstr[0] ? c->errstr : "no reply");
        return REDIS_DOWN;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        log_error("settle: Redis: %s: %s", what, r->str);
        return REDIS_RETRY;
    }
    (void)w;
    return OK;
}

/* Reads notifications; a foreign one (another session changed balances)
 * asks for a rebuild. Closes a broken connection. */
static void pg_service(struct worker *w)
{
    if (w->pg == NULL) return;
    if (!PQconsumeInput(w->pg)) {
        char err[256];
        pg_message(err, sizeof(err), NULL, PQerrorMessage(w->pg));
        log_warn("settle: PostgreSQL connection lost: %s", err);
        pg_close(w);
        return;
    }
    PGnotify *n;
    while ((n = PQnotifies(w->pg)) != NULL) {
        if (n->be_pid != w->pg_pid) {
            if (!w->need_rebuild) log_debug("settle: balances changed (backend %d)", n->be_pid);
            w->need_rebuild = true;
        }
        PQfreemem(n);
    }
}

/* --- the balance cache --------------------------------------------------------------------- */

static enum outcome rebuild_cache(struct worker *w)
{
    char err[512];
    int64_t start = clock_mono_ms();
    uint64_t sets = 0;
    enum outcome o = OK;
    if (pg_command(w->pg, "BEGIN READ ONLY", err, sizeof(err)) != 0) goto pg_fail;
    {
        struct settle_buf sql = {0};
        settle_buf_put(&sql, "DECLARE gw_settle_balances NO SCROLL CURSOR FOR ", 48);
        settle_buf_put(&sql, settle_sql_balances, strlen(settle_sql_balances));
        const char *q = settle_buf_str(&sql);
        int rc = q ? pg_command(w->pg, q, err, sizeof(err)) : -1;
        settle_buf_free(&sql);
        if (q == NULL) return FATAL;
        if (rc != 0) goto pg_fail;
    }
    for (;;) {
        char fetch[64];
        snprintf(fetch, sizeof(fetch), "FETCH FORWARD %d FROM gw_settle_balances", FETCH_ROWS);
        PGresult *res = PQexec(w->pg, fetch);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            pg_message(err, sizeof(err), NULL, PQresultErrorMessage(res));
            PQclear(res);
            goto pg_fail;
        }
        int rows = PQntuples(res);
        for (int i = 0; i < rows; i++) {
            const char *user = PQgetvalue(res, i, 0);
            size_t ulen = (size_t)PQgetlength(res, i, 0);
            if (PQgetvalue(res, i, 1)[0] == 't')
                redisAppendCommand(w->rc, "SET " SETTLE_KEY_CACHE_PREFIX "%b %s", user, ulen,
                                   PQgetvalue(res, i, 2));
            else
                redisAppendCommand(w->rc, "DEL " SETTLE_KEY_CACHE_PREFIX "%b", user, ulen);
        }
        PQclear(res);
        /* every reply is read, or the connection would fall out of step */
        for (int i = 0; i < rows && o != REDIS_DOWN; i++) {
            redisReply *r = NULL;
            if (redisGetReply(w->rc, (void **)&r) != REDIS_OK) r = NULL;
            enum outcome ro = redis_check(w, w->rc, r, "balance cache rebuild");
            if (ro != OK && o == OK) o = ro;
            if (ro == REDIS_DOWN) o = ro;
            if (r) freeReplyObject(r);
            sets++;
        }
        if (o != OK) break;
        if (rows < FETCH_ROWS) break;
    }
    if (pg_command(w->pg, "COMMIT", err, sizeof(err)) != 0) goto pg_fail;
    if (o != OK) return o;
    int64_t took = clock_mono_ms() - start;
    w->st->rebuilds++;
    w->st->cache_sets += sets;
    w->need_rebuild = false;
    w->rebuild_after = clock_mono_ms() + took; /* at most half the time on rebuilds */
    log_info("settle: balance cache rebuilt: %" PRIu64 " users in %" PRId64 " ms", sets, took);
    return OK;
pg_fail:
    if (PQstatus(w->pg) != CONNECTION_OK) {
        log_warn("settle: PostgreSQL: balance cache rebuild: %s", err);
        return PG_DOWN;
    }
    log_error("settle: PostgreSQL: balance cache rebuild: %s", err);
    pg_command(w->pg, "ROLLBACK", err, sizeof(err));
    return o != OK ? o : PG_RETRY;
}

/* --- one batch ----------------------------------------------------------------------------------
 */

static void batch_clear(struct worker *w)
{
    for (size_t i = 0; i < w->nitems; i++)
        free(w->items[i].dead);
    for (size_t i = 0; i < w->ncache; i++)
        free(w->cache[i].username);
    for (unsigned i = 0; i < w->nheld; i++)
        freeReplyObject(w->held[i]);
    w->nitems = w->nrecs = w->ncache = 0;
    w->nheld = 0;
}

/* Keeps reply alive for the batch and adds its strings as items. */
static enum outcome batch_add(struct worker *w, redisReply *r)
{
    size_t cap = w->cfg->batch;
    w->held[w->nheld++] = r;
    if (r->type == REDIS_REPLY_STRING) {
        if (w->nitems < cap) w->items[w->nitems++] = (struct item){r->str, r->len, -1, NULL, 0};
        return OK;
    }
    for (size_t i = 0; i < r->elements && w->nitems < cap; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_STRING) continue; /* lists hold strings only */
        w->items[w->nitems++] = (struct item){e->str, e->len, -1, NULL, 0};
    }
    return OK;
}

static enum outcome dead_letter(struct worker *w, struct item *it, const char *reason)
{
    it->dead = traffic_dead_letter(reason, it->raw, it->len, &it->dead_len);
    if (it->dead == NULL) return FATAL;
    int64_t minute = clock_mono_ms() / 60000;
    if (minute != w->dead_log_minute) {
        if (w->dead_logged > DEAD_LOGS_PER_MINUTE)
            log_warn("settle: %u more dead letters in the last minute were not logged",
                     w->dead_logged - DEAD_LOGS_PER_MINUTE);
        w->dead_log_minute = minute;
        w->dead_logged = 0;
    }
    if (w->dead_logged++ < DEAD_LOGS_PER_MINUTE) {
        char preview[6 * 120 + 2];
        size_t plen = it->len < 120 ? it->len : 120;
        size_t n = traffic_json_quote(it->raw, plen, preview, sizeof(preview));
        preview[n] = '\0';
        log_warn("settle: dead letter to " SETTLE_KEY_DEAD ": %s; record (%zu bytes): %s%s", reason,
                 it->len, preview, plen < it->len ? "..." : "");
    }
    return OK;
}

static enum outcome cache_add(struct worker *w, const char *user, long long remaining)
{
    if (w->ncache == w->cache_cap) {
        size_t cap = w->cache_cap ? w->cache_cap * 2 : 64;
        struct cache_update *c = realloc(w->cache, cap * sizeof(*c));
        if (c == NULL) return FATAL;
        w->cache = c;
        w->cache_cap = cap;
    }
    char *u = strdup(user);
    if (u == NULL) return FATAL;
    w->cache[w->ncache].username = u;
    snprintf(w->cache[w->ncache++].remaining_text, sizeof(w->cache->remaining_text), "%lld",
             remaining);
    return OK;
}

/* Runs settle_sql_batch over recs[idx[0..n)). On a statement error on a live
 * connection, *fault says what kind and msg holds PostgreSQL's message. */
static enum outcome run_sql(struct worker *w, const uint32_t *idx, size_t n,
                            enum settle_sql_fault *fault, char *msg, size_t msglen)
{
    const char *values[SETTLE_NPARAMS];
    if (settle_params_build(&w->params, w->recs, idx, n) != 0) return FATAL;
    for (int c = 0; c < SETTLE_NPARAMS; c++)
        values[c] = settle_buf_str(&w->params.col[c]);
    PGresult *res = PQexecPrepared(w->pg, BATCH_STMT, SETTLE_NPARAMS, values, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        char line[400];
        pg_message(line, sizeof(line), NULL, PQresultErrorMessage(res));
        snprintf(msg, msglen, "%s (SQLSTATE %s)", line, state ? state : "none");
        *fault = settle_sql_fault(state);
        PQclear(res);
        return PQstatus(w->pg) == CONNECTION_OK ? PG_RETRY : PG_DOWN;
    }
    enum outcome o = OK;
    uint64_t inserted = 0, unknown = 0;
    for (int i = 0; i < PQntuples(res) && o == OK; i++) {
        const char *kind = PQgetvalue(res, i, 0);
        long long num = strtoll(PQgetvalue(res, i, 1), NULL, 10);
        if (kind[0] == 'u') {
            unknown++;
            if (num >= 0 && (size_t)num < w->nrecs)
                o = dead_letter(w, &w->items[w->rec_item[num]], "unknown username");
        } else {
            inserted += (uint64_t)num;
            o = cache_add(w, PQgetvalue(res, i, 2), strtoll(PQgetvalue(res, i, 3), NULL, 10));
        }
    }
    PQclear(res);
    w->st->inserted += inserted;
    w->st->duplicates += n - unknown - inserted;
    return o;
}

/* Settles the parsed records: the whole batch in one statement, or, when
 * PostgreSQL refuses a value, one record per statement. */
static enum outcome settle_records(struct worker *w)
{
    char msg[512];
    enum settle_sql_fault fault = SETTLE_FAULT_RETRY;
    for (size_t i = 0; i < w->nrecs; i++)
        w->idx[i] = (uint32_t)i;
    enum outcome o = run_sql(w, w->idx, w->nrecs, &fault, msg, sizeof(msg));
    if (o == PG_RETRY && fault == SETTLE_FAULT_RECORD && w->nrecs > 1) {
        log_warn("settle: PostgreSQL refused a batch of %zu: %s; settling one record at a time",
                 w->nrecs, msg);
        for (size_t i = 0; i < w->nrecs; i++) {
            uint32_t one = (uint32_t)i;
            o = run_sql(w, &one, 1, &fault, msg, sizeof(msg));
            if (o == PG_RETRY && fault == SETTLE_FAULT_RECORD) {
                char reason[600];
                snprintf(reason, sizeof(reason), "PostgreSQL refused the record: %s", msg);
                o = dead_letter(w, &w->items[w->rec_item[i]], reason);
            }
            if (o != OK) break;
        }
    } else if (o == PG_RETRY && fault == SETTLE_FAULT_RECORD) {
        char reason[600];
        snprintf(reason, sizeof(reason), "PostgreSQL refused the record: %s", msg);
        o = dead_letter(w, &w->items[w->rec_item[0]], reason);
    }
    if (o == PG_RETRY || o == PG_DOWN)
        log_warn("settle: PostgreSQL: batch of %zu not settled: %s", w->nrecs, msg);
    return o;
}

/* Dead letters, the balance cache of charged users and the removal from
 * traffic:logs:processing, in one script. */
static enum outcome acknowledge(struct worker *w)
{
    char ndead[24], ncache[24];
    size_t d = 0, argc = 0;
    for (size_t i = 0; i < w->nitems; i++)
        d += w->items[i].dead != NULL;
    snprintf(ndead, sizeof(ndead), "%zu", d);
#define ARG(s, l) (w->argv[argc] = (s), w->argvlen[argc++] = (l))
    ARG("EVAL", 4);
    ARG(ack_lua, strlen(ack_lua));
    ARG("2", 1);
    ARG(SETTLE_KEY_PROCESSING, strlen(SETTLE_KEY_PROCESSING));
    ARG(SETTLE_KEY_DEAD, strlen(SETTLE_KEY_DEAD));
    ARG(ndead, strlen(ndead));
    for (size_t i = 0; i < w->nitems; i++)
        if (w->items[i].dead != NULL) ARG(w->items[i].dead, w->items[i].dead_len);
    snprintf(ncache, sizeof(ncache), "%zu", w->ncache);
    ARG(ncache, strlen(ncache));
    for (size_t i = 0; i < w->ncache; i++) {
        ARG(w->cache[i].username, strlen(w->cache[i].username));
        ARG(w->cache[i].remaining_text, strlen(w->cache[i].remaining_text));
    }
    for (size_t i = 0; i < w->nitems; i++)
        ARG(w->items[i].raw, w->items[i].len);
#undef ARG
    redisAppendCommandArgv(w->rq, (int)argc, w->argv, w->argvlen);

    redisReply *r = NULL;
    if (redisGetReply(w->rq, (void **)&r) != REDIS_OK) r = NULL;
    enum outcome o = redis_check(w, w->rq, r, "acknowledging a batch");
    if (o == OK && r->type == REDIS_REPLY_INTEGER && (size_t)r->integer != w->nitems)
        log_warn("settle: %zu of %zu records were no longer in " SETTLE_KEY_PROCESSING
                 " (another worker on the same lists?)",
                 w->nitems - (size_t)r->integer, w->nitems);
    if (r) freeReplyObject(r);
    if (o != OK) return o;
    w->st->cache_sets += w->ncache;
    w->st->dead += d;
    return OK;
}

static enum outcome settle_batch(struct worker *w)
{
    enum outcome o = OK;
    char err[200];
    w->nrecs = 0;
    for (size_t i = 0; i < w->nitems && o == OK; i++) {
        struct item *it = &w->items[i];
        if (traffic_record_parse(it->raw, it->len, &w->recs[w->nrecs], err, sizeof(err)) == 0) {
            if (w->recs[w->nrecs].truncated) w->st->truncated++;
            it->rec = (int32_t)w->nrecs;
            w->rec_item[w->nrecs++] = (uint32_t)i;
        } else {
            o = dead_letter(w, it, err);
        }
    }
    if (o == OK && w->nrecs > 0) o = settle_records(w);
    if (o != OK) return o;
    if (w->cfg->pause_ms) nap(w, w->cfg->pause_ms);
    o = acknowledge(w);
    if (o != OK) return o;
    w->st->batches++;
    w->st->taken += w->nitems;
    log_debug("settle: batch of %zu settled (%zu parsed)", w->nitems, w->nrecs);
    return OK;
}

/* --- taking records
 * ------------------------------------------------------------------------------- */

static enum outcome take_more(struct worker *w, size_t want)
{
    /* (hiredis' format knows no %zu) */
    redisReply *r = redisCommand(w->rq, "EVAL %s 2 %s %s %u", take_lua, SETTLE_KEY_QUEUE,
                                 SETTLE_KEY_PROCESSING, (unsigned)want);
    enum outcome o = redis_check(w, w->rq, r, "taking records");
    if (o != OK) {
        if (r) freeReplyObject(r);
        return o;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
        freeReplyObject(r);
        return OK;
    }
    return batch_add(w, r);
}

/* The queue is empty: BLMOVE waits up to idle_ms for a record, while
 * PostgreSQL notifications (and the rebuilds they ask for) are served. */
static enum outcome wait_for_records(struct worker *w)
{
    char secs[32];
    int done = 0;
    snprintf(secs, sizeof(secs), "%u.%03u", w->cfg->idle_ms / 1000, w->cfg->idle_ms % 1000);
    redisAppendCommand(w->rq, "BLMOVE %s %s LEFT RIGHT %s", SETTLE_KEY_QUEUE, SETTLE_KEY_PROCESSING,
                       secs);
    do {
        if (redisBufferWrite(w->rq, &done) != REDIS_OK)
            return redis_check(w, w->rq, NULL, "BLMOVE");
    } while (!done);
    int64_t deadline = clock_mono_ms() + w->cfg->idle_ms + w->cfg->timeout_ms;
    for (;;) {
        int64_t left = deadline - clock_mono_ms();
        if (left <= 0) {
            log_warn("settle: Redis: no answer to BLMOVE within %u ms",
                     w->cfg->idle_ms + w->cfg->timeout_ms);
            return REDIS_DOWN;
        }
        if (w->need_rebuild && w->pg != NULL) {
            int64_t until = w->rebuild_after - clock_mono_ms();
            if (until <= 0) {
                enum outcome o = rebuild_cache(w);
                if (o == PG_DOWN) {
                    pg_close(w);
                } else if (o == PG_RETRY) {
                    w->rebuild_after =
                        clock_mono_ms() + settle_backoff_ms(2, w->cfg->backoff_max_ms);
                } else if (o != OK) {
                    /* BLMOVE's reply is still due on rq: start both afresh */
                    return o == FATAL ? FATAL : REDIS_DOWN;
                }
                continue;
            }
            if (until < left) left = until;
        }
        struct pollfd fds[2] = {{.fd = w->rq->fd, .events = POLLIN},
                                {.fd = w->pg ? PQsocket(w->pg) : -1, .events = POLLIN}};
        int n = poll(fds, 2, (int)left);
        if (n < 0 && errno != EINTR) return redis_check(w, w->rq, NULL, "poll");
        if (n <= 0) continue;
        if (fds[1].revents) pg_service(w);
        if (fds[0].revents) break;
    }
    redisReply *r = NULL;
    if (redisGetReply(w->rq, (void **)&r) != REDIS_OK) r = NULL;
    enum outcome o = redis_check(w, w->rq, r, "BLMOVE");
    if (o != OK) {
        if (r) freeReplyObject(r);
        return o;
    }
    if (r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r); /* nil: timed out */
        return OK;
    }
    batch_add(w, r);
    return w->cfg->batch > 1 ? take_more(w, w->cfg->batch - 1) : OK;
}

/* Fills the batch: from traffic:logs:processing when recovering, else from
 * traffic:logs. An empty batch means: nothing to do right now. */
static enum outcome take_batch(struct worker *w)
{
    if (w->need_recover) {
        redisReply *r =
            redisCommand(w->rq, "LRANGE %s 0 %u", SETTLE_KEY_PROCESSING, w->cfg->batch - 1);
        enum outcome o = redis_check(w, w->rq, r, "reading " SETTLE_KEY_PROCESSING);
        if (o != OK) {
            if (r) freeReplyObject(r);
            return o;
        }
        if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
            log_info("settle: settling %zu record(s) left in " SETTLE_KEY_PROCESSING, r->elements);
            return batch_add(w, r);
        }
        freeReplyObject(r);
        w->need_recover = false;
    }
    enum outcome o = take_more(w, w->cfg->batch);
    if (o != OK || w->nitems > 0) return o;
    return wait_for_records(w);
}

/* --- the loop
 * ---------------------------------------------------------------------------------------- */

static void log_stats(struct worker *w, const char *when)
{
    const struct settle_stats *s = w->st;
    log_info("settle: %s%" PRIu64 " records taken in %" PRIu64 " batches: %" PRIu64
             " inserted, %" PRIu64 " duplicates, %" PRIu64 " dead letters, %" PRIu64
             " truncated; %" PRIu64 " cache writes, %" PRIu64 " rebuilds; %" PRIu64
             " PostgreSQL and %" PRIu64 " Redis failures",
             when, s->taken, s->batches, s->inserted, s->duplicates, s->dead, s->truncated,
             s->cache_sets, s->rebuilds, s->pg_failures, s->redis_failures);
    w->stats_logged = *s;
}

/* After a failed step: drop what broke, wait, and settle the processing
 * list again next time. Returns -1 for a failure that cannot be retried. */
static int recover(struct worker *w, enum outcome o)
{
    w->need_recover = true;
    /* a batch may have committed without its cache SETs (and settling it
     * again charges nothing, so SETs nothing): rebuild the cache */
    w->need_rebuild = true;
    unsigned wait;
    switch (o) {
    case OK:
        return 0;
    case FATAL:
        log_error("settle: out of memory");
        return -1;
    case PG_DOWN:
        pg_close(w);
        /* fall through */
    case PG_RETRY:
        w->st->pg_failures++;
        wait = settle_backoff_ms(++w->pg_failures, w->cfg->backoff_max_ms);
        log_warn("settle: PostgreSQL: retrying in %u ms", wait);
        break;
    case REDIS_DOWN:
        redis_close(w);
        /* fall through */
    case REDIS_RETRY:
    default:
        w->st->redis_failures++;
        wait = settle_backoff_ms(++w->redis_failures, w->cfg->backoff_max_ms);
        log_warn("settle: Redis: retrying in %u ms", wait);
        break;
    }
    nap(w, wait);
    return 0;
}

int settle_run(const struct settle_config *cfg, struct settle_stats *st,
               volatile sig_atomic_t *stop)
{
    struct worker w = {.cfg = cfg, .st = st, .stop = stop};
    size_t n = cfg->batch;
    int rc = 0;
    w.items = calloc(n, sizeof(*w.items));
    w.recs = calloc(n, sizeof(*w.recs));
    w.rec_item = calloc(n, sizeof(*w.rec_item));
    w.idx = calloc(n, sizeof(*w.idx));
    /* dead letters, records, and a (user, remaining) pair per record at most */
    w.argv = calloc(4 * n + 8, sizeof(*w.argv));
    w.argvlen = calloc(4 * n + 8, sizeof(*w.argvlen));
    if (!w.items || !w.recs || !w.rec_item || !w.idx || !w.argv || !w.argvlen) {
        log_error("settle: out of memory");
        rc = 1;
        goto out;
    }
    w.need_recover = w.need_rebuild = true;
    w.stats_at = clock_mono_ms();

    while (!*stop) {
        if (clock_mono_ms() - w.stats_at >= STATS_INTERVAL_MS) {
            if (memcmp(&w.stats_logged, st, sizeof(*st)) != 0) log_stats(&w, "");
            w.stats_at = clock_mono_ms();
        }
        if (w.pg == NULL && pg_open(&w) != 0) {
            if (recover(&w, PG_RETRY) != 0) break;
            continue;
        }
        if (w.rq == NULL && redis_open(&w) != 0) {
            if (recover(&w, REDIS_RETRY) != 0) break;
            continue;
        }
        pg_service(&w);
        if (w.pg == NULL) continue;
        enum outcome o = OK;
        if (w.need_rebuild && clock_mono_ms() >= w.rebuild_after) o = rebuild_cache(&w);
        if (o == OK) o = take_batch(&w);
        if (o == OK && w.nitems > 0) {
            if (w.pg == NULL) {
                o = PG_DOWN; /* lost while waiting: the batch stays in processing */
            } else {
                o = settle_batch(&w);
                if (o == OK) w.pg_failures = w.redis_failures = 0;
            }
        }
        batch_clear(&w);
        if (o != OK && recover(&w, o) != 0) {
            rc = 1;
            break;
        }
    }
out:
    batch_clear(&w);
    log_stats(&w, "stopping: ");
    if (w.pg) PQfinish(w.pg);
    if (w.rq) redisFree(w.rq);
    if (w.rc) redisFree(w.rc);
    settle_params_free(&w.params);
    free(w.items);
    free(w.recs);
    free(w.rec_item);
    free(w.idx);
    free(w.argv);
    free(w.argvlen);
    free(w.cache);
    return rc;
}
