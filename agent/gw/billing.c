/*
 * Traffic accounting (see billing.h): HAProxy's log stream in, traffic:logs
 * in Redis out, with the spool in between so nothing is lost.
 *
 * Flow on the billing thread's loop: a HAProxy connection's bytes are cut
 * into octet-counted frames ("<len> <record>"); each record is parsed
 * (billing_record.c); a billable one is written to the spool as JSON; the
 * pusher takes up to `batch` records from the spool, sends one RPUSH with
 * all of them, and commits the spool offset when Redis acknowledges. Redis
 * down: records accumulate in the spool and are pushed, in order, once it is
 * back. The spool full: reading from HAProxy pauses (its ring buffers) and
 * the log says so loudly.
 *
 * Exactly once into traffic:logs: each batch is one transaction
 *   MULTI; RPUSH traffic:logs r1..rn; SET traffic:logs:pushed:<spool id> <seq>; EXEC
 * where <seq> is the spool's record count after the batch. After every
 * (re)connect the pusher reads that key first: if it is ahead of the spool,
 * the batch in flight when the agent died or the connection dropped did land,
 * and those records are committed instead of pushed again.
 *
 * Exactly once from HAProxy: the ring's TCP stream has no acknowledgements,
 * so what was in flight when the agent died or the stream dropped is gone
 * from it. Each time HAProxy (re)connects, the ring's retained records are
 * read back through HAProxy's CLI (billing_replay.c); every record, from the
 * stream or the read-back, passes the dedup window (dedup.c) and is spooled
 * only the first time. After a HAProxy reload the old worker's stream is
 * closed at once, and its ring is read one last time through the master CLI
 * before it exits (billing_hold.c). A record is spooled before its id is remembered
 * (both writes reach the page cache at once), so a kill in between leaves
 * the record in the spool, whose ids are remembered again at start.
 *
 * Each billable record also tells provider health (health.h) how the
 * upstream did: this thread is its main writer.
 */
#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "billing.h"
#include "billing_hold.h"
#include "billing_record.h"
#include "billing_replay.h"
#include "clock.h"
#include "dedup.h"
#include "health.h"
#include "ev_timer_once.h"
#include "live.h"
#include "live_lua.h"
#include "log.h"
#include "meter.h"
#include "net.h"
#include "redis_conn.h"
#include "spool.h"

#define CONN_BUF         (2 * BILLING_LINE_MAX + 16)
#define TAKE_BUF         (1u << 20) /* bytes of records per RPUSH, at most */
#define JSON_MAX         (6 * BILLING_LINE_MAX + 512)
#define SYNC_S           0.1
#define PUSH_DELAY_S     0.01 /* records gather this long into one transaction */
#define REDIS_RETRY_S    1.0
#define PUSHED_KEY       "traffic:logs:pushed:"
#define PUSHED_TTL_S     (30 * 24 * 3600) /* long after any restart that could need it */
#define REPLAY_TIMEOUT_S 120.0
#define REPLAY_RETRY_S   2.0
#define REPLAY_TRIES     10
#define STAT(b, f)       atomic_fetch_add_explicit(&(b)->stats->f, 1, memory_order_relaxed)

struct bconn {
    struct billing *b;
    int fd;
    ev_io io;
    char buf[CONN_BUF];
    size_t len;
    struct bconn *prev, *next;
};

struct billing {
    struct billing_config cfg;
    struct billing_stats *stats;
    struct ev_loop *loop;
    pthread_t thread;
    ev_async stop;
    ev_io accept_io;
    ev_timer tick;       /* fsync, resume after a full spool, retry pushes */
    ev_timer push_delay; /* a push soon, not per record (push_soon) */
    int lfd;
    struct spool *sp;
    struct dedup *dd;
    struct replay *replay;
    struct holder *holder; /* old workers after a reload; NULL without a master CLI */
    bool replay_again;     /* HAProxy reconnected during a read-back */
    int replay_tries;      /* failed attempts in a row */
    ev_timer replay_retry;
    uint64_t replay_billed; /* records the current read-back billed */
    uint64_t replay_other;  /* its lines that are not records */
    bool replay_cut;        /* it stopped at a full spool */
    struct bconn *conns;
    bool paused;     /* spool full: not reading */
    int fill_warned; /* last fill level warned about: 0, 50, 80, 90 */
    struct redis_conn_config redis_cfg;
    struct redis_conn *redis; /* agent/common/redis_conn.h: resolves, AUTH, SELECT, reconnects */
    bool redis_ready;         /* connected and traffic:logs:pushed:<id> read back */
    bool in_flight;           /* a batch awaits its reply */
    char pushed_key[sizeof(PUSHED_KEY) + 16];
    char *take_buf;
    const char **recs;
    size_t *lens;
    char json[JSON_MAX];
    char decoded[BILLING_LINE_MAX];
    struct meter *meter; /* live balance: NULL when off */
};

static void push(struct billing *b);
static void push_soon(struct billing *b);
static void start_replay(struct billing *b);

/* --- the spool's fill level -------------------------------------------------------- */

static void set_paused(struct billing *b, bool paused)
{
    if (paused == b->paused) return;
    b->paused = paused;
    for (struct bconn *c = b->conns; c; c = c->next) {
        if (paused)
            ev_io_stop(b->loop, &c->io);
        else
            ev_io_start(b->loop, &c->io);
    }
    if (paused) {
        STAT(b, spool_full);
        log_error("billing: SPOOL FULL (%llu bytes, GW_SPOOL_MAX_BYTES): no longer reading "
                  "HAProxy's records; they wait in its ring until Redis takes the backlog",
                  (unsigned long long)spool_max_bytes(b->sp));
    } else {
        log_warn("billing: spool below 90%% again: reading HAProxy's records");
    }
}

static void check_fill(struct billing *b)
{
    atomic_store_explicit(&b->stats->spool_size, spool_pending_bytes(b->sp), memory_order_relaxed);
    uint64_t pct = spool_pending_bytes(b->sp) * 100 / spool_max_bytes(b->sp);
    int level = pct >= 90 ? 90 : pct >= 80 ? 80 : pct >= 50 ? 50 : 0;
    if (level > b->fill_warned)
        log_warn("billing: spool %llu%% full (%llu of %llu bytes): Redis is not taking "
                 "records fast enough",
                 (unsigned long long)pct, (unsigned long long)spool_pending_bytes(b->sp),
                 (unsigned long long)spool_max_bytes(b->sp));
    b->fill_warned = level;
    if (b->paused && pct < 90) set_paused(b, false);
}

static bool spool_has_room(const struct billing *b)
{
    return spool_pending_bytes(b->sp) + JSON_MAX <= spool_max_bytes(b->sp);
}

/* --- records in ---------------------------------------------------------------------- */

static void take_record(struct billing *b, const char *rec, size_t len, bool replayed)
{
    struct billing_record r;
    const char *err;
    STAT(b, received);
    if (billing_record_parse(rec, len, &r, b->decoded, sizeof(b->decoded), &err) != 0) {
        STAT(b, malformed);
        log_error("billing: refused a malformed record (%s): %.*s", err,
                  (int)(len > 300 ? 300 : len), rec);
        return;
    }
    uint64_t pid, id;
    bool live =
        b->cfg.live && r.stream.ptr && live_sid_parse(r.stream.ptr, r.stream.len, &pid, &id);
    if (!billing_record_billable(&r)) {
        /* A 200 verdict registered the stream, but HAProxy may still have
         * refused it (a per-user limit's 429): it ended, with nothing moved. */
        if (live) live_finish(b->cfg.live, pid, id);
        STAT(b, not_billed);
        return;
    }
    if (dedup_seen(b->dd, r.request_id.ptr, r.request_id.len)) {
        STAT(b, duplicates);
        return;
    }
    /* Passive provider health: how the upstream did on this request. */
    if (b->cfg.health && r.slug.ptr) {
        enum health_result hr =
            health_classify(r.status, r.termination.ptr, r.termination.ptr ? r.termination.len : 0);
        health_report(b->cfg.health, r.slug.ptr, r.slug.len, hr, r.timestamp_ms, clock_mono_ms(),
                      clock_wall_ms());
    }
    if (live) r.cut_reason = live_cut_name(live_finish(b->cfg.live, pid, id));
    size_t n = billing_record_json(&r, b->json, sizeof(b->json));
    if (n == 0 || spool_append(b->sp, b->json, n) != 0) {
        /* Room was checked before this record (conn_frames), so only a disk
         * error gets here (spool_append logged it): say which record. */
        STAT(b, malformed);
        log_error("billing: could not spool record %.*s: IT IS LOST", (int)r.request_id.len,
                  r.request_id.ptr ? r.request_id.ptr : "");
        return;
    }
    dedup_add(b->dd, r.request_id.ptr, r.request_id.len);
    STAT(b, billed);
    if (replayed) {
        STAT(b, recovered);
        b->replay_billed++;
    }
}

static void conn_close(struct bconn *c)
{
    struct billing *b = c->b;
    ev_io_stop(b->loop, &c->io);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        b->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    free(c);
}

/* Cuts "<len> <record>" frames; false on a framing error (connection dropped). */
static bool conn_frames(struct bconn *c)
{
    struct billing *b = c->b;
    size_t off = 0;
    while (off < c->len) {
        if (!spool_has_room(b)) {
            set_paused(b, true);
            break;
        }
        size_t i = off, n = 0;
        while (i < c->len && c->buf[i] >= '0' && c->buf[i] <= '9' && i - off < 6)
            n = n * 10 + (size_t)(c->buf[i++] - '0');
        if (i == c->len) break; /* the length is still arriving */
        if (i == off || c->buf[i] != ' ' || n == 0 || n > BILLING_LINE_MAX) {
            STAT(b, malformed);
            log_error("billing: bad framing from HAProxy (expected \"<length> <record>\"); "
                      "dropping the connection, HAProxy reconnects");
            return false;
        }
        if (c->len - (i + 1) < n) break; /* the record is still arriving */
        if (n > 6 && memcmp(c->buf + i + 1, "Proxy ", 6) == 0) {
            /* HAProxy's own notice in the ring, e.g. "Proxy gateway stopped
             * (...)" at a reload: not a record */
            STAT(b, not_billed);
            log_info("billing: HAProxy says: %.*s", (int)(n > 200 ? 200 : n), c->buf + i + 1);
        } else {
            take_record(b, c->buf + i + 1, n, false);
        }
        off = i + 1 + n;
    }
    memmove(c->buf, c->buf + off, c->len - off);
    c->len -= off;
    return true;
}

static void conn_read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct bconn *c = io->data;
    ssize_t n = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
        if (c->len)
            log_warn("billing: HAProxy closed its log stream mid-record (%zu bytes left)", c->len);
        conn_close(c);
        return;
    }
    c->len += (size_t)n;
    if (!conn_frames(c)) {
        conn_close(c);
        return;
    }
    check_fill(c->b);
    push_soon(c->b);
}

static void accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)revents;
    struct billing *b = io->data;
    for (;;) {
        int fd = accept4(b->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                log_error("billing: accept: %s", strerror(errno));
            return;
        }
        struct bconn *c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        c->b = b;
        c->fd = fd;
        ev_io_init(&c->io, conn_read_cb, fd, EV_READ);
        c->io.data = c;
        c->next = b->conns;
        if (b->conns) b->conns->prev = c;
        b->conns = c;
        if (!b->paused) ev_io_start(loop, &c->io);
        /* a new stream: what an earlier one lost in flight is in the ring;
         * and perhaps a new worker after a reload */
        b->replay_tries = 0;
        start_replay(b);
        holder_kick(b->holder);
    }
}

/* --- reading the ring back (billing_replay.h) ----------------------------------------- */

static void replay_line(void *arg, const char *line, size_t len)
{
    struct billing *b = arg;
    if (len < 4 || memcmp(line, "gw", 2) != 0 || line[3] != ' ') { /* gw1, gw2, gw3 */
        /* HAProxy's own lines in the ring, e.g. "12 events dropped" when it
         * was full: records HAProxy could not keep, worth saying loudly */
        if (b->replay_other++ < 5)
            log_error("billing: HAProxy's ring %s holds \"%.*s\"", b->cfg.ring,
                      (int)(len > 200 ? 200 : len), line);
        return;
    }
    if (!spool_has_room(b)) {
        b->replay_cut = true;
        return;
    }
    take_record(b, line, len, true);
}

static void replay_done(void *arg, const struct replay_report *rep)
{
    struct billing *b = arg;
    b->replay = NULL;
    STAT(b, replays);
    if (rep->error) {
        STAT(b, replay_bad);
        log_warn("billing: reading back the ring %s from HAProxy's CLI %s failed: %s (attempt "
                 "%d of %d)",
                 b->cfg.ring, b->cfg.haproxy_cli, rep->error, b->replay_tries + 1, REPLAY_TRIES);
    } else {
        b->replay_tries = 0;
        log_info("billing: read back %llu lines of the ring %s: %llu records not seen before "
                 "(lost in flight, or not yet streamed) are billed now",
                 (unsigned long long)rep->lines, b->cfg.ring, (unsigned long long)b->replay_billed);
        if (rep->too_long)
            log_error("billing: %llu lines of the ring were too long to be records",
                      (unsigned long long)rep->too_long);
    }
    if (b->replay_cut) log_warn("billing: the spool filled up during the read-back; once more");
    check_fill(b);
    push(b);
    if (rep->error || b->replay_cut) {
        if (++b->replay_tries < REPLAY_TRIES) {
            timer_once(b->loop, &b->replay_retry, REPLAY_RETRY_S);
        } else {
            log_error("billing: GAVE UP reading back the ring %s: records lost in flight when "
                      "HAProxy's stream dropped are not billed",
                      b->cfg.ring);
            b->replay_tries = 0;
        }
    } else if (b->replay_again) {
        start_replay(b);
    }
}

/* A line of an old worker's ring (billing_hold.h). */
static bool hold_line(void *arg, const char *line, size_t len)
{
    struct billing *b = arg;
    if (!spool_has_room(b)) return false;
    take_record(b, line, len, true);
    return true;
}

static void start_replay(struct billing *b)
{
    if (!b->cfg.haproxy_cli || !b->cfg.haproxy_cli[0]) return;
    if (b->replay) {
        b->replay_again = true;
        return;
    }
    ev_timer_stop(b->loop, &b->replay_retry);
    b->replay_again = b->replay_cut = false;
    b->replay_billed = b->replay_other = 0;
    b->replay = replay_start(b->loop, b->cfg.haproxy_cli, b->cfg.ring, REPLAY_TIMEOUT_S,
                             replay_line, replay_done, b);
    if (!b->replay && ++b->replay_tries < REPLAY_TRIES)
        timer_once(b->loop, &b->replay_retry, REPLAY_RETRY_S);
}

static void replay_retry_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    start_replay(t->data);
}

/* --- records out ------------------------------------------------------------------- */

static void push_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    struct billing *b = privdata;
    redisReply *r = reply;
    b->in_flight = false;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements >= 2 &&
        r->element[0]->type == REDIS_REPLY_INTEGER) {
        if (r->elements == 3 && r->element[2]->type == REDIS_REPLY_INTEGER &&
            r->element[2]->integer > 0)
            log_error("billing: %lld record(s) pushed without a live count (not understood by "
                      "Redis's cjson)",
                      r->element[2]->integer);
        uint64_t n = spool_taken(b->sp);
        atomic_fetch_add_explicit(&b->stats->pushed, n, memory_order_relaxed);
        spool_commit(b->sp);
        check_fill(b);
        if (n == b->cfg.batch)
            push(b); /* a backlog: at full speed */
        else
            push_soon(b);
        return;
    }
    /* not acknowledged: push the same records again later */
    spool_rewind(b->sp);
    if (r && r->type == REDIS_REPLY_ERROR)
        log_error("billing: pushing to traffic:logs failed: %s", r->str);
    else if (r)
        log_error("billing: unexpected answer to a traffic:logs transaction (type %d)", r->type);
}

/* Records arrive one by one: pushing each at once would cost a Redis
 * transaction per record. Pushes wait PUSH_DELAY_S so that they carry what
 * arrived meanwhile (a full batch goes at once from push_cb). */
static void push_soon(struct billing *b)
{
    if (!ev_is_active(&b->push_delay)) timer_once(b->loop, &b->push_delay, PUSH_DELAY_S);
}

static void push_delay_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    push(t->data);
}

/* Sends one batch as a transaction (see the top of the file). */
static void push(struct billing *b)
{
    if (!b->redis_ready || b->in_flight) return;
    /* Before taking: records taken and then not sent would be committed
     * with the next batch, unsent. */
    redisAsyncContext *ac = redis_conn_ctx(b->redis);
    if (ac == NULL) return;
    /* the records go after 7 leading arguments: EVAL's, or RPUSH's two at 5 */
    size_t n = spool_take(b->sp, b->cfg.batch, b->take_buf, TAKE_BUF, b->recs + 7, b->lens + 7);
    if (n == 0) return;
    unsigned long long seq = spool_sequence(b->sp) + n;
    if (b->cfg.live) { /* the same transaction as one script, with the live counts */
        char seqs[24], ttl[24];
        snprintf(seqs, sizeof(seqs), "%llu", seq);
        snprintf(ttl, sizeof(ttl), "%d", PUSHED_TTL_S);
        b->recs[0] = "EVAL";
        b->recs[1] = live_lua_push;
        b->recs[2] = "2";
        b->recs[3] = "traffic:logs";
        b->recs[4] = b->pushed_key;
        b->recs[5] = seqs;
        b->recs[6] = ttl;
        for (int i = 0; i < 7; i++)
            b->lens[i] = strlen(b->recs[i]);
        if (redisAsyncCommandArgv(ac, push_cb, b, (int)n + 7, b->recs, b->lens) != REDIS_OK) {
            spool_rewind(b->sp);
            return;
        }
        b->in_flight = true;
        return;
    }
    b->recs[5] = "RPUSH";
    b->lens[5] = 5;
    b->recs[6] = "traffic:logs";
    b->lens[6] = 12;
    if (redisAsyncCommand(ac, NULL, NULL, "MULTI") != REDIS_OK ||
        redisAsyncCommandArgv(ac, NULL, NULL, (int)n + 2, b->recs + 5, b->lens + 5) != REDIS_OK ||
        redisAsyncCommand(ac, NULL, NULL, "SET %s %llu EX %d", b->pushed_key, seq, PUSHED_TTL_S) !=
            REDIS_OK ||
        redisAsyncCommand(ac, push_cb, b, "EXEC") != REDIS_OK) {
        /* the context is going away: its disconnect callback reconnects */
        spool_rewind(b->sp);
        return;
    }
    b->in_flight = true;
}

/* The answer to GET traffic:logs:pushed:<id> after a (re)connect. */
static void pushed_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    struct billing *b = privdata;
    redisReply *r = reply;
    if (!r) return; /* disconnected: the disconnect callback reconnects */
    if (r->type == REDIS_REPLY_STRING) {
        char *end;
        errno = 0;
        unsigned long long there = strtoull(r->str, &end, 10);
        uint64_t seq = spool_sequence(b->sp);
        if (errno || *end || end == r->str) {
            log_error("billing: %s holds \"%s\", not a count; ignoring it", b->pushed_key, r->str);
        } else if (there > seq) {
            uint64_t skipped = spool_skip(b->sp, there - seq);
            log_info("billing: %llu record(s) were in Redis already (their acknowledgement was "
                     "lost): not pushed again",
                     (unsigned long long)skipped);
            if (skipped < there - seq)
                log_error("billing: %s says %llu records were pushed but the spool has only "
                          "%llu; was the spool file replaced?",
                          b->pushed_key, there, (unsigned long long)(seq + skipped));
        }
    } else if (r->type == REDIS_REPLY_ERROR) {
        log_error("billing: GET %s: %s; reconnecting", b->pushed_key, r->str);
        redis_conn_drop(b->redis); /* pushing without knowing could double a batch */
        return;
    }
    b->redis_ready = true;
    push(b);
}

static void redis_up_cb(struct redis_conn *c, void *arg)
{
    struct billing *b = arg;
    if (spool_pending_bytes(b->sp))
        log_info("billing: redis connected; pushing %llu spooled bytes",
                 (unsigned long long)spool_pending_bytes(b->sp));
    redisAsyncCommand(redis_conn_ctx(c), pushed_cb, b, "GET %s", b->pushed_key);
}

static void redis_down_cb(struct redis_conn *c, bool was_up, const char *why, void *arg)
{
    (void)c;
    struct billing *b = arg;
    b->redis_ready = false;
    b->in_flight = false;
    if (was_up) {
        spool_rewind(b->sp); /* what was in flight: the GET after reconnecting tells */
        log_warn("billing: redis connection lost; records wait in the spool");
    } else {
        log_warn("billing: redis %s:%d: %s; records wait in the spool", b->cfg.redis_host,
                 b->cfg.redis_port, why);
    }
}

static void tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct billing *b = t->data;
    spool_sync(b->sp);
    check_fill(b);
    push(b);
}

/* --- thread life ------------------------------------------------------------------- */

static void stop_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)revents;
    struct billing *b = a->data;
    ev_io_stop(loop, &b->accept_io);
    replay_cancel(b->replay);
    b->replay = NULL;
    holder_stop(b->holder);
    b->holder = NULL;
    ev_timer_stop(loop, &b->replay_retry);
    meter_stop(b->meter);
    b->meter = NULL;
    while (b->conns)
        conn_close(b->conns);
    ev_break(loop, EVBREAK_ALL);
}

/* The meter's progress goes out on the push connection (meter.h). */
static bool meter_send(void *arg, int argc, const char **argv, const size_t *argvlen,
                       redisCallbackFn *cb, void *privdata)
{
    struct billing *b = arg;
    redisAsyncContext *ac = redis_conn_ctx(b->redis);
    return b->redis_ready && ac &&
           redisAsyncCommandArgv(ac, cb, privdata, argc, argv, argvlen) == REDIS_OK;
}

static void *billing_main(void *arg)
{
    struct billing *b = arg;
    b->redis = redis_conn_start(b->loop, &b->redis_cfg, redis_up_cb, redis_down_cb, b);
    if (!b->redis) log_error("billing: out of memory: records wait in the spool");
    if (b->cfg.live) {
        struct meter_config mc = {.haproxy_cli = b->cfg.haproxy_cli,
                                  .interval_ms = b->cfg.live_interval_ms,
                                  .redis = b->redis_cfg};
        mc.redis.name = "live: redis";
        b->meter = meter_start(b->loop, &mc, b->cfg.live, b->cfg.meter_stats, meter_send, b);
    }
    ev_run(b->loop, 0);
    redis_conn_stop(b->redis);
    return NULL;
}

/* Opens the dedup window next to the spool and remembers the ids of the
 * records still in the spool (a kill may have come between spooling a
 * record and flushing its id). */
static int open_dedup(struct billing *b)
{
    char path[4096], err[512], id[BILLING_LINE_MAX];
    snprintf(path, sizeof(path), "%s.ids", b->cfg.spool_path);
    b->dd = dedup_open(path, b->cfg.dedup_records, err, sizeof(err));
    if (!b->dd) {
        log_error("billing: dedup window: %s", err);
        return -1;
    }
    size_t n;
    while ((n = spool_take(b->sp, b->cfg.batch, b->take_buf, TAKE_BUF, b->recs, b->lens)) > 0)
        for (size_t i = 0; i < n; i++) {
            size_t idlen = billing_json_request_id(b->recs[i], b->lens[i], id, sizeof(id));
            if (idlen) dedup_add(b->dd, id, idlen);
        }
    spool_rewind(b->sp);
    return 0;
}

struct billing *billing_start(const struct billing_config *cfg, struct billing_stats *stats)
{
    struct billing *b = calloc(1, sizeof(*b));
    char err[512];
    if (!b) return NULL;
    b->cfg = *cfg;
    b->redis_cfg = (struct redis_conn_config){
        .host = b->cfg.redis_host,
        .port = b->cfg.redis_port,
        .password = b->cfg.redis_password,
        .db = b->cfg.redis_db,
        .name = "billing: redis",
        .retry_s = REDIS_RETRY_S,
    };
    b->stats = stats;
    b->lfd = -1;
    b->take_buf = malloc(TAKE_BUF);
    b->recs = calloc(cfg->batch + 7, sizeof(*b->recs));
    b->lens = calloc(cfg->batch + 7, sizeof(*b->lens));
    if (!b->take_buf || !b->recs || !b->lens) {
        log_error("billing: out of memory");
        goto fail;
    }
    b->sp = spool_open(cfg->spool_path, cfg->spool_max_bytes, err, sizeof(err));
    if (!b->sp) {
        log_error("billing: spool: %s", err);
        goto fail;
    }
    if (open_dedup(b) != 0) goto fail;
    snprintf(b->pushed_key, sizeof(b->pushed_key), PUSHED_KEY "%016llx",
             (unsigned long long)spool_id(b->sp));
    b->lfd = net_listen(cfg->listen);
    if (b->lfd < 0) goto fail;
    b->loop = ev_loop_new(EVFLAG_AUTO);
    ev_async_init(&b->stop, stop_cb);
    ev_io_init(&b->accept_io, accept_cb, b->lfd, EV_READ);
    ev_timer_init(&b->tick, tick_cb, SYNC_S, SYNC_S);
    ev_timer_init(&b->push_delay, push_delay_cb, PUSH_DELAY_S, 0.);
    ev_timer_init(&b->replay_retry, replay_retry_cb, REPLAY_RETRY_S, 0.);
    b->stop.data = b->accept_io.data = b->tick.data = b;
    b->replay_retry.data = b->push_delay.data = b;
    ev_async_start(b->loop, &b->stop);
    ev_io_start(b->loop, &b->accept_io);
    ev_timer_start(b->loop, &b->tick);
    if (cfg->master_cli && cfg->master_cli[0]) {
        struct hold_config hcfg = {
            .master_cli = cfg->master_cli, .hold_addr = cfg->hold_addr, .ring = cfg->ring};
        b->holder = holder_start(b->loop, &hcfg, hold_line, b);
        if (!b->holder) goto fail;
    } else {
        log_warn("billing: no HAProxy master CLI (GW_HAPROXY_MASTER_CLI): after a HAProxy "
                 "reload, the records the old worker logs (requests and tunnels that end after "
                 "the reload) are LOST; start HAProxy with -S and point GW_HAPROXY_MASTER_CLI "
                 "at it");
    }
    if (pthread_create(&b->thread, NULL, billing_main, b) != 0) {
        log_error("billing: cannot start its thread");
        goto fail;
    }
    log_info("billing: records from HAProxy on %s, spool %s (max %llu bytes)", cfg->listen,
             cfg->spool_path, (unsigned long long)cfg->spool_max_bytes);
    return b;
fail:
    holder_stop(b->holder);
    if (b->loop) ev_loop_destroy(b->loop);
    if (b->lfd >= 0) close(b->lfd);
    spool_close(b->sp);
    dedup_close(b->dd);
    free(b->take_buf);
    free(b->recs);
    free(b->lens);
    free(b);
    return NULL;
}

void billing_stop(struct billing *b)
{
    if (!b) return;
    ev_async_send(b->loop, &b->stop);
    pthread_join(b->thread, NULL);
    close(b->lfd);
    spool_close(b->sp);
    dedup_close(b->dd);
    ev_loop_destroy(b->loop);
    free(b->take_buf);
    free(b->recs);
    free(b->lens);
    free(b);
}
