/*
 * The health thread (see health_check.h): ticks provider health and runs the
 * active checks, each a non-blocking connect watched by the thread's own
 * libev loop. The providers come from the current snapshot (the thread holds
 * its own snapshot_ref), so a provider added or removed is checked or not
 * from the next tick on.
 */
#include "health_check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

#define TICK_S 0.1

struct check {
    struct health_checker *c;
    int fd;
    bool busy;
    ev_io io;
    ev_timer timer;
    size_t slug_len;
    char slug[HEALTH_SLUG_MAX];
};

struct health_checker {
    struct health_checker_config cfg;
    struct ev_loop *loop;
    pthread_t thread;
    ev_async stop;
    ev_timer tick;
    struct snapshot_ref ref;
    int64_t last_tick_ms; /* monotonic */
    double tokens;        /* checks that may start now (rate bound) */
    uint64_t rng;
    struct check checks[HEALTH_CHECK_INFLIGHT];
};

static uint64_t next_rand(struct health_checker *c)
{
    c->rng ^= c->rng << 13;
    c->rng ^= c->rng >> 7;
    c->rng ^= c->rng << 17;
    return c->rng;
}

static void check_end(struct check *k, bool ok)
{
    struct health_checker *c = k->c;
    ev_io_stop(c->loop, &k->io);
    ev_timer_stop(c->loop, &k->timer);
    close(k->fd);
    k->busy = false;
    if (!ok) log_debug("health: check of %s failed", k->slug);
    health_check_done(c->cfg.health, k->slug, k->slug_len, ok, clock_mono_ms(), clock_wall_ms());
}

static void check_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct check *k = w->data;
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    check_end(k, err == 0);
}

static void check_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    check_end(w->data, false);
}

static bool in_flight(const struct health_checker *c, const char *slug, size_t len)
{
    for (size_t i = 0; i < HEALTH_CHECK_INFLIGHT; i++)
        if (c->checks[i].busy && c->checks[i].slug_len == len &&
            memcmp(c->checks[i].slug, slug, len) == 0)
            return true;
    return false;
}

/* Starts a connect to p; false when no slot is free. A connect that fails at
 * once (no route) counts as a failed check. */
static bool check_start(struct health_checker *c, const struct snap_provider *p)
{
    struct check *k = NULL;
    for (size_t i = 0; i < HEALTH_CHECK_INFLIGHT && !k; i++)
        if (!c->checks[i].busy) k = &c->checks[i];
    if (!k) return false;

    struct sockaddr_storage ss;
    socklen_t sslen;
    memset(&ss, 0, sizeof(ss));
    uint16_t port =
        (uint16_t)(p->port_min + next_rand(c) % ((unsigned)p->port_max - p->port_min + 1));
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, p->addr, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        sslen = sizeof(*s4);
    } else if (inet_pton(AF_INET6, p->addr, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        sslen = sizeof(*s6);
    } else {
        return true; /* no address of its own (a literal in the template): not checked */
    }
    k->slug_len = p->slug_len;
    memcpy(k->slug, p->slug, p->slug_len);
    k->slug[p->slug_len] = '\0';
    k->c = c;
    k->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (k->fd < 0) {
        log_warn("health: check socket: %s", strerror(errno));
        return true;
    }
    if (connect(k->fd, (struct sockaddr *)&ss, sslen) != 0 && errno != EINPROGRESS) {
        close(k->fd);
        health_check_done(c->cfg.health, k->slug, k->slug_len, false, clock_mono_ms(),
                          clock_wall_ms());
        return true;
    }
    k->busy = true;
    ev_io_init(&k->io, check_io_cb, k->fd, EV_WRITE);
    k->io.data = k;
    ev_io_start(c->loop, &k->io);
    ev_timer_init(&k->timer, check_timeout_cb, c->cfg.timeout_ms / 1000.0, 0.);
    k->timer.data = k;
    ev_timer_start(c->loop, &k->timer);
    return true;
}

/* FNV-1a of the slug: the provider's phase in the interval. */
static uint64_t phase_of(const struct snap_provider *p, uint64_t interval)
{
    uint64_t x = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < p->slug_len; i++) {
        x ^= (unsigned char)p->slug[i];
        x *= 0x100000001b3ull;
    }
    return x % interval;
}

static void check_pool(struct health_checker *c, const struct snap_provider *const *pool, size_t n,
                       int64_t prev, int64_t now)
{
    uint64_t iv = c->cfg.interval_ms;
    for (size_t i = 0; i < n && c->tokens >= 1.0; i++) {
        const struct snap_provider *p = pool[i];
        if (!p->addr[0] || in_flight(c, p->slug, p->slug_len)) continue;
        bool due = health_due(c->cfg.health, p->slug, p->slug_len, now);
        if (!due) {
            /* its phase passed between the last tick and this one */
            int64_t ph = (int64_t)phase_of(p, iv);
            due = (now - ph) / (int64_t)iv > (prev - ph) / (int64_t)iv;
        }
        if (!due) continue;
        if (!check_start(c, p)) return;
        c->tokens -= 1.0;
    }
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct health_checker *c = w->data;
    int64_t now = clock_mono_ms();
    health_tick(c->cfg.health, now, clock_wall_ms());
    if (c->cfg.interval_ms > 0 && c->cfg.store) {
        c->tokens += (double)(now - c->last_tick_ms) * c->cfg.rate_per_s / 1000.0;
        if (c->tokens > c->cfg.rate_per_s) c->tokens = c->cfg.rate_per_s;
        const struct snapshot *snap = snapshot_store_current(c->cfg.store, &c->ref);
        const struct snap_provider *const *pool;
        size_t n = snapshot_providers(snap, true, &pool);
        check_pool(c, pool, n, c->last_tick_ms, now);
        n = snapshot_providers(snap, false, &pool);
        check_pool(c, pool, n, c->last_tick_ms, now);
    }
    c->last_tick_ms = now;
}

static void stop_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

static void *checker_main(void *arg)
{
    struct health_checker *c = arg;
    ev_run(c->loop, 0);
    for (size_t i = 0; i < HEALTH_CHECK_INFLIGHT; i++) {
        struct check *k = &c->checks[i];
        if (!k->busy) continue;
        ev_io_stop(c->loop, &k->io);
        ev_timer_stop(c->loop, &k->timer);
        close(k->fd);
        k->busy = false;
    }
    if (c->cfg.store) snapshot_ref_release(&c->ref);
    return NULL;
}

struct health_checker *health_checker_start(const struct health_checker_config *cfg)
{
    struct health_checker *c = calloc(1, sizeof(*c));
    if (!c) {
        log_error("health: out of memory");
        return NULL;
    }
    c->cfg = *cfg;
    if (c->cfg.rate_per_s == 0) c->cfg.rate_per_s = 1;
    if (c->cfg.timeout_ms == 0) c->cfg.timeout_ms = 1000;
    c->rng = (uint64_t)clock_wall_ms() | 1;
    c->last_tick_ms = clock_mono_ms();
    c->tokens = 1.0;
    c->loop = ev_loop_new(EVFLAG_AUTO);
    if (!c->loop) {
        log_error("health: no event loop");
        free(c);
        return NULL;
    }
    ev_async_init(&c->stop, stop_cb);
    ev_async_start(c->loop, &c->stop);
    ev_timer_init(&c->tick, tick_cb, TICK_S, TICK_S);
    c->tick.data = c;
    ev_timer_start(c->loop, &c->tick);
    if (pthread_create(&c->thread, NULL, checker_main, c) != 0) {
        log_error("health: cannot start its thread");
        ev_loop_destroy(c->loop);
        free(c);
        return NULL;
    }
    return c;
}

void health_checker_stop(struct health_checker *c)
{
    if (!c) return;
    ev_async_send(c->loop, &c->stop);
    pthread_join(c->thread, NULL);
    ev_loop_destroy(c->loop);
    free(c);
}
