/*
 * tunnel-load: CONNECT-tunnel load for an HTTP proxy, used by
 * tests/bench/compare.sh (built there with gcc; it needs only libc).
 *
 *   tunnel-load --proxy IPV4:PORT --target HOST:PORT [--auth VALUE]
 *               [--path /bytes/1024] MODE ...
 *
 *   rate --conns N --duration S
 *       N connections, each in a loop: open a TCP connection to the proxy,
 *       send CONNECT TARGET with Proxy-Authorization: VALUE, read the 200,
 *       send "GET PATH" (Connection: close) through the tunnel, read the whole
 *       response (Content-Length), close. Prints one line of key=value
 *       figures: completed exchanges, rate, latency percentiles of the whole
 *       exchange (connect() to the last body byte) and of the tunnel setup
 *       (connect() to the end of the 200 head), errors by kind.
 *
 *   hold --count N [--parallel P] [--exchange]
 *       Open N tunnels, at most P (default 256) being set up at a time; with
 *       --exchange, send one keep-alive GET through each and read the answer.
 *       Then print "held=..." (with the setup figures) and keep every tunnel
 *       open and idle until SIGTERM or SIGINT, then print how many the other
 *       side closed meanwhile and exit 0.
 *
 * One thread, epoll, non-blocking sockets; IPv4 only (loopback benchmarks).
 * Latencies are kept one per exchange (4 bytes each) and sorted at the end.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE   4096                    /* per connection: response heads only, bytes */
#define TIMEOUT_NS (10ULL * 1000000000ULL) /* one exchange or setup, at most */

enum state {
    ST_FREE,       /* slot unused */
    ST_CONNECTING, /* connect() in progress */
    ST_TUNNEL,     /* CONNECT sent, reading the proxy's answer head */
    ST_RESPONSE,   /* GET sent through the tunnel, reading the response */
    ST_HELD,       /* hold mode: tunnel open and idle */
};

struct conn {
    int fd;
    enum state st;
    uint64_t t0;      /* connect() time, ns (monotonic) */
    uint64_t t_setup; /* end of the 200 head, ns */
    size_t len;       /* bytes in buf (heads only) */
    bool head_done;   /* response head parsed */
    long body_need;   /* Content-Length, or -1: until EOF */
    long body_got;
    char buf[BUF_SIZE];
};

static struct {
    struct sockaddr_in proxy;
    char target[256];
    const char *auth;
    const char *path;
    char connect_req[1024];
    size_t connect_len;
    char get_req[1024];
    size_t get_len;
    char get_ka_req[1024];
    size_t get_ka_len;
    bool rate_mode;
    int conns;
    double duration;
    int count;
    int parallel;
    bool exchange;
} cfg = {.path = "/bytes/1024", .conns = 32, .duration = 5, .count = 1000, .parallel = 256};

static struct {
    uint64_t done, err_connect, err_status, err_io, err_timeout;
    uint32_t *lat, *setup; /* microseconds */
    size_t nlat, cap, nsetup, capsetup;
    int held, failed, closed_while_held;
} st;

static int ep;
static struct conn *conns;
static int nconns;
static volatile sig_atomic_t stop_flag;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void die(const char *msg)
{
    fprintf(stderr, "tunnel-load: %s\n", msg);
    exit(2);
}

static void push(uint32_t **arr, size_t *n, size_t *cap, uint64_t ns)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 65536;
        *arr = realloc(*arr, *cap * sizeof **arr);
        if (!*arr) die("out of memory");
    }
    uint64_t us = ns / 1000;
    (*arr)[(*n)++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* pct: the value at quantile q of a sorted array (0 when empty). */
static uint32_t pct(const uint32_t *v, size_t n, double q)
{
    if (n == 0) return 0;
    size_t i = (size_t)(q * (double)n);
    if (i >= n) i = n - 1;
    return v[i];
}

static void parse_addr(const char *s, struct sockaddr_in *sa)
{
    char host[128];
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof host) die("address must be IPv4:PORT");
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = 0;
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &sa->sin_addr) != 1) die("address must be IPv4:PORT");
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0) {
        close(c->fd); /* also leaves the epoll set */
        c->fd = -1;
    }
    c->st = ST_FREE;
    nconns--;
}

/* conn_open: a new connection in slot c; false (counted) when socket or
 * connect fails at once. */
static bool conn_open(struct conn *c)
{
    int one = 1;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        st.err_connect++;
        return false;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->t0 = now_ns();
    c->len = 0;
    c->head_done = false;
    c->body_need = -1;
    c->body_got = 0;
    nconns++;
    c->st = ST_CONNECTING;
    if (connect(c->fd, (struct sockaddr *)&cfg.proxy, sizeof cfg.proxy) < 0 &&
        errno != EINPROGRESS) {
        st.err_connect++;
        conn_close(c);
        return false;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        st.err_connect++;
        conn_close(c);
        return false;
    }
    return true;
}

static bool send_all(struct conn *c, const char *p, size_t n)
{
    ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
    return w == (ssize_t)n; /* a few hundred bytes on a fresh socket: one write */
}

static void want(struct conn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* head_end: offset just past "\r\n\r\n" in buf, or 0. */
static size_t head_end(const char *buf, size_t len)
{
    for (size_t i = 3; i < len; i++)
        if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' && buf[i - 3] == '\r')
            return i + 1;
    return 0;
}

static int head_status(const char *buf, size_t len)
{
    if (len < 12 || strncmp(buf, "HTTP/1.", 7) != 0) return -1;
    return atoi(buf + 9);
}

static long head_content_length(const char *buf, size_t len)
{
    const char *p = buf, *end = buf + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) break;
        if ((size_t)(nl - p) > 15 && strncasecmp(p, "Content-Length:", 15) == 0)
            return strtol(p + 15, NULL, 10);
        p = nl + 1;
    }
    return -1;
}

static void fail(struct conn *c, uint64_t *counter)
{
    (*counter)++;
    if (!cfg.rate_mode) st.failed++;
    conn_close(c);
}

/* exchange_done: one tunnel (and its exchange, if any) is complete. */
static void exchange_done(struct conn *c)
{
    uint64_t t = now_ns();
    if (cfg.rate_mode) {
        st.done++;
        push(&st.lat, &st.nlat, &st.cap, t - c->t0);
        conn_close(c);
    } else {
        st.held++;
        c->st = ST_HELD;
        want(c, EPOLLIN | EPOLLRDHUP);
    }
}

static void on_readable(struct conn *c)
{
    char scratch[65536];
    for (;;) {
        ssize_t r;
        if (c->head_done)
            r = recv(c->fd, scratch, sizeof scratch, 0);
        else
            r = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            if (errno == EINTR) continue;
            fail(c, &st.err_io);
            return;
        }
        if (r == 0) {
            if (c->st == ST_RESPONSE && c->head_done && c->body_need < 0) {
                exchange_done(c);
                return;
            }
            fail(c, &st.err_io);
            return;
        }
        if (c->head_done) {
            c->body_got += r;
        } else {
            c->len += (size_t)r;
            size_t he = head_end(c->buf, c->len);
            if (!he) {
                if (c->len == sizeof c->buf) {
                    fail(c, &st.err_status);
                    return;
                }
                continue;
            }
            int status = head_status(c->buf, he);
            if (c->st == ST_TUNNEL) {
                if (status != 200 || he != c->len) {
                    fail(c, &st.err_status);
                    return;
                }
                c->t_setup = now_ns();
                push(&st.setup, &st.nsetup, &st.capsetup, c->t_setup - c->t0);
                if (!cfg.rate_mode && !cfg.exchange) {
                    exchange_done(c);
                    return;
                }
                bool ok = cfg.rate_mode ? send_all(c, cfg.get_req, cfg.get_len)
                                        : send_all(c, cfg.get_ka_req, cfg.get_ka_len);
                if (!ok) {
                    fail(c, &st.err_io);
                    return;
                }
                c->st = ST_RESPONSE;
                c->len = 0;
                continue;
            }
            if (status != 200) {
                fail(c, &st.err_status);
                return;
            }
            c->head_done = true;
            c->body_need = head_content_length(c->buf, he);
            c->body_got = (long)(c->len - he);
        }
        if (c->body_need >= 0 && c->body_got >= c->body_need) {
            exchange_done(c);
            return;
        }
    }
}

static void on_event(struct conn *c, uint32_t events)
{
    switch (c->st) {
    case ST_CONNECTING: {
        int err = 0;
        socklen_t l = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0 || err != 0) {
            fail(c, &st.err_connect);
            return;
        }
        if (!send_all(c, cfg.connect_req, cfg.connect_len)) {
            fail(c, &st.err_io);
            return;
        }
        c->st = ST_TUNNEL;
        want(c, EPOLLIN);
        return;
    }
    case ST_TUNNEL:
    case ST_RESPONSE:
        on_readable(c);
        return;
    case ST_HELD:
        if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
            st.closed_while_held++;
            close(c->fd);
            c->fd = -1;
            c->st = ST_FREE;
        }
        return;
    case ST_FREE:
        return;
    }
}

static void check_timeouts(uint64_t t)
{
    int n = cfg.rate_mode ? cfg.conns : cfg.count;
    for (int i = 0; i < n; i++) {
        struct conn *c = &conns[i];
        if (c->st != ST_FREE && c->st != ST_HELD && t - c->t0 > TIMEOUT_NS)
            fail(c, &st.err_timeout);
    }
}

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void usage(FILE *f)
{
    fputs(
        "usage: tunnel-load --proxy IP:PORT --target HOST:PORT [--auth VALUE] [--path PATH]\n"
        "                   rate --conns N --duration SECONDS\n"
        "       tunnel-load ... hold --count N [--parallel P] [--exchange]\n"
        "rate: a new CONNECT tunnel per exchange (GET PATH inside, Connection: close), N at a "
        "time;\n"
        "      prints requests= seconds= rate= p50_us= p90_us= p99_us= p999_us= max_us=\n"
        "      setup_p50_us= setup_p99_us= errors= err_connect= err_status= err_io= err_timeout=\n"
        "hold: open N tunnels (one keep-alive GET in each with --exchange), print held=...,\n"
        "      keep them idle until SIGTERM/SIGINT, then print closed_while_held= and exit\n",
        f);
}

static void print_errors(void)
{
    printf(" errors=%llu err_connect=%llu err_status=%llu err_io=%llu err_timeout=%llu",
           (unsigned long long)(st.err_connect + st.err_status + st.err_io + st.err_timeout),
           (unsigned long long)st.err_connect, (unsigned long long)st.err_status,
           (unsigned long long)st.err_io, (unsigned long long)st.err_timeout);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"proxy", required_argument, NULL, 'p'},
        {"target", required_argument, NULL, 't'},
        {"auth", required_argument, NULL, 'a'},
        {"path", required_argument, NULL, 'P'},
        {"conns", required_argument, NULL, 'c'},
        {"duration", required_argument, NULL, 'd'},
        {"count", required_argument, NULL, 'n'},
        {"parallel", required_argument, NULL, 'j'},
        {"exchange", no_argument, NULL, 'x'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool have_proxy = false;
    int o;
    /* Options may come before or after the mode word (getopt moves it last). */
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'p':
            parse_addr(optarg, &cfg.proxy);
            have_proxy = true;
            break;
        case 't':
            snprintf(cfg.target, sizeof cfg.target, "%s", optarg);
            break;
        case 'a':
            cfg.auth = optarg;
            break;
        case 'P':
            cfg.path = optarg;
            break;
        case 'c':
            cfg.conns = atoi(optarg);
            break;
        case 'd':
            cfg.duration = atof(optarg);
            break;
        case 'n':
            cfg.count = atoi(optarg);
            break;
        case 'j':
            cfg.parallel = atoi(optarg);
            break;
        case 'x':
            cfg.exchange = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1 ||
        (strcmp(argv[optind], "rate") != 0 && strcmp(argv[optind], "hold") != 0)) {
        usage(stderr);
        return 2;
    }
    cfg.rate_mode = strcmp(argv[optind], "rate") == 0;
    if (!have_proxy || !cfg.target[0] || cfg.conns < 1 || cfg.count < 1 || cfg.parallel < 1 ||
        cfg.duration <= 0) {
        usage(stderr);
        return 2;
    }
    char authhdr[600] = "";
    if (cfg.auth) snprintf(authhdr, sizeof authhdr, "Proxy-Authorization: %s\r\n", cfg.auth);
    cfg.connect_len = (size_t)snprintf(cfg.connect_req, sizeof cfg.connect_req,
                                       "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", cfg.target,
                                       cfg.target, authhdr);
    cfg.get_len = (size_t)snprintf(cfg.get_req, sizeof cfg.get_req,
                                   "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                                   cfg.path, cfg.target);
    cfg.get_ka_len = (size_t)snprintf(cfg.get_ka_req, sizeof cfg.get_ka_req,
                                      "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", cfg.path, cfg.target);

    int nslots = cfg.rate_mode ? cfg.conns : cfg.count;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)nslots + 16 > rl.rlim_cur) {
            fprintf(stderr,
                    "tunnel-load: %d connections need more open files than ulimit -n %llu\n",
                    nslots, (unsigned long long)rl.rlim_cur);
            return 2;
        }
    }
    conns = calloc((size_t)nslots, sizeof *conns);
    if (!conns) die("out of memory");
    for (int i = 0; i < nslots; i++)
        conns[i].fd = -1;
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1 failed");
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);

    struct epoll_event evs[512];
    uint64_t start = now_ns(), last_check = start;
    if (cfg.rate_mode) {
        uint64_t end = start + (uint64_t)(cfg.duration * 1e9);
        for (int i = 0; i < nslots; i++)
            conn_open(&conns[i]);
        for (;;) {
            uint64_t t = now_ns();
            if (t >= end || stop_flag) break;
            int n = epoll_wait(ep, evs, 512, 50);
            for (int i = 0; i < n; i++)
                on_event(evs[i].data.ptr, evs[i].events);
            t = now_ns();
            if (t - last_check > 100000000ULL) {
                check_timeouts(t);
                last_check = t;
            }
            if (t < end) /* refill: a new tunnel for every one that ended */
                for (int i = 0; i < nslots; i++)
                    if (conns[i].st == ST_FREE && !conn_open(&conns[i]))
                        break; /* cannot open now: retry after the next events */
        }
        double secs = (double)(now_ns() - start) / 1e9;
        qsort(st.lat, st.nlat, sizeof *st.lat, cmp_u32);
        qsort(st.setup, st.nsetup, sizeof *st.setup, cmp_u32);
        printf("requests=%llu seconds=%.3f rate=%.1f p50_us=%u p90_us=%u p99_us=%u p999_us=%u "
               "max_us=%u setup_p50_us=%u setup_p99_us=%u",
               (unsigned long long)st.done, secs, (double)st.done / secs, pct(st.lat, st.nlat, .50),
               pct(st.lat, st.nlat, .90), pct(st.lat, st.nlat, .99), pct(st.lat, st.nlat, .999),
               st.nlat ? st.lat[st.nlat - 1] : 0, pct(st.setup, st.nsetup, .50),
               pct(st.setup, st.nsetup, .99));
        print_errors();
        printf("\n");
        return 0;
    }

    /* hold */
    int next = 0;
    while (!stop_flag && (next < nslots || nconns > st.held)) {
        while (next < nslots && nconns - st.held < cfg.parallel)
            conn_open(&conns[next++]);
        int n = epoll_wait(ep, evs, 512, 50);
        for (int i = 0; i < n; i++)
            on_event(evs[i].data.ptr, evs[i].events);
        uint64_t t = now_ns();
        if (t - last_check > 100000000ULL) {
            check_timeouts(t);
            last_check = t;
        }
    }
    double secs = (double)(now_ns() - start) / 1e9;
    qsort(st.setup, st.nsetup, sizeof *st.setup, cmp_u32);
    printf("held=%d failed=%d seconds=%.3f rate=%.1f setup_p50_us=%u setup_p99_us=%u", st.held,
           st.failed, secs, (double)st.held / secs, pct(st.setup, st.nsetup, .50),
           pct(st.setup, st.nsetup, .99));
    print_errors();
    printf("\n");
    fflush(stdout);
    while (!stop_flag) {
        int n = epoll_wait(ep, evs, 512, 1000);
        for (int i = 0; i < n; i++)
            on_event(evs[i].data.ptr, evs[i].events);
    }
    printf("closed_while_held=%d\n", st.closed_while_held);
    return 0;
}
