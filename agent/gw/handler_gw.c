/*
 * The gateway's SPOE handler: turns HAProxy's per-request message into a
 * verdict (policy.c), checks the balance in Redis, and answers with the
 * txn.gw.* variables the HAProxy configuration acts on.
 *
 * Messages (haproxy/spoe-gateway.conf):
 *   gw-req     ip=src pauth=req.hdr(Proxy-Authorization) auth=req.hdr(Authorization)
 *   gw-health  (no arguments)
 *
 * Variables set (scope txn; HAProxy adds the "gw" prefix):
 *   status (int), reason (str); on 200 also up_addr (str, an IP), up_port
 *   (int), up_auth (str "Basic ..."), user, slug, country, session (str),
 *   duration (int, minutes), and the user's limits max_conns and max_rps
 *   (int, 0: unlimited; HAProxy enforces them). gw-health sets proxy_count,
 *   user_count, queue_length, snapshot_age, pg_ok, redis_ok, providers (a
 *   JSON array: each provider's health) and providers_out.
 *
 * Each worker thread has its own Redis connection on its own loop
 * (agent/common/redis_conn.h: the host resolved off the loop). The
 * balance GET is pipelined on it and bounded by a timer: no reply in time,
 * Redis down, or no key at all means "allow", as in the reference, and each
 * case is counted. Password hashes are checked on the crypt pool and the
 * request is decided again when the answer comes back.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "ev_timer_once.h"
#include "handler_gw.h"
#include "health.h"
#include "json.h"
#include "live.h"
#include "live_lua.h"
#include "log.h"
#include "policy.h"
#include "redis_conn.h"

#define REDIS_RETRY_S 1.0
#define QUEUE_POLL_S  2.0
#define SNAP_TICK_S   1.0 /* an idle worker lets go of a replaced snapshot this soon */

/* /health's provider array, bytes at most (fits HAProxy's 16 KiB buffer) */
#define HEALTH_JSON_MAX 8000

struct gw_global {
    struct gw_config *cfg;
    struct redis_conn_config redis; /* from cfg, shared by the threads' connections */
    struct gw_stats *stats;
    atomic_bool poller_taken; /* one thread polls LLEN traffic:logs */
};

struct gw_thread;

/* Which HAProxy stream a request is (sid=<pid>.<rt>) and its request id
 * (rid=unique-id): what the live registry needs once the request is allowed. */
struct stream_key {
    bool ok;
    uint8_t rid_len;
    uint64_t pid, id;
    char rid[LIVE_RID_MAX];
};

/* A request waiting for something: a hash check or a balance reply. */
struct gw_wait {
    struct gw_thread *t;
    struct spoa_req *req;
    struct gw_wait *prev, *next; /* t->waits */
    ev_timer timer;              /* balance timeout */
    bool answered;               /* the ACK went out (timer fired first) */
    bool in_redis;               /* hiredis still holds us as privdata */
    /* the request, copied for a re-decision after a hash check */
    struct policy_request rq;
    char auth_copy[POLICY_AUTH_MAX];
    struct policy_verdict v;
    struct stream_key key;
};

struct gw_thread {
    struct ev_loop *loop;
    struct gw_global *g;
    struct snapshot_ref ref;
    struct policy_ctx pctx;
    struct crypt_inbox *inbox;
    struct redis_conn *redis; /* agent/common/redis_conn.h: resolves, AUTH, SELECT, reconnects */
    ev_timer queue_poll;      /* only on the poller thread */
    ev_timer snap_tick;       /* moves ref to the current snapshot while no request does */
    bool poller;
    struct gw_wait *waits;
};

#define STAT_ADD(t, field) atomic_fetch_add_explicit(&(t)->g->stats->field, 1, memory_order_relaxed)

static int status_slot(int status)
{
    switch (status) {
    case 200:
        return 0;
    case 400:
        return 1;
    case 402:
        return 2;
    case 403:
        return 3;
    case 407:
        return 4;
    default:
        return 5;
    }
}

/* --- answering ------------------------------------------------------------------- */

static void set_str(struct spoa_req *req, const char *name, const char *value)
{
    struct spop_data d = spop_data_cstr(value);
    spoa_req_set_var(req, SPOP_SCOPE_TXN, name, &d);
}

static void set_int(struct spoa_req *req, const char *name, int64_t value)
{
    struct spop_data d = spop_data_i64(value);
    spoa_req_set_var(req, SPOP_SCOPE_TXN, name, &d);
}

static void answer(struct gw_thread *t, struct spoa_req *req, const struct policy_verdict *v,
                   const struct stream_key *k)
{
    struct live *live = t->g->cfg->live;
    if (v->status == 200 && live && k && k->ok &&
        live_register(live, k->pid, k->id, k->rid, k->rid_len, v->user, strlen(v->user),
                      clock_mono_ms()) != 0)
        STAT_ADD(t, live_unregistered);
    atomic_fetch_add_explicit(&t->g->stats->verdicts[status_slot(v->status)], 1,
                              memory_order_relaxed);
    verdict_stats_count(&t->g->stats->by_reason, v->status, v->reason);
    if (v->status == 200) verdict_stats_provider(&t->g->stats->by_reason, v->slug);
    set_int(req, "status", v->status);
    set_str(req, "reason", v->reason ? v->reason : "");
    if (v->status == 200) {
        set_str(req, "up_addr", v->upstream_addr);
        set_int(req, "up_port", v->upstream_port);
        set_str(req, "up_auth", v->upstream_auth);
        set_str(req, "user", v->user);
        set_str(req, "slug", v->slug);
        set_str(req, "country", v->country);
        set_str(req, "session", v->session);
        set_int(req, "duration", v->duration_min);
        set_int(req, "max_conns", v->max_conns);
        set_int(req, "max_rps", v->max_rps);
    }
    log_debug("verdict %d (%s) user=%s slug=%s", v->status, v->reason ? v->reason : "", v->user,
              v->slug);
    spoa_req_done(req);
}

static struct gw_wait *wait_new(struct gw_thread *t, struct spoa_req *req)
{
    struct gw_wait *w = calloc(1, sizeof(*w));
    if (!w) return NULL;
    w->t = t;
    w->req = req;
    w->next = t->waits;
    if (t->waits) t->waits->prev = w;
    t->waits = w;
    return w;
}

static void wait_free(struct gw_wait *w)
{
    struct gw_thread *t = w->t;
    if (w->prev)
        w->prev->next = w->next;
    else
        t->waits = w->next;
    if (w->next) w->next->prev = w->prev;
    ev_timer_stop(t->loop, &w->timer);
    explicit_bzero(w->auth_copy, sizeof(w->auth_copy));
    free(w);
}

/* --- balance (Redis) ------------------------------------------------------------------ */

/* Strict decimal int64: no spaces, no '+', no trailing bytes. */
static bool parse_i64(const char *s, size_t len, int64_t *out)
{
    if (len == 0 || len > 20) return false;
    bool neg = s[0] == '-';
    size_t i = neg ? 1 : 0;
    if (i == len) return false;
    uint64_t v = 0;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    if (neg ? v > (uint64_t)INT64_MAX + 1 : v > (uint64_t)INT64_MAX) return false;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

static bool reply_i64(const redisReply *r, int64_t *out)
{
    if (r->type == REDIS_REPLY_STRING) return parse_i64(r->str, r->len, out);
    if (r->type == REDIS_REPLY_INTEGER) {
        *out = r->integer;
        return true;
    }
    return false;
}

/* Applies a balance reply to the verdict: <= 0 means 402, anything else
 * (including no answer) leaves it as decided. The reply is GET's (the
 * settled balance) or, with live accounting, MGET's: the settled balance and
 * the bytes not yet settled (live.h), whose difference is what is left. */
static void apply_balance(struct gw_thread *t, struct policy_verdict *v, const redisReply *r)
{
    if (!r || r->type == REDIS_REPLY_ERROR) {
        STAT_ADD(t, balance_unreachable);
        return;
    }
    int64_t unsettled = 0;
    if (r->type == REDIS_REPLY_ARRAY) {
        if (r->elements != 2) {
            STAT_ADD(t, balance_unreachable);
            return;
        }
        if (r->element[1]->type != REDIS_REPLY_NIL && !reply_i64(r->element[1], &unsettled)) {
            STAT_ADD(t, balance_unreadable);
            log_warn(LIVE_KEY_SUM "%s holds a non-integer value; ignoring it", v->user);
            unsettled = 0;
        }
        r = r->element[0];
    }
    if (r->type == REDIS_REPLY_NIL) {
        STAT_ADD(t, balance_missing);
        return;
    }
    int64_t bal;
    if (reply_i64(r, &bal)) {
        if (unsettled > 0 && bal < INT64_MIN + unsettled) bal = INT64_MIN + unsettled;
        if (bal - unsettled <= 0) {
            v->status = 402;
            v->reason = "insufficient balance";
        }
        return;
    }
    STAT_ADD(t, balance_unreadable);
    log_warn("balance:cache:%s holds a non-integer value; allowing the request", v->user);
}

static void balance_reply_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    struct gw_wait *w = privdata;
    w->in_redis = false;
    if (!w->answered) {
        apply_balance(w->t, &w->v, reply);
        answer(w->t, w->req, &w->v, &w->key);
    }
    wait_free(w);
}

static void balance_timeout_cb(struct ev_loop *loop, ev_timer *timer, int revents)
{
    (void)loop;
    (void)revents;
    struct gw_wait *w = timer->data;
    STAT_ADD(w->t, balance_timeout);
    w->answered = true; /* the reply, when it comes, only frees w */
    answer(w->t, w->req, &w->v, &w->key);
}

/* Answers the verdict, asking Redis first when it may turn into a 402. */
static void finish(struct gw_thread *t, struct spoa_req *req, struct gw_wait *w,
                   const struct policy_verdict *v, const struct stream_key *k)
{
    struct gw_config *cfg = t->g->cfg;
    if (!v->check_balance || !cfg->balance_checks) {
        answer(t, req, v, k);
        if (w) wait_free(w);
        return;
    }
    redisAsyncContext *ac = redis_conn_ctx(t->redis);
    if (!ac) {
        STAT_ADD(t, balance_unreachable);
        answer(t, req, v, k);
        if (w) wait_free(w);
        return;
    }
    if (!w && !(w = wait_new(t, req))) {
        answer(t, req, v, k); /* no memory: fail open as for an unreachable Redis */
        return;
    }
    if (&w->v != v) w->v = *v;
    if (&w->key != k) w->key = *k;
    size_t ulen = strlen(w->v.user);
    int rc = cfg->live ? redisAsyncCommand(ac, balance_reply_cb, w,
                                           "MGET " LIVE_KEY_BALANCE "%b " LIVE_KEY_SUM "%b",
                                           w->v.user, ulen, w->v.user, ulen)
                       : redisAsyncCommand(ac, balance_reply_cb, w, "GET " LIVE_KEY_BALANCE "%b",
                                           w->v.user, ulen);
    if (rc != REDIS_OK) {
        STAT_ADD(t, balance_unreachable);
        answer(t, req, &w->v, &w->key);
        wait_free(w);
        return;
    }
    w->in_redis = true;
    ev_timer_init(&w->timer, balance_timeout_cb, cfg->balance_timeout_ms / 1000.0, 0.);
    w->timer.data = w;
    ev_timer_start(t->loop, &w->timer);
}

static void redis_up_cb(struct redis_conn *c, void *arg)
{
    (void)c;
    struct gw_thread *t = arg;
    atomic_store(&t->g->stats->redis_ok, true);
}

static void redis_down_cb(struct redis_conn *c, bool was_up, const char *why, void *arg)
{
    (void)c;
    struct gw_thread *t = arg;
    if (was_up)
        log_warn("redis connection lost: %s", why);
    else
        log_warn("redis %s:%d: %s; balances allowed until it is back", t->g->redis.host,
                 t->g->redis.port, why);
    atomic_store(&t->g->stats->redis_ok, false);
}

static void llen_reply_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    struct gw_thread *t = privdata;
    redisReply *r = reply;
    atomic_store(&t->g->stats->queue_length,
                 r && r->type == REDIS_REPLY_INTEGER ? (int_fast64_t)r->integer : -1);
}

static void queue_poll_cb(struct ev_loop *loop, ev_timer *timer, int revents)
{
    (void)loop;
    (void)revents;
    struct gw_thread *t = timer->data;
    redisAsyncContext *ac = redis_conn_ctx(t->redis);
    if (ac)
        redisAsyncCommand(ac, llen_reply_cb, t, "LLEN traffic:logs");
    else
        atomic_store(&t->g->stats->queue_length, -1);
}

/* A worker holds the snapshot of its last request: without this, one that
 * gets no requests would keep a replaced (million-user) snapshot mapped
 * until its next one, and the loader polling to free it. */
static void snap_tick_cb(struct ev_loop *loop, ev_timer *timer, int revents)
{
    (void)loop;
    (void)revents;
    struct gw_thread *t = timer->data;
    snapshot_store_current(t->g->cfg->store, &t->ref);
}

/* --- hash checks ----------------------------------------------------------------------- */

static void hash_checked(void *arg, bool ok);

/* Decides the copied request of w; may go async again (balance). */
static void decide_copy(struct gw_thread *t, struct gw_wait *w)
{
    const struct snapshot *snap = snapshot_store_current(t->g->cfg->store, &t->ref);
    struct policy_hash_job job;
    if (policy_decide(snap, &w->rq, &t->pctx, &w->v, &job) == POLICY_VERIFY_HASH) {
        /* the stored hash changed while we were checking: refuse, never loop */
        w->v.status = 407;
        w->v.reason = "invalid proxy credentials";
        w->v.check_balance = false;
    }
    finish(t, w->req, w, &w->v, &w->key);
}

static void hash_checked(void *arg, bool ok)
{
    struct gw_wait *w = arg;
    struct gw_thread *t = w->t;
    if (!ok || spoa_req_orphaned(w->req)) {
        w->v.status = 407;
        w->v.reason = "invalid proxy credentials";
        w->v.check_balance = false;
        answer(t, w->req, &w->v, NULL);
        wait_free(w);
        return;
    }
    /* Decode once more from the copy to find the password to cache. */
    const struct snapshot *snap = snapshot_store_current(t->g->cfg->store, &t->ref);
    struct policy_hash_job job;
    if (policy_decide(snap, &w->rq, &t->pctx, &w->v, &job) == POLICY_VERIFY_HASH)
        policy_hash_verified(&t->pctx, job.password, job.password_len, job.hash);
    decide_copy(t, w);
}

/* --- messages ---------------------------------------------------------------------------- */

static void on_request(struct gw_thread *t, struct spoa_req *req, const struct spop_msg *m)
{
    struct policy_request rq = {0};
    struct stream_key key = {0};
    const struct spop_str *rid = NULL, *sid = NULL;
    bool have_ip = false;
    for (unsigned i = 0; i < m->nargs; i++) {
        const struct spop_kv *a = &m->args[i];
        if (spop_str_eq(a->name, "ip")) {
            if (a->value.type == SPOP_T_IPV4) {
                rq.family = AF_INET;
                memcpy(rq.addr, a->value.u.ipv4, 4);
                have_ip = true;
            } else if (a->value.type == SPOP_T_IPV6) {
                rq.family = AF_INET6;
                memcpy(rq.addr, a->value.u.ipv6, 16);
                have_ip = true;
            }
        } else if (spop_str_eq(a->name, "pauth") && a->value.type == SPOP_T_STRING) {
            rq.proxy_auth = a->value.u.str.ptr;
            rq.proxy_auth_len = a->value.u.str.len;
        } else if (spop_str_eq(a->name, "auth") && a->value.type == SPOP_T_STRING) {
            rq.auth = a->value.u.str.ptr;
            rq.auth_len = a->value.u.str.len;
        } else if (spop_str_eq(a->name, "sid") && a->value.type == SPOP_T_STRING) {
            sid = &a->value.u.str;
        } else if (spop_str_eq(a->name, "rid") && a->value.type == SPOP_T_STRING) {
            rid = &a->value.u.str;
        }
    }
    if (sid && rid && rid->len > 0 && rid->len <= LIVE_RID_MAX &&
        live_sid_parse(sid->ptr, sid->len, &key.pid, &key.id)) {
        memcpy(key.rid, rid->ptr, rid->len);
        key.rid_len = (uint8_t)rid->len;
        key.ok = true;
    }
    struct policy_verdict v;
    if (!have_ip) {
        /* a config error on HAProxy's side: refuse, loudly */
        STAT_ADD(t, bad_messages);
        log_error("gw-req without a client address (argument ip=src missing?)");
        v = (struct policy_verdict){.status = 403, .reason = "client address unknown"};
        answer(t, req, &v, NULL);
        return;
    }

    const struct snapshot *snap = snapshot_store_current(t->g->cfg->store, &t->ref);
    struct policy_hash_job job;
    if (policy_decide(snap, &rq, &t->pctx, &v, &job) == POLICY_DONE) {
        finish(t, req, NULL, &v, &key);
        return;
    }

    /* A crypt(3) hash to check: copy the request, it outlives this call. */
    struct gw_wait *w = wait_new(t, req);
    const char *hdr = rq.proxy_auth_len ? rq.proxy_auth : rq.auth;
    size_t hlen = rq.proxy_auth_len ? rq.proxy_auth_len : rq.auth_len;
    if (!w) {
        v = (struct policy_verdict){.status = 503, .reason = "agent out of memory"};
        answer(t, req, &v, NULL);
        return;
    }
    w->key = key;
    w->rq.family = rq.family;
    memcpy(w->rq.addr, rq.addr, sizeof(rq.addr));
    memcpy(w->auth_copy, hdr, hlen); /* hlen <= POLICY_AUTH_MAX: decide checked */
    w->rq.proxy_auth = w->auth_copy;
    w->rq.proxy_auth_len = hlen;
    STAT_ADD(t, hash_checks);
    if (!crypt_submit(t->g->cfg->crypt, t->inbox, job.password, job.password_len, job.hash,
                      hash_checked, w)) {
        STAT_ADD(t, hash_queue_full);
        w->v = (struct policy_verdict){.status = 503, .reason = "authentication busy"};
        answer(t, req, &w->v, NULL);
        wait_free(w);
    }
}

/* Appends one provider's health to the /health array. */
static void health_entry(struct textbuf *b, struct health *h, const struct snap_provider *p,
                         int64_t now_mono, int64_t now_wall, size_t *out)
{
    struct health_view hv = {.state = HEALTH_IN, .last_error = HEALTH_OK};
    health_view(h, p->slug, p->slug_len, now_mono, &hv);
    if (hv.state != HEALTH_IN) (*out)++;
    textbuf_puts(b, "{\"slug\":");
    json_put_string(b, p->slug, p->slug_len);
    textbuf_puts(b, ",\"state\":\"");
    textbuf_puts(b, health_state_name(hv.state));
    textbuf_puts(b, "\",\"failures\":");
    textbuf_put_int(b, hv.failures);
    textbuf_puts(b, ",\"recent_failures\":");
    textbuf_put_int(b, hv.recent_failures);
    textbuf_puts(b, ",\"times_out\":");
    textbuf_put_int(b, hv.times_out);
    textbuf_puts(b, ",\"out_for_s\":");
    textbuf_put_int(b, (hv.out_left_ms + 999) / 1000);
    if (hv.last_error_wall_ms > 0) {
        textbuf_puts(b, ",\"last_error\":\"");
        textbuf_puts(b, health_result_name(hv.last_error));
        textbuf_puts(b, "\",\"last_error_age_s\":");
        textbuf_put_int(b, (now_wall - hv.last_error_wall_ms) / 1000);
    } else {
        textbuf_puts(b, ",\"last_error\":null");
    }
    textbuf_putc(b, '}');
}

/* /health's provider part: "providers" (a JSON array of every provider in
 * the snapshot with its health; as many as fit in HEALTH_JSON_MAX bytes) and
 * "providers_out" (how many are out or half-open: the gateway is degraded). */
static void health_vars(struct gw_thread *t, struct spoa_req *req, const struct snapshot *snap)
{
    static _Thread_local char buf[HEALTH_JSON_MAX];
    struct health *h = t->g->cfg->health;
    int64_t now_mono = clock_mono_ms(), now_wall = clock_wall_ms();
    struct textbuf b;
    size_t out = 0, good = 1;
    textbuf_init(&b, buf, sizeof(buf) - 1); /* room for the closing ']' */
    textbuf_putc(&b, '[');
    for (int global = 1; global >= 0; global--) {
        const struct snap_provider *const *pool;
        size_t n = snapshot_providers(snap, global, &pool);
        for (size_t i = 0; i < n; i++) {
            if (good > 1) textbuf_putc(&b, ',');
            health_entry(&b, h, pool[i], now_mono, now_wall, &out);
            if (b.full) break;
            good = (size_t)(b.p - b.start);
        }
    }
    if (b.full) log_warn("/health: too many providers to list them all");
    buf[good] = ']';
    struct spop_data d = spop_data_str(buf, good + 1);
    spoa_req_set_var(req, SPOP_SCOPE_TXN, "providers", &d);
    set_int(req, "providers_out", (int64_t)out);
}

static void on_health(struct gw_thread *t, struct spoa_req *req)
{
    const struct snapshot *snap = snapshot_store_current(t->g->cfg->store, &t->ref);
    struct snapshot_store_status st;
    snapshot_store_status(t->g->cfg->store, &st);
    int64_t now_ms = clock_wall_ms();
    /* since the data was last read or confirmed unchanged (an empty delta) */
    int64_t fresh_ms = snapshot_loaded_at_ms(snap);
    if (st.last_ok_ms > fresh_ms) fresh_ms = st.last_ok_ms;
    int64_t age = (now_ms - fresh_ms) / 1000;

    set_int(req, "proxy_count", (int64_t)snapshot_provider_count(snap));
    set_int(req, "user_count", (int64_t)snapshot_user_count(snap));
    set_int(req, "queue_length", atomic_load(&t->g->stats->queue_length));
    set_int(req, "snapshot_age", age < 0 ? 0 : age);
    set_int(req, "pg_ok", st.postgres_ok);
    set_int(req, "redis_ok", t->g->cfg->balance_checks ? redis_conn_ctx(t->redis) != NULL : 1);
    health_vars(t, req, snap);
    spoa_req_done(req);
}

static void gw_notify(void *tctx, struct spoa_req *req, const struct spop_msg *msgs, size_t nmsgs)
{
    struct gw_thread *t = tctx;
    for (size_t i = 0; i < nmsgs; i++) {
        if (spop_str_eq(msgs[i].name, "gw-req")) {
            on_request(t, req, &msgs[i]);
            return;
        }
        if (spop_str_eq(msgs[i].name, "gw-health")) {
            on_health(t, req);
            return;
        }
    }
    STAT_ADD(t, bad_messages);
    log_warn("NOTIFY without a gw-req or gw-health message: check the SPOE config");
    spoa_req_done(req); /* no status variable: HAProxy's config refuses the request */
}

/* --- thread life -------------------------------------------------------------------------- */

static void *gw_thread_init(struct ev_loop *loop, void *global)
{
    struct gw_thread *t = calloc(1, sizeof(*t));
    if (!t) {
        log_error("out of memory starting a worker");
        abort();
    }
    t->loop = loop;
    t->g = global;
    policy_ctx_init(&t->pctx);
    t->pctx.health = t->g->cfg->health;
    t->pctx.default_max_conns = t->g->cfg->max_conns;
    t->pctx.default_max_rps = t->g->cfg->max_rps;
    t->inbox = crypt_inbox_new(loop);
    if (!t->inbox) {
        log_error("out of memory starting a worker");
        abort();
    }
    ev_timer_init(&t->snap_tick, snap_tick_cb, SNAP_TICK_S, SNAP_TICK_S);
    t->snap_tick.data = t;
    ev_timer_start(loop, &t->snap_tick);
    ev_unref(loop); /* housekeeping does not keep the loop alive */
    if (t->g->cfg->balance_checks) {
        t->redis = redis_conn_start(loop, &t->g->redis, redis_up_cb, redis_down_cb, t);
        if (!t->redis) {
            log_error("out of memory starting a worker");
            abort();
        }
        bool expected = false;
        if (atomic_compare_exchange_strong(&t->g->poller_taken, &expected, true)) {
            t->poller = true;
            ev_timer_init(&t->queue_poll, queue_poll_cb, 0.1, QUEUE_POLL_S);
            t->queue_poll.data = t;
            ev_timer_start(loop, &t->queue_poll);
            ev_unref(loop); /* housekeeping does not keep the loop alive */
        }
    }
    return t;
}

static void gw_thread_fini(void *tctx)
{
    struct gw_thread *t = tctx;
    if (t->poller) {
        ev_ref(t->loop);
        ev_timer_stop(t->loop, &t->queue_poll);
    }
    ev_ref(t->loop);
    ev_timer_stop(t->loop, &t->snap_tick);
    crypt_inbox_free(t->inbox); /* runs the last hash callbacks */
    /* Answer what still waits (its connection is gone anyway), then let
     * hiredis call back every pending command with a NULL reply. */
    for (struct gw_wait *w = t->waits; w; w = w->next) {
        if (!w->answered) {
            w->answered = true;
            answer(t, w->req, &w->v, &w->key);
        }
    }
    redis_conn_stop(t->redis); /* callbacks free the waits they hold */
    while (t->waits)
        wait_free(t->waits);
    snapshot_ref_release(&t->ref);
    free(t);
}

void handler_gw_init(struct spoa_handler *h, struct gw_config *cfg, struct gw_stats *stats)
{
    static struct gw_global g;
    g.cfg = cfg;
    g.stats = stats;
    g.redis = (struct redis_conn_config){
        .host = cfg->redis_host,
        .port = cfg->redis_port,
        .password = cfg->redis_password,
        .db = cfg->redis_db,
        .name = "redis",
        .retry_s = REDIS_RETRY_S,
    };
    atomic_store(&stats->queue_length, -1);
    memset(h, 0, sizeof(*h));
    h->name = "gateway";
    h->thread_init = gw_thread_init;
    h->thread_fini = gw_thread_fini;
    h->notify = gw_notify;
    h->global = &g;
}
