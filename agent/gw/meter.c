/*
 * The live meter (see meter.h): dumps, progress, cuts.
 *
 * One dump at a time. A gw:cut message queues its user; the cut waits for a
 * dump that began after the message (a stream address from an older dump
 * may belong to a stream that ended since, and HAProxy reuses addresses), so
 * a message during a dump starts another right after it. Shutdown commands
 * run one CLI connection at a time, each at most CLI_CMD_MAX bytes.
 */
#include "meter.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "billing_replay.h"
#include "clock.h"
#include "live_lua.h"
#include "log.h"
#include "sess_dump.h"

#define DUMP_TIMEOUT_S    10.0
#define SHUT_TIMEOUT_S    5.0
#define SUB_RETRY_S       1.0
#define PRUNE_GRACE_MS    10000 /* a stream this young may not be in HAProxy's dump yet */
#define TRIPLES_PER_EVAL  1000
#define MAX_PENDING_USERS 4096
#define STAT(m, f, n)     atomic_fetch_add_explicit(&(m)->st->f, (n), memory_order_relaxed)

struct span {
    size_t off, len;
};

struct meter {
    struct ev_loop *loop;
    struct meter_config cfg;
    struct live *live;
    struct meter_stats *st;
    meter_send_fn send;
    void *send_arg;
    bool stopping;

    ev_timer tick;
    struct replay *dump;
    struct sess_dump parse;
    bool dump_begun;
    int64_t dump_started_ms; /* monotonic */

    /* users waiting to be cut: those in [0, ready) heard before the current
     * dump began (cut when it ends), the rest after (need the next one) */
    char *pending[MAX_PENDING_USERS];
    size_t npending, ready;

    /* shutdown commands, run one after another */
    char **shut_cmds;
    size_t nshut, shut_next;
    struct replay *shut;

    /* the progress of one dump: (user, rid, bytes) spans into text */
    char *text;
    size_t text_len, text_cap;
    struct span *spans;
    size_t nspans, spans_cap;

    struct redis_conn *sub;
};

static void start_dump(struct meter *m);
static void run_shutdowns(struct meter *m);

/* --- progress ---------------------------------------------------------------------- */

static bool text_put(struct meter *m, const char *s, size_t len)
{
    if (m->nspans == m->spans_cap) {
        size_t cap = m->spans_cap ? m->spans_cap * 2 : 3 * 256;
        struct span *sp = realloc(m->spans, cap * sizeof(*sp));
        if (!sp) return false;
        m->spans = sp;
        m->spans_cap = cap;
    }
    if (m->text_len + len > m->text_cap) {
        size_t cap = m->text_cap ? m->text_cap : 16384;
        while (cap < m->text_len + len)
            cap *= 2;
        char *t = realloc(m->text, cap);
        if (!t) return false;
        m->text = t;
        m->text_cap = cap;
    }
    memcpy(m->text + m->text_len, s, len);
    m->spans[m->nspans++] = (struct span){m->text_len, len};
    m->text_len += len;
    return true;
}

static void progress_cb(void *arg, const char *user, size_t user_len, const char *rid,
                        size_t rid_len, uint64_t bytes)
{
    struct meter *m = arg;
    char num[24];
    int n = snprintf(num, sizeof(num), "%" PRIu64, bytes);
    size_t mark_text = m->text_len, mark_spans = m->nspans;
    if (!text_put(m, user, user_len) || !text_put(m, rid, rid_len) ||
        !text_put(m, num, (size_t)n)) {
        m->text_len = mark_text; /* no memory: this stream's progress waits */
        m->nspans = mark_spans;
    }
}

/* One script call per TRIPLES_PER_EVAL streams, on the push connection. */
static void send_progress(struct meter *m)
{
    size_t triples = m->nspans / 3;
    const char *argv[3 + 3 * TRIPLES_PER_EVAL];
    size_t argvlen[3 + 3 * TRIPLES_PER_EVAL];
    for (size_t first = 0; first < triples; first += TRIPLES_PER_EVAL) {
        size_t n = triples - first < TRIPLES_PER_EVAL ? triples - first : TRIPLES_PER_EVAL;
        int argc = 0;
        argv[argc] = "EVAL";
        argvlen[argc++] = 4;
        argv[argc] = live_lua_progress;
        argvlen[argc++] = sizeof(live_lua_progress) - 1;
        argv[argc] = "0";
        argvlen[argc++] = 1;
        for (size_t i = 3 * first; i < 3 * (first + n); i++) {
            argv[argc] = m->text + m->spans[i].off;
            argvlen[argc++] = m->spans[i].len;
        }
        if (m->send(m->send_arg, argc, argv, argvlen))
            STAT(m, progress, n);
        else
            STAT(m, progress_lost, n);
    }
    m->nspans = m->text_len = 0;
}

/* --- dumps -------------------------------------------------------------------------- */

static void stream_cb(void *arg, const struct sess_stream *s)
{
    struct meter *m = arg;
    if (!m->dump_begun) {
        if (m->parse.pid == 0) return; /* no "Pid:" line: finished as an error */
        live_dump_begin(m->live, m->parse.pid);
        m->dump_begun = true;
    }
    live_dump_stream(m->live, s->id, s->ptr, s->req_bytes + s->res_bytes);
}

static void dump_line(void *arg, const char *line, size_t len)
{
    struct meter *m = arg;
    sess_dump_line(&m->parse, line, len);
}

#define CUT_MAX_STREAMS 65536 /* per user and cut; more: the next progress cuts again */

static void queue_cmd(struct meter *m, char *cmd)
{
    char **q = realloc(m->shut_cmds, (m->nshut + 1) * sizeof(*q));
    if (!q) {
        free(cmd);
        return;
    }
    m->shut_cmds = q;
    m->shut_cmds[m->nshut++] = cmd;
}

/* Marks the user's streams cut and queues their "shutdown session"
 * commands, several per CLI line. Returns how many streams. */
static size_t queue_shutdowns(struct meter *m, const char *user, size_t user_len)
{
    uint64_t *ptrs = malloc(CUT_MAX_STREAMS * sizeof(*ptrs));
    if (!ptrs) return 0;
    size_t n = live_cut_user(m->live, user, user_len, LIVE_CUT_BALANCE, ptrs, CUT_MAX_STREAMS);
    char *cmd = NULL;
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (cmd && len + 40 > CLI_CMD_MAX) {
            queue_cmd(m, cmd);
            cmd = NULL;
        }
        if (!cmd) {
            if (!(cmd = malloc(CLI_CMD_MAX + 1))) break;
            len = 0;
        }
        len += (size_t)snprintf(cmd + len, CLI_CMD_MAX + 1 - len, "%sshutdown session 0x%" PRIx64,
                                len ? ";" : "", ptrs[i]);
    }
    if (cmd) queue_cmd(m, cmd);
    free(ptrs);
    return n;
}

static void dump_done(void *arg, const struct replay_report *rep)
{
    struct meter *m = arg;
    m->dump = NULL;
    uint64_t us = (uint64_t)(clock_mono_ms() - m->dump_started_ms) * 1000;
    const char *error = rep->error;
    if (!error && m->parse.pid == 0) error = "no \"Pid:\" line in show info";
    if (error) {
        STAT(m, dump_errors, 1);
        log_warn("live meter: \"show sess all\" on HAProxy's CLI %s failed: %s", m->cfg.haproxy_cli,
                 error);
    } else {
        if (!m->dump_begun) live_dump_begin(m->live, m->parse.pid); /* no stream at all */
        STAT(m, dumps, 1);
        atomic_store(&m->st->last_dump_us, us);
        atomic_store(&m->st->last_streams, m->parse.streams);
        live_dump_end(m->live, m->dump_started_ms - PRUNE_GRACE_MS, progress_cb, m);
        send_progress(m);
        /* cuts heard before this dump began */
        for (size_t i = 0; i < m->ready; i++) {
            size_t n = queue_shutdowns(m, m->pending[i], strlen(m->pending[i]));
            if (n)
                log_info("live: the balance of %s is used up: cutting its %zu stream(s) on this "
                         "node",
                         m->pending[i], n);
        }
        for (size_t i = 0; i < m->ready; i++)
            free(m->pending[i]);
        memmove(m->pending, m->pending + m->ready, (m->npending - m->ready) * sizeof(char *));
        m->npending -= m->ready;
        m->ready = 0;
        run_shutdowns(m);
    }
    if (m->parse.malformed)
        log_warn("live meter: %" PRIu64 " stream blocks of \"show sess all\" did not parse",
                 m->parse.malformed);
    if (m->npending && !m->stopping) start_dump(m); /* cuts heard during this dump */
}

static void start_dump(struct meter *m)
{
    if (m->dump || m->stopping) return;
    sess_dump_init(&m->parse, stream_cb, m);
    m->dump_begun = false;
    m->dump_started_ms = clock_mono_ms();
    m->ready = m->npending;
    m->dump = cli_run(m->loop, m->cfg.haproxy_cli, "show info;show sess all", DUMP_TIMEOUT_S,
                      dump_line, dump_done, m);
    if (!m->dump) {
        STAT(m, dump_errors, 1);
        m->ready = 0;
    }
}

static void tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct meter *m = t->data;
    if (live_active(m->live) || m->npending) start_dump(m);
}

/* --- shutting sessions down ------------------------------------------------------------ */

static void shut_line(void *arg, const char *line, size_t len)
{
    (void)arg;
    /* "shutdown session" answers nothing in 2.6; anything it says is worth a line */
    log_debug("live: HAProxy CLI: %.*s", (int)len, line);
}

static void shut_done(void *arg, const struct replay_report *rep)
{
    struct meter *m = arg;
    m->shut = NULL;
    if (rep->error)
        log_warn("live: shutting sessions down on HAProxy's CLI %s failed: %s", m->cfg.haproxy_cli,
                 rep->error);
    run_shutdowns(m);
}

static void run_shutdowns(struct meter *m)
{
    while (!m->shut && m->shut_next < m->nshut && !m->stopping) {
        char *cmd = m->shut_cmds[m->shut_next++];
        size_t n = 1;
        for (const char *p = cmd; (p = strchr(p, ';')); p++)
            n++;
        m->shut =
            cli_run(m->loop, m->cfg.haproxy_cli, cmd, SHUT_TIMEOUT_S, shut_line, shut_done, m);
        if (m->shut) STAT(m, sessions_shut, n);
        free(cmd);
    }
    if (!m->shut && m->shut_next == m->nshut) {
        free(m->shut_cmds);
        m->shut_cmds = NULL;
        m->nshut = m->shut_next = 0;
    }
}

/* --- the gw:cut subscription ----------------------------------------------------------- */

static void cut_heard(struct meter *m, const char *user, size_t len)
{
    STAT(m, cut_messages, 1);
    for (size_t i = 0; i < m->npending; i++)
        if (strlen(m->pending[i]) == len && memcmp(m->pending[i], user, len) == 0) {
            if (i < m->ready) break; /* heard before this dump: also cut after it */
            return;
        }
    if (m->npending == MAX_PENDING_USERS || memchr(user, 0, len)) return;
    char *u = strndup(user, len);
    if (!u) return;
    m->pending[m->npending++] = u;
    start_dump(m); /* when one runs, dump_done starts the next */
}

static void sub_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    struct meter *m = privdata;
    redisReply *r = reply;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3) return;
    redisReply *kind = r->element[0], *msg = r->element[2];
    if (kind->type == REDIS_REPLY_STRING && strcmp(kind->str, "message") == 0 &&
        msg->type == REDIS_REPLY_STRING && msg->len > 0 && msg->len <= LIVE_USER_MAX)
        cut_heard(m, msg->str, msg->len);
}

/* Each up is a new connection: subscribe again. */
static void sub_up(struct redis_conn *c, void *arg)
{
    struct meter *m = arg;
    redisAsyncContext *ac = redis_conn_ctx(c);
    if (ac) redisAsyncCommand(ac, sub_cb, m, "SUBSCRIBE " LIVE_CHANNEL_CUT);
}

static void sub_down(struct redis_conn *c, bool was_up, const char *why, void *arg)
{
    (void)c;
    (void)arg;
    if (was_up)
        log_warn("live: lost the gw:cut subscription (%s); nothing is cut until it is back", why);
}

/* --- life ---------------------------------------------------------------------------- */

struct meter *meter_start(struct ev_loop *loop, const struct meter_config *cfg, struct live *live,
                          struct meter_stats *stats, meter_send_fn send, void *send_arg)
{
    struct meter *m = calloc(1, sizeof(*m));
    if (!m) return NULL;
    m->loop = loop;
    m->cfg = *cfg;
    m->live = live;
    m->st = stats;
    m->send = send;
    m->send_arg = send_arg;
    double every = (cfg->interval_ms ? cfg->interval_ms : 500) / 1000.0;
    ev_timer_init(&m->tick, tick_cb, every, every);
    m->tick.data = m;
    ev_timer_start(loop, &m->tick);
    if (!m->cfg.redis.retry_s) m->cfg.redis.retry_s = SUB_RETRY_S;
    m->sub = redis_conn_start(loop, &m->cfg.redis, sub_up, sub_down, m);
    if (!m->sub) log_error("live: out of memory: no gw:cut subscription");
    log_info("live: metering running requests and tunnels every %u ms through HAProxy's CLI %s",
             cfg->interval_ms, cfg->haproxy_cli);
    return m;
}

void meter_stop(struct meter *m)
{
    if (!m) return;
    m->stopping = true;
    ev_timer_stop(m->loop, &m->tick);
    replay_cancel(m->dump);
    replay_cancel(m->shut);
    redis_conn_stop(m->sub);
    for (size_t i = 0; i < m->npending; i++)
        free(m->pending[i]);
    for (size_t i = m->shut_next; i < m->nshut; i++)
        free(m->shut_cmds[i]);
    free(m->shut_cmds);
    free(m->text);
    free(m->spans);
    free(m);
}
