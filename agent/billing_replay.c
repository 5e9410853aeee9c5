/*
 * "show events <ring>" on HAProxy's CLI, read line by line (billing_replay.h).
 * The CLI answers a single command and closes: the end of the stream is the
 * end of the dump.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "billing_record.h"
#include "billing_replay.h"
#include "log.h"
#include "options.h"

#define READ_BUF (64 * 1024 + BILLING_LINE_MAX)

struct replay {
    struct ev_loop *loop;
    int fd;
    ev_io io;
    ev_timer timer;
    char cmd[256];
    size_t cmd_len;
    bool skipping; /* inside a line longer than BILLING_LINE_MAX */
    struct replay_report report;
    replay_line_fn on_line;
    replay_done_fn on_done;
    void *arg;
    size_t len;
    char buf[READ_BUF];
};

static void finish(struct replay *r, const char *error)
{
    r->report.error = error;
    replay_done_fn done = r->on_done;
    void *arg = r->arg;
    struct replay_report report = r->report;
    replay_cancel(r);
    done(arg, &report);
}

/* Hands out the complete lines in buf; keeps the partial last one. */
static void lines(struct replay *r)
{
    size_t off = 0;
    for (;;) {
        char *nl = memchr(r->buf + off, '\n', r->len - off);
        if (!nl) break;
        size_t n = (size_t)(nl - (r->buf + off));
        if (r->skipping) {
            r->skipping = false;
        } else if (n > 0) {
            r->report.lines++;
            r->on_line(r->arg, r->buf + off, n);
        }
        off += n + 1;
    }
    memmove(r->buf, r->buf + off, r->len - off);
    r->len -= off;
    if (r->len > BILLING_LINE_MAX) { /* no record is this long: skip to its end */
        if (!r->skipping) r->report.too_long++;
        r->skipping = true;
        r->len = 0;
    }
}

static void read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct replay *r = io->data;
    ssize_t n = read(r->fd, r->buf + r->len, sizeof(r->buf) - r->len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n < 0) {
        finish(r, strerror(errno));
        return;
    }
    if (n == 0) {
        if (r->len && !r->skipping) { /* a last line without its newline */
            r->report.lines++;
            r->on_line(r->arg, r->buf, r->len);
        }
        finish(r, NULL);
        return;
    }
    r->len += (size_t)n;
    lines(r);
}

static void connected_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)revents;
    struct replay *r = io->data;
    int err = 0;
    socklen_t elen = sizeof(err);
    if (getsockopt(r->fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0) err = errno;
    if (err) {
        finish(r, strerror(err));
        return;
    }
    /* the command is a few bytes: the socket buffer takes it in one write */
    if (write(r->fd, r->cmd, r->cmd_len) != (ssize_t)r->cmd_len) {
        finish(r, "could not send the command");
        return;
    }
    /* no more commands: the master CLI closes after the answer only then */
    shutdown(r->fd, SHUT_WR);
    ev_io_stop(loop, io);
    ev_io_init(io, read_cb, r->fd, EV_READ);
    ev_io_start(loop, io);
}

static void timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    finish(t->data, "timed out");
}

/* A non-blocking socket connecting to the CLI, or -1 (logged). */
static int cli_connect(const char *cli)
{
    int fd = -1;
    if (cli[0] == '/') {
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        if (strlen(cli) >= sizeof(sun.sun_path)) {
            log_error("billing: HAProxy CLI path too long: %s", cli);
            return -1;
        }
        strcpy(sun.sun_path, cli);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0 &&
            errno != EINPROGRESS && errno != EAGAIN) {
            log_warn("billing: HAProxy CLI %s: %s", cli, strerror(errno));
            close(fd);
            return -1;
        }
        return fd;
    }
    char host[256], port[8];
    int p;
    if (!options_hostport(cli, host, sizeof(host), &p)) {
        log_error("billing: HAProxy CLI address \"%s\": expected a socket path or host:port", cli);
        return -1;
    }
    snprintf(port, sizeof(port), "%d", p);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0) {
        log_warn("billing: HAProxy CLI %s: %s", cli, gai_strerror(rc));
        return -1;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
        log_warn("billing: HAProxy CLI %s: %s", cli, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

struct replay *replay_start(struct ev_loop *loop, const char *cli, const char *ring,
                            double timeout_s, replay_line_fn on_line, replay_done_fn on_done,
                            void *arg)
{
    char cmd[256];
    int n = snprintf(cmd, sizeof(cmd), "show events %s", ring);
    if (n <= 0 || (size_t)n >= sizeof(cmd)) {
        log_error("billing: ring name too long: %s", ring);
        return NULL;
    }
    return replay_start_cmd(loop, cli, cmd, timeout_s, on_line, on_done, arg);
}

struct replay *replay_start_cmd(struct ev_loop *loop, const char *cli, const char *cmd,
                                double timeout_s, replay_line_fn on_line, replay_done_fn on_done,
                                void *arg)
{
    struct replay *r = calloc(1, sizeof(*r));
    if (!r) return NULL;
    int n = snprintf(r->cmd, sizeof(r->cmd), "%s\n", cmd);
    if (n <= 0 || (size_t)n >= sizeof(r->cmd)) {
        log_error("billing: HAProxy CLI command too long: %s", cmd);
        free(r);
        return NULL;
    }
    r->cmd_len = (size_t)n;
    r->fd = cli_connect(cli);
    if (r->fd < 0) {
        free(r);
        return NULL;
    }
    r->loop = loop;
    r->on_line = on_line;
    r->on_done = on_done;
    r->arg = arg;
    ev_io_init(&r->io, connected_cb, r->fd, EV_WRITE);
    ev_timer_init(&r->timer, timeout_cb, timeout_s, 0.);
    r->io.data = r->timer.data = r;
    ev_io_start(loop, &r->io);
    ev_timer_start(loop, &r->timer);
    return r;
}

void replay_cancel(struct replay *r)
{
    if (!r) return;
    ev_io_stop(r->loop, &r->io);
    ev_timer_stop(r->loop, &r->timer);
    close(r->fd);
    free(r);
}
