/*
 * upstream: a stand-in for a residential proxy provider, used by the gateway's
 * end-to-end tests, the local demo stack and the benchmarks.
 *
 * It is an HTTP/1.1 forward proxy listening on one or more ports (providers
 * expose port ranges). Every request must carry Basic proxy credentials that
 * match a --password or --user rule (407 otherwise), and every request head is
 * recorded as one line "<listen port> <method> <target> <username>" in the
 * --record file, so a test can assert on the username the gateway rendered
 * (country, session, sessTime) and on the port it picked. Absolute-form
 * requests are forwarded in origin form to loopback origins only, with bodies
 * streamed both ways (Content-Length, chunked, or until close) and HTTP/1.1
 * keep-alive on the client side; each response gains "X-Upstream: name:port".
 * CONNECT opens a raw relay to a loopback target. --mode makes it misbehave the
 * way real providers do (refuse every credential, reset, stall), for the
 * gateway's 502 tests.
 *
 * For the gateway's keep-alive tests: --record-conns appends to each record
 * line the number of the client connection that carried the request (1, 2...
 * in accept order, never reused while the process lives), so a test can tell
 * which requests shared a gateway-to-provider connection; --idle-close closes
 * a client connection left idle between requests that long, and
 * --close-after-response closes it after every response, as providers do;
 * --drop-after N resets a connection when a request arrives after N answered
 * ones, unanswered: what a client sees when a provider's idle close crosses
 * its request, made certain instead of left to timing.
 *
 * One thread, one libev loop. Each connection is a small state machine that
 * moves bytes through two fixed 64 KiB buffers (one per direction): memory per
 * connection is bounded whatever the message sizes, and a head is at most
 * 16 KiB. Everything here is file-local: the binary links alone or with the
 * agent's objects.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define BUF_SIZE      (64 * 1024) /* per direction, bytes */
#define HEAD_MAX      (16 * 1024) /* request or response head, bytes */
#define OUT_HEAD_MAX  (HEAD_MAX * 3)
#define MAX_HEADERS   128
#define MAX_LISTENERS 1024
#define MAX_RULES     64
#define LINGER_S      2.0 /* how long a closing connection drains the client */
#define STEP_ROUNDS   16  /* I/O rounds per event before yielding to others */

enum mode { MODE_OK, MODE_REFUSE_AUTH, MODE_RESET, MODE_STALL };

struct listener {
    int fd;
    unsigned port;
    ev_io w;
};

static struct {
    const char *name;
    enum mode mode;
    int record_fd;
    bool verbose;
    bool record_conns;         /* append the connection number to record lines */
    double idle_close;         /* seconds idle between requests before closing; 0: never */
    bool close_after_response; /* "Connection: close" and close after every response */
    uint64_t drop_after;       /* requests answered per connection before a reset; 0: no limit */
    const char *passwords[MAX_RULES];
    int npasswords;
    const char *users[MAX_RULES]; /* "user:pass" */
    int nusers;
    const char *resolve[MAX_RULES]; /* "name:loopback address" */
    int nresolve;
    struct listener ls[MAX_LISTENERS];
    int nls;
    struct ev_loop *loop;
    ev_timer accept_pause;
} cfg = {.name = "upstream", .record_fd = -1};

static struct {
    uint64_t conns, live, requests, tunnels, refused_auth, local_errors, idle_closes;
    uint64_t bytes_up, bytes_down; /* client->target, target->client */
} st;

static void ulog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void ulog(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    int n = snprintf(line, sizeof line, "upstream[%s]: ", cfg.name);
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}

/* --- byte buffers ------------------------------------------------------------------ */

/* Data lives in p[r, w); cap is fixed for the relay buffers, grows for heads. */
struct buf {
    char *p;
    size_t r, w, cap;
};

static size_t buf_len(const struct buf *b)
{
    return b->w - b->r;
}

/* Free space at the tail; moves the data to the front when that frees enough. */
static size_t buf_room(struct buf *b)
{
    if (b->r == b->w) {
        b->r = b->w = 0;
    } else if (b->r > 0 && b->cap - b->w < b->cap / 2) {
        memmove(b->p, b->p + b->r, b->w - b->r);
        b->w -= b->r;
        b->r = 0;
    }
    return b->cap - b->w;
}

/* Append to a growable head buffer; false when it would exceed OUT_HEAD_MAX. */
static bool buf_put(struct buf *b, const void *data, size_t n)
{
    if (b->r == b->w) b->r = b->w = 0;
    if (b->w + n > b->cap) {
        size_t need = b->w + n, cap = b->cap ? b->cap : 1024;
        if (need > OUT_HEAD_MAX) return false;
        while (cap < need)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return false;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->w, data, n);
    b->w += n;
    return true;
}

static bool buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool buf_printf(struct buf *b, const char *fmt, ...)
{
    char tmp[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) return false;
    return buf_put(b, tmp, (size_t)n);
}

/* --- HTTP/1.x heads ---------------------------------------------------------------- */

struct hdr {
    const char *name, *val;
    size_t nlen, vlen;
};

/* A parsed head; every pointer points into the bytes that were parsed. */
struct msg {
    const char *part[3]; /* request: method, target, version; response: version, status, reason */
    size_t plen[3];
    int minor;  /* HTTP/1.<minor> */
    int status; /* responses */
    struct hdr h[MAX_HEADERS];
    int nh;
};

static bool is_tchar(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static bool span_eq(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(s, lit, n) == 0;
}

static bool parse_version(const char *s, size_t n, int *minor)
{
    if (n != 8 || memcmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1')) return false;
    *minor = s[7] - '0';
    return true;
}

static bool parse_start_line(const char *s, size_t n, struct msg *m, bool request)
{
    const char *sp1 = memchr(s, ' ', n);
    if (!sp1 || sp1 == s) return false;
    m->part[0] = s;
    m->plen[0] = (size_t)(sp1 - s);
    const char *rest = sp1 + 1;
    size_t rn = n - m->plen[0] - 1;
    if (request) {
        const char *sp2 = memchr(rest, ' ', rn);
        if (!sp2 || sp2 == rest) return false;
        m->part[1] = rest;
        m->plen[1] = (size_t)(sp2 - rest);
        m->part[2] = sp2 + 1;
        m->plen[2] = rn - m->plen[1] - 1;
        for (size_t i = 0; i < m->plen[0]; i++)
            if (!is_tchar((unsigned char)s[i])) return false;
        for (size_t i = 0; i < m->plen[1]; i++)
            if ((unsigned char)m->part[1][i] <= ' ' || (unsigned char)m->part[1][i] == 0x7f)
                return false;
        return parse_version(m->part[2], m->plen[2], &m->minor);
    }
    if (!parse_version(m->part[0], m->plen[0], &m->minor) || rn < 3) return false;
    for (int i = 0; i < 3; i++)
        if (rest[i] < '0' || rest[i] > '9') return false;
    if (rn > 3 && rest[3] != ' ') return false;
    m->part[1] = rest;
    m->plen[1] = 3;
    m->status = (rest[0] - '0') * 100 + (rest[1] - '0') * 10 + (rest[2] - '0');
    m->part[2] = rn > 3 ? rest + 4 : rest + 3;
    m->plen[2] = rn > 3 ? rn - 4 : 0;
    return m->status >= 100;
}

/*
 * Parse one head at p[0, n). Returns its length (through the blank line) when
 * complete, 0 when more bytes are needed, -1 when malformed, -2 when larger
 * than HEAD_MAX or MAX_HEADERS. Lines end in CRLF (a bare LF is tolerated).
 */
static long parse_head(const char *p, size_t n, struct msg *m, bool request)
{
    size_t pos = 0;
    int line = 0;
    m->nh = 0;
    for (;;) {
        const char *nl = memchr(p + pos, '\n', n - pos);
        if (!nl) return n >= HEAD_MAX ? -2 : 0;
        size_t end = (size_t)(nl - p), len = end - pos;
        if (end + 1 > HEAD_MAX) return -2;
        if (len && p[pos + len - 1] == '\r') len--;
        const char *s = p + pos;
        if (line == 0) {
            if (!parse_start_line(s, len, m, request)) return -1;
        } else if (len == 0) {
            return (long)(end + 1);
        } else {
            const char *colon = memchr(s, ':', len);
            if (!colon || colon == s) return -1; /* also rejects obs-fold lines (leading space) */
            size_t nlen = (size_t)(colon - s);
            for (size_t i = 0; i < nlen; i++)
                if (!is_tchar((unsigned char)s[i])) return -1;
            const char *v = colon + 1, *ve = s + len;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            for (const char *q = v; q < ve; q++)
                if ((*q == '\r') || *q == '\0') return -1;
            if (m->nh == MAX_HEADERS) return -2;
            m->h[m->nh++] = (struct hdr){s, v, nlen, (size_t)(ve - v)};
        }
        line++;
        pos = end + 1;
    }
}

static const struct hdr *msg_find(const struct msg *m, const char *name)
{
    for (int i = 0; i < m->nh; i++)
        if (span_eq(m->h[i].name, m->h[i].nlen, name)) return &m->h[i];
    return NULL;
}

/* Does any header `name` hold `token` in its comma-separated list? */
static bool msg_has_token(const struct msg *m, const char *name, const char *token)
{
    for (int i = 0; i < m->nh; i++) {
        if (!span_eq(m->h[i].name, m->h[i].nlen, name)) continue;
        const char *v = m->h[i].val, *e = v + m->h[i].vlen;
        while (v < e) {
            const char *c = memchr(v, ',', (size_t)(e - v));
            const char *te = c ? c : e, *ts = v;
            while (ts < te && (*ts == ' ' || *ts == '\t'))
                ts++;
            const char *tz = te;
            while (tz > ts && (tz[-1] == ' ' || tz[-1] == '\t'))
                tz--;
            if (span_eq(ts, (size_t)(tz - ts), token)) return true;
            v = c ? c + 1 : e;
        }
    }
    return false;
}

/* Is "chunked" the last transfer coding of the last Transfer-Encoding header? */
static bool te_is_chunked(const struct hdr *h)
{
    const char *v = h->val, *e = v + h->vlen, *s = e;
    while (s > v && s[-1] != ',')
        s--;
    while (s < e && (*s == ' ' || *s == '\t'))
        s++;
    return span_eq(s, (size_t)(e - s), "chunked");
}

/* --- message bodies ---------------------------------------------------------------- */

enum {
    CK_SIZE,
    CK_EXT,
    CK_SIZE_LF,
    CK_DATA,
    CK_DATA_CR,
    CK_DATA_LF,
    CK_TRL,
    CK_TRL_LINE,
    CK_TRL_LF,
    CK_DONE
};

/* Incremental chunked-coding parser; zero-initialised it expects a chunk size. */
struct chunked {
    int st;
    int digits;
    uint64_t left; /* bytes of chunk data still to come */
};

static int hexval(unsigned char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/*
 * Feed p[0, n) to the parser. Returns how many bytes belong to the chunked
 * body (stops at its end, ck->st == CK_DONE), -1 when malformed. When it stops
 * on chunk data, *dlen bytes of data start at p[*doff] and end the consumed
 * span; otherwise *dlen is 0.
 */
static long chunked_feed(struct chunked *ck, const char *p, size_t n, size_t *doff, size_t *dlen)
{
    size_t i = 0;
    *dlen = 0;
    while (i < n && ck->st != CK_DONE) {
        unsigned char ch = (unsigned char)p[i];
        bool size_done = false;
        switch (ck->st) {
        case CK_SIZE: {
            int v = hexval(ch);
            if (v >= 0) {
                if (ck->digits >= 15) return -1;
                ck->left = ck->left * 16 + (uint64_t)v;
                ck->digits++;
            } else if (ck->digits == 0) {
                return -1;
            } else if (ch == ';' || ch == ' ' || ch == '\t') {
                ck->st = CK_EXT;
            } else if (ch == '\r') {
                ck->st = CK_SIZE_LF;
            } else if (ch == '\n') {
                size_done = true;
            } else {
                return -1;
            }
            i++;
            break;
        }
        case CK_EXT:
            if (ch == '\n')
                size_done = true;
            else if (ch == '\r')
                ck->st = CK_SIZE_LF;
            i++;
            break;
        case CK_SIZE_LF:
            if (ch != '\n') return -1;
            size_done = true;
            i++;
            break;
        case CK_DATA: {
            size_t k = n - i;
            if (k > ck->left) k = (size_t)ck->left;
            *doff = i;
            *dlen = k;
            ck->left -= k;
            if (ck->left == 0) ck->st = CK_DATA_CR;
            return (long)(i + k);
        }
        case CK_DATA_CR:
            if (ch == '\r')
                ck->st = CK_DATA_LF;
            else if (ch == '\n')
                ck->st = CK_SIZE, ck->digits = 0;
            else
                return -1;
            i++;
            break;
        case CK_DATA_LF:
            if (ch != '\n') return -1;
            ck->st = CK_SIZE;
            ck->digits = 0;
            i++;
            break;
        case CK_TRL:
            ck->st = ch == '\r' ? CK_TRL_LF : ch == '\n' ? CK_DONE : CK_TRL_LINE;
            i++;
            break;
        case CK_TRL_LINE:
            if (ch == '\n') ck->st = CK_TRL;
            i++;
            break;
        case CK_TRL_LF:
            if (ch != '\n') return -1;
            ck->st = CK_DONE;
            i++;
            break;
        default:
            return -1;
        }
        if (size_done) ck->st = ck->left ? CK_DATA : CK_TRL;
    }
    return (long)i;
}

enum body_mode { BM_NONE, BM_LENGTH, BM_CHUNKED, BM_CLOSE };

struct body {
    enum body_mode mode;
    uint64_t left; /* BM_LENGTH: bytes still to come */
    struct chunked ck;
    bool done;
};

/* How many of p[0, n) belong to the body; -1 when the chunked coding is broken. */
static long body_take(struct body *b, const char *p, size_t n)
{
    size_t used = 0, doff, dlen;
    switch (b->mode) {
    case BM_NONE:
        b->done = true;
        return 0;
    case BM_LENGTH:
        used = n < b->left ? n : (size_t)b->left;
        b->left -= used;
        b->done = b->left == 0;
        return (long)used;
    case BM_CHUNKED:
        while (used < n && b->ck.st != CK_DONE) {
            long k = chunked_feed(&b->ck, p + used, n - used, &doff, &dlen);
            if (k < 0) return -1;
            used += (size_t)k;
        }
        b->done = b->ck.st == CK_DONE;
        return (long)used;
    case BM_CLOSE:
        return (long)n;
    }
    return -1;
}

static bool parse_u64(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 18) return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

/*
 * Body framing from the headers. Requests: chunked, Content-Length or none;
 * both, or a non-chunked coding, or conflicting lengths are refused (-1).
 * Responses: a non-chunked coding or no framing means "until close".
 */
static int body_framing(const struct msg *m, bool request, struct body *b)
{
    const struct hdr *te = NULL;
    bool has_cl = false;
    uint64_t cl = 0, v;
    memset(b, 0, sizeof *b);
    for (int i = 0; i < m->nh; i++) {
        const struct hdr *h = &m->h[i];
        if (span_eq(h->name, h->nlen, "transfer-encoding")) {
            te = h;
        } else if (span_eq(h->name, h->nlen, "content-length")) {
            if (!parse_u64(h->val, h->vlen, &v) || (has_cl && v != cl)) return -1;
            has_cl = true;
            cl = v;
        }
    }
    if (te) {
        if (request && (has_cl || !te_is_chunked(te))) return -1;
        b->mode = te_is_chunked(te) ? BM_CHUNKED : BM_CLOSE;
    } else if (has_cl) {
        b->mode = cl ? BM_LENGTH : BM_NONE;
        b->left = cl;
    } else {
        b->mode = request ? BM_NONE : BM_CLOSE;
    }
    b->done = b->mode == BM_NONE;
    return 0;
}

/* --- credentials and targets ------------------------------------------------------- */

static int b64val(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '+') return 62;
    if (ch == '/') return 63;
    return -1;
}

/* Strict base64 (padding optional) into out[0, cap); the length or -1. */
static long b64_decode(const char *s, size_t n, char *out, size_t cap)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0, i = 0;
    for (; i < n && s[i] != '='; i++) {
        int v = b64val((unsigned char)s[i]);
        if (v < 0) return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o == cap) return -1;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    for (; i < n; i++)
        if (s[i] != '=') return -1;
    return (long)o;
}

/*
 * The username from Proxy-Authorization (into user, NUL-terminated) and
 * whether the credentials pass the rules. No rule at all accepts any
 * well-formed Basic credentials. user is "-" when there are none.
 */
static bool auth_check(const struct msg *m, char *user, size_t cap)
{
    char dec[1024];
    snprintf(user, cap, "-");
    const struct hdr *h = msg_find(m, "proxy-authorization");
    if (!h || h->vlen < 6 || strncasecmp(h->val, "basic ", 6) != 0) return false;
    const char *v = h->val + 6;
    size_t vn = h->vlen - 6;
    while (vn && *v == ' ')
        v++, vn--;
    long n = b64_decode(v, vn, dec, sizeof dec - 1);
    if (n < 0) return false;
    dec[n] = '\0';
    char *colon = memchr(dec, ':', (size_t)n);
    if (!colon) return false;
    *colon = '\0';
    snprintf(user, cap, "%s", dec);
    const char *pass = colon + 1;
    if (cfg.npasswords == 0 && cfg.nusers == 0) return true;
    for (int i = 0; i < cfg.npasswords; i++)
        if (strlen(pass) == (size_t)(n - (colon + 1 - dec)) && strcmp(pass, cfg.passwords[i]) == 0)
            return true;
    *colon = ':';
    for (int i = 0; i < cfg.nusers; i++)
        if (strlen(cfg.users[i]) == (size_t)n && memcmp(cfg.users[i], dec, (size_t)n) == 0)
            return true;
    return false;
}

/* Copy s[0, n) into out for one record field: bytes outside 0x21-0x7e become %XX. */
static size_t field_escape(char *out, size_t cap, const char *s, size_t n)
{
    size_t o = 0;
    if (n == 0 && cap > 1) out[o++] = '-';
    for (size_t i = 0; i < n && o + 4 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch > 0x20 && ch < 0x7f && ch != '%') {
            out[o++] = (char)ch;
        } else {
            o += (size_t)snprintf(out + o, cap - o, "%%%02X", ch);
        }
    }
    out[o] = '\0';
    return o;
}

/* One record line; conn_id is the client connection's number (--record-conns). */
static void record_request(unsigned port, uint64_t conn_id, const struct msg *m, const char *user)
{
    if (cfg.record_fd < 0 && !cfg.verbose) return;
    char method[64], target[4200], u[3200], id[32] = "", line[8192];
    field_escape(method, sizeof method, m->part[0], m->plen[0]);
    field_escape(target, sizeof target, m->part[1], m->plen[1]);
    if (strcmp(user, "-") == 0)
        snprintf(u, sizeof u, "-");
    else
        field_escape(u, sizeof u, user, strlen(user));
    if (cfg.record_conns) snprintf(id, sizeof id, " %llu", (unsigned long long)conn_id);
    int n = snprintf(line, sizeof line, "%u %s %s %s%s\n", port, method, target, u, id);
    if (n < 0 || (size_t)n >= sizeof line) n = (int)sizeof line - 1, line[n - 1] = '\n';
    if (cfg.verbose) fprintf(stderr, "upstream[%s]: %.*s", cfg.name, n, line);
    /* One write per line with O_APPEND: lines are whole and visible at once. */
    if (cfg.record_fd >= 0 && write(cfg.record_fd, line, (size_t)n) != n)
        ulog("record write failed: %s", strerror(errno));
}

/*
 * Split an authority "host[:port]" ("[v6]:port" for IPv6) and map host to a
 * loopback address. Returns 0, -1 when malformed (400), -2 when not loopback
 * (403). need_port: CONNECT requires one; absolute-form defaults to 80.
 */
static int target_addr(const char *a, size_t n, bool need_port, struct sockaddr_storage *ss,
                       socklen_t *sslen)
{
    char host[256];
    const char *hs = a, *he, *pp = NULL;
    if (n == 0) return -1;
    if (a[0] == '[') {
        const char *rb = memchr(a, ']', n);
        if (!rb) return -1;
        hs = a + 1;
        he = rb;
        if (rb + 1 < a + n) {
            if (rb[1] != ':') return -1;
            pp = rb + 2;
        }
    } else {
        const char *colon = memchr(a, ':', n);
        he = colon ? colon : a + n;
        if (colon) pp = colon + 1;
    }
    size_t hl = (size_t)(he - hs);
    if (hl == 0 || hl >= sizeof host) return -1;
    memcpy(host, hs, hl);
    host[hl] = '\0';
    uint64_t port = 80;
    if (pp) {
        if (!parse_u64(pp, (size_t)(a + n - pp), &port) || port == 0 || port > 65535) return -1;
    } else if (need_port) {
        return -1;
    }
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (strcasecmp(host, "localhost") == 0) snprintf(host, sizeof host, "127.0.0.1");
    /* --resolve NAME:ADDR stands a name on the Internet in for a loopback origin. */
    for (int i = 0; i < cfg.nresolve && a[0] != '['; i++) {
        const char *colon = strchr(cfg.resolve[i], ':');
        if ((size_t)(colon - cfg.resolve[i]) == hl && strncasecmp(cfg.resolve[i], host, hl) == 0) {
            snprintf(host, sizeof host, "%s", colon + 1);
            break;
        }
    }
    if (a[0] != '[' && inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        if ((ntohl(s4->sin_addr.s_addr) >> 24) != 127) return -2;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        *sslen = sizeof *s4;
        return 0;
    }
    if (a[0] == '[' && inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        if (!IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr)) return -2;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        *sslen = sizeof *s6;
        return 0;
    }
    for (size_t i = 0; i < hl; i++)
        if (!(is_tchar((unsigned char)host[i]) || host[i] == ':')) return -1;
    return -2; /* a name or an address that is not loopback */
}

/* --- connections ------------------------------------------------------------------- */

enum cstate {
    CS_HEAD,       /* no transaction in flight: waiting for the next request head */
    CS_CONNECTING, /* connecting to the target of the current request */
    CS_HTTP,       /* forwarding one request and its response */
    CS_TUNNEL,     /* raw relay both ways (CONNECT, or after a 101) */
    CS_DRAIN,      /* --mode stall: read and discard, never answer */
    CS_LINGER,     /* answered and shut down our side: discard until EOF or timeout */
};

struct conn {
    struct listener *ls;
    uint64_t id;        /* accept order, from 1: the --record-conns field */
    uint64_t nrequests; /* request heads read on this connection (--drop-after) */
    int cfd, sfd;
    ev_io cw, sw;
    int cev, sev;   /* events currently watched on cfd / sfd */
    ev_timer timer; /* CS_LINGER: the drain's end; CS_HEAD: --idle-close */
    enum cstate st;
    struct buf cin, sin;         /* bytes read from the client / from the server */
    size_t cin_ready, sin_ready; /* bytes at the front of cin / sin cleared for forwarding */
    struct buf chead, shead;     /* heads to send before those: to the client / to the server */
    struct body reqb, respb;
    bool req_done, resp_head_done, resp_done;
    bool is_connect, head_req;
    bool client_ka, server_ka, close_after;
    bool s_connected, c_eof, s_eof, c_shut, s_shut;
    char skey[300]; /* authority of the open server connection, for reuse */
};

static void conn_cb(EV_P_ ev_io *w, int revents);
static void conn_step(struct conn *c);

static void io_watch(ev_io *w, int fd, int events, int *cur)
{
    if (events == *cur) return;
    ev_io_stop(cfg.loop, w);
    if (events) {
        ev_io_set(w, fd, events);
        ev_io_start(cfg.loop, w);
    }
    *cur = events;
}

static void server_close(struct conn *c)
{
    if (c->sfd < 0) return;
    ev_io_stop(cfg.loop, &c->sw);
    c->sev = 0;
    close(c->sfd);
    c->sfd = -1;
    c->s_connected = c->s_eof = c->s_shut = false;
    c->skey[0] = '\0';
    c->sin.r = c->sin.w = 0;
    c->sin_ready = 0;
}

static void conn_free(struct conn *c, bool rst)
{
    server_close(c);
    ev_io_stop(cfg.loop, &c->cw);
    ev_timer_stop(cfg.loop, &c->timer);
    if (rst) {
        struct linger lg = {1, 0};
        setsockopt(c->cfd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(c->cfd);
    free(c->cin.p);
    free(c->sin.p);
    free(c->chead.p);
    free(c->shead.p);
    free(c);
    st.live--;
}

static void timer_cb(EV_P_ ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct conn *c = w->data;
    if (c->st == CS_HEAD) {
        st.idle_closes++;
        if (cfg.verbose)
            ulog("port %u: connection %llu idle, closed", c->ls->port, (unsigned long long)c->id);
    }
    conn_free(c, false);
}

static void txn_reset(struct conn *c)
{
    c->st = CS_HEAD;
    c->req_done = c->resp_head_done = c->resp_done = false;
    c->is_connect = c->head_req = false;
    c->server_ka = false;
    c->cin_ready = 0;
    c->shead.r = c->shead.w = 0;
}

/* A response made here (407, 400, 403, 502...); close: end the connection after it. */
static void local_response(struct conn *c, int status, const char *reason, const char *extra,
                           bool close)
{
    char body[256];
    if (cfg.close_after_response) close = true;
    int bn = snprintf(body, sizeof body, "%d %s (upstream %s:%u)\n", status, reason, cfg.name,
                      c->ls->port);
    buf_printf(&c->chead,
               "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
               "X-Upstream: %s:%u\r\n%s%s\r\n%s",
               status, reason, bn, cfg.name, c->ls->port, extra ? extra : "",
               close ? "Connection: close\r\n" : "", body);
    st.local_errors += status != 407;
    if (close) c->close_after = true;
}

/* The server side failed before a response head arrived: 502, then close. */
static void fail_502(struct conn *c, const char *why)
{
    if (cfg.verbose) ulog("port %u: 502: %s", c->ls->port, why);
    server_close(c);
    txn_reset(c);
    local_response(c, 502, "Bad Gateway", NULL, true);
}

static void server_connected(struct conn *c)
{
    c->s_connected = true;
    if (c->is_connect) {
        c->st = CS_TUNNEL;
        st.tunnels++;
        buf_printf(&c->chead, "HTTP/1.1 200 Connection established\r\n\r\n");
    } else {
        c->st = CS_HTTP;
    }
}

/* Open (or reuse) the server connection for the current request. */
static void server_open(struct conn *c, const struct sockaddr_storage *sa, socklen_t salen,
                        const char *key)
{
    if (c->sfd >= 0 && !c->is_connect && strcmp(c->skey, key) == 0) {
        char b;
        ssize_t k = recv(c->sfd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            server_connected(c); /* idle and still open: reuse it */
            return;
        }
    }
    server_close(c);
    int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fail_502(c, strerror(errno));
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->sfd = fd;
    snprintf(c->skey, sizeof c->skey, "%s", key);
    if (connect(fd, (const struct sockaddr *)sa, salen) == 0) {
        server_connected(c);
    } else if (errno == EINPROGRESS) {
        c->st = CS_CONNECTING;
    } else {
        fail_502(c, strerror(errno));
    }
}

/* Rewrite an absolute-form request head into origin form for the server. */
static bool build_request_head(struct conn *c, const struct msg *m, const char *auth, size_t alen,
                               const char *path, size_t plen)
{
    struct buf *b = &c->shead;
    bool ok = buf_put(b, m->part[0], m->plen[0]) && buf_put(b, " ", 1);
    if (plen == 0 || path[0] == '?') ok = ok && buf_put(b, "/", 1);
    ok = ok && buf_put(b, path, plen) && buf_printf(b, " HTTP/1.%d\r\nHost: ", m->minor) &&
         buf_put(b, auth, alen) && buf_put(b, "\r\n", 2);
    for (int i = 0; ok && i < m->nh; i++) {
        const struct hdr *h = &m->h[i];
        if (span_eq(h->name, h->nlen, "host") || span_eq(h->name, h->nlen, "proxy-authorization") ||
            span_eq(h->name, h->nlen, "proxy-connection"))
            continue;
        ok = buf_put(b, h->name, h->nlen) && buf_put(b, ": ", 2) && buf_put(b, h->val, h->vlen) &&
             buf_put(b, "\r\n", 2);
    }
    return ok && buf_put(b, "\r\n", 2);
}

enum { START_WAIT = 0, START_DONE = 1, START_CLOSE = -1, START_RESET = -2 };

/* Parse and act on the request head at the front of cin. */
static int start_request(struct conn *c)
{
    struct msg m;
    size_t avail = buf_len(&c->cin);
    if (avail == 0) return START_WAIT;
    long hl = parse_head(c->cin.p + c->cin.r, avail, &m, true);
    if (hl == 0) return START_WAIT;
    if (hl < 0) {
        c->cin.r = c->cin.w;
        if (hl == -2)
            local_response(c, 431, "Request Header Fields Too Large", NULL, true);
        else
            local_response(c, 400, "Bad Request", NULL, true);
        return START_DONE;
    }
    st.requests++;
    char user[1024];
    bool auth_ok = auth_check(&m, user, sizeof user);
    record_request(c->ls->port, c->id, &m, user);
    if (cfg.mode == MODE_RESET) return START_RESET;
    if (cfg.drop_after && ++c->nrequests > cfg.drop_after) return START_RESET;
    c->cin.r += (size_t)hl; /* m still points at the bytes: nothing writes cin before we return */
    if (cfg.mode == MODE_STALL) {
        c->st = CS_DRAIN;
        return START_DONE;
    }
    txn_reset(c);
    c->is_connect = span_eq(m.part[0], m.plen[0], "CONNECT");
    c->head_req = span_eq(m.part[0], m.plen[0], "HEAD");
    if (msg_find(&m, "connection"))
        c->client_ka = m.minor == 1 ? !msg_has_token(&m, "connection", "close")
                                    : msg_has_token(&m, "connection", "keep-alive");
    else if (msg_find(&m, "proxy-connection"))
        c->client_ka = m.minor == 1 ? !msg_has_token(&m, "proxy-connection", "close")
                                    : msg_has_token(&m, "proxy-connection", "keep-alive");
    else
        c->client_ka = m.minor == 1;
    if (c->is_connect) {
        memset(&c->reqb, 0, sizeof c->reqb);
    } else if (body_framing(&m, true, &c->reqb) < 0) {
        local_response(c, 400, "Bad Request", NULL, true);
        return START_DONE;
    }
    bool body = c->reqb.mode != BM_NONE, close = body || !c->client_ka;
    if (!auth_ok || cfg.mode == MODE_REFUSE_AUTH) {
        st.refused_auth++;
        local_response(c, 407, "Proxy Authentication Required",
                       "Proxy-Authenticate: Basic realm=\"upstream\"\r\n", close);
        return START_DONE;
    }
    struct sockaddr_storage sa;
    socklen_t salen = 0;
    const char *auth = m.part[1], *path = "";
    size_t alen = m.plen[1], plen = 0;
    if (!c->is_connect) {
        if (alen < 7 || strncasecmp(auth, "http://", 7) != 0) {
            local_response(c, 400, "Bad Request", NULL, true);
            return START_DONE;
        }
        auth += 7;
        alen -= 7;
        path = auth;
        while (path < auth + alen && *path != '/' && *path != '?')
            path++;
        plen = alen - (size_t)(path - auth);
        alen = (size_t)(path - auth);
        if (memchr(auth, '@', alen)) {
            local_response(c, 400, "Bad Request", NULL, true);
            return START_DONE;
        }
    }
    int rc = target_addr(auth, alen, c->is_connect, &sa, &salen);
    if (rc != 0) {
        if (rc == -2)
            local_response(c, 403, "Forbidden", NULL, close || c->is_connect);
        else
            local_response(c, 400, "Bad Request", NULL, true);
        return START_DONE;
    }
    char key[300];
    snprintf(key, sizeof key, "%.*s", (int)(alen < 256 ? alen : 256), auth);
    if (!c->is_connect) {
        c->shead.r = c->shead.w = 0;
        if (!build_request_head(c, &m, auth, alen, path, plen)) {
            local_response(c, 431, "Request Header Fields Too Large", NULL, true);
            return START_DONE;
        }
        c->req_done = c->reqb.done;
    }
    server_open(c, &sa, salen, key);
    return START_DONE;
}

/* The response head at the front of sin: forward it with X-Upstream added. */
static int response_head(struct conn *c)
{
    struct msg m;
    long hl = parse_head(c->sin.p + c->sin.r, buf_len(&c->sin), &m, false);
    if (hl == 0) return 0;
    if (hl < 0) {
        fail_502(c, "malformed response head");
        return 1;
    }
    /* Status line, our headers, then the rest of the head as received. */
    const char *p = c->sin.p + c->sin.r;
    const char *nl = memchr(p, '\n', (size_t)hl);
    size_t first = (size_t)(nl - p) + 1;
    bool closing = cfg.close_after_response && m.status >= 200 && m.status != 101;
    if (!buf_put(&c->chead, p, first) ||
        !buf_printf(&c->chead, "X-Upstream: %s:%u\r\n%s", cfg.name, c->ls->port,
                    closing ? "Connection: close\r\n" : "") ||
        !buf_put(&c->chead, p + first, (size_t)hl - first)) {
        fail_502(c, "response head too large");
        return 1;
    }
    c->sin.r += (size_t)hl;
    if (m.status == 101) {
        c->st = CS_TUNNEL;
        return 1;
    }
    if (m.status < 200) return 1; /* interim: the final head follows */
    c->resp_head_done = true;
    body_framing(&m, false, &c->respb);
    if (c->head_req || m.status == 204 || m.status == 304) {
        c->respb.mode = BM_NONE;
        c->respb.done = true;
    }
    c->resp_done = c->respb.done;
    c->server_ka =
        c->respb.mode != BM_CLOSE && (m.minor == 1 ? !msg_has_token(&m, "connection", "close")
                                                   : msg_has_token(&m, "connection", "keep-alive"));
    return 1;
}

enum { IO_AGAIN = -1, IO_ERR = -2 };

/* One read into b's free space: bytes read, 0 on EOF, IO_AGAIN or IO_ERR. */
static ssize_t read_in(int fd, struct buf *b)
{
    size_t room = buf_room(b);
    for (;;) {
        ssize_t k = recv(fd, b->p + b->w, room, 0);
        if (k > 0) b->w += (size_t)k;
        if (k >= 0) return k;
        if (errno == EINTR) continue;
        return errno == EAGAIN || errno == EWOULDBLOCK ? IO_AGAIN : IO_ERR;
    }
}

/* Send head, then the first *ready bytes of b. Bytes sent, or IO_ERR. */
static ssize_t flush_out(int fd, struct buf *head, struct buf *b, size_t *ready)
{
    ssize_t total = 0;
    for (;;) {
        struct iovec iov[2];
        int n = 0;
        if (buf_len(head)) iov[n++] = (struct iovec){head->p + head->r, buf_len(head)};
        if (*ready) iov[n++] = (struct iovec){b->p + b->r, *ready};
        if (n == 0) return total;
        size_t want = iov[0].iov_len + (n > 1 ? iov[1].iov_len : 0);
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t k = sendmsg(fd, &mh, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR) continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? total : IO_ERR;
        }
        total += k;
        size_t left = (size_t)k, h = buf_len(head) < left ? buf_len(head) : left;
        head->r += h;
        left -= h;
        b->r += left;
        *ready -= left;
        if ((size_t)k < want) return total;
    }
}

static bool client_wants_read(struct conn *c)
{
    if (c->c_eof) return false;
    if (c->st == CS_DRAIN || c->st == CS_LINGER) return true;
    return buf_room(&c->cin) > 0;
}

static bool server_wants_read(struct conn *c)
{
    if (c->sfd < 0 || !c->s_connected || c->s_eof) return false;
    if (c->st != CS_TUNNEL && (c->st != CS_HTTP || c->resp_done)) return false;
    return buf_room(&c->sin) > 0;
}

static void conn_watch(struct conn *c)
{
    int ce = 0, se = 0;
    if (client_wants_read(c)) ce |= EV_READ;
    if (buf_len(&c->chead) || c->sin_ready) ce |= EV_WRITE;
    if (c->sfd >= 0) {
        if (c->st == CS_CONNECTING) {
            se = EV_WRITE;
        } else if (c->s_connected) {
            if (server_wants_read(c)) se |= EV_READ;
            if (buf_len(&c->shead) || c->cin_ready) se |= EV_WRITE;
        }
    }
    io_watch(&c->cw, c->cfd, ce, &c->cev);
    if (c->sfd >= 0) io_watch(&c->sw, c->sfd, se, &c->sev);
    /* --idle-close: the clock runs while no request is in flight, not even in part. */
    bool idle = c->st == CS_HEAD && buf_len(&c->cin) == 0 && buf_len(&c->chead) == 0 &&
                !c->close_after && !c->c_eof;
    if (cfg.idle_close > 0 && idle && !ev_is_active(&c->timer)) {
        ev_timer_set(&c->timer, cfg.idle_close, 0.);
        ev_timer_start(cfg.loop, &c->timer);
    } else if (cfg.idle_close > 0 && !idle && c->st != CS_LINGER) {
        ev_timer_stop(cfg.loop, &c->timer);
    }
}

/*
 * Move every byte that can move now, then watch for what is missing. Returns
 * with c freed when the connection ended (callers must not touch it after).
 */
static void conn_step(struct conn *c)
{
    bool rst = false;
    int round;
    for (round = 0; round < STEP_ROUNDS; round++) {
        bool progress = false;
        ssize_t k;

        /* Client -> buffer. */
        if (client_wants_read(c)) {
            k = read_in(c->cfd, &c->cin);
            if (k == IO_ERR) goto close;
            if (k == 0) c->c_eof = true;
            if (k >= 0) progress = true;
            if (k > 0 && (c->st == CS_TUNNEL || c->st == CS_HTTP)) st.bytes_up += (uint64_t)k;
        }
        if (c->st == CS_DRAIN || c->st == CS_LINGER) {
            c->cin.r = c->cin.w = 0;
            if (c->c_eof) goto close;
            break;
        }

        /* Requests: a new head, or the body of the current one. */
        bool head_wait = false;
        if (c->st == CS_HEAD && buf_len(&c->chead) == 0 && !c->close_after) {
            int rc = start_request(c);
            head_wait = rc == START_WAIT;
            if (rc == START_RESET) {
                rst = true;
                goto close;
            }
            if (rc == START_CLOSE) goto close;
            if (rc == START_DONE) progress = true;
            if (c->st == CS_DRAIN) continue;
        }
        if (c->st == CS_HTTP && !c->req_done) {
            size_t un = buf_len(&c->cin) - c->cin_ready;
            if (un) {
                long t = body_take(&c->reqb, c->cin.p + c->cin.r + c->cin_ready, un);
                if (t < 0) goto close;
                c->cin_ready += (size_t)t;
                c->req_done = c->reqb.done;
            }
        } else if (c->st == CS_TUNNEL) {
            c->cin_ready = buf_len(&c->cin);
        }

        /* Buffer -> server. */
        if (c->sfd >= 0 && c->s_connected && !c->s_shut) {
            k = flush_out(c->sfd, &c->shead, &c->cin, &c->cin_ready);
            if (k == IO_ERR) {
                if (c->st == CS_HTTP && !c->resp_head_done && buf_len(&c->chead) == 0) {
                    fail_502(c, "write to target failed");
                    continue;
                }
                goto close;
            }
            if (k > 0) progress = true;
        }

        /* Server -> buffer. */
        if (server_wants_read(c)) {
            k = read_in(c->sfd, &c->sin);
            if (k == IO_ERR) {
                if (c->st == CS_HTTP && !c->resp_head_done) {
                    fail_502(c, "target reset the connection");
                    continue;
                }
                goto close;
            }
            if (k == 0) c->s_eof = true;
            if (k >= 0) progress = true;
            if (k > 0) st.bytes_down += (uint64_t)k;
        }

        /* Responses: heads, then bodies. */
        if (c->st == CS_HTTP) {
            while (c->st == CS_HTTP && !c->resp_head_done && buf_len(&c->sin) > 0 &&
                   response_head(c))
                progress = true;
            if (c->st == CS_HTTP && !c->resp_head_done && c->s_eof) {
                fail_502(c, "target closed before answering");
                continue;
            }
            if (c->st == CS_HTTP && c->resp_head_done && !c->resp_done) {
                size_t un = buf_len(&c->sin) - c->sin_ready;
                long t = body_take(&c->respb, c->sin.p + c->sin.r + c->sin_ready, un);
                if (t < 0) goto close;
                c->sin_ready += (size_t)t;
                c->resp_done = c->respb.done;
                if (c->s_eof && !c->resp_done) {
                    if (c->respb.mode != BM_CLOSE)
                        goto close; /* truncated: the client must see it */
                    c->resp_done = true;
                }
            }
        }
        if (c->st == CS_TUNNEL) {
            c->cin_ready = buf_len(&c->cin);
            c->sin_ready = buf_len(&c->sin);
        }

        /* Buffer -> client. */
        if (!c->c_shut) {
            k = flush_out(c->cfd, &c->chead, &c->sin, &c->sin_ready);
            if (k == IO_ERR) goto close;
            if (k > 0) progress = true;
        }

        /* State changes. */
        bool c_flushed = buf_len(&c->chead) == 0 && c->sin_ready == 0;
        bool s_flushed = buf_len(&c->shead) == 0 && c->cin_ready == 0;
        if (c->st == CS_HTTP && c->resp_done && c_flushed) {
            if (c->req_done && s_flushed) {
                if (!c->server_ka || c->s_eof || buf_len(&c->sin) > 0) server_close(c);
                bool ka = c->client_ka && c->respb.mode != BM_CLOSE && !cfg.close_after_response;
                txn_reset(c);
                if (!ka) c->close_after = true;
                progress = true;
            } else if (!c->req_done) {
                /* Answered before the request ended: the rest cannot be framed. */
                server_close(c);
                txn_reset(c);
                c->close_after = true;
                progress = true;
            }
        }
        if (c->st == CS_HTTP && c->c_eof && !c->req_done)
            goto close; /* the request can never end */
        if (c->st == CS_TUNNEL) {
            if (c->c_eof && s_flushed && !c->s_shut && c->s_connected) {
                shutdown(c->sfd, SHUT_WR);
                c->s_shut = true;
            }
            if (c->s_eof && c_flushed && !c->c_shut) {
                shutdown(c->cfd, SHUT_WR);
                c->c_shut = true;
            }
            if (c->c_shut && c->s_shut) goto close;
        }
        if (c->st == CS_HEAD && c_flushed) {
            if (c->close_after) {
                /* Half-close and drain, so the answer is not lost to an RST. */
                shutdown(c->cfd, SHUT_WR);
                server_close(c);
                c->st = CS_LINGER;
                ev_timer_stop(cfg.loop, &c->timer); /* the --idle-close one may be running */
                ev_timer_set(&c->timer, LINGER_S, 0.);
                ev_timer_start(cfg.loop, &c->timer);
                progress = true;
            } else if (c->c_eof && (head_wait || buf_len(&c->cin) == 0)) {
                goto close; /* the client left and sent no (complete) request */
            }
        }
        if (!progress) break;
    }
    if (round == STEP_ROUNDS)
        ev_feed_event(cfg.loop, &c->cw, EV_CUSTOM); /* more to do: after the others' turn */
    conn_watch(c);
    return;
close:
    conn_free(c, rst);
}

static void conn_cb(EV_P_ ev_io *w, int revents)
{
    (void)loop;
    struct conn *c = w->data;
    if (w == &c->sw && c->st == CS_CONNECTING && (revents & (EV_WRITE | EV_READ))) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->sfd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
        if (err) {
            if (c->is_connect || cfg.verbose)
                ulog("port %u: connect to %s: %s", c->ls->port, c->skey, strerror(err));
            fail_502(c, strerror(err));
        } else {
            server_connected(c);
        }
    }
    conn_step(c);
}

static void conn_new(struct listener *ls, int fd)
{
    struct conn *c = calloc(1, sizeof *c);
    char *a = malloc(BUF_SIZE), *b = malloc(BUF_SIZE);
    if (!c || !a || !b) {
        free(c);
        free(a);
        free(b);
        close(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->ls = ls;
    c->cfd = fd;
    c->sfd = -1;
    c->cin = (struct buf){a, 0, 0, BUF_SIZE};
    c->sin = (struct buf){b, 0, 0, BUF_SIZE};
    ev_io_init(&c->cw, conn_cb, fd, 0);
    ev_io_init(&c->sw, conn_cb, -1, 0);
    ev_init(&c->timer, timer_cb);
    c->cw.data = c->sw.data = c->timer.data = c;
    txn_reset(c);
    c->id = ++st.conns;
    st.live++;
    conn_step(c);
}

/* --- listeners and main ------------------------------------------------------------ */

static void accept_resume(EV_P_ ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    for (int i = 0; i < cfg.nls; i++)
        ev_io_start(EV_A_ & cfg.ls[i].w);
}

static void accept_cb(EV_P_ ev_io *w, int revents)
{
    (void)revents;
    struct listener *ls = w->data;
    for (int i = 0; i < 256; i++) {
        int fd = accept4(ls->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            conn_new(ls, fd);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            ulog("accept: %s: pausing accepts for 100 ms", strerror(errno));
            for (int j = 0; j < cfg.nls; j++)
                ev_io_stop(EV_A_ & cfg.ls[j].w);
            ev_timer_set(&cfg.accept_pause, 0.1, 0.);
            ev_timer_start(EV_A_ & cfg.accept_pause);
        }
        return;
    }
}

/* "HOST:PORT" or "HOST:FIRST-LAST" ("[v6]:..." for IPv6): add listeners. */
static int add_listen(const char *spec)
{
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof host) return -1;
    const char *hs = spec;
    size_t hl = (size_t)(colon - spec);
    if (hs[0] == '[' && hl >= 2 && hs[hl - 1] == ']') hs++, hl -= 2;
    memcpy(host, hs, hl);
    host[hl] = '\0';
    char *end;
    errno = 0;
    unsigned long first = strtoul(colon + 1, &end, 10), last = first;
    if (*end == '-') last = strtoul(end + 1, &end, 10);
    if (errno || *end || first == 0 || last > 65535 || last < first) return -1;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t sl;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        sl = sizeof *s4;
    } else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        sl = sizeof *s6;
    } else {
        return -1;
    }
    for (unsigned long port = first; port <= last; port++) {
        if (cfg.nls == MAX_LISTENERS) {
            fprintf(stderr, "upstream: at most %d listeners\n", MAX_LISTENERS);
            return -1;
        }
        if (ss.ss_family == AF_INET)
            s4->sin_port = htons((uint16_t)port);
        else
            s6->sin6_port = htons((uint16_t)port);
        int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
        if (fd < 0) return -1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 4096) < 0) {
            fprintf(stderr, "upstream: listen %s:%lu: %s\n", host, port, strerror(errno));
            close(fd);
            return -2;
        }
        struct listener *ls = &cfg.ls[cfg.nls++];
        ls->fd = fd;
        ls->port = (unsigned)port;
    }
    return 0;
}

static void print_stats(void)
{
    ulog("stats: conns=%llu live=%llu requests=%llu tunnels=%llu refused_auth=%llu "
         "local_errors=%llu idle_closes=%llu bytes_up=%llu bytes_down=%llu",
         (unsigned long long)st.conns, (unsigned long long)st.live, (unsigned long long)st.requests,
         (unsigned long long)st.tunnels, (unsigned long long)st.refused_auth,
         (unsigned long long)st.local_errors, (unsigned long long)st.idle_closes,
         (unsigned long long)st.bytes_up, (unsigned long long)st.bytes_down);
}

static void signal_cb(EV_P_ ev_signal *w, int revents)
{
    (void)revents;
    if (w->signum == SIGUSR1)
        print_stats();
    else
        ev_break(EV_A_ EVBREAK_ALL);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: upstream --listen HOST:PORT[-LAST] [--listen ...] [options]\n"
            "\n"
            "A residential-proxy-provider stand-in: an HTTP/1.1 forward proxy (absolute-form\n"
            "requests and CONNECT) to loopback targets only (127.0.0.0/8, ::1, localhost;\n"
            "others get 403), requiring Basic proxy credentials (407 otherwise).\n"
            "\n"
            "  --listen HOST:PORT[-LAST]  listen on a port or an inclusive port range\n"
            "                             (repeatable; [::1]:PORT for IPv6)\n"
            "  --name NAME                identifies this provider: responses carry\n"
            "                             \"X-Upstream: NAME:<listen port>\" (default upstream)\n"
            "  --password PASS            accept any username with this password (repeatable)\n"
            "  --user USER:PASS           accept this exact pair (repeatable); with neither\n"
            "                             option any Basic credentials are accepted\n"
            "  --resolve NAME:ADDR        take target host NAME for the loopback IPv4 address\n"
            "                             ADDR (repeatable): an Internet name served locally\n"
            "  --record FILE              append \"<listen port> <method> <target> <username>\"\n"
            "                             per request head (username \"-\" when none; bytes\n"
            "                             outside 0x21-0x7e and %% written as %%XX)\n"
            "  --record-conns             append \" <connection>\" to each --record line: the\n"
            "                             number of the client connection that carried the\n"
            "                             request (1, 2... in accept order, never reused)\n"
            "  --idle-close SECONDS       close a client connection idle that long with no\n"
            "                             request in flight (fractions allowed; default never)\n"
            "  --close-after-response     answer with \"Connection: close\" and close the\n"
            "                             client connection after every response\n"
            "  --drop-after N             reset a connection when a request arrives after N\n"
            "                             answered on it, unanswered (still recorded): an\n"
            "                             idle close that crossed the request\n"
            "  --mode ok|refuse-auth|reset|stall\n"
            "                             refuse-auth: 407 to everything; reset: RST right\n"
            "                             after reading a request head; stall: read, never\n"
            "                             answer (default ok). Requests are recorded in all.\n"
            "  -v, --verbose              log each request to stderr\n"
            "  -h, --help                 this text\n"
            "\n"
            "SIGUSR1 prints counters to stderr; SIGTERM/SIGINT stop it (exit 0).\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"listen", required_argument, NULL, 'l'},
                                         {"name", required_argument, NULL, 'n'},
                                         {"password", required_argument, NULL, 'p'},
                                         {"user", required_argument, NULL, 'u'},
                                         {"record", required_argument, NULL, 'r'},
                                         {"resolve", required_argument, NULL, 'R'},
                                         {"mode", required_argument, NULL, 'm'},
                                         {"verbose", no_argument, NULL, 'v'},
                                         {"record-conns", no_argument, NULL, 'C'},
                                         {"idle-close", required_argument, NULL, 'I'},
                                         {"close-after-response", no_argument, NULL, 'A'},
                                         {"drop-after", required_argument, NULL, 'D'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *listens[MAX_LISTENERS];
    int nlistens = 0, opt;
    while ((opt = getopt_long(argc, argv, "l:n:p:u:r:R:m:vh", opts, NULL)) != -1) {
        switch (opt) {
        case 'l':
            if (nlistens == MAX_LISTENERS) return 2;
            listens[nlistens++] = optarg;
            break;
        case 'n':
            cfg.name = optarg;
            break;
        case 'p':
            if (cfg.npasswords == MAX_RULES) return 2;
            cfg.passwords[cfg.npasswords++] = optarg;
            break;
        case 'u':
            if (cfg.nusers == MAX_RULES || !strchr(optarg, ':')) {
                fprintf(stderr, "upstream: --user wants USER:PASS\n");
                return 2;
            }
            cfg.users[cfg.nusers++] = optarg;
            break;
        case 'R': {
            const char *colon = strchr(optarg, ':');
            struct in_addr ia;
            if (cfg.nresolve == MAX_RULES || !colon || colon == optarg ||
                inet_pton(AF_INET, colon + 1, &ia) != 1 || (ntohl(ia.s_addr) >> 24) != 127) {
                fprintf(stderr, "upstream: --resolve wants NAME:127.x.y.z\n");
                return 2;
            }
            cfg.resolve[cfg.nresolve++] = optarg;
            break;
        }
        case 'r':
            cfg.record_fd = open(optarg, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
            if (cfg.record_fd < 0) {
                fprintf(stderr, "upstream: %s: %s\n", optarg, strerror(errno));
                return 2;
            }
            break;
        case 'm':
            if (strcmp(optarg, "ok") == 0)
                cfg.mode = MODE_OK;
            else if (strcmp(optarg, "refuse-auth") == 0)
                cfg.mode = MODE_REFUSE_AUTH;
            else if (strcmp(optarg, "reset") == 0)
                cfg.mode = MODE_RESET;
            else if (strcmp(optarg, "stall") == 0)
                cfg.mode = MODE_STALL;
            else {
                fprintf(stderr, "upstream: unknown mode %s\n", optarg);
                return 2;
            }
            break;
        case 'v':
            cfg.verbose = true;
            break;
        case 'C':
            cfg.record_conns = true;
            break;
        case 'I': {
            char *end;
            errno = 0;
            cfg.idle_close = strtod(optarg, &end);
            if (errno || end == optarg || *end || !(cfg.idle_close > 0 && cfg.idle_close < 86400)) {
                fprintf(stderr, "upstream: --idle-close wants seconds, more than 0\n");
                return 2;
            }
            break;
        }
        case 'A':
            cfg.close_after_response = true;
            break;
        case 'D': {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (errno || end == optarg || *end || v == 0 || optarg[0] == '-') {
                fprintf(stderr, "upstream: --drop-after wants a count, more than 0\n");
                return 2;
            }
            cfg.drop_after = v;
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc || nlistens == 0) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    for (int i = 0; i < nlistens; i++) {
        int rc = add_listen(listens[i]);
        if (rc == -1) fprintf(stderr, "upstream: bad --listen %s\n", listens[i]);
        if (rc < 0) return 1;
    }
    cfg.loop = ev_default_loop(EVFLAG_AUTO);
    for (int i = 0; i < cfg.nls; i++) {
        ev_io_init(&cfg.ls[i].w, accept_cb, cfg.ls[i].fd, EV_READ);
        cfg.ls[i].w.data = &cfg.ls[i];
        ev_io_start(cfg.loop, &cfg.ls[i].w);
    }
    ev_init(&cfg.accept_pause, accept_resume);
    ev_signal sigs[4];
    const int signums[4] = {SIGTERM, SIGINT, SIGUSR1, SIGHUP};
    for (int i = 0; i < 4; i++) {
        ev_signal_init(&sigs[i], signal_cb, signums[i]);
        ev_signal_start(cfg.loop, &sigs[i]);
    }
    ulog("listening on %d port(s) %u..%u, mode %s", cfg.nls, cfg.ls[0].port,
         cfg.ls[cfg.nls - 1].port,
         cfg.mode == MODE_OK            ? "ok"
         : cfg.mode == MODE_REFUSE_AUTH ? "refuse-auth"
         : cfg.mode == MODE_RESET       ? "reset"
                                        : "stall");
    ev_run(cfg.loop, 0);
    print_stats();
    return 0;
}
