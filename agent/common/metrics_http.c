/*
 * The /metrics listener (metrics_http.h): a strict HTTP/1.x request-head
 * parser, and a small server on its own thread and libev loop that answers
 * one request per connection and closes it.
 *
 * Why its own thread and not a verdict loop: rendering touches every
 * counter and the snapshot store's lock, and a client may be slow or
 * hostile; none of that may ever delay a verdict. gw-settle's main loop
 * blocks in PostgreSQL and Redis calls, so it needs the thread anyway.
 */
#include "metrics_http.h"

#include <errno.h>
#include <ev.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "net.h"

#define OUT_MAX            (8u << 20) /* a metrics text larger than this is a bug: 500 */
#define DEFAULT_CONNS      16
#define DEFAULT_TIMEOUT_MS 5000

/* --- the parser ------------------------------------------------------------------ */

static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool name_is(const char *s, size_t n, const char *want)
{
    return strlen(want) == n && strncasecmp(s, want, n) == 0;
}

/* One header line (no CRLF): 0 when acceptable, else 400. */
static int check_header(const char *s, size_t n)
{
    if (n == 0 || s[0] == ' ' || s[0] == '\t') return 400; /* obs-fold */
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)s[i]))
        i++;
    if (i == 0 || i == n || s[i] != ':') return 400;
    size_t name_len = i++;
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    size_t vend = n;
    while (vend > i && (s[vend - 1] == ' ' || s[vend - 1] == '\t'))
        vend--;
    if (name_is(s, name_len, "transfer-encoding")) return 400;
    if (name_is(s, name_len, "content-length")) {
        if (vend == i) return 400;
        for (size_t k = i; k < vend; k++)
            if (s[k] != '0') return 400; /* digits other than 0, or not a number */
    }
    return 0;
}

int metrics_http_parse(const char *buf, size_t len)
{
    size_t head = 0; /* length of the head with its empty line, once seen */
    size_t scan = len < METRICS_HTTP_HEAD_MAX ? len : METRICS_HTTP_HEAD_MAX;
    for (size_t i = 0; i < scan; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c == '\n') {
            if (i == 0 || buf[i - 1] != '\r') return 400; /* bare LF */
            if (i >= 3 && buf[i - 2] == '\n') {
                head = i + 1;
                break;
            }
        } else if (c == '\r') {
            if (i + 1 < len && buf[i + 1] != '\n') return 400; /* bare CR */
        } else if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return 400;
        }
    }
    if (head == 0) return len >= METRICS_HTTP_HEAD_MAX ? 431 : 0;

    /* request line: method SP target SP HTTP/x.y CRLF */
    const char *p = buf, *eol = memchr(buf, '\r', head);
    size_t i = 0, n = (size_t)(eol - p);
    while (i < n && is_tchar((unsigned char)p[i]))
        i++;
    size_t mlen = i;
    if (mlen == 0 || i == n || p[i] != ' ') return 400;
    size_t t0 = ++i;
    while (i < n && (unsigned char)p[i] > 0x20 && (unsigned char)p[i] < 0x7f)
        i++;
    size_t tlen = i - t0;
    if (tlen == 0 || i == n || p[i] != ' ') return 400;
    const char *ver = p + i + 1;
    size_t vlen = n - i - 1;
    if (vlen != 8 || memcmp(ver, "HTTP/", 5) != 0 || ver[5] < '0' || ver[5] > '9' ||
        ver[6] != '.' || ver[7] < '0' || ver[7] > '9')
        return 400;

    /* headers */
    const char *line = eol + 2;
    const char *end = buf + head - 2; /* the empty line's CRLF */
    while (line < end) {
        const char *le = memchr(line, '\r', (size_t)(end - line));
        int st = check_header(line, (size_t)(le - line));
        if (st) return st;
        line = le + 2;
    }

    if (ver[5] != '1' || (ver[7] != '0' && ver[7] != '1')) return 505;
    const char *target = p + t0;
    bool path_ok =
        (tlen == 8 || (tlen > 8 && target[8] == '?')) && memcmp(target, "/metrics", 8) == 0;
    if (!path_ok) return 404;
    if (mlen != 3 || memcmp(p, "GET", 3) != 0) return 405;
    return 200;
}

/* --- the server ------------------------------------------------------------------ */

struct mconn {
    struct metrics_http *m;
    struct mconn *prev, *next;
    int fd;
    ev_io io;
    ev_timer timer;
    bool writing, draining;
    size_t inlen;
    char in[METRICS_HTTP_HEAD_MAX];
    struct prom_out out; /* the whole response */
    size_t sent;
};

struct metrics_http {
    struct metrics_http_config cfg;
    int fd;
    unsigned port;
    struct ev_loop *loop;
    ev_io accept_io;
    ev_async stop_async;
    pthread_t thread;
    struct mconn *conns;
    unsigned nconns;
};

static const char *reason_phrase(int st)
{
    switch (st) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 431:
        return "Request Header Fields Too Large";
    case 505:
        return "HTTP Version Not Supported";
    case 503:
        return "Service Unavailable";
    default:
        return "Internal Server Error";
    }
}

static const char *error_body(int st)
{
    switch (st) {
    case 400:
        return "400 Bad Request: malformed HTTP request (this port serves GET /metrics)\n";
    case 404:
        return "404 Not Found: this port serves GET /metrics only\n";
    case 405:
        return "405 Method Not Allowed: only GET /metrics\n";
    case 408:
        return "408 Request Timeout: the request head did not arrive in time\n";
    case 431:
        return "431 Request Header Fields Too Large: the request head is limited to 8192 bytes\n";
    case 505:
        return "505 HTTP Version Not Supported: HTTP/1.0 or HTTP/1.1 only\n";
    case 503:
        return "503 Service Unavailable: too many connections to the metrics listener\n";
    default:
        return "500 Internal Server Error: the metrics did not fit\n";
    }
}

/* The response head and body for st into o (o already empty). */
static void build_response(struct metrics_http *m, int st, struct prom_out *o)
{
    struct prom_out body;
    prom_out_init(&body, OUT_MAX);
    if (st == 200) {
        m->cfg.render(m->cfg.arg, &body);
        if (body.full) {
            log_error("%s: the metrics text exceeded %u bytes; answered 500", m->cfg.name, OUT_MAX);
            st = 500;
            prom_out_free(&body);
            prom_out_init(&body, OUT_MAX);
        }
    }
    if (st != 200) prom_puts(&body, error_body(st));
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                     "Connection: close\r\n\r\n",
                     st, reason_phrase(st),
                     st == 200 ? "text/plain; version=0.0.4; charset=utf-8"
                               : "text/plain; charset=utf-8",
                     body.len, st == 405 ? "Allow: GET\r\n" : "");
    prom_put(o, head, (size_t)n);
    prom_put(o, body.p, body.len);
    prom_out_free(&body);
}

static void conn_close(struct mconn *c)
{
    struct metrics_http *m = c->m;
    ev_io_stop(m->loop, &c->io);
    ev_timer_stop(m->loop, &c->timer);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        m->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    m->nconns--;
    prom_out_free(&c->out);
    free(c);
}

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents);

/* Answers st: from now on the connection only writes, then drains. */
static void conn_answer(struct mconn *c, int st)
{
    struct metrics_http *m = c->m;
    build_response(m, st, &c->out);
    c->writing = true;
    ev_io_stop(m->loop, &c->io);
    ev_io_set(&c->io, c->fd, EV_WRITE);
    ev_io_start(m->loop, &c->io);
}

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct mconn *c = w->data;
    if (c->draining) { /* after the answer: read until the client closes */
        char sink[1024];
        ssize_t r = recv(c->fd, sink, sizeof(sink), 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) conn_close(c);
        return;
    }
    if (c->writing) {
        ssize_t r = send(c->fd, c->out.p + c->sent, c->out.len - c->sent, MSG_NOSIGNAL);
        if (r < 0) {
            if (errno != EAGAIN && errno != EINTR) conn_close(c);
            return;
        }
        c->sent += (size_t)r;
        if (c->sent < c->out.len) return;
        /* Everything is out: half-close, and read what the client may still
         * send so the kernel does not reset the answer away. */
        shutdown(c->fd, SHUT_WR);
        c->draining = true;
        ev_io_stop(c->m->loop, &c->io);
        ev_io_set(&c->io, c->fd, EV_READ);
        ev_io_start(c->m->loop, &c->io);
        return;
    }
    ssize_t r = recv(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen, 0);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
        conn_close(c);
        return;
    }
    if (r < 0) return;
    c->inlen += (size_t)r;
    int st = metrics_http_parse(c->in, c->inlen);
    if (st) conn_answer(c, st);
}

/* The connection's whole life is bounded: a head not complete in time gets
 * 408, an answer not taken (or a client that keeps the socket) is closed. */
static void conn_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct mconn *c = w->data;
    if (c->writing || c->draining) {
        conn_close(c);
        return;
    }
    conn_answer(c, 408);
    ev_timer_set(&c->timer, 1.0, 0.); /* a second more to take the 408 */
    ev_timer_start(c->m->loop, &c->timer);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct metrics_http *m = w->data;
    for (int k = 0; k < 64; k++) {
        int fd = accept4(m->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                log_warn("%s: metrics accept: %s", m->cfg.name, strerror(errno));
            return;
        }
        struct mconn *c = NULL;
        if (m->nconns >= m->cfg.max_conns || !(c = calloc(1, sizeof(*c)))) {
            /* best effort, never waits: the client learns why */
            char buf[512];
            int n = snprintf(buf, sizeof(buf),
                             "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; "
                             "charset=utf-8\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                             strlen(error_body(503)), error_body(503));
            if (send(fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) { /* ignored */
            }
            close(fd);
            continue;
        }
        c->m = m;
        c->fd = fd;
        prom_out_init(&c->out, OUT_MAX + 512); /* the body and its head */
        c->next = m->conns;
        if (m->conns) m->conns->prev = c;
        m->conns = c;
        m->nconns++;
        ev_io_init(&c->io, conn_io_cb, fd, EV_READ);
        c->io.data = c;
        ev_io_start(loop, &c->io);
        ev_timer_init(&c->timer, conn_timeout_cb, m->cfg.timeout_ms / 1000.0, 0.);
        c->timer.data = c;
        ev_timer_start(loop, &c->timer);
    }
}

static void stop_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

static void *metrics_main(void *arg)
{
    struct metrics_http *m = arg;
    ev_run(m->loop, 0);
    return NULL;
}

struct metrics_http *metrics_http_start(const struct metrics_http_config *cfg)
{
    struct metrics_http *m = calloc(1, sizeof(*m));
    if (!m) {
        log_error("%s: out of memory for the metrics listener", cfg->name);
        return NULL;
    }
    m->cfg = *cfg;
    if (!m->cfg.max_conns) m->cfg.max_conns = DEFAULT_CONNS;
    if (!m->cfg.timeout_ms) m->cfg.timeout_ms = DEFAULT_TIMEOUT_MS;
    m->fd = net_listen(cfg->listen);
    if (m->fd < 0) {
        log_error("%s: cannot listen for metrics on %s: METRICS ARE OFF", cfg->name, cfg->listen);
        free(m);
        return NULL;
    }
    m->port = net_bound_port(m->fd);
    m->loop = ev_loop_new(EVFLAG_AUTO);
    if (!m->loop) {
        log_error("%s: no event loop for the metrics listener", cfg->name);
        close(m->fd);
        free(m);
        return NULL;
    }
    ev_io_init(&m->accept_io, accept_cb, m->fd, EV_READ);
    m->accept_io.data = m;
    ev_io_start(m->loop, &m->accept_io);
    ev_async_init(&m->stop_async, stop_cb);
    ev_async_start(m->loop, &m->stop_async);
    /* The thread takes no signal: SIGTERM must reach the daemon's own loop
     * (gw-settle's waits end early on EINTR). It inherits this mask. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&m->thread, NULL, metrics_main, m);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        log_error("%s: cannot start the metrics thread: %s", cfg->name, strerror(rc));
        ev_loop_destroy(m->loop);
        close(m->fd);
        free(m);
        return NULL;
    }
    log_info("%s: metrics on http://%s/metrics (port %u)", cfg->name, cfg->listen, m->port);
    return m;
}

unsigned metrics_http_port(const struct metrics_http *m)
{
    return m->port;
}

void metrics_http_stop(struct metrics_http *m)
{
    if (!m) return;
    ev_async_send(m->loop, &m->stop_async);
    pthread_join(m->thread, NULL);
    while (m->conns)
        conn_close(m->conns);
    ev_io_stop(m->loop, &m->accept_io);
    ev_async_stop(m->loop, &m->stop_async);
    ev_loop_destroy(m->loop);
    close(m->fd);
    free(m);
}
