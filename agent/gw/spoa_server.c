/*
 * The SPOA server's threads: one accepting loop and N worker loops.
 *
 * The main thread owns the listening socket and the signal watchers. It
 * accepts connections and queues each on a worker, round robin, waking it
 * with ev_async; the worker adopts the socket and keeps it for life. Signals
 * are blocked in workers so SIGTERM/SIGINT always reach the main loop.
 *
 * Shutdown: stop accepting and close the listener, tell every worker to drain
 * (each connection gets an AGENT-DISCONNECT once its in-flight NOTIFYs are
 * answered), and cut whatever is left when the grace period ends.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ev_timer_once.h"
#include "log.h"
#include "net.h"
#include "spoa_worker.h"

#define ACCEPT_RETRY_S 0.1 /* after EMFILE and the like, accepting pauses this long */

struct server {
    const struct spoa_config *cfg;
    struct ev_loop *loop;
    int lfd;
    ev_io accept_io;
    ev_timer accept_retry; /* after EMFILE: retry accepting a bit later */
    ev_signal sigterm, sigint;
    ev_async stop; /* spoa_server_stop() */
    struct spoa_worker *workers;
    unsigned next_worker;
    bool stopping;
};

/* --- worker threads ------------------------------------------------------------ */

static void worker_deadline_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct spoa_worker *w = t->data;
    if (w->nconns)
        log_warn("worker %u: grace period over, closing %u connection(s)", w->id, w->nconns);
    spoa_worker_close_all(w);
    ev_break(loop, EVBREAK_ALL);
}

static void worker_wake_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)revents;
    struct spoa_worker *w = a->data;
    int fds[64];
    size_t n;

    do {
        pthread_mutex_lock(&w->lock);
        n = w->npending < 64 ? w->npending : 64;
        if (n) memcpy(fds, w->pending_fds + (w->npending - n), n * sizeof(int));
        w->npending -= n;
        pthread_mutex_unlock(&w->lock);
        for (size_t i = 0; i < n; i++) {
            if (w->draining)
                close(fds[i]);
            else
                spoa_conn_open(w, fds[i]);
        }
    } while (n == 64);

    if (atomic_load(&w->stop) && !w->draining) {
        spoa_worker_drain(w);
        if (w->nconns == 0) {
            ev_break(loop, EVBREAK_ALL);
            return;
        }
        ev_timer_set(&w->deadline, w->cfg->shutdown_ms / 1000.0, 0.);
        ev_timer_start(loop, &w->deadline);
    }
}

static void worker_flush_cb(struct ev_loop *loop, ev_prepare *p, int revents)
{
    (void)loop;
    (void)revents;
    spoa_worker_flush(p->data);
}

static void *worker_main(void *arg)
{
    struct spoa_worker *w = arg;
    if (w->handler->thread_init) w->hctx = w->handler->thread_init(w->loop, w->handler->global);
    ev_run(w->loop, 0);
    spoa_worker_close_all(w);
    if (w->handler->thread_fini) w->handler->thread_fini(w->hctx);
    spoa_worker_release(w);
    return NULL;
}

static bool worker_start(struct spoa_worker *w, unsigned id, const struct spoa_config *cfg,
                         const struct spoa_handler *handler, struct spoa_stats *stats)
{
    w->id = id;
    w->cfg = cfg;
    w->handler = handler;
    w->stats = stats;
    w->loop = ev_loop_new(EVFLAG_AUTO);
    if (!w->loop) {
        log_error("worker %u: cannot create event loop", id);
        return false;
    }
    pthread_mutex_init(&w->lock, NULL);
    ev_async_init(&w->wake, worker_wake_cb);
    ev_prepare_init(&w->flush, worker_flush_cb);
    ev_timer_init(&w->deadline, worker_deadline_cb, 0., 0.);
    w->wake.data = w->flush.data = w->deadline.data = w;
    ev_async_start(w->loop, &w->wake);
    ev_prepare_start(w->loop, &w->flush);
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc != 0) {
        log_error("worker %u: pthread_create: %s", id, strerror(rc));
        return false;
    }
    return true;
}

static void worker_give(struct spoa_worker *w, int fd)
{
    pthread_mutex_lock(&w->lock);
    if (w->npending == w->pending_cap) {
        size_t cap = w->pending_cap ? w->pending_cap * 2 : 64;
        int *n = realloc(w->pending_fds, cap * sizeof(int));
        if (!n) {
            pthread_mutex_unlock(&w->lock);
            log_error("accept: out of memory queuing a connection");
            close(fd);
            return;
        }
        w->pending_fds = n;
        w->pending_cap = cap;
    }
    w->pending_fds[w->npending++] = fd;
    pthread_mutex_unlock(&w->lock);
    ev_async_send(w->loop, &w->wake);
}

/* --- main thread ---------------------------------------------------------------- */

static void accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)revents;
    struct server *s = io->data;
    for (;;) {
        int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                log_error("accept: %s; pausing accepts for 100 ms", strerror(errno));
                ev_io_stop(loop, &s->accept_io);
                timer_once(loop, &s->accept_retry, ACCEPT_RETRY_S);
            } else if (errno != EAGAIN) {
                log_error("accept: %s", strerror(errno));
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        worker_give(&s->workers[s->next_worker], fd);
        s->next_worker = (s->next_worker + 1) % s->cfg->threads;
    }
}

static void accept_retry_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct server *s = t->data;
    if (!s->stopping) ev_io_start(loop, &s->accept_io);
}

static void begin_stop(struct ev_loop *loop, struct server *s, const char *why)
{
    if (s->stopping) return;
    s->stopping = true;
    log_info("%s: no longer accepting; draining connections (grace %u ms)", why,
             s->cfg->shutdown_ms);
    ev_io_stop(loop, &s->accept_io);
    ev_timer_stop(loop, &s->accept_retry);
    close(s->lfd);
    s->lfd = -1;
    for (unsigned i = 0; i < s->cfg->threads; i++) {
        atomic_store(&s->workers[i].stop, true);
        ev_async_send(s->workers[i].loop, &s->workers[i].wake);
    }
    ev_break(loop, EVBREAK_ALL);
}

static void signal_cb(struct ev_loop *loop, ev_signal *sig, int revents)
{
    (void)revents;
    begin_stop(loop, sig->data, sig->signum == SIGINT ? "SIGINT" : "SIGTERM");
}

static void stop_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)revents;
    begin_stop(loop, a->data, "stop requested");
}

/* The running server's stop watcher, for spoa_server_stop(). */
static struct ev_loop *_Atomic running_loop;
static ev_async *_Atomic running_stop;

void spoa_server_stop(void)
{
    struct ev_loop *loop = atomic_load(&running_loop);
    ev_async *a = atomic_load(&running_stop);
    if (loop && a) ev_async_send(loop, a);
}

int spoa_server_run(const struct spoa_config *cfg, const struct spoa_handler *handler,
                    struct spoa_stats *stats)
{
    struct server s = {.cfg = cfg};
    unsigned started = 0;
    int rc = -1;

    s.lfd = net_listen(cfg->listen);
    if (s.lfd < 0) return -1;
    s.loop = ev_default_loop(EVFLAG_AUTO);
    s.workers = calloc(cfg->threads, sizeof(*s.workers));
    if (!s.workers) {
        log_error("out of memory");
        goto out;
    }

    /* Workers inherit this mask: only the main thread takes SIGTERM/SIGINT. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    for (; started < cfg->threads; started++) {
        if (!worker_start(&s.workers[started], started, cfg, handler, stats)) break;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (started < cfg->threads) goto stop_workers;

    ev_io_init(&s.accept_io, accept_cb, s.lfd, EV_READ);
    ev_timer_init(&s.accept_retry, accept_retry_cb, ACCEPT_RETRY_S, 0.);
    ev_signal_init(&s.sigterm, signal_cb, SIGTERM);
    ev_signal_init(&s.sigint, signal_cb, SIGINT);
    ev_async_init(&s.stop, stop_cb);
    s.accept_io.data = s.accept_retry.data = s.sigterm.data = s.sigint.data = s.stop.data = &s;
    ev_io_start(s.loop, &s.accept_io);
    ev_signal_start(s.loop, &s.sigterm);
    ev_signal_start(s.loop, &s.sigint);
    ev_async_start(s.loop, &s.stop);
    atomic_store(&running_loop, s.loop);
    atomic_store(&running_stop, &s.stop);
    atomic_store(&stats->listen_port, net_bound_port(s.lfd));
    log_info("listening on %s (port %u) with %u worker thread(s), max-frame-size %u", cfg->listen,
             net_bound_port(s.lfd), cfg->threads, cfg->max_frame_size);
    ev_run(s.loop, 0);
    atomic_store(&running_stop, NULL);
    atomic_store(&running_loop, NULL);
    ev_signal_stop(s.loop, &s.sigterm);
    ev_signal_stop(s.loop, &s.sigint);
    ev_async_stop(s.loop, &s.stop);
    rc = 0;

stop_workers:
    for (unsigned i = 0; i < started; i++) {
        atomic_store(&s.workers[i].stop, true);
        ev_async_send(s.workers[i].loop, &s.workers[i].wake);
    }
    for (unsigned i = 0; i < started; i++) {
        struct spoa_worker *w = &s.workers[i];
        pthread_join(w->thread, NULL);
        for (size_t k = 0; k < w->npending; k++)
            close(w->pending_fds[k]);
        free(w->pending_fds);
        pthread_mutex_destroy(&w->lock);
        ev_loop_destroy(w->loop);
    }
out:
    if (s.lfd >= 0) close(s.lfd);
    free(s.workers);
    return rc;
}
