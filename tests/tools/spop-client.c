/*
 * spop-client: plays HAProxy's side of SPOP 2.0 against an agent, for the
 * integration tests (exact, greppable answers) and the benchmarks (a load
 * generator that keeps many NOTIFY frames in flight on a few connections).
 *
 * Every byte goes through the agent's own codec (agent/gw/spop.h), so the client
 * checks the wire format HAProxy would see. The simple modes (hello, notify,
 * raw) use blocking-style I/O bounded by a deadline: a silent agent is a
 * timeout and a failure, never a hang. The bench mode runs one epoll loop over
 * all connections, encodes every frame a connection may send into one buffer
 * and writes it once, parses every ACK of each read, and records per-frame
 * latency in a fixed log-linear histogram (no allocation per sample).
 *
 * Exit status: 0 success, 1 protocol error / timeout / id mismatch / bench
 * errors, 2 bad usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "spop.h"

#define DEFAULT_TIMEOUT_MS 5000
#define DEFAULT_IDLE_MS    500
#define MAX_DURATION_S     600
#define MAX_CONNS          1024
#define MAX_PIPELINE       65536
#define MAX_NOTIFY_FRAMES  100000
/* Receive buffers hold at least this many bytes (and always one whole frame). */
#define RX_MIN (256 * 1024)

enum exit_code { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

struct opts {
    const char *connect;     /* "host:port" or "[v6]:port" */
    uint32_t max_frame_size; /* bytes, announced in our HAPROXY-HELLO */
    unsigned timeout_ms;     /* bound on every wait for the agent */
    unsigned idle_ms;        /* raw: quiet period that ends the read */
    bool healthcheck;        /* hello: send healthcheck=true */
    bool no_hello;           /* notify/raw: skip the handshake */
    bool reset;              /* raw: close with a TCP reset right after sending */
    bool empty;              /* notify: a NOTIFY without any message */
    uint64_t stream_id;      /* notify: id of the first frame */
    uint64_t frame_id;       /* notify: id of the first frame */
    unsigned nframes;        /* notify: identical frames sent pipelined */
    unsigned conns;          /* bench: connections */
    unsigned pipeline;       /* bench: frames in flight per connection */
    double duration_s;       /* bench: seconds of load */
    uint64_t max_frames;     /* bench: stop after sending this many (0: no limit) */
    double rate;             /* bench: frames/s offered in all (0: closed loop) */
    uint8_t bench_ip[4];     /* bench: the client address sent (ip=) */
    const char *bench_auth;  /* bench: the Authorization value sent (auth=) */
};

static void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("spop-client: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (see --help)\n", stderr);
    va_end(ap);
    exit(EXIT_USAGE);
}

static void fail_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail_msg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("spop-client: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: spop-client --connect HOST:PORT [OPTION]... MODE [ARG]...\n"
            "Plays HAProxy's side of SPOP 2.0 against an SPOE agent.\n"
            "\n"
            "Modes:\n"
            "  hello [--healthcheck]\n"
            "      Send HAPROXY-HELLO and print each AGENT-HELLO field as key=value\n"
            "      (version=, max-frame-size=, capabilities=). Without --healthcheck, then\n"
            "      send HAPROXY-DISCONNECT and print the agent's answer as\n"
            "      'disconnect status=N message=TEXT'. With --healthcheck, then wait for\n"
            "      the agent to close and print 'agent-closed=yes' or 'agent-closed=no'.\n"
            "  notify MSGNAME [NAME=TYPE:VALUE]...\n"
            "      HELLO, one NOTIFY holding message MSGNAME with those arguments, then\n"
            "      print every action of the ACK, one per line:\n"
            "          set-var SCOPE NAME = TYPE:VALUE\n"
            "          unset-var SCOPE NAME\n"
            "      then send HAPROXY-DISCONNECT and print 'disconnect status=N message=TEXT'.\n"
            "      TYPE: str, bin (VALUE in hex), int32, uint32, int64, uint64, bool\n"
            "      (true/false), ipv4, ipv6, null (VALUE empty). Printed str values escape\n"
            "      bytes outside printable ASCII and the backslash as \\xNN.\n"
            "  raw HEXBYTES...\n"
            "      HELLO (unless --no-hello), send the bytes as they are (spaces, ':' and\n"
            "      '_' between hex digits are ignored), then print every frame that comes\n"
            "      back, one line each:\n"
            "          agent-hello KEY=VALUE...\n"
            "          ack stream-id=N frame-id=N actions=N   (then one line per action)\n"
            "          disconnect status=N message=TEXT\n"
            "          frame type=N flags=0xN stream-id=N frame-id=N length=N\n"
            "      and last how the read ended: 'closed' (agent closed), 'reset', or\n"
            "      'idle' (nothing for --idle-ms).\n"
            "  bench [--conns C] [--pipeline D] [--duration S] [--frames N] [--rate R]\n"
            "        [--ip IPV4(192.0.2.10)] [--auth VALUE(Basic base64 of myuser:mypassword)]\n"
            "      Load generator: C connections (default 4), each keeping D NOTIFY frames\n"
            "      in flight (default 32), for S seconds (default 5, at most %d) or until\n"
            "      N frames were sent. Checks every ACK's stream-id/frame-id against the\n"
            "      frames in flight (any order). Prints one machine-readable line\n"
            "          frames=N seconds=S rate=R p50_us=X p99_us=X p999_us=X max_us=X errors=N\n"
            "          conns=C pipeline=D offered=R late=N   (on the same line)\n"
            "      With --rate R the load is open loop: R frames/s in all, evenly spaced,\n"
            "      at most D in flight per connection; a frame's latency counts from when\n"
            "      it was due, so frames held back by a full pipeline count their wait\n"
            "      (late=N of them). Without it (offered=0), closed loop as fast as the\n"
            "      agent answers.\n"
            "      and one line for humans, starting with '#'.\n"
            "\n"
            "Options:\n"
            "  --connect HOST:PORT     the agent (IPv4, name, or [IPv6]:port); required\n"
            "  --max-frame-size N      max-frame-size announced in HELLO (default %u)\n"
            "  --timeout-ms N          bound on every wait for the agent (default %u)\n"
            "  --healthcheck           hello: a health-check HELLO\n"
            "  --no-hello              notify, raw: skip the handshake\n"
            "  --stream-id N           notify: stream-id of the first frame (default 1)\n"
            "  --frame-id N            notify: frame-id of the first frame (default 1)\n"
            "  --frames N              notify: send N identical frames pipelined (ids +0,\n"
            "                          +1, ...), check that every ACK matches one and that\n"
            "                          all carry the same actions; print the actions once\n"
            "                          and 'acks=N reordered=K'. bench: stop after N frames\n"
            "  --empty                 notify: a NOTIFY with no message (MSGNAME omitted)\n"
            "  --idle-ms N             raw: stop reading after N ms without data (default %u)\n"
            "  --reset                 raw: close with a TCP reset right after sending\n"
            "                          (prints 'reset-sent', reads nothing)\n"
            "  --conns C, --pipeline D, --duration S, --rate R   bench, see above\n"
            "  --help                  print this help\n"
            "\n"
            "Exit status: 0 success; 1 protocol error, timeout, id mismatch, or bench\n"
            "errors; 2 bad usage.\n",
            MAX_DURATION_S, SPOP_DEFAULT_FRAME_SIZE, DEFAULT_TIMEOUT_MS, DEFAULT_IDLE_MS);
}

/* --- value parsing and printing ---------------------------------------------------- */

static const char *type_name(enum spop_type t)
{
    switch (t) {
    case SPOP_T_NULL:
        return "null";
    case SPOP_T_BOOL:
        return "bool";
    case SPOP_T_INT32:
        return "int32";
    case SPOP_T_UINT32:
        return "uint32";
    case SPOP_T_INT64:
        return "int64";
    case SPOP_T_UINT64:
        return "uint64";
    case SPOP_T_IPV4:
        return "ipv4";
    case SPOP_T_IPV6:
        return "ipv6";
    case SPOP_T_STRING:
        return "str";
    case SPOP_T_BINARY:
        return "bin";
    }
    return "?";
}

static const char *scope_name(unsigned s)
{
    static const char *const names[] = {"proc", "sess", "txn", "req", "res"};
    return s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Appends the bytes spelled by hex text s (separators ' ', ':', '_' allowed
 * between bytes) to *buf (malloc'd, grown as needed). Returns false on an odd
 * digit count or a non-hex character. */
static bool hex_append(const char *s, uint8_t **buf, size_t *len, size_t *cap)
{
    int hi = -1;
    for (; *s; s++) {
        if (*s == ' ' || *s == ':' || *s == '_' || *s == '\n' || *s == '\t') {
            if (hi >= 0) return false;
            continue;
        }
        int v = hexval((unsigned char)*s);
        if (v < 0) return false;
        if (hi < 0) {
            hi = v;
            continue;
        }
        if (*len == *cap) {
            size_t ncap = *cap ? *cap * 2 : 256;
            uint8_t *nb = realloc(*buf, ncap);
            if (!nb) {
                fail_msg("out of memory");
                exit(EXIT_FAIL);
            }
            *buf = nb;
            *cap = ncap;
        }
        (*buf)[(*len)++] = (uint8_t)(hi << 4 | v);
        hi = -1;
    }
    return hi < 0;
}

static bool parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    if (!*s || *s == '-' || *s == ' ') return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *end || v > max) return false;
    *out = v;
    return true;
}

static bool parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    if (!*s || *s == ' ') return false;
    errno = 0;
    long long v = strtoll(s, &end, 0);
    if (errno || *end || v < min || v > max) return false;
    *out = v;
    return true;
}

/* Parses "NAME=TYPE:VALUE" into kv. Strings point into arg; BINARY values are
 * decoded into a buffer that lives until exit. */
static bool parse_arg(const char *arg, struct spop_kv *kv, char **name_out)
{
    const char *eq = strchr(arg, '=');
    if (!eq) return false;
    const char *type = eq + 1;
    const char *colon = strchr(type, ':');
    size_t tlen = colon ? (size_t)(colon - type) : strlen(type);
    const char *val = colon ? colon + 1 : "";
    char tname[16];
    struct spop_data *d = &kv->value;
    uint64_t u;
    int64_t i;

    if (tlen >= sizeof(tname)) return false;
    memcpy(tname, type, tlen);
    tname[tlen] = '\0';
    *name_out = strndup(arg, (size_t)(eq - arg));
    if (!*name_out) return false;
    kv->name.ptr = *name_out;
    kv->name.len = (size_t)(eq - arg);
    memset(d, 0, sizeof(*d));

    if (strcmp(tname, "str") == 0) {
        *d = spop_data_cstr(val);
    } else if (strcmp(tname, "bin") == 0) {
        uint8_t *buf = NULL;
        size_t len = 0, cap = 0;
        if (!hex_append(val, &buf, &len, &cap)) return false;
        d->type = SPOP_T_BINARY;
        d->u.str.ptr = (const char *)buf;
        d->u.str.len = len;
    } else if (strcmp(tname, "int32") == 0) {
        if (!parse_i64(val, INT32_MIN, INT32_MAX, &i)) return false;
        d->type = SPOP_T_INT32;
        d->u.i32 = (int32_t)i;
    } else if (strcmp(tname, "uint32") == 0) {
        if (!parse_u64(val, UINT32_MAX, &u)) return false;
        d->type = SPOP_T_UINT32;
        d->u.u32 = (uint32_t)u;
    } else if (strcmp(tname, "int64") == 0) {
        if (!parse_i64(val, INT64_MIN, INT64_MAX, &i)) return false;
        d->type = SPOP_T_INT64;
        d->u.i64 = i;
    } else if (strcmp(tname, "uint64") == 0) {
        if (!parse_u64(val, UINT64_MAX, &u)) return false;
        d->type = SPOP_T_UINT64;
        d->u.u64 = u;
    } else if (strcmp(tname, "bool") == 0) {
        d->type = SPOP_T_BOOL;
        if (strcmp(val, "true") == 0 || strcmp(val, "1") == 0)
            d->u.b = true;
        else if (strcmp(val, "false") == 0 || strcmp(val, "0") == 0)
            d->u.b = false;
        else
            return false;
    } else if (strcmp(tname, "ipv4") == 0) {
        d->type = SPOP_T_IPV4;
        if (inet_pton(AF_INET, val, d->u.ipv4) != 1) return false;
    } else if (strcmp(tname, "ipv6") == 0) {
        d->type = SPOP_T_IPV6;
        if (inet_pton(AF_INET6, val, d->u.ipv6) != 1) return false;
    } else if (strcmp(tname, "null") == 0) {
        if (*val) return false;
        d->type = SPOP_T_NULL;
    } else {
        return false;
    }
    return true;
}

/* Prints bytes as text, escaping anything outside printable ASCII and the
 * backslash as \xNN, so every line stays one line and stays greppable. */
static void print_escaped(FILE *out, const char *p, size_t len)
{
    for (size_t k = 0; k < len; k++) {
        unsigned char c = (unsigned char)p[k];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            fputc(c, out);
        else
            fprintf(out, "\\x%02x", c);
    }
}

/* Prints a value as "TYPE:VALUE" (typed) or just "VALUE". */
static void print_value(FILE *out, const struct spop_data *d, bool typed)
{
    char ip[INET6_ADDRSTRLEN];
    if (typed) fprintf(out, "%s:", type_name(d->type));
    switch (d->type) {
    case SPOP_T_NULL:
        break;
    case SPOP_T_BOOL:
        fputs(d->u.b ? "true" : "false", out);
        break;
    case SPOP_T_INT32:
        fprintf(out, "%" PRId32, d->u.i32);
        break;
    case SPOP_T_UINT32:
        fprintf(out, "%" PRIu32, d->u.u32);
        break;
    case SPOP_T_INT64:
        fprintf(out, "%" PRId64, d->u.i64);
        break;
    case SPOP_T_UINT64:
        fprintf(out, "%" PRIu64, d->u.u64);
        break;
    case SPOP_T_IPV4:
        fputs(inet_ntop(AF_INET, d->u.ipv4, ip, sizeof(ip)), out);
        break;
    case SPOP_T_IPV6:
        fputs(inet_ntop(AF_INET6, d->u.ipv6, ip, sizeof(ip)), out);
        break;
    case SPOP_T_STRING:
        print_escaped(out, d->u.str.ptr, d->u.str.len);
        break;
    case SPOP_T_BINARY:
        for (size_t k = 0; k < d->u.str.len; k++)
            fprintf(out, "%02x", (unsigned char)d->u.str.ptr[k]);
        break;
    }
}

/* Prints the KV-list of a HELLO payload, one "key=value" per line (sep '\n')
 * or on one line (sep ' '). Returns false when the list is malformed. */
static bool print_kv_list(FILE *out, const uint8_t *p, size_t len, char sep)
{
    struct spop_reader r = {p, p + len};
    bool first = true;
    while (r.p < r.end) {
        struct spop_str name;
        struct spop_data v;
        if (!spop_get_str(&r, &name) || !spop_get_data(&r, &v)) return false;
        if (sep == ' ' || !first) fputc(sep, out);
        first = false;
        print_escaped(out, name.ptr, name.len);
        fputc('=', out);
        print_value(out, &v, false);
    }
    if (sep == '\n' && !first) fputc('\n', out);
    return true;
}

/* Prints the actions of an ACK payload. Returns false when it is malformed. */
static bool print_actions(FILE *out, const uint8_t *p, size_t len, size_t *nacts_out)
{
    static struct spop_action acts[SPOP_MAX_ACTIONS * 4];
    size_t nacts;
    int st = spop_ack_decode(p, len, acts, sizeof(acts) / sizeof(acts[0]), &nacts);
    if (st != SPOP_OK) return false;
    for (size_t k = 0; k < nacts; k++) {
        const struct spop_action *a = &acts[k];
        fprintf(out, "%s %s ", a->type == SPOP_ACT_SET_VAR ? "set-var" : "unset-var",
                scope_name(a->scope));
        print_escaped(out, a->name.ptr, a->name.len);
        if (a->type == SPOP_ACT_SET_VAR) {
            fputs(" = ", out);
            print_value(out, &a->value, true);
        }
        fputc('\n', out);
    }
    if (nacts_out) *nacts_out = nacts;
    return true;
}

static void print_disconnect(FILE *out, const struct spop_frame *f)
{
    struct spop_disconnect d;
    if (spop_disconnect_decode(f->payload, f->payload_len, &d) != SPOP_OK) {
        fprintf(out, "disconnect malformed\n");
        return;
    }
    fprintf(out, "disconnect status=%" PRIu32 " message=", d.status);
    print_escaped(out, d.message.ptr, d.message.len);
    fputc('\n', out);
}

/* --- sockets ----------------------------------------------------------------------- */

/* Connects to "host:port" / "[v6]:port". Returns a blocking socket with
 * TCP_NODELAY, or -1 (reported). */
static int tcp_connect(const char *spec)
{
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (!colon || colon[1] == '\0' || colon == spec) {
        fail_msg("--connect '%s': expected HOST:PORT", spec);
        return -1;
    }
    size_t hlen = (size_t)(colon - spec);
    const char *h = spec;
    if (hlen >= 2 && spec[0] == '[' && spec[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if (hlen >= sizeof(host)) {
        fail_msg("--connect '%s': host too long", spec);
        return -1;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';

    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res;
    int rc = getaddrinfo(host, colon + 1, &hints, &res);
    if (rc != 0) {
        fail_msg("--connect '%s': %s", spec, gai_strerror(rc));
        return -1;
    }
    int fd = -1, err = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            err = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
        err = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        fail_msg("connect to %s: %s", spec, strerror(err));
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static int remaining_ms(uint64_t deadline_ns)
{
    uint64_t now = now_ns();
    if (now >= deadline_ns) return 0;
    uint64_t ms = (deadline_ns - now + 999999) / 1000000;
    return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

/* Writes all of p[0..len) before the deadline. Returns 0, or an errno value
 * (ETIMEDOUT when the deadline passed). */
static int write_all(int fd, const uint8_t *p, size_t len, uint64_t deadline_ns)
{
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno != EAGAIN) return errno;
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int ms = remaining_ms(deadline_ns);
        if (ms == 0 || poll(&pfd, 1, ms) == 0) return ETIMEDOUT;
    }
    return 0;
}

/* A connection for the simple modes: frames are read one at a time. */
struct link {
    int fd;
    uint8_t *buf;
    size_t len, cap;    /* bytes held / allocated */
    size_t skip;        /* bytes of the frame returned last, dropped on the next call */
    uint32_t max_frame; /* bytes: the largest frame accepted from the agent */
    int last_errno;     /* for LINK_ERR on a socket error */
};

enum link_result { LINK_FRAME, LINK_CLOSED, LINK_RESET, LINK_TIMEOUT, LINK_ERR };

static bool link_open(struct link *l, const char *spec, uint32_t max_frame)
{
    memset(l, 0, sizeof(*l));
    l->fd = tcp_connect(spec);
    if (l->fd < 0) return false;
    l->max_frame = max_frame;
    l->cap = (size_t)max_frame + 4 > RX_MIN ? (size_t)max_frame + 4 : RX_MIN;
    l->buf = malloc(l->cap);
    if (!l->buf) {
        fail_msg("out of memory");
        close(l->fd);
        return false;
    }
    return true;
}

static void link_close(struct link *l)
{
    if (l->fd >= 0) close(l->fd);
    l->fd = -1;
    free(l->buf);
    l->buf = NULL;
}

/* Returns the next frame from the agent in *f (valid until the next call).
 * LINK_ERR covers both socket errors and bytes that are not a valid frame
 * (reported on stderr). */
static enum link_result link_next(struct link *l, struct spop_frame *f, uint64_t deadline_ns)
{
    if (l->skip) {
        memmove(l->buf, l->buf + l->skip, l->len - l->skip);
        l->len -= l->skip;
        l->skip = 0;
    }
    for (;;) {
        size_t used;
        int st = spop_frame_parse(l->buf, l->len, l->max_frame, f, &used);
        if (st == SPOP_OK) {
            l->skip = used;
            return LINK_FRAME;
        }
        if (st != SPOP_INCOMPLETE) {
            fail_msg("agent sent an unparsable frame: %s (status %d)",
                     spop_status_str((uint32_t)st), st);
            return LINK_ERR;
        }
        struct pollfd pfd = {.fd = l->fd, .events = POLLIN};
        int ms = remaining_ms(deadline_ns);
        int pr = ms ? poll(&pfd, 1, ms) : 0;
        if (pr < 0 && errno == EINTR) continue;
        if (pr == 0) return LINK_TIMEOUT;
        ssize_t n = recv(l->fd, l->buf + l->len, l->cap - l->len, MSG_DONTWAIT);
        if (n == 0) return l->len ? LINK_ERR : LINK_CLOSED;
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) continue;
            l->last_errno = errno;
            return errno == ECONNRESET ? LINK_RESET : LINK_ERR;
        }
        l->len += (size_t)n;
    }
}

static const char *link_result_str(enum link_result r)
{
    switch (r) {
    case LINK_FRAME:
        return "frame";
    case LINK_CLOSED:
        return "connection closed by the agent";
    case LINK_RESET:
        return "connection reset by the agent";
    case LINK_TIMEOUT:
        return "timeout";
    case LINK_ERR:
        return "read error or invalid frame";
    }
    return "?";
}

/* Sends HAPROXY-HELLO and reads the AGENT-HELLO into *f. On success stores the
 * negotiated frame size in *agent_max. A DISCONNECT instead is printed. */
static bool do_hello(struct link *l, const struct opts *o, bool healthcheck, struct spop_frame *f,
                     uint32_t *agent_max)
{
    uint8_t buf[512];
    struct spop_writer w;
    uint64_t deadline = now_ns() + (uint64_t)o->timeout_ms * 1000000u;

    spop_writer_init(&w, buf, sizeof(buf));
    if (!spop_haproxy_hello_encode(&w, o->max_frame_size, healthcheck ? "" : "pipelining",
                                   healthcheck)) {
        fail_msg("cannot encode HAPROXY-HELLO");
        return false;
    }
    int err = write_all(l->fd, buf, w.len, deadline);
    if (err) {
        fail_msg("sending HAPROXY-HELLO: %s", strerror(err));
        return false;
    }
    enum link_result r = link_next(l, f, deadline);
    if (r != LINK_FRAME) {
        fail_msg("waiting for AGENT-HELLO: %s", link_result_str(r));
        return false;
    }
    if (f->type == SPOP_FRAME_AGENT_DISCONNECT) {
        print_disconnect(stdout, f);
        fail_msg("agent refused the HELLO");
        return false;
    }
    if (f->type != SPOP_FRAME_AGENT_HELLO) {
        fail_msg("expected AGENT-HELLO (type 101), got frame type %u", f->type);
        return false;
    }
    if (!(f->flags & SPOP_FLAG_FIN) || f->stream_id != 0 || f->frame_id != 0) {
        fail_msg("AGENT-HELLO with flags 0x%x stream-id %" PRIu64 " frame-id %" PRIu64
                 " (expected FIN, 0, 0)",
                 f->flags, f->stream_id, f->frame_id);
        return false;
    }
    /* Check the fields HAProxy insists on. */
    struct spop_reader r2 = {f->payload, f->payload + f->payload_len};
    bool has_version = false, has_mfs = false, has_caps = false;
    uint64_t mfs = 0;
    while (r2.p < r2.end) {
        struct spop_str name;
        struct spop_data v;
        if (!spop_get_str(&r2, &name) || !spop_get_data(&r2, &v)) {
            fail_msg("malformed AGENT-HELLO payload");
            return false;
        }
        if (spop_str_eq(name, "version") && v.type == SPOP_T_STRING)
            has_version = v.u.str.len >= 2 && v.u.str.ptr[0] == '2' && v.u.str.ptr[1] == '.';
        else if (spop_str_eq(name, "max-frame-size"))
            has_mfs = spop_data_as_u64(&v, &mfs);
        else if (spop_str_eq(name, "capabilities") && v.type == SPOP_T_STRING)
            has_caps = true;
    }
    if (!has_version || !has_mfs || !has_caps) {
        fail_msg("AGENT-HELLO lacks a 2.x version, max-frame-size or capabilities");
        return false;
    }
    if (mfs > o->max_frame_size || mfs < SPOP_MIN_FRAME_SIZE) {
        fail_msg("AGENT-HELLO max-frame-size %" PRIu64 " outside %u..%" PRIu32, mfs,
                 SPOP_MIN_FRAME_SIZE, o->max_frame_size);
        return false;
    }
    *agent_max = (uint32_t)mfs;
    return true;
}

/* Sends HAPROXY-DISCONNECT (status 0) and prints the agent's DISCONNECT.
 * Frames other than DISCONNECT are reported and skipped. */
static bool do_disconnect(struct link *l, const struct opts *o)
{
    uint8_t buf[256];
    struct spop_writer w;
    struct spop_frame f;
    uint64_t deadline = now_ns() + (uint64_t)o->timeout_ms * 1000000u;

    spop_writer_init(&w, buf, sizeof(buf));
    spop_disconnect_encode(&w, SPOP_FRAME_HAPROXY_DISCONNECT, SPOP_OK, "normal");
    /* The agent may already have said goodbye and closed: its DISCONNECT is
     * then in our buffer, and the write failing is no error. */
    (void)write_all(l->fd, buf, w.len, deadline);
    for (;;) {
        enum link_result r = link_next(l, &f, deadline);
        if (r != LINK_FRAME) {
            fail_msg("waiting for AGENT-DISCONNECT: %s", link_result_str(r));
            return false;
        }
        if (f.type == SPOP_FRAME_AGENT_DISCONNECT) {
            print_disconnect(stdout, &f);
            return true;
        }
        fail_msg("unexpected frame type %u while waiting for AGENT-DISCONNECT", f.type);
        return false;
    }
}

/* --- mode: hello ------------------------------------------------------------------ */

static int mode_hello(const struct opts *o)
{
    struct link l;
    struct spop_frame f;
    uint32_t mfs;
    int rc = EXIT_FAIL;

    if (!link_open(&l, o->connect, o->max_frame_size)) return EXIT_FAIL;
    if (!do_hello(&l, o, o->healthcheck, &f, &mfs)) goto out;
    if (!print_kv_list(stdout, f.payload, f.payload_len, '\n')) {
        fail_msg("malformed AGENT-HELLO payload");
        goto out;
    }
    if (o->healthcheck) {
        /* HAProxy closes after a health check; a well-behaved agent closes too. */
        uint64_t deadline = now_ns() + (uint64_t)o->timeout_ms * 1000000u;
        enum link_result r = link_next(&l, &f, deadline);
        if (r == LINK_FRAME) {
            fail_msg("agent sent frame type %u after a health-check HELLO", f.type);
            goto out;
        }
        printf("agent-closed=%s\n", r == LINK_CLOSED || r == LINK_RESET ? "yes" : "no");
        rc = EXIT_OK;
        goto out;
    }
    rc = do_disconnect(&l, o) ? EXIT_OK : EXIT_FAIL;
out:
    fflush(stdout);
    link_close(&l);
    return rc;
}

/* --- mode: notify ------------------------------------------------------------------ */

static int mode_notify(const struct opts *o, int argc, char **argv)
{
    struct link l;
    struct spop_frame f;
    uint32_t mfs = o->max_frame_size;
    int rc = EXIT_FAIL;
    const char *msgname = NULL;
    static struct spop_kv args[255];
    char *names[255];
    unsigned nargs = 0;

    if (!o->empty) {
        if (argc < 1) die_usage("notify: MSGNAME missing");
        msgname = argv[0];
        argc--;
        argv++;
    }
    if (argc > 255) die_usage("notify: at most 255 arguments");
    for (int k = 0; k < argc; k++) {
        if (!parse_arg(argv[k], &args[nargs], &names[nargs]))
            die_usage("notify: bad argument '%s': expected NAME=TYPE:VALUE", argv[k]);
        nargs++;
    }

    if (!link_open(&l, o->connect, o->max_frame_size)) return EXIT_FAIL;
    if (!o->no_hello && !do_hello(&l, o, false, &f, &mfs)) goto out;

    /* Every frame, encoded end to end, sent with one write. */
    size_t cap = ((size_t)mfs + 4) * o->nframes;
    uint8_t *out = malloc(cap);
    bool *seen = calloc(o->nframes, sizeof(bool));
    uint8_t *first_payload = malloc((size_t)mfs + 4);
    size_t first_len = 0;
    if (!out || !seen || !first_payload) {
        fail_msg("out of memory");
        goto out_free;
    }
    struct spop_writer w;
    spop_writer_init(&w, out, cap);
    for (unsigned k = 0; k < o->nframes; k++) {
        size_t start = spop_frame_begin(&w, SPOP_FRAME_NOTIFY, SPOP_FLAG_FIN, o->stream_id + k,
                                        o->frame_id + k);
        if (msgname) {
            spop_notify_put_msg(&w, msgname, (uint8_t)nargs);
            for (unsigned a = 0; a < nargs; a++) {
                spop_put_str(&w, args[a].name.ptr, args[a].name.len);
                spop_put_data(&w, &args[a].value);
            }
        }
        if (!spop_frame_end(&w, start, mfs)) {
            fail_msg("the NOTIFY does not fit the negotiated max-frame-size (%" PRIu32 " bytes)",
                     mfs);
            goto out_free;
        }
    }
    uint64_t deadline = now_ns() + (uint64_t)o->timeout_ms * 1000000u;
    int err = write_all(l.fd, out, w.len, deadline);
    if (err) {
        fail_msg("sending NOTIFY: %s", strerror(err));
        goto out_free;
    }

    unsigned acks = 0, reordered = 0;
    while (acks < o->nframes) {
        enum link_result r = link_next(&l, &f, deadline);
        if (r != LINK_FRAME) {
            fail_msg("waiting for ACK %u of %u: %s", acks + 1, o->nframes, link_result_str(r));
            goto out_free;
        }
        if (f.type == SPOP_FRAME_AGENT_DISCONNECT) {
            print_disconnect(stdout, &f);
            fail_msg("agent disconnected with %u frame(s) unanswered", o->nframes - acks);
            goto out_free;
        }
        if (f.type != SPOP_FRAME_ACK) {
            fail_msg("expected ACK (type 103), got frame type %u", f.type);
            goto out_free;
        }
        uint64_t k = f.stream_id - o->stream_id;
        if (f.stream_id < o->stream_id || k >= o->nframes || f.frame_id != o->frame_id + k ||
            seen[k]) {
            fail_msg("ACK with stream-id %" PRIu64 " frame-id %" PRIu64
                     " matches no NOTIFY in flight",
                     f.stream_id, f.frame_id);
            goto out_free;
        }
        if (!(f.flags & SPOP_FLAG_FIN)) {
            fail_msg("ACK without the FIN flag");
            goto out_free;
        }
        seen[k] = true;
        if (k != acks) reordered++;
        if (acks == 0) {
            if (!print_actions(stdout, f.payload, f.payload_len, NULL)) {
                fail_msg("malformed ACK payload");
                goto out_free;
            }
            memcpy(first_payload, f.payload, f.payload_len);
            first_len = f.payload_len;
        } else if (f.payload_len != first_len || memcmp(f.payload, first_payload, first_len)) {
            fail_msg("ACK for stream-id %" PRIu64 " differs from the first ACK", f.stream_id);
            goto out_free;
        }
        acks++;
    }
    if (o->nframes > 1) printf("acks=%u reordered=%u\n", acks, reordered);
    rc = do_disconnect(&l, o) ? EXIT_OK : EXIT_FAIL;
out_free:
    free(out);
    free(seen);
    free(first_payload);
out:
    fflush(stdout);
    link_close(&l);
    for (unsigned a = 0; a < nargs; a++) {
        free(names[a]);
        if (args[a].value.type == SPOP_T_BINARY) free((void *)args[a].value.u.str.ptr);
    }
    return rc;
}

/* --- mode: raw ---------------------------------------------------------------------- */

static int mode_raw(const struct opts *o, int argc, char **argv)
{
    struct link l;
    struct spop_frame f;
    uint32_t mfs = o->max_frame_size;
    uint8_t *bytes = NULL;
    size_t len = 0, cap = 0;
    int rc = EXIT_FAIL;

    if (argc < 1) die_usage("raw: HEXBYTES missing");
    for (int k = 0; k < argc; k++)
        if (!hex_append(argv[k], &bytes, &len, &cap))
            die_usage("raw: '%s' is not hex bytes", argv[k]);

    if (!link_open(&l, o->connect, o->max_frame_size)) {
        free(bytes);
        return EXIT_FAIL;
    }
    if (!o->no_hello && !do_hello(&l, o, false, &f, &mfs)) goto out;
    uint64_t deadline = now_ns() + (uint64_t)o->timeout_ms * 1000000u;
    int err = write_all(l.fd, bytes, len, deadline);
    if (err) {
        /* The agent may refuse and close before reading everything. */
        fprintf(stderr, "spop-client: sending: %s\n", strerror(err));
    }
    if (o->reset) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(l.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        printf("reset-sent\n");
        rc = EXIT_OK;
        goto out;
    }
    for (;;) {
        enum link_result r = link_next(&l, &f, now_ns() + (uint64_t)o->idle_ms * 1000000u);
        if (r == LINK_CLOSED || r == LINK_RESET || r == LINK_TIMEOUT) {
            printf("%s\n", r == LINK_CLOSED ? "closed" : r == LINK_RESET ? "reset" : "idle");
            rc = EXIT_OK;
            break;
        }
        if (r == LINK_ERR) {
            printf("error\n");
            break;
        }
        switch (f.type) {
        case SPOP_FRAME_AGENT_HELLO:
            fputs("agent-hello", stdout);
            if (!print_kv_list(stdout, f.payload, f.payload_len, ' ')) fputs(" malformed", stdout);
            fputc('\n', stdout);
            break;
        case SPOP_FRAME_AGENT_DISCONNECT:
            print_disconnect(stdout, &f);
            break;
        case SPOP_FRAME_ACK: {
            static struct spop_action acts[SPOP_MAX_ACTIONS * 4];
            size_t nacts = 0;
            int st = spop_ack_decode(f.payload, f.payload_len, acts, sizeof(acts) / sizeof(acts[0]),
                                     &nacts);
            if (st != SPOP_OK) {
                printf("ack stream-id=%" PRIu64 " frame-id=%" PRIu64 " malformed\n", f.stream_id,
                       f.frame_id);
                break;
            }
            printf("ack stream-id=%" PRIu64 " frame-id=%" PRIu64 " actions=%zu\n", f.stream_id,
                   f.frame_id, nacts);
            print_actions(stdout, f.payload, f.payload_len, NULL);
            break;
        }
        default:
            printf("frame type=%u flags=0x%x stream-id=%" PRIu64 " frame-id=%" PRIu64
                   " length=%zu\n",
                   f.type, f.flags, f.stream_id, f.frame_id, f.payload_len);
            break;
        }
    }
out:
    fflush(stdout);
    link_close(&l);
    free(bytes);
    return rc;
}

/* --- mode: bench -------------------------------------------------------------------- */

/* Log-linear latency histogram over nanoseconds: values below 2^HIST_SUB_BITS
 * have a bucket each; above, each power of two is split into 2^HIST_SUB_BITS
 * buckets, so any value is known within 1/64 (1.6 %). Fixed size, no malloc. */
#define HIST_SUB_BITS 6
#define HIST_SUB      (1u << HIST_SUB_BITS)
#define HIST_BUCKETS  ((64 - HIST_SUB_BITS + 1) * HIST_SUB)

struct hist {
    uint64_t count[HIST_BUCKETS];
    uint64_t n;
    uint64_t max; /* ns */
};

static unsigned hist_index(uint64_t v)
{
    if (v < HIST_SUB) return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= HIST_SUB_BITS */
    unsigned sub = (unsigned)(v >> (e - HIST_SUB_BITS)) & (HIST_SUB - 1);
    return (e - HIST_SUB_BITS + 1) * HIST_SUB + sub;
}

/* Highest value that falls in bucket i. */
static uint64_t hist_upper(unsigned i)
{
    if (i < HIST_SUB) return i;
    unsigned e = i / HIST_SUB + HIST_SUB_BITS - 1;
    uint64_t sub = i % HIST_SUB;
    uint64_t lo = (1ull << e) | (sub << (e - HIST_SUB_BITS));
    return lo + (1ull << (e - HIST_SUB_BITS)) - 1;
}

static void hist_add(struct hist *h, uint64_t v)
{
    h->count[hist_index(v)]++;
    h->n++;
    if (v > h->max) h->max = v;
}

/* The value below which a fraction q of samples fall (bucket upper bound,
 * capped by the exact maximum). */
static uint64_t hist_quantile(const struct hist *h, double q)
{
    if (h->n == 0) return 0;
    uint64_t rank = (uint64_t)(q * (double)h->n);
    if (rank >= h->n) rank = h->n - 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->count[i];
        if (seen > rank) {
            uint64_t u = hist_upper(i);
            return u < h->max ? u : h->max;
        }
    }
    return h->max;
}

struct bslot {
    uint64_t stream_id; /* of the frame in flight in this slot */
    uint64_t sent_ns;
    bool busy;
};

struct bconn {
    int fd;
    unsigned idx;
    bool dead;
    bool want_out;        /* EPOLLOUT armed */
    uint32_t max_frame;   /* negotiated, bytes */
    uint64_t next_stream; /* stream-id of the next frame */
    uint64_t next_due_ns; /* --rate: when this connection's next frame is due */
    struct bslot *slots;  /* [pipeline]; frame-id = slot index + 1 */
    unsigned *free_slots; /* stack of free slot indexes */
    unsigned nfree;
    uint8_t *rx;
    size_t rx_len, rx_cap;
    uint8_t *tx;
    size_t tx_off, tx_len, tx_cap;
};

struct bench {
    const struct opts *o;
    int ep;
    struct bconn *conns;
    uint8_t prefix[512]; /* the NOTIFY payload up to the request id's value */
    size_t prefix_len;
    bool sending;         /* false after the deadline or --frames */
    uint64_t interval_ns; /* --rate: between two frames of one connection (0: closed loop) */
    uint64_t late;        /* --rate: frames sent after their due time (no slot was free) */
    uint64_t sent, acked, errors, lost;
    uint64_t mismatches, proto_errors;
    uint64_t last_ack_ns;
    struct hist hist;
};

static void bench_error(struct bench *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void bench_error(struct bench *b, const char *fmt, ...)
{
    /* Report the first few; count them all. */
    if (b->errors < 5) {
        va_list ap;
        va_start(ap, fmt);
        fputs("spop-client: bench: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
    b->errors++;
}

static void bconn_kill(struct bench *b, struct bconn *c)
{
    if (c->dead) return;
    c->dead = true;
    unsigned inflight = b->o->pipeline - c->nfree;
    b->lost += inflight;
    b->errors += inflight;
    epoll_ctl(b->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
}

static void put_hex(char *dst, uint64_t v, unsigned digits)
{
    static const char hex[] = "0123456789abcdef";
    for (unsigned k = digits; k-- > 0; v >>= 4)
        dst[k] = hex[v & 15];
}

/* Encodes a NOTIFY for every free slot into the transmit buffer; with --rate
 * only for frames that are due, each timed from when it was due (so a stall
 * of the agent counts for every frame it delays, not just those in flight). */
static void bconn_fill(struct bench *b, struct bconn *c, uint64_t now)
{
    if (c->tx_off == c->tx_len) {
        c->tx_off = c->tx_len = 0;
    } else if (c->tx_off) {
        memmove(c->tx, c->tx + c->tx_off, c->tx_len - c->tx_off);
        c->tx_len -= c->tx_off;
        c->tx_off = 0;
    }
    struct spop_writer w;
    spop_writer_init(&w, c->tx + c->tx_len, c->tx_cap - c->tx_len);
    while (c->nfree && b->sending) {
        if (b->o->max_frames && b->sent >= b->o->max_frames) {
            b->sending = false;
            break;
        }
        uint64_t sent_ns = now;
        if (b->interval_ns) {
            if (c->next_due_ns > now) break;
            sent_ns = c->next_due_ns;
            c->next_due_ns += b->interval_ns;
            if (now - sent_ns > b->interval_ns) b->late++;
        }
        unsigned s = c->free_slots[--c->nfree];
        struct bslot *slot = &c->slots[s];
        uint64_t sid = c->next_stream++;
        char id[24];
        put_hex(id, c->idx, 8);
        put_hex(id + 8, sid, 16);

        size_t start = spop_frame_begin(&w, SPOP_FRAME_NOTIFY, SPOP_FLAG_FIN, sid, s + 1u);
        spop_put_bytes(&w, b->prefix, b->prefix_len);
        spop_put_str(&w, id, sizeof(id));
        if (!spop_frame_end(&w, start, c->max_frame)) {
            /* Cannot happen: the buffer holds `pipeline` frames of this size. */
            fail_msg("bench: transmit buffer overflow");
            exit(EXIT_FAIL);
        }
        slot->busy = true;
        slot->stream_id = sid;
        slot->sent_ns = sent_ns;
        b->sent++;
    }
    c->tx_len += w.len;
}

/* Writes what the transmit buffer holds; arms EPOLLOUT when the socket is full. */
static void bconn_flush(struct bench *b, struct bconn *c)
{
    while (c->tx_off < c->tx_len) {
        ssize_t n = send(c->fd, c->tx + c->tx_off, c->tx_len - c->tx_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->tx_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) break;
        bench_error(b, "connection %u: write: %s", c->idx, n < 0 ? strerror(errno) : "0 bytes");
        bconn_kill(b, c);
        return;
    }
    bool want = c->tx_off < c->tx_len;
    if (want != c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
        epoll_ctl(b->ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = want;
    }
}

/* Handles every whole frame in the receive buffer. */
static void bconn_parse(struct bench *b, struct bconn *c, uint64_t now)
{
    size_t off = 0;
    while (!c->dead) {
        struct spop_frame f;
        size_t used;
        int st = spop_frame_parse(c->rx + off, c->rx_len - off, c->max_frame, &f, &used);
        if (st == SPOP_INCOMPLETE) break;
        if (st != SPOP_OK) {
            b->proto_errors++;
            bench_error(b, "connection %u: unparsable frame from the agent (%s)", c->idx,
                        spop_status_str((uint32_t)st));
            bconn_kill(b, c);
            return;
        }
        off += used;
        if (f.type != SPOP_FRAME_ACK) {
            b->proto_errors++;
            if (f.type == SPOP_FRAME_AGENT_DISCONNECT) {
                struct spop_disconnect d = {0};
                spop_disconnect_decode(f.payload, f.payload_len, &d);
                bench_error(b, "connection %u: agent disconnected: status %" PRIu32 " (%.*s)",
                            c->idx, d.status, (int)d.message.len, d.message.ptr);
                bconn_kill(b, c);
                return;
            }
            bench_error(b, "connection %u: unexpected frame type %u", c->idx, f.type);
            continue;
        }
        uint64_t s = f.frame_id - 1;
        if (f.frame_id == 0 || s >= b->o->pipeline || !c->slots[s].busy ||
            c->slots[s].stream_id != f.stream_id || f.payload_len == 0) {
            b->mismatches++;
            bench_error(b,
                        "connection %u: ACK stream-id %" PRIu64 " frame-id %" PRIu64
                        " matches no frame in flight%s",
                        c->idx, f.stream_id, f.frame_id, f.payload_len ? "" : " (or is empty)");
            continue;
        }
        struct bslot *slot = &c->slots[s];
        slot->busy = false;
        c->free_slots[c->nfree++] = (unsigned)s;
        hist_add(&b->hist, now - slot->sent_ns);
        b->acked++;
        b->last_ack_ns = now;
    }
    if (off) {
        memmove(c->rx, c->rx + off, c->rx_len - off);
        c->rx_len -= off;
    }
}

static void bconn_read(struct bench *b, struct bconn *c, uint64_t now)
{
    ssize_t n = recv(c->fd, c->rx + c->rx_len, c->rx_cap - c->rx_len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
        bench_error(b, "connection %u: %s", c->idx,
                    n == 0 ? "closed by the agent" : strerror(errno));
        bconn_kill(b, c);
        return;
    }
    c->rx_len += (size_t)n;
    bconn_parse(b, c, now);
}

/* The NOTIFY payload every bench frame shares, up to the request id's value:
 * what HAProxy sends for a proxied CONNECT. */
static bool bench_prefix(struct bench *b)
{
    struct spop_writer w;
    struct spop_data v;
    spop_writer_init(&w, b->prefix, sizeof(b->prefix));
    spop_notify_put_msg(&w, "gw-req", 5);
    v.type = SPOP_T_IPV4;
    memcpy(v.u.ipv4, b->o->bench_ip, 4);
    spop_put_kv(&w, "ip", &v);
    v = spop_data_cstr("CONNECT");
    spop_put_kv(&w, "method", &v);
    v = spop_data_cstr("example.com:443");
    spop_put_kv(&w, "authority", &v);
    v = spop_data_cstr(b->o->bench_auth);
    spop_put_kv(&w, "auth", &v);
    spop_put_str(&w, "id", 2);
    uint8_t t = SPOP_T_STRING;
    spop_put_bytes(&w, &t, 1);
    b->prefix_len = w.len;
    return !w.overflow;
}

static int mode_bench(const struct opts *o)
{
    static struct bench b; /* the histogram is large: keep it off the stack */
    b.o = o;
    if (!bench_prefix(&b)) {
        fail_msg("bench: NOTIFY template too large");
        return EXIT_FAIL;
    }
    /* header (<= SPOP_MAX_HEADER) + prefix + 1-byte length + 24-byte id */
    size_t frame_max = SPOP_MAX_HEADER + b.prefix_len + 1 + 24;
    b.ep = epoll_create1(EPOLL_CLOEXEC);
    b.conns = calloc(o->conns, sizeof(*b.conns));
    if (b.ep < 0 || !b.conns) {
        fail_msg("bench: %s", strerror(errno));
        return EXIT_FAIL;
    }

    /* Handshakes first, so the clock only measures NOTIFY traffic. */
    for (unsigned k = 0; k < o->conns; k++) {
        struct bconn *c = &b.conns[k];
        struct link l;
        struct spop_frame f;
        uint32_t mfs;
        if (!link_open(&l, o->connect, o->max_frame_size)) return EXIT_FAIL;
        if (!do_hello(&l, o, false, &f, &mfs)) {
            link_close(&l);
            return EXIT_FAIL;
        }
        c->fd = l.fd;
        l.fd = -1;
        link_close(&l);
        if (frame_max > mfs) {
            fail_msg("bench: agent's max-frame-size %" PRIu32 " is too small", mfs);
            return EXIT_FAIL;
        }
        c->idx = k;
        c->max_frame = mfs;
        c->next_stream = 1;
        c->slots = calloc(o->pipeline, sizeof(*c->slots));
        c->free_slots = calloc(o->pipeline, sizeof(*c->free_slots));
        c->rx_cap = (size_t)mfs + 4 > RX_MIN ? (size_t)mfs + 4 : RX_MIN;
        c->rx = malloc(c->rx_cap);
        c->tx_cap = frame_max * o->pipeline;
        c->tx = malloc(c->tx_cap);
        if (!c->slots || !c->free_slots || !c->rx || !c->tx) {
            fail_msg("bench: out of memory");
            return EXIT_FAIL;
        }
        for (unsigned s = 0; s < o->pipeline; s++)
            c->free_slots[s] = o->pipeline - 1 - s;
        c->nfree = o->pipeline;
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(b.ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
            fail_msg("bench: epoll_ctl: %s", strerror(errno));
            return EXIT_FAIL;
        }
    }

    uint64_t start = now_ns();
    uint64_t end = start + (uint64_t)(o->duration_s * 1e9);
    uint64_t drain_end = 0;
    b.sending = true;
    b.last_ack_ns = start;
    if (o->rate > 0) {
        /* Each connection carries rate/conns frames/s, the connections
         * staggered evenly over one interval. */
        b.interval_ns = (uint64_t)(1e9 * o->conns / o->rate);
        if (!b.interval_ns) b.interval_ns = 1;
        for (unsigned k = 0; k < o->conns; k++)
            b.conns[k].next_due_ns = start + b.interval_ns * k / o->conns;
    }
    for (unsigned k = 0; k < o->conns; k++) {
        bconn_fill(&b, &b.conns[k], now_ns());
        bconn_flush(&b, &b.conns[k]);
    }

    struct epoll_event evs[64];
    for (;;) {
        uint64_t now = now_ns();
        if (b.sending && (now >= end || (o->max_frames && b.sent >= o->max_frames)))
            b.sending = false;
        if (!b.sending) {
            if (b.acked + b.lost + b.mismatches >= b.sent)
                break; /* everything answered (or accounted for) */
            if (!drain_end) drain_end = now + (uint64_t)o->timeout_ms * 1000000u;
            if (now >= drain_end) break;
        }
        uint64_t until = b.sending ? end : drain_end;
        if (b.sending && b.interval_ns)
            for (unsigned k = 0; k < o->conns; k++)
                if (!b.conns[k].dead && b.conns[k].nfree && b.conns[k].next_due_ns < until)
                    until = b.conns[k].next_due_ns;
        struct timespec ts = {0, 0};
        if (until > now) {
            ts.tv_sec = (time_t)((until - now) / 1000000000u);
            ts.tv_nsec = (long)((until - now) % 1000000000u);
        }
        int n = epoll_pwait2(b.ep, evs, 64, &ts, NULL);
        if (n < 0 && errno != EINTR) {
            fail_msg("bench: epoll_pwait2: %s", strerror(errno));
            return EXIT_FAIL;
        }
        now = now_ns();
        for (int k = 0; k < n; k++) {
            struct bconn *c = evs[k].data.ptr;
            if (c->dead) continue;
            if (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) bconn_read(&b, c, now);
            if (c->dead) continue;
            if (b.sending && c->nfree) bconn_fill(&b, c, now_ns());
            bconn_flush(&b, c);
        }
        if (b.sending && b.interval_ns) {
            now = now_ns();
            for (unsigned k = 0; k < o->conns; k++) {
                struct bconn *c = &b.conns[k];
                if (c->dead || !c->nfree || c->next_due_ns > now) continue;
                bconn_fill(&b, c, now);
                bconn_flush(&b, c);
            }
        }
    }

    /* Unanswered frames after the drain timeout are errors. */
    uint64_t missing = b.sent - b.acked - b.lost - b.mismatches;
    if (missing) {
        bench_error(&b, "%" PRIu64 " frame(s) still unanswered after %u ms", missing,
                    o->timeout_ms);
        b.errors += missing - 1;
    }
    double secs = (double)(b.last_ack_ns - start) / 1e9;
    if (secs <= 0) secs = 1e-9;
    double rate = (double)b.acked / secs;

    /* Say goodbye politely; the agent's answers are not waited for long. */
    uint8_t bye[128];
    struct spop_writer w;
    spop_writer_init(&w, bye, sizeof(bye));
    spop_disconnect_encode(&w, SPOP_FRAME_HAPROXY_DISCONNECT, SPOP_OK, "normal");
    for (unsigned k = 0; k < o->conns; k++) {
        struct bconn *c = &b.conns[k];
        if (!c->dead) {
            fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) & ~O_NONBLOCK);
            if (send(c->fd, bye, w.len, MSG_NOSIGNAL) == (ssize_t)w.len) shutdown(c->fd, SHUT_WR);
        }
    }
    uint64_t bye_end = now_ns() + 1000000000u;
    for (unsigned k = 0; k < o->conns; k++) {
        struct bconn *c = &b.conns[k];
        if (c->dead) continue;
        /* Read until the agent closes (its DISCONNECT is in there). */
        for (;;) {
            struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
            int ms = remaining_ms(bye_end);
            if (ms == 0 || poll(&pfd, 1, ms) <= 0) break;
            uint8_t sink[4096];
            ssize_t r = recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT);
            if (r <= 0 && !(r < 0 && errno == EINTR)) break;
        }
        close(c->fd);
    }

    double us = 1e3;
    printf("frames=%" PRIu64 " seconds=%.3f rate=%.0f p50_us=%.1f p99_us=%.1f p999_us=%.1f "
           "max_us=%.1f errors=%" PRIu64 " conns=%u pipeline=%u offered=%.0f late=%" PRIu64 "\n",
           b.acked, secs, rate, (double)hist_quantile(&b.hist, 0.50) / us,
           (double)hist_quantile(&b.hist, 0.99) / us, (double)hist_quantile(&b.hist, 0.999) / us,
           (double)b.hist.max / us, b.errors, o->conns, o->pipeline, o->rate, b.late);
    printf("# %u conns x %u in flight, %.2f s: %" PRIu64 " frames, %.0f frames/s; latency p50 "
           "%.1f us, p99 %.1f us, p99.9 %.1f us, max %.1f us; %" PRIu64 " errors (%" PRIu64
           " id mismatches, %" PRIu64 " protocol, %" PRIu64 " lost)\n",
           o->conns, o->pipeline, secs, b.acked, rate, (double)hist_quantile(&b.hist, 0.50) / us,
           (double)hist_quantile(&b.hist, 0.99) / us, (double)hist_quantile(&b.hist, 0.999) / us,
           (double)b.hist.max / us, b.errors, b.mismatches, b.proto_errors, b.lost);
    fflush(stdout);
    for (unsigned k = 0; k < o->conns; k++) {
        free(b.conns[k].slots);
        free(b.conns[k].free_slots);
        free(b.conns[k].rx);
        free(b.conns[k].tx);
    }
    free(b.conns);
    close(b.ep);
    return b.errors ? EXIT_FAIL : EXIT_OK;
}

/* --- main ---------------------------------------------------------------------------- */

enum opt_id {
    O_CONNECT = 1000,
    O_MAX_FRAME,
    O_TIMEOUT,
    O_IDLE,
    O_HEALTH,
    O_NO_HELLO,
    O_RESET,
    O_EMPTY,
    O_STREAM,
    O_FRAME,
    O_FRAMES,
    O_CONNS,
    O_PIPELINE,
    O_DURATION,
    O_RATE,
    O_BENCH_IP,
    O_BENCH_AUTH,
};

static uint64_t opt_u64(const char *name, const char *s, uint64_t min, uint64_t max)
{
    uint64_t v;
    if (!parse_u64(s, max, &v) || v < min)
        die_usage("--%s '%s': expected an integer in %" PRIu64 "..%" PRIu64, name, s, min, max);
    return v;
}

/* Applies one option; `frames` is shared by notify (count) and bench (limit). */
static void apply_opt(struct opts *o, int c, const char *arg, uint64_t *frames)
{
    switch (c) {
    case O_CONNECT:
        o->connect = arg;
        break;
    case O_MAX_FRAME:
        o->max_frame_size =
            (uint32_t)opt_u64("max-frame-size", arg, SPOP_MIN_FRAME_SIZE, 16u * 1024 * 1024);
        break;
    case O_TIMEOUT:
        o->timeout_ms = (unsigned)opt_u64("timeout-ms", arg, 1, 600000);
        break;
    case O_IDLE:
        o->idle_ms = (unsigned)opt_u64("idle-ms", arg, 1, 600000);
        break;
    case O_HEALTH:
        o->healthcheck = true;
        break;
    case O_NO_HELLO:
        o->no_hello = true;
        break;
    case O_RESET:
        o->reset = true;
        break;
    case O_EMPTY:
        o->empty = true;
        break;
    case O_STREAM:
        o->stream_id = opt_u64("stream-id", arg, 0, UINT64_MAX / 2);
        break;
    case O_FRAME:
        o->frame_id = opt_u64("frame-id", arg, 0, UINT64_MAX / 2);
        break;
    case O_FRAMES:
        *frames = opt_u64("frames", arg, 1, UINT64_MAX / 2);
        break;
    case O_CONNS:
        o->conns = (unsigned)opt_u64("conns", arg, 1, MAX_CONNS);
        break;
    case O_PIPELINE:
        o->pipeline = (unsigned)opt_u64("pipeline", arg, 1, MAX_PIPELINE);
        break;
    case O_BENCH_IP:
        if (inet_pton(AF_INET, arg, o->bench_ip) != 1)
            die_usage("--ip '%s': expected an IPv4 address", arg);
        break;
    case O_BENCH_AUTH:
        o->bench_auth = arg;
        break;
    case O_RATE: {
        char *end;
        errno = 0;
        double r = strtod(arg, &end);
        if (errno || *end || !(r > 0) || r > 1e8)
            die_usage("--rate '%s': expected frames per second in (0, 1e8]", arg);
        o->rate = r;
        break;
    }
    case O_DURATION: {
        char *end;
        errno = 0;
        double d = strtod(arg, &end);
        if (errno || *end || !(d > 0) || d > MAX_DURATION_S)
            die_usage("--duration '%s': expected seconds in (0, %d]", arg, MAX_DURATION_S);
        o->duration_s = d;
        break;
    }
    default:
        usage(stderr);
        exit(EXIT_USAGE);
    }
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"connect", required_argument, NULL, O_CONNECT},
        {"max-frame-size", required_argument, NULL, O_MAX_FRAME},
        {"timeout-ms", required_argument, NULL, O_TIMEOUT},
        {"idle-ms", required_argument, NULL, O_IDLE},
        {"healthcheck", no_argument, NULL, O_HEALTH},
        {"no-hello", no_argument, NULL, O_NO_HELLO},
        {"reset", no_argument, NULL, O_RESET},
        {"empty", no_argument, NULL, O_EMPTY},
        {"stream-id", required_argument, NULL, O_STREAM},
        {"frame-id", required_argument, NULL, O_FRAME},
        {"frames", required_argument, NULL, O_FRAMES},
        {"conns", required_argument, NULL, O_CONNS},
        {"pipeline", required_argument, NULL, O_PIPELINE},
        {"duration", required_argument, NULL, O_DURATION},
        {"rate", required_argument, NULL, O_RATE},
        {"ip", required_argument, NULL, O_BENCH_IP},
        {"auth", required_argument, NULL, O_BENCH_AUTH},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    struct opts o = {
        .max_frame_size = SPOP_DEFAULT_FRAME_SIZE,
        .timeout_ms = DEFAULT_TIMEOUT_MS,
        .idle_ms = DEFAULT_IDLE_MS,
        .stream_id = 1,
        .frame_id = 1,
        .nframes = 1,
        .conns = 4,
        .pipeline = 32,
        .duration_s = 5,
        .bench_ip = {192, 0, 2, 10},
        .bench_auth = "Basic bXl1c2VyOm15cGFzc3dvcmQ=",
    };
    uint64_t frames = 0;
    int c;

    /* GNU getopt permutes: options may come before or after the mode word.
     * Positional arguments (NAME=TYPE:VALUE, hex) never start with '-'; "--"
     * ends the options for a MSGNAME that would. */
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return EXIT_OK;
        }
        apply_opt(&o, c, optarg, &frames);
    }
    if (optind >= argc) die_usage("MODE missing (hello, notify, raw or bench)");
    const char *mode = argv[optind++];
    int npos = argc - optind;
    char **pos = argv + optind;

    if (!o.connect) die_usage("--connect HOST:PORT is required");
    signal(SIGPIPE, SIG_IGN);

    if (strcmp(mode, "hello") == 0) {
        if (npos) die_usage("hello: unexpected argument '%s'", pos[0]);
        return mode_hello(&o);
    }
    if (strcmp(mode, "notify") == 0) {
        if (frames > MAX_NOTIFY_FRAMES) die_usage("notify: --frames at most %d", MAX_NOTIFY_FRAMES);
        if (frames) o.nframes = (unsigned)frames;
        return mode_notify(&o, npos, pos);
    }
    if (strcmp(mode, "raw") == 0) return mode_raw(&o, npos, pos);
    if (strcmp(mode, "bench") == 0) {
        if (npos) die_usage("bench: unexpected argument '%s'", pos[0]);
        o.max_frames = frames;
        return mode_bench(&o);
    }
    die_usage("unknown mode '%s'", mode);
}
