/*
 * Holding old HAProxy workers until their billing ring is read (see
 * billing_hold.h). One master CLI command at a time, through
 * billing_replay.c's one-command client: "show proc" once a second (and when
 * a worker connects its stream), then for each old worker "@!<pid> show
 * sess", and when nothing but the agent's own connections is left,
 * "@!<pid> show events <ring>" and the release of its holds.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "billing_hold.h"
#include "billing_replay.h"
#include "log.h"
#include "net.h"

#define TICK_S      1.0
#define KICK_S      0.3
#define CMD_TIMEOUT 120.0
#define MAX_OLD     64 /* old workers followed at once */
#define HOLD_FE     "gw-billing-hold"

struct hold_conn {
    struct holder *h;
    int fd;
    unsigned port; /* our local port: how "show sess" names it */
    int pid;       /* the worker it is in, once seen there; 0 before */
    ev_io io;
    struct hold_conn *next;
};

struct old_worker {
    int pid;
    bool listed;  /* in the last "show proc" */
    bool drained; /* read one last time, holds released */
    bool warned;  /* "not held" said once */
    bool cut;     /* hard-stop-after cut streams of its: said once */
};

enum cmd_kind { CMD_PROC, CMD_SESS, CMD_EVENTS };

struct holder {
    struct ev_loop *loop;
    char *master_cli, *hold_addr, *ring;
    char host[256]; /* of hold_addr, resolved off the loop when needed */
    int port;
    struct net_resolve_job *resolving;
    struct sockaddr_storage addr;
    socklen_t addr_len; /* 0: not resolved (yet, or again after a failure) */
    hold_line_fn on_line;
    void *arg;
    ev_timer tick;
    struct replay *cmd;
    enum cmd_kind kind;
    int kind_pid;
    bool again;                 /* kicked while a cycle ran */
    bool cli_failing;           /* the master CLI failed last time (said once) */
    bool hold_failing;          /* connecting a hold failed last time (said once) */
    int cur_pid;                /* the current worker, as last seen */
    struct hold_conn *cur_hold; /* the newest hold, meant for cur_pid */
    struct hold_conn *holds;
    struct old_worker olds[MAX_OLD];
    int nold;
    int next_old; /* index in olds of the next worker to look at this cycle */
    /* what the command in flight has read so far */
    int section; /* show proc: 0 master, 1 workers, 2 old workers, 3 programs */
    int p_cur;
    int p_olds[MAX_OLD];
    int p_nold;
    unsigned s_busy, s_held;
    bool ev_cut;
    unsigned long long ev_lines;
    double backoff; /* seconds between looks while the master CLI fails */
};

static void cycle_next(struct holder *h);
static struct old_worker *old_find(struct holder *h, int pid);

/* The master CLI does not answer (HAProxy stopped, or not started yet): look
 * less and less often, up to every 30 s, so the log is not flooded. */
static void master_failed(struct holder *h)
{
    h->backoff = h->backoff < TICK_S ? TICK_S : h->backoff * 2;
    if (h->backoff > 30.) h->backoff = 30.;
    ev_timer_stop(h->loop, &h->tick);
    ev_timer_set(&h->tick, h->backoff, TICK_S);
    ev_timer_start(h->loop, &h->tick);
}

/* Streams HAProxy cuts at hard-stop-after are logged as the worker exits,
 * after the agent could read its ring: their records are likely missing.
 * Said once per worker, with what to do. */
static void say_cut(struct holder *h, int pid, const char *what, size_t len)
{
    struct old_worker *o = old_find(h, pid);
    if (o && o->cut) return;
    if (o) o->cut = true;
    log_error("billing: HAProxy worker %d (old, after a reload) reached hard-stop-after (%.*s): "
              "the requests and tunnels it cut are likely NOT billed (HAProxy logs them as it "
              "exits, too late for the agent). Bill them from HAProxy's own log (README, "
              "Operations: Reload), and give reloads a GW_GRACE (hard-stop-after) longer than "
              "the tunnels that must be billed",
              pid, (int)(len > 200 ? 200 : len), what);
}

/* --- hold connections ------------------------------------------------------------ */

static void hold_close(struct hold_conn *c)
{
    struct holder *h = c->h;
    for (struct hold_conn **p = &h->holds; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    if (h->cur_hold == c) h->cur_hold = NULL;
    ev_io_stop(h->loop, &c->io);
    close(c->fd);
    free(c);
}

static void hold_read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct hold_conn *c = io->data;
    char buf[256];
    ssize_t n = read(c->fd, buf, sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n > 0) return; /* HAProxy sends nothing; ignore it if it does */
    /* HAProxy closed it: an old worker at hard-stop-after, or HAProxy stopped */
    struct old_worker *o = c->pid ? old_find(c->h, c->pid) : NULL;
    if (o && !o->drained) say_cut(c->h, o->pid, "it closed the agent's hold", 27);
    if (n < 0 && !c->h->hold_failing)
        log_warn("billing: the hold connection to HAProxy's %s frontend (%s) failed: %s; a "
                 "HAProxy reload before it is back may lose the records the old worker logs "
                 "after it",
                 HOLD_FE, c->h->hold_addr, strerror(errno));
    if (n < 0) {
        c->h->hold_failing = true;
        c->h->addr_len = 0; /* HAProxy may have a new address: resolve again */
    }
    hold_close(c);
}

/* A numeric address into h->addr; false if it is not one. */
static bool set_addr(struct holder *h, const char *numeric)
{
    char service[8];
    snprintf(service, sizeof(service), "%d", h->port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV},
                    *ai;
    if (getaddrinfo(numeric, service, &hints, &ai) != 0) return false; /* numeric: no DNS */
    memcpy(&h->addr, ai->ai_addr, ai->ai_addrlen);
    h->addr_len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return true;
}

static void hold_open(struct holder *h);

/* The hold address's host name, resolved off the loop (net.h): HAProxy may
 * start after the agent (compose starts it once the agent is healthy), so a
 * name that does not resolve yet is tried again at the next look. */
static void resolved_cb(void *arg, const char *addr, const char *err)
{
    struct holder *h = arg;
    h->resolving = NULL;
    if (!addr || !set_addr(h, addr)) {
        if (!h->hold_failing)
            log_warn("billing: hold address %s: %s; trying again (a HAProxy reload before it "
                     "resolves may lose the records the old worker logs after it)",
                     h->hold_addr, err ? err : "not an address");
        h->hold_failing = true;
        return;
    }
    hold_open(h);
}

/* A new hold connection (to the current worker: the one that accepts). */
static void hold_open(struct holder *h)
{
    if (h->addr_len == 0) {
        if (!h->resolving) h->resolving = net_resolve_start(h->loop, h->host, resolved_cb, h);
        return;
    }
    int fd = socket(h->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    if (connect(fd, (struct sockaddr *)&h->addr, h->addr_len) != 0 && errno != EINPROGRESS) {
        if (!h->hold_failing)
            log_warn("billing: cannot connect to HAProxy's %s frontend (%s): %s; a HAProxy "
                     "reload may lose the records the old worker logs after it",
                     HOLD_FE, h->hold_addr, strerror(errno));
        h->hold_failing = true;
        h->addr_len = 0; /* HAProxy may have a new address: resolve again */
        close(fd);
        return;
    }
    struct sockaddr_storage local;
    socklen_t llen = sizeof(local);
    struct hold_conn *c = calloc(1, sizeof(*c));
    if (!c || getsockname(fd, (struct sockaddr *)&local, &llen) != 0) {
        free(c);
        close(fd);
        return;
    }
    c->h = h;
    c->fd = fd;
    c->port = local.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&local)->sin6_port)
                                          : ntohs(((struct sockaddr_in *)&local)->sin_port);
    ev_io_init(&c->io, hold_read_cb, fd, EV_READ);
    c->io.data = c;
    ev_io_start(h->loop, &c->io);
    c->next = h->holds;
    h->holds = c;
    h->cur_hold = c;
}

/* --- master CLI commands ------------------------------------------------------------ */

static void cmd_line(void *arg, const char *line, size_t len);
static void cmd_done(void *arg, const struct replay_report *rep);

static void cmd_start(struct holder *h, enum cmd_kind kind, int pid)
{
    char cmd[256];
    if (kind == CMD_PROC)
        snprintf(cmd, sizeof(cmd), "show proc");
    else if (kind == CMD_SESS)
        snprintf(cmd, sizeof(cmd), "@!%d show sess", pid);
    else
        snprintf(cmd, sizeof(cmd), "@!%d show events %s", pid, h->ring);
    h->kind = kind;
    h->kind_pid = pid;
    h->section = 0;
    h->p_cur = 0;
    h->p_nold = 0;
    h->s_busy = h->s_held = 0;
    h->ev_cut = false;
    h->ev_lines = 0;
    h->cmd = cli_run(h->loop, h->master_cli, cmd, CMD_TIMEOUT, cmd_line, cmd_done, h);
}

static struct old_worker *old_find(struct holder *h, int pid)
{
    for (int i = 0; i < h->nold; i++)
        if (h->olds[i].pid == pid) return &h->olds[i];
    return NULL;
}

/* "show proc": "<pid> <type> <reloads> <uptime> <version>" under "# workers",
 * "# old workers" and "# programs" headings. */
static void proc_line(struct holder *h, const char *line, size_t len)
{
    if (line[0] == '#') {
        if (len >= 9 && memcmp(line, "# workers", 9) == 0)
            h->section = 1;
        else if (len >= 13 && memcmp(line, "# old workers", 13) == 0)
            h->section = 2;
        else if (len >= 10 && memcmp(line, "# programs", 10) == 0)
            h->section = 3;
        return;
    }
    char type[16];
    int pid;
    char copy[128];
    snprintf(copy, sizeof(copy), "%.*s", (int)(len < sizeof(copy) ? len : sizeof(copy) - 1), line);
    if (sscanf(copy, "%d %15s", &pid, type) != 2 || pid <= 0 || strcmp(type, "worker") != 0) return;
    if (h->section == 1)
        h->p_cur = pid;
    else if (h->section == 2 && h->p_nold < MAX_OLD)
        h->p_olds[h->p_nold++] = pid;
}

/* "show sess": one stream a line, "... src=<addr>:<port> fe=<frontend> ...". */
static void sess_line(struct holder *h, const char *line, size_t len)
{
    const char *fe = memmem(line, len, " fe=", 4);
    if (!fe) return; /* an applet (SPOE, the ring's forwarder): not a client */
    fe += 4;
    size_t felen = 0;
    while (fe + felen < line + len && fe[felen] != ' ')
        felen++;
    if (felen == 6 && memcmp(fe, "GLOBAL", 6) == 0) return; /* the CLI itself */
    if (felen != strlen(HOLD_FE) || memcmp(fe, HOLD_FE, felen) != 0) {
        h->s_busy++;
        return;
    }
    const char *src = memmem(line, len, " src=", 5), *colon = NULL;
    if (!src || src > fe) return;
    for (const char *p = src + 5; p < fe; p++) {
        if (*p == ' ') break;
        if (*p == ':') colon = p;
    }
    if (!colon) return;
    unsigned port = (unsigned)strtoul(colon + 1, NULL, 10);
    for (struct hold_conn *c = h->holds; c; c = c->next)
        if (c->port == port) {
            c->pid = h->kind_pid;
            h->s_held++;
        }
}

static void cmd_line(void *arg, const char *line, size_t len)
{
    struct holder *h = arg;
    if (h->kind == CMD_PROC) {
        proc_line(h, line, len);
    } else if (h->kind == CMD_SESS) {
        sess_line(h, line, len);
    } else {
        h->ev_lines++;
        if (len < 4 || memcmp(line, "gw", 2) != 0 || line[3] != ' ') {
            /* "Proxy gateway hard-stopped (1 remaining conns will be closed)." */
            if (memmem(line, len, "hard-stopped", 12) &&
                !memmem(line, len, HOLD_FE, strlen(HOLD_FE)))
                say_cut(h, h->kind_pid, line, len);
            return;
        }
        if (h->ev_cut) return;
        if (!h->on_line(h->arg, line, len)) h->ev_cut = true;
    }
}

static void proc_done(struct holder *h)
{
    /* old workers gone since the last look */
    int n = 0;
    for (int i = 0; i < h->nold; i++) {
        struct old_worker *o = &h->olds[i];
        bool listed = false;
        for (int j = 0; j < h->p_nold; j++)
            if (h->p_olds[j] == o->pid) listed = true;
        if (!listed && !o->drained)
            log_error("billing: HAProxy worker %d (old, after a reload) exited before the agent "
                      "read its ring one last time: the records it logged since the reload "
                      "(requests and tunnels that ended in it) are NOT billed. It was not held "
                      "(see the warning above), or hard-stop-after (GW_GRACE) ended it: give "
                      "reloads a GW_GRACE longer than the tunnels that must be billed",
                      o->pid);
        if (listed) h->olds[n++] = *o;
    }
    h->nold = n;
    for (int j = 0; j < h->p_nold; j++)
        if (!old_find(h, h->p_olds[j]) && h->nold < MAX_OLD) {
            h->olds[h->nold] = (struct old_worker){.pid = h->p_olds[j]};
            h->nold++;
            log_info("billing: HAProxy reloaded: worker %d is now old; the agent reads its "
                     "ring once its last request ends",
                     h->p_olds[j]);
        }
    /* a hold in the current worker, before the next reload makes it old */
    if (h->p_cur > 0 && (h->p_cur != h->cur_pid || !h->cur_hold)) {
        h->cur_pid = h->p_cur;
        hold_open(h);
    }
    h->next_old = 0;
}

static void cmd_done(void *arg, const struct replay_report *rep)
{
    struct holder *h = arg;
    h->cmd = NULL;
    if (rep->error) {
        if (!h->cli_failing)
            log_warn("billing: HAProxy's master CLI %s: %s; the records an old worker logs "
                     "after a reload cannot be read until it answers",
                     h->master_cli, rep->error);
        h->cli_failing = true;
        master_failed(h);
        return;
    }
    h->cli_failing = false;
    h->backoff = 0;
    struct old_worker *o = old_find(h, h->kind_pid);
    if (h->kind == CMD_PROC) {
        proc_done(h);
    } else if (h->kind == CMD_SESS && o) {
        if (h->s_held > 0) h->hold_failing = false;
        if (h->s_held == 0 && !o->warned) {
            o->warned = true;
            log_warn("billing: HAProxy worker %d (old, after a reload) is not held by the agent "
                     "(no connection of its in HAProxy's %s frontend: the frontend is missing, "
                     "or two reloads came within a second): if it exits before the agent reads "
                     "its ring, the records it logged since the reload are lost",
                     o->pid, HOLD_FE);
        }
        if (h->s_busy == 0) {
            cmd_start(h, CMD_EVENTS, o->pid);
            if (h->cmd) return;
        }
    } else if (h->kind == CMD_EVENTS && o) {
        if (h->ev_cut) {
            log_warn("billing: the spool is full: HAProxy worker %d's ring is read again later "
                     "(the worker is kept meanwhile)",
                     o->pid);
        } else {
            o->drained = true;
            log_info("billing: HAProxy worker %d (old) has no request left: read its ring one "
                     "last time (%llu lines), releasing it",
                     o->pid, h->ev_lines);
            for (struct hold_conn *c = h->holds, *next; c; c = next) {
                next = c->next;
                if (c->pid == o->pid) hold_close(c);
            }
        }
    }
    cycle_next(h);
}

/* The next old worker to look at in this cycle, or the end of the cycle. */
static void cycle_next(struct holder *h)
{
    while (h->next_old < h->nold) {
        struct old_worker *o = &h->olds[h->next_old++];
        if (o->drained) continue;
        cmd_start(h, CMD_SESS, o->pid);
        if (h->cmd) return;
    }
    if (h->again) {
        h->again = false;
        cmd_start(h, CMD_PROC, 0);
    }
}

static void tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct holder *h = t->data;
    if (h->cmd) {
        h->again = true;
        return;
    }
    cmd_start(h, CMD_PROC, 0);
    if (!h->cmd) master_failed(h); /* could not even connect (logged) */
}

void holder_kick(struct holder *h)
{
    if (!h) return;
    /* soon, not now: during a reload the master re-executes itself and its
     * CLI is away for a moment */
    ev_timer_stop(h->loop, &h->tick);
    ev_timer_set(&h->tick, KICK_S, TICK_S);
    ev_timer_start(h->loop, &h->tick);
}

/* --- life -------------------------------------------------------------------------- */

struct holder *holder_start(struct ev_loop *loop, const struct hold_config *cfg,
                            hold_line_fn on_line, void *arg)
{
    struct holder *h = calloc(1, sizeof(*h));
    if (!h) return NULL;
    if (!net_parse_hostport(cfg->hold_addr, h->host, sizeof(h->host), &h->port, 0)) {
        log_error("billing: hold address \"%s\": expected host:port", cfg->hold_addr);
        free(h);
        return NULL;
    }
    if (net_is_numeric(h->host)) set_addr(h, h->host); /* else: resolved off the loop */
    h->loop = loop;
    h->master_cli = strdup(cfg->master_cli);
    h->hold_addr = strdup(cfg->hold_addr);
    h->ring = strdup(cfg->ring);
    h->on_line = on_line;
    h->arg = arg;
    ev_timer_init(&h->tick, tick_cb, 0., TICK_S);
    h->tick.data = h;
    ev_timer_start(loop, &h->tick);
    log_info("billing: HAProxy reloads: the agent holds the current worker through %s and "
             "reads old workers' rings through the master CLI %s",
             cfg->hold_addr, cfg->master_cli);
    return h;
}

void holder_stop(struct holder *h)
{
    if (!h) return;
    ev_timer_stop(h->loop, &h->tick);
    net_resolve_cancel(h->resolving);
    replay_cancel(h->cmd);
    while (h->holds)
        hold_close(h->holds);
    free(h->master_cli);
    free(h->hold_addr);
    free(h->ring);
    free(h);
}
