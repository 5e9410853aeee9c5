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
#include "net.h"

#define READ_BUF (64 * 1024 + BILLING_LINE_MAX)

struct replay {
    struct ev_loop *loop;
    int fd;
    ev_io io;
    ev_timer timer;
    char *cmd; /* with its newline */
    size_t cmd_len;
    bool skipping; /* inside a line longer than BILLING_LINE_MAX */
    struct replay_report report;
    replay_line_fn on_line;
    replay_done_fn on_done;
    void *arg;
    struct net_resolve_job *job; /* the CLI's host name, being resolved off the loop */
    int port;                    /* the CLI's TCP port */
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
    /* a command is at most a few KiB: the socket buffer takes it in one write */
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

/* A non-blocking socket connecting to a unix socket path, or -1 (logged). */
static int unix_connect(const char *cli)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(cli) >= sizeof(sun.sun_path)) {
        log_error("billing: HAProxy CLI path too long: %s", cli);
        return -1;
    }
    strcpy(sun.sun_path, cli);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0 && errno != EINPROGRESS &&
        errno != EAGAIN) {
        log_warn("billing: HAProxy CLI %s: %s", cli, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* A non-blocking socket connecting to a numeric address and port, or -1 with
 * the reason in err. */
static int tcp_connect(const char *addr, int port, char *err, size_t errlen)
{
    char service[8];
    snprintf(service, sizeof(service), "%d", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV},
                    *ai;
    int rc = getaddrinfo(addr, service, &hints, &ai); /* numeric: no DNS */
    if (rc != 0) {
        snprintf(err, errlen, "%s", gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS)) {
        snprintf(err, errlen, "%s", strerror(errno));
        if (fd >= 0) close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

/* Waits for the connection to complete, then sends the command. */
static void wait_connected(struct replay *r)
{
    ev_io_init(&r->io, connected_cb, r->fd, EV_WRITE);
    r->io.data = r;
    ev_io_start(r->loop, &r->io);
}

static void resolved_cb(void *arg, const char *addr, const char *err)
{
    struct replay *r = arg;
    char why[320];
    r->job = NULL;
    if (!addr) {
        finish(r, err);
        return;
    }
    r->fd = tcp_connect(addr, r->port, why, sizeof(why));
    if (r->fd < 0) {
        finish(r, why);
        return;
    }
    wait_connected(r);
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
    return cli_run(loop, cli, cmd, timeout_s, on_line, on_done, arg);
}

struct replay *cli_run(struct ev_loop *loop, const char *cli, const char *cmd, double timeout_s,
                       replay_line_fn on_line, replay_done_fn on_done, void *arg)
{
    struct replay *r = calloc(1, sizeof(*r));
    size_t len = strlen(cmd);
    if (!r || len == 0 || len > CLI_CMD_MAX || !(r->cmd = malloc(len + 1))) {
        if (r && len > CLI_CMD_MAX) log_error("HAProxy CLI command too long (%zu bytes)", len);
        free(r);
        return NULL;
    }
    memcpy(r->cmd, cmd, len);
    r->cmd[len] = '\n';
    r->cmd_len = len + 1;
    r->fd = -1;
    r->loop = loop;
    r->on_line = on_line;
    r->on_done = on_done;
    r->arg = arg;
    ev_timer_init(&r->timer, timeout_cb, timeout_s, 0.);
    r->timer.data = r;

    char host[256], why[320];
    if (cli[0] == '/') {
        r->fd = unix_connect(cli);
    } else if (!net_parse_hostport(cli, host, sizeof(host), &r->port, 0)) {
        log_error("billing: HAProxy CLI address \"%s\": expected a socket path or host:port", cli);
    } else if (net_is_numeric(host)) {
        r->fd = tcp_connect(host, r->port, why, sizeof(why));
        if (r->fd < 0) log_warn("billing: HAProxy CLI %s: %s", cli, why);
    } else {
        /* a name: resolved off the billing loop; the timeout covers it too */
        r->job = net_resolve_start(loop, host, resolved_cb, r);
        if (r->job) {
            ev_timer_start(loop, &r->timer);
            return r;
        }
    }
    if (r->fd < 0) {
        free(r->cmd);
        free(r);
        return NULL;
    }
    wait_connected(r);
    ev_timer_start(loop, &r->timer);
    return r;
}

void replay_cancel(struct replay *r)
{
    if (!r) return;
    net_resolve_cancel(r->job);
    if (r->fd >= 0) {
        ev_io_stop(r->loop, &r->io);
        close(r->fd);
    }
    ev_timer_stop(r->loop, &r->timer);
    free(r->cmd);
    free(r);
}
