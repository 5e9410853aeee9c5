/*
 * spop-echo: the smallest SPOA that still speaks SPOP 2.0 correctly, used only
 * to measure spop-client itself (the benchmark's ceiling).
 *
 * One thread, one epoll loop. It answers HAPROXY-HELLO with an AGENT-HELLO
 * announcing pipelining, and every NOTIFY with an ACK holding one trivial
 * action (set-var txn.ok = true) that is encoded once at start: per frame only
 * the header with the echoed stream-id/frame-id is written, and the NOTIFY
 * payload is never decoded. Every ACK produced by one read goes out in one
 * write. HAPROXY-DISCONNECT gets an AGENT-DISCONNECT and a close; a protocol
 * error gets an AGENT-DISCONNECT with the spec's status. SIGTERM/SIGINT stop
 * it (exit 0).
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "spop.h"

#define MAX_FRAME SPOP_DEFAULT_FRAME_SIZE
#define RX_CAP    (256 * 1024)
/* Reading pauses while this many bytes of output wait for the socket. */
#define TX_HIGH (1024 * 1024)
#define ACK_MAX 64

struct echo_conn {
    int fd;
    bool ready;         /* HELLO done */
    bool closing;       /* last frame queued: close once written */
    bool want_out;      /* EPOLLOUT armed */
    uint32_t max_frame; /* negotiated, bytes */
    uint8_t rx[RX_CAP];
    size_t rx_len;
    uint8_t *tx;
    size_t tx_off, tx_len, tx_cap;
};

static volatile sig_atomic_t stop_requested;
static uint8_t ack_body[64]; /* the one action of every ACK */
static size_t ack_body_len;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static int listen_on(const char *spec)
{
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (!colon || colon[1] == '\0') {
        fprintf(stderr, "spop-echo: --listen '%s': expected HOST:PORT\n", spec);
        return -1;
    }
    size_t hlen = (size_t)(colon - spec);
    const char *h = spec;
    if (hlen >= 2 && spec[0] == '[' && spec[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if (hlen >= sizeof(host)) {
        fprintf(stderr, "spop-echo: --listen '%s': host too long\n", spec);
        return -1;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res;
    int rc = getaddrinfo(hlen && strcmp(host, "*") ? host : NULL, colon + 1, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "spop-echo: --listen '%s': %s\n", spec, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
        fprintf(stderr, "spop-echo: listen on %s: %s\n", spec, strerror(errno));
        if (fd >= 0) close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

static void conn_free(int ep, struct echo_conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->tx);
    free(c);
}

/* Makes room for n more output bytes. Returns false when out of memory. */
static bool tx_reserve(struct echo_conn *c, size_t n)
{
    if (c->tx_off == c->tx_len) {
        c->tx_off = c->tx_len = 0;
    } else if (c->tx_off && c->tx_cap - c->tx_len < n) {
        memmove(c->tx, c->tx + c->tx_off, c->tx_len - c->tx_off);
        c->tx_len -= c->tx_off;
        c->tx_off = 0;
    }
    if (c->tx_cap - c->tx_len >= n) return true;
    size_t cap = c->tx_cap ? c->tx_cap : 65536;
    while (cap - c->tx_len < n)
        cap *= 2;
    uint8_t *nb = realloc(c->tx, cap);
    if (!nb) return false;
    c->tx = nb;
    c->tx_cap = cap;
    return true;
}

static void queue_disconnect(struct echo_conn *c, uint32_t status)
{
    if (!tx_reserve(c, 256)) return;
    struct spop_writer w;
    spop_writer_init(&w, c->tx + c->tx_len, 256);
    spop_disconnect_encode(&w, SPOP_FRAME_AGENT_DISCONNECT, status, spop_status_str(status));
    c->tx_len += w.len;
    c->closing = true;
}

static void handle_hello(struct echo_conn *c, const struct spop_frame *f)
{
    struct spop_hello h;
    int st = spop_hello_decode(f->payload, f->payload_len, &h);
    if (st != SPOP_OK) {
        queue_disconnect(c, (uint32_t)st);
        return;
    }
    c->max_frame = h.max_frame_size < MAX_FRAME ? h.max_frame_size : MAX_FRAME;
    if (!tx_reserve(c, 256)) {
        c->closing = true;
        return;
    }
    struct spop_writer w;
    spop_writer_init(&w, c->tx + c->tx_len, 256);
    spop_agent_hello_encode(&w, c->max_frame, "pipelining");
    c->tx_len += w.len;
    c->ready = true;
    if (h.healthcheck) c->closing = true;
}

/* Handles every whole frame in the receive buffer, queuing the answers. */
static void process_input(struct echo_conn *c)
{
    size_t off = 0;
    while (!c->closing && c->tx_len - c->tx_off < TX_HIGH) {
        struct spop_frame f;
        size_t used;
        int st = spop_frame_parse(c->rx + off, c->rx_len - off, c->max_frame, &f, &used);
        if (st == SPOP_INCOMPLETE) break;
        if (st != SPOP_OK) {
            queue_disconnect(c, (uint32_t)st);
            break;
        }
        off += used;
        if (!(f.flags & SPOP_FLAG_FIN)) {
            queue_disconnect(c, SPOP_ERR_FRAG_NOT_SUPPORTED);
            break;
        }
        if (f.type == SPOP_FRAME_NOTIFY && c->ready) {
            if (!tx_reserve(c, ACK_MAX)) {
                c->closing = true;
                break;
            }
            struct spop_writer w;
            spop_writer_init(&w, c->tx + c->tx_len, ACK_MAX);
            size_t start =
                spop_frame_begin(&w, SPOP_FRAME_ACK, SPOP_FLAG_FIN, f.stream_id, f.frame_id);
            spop_put_bytes(&w, ack_body, ack_body_len);
            spop_frame_end(&w, start, c->max_frame);
            c->tx_len += w.len;
        } else if (f.type == SPOP_FRAME_HAPROXY_HELLO && !c->ready) {
            handle_hello(c, &f);
        } else if (f.type == SPOP_FRAME_HAPROXY_DISCONNECT) {
            queue_disconnect(c, SPOP_OK);
        } else if (f.type == SPOP_FRAME_NOTIFY || f.type == SPOP_FRAME_HAPROXY_HELLO) {
            queue_disconnect(c, SPOP_ERR_INVALID);
        }
        /* other frame types are skipped */
    }
    if (off) {
        memmove(c->rx, c->rx + off, c->rx_len - off);
        c->rx_len -= off;
    }
}

/* Writes pending output. Returns false when the connection is finished. */
static bool flush_output(int ep, struct echo_conn *c)
{
    while (c->tx_off < c->tx_len) {
        ssize_t n = send(c->fd, c->tx + c->tx_off, c->tx_len - c->tx_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->tx_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) break;
        return false;
    }
    if (c->tx_off == c->tx_len && c->closing) return false;
    bool pending = c->tx_off < c->tx_len;
    /* Backpressure: stop reading while the peer does not read its answers. */
    uint32_t events = (pending ? EPOLLOUT : 0) | (c->tx_len - c->tx_off < TX_HIGH ? EPOLLIN : 0);
    if (pending != c->want_out || !(events & EPOLLIN)) {
        struct epoll_event ev = {.events = events, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = pending;
    }
    return true;
}

static void on_readable(int ep, struct echo_conn *c)
{
    if (c->rx_len == sizeof(c->rx))
        return; /* paused on output: never read 0 bytes and mistake it for EOF */
    ssize_t n = recv(c->fd, c->rx + c->rx_len, sizeof(c->rx) - c->rx_len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
        conn_free(ep, c);
        return;
    }
    c->rx_len += (size_t)n;
    process_input(c);
    if (!flush_output(ep, c)) conn_free(ep, c);
}

static void accept_all(int ep, int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno != EAGAIN) fprintf(stderr, "spop-echo: accept: %s\n", strerror(errno));
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct echo_conn *c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->max_frame = MAX_FRAME;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            free(c);
        }
    }
}

static void usage(FILE *out)
{
    fprintf(out, "Usage: spop-echo --listen HOST:PORT\n"
                 "A no-op SPOP 2.0 agent measuring spop-client's own ceiling: answers\n"
                 "HAPROXY-HELLO (pipelining) and every NOTIFY with a pre-encoded ACK\n"
                 "(set-var txn.ok = true) echoing stream-id and frame-id, one thread.\n"
                 "Stops on SIGTERM or SIGINT.\n");
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    const char *listen_spec = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "l:h", longopts, NULL)) != -1) {
        if (c == 'l') {
            listen_spec = optarg;
        } else if (c == 'h') {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!listen_spec || optind < argc) {
        usage(stderr);
        return 2;
    }

    struct spop_writer w;
    struct spop_data ok = spop_data_bool(true);
    spop_writer_init(&w, ack_body, sizeof(ack_body));
    spop_ack_set_var(&w, SPOP_SCOPE_TXN, "ok", 2, &ok);
    ack_body_len = w.len;

    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: epoll_wait returns */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    int lfd = listen_on(listen_spec);
    if (lfd < 0) return 1;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0) {
        fprintf(stderr, "spop-echo: epoll: %s\n", strerror(errno));
        return 1;
    }
    struct epoll_event evs[64];
    while (!stop_requested) {
        int n = epoll_wait(ep, evs, 64, 1000);
        if (n < 0) {
            if (errno == EINTR) continue;
            fprintf(stderr, "spop-echo: epoll_wait: %s\n", strerror(errno));
            return 1;
        }
        for (int k = 0; k < n; k++) {
            struct echo_conn *ec = evs[k].data.ptr;
            if (!ec) {
                accept_all(ep, lfd);
                continue;
            }
            if (evs[k].events & EPOLLOUT) {
                if (!flush_output(ep, ec)) {
                    conn_free(ep, ec);
                    continue;
                }
                /* Output drained below the mark: handle what was left unread. */
                if (!ec->closing && ec->rx_len && ec->tx_len - ec->tx_off < TX_HIGH) {
                    process_input(ec);
                    if (!flush_output(ep, ec)) {
                        conn_free(ep, ec);
                        continue;
                    }
                }
            }
            if (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(ep, ec);
        }
    }
    close(lfd);
    close(ep);
    return 0;
}
