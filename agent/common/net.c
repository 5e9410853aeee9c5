/*
 * Sockets and names (net.h).
 */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

bool net_parse_hostport(const char *s, char *buf, size_t cap, int *port, unsigned flags)
{
    const char *colon = strrchr(s, ':');
    if (!colon || (colon == s && !(flags & NET_ANY_HOST))) return false;
    const char *h = s;
    size_t hlen = (size_t)(colon - s);
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if ((flags & NET_ANY_HOST) && hlen == 1 && h[0] == '*') hlen = 0;
    if ((hlen == 0 && !(flags & NET_ANY_HOST)) || hlen >= cap) return false;
    const char *d = colon + 1;
    long p = 0;
    if (*d == '\0') return false;
    for (; *d; d++) {
        if (*d < '0' || *d > '9' || p > 65535) return false;
        p = p * 10 + (*d - '0');
    }
    if (p > 65535 || (p == 0 && !(flags & NET_PORT_ZERO))) return false;
    memcpy(buf, h, hlen);
    buf[hlen] = '\0';
    *port = (int)p;
    return true;
}

bool net_is_numeric(const char *host)
{
    unsigned char tmp[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, tmp) == 1 || inet_pton(AF_INET6, host, tmp) == 1;
}

int net_listen(const char *spec)
{
    char host[256], port[8];
    int p;
    if (!net_parse_hostport(spec, host, sizeof(host), &p, NET_ANY_HOST | NET_PORT_ZERO)) {
        log_error("listen address '%s': expected host:port", spec);
        return -1;
    }
    snprintf(port, sizeof(port), "%d", p);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res;
    int rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (rc != 0) {
        log_error("listen address '%s': %s", spec, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
        log_error("listen on %s: %s", spec, strerror(errno));
        if (fd >= 0) close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

unsigned net_bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return 0;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

/* --- resolving ------------------------------------------------------------------ */

static _Atomic(net_getaddrinfo_fn) net_gai; /* NULL: the real getaddrinfo */

void net_set_getaddrinfo(net_getaddrinfo_fn fn)
{
    atomic_store(&net_gai, fn);
}

int net_resolve(const char *host, char addr[NET_ADDR_MAX], char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *ai;
    net_getaddrinfo_fn gai = atomic_load(&net_gai);
    int rc = (gai ? gai : getaddrinfo)(host, NULL, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve '%s': %s", host,
                 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return -1;
    }
    const struct addrinfo *pick = NULL;
    for (ai = res; ai != NULL && pick == NULL; ai = ai->ai_next)
        if (ai->ai_family == AF_INET) pick = ai;
    for (ai = res; ai != NULL && pick == NULL; ai = ai->ai_next)
        if (ai->ai_family == AF_INET6) pick = ai;
    const void *a = NULL;
    if (pick != NULL && pick->ai_family == AF_INET)
        a = &((const struct sockaddr_in *)(const void *)pick->ai_addr)->sin_addr;
    else if (pick != NULL)
        a = &((const struct sockaddr_in6 *)(const void *)pick->ai_addr)->sin6_addr;
    rc = a != NULL && inet_ntop(pick->ai_family, a, addr, NET_ADDR_MAX) != NULL ? 0 : -1;
    freeaddrinfo(res);
    if (rc != 0) snprintf(err, errlen, "'%s' has no IPv4 or IPv6 address", host);
    return rc;
}

/*
 * A job is shared by the loop and its thread: refs counts them (2, then 1
 * once either side is done with it); mu guards cancelled and the ev_async
 * send, so a cancelled job never touches the loop again.
 */
struct net_resolve_job {
    pthread_mutex_t mu;
    int refs;
    bool cancelled;
    struct ev_loop *loop;
    ev_async done_async;
    net_resolved_fn done;
    void *arg;
    int rc;
    char host[256];
    char addr[NET_ADDR_MAX];
    char err[320];
};

static void job_unref(struct net_resolve_job *j)
{
    pthread_mutex_lock(&j->mu);
    bool last = --j->refs == 0;
    pthread_mutex_unlock(&j->mu);
    if (last) {
        pthread_mutex_destroy(&j->mu);
        free(j);
    }
}

static void *job_thread(void *arg)
{
    struct net_resolve_job *j = arg;
    j->rc = net_resolve(j->host, j->addr, j->err, sizeof(j->err));
    pthread_mutex_lock(&j->mu);
    if (!j->cancelled) ev_async_send(j->loop, &j->done_async);
    pthread_mutex_unlock(&j->mu);
    job_unref(j);
    return NULL;
}

static void job_done_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)revents;
    struct net_resolve_job *j = a->data;
    ev_async_stop(loop, a);
    pthread_mutex_lock(&j->mu);
    j->cancelled = true; /* done: nothing more to send */
    pthread_mutex_unlock(&j->mu);
    net_resolved_fn done = j->done;
    void *darg = j->arg;
    char addr[NET_ADDR_MAX], err[sizeof(j->err)];
    int rc = j->rc;
    memcpy(addr, j->addr, sizeof(addr));
    memcpy(err, j->err, sizeof(err));
    job_unref(j);
    done(darg, rc == 0 ? addr : NULL, rc == 0 ? NULL : err);
}

struct net_resolve_job *net_resolve_start(struct ev_loop *loop, const char *host,
                                          net_resolved_fn done, void *arg)
{
    struct net_resolve_job *j = calloc(1, sizeof(*j));
    if (!j) return NULL;
    if (strlen(host) >= sizeof(j->host)) {
        free(j);
        return NULL;
    }
    strcpy(j->host, host);
    pthread_mutex_init(&j->mu, NULL);
    j->refs = 2;
    j->loop = loop;
    j->done = done;
    j->arg = arg;
    ev_async_init(&j->done_async, job_done_cb);
    j->done_async.data = j;
    ev_async_start(loop, &j->done_async);

    pthread_attr_t attr;
    pthread_t t;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* every signal blocked: they belong to the main loop */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&t, &attr, job_thread, j);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        log_error("resolving '%s': cannot start a thread: %s", host, strerror(rc));
        ev_async_stop(loop, &j->done_async);
        pthread_mutex_destroy(&j->mu);
        free(j);
        return NULL;
    }
    return j;
}

void net_resolve_cancel(struct net_resolve_job *j)
{
    if (!j) return;
    pthread_mutex_lock(&j->mu);
    j->cancelled = true;
    pthread_mutex_unlock(&j->mu);
    ev_async_stop(j->loop, &j->done_async);
    job_unref(j);
}
