/*
 * The kept-up Redis connection (redis_conn.h).
 *
 * States: resolving (a net_resolve_job in flight), connecting or up (ac set),
 * waiting (the retry timer runs). Exactly one of them at a time, so there is
 * never more than one context per redis_conn.
 */
#include "redis_conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include <hiredis/adapters/libev.h>
#pragma GCC diagnostic pop

#include "ev_timer_once.h"
#include "log.h"
#include "net.h"

struct redis_conn {
    struct ev_loop *loop;
    const struct redis_conn_config *cfg;
    redis_conn_up_fn up;
    redis_conn_down_fn down;
    void *arg;
    redisAsyncContext *ac;       /* connecting or up */
    bool is_up;                  /* the connect callback said yes */
    bool stopping;               /* redis_conn_stop: no callbacks, no retries */
    struct net_resolve_job *job; /* resolving */
    ev_timer retry;
};

static void attempt(struct redis_conn *c);

static void retry_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    attempt(t->data);
}

/* After a failure or a loss: schedule the next attempt, then tell the owner. */
static void went_down(struct redis_conn *c, bool was_up, const char *why)
{
    c->ac = NULL;
    c->is_up = false;
    if (c->stopping) return;
    timer_once(c->loop, &c->retry, c->cfg->retry_s);
    if (c->down) c->down(c, was_up, why, c->arg);
}

static void connected_cb(const redisAsyncContext *ac, int status)
{
    struct redis_conn *c = ac->data;
    if (status != REDIS_OK) {
        went_down(c, false, ac->errstr); /* hiredis frees the context after this */
        return;
    }
    c->is_up = true;
    if (c->up) c->up(c, c->arg);
}

static void disconnected_cb(const redisAsyncContext *ac, int status)
{
    struct redis_conn *c = ac->data;
    went_down(c, true, status == REDIS_OK ? "disconnected" : ac->errstr);
}

static void auth_reply_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct redis_conn *c = ac->data;
    (void)privdata;
    redisReply *r = reply;
    if (r && r->type == REDIS_REPLY_ERROR)
        log_error("%s AUTH/SELECT failed: %s", c->cfg->name, r->str);
}

/* Connects hiredis to a numeric address (it resolves nothing then). */
static void connect_to(struct redis_conn *c, const char *addr)
{
    char why[256];
    redisAsyncContext *ac = redisAsyncConnect(addr, c->cfg->port);
    if (!ac || ac->err) {
        snprintf(why, sizeof(why), "%s", ac ? ac->errstr : "out of memory");
        if (ac) redisAsyncFree(ac);
        went_down(c, false, why);
        return;
    }
    ac->data = c;
    redisLibevAttach(c->loop, ac);
    redisAsyncSetConnectCallback(ac, connected_cb);
    redisAsyncSetDisconnectCallback(ac, disconnected_cb);
    /* queued before anything the owner sends, so they run first */
    if (c->cfg->password && c->cfg->password[0])
        redisAsyncCommand(ac, auth_reply_cb, NULL, "AUTH %s", c->cfg->password);
    if (c->cfg->db) redisAsyncCommand(ac, auth_reply_cb, NULL, "SELECT %u", c->cfg->db);
    c->ac = ac;
}

static void resolved_cb(void *arg, const char *addr, const char *err)
{
    struct redis_conn *c = arg;
    c->job = NULL;
    if (!addr) {
        went_down(c, false, err);
        return;
    }
    connect_to(c, addr);
}

static void attempt(struct redis_conn *c)
{
    if (net_is_numeric(c->cfg->host)) {
        connect_to(c, c->cfg->host);
        return;
    }
    c->job = net_resolve_start(c->loop, c->cfg->host, resolved_cb, c);
    if (!c->job) went_down(c, false, "cannot start resolving the host name");
}

struct redis_conn *redis_conn_start(struct ev_loop *loop, const struct redis_conn_config *cfg,
                                    redis_conn_up_fn up, redis_conn_down_fn down, void *arg)
{
    struct redis_conn *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    c->loop = loop;
    c->cfg = cfg;
    c->up = up;
    c->down = down;
    c->arg = arg;
    ev_timer_init(&c->retry, retry_cb, cfg->retry_s, 0.);
    c->retry.data = c;
    attempt(c);
    return c;
}

redisAsyncContext *redis_conn_ctx(const struct redis_conn *c)
{
    return c && c->is_up ? c->ac : NULL;
}

void redis_conn_drop(struct redis_conn *c)
{
    if (c && c->ac) redisAsyncDisconnect(c->ac); /* disconnected_cb follows */
}

void redis_conn_stop(struct redis_conn *c)
{
    if (!c) return;
    c->stopping = true;
    ev_timer_stop(c->loop, &c->retry);
    net_resolve_cancel(c->job);
    if (c->ac) redisAsyncFree(c->ac); /* pending callbacks get NULL replies */
    free(c);
}

redisContext *redis_sync_connect(const struct redis_conn_config *cfg, struct timeval tv, char *err,
                                 size_t errlen)
{
    redisContext *rc = redisConnectWithTimeout(cfg->host, cfg->port, tv);
    if (rc == NULL || rc->err) {
        snprintf(err, errlen, "%s", rc ? rc->errstr : "out of memory");
        if (rc) redisFree(rc);
        return NULL;
    }
    if (redisSetTimeout(rc, tv) != REDIS_OK) {
        snprintf(err, errlen, "cannot set the socket timeout");
        redisFree(rc);
        return NULL;
    }
    redisEnableKeepAlive(rc);
    for (int i = 0; i < 2; i++) {
        redisReply *r;
        if (i == 0 && (cfg->password == NULL || cfg->password[0] == '\0')) continue;
        if (i == 1 && cfg->db == 0) continue;
        r = i == 0 ? redisCommand(rc, "AUTH %s", cfg->password)
                   : redisCommand(rc, "SELECT %u", cfg->db);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "%s", r ? r->str : rc->errstr);
            if (r) freeReplyObject(r);
            redisFree(rc);
            return NULL;
        }
        freeReplyObject(r);
    }
    return rc;
}
