/*
 * The "echo" handler: a diagnostic policy that answers every message by
 * setting, for each argument, the transaction variable `arg_<name>` to the
 * argument's own typed value, plus `msg` to the last message's name.
 *
 * It exists to prove the SPOP path end to end against a real HAProxy (each
 * typed value makes the round trip and comes back in a response header), to
 * benchmark the server with a trivial handler, and, with a delay, to exercise
 * asynchronous answers.
 */
#include <stdlib.h>
#include <string.h>

#include "handler_echo.h"
#include "log.h"

/* A deferred answer: the actions are already in the request's ACK. */
struct echo_pending {
    ev_timer timer;
    struct spoa_req *req;
    struct echo_pending *prev, *next;
    struct echo_thread *owner;
};

struct echo_thread {
    struct ev_loop *loop;
    const struct echo_config *cfg;
    struct echo_pending *pending; /* timers still running */
};

static void pending_finish(struct echo_thread *t, struct echo_pending *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        t->pending = p->next;
    if (p->next) p->next->prev = p->prev;
    ev_timer_stop(t->loop, &p->timer);
    spoa_req_done(p->req);
    free(p);
}

static void *echo_thread_init(struct ev_loop *loop, void *global)
{
    struct echo_thread *t = calloc(1, sizeof(*t));
    if (!t) abort();
    t->loop = loop;
    t->cfg = global;
    return t;
}

static void echo_thread_fini(void *tctx)
{
    struct echo_thread *t = tctx;
    while (t->pending)
        pending_finish(t, t->pending);
    free(t);
}

static void echo_later_cb(struct ev_loop *loop, ev_timer *timer, int revents)
{
    (void)loop;
    (void)revents;
    struct echo_pending *p = timer->data;
    pending_finish(p->owner, p);
}

static void echo_notify(void *tctx, struct spoa_req *req, const struct spop_msg *msgs, size_t nmsgs)
{
    struct echo_thread *t = tctx;
    char name[4 + 64 + 1]; /* "arg_" + name (truncated) + NUL */

    for (size_t m = 0; m < nmsgs; m++) {
        struct spop_data v = spop_data_str(msgs[m].name.ptr, msgs[m].name.len);
        spoa_req_set_var(req, SPOP_SCOPE_TXN, "msg", &v);
        for (unsigned i = 0; i < msgs[m].nargs; i++) {
            const struct spop_kv *kv = &msgs[m].args[i];
            size_t n = kv->name.len < 64 ? kv->name.len : 64;
            memcpy(name, "arg_", 4);
            memcpy(name + 4, kv->name.ptr, n);
            name[4 + n] = '\0';
            spoa_req_set_var(req, SPOP_SCOPE_TXN, name, &kv->value);
        }
    }
    if (t->cfg->delay_ms == 0) {
        spoa_req_done(req);
        return;
    }
    /* The ACK already holds copies of the values: nothing else to keep. */
    struct echo_pending *p = malloc(sizeof(*p));
    if (!p) {
        spoa_req_done(req);
        return;
    }
    p->req = req;
    p->owner = t;
    p->prev = NULL;
    p->next = t->pending;
    if (t->pending) t->pending->prev = p;
    t->pending = p;
    ev_timer_init(&p->timer, echo_later_cb, t->cfg->delay_ms / 1000.0, 0.);
    p->timer.data = p;
    ev_timer_start(t->loop, &p->timer);
}

void handler_echo_init(struct spoa_handler *h, struct echo_config *cfg)
{
    memset(h, 0, sizeof(*h));
    h->name = "echo";
    h->thread_init = echo_thread_init;
    h->thread_fini = echo_thread_fini;
    h->notify = echo_notify;
    h->global = cfg;
}
