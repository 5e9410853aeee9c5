/*
 * origin: the target web server of the gateway's end-to-end tests, demo stack
 * and benchmarks, over plain HTTP/1.1 and over TLS (OpenSSL), keep-alive.
 *
 * Routes (any method; HEAD gets the head only):
 *   /bytes/N      N bytes of the test pattern, Content-Length framed
 *   /chunked/N    the same bytes, chunked (64 KiB chunks)
 *   /echo         the request body (Content-Length in: Content-Length out;
 *                 chunked in: chunked out, streamed as it arrives)
 *   /status/N     status N (200-599) with a one-line body
 *   anything else 200 text/plain: the request line and every request header
 *                 as received, also sent back as X-Seen-<Name>: <value>
 * N takes a k/m/g suffix (KiB, MiB, GiB). Every response carries
 * "X-Origin: <name>". The pattern: byte i of a body is
 *     (uint8_t)(((uint32_t)(i % 65521) * 2654435761u) >> 24)
 * a prime period, so a dropped, repeated or reordered block shows; `origin
 * --pattern N` writes the same N bytes to stdout for a test to compare with.
 *
 * Pattern bodies are written straight from a precomputed table (no per-byte
 * work, no allocation however large N is); echo streams through two fixed
 * buffers. One thread, one libev loop; TLS is non-blocking OpenSSL on the same
 * loop. Everything here is file-local.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define IN_SIZE       (64 * 1024)  /* request bytes, per connection */
#define OUT_SIZE      (128 * 1024) /* response heads, small bodies, echo data */
#define HEAD_MAX      (16 * 1024)
#define MAX_HEADERS   128
#define MAX_LISTENERS 64
#define PAT_PERIOD    65521u       /* largest prime below 2^16 */
#define PAT_WMAX      (256 * 1024) /* largest single write of pattern bytes */
#define CHUNK_MAX     (64 * 1024)  /* /chunked/N chunk size */
#define FLUSH_MAX     (4u << 20)   /* bytes per flush before letting others run */
#define LINGER_S      2.0
#define STEP_ROUNDS   16

struct listener {
    int fd;
    bool tls;
    ev_io w;
};

static struct {
    const char *name;
    bool verbose;
    SSL_CTX *ssl_ctx;
    struct listener ls[MAX_LISTENERS];
    int nls;
    struct ev_loop *loop;
    ev_timer accept_pause;
} cfg = {.name = "origin"};

static struct {
    uint64_t conns, live, requests, bytes_out, bytes_in;
} st;

static unsigned char pattern[PAT_PERIOD + PAT_WMAX];

static void ulog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void ulog(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    int n = snprintf(line, sizeof line, "origin[%s]: ", cfg.name);
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}

static unsigned char pattern_byte(uint64_t i)
{
    return (unsigned char)(((uint32_t)(i % PAT_PERIOD) * 2654435761u) >> 24);
}

static void pattern_init(void)
{
    for (size_t i = 0; i < sizeof pattern; i++)
        pattern[i] = pattern_byte(i);
}

/* --- byte buffers ------------------------------------------------------------------ */

/* Data in p[r, w) of a fixed-capacity buffer. */
struct buf {
    char *p;
    size_t r, w, cap;
};

static size_t buf_len(const struct buf *b)
{
    return b->w - b->r;
}

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

static bool buf_put(struct buf *b, const void *data, size_t n)
{
    if (buf_room(b) < n) return false;
    memcpy(b->p + b->w, data, n);
    b->w += n;
    return true;
}

static bool buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool buf_printf(struct buf *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) return false;
    return buf_put(b, tmp, (size_t)n);
}

/* --- HTTP/1.x request heads --------------------------------------------------------- */

struct hdr {
    const char *name, *val;
    size_t nlen, vlen;
};

/* A parsed request head; the pointers point into the parsed bytes. */
struct msg {
    const char *method, *target;
    size_t mlen, tlen;
    int minor; /* HTTP/1.<minor> */
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

static bool parse_request_line(const char *s, size_t n, struct msg *m)
{
    const char *sp1 = memchr(s, ' ', n);
    if (!sp1 || sp1 == s) return false;
    const char *t = sp1 + 1;
    const char *sp2 = memchr(t, ' ', (size_t)(s + n - t));
    if (!sp2 || sp2 == t) return false;
    const char *v = sp2 + 1;
    size_t vn = (size_t)(s + n - v);
    m->method = s;
    m->mlen = (size_t)(sp1 - s);
    m->target = t;
    m->tlen = (size_t)(sp2 - t);
    for (size_t i = 0; i < m->mlen; i++)
        if (!is_tchar((unsigned char)s[i])) return false;
    for (size_t i = 0; i < m->tlen; i++)
        if ((unsigned char)t[i] <= ' ' || (unsigned char)t[i] == 0x7f) return false;
    if (vn != 8 || memcmp(v, "HTTP/1.", 7) != 0 || (v[7] != '0' && v[7] != '1')) return false;
    m->minor = v[7] - '0';
    return true;
}

/* The head's length when complete, 0 when more is needed, -1 malformed, -2 too large. */
static long parse_head(const char *p, size_t n, struct msg *m)
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
            if (!parse_request_line(s, len, m)) return -1;
        } else if (len == 0) {
            return (long)(end + 1);
        } else {
            const char *colon = memchr(s, ':', len);
            if (!colon || colon == s) return -1;
            size_t nlen = (size_t)(colon - s);
            for (size_t i = 0; i < nlen; i++)
                if (!is_tchar((unsigned char)s[i])) return -1;
            const char *v = colon + 1, *ve = s + len;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            for (const char *q = v; q < ve; q++)
                if (*q == '\r' || *q == '\0') return -1;
            if (m->nh == MAX_HEADERS) return -2;
            m->h[m->nh++] = (struct hdr){s, v, nlen, (size_t)(ve - v)};
        }
        line++;
        pos = end + 1;
    }
}

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

static bool has_header(const struct msg *m, const char *name)
{
    for (int i = 0; i < m->nh; i++)
        if (span_eq(m->h[i].name, m->h[i].nlen, name)) return true;
    return false;
}

/* --- request bodies ---------------------------------------------------------------- */

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
 * Feed p[0, n) to the chunked-coding parser. Returns how many bytes it used
 * (it stops at the end of the body, ck->st == CK_DONE), -1 when malformed.
 * When it stops on chunk data, the last *dlen used bytes, from p[*doff], are
 * data; otherwise *dlen is 0.
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

/* "N", "Nk", "Nm" or "Ng" (binary units), at most 2^50. */
static bool parse_size(const char *s, size_t n, uint64_t *out)
{
    uint64_t mul = 1;
    if (n > 0) {
        switch (s[n - 1] | 0x20) {
        case 'k':
            mul = 1ull << 10;
            break;
        case 'm':
            mul = 1ull << 20;
            break;
        case 'g':
            mul = 1ull << 30;
            break;
        default:
            break;
        }
        if (mul > 1) n--;
    }
    if (!parse_u64(s, n, out) || *out > (1ull << 50) / mul) return false;
    *out *= mul;
    return true;
}

/* --- connections ------------------------------------------------------------------- */

enum req_state { R_HEAD, R_BODY };
enum body_mode { BM_NONE, BM_LENGTH, BM_CHUNKED };
enum body_use { USE_DISCARD, USE_ECHO_RAW, USE_ECHO_CHUNKED };

struct conn {
    int fd;
    SSL *ssl; /* NULL on plain listeners */
    ev_io w;
    int ev; /* events currently watched */
    ev_timer timer;
    char peer[64];
    struct buf in, out;
    enum req_state rs;
    enum body_mode bm;
    enum body_use use;
    uint64_t body_left; /* BM_LENGTH: request body bytes still to come */
    struct chunked ck;
    /* Pattern body being sent: pat_left bytes from offset pat_off, the current
     * chunk (or the whole body) has pat_seg bytes left to write. */
    uint64_t pat_off, pat_left, pat_seg;
    bool pat_chunked, pat_final; /* pat_final: the last chunk is queued */
    bool keepalive, close_after, eof, linger;
    bool rd_want_w, wr_want_r; /* TLS: the last read wants writable / write wants readable */
    size_t tls_wlen;           /* TLS: length of an SSL_write to repeat, 0 if none */
};

enum { IO_AGAIN = -1, IO_ERR = -2 };

static void io_watch(struct conn *c, int events)
{
    if (events == c->ev) return;
    ev_io_stop(cfg.loop, &c->w);
    if (events) {
        ev_io_set(&c->w, c->fd, events);
        ev_io_start(cfg.loop, &c->w);
    }
    c->ev = events;
}

static void conn_free(struct conn *c)
{
    ev_io_stop(cfg.loop, &c->w);
    ev_timer_stop(cfg.loop, &c->timer);
    if (c->ssl) SSL_free(c->ssl);
    close(c->fd);
    free(c->in.p);
    free(c->out.p);
    free(c);
    st.live--;
}

static void timer_cb(EV_P_ ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    conn_free(w->data);
}

/* Bytes read, 0 at EOF, IO_AGAIN or IO_ERR. */
static ssize_t tr_read(struct conn *c, char *p, size_t n)
{
    if (!c->ssl) {
        for (;;) {
            ssize_t k = recv(c->fd, p, n, 0);
            if (k >= 0) return k;
            if (errno == EINTR) continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? IO_AGAIN : IO_ERR;
        }
    }
    ERR_clear_error();
    int k = SSL_read(c->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
    if (k > 0) {
        c->rd_want_w = false;
        return k;
    }
    switch (SSL_get_error(c->ssl, k)) {
    case SSL_ERROR_WANT_READ:
        c->rd_want_w = false;
        return IO_AGAIN;
    case SSL_ERROR_WANT_WRITE:
        c->rd_want_w = true;
        return IO_AGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    default:
        if (cfg.verbose) {
            char e[256];
            ERR_error_string_n(ERR_peek_last_error(), e, sizeof e);
            ulog("%s: TLS read: %s", c->peer, e);
        }
        return IO_ERR;
    }
}

/* Bytes written, IO_AGAIN or IO_ERR. A TLS write that must be repeated is
 * repeated with the same length (the bytes never change meanwhile). */
static ssize_t tr_write(struct conn *c, const void *p, size_t n)
{
    if (!c->ssl) {
        for (;;) {
            ssize_t k = send(c->fd, p, n, MSG_NOSIGNAL);
            if (k >= 0) return k;
            if (errno == EINTR) continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? IO_AGAIN : IO_ERR;
        }
    }
    if (c->tls_wlen) n = c->tls_wlen;
    if (n > 1u << 30) n = 1u << 30;
    ERR_clear_error();
    int k = SSL_write(c->ssl, p, (int)n);
    if (k > 0) {
        c->tls_wlen = 0;
        c->wr_want_r = false;
        return k;
    }
    switch (SSL_get_error(c->ssl, k)) {
    case SSL_ERROR_WANT_WRITE:
        c->tls_wlen = n;
        c->wr_want_r = false;
        return IO_AGAIN;
    case SSL_ERROR_WANT_READ:
        c->tls_wlen = n;
        c->wr_want_r = true;
        return IO_AGAIN;
    default:
        return IO_ERR;
    }
}

static bool has_output(const struct conn *c)
{
    return buf_len(&c->out) || c->pat_seg || c->pat_left || (c->pat_chunked && !c->pat_final);
}

/* Write out, then pattern bytes, until the socket is full. Bytes sent or IO_ERR. */
static ssize_t conn_flush(struct conn *c)
{
    size_t total = 0;
    while (total < FLUSH_MAX) {
        const void *p;
        size_t n;
        if (buf_len(&c->out)) {
            p = c->out.p + c->out.r;
            n = buf_len(&c->out);
        } else if (c->pat_seg) {
            p = pattern + c->pat_off % PAT_PERIOD;
            n = c->pat_seg < PAT_WMAX ? (size_t)c->pat_seg : PAT_WMAX;
        } else if (c->pat_chunked && c->pat_left) {
            c->pat_seg = c->pat_left < CHUNK_MAX ? c->pat_left : CHUNK_MAX;
            buf_printf(&c->out, "%s%llx\r\n", c->pat_off ? "\r\n" : "",
                       (unsigned long long)c->pat_seg);
            continue;
        } else if (c->pat_chunked && !c->pat_final) {
            buf_printf(&c->out, "%s0\r\n\r\n", c->pat_off ? "\r\n" : "");
            c->pat_final = true;
            continue;
        } else {
            break;
        }
        ssize_t k = tr_write(c, p, n);
        if (k == IO_AGAIN) break;
        if (k < 0) return IO_ERR;
        total += (size_t)k;
        if (buf_len(&c->out)) {
            c->out.r += (size_t)k;
        } else {
            c->pat_off += (uint64_t)k;
            c->pat_seg -= (uint64_t)k;
            c->pat_left -= (uint64_t)k;
        }
    }
    st.bytes_out += total;
    return (ssize_t)total;
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 407:
        return "Proxy Authentication Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Status";
    }
}

/* Status line and the headers every response carries. */
static void resp_start(struct conn *c, int status)
{
    buf_printf(&c->out, "HTTP/1.1 %d %s\r\nX-Origin: %s\r\n%s", status, reason_phrase(status),
               cfg.name, c->keepalive ? "" : "Connection: close\r\n");
}

/* A complete small response (any request body is read and dropped). */
static void resp_simple(struct conn *c, int status, const char *body, bool head_only)
{
    resp_start(c, status);
    size_t bn = strlen(body);
    if (status == 204 || status == 304) {
        buf_printf(&c->out, "\r\n");
        return;
    }
    buf_printf(&c->out, "Content-Type: text/plain\r\nContent-Length: %zu\r\n\r\n", bn);
    if (!head_only) buf_put(&c->out, body, bn);
}

/* The request-echo page: the request line and headers, in the body and as X-Seen-*. */
static void resp_info(struct conn *c, const struct msg *m, bool head_only)
{
    size_t bn = m->mlen + m->tlen + 11;
    for (int i = 0; i < m->nh; i++)
        bn += m->h[i].nlen + 2 + m->h[i].vlen + 1;
    resp_start(c, 200);
    for (int i = 0; i < m->nh; i++) {
        const struct hdr *h = &m->h[i];
        buf_put(&c->out, "X-Seen-", 7);
        buf_put(&c->out, h->name, h->nlen);
        buf_put(&c->out, ": ", 2);
        buf_put(&c->out, h->val, h->vlen);
        buf_put(&c->out, "\r\n", 2);
    }
    buf_printf(&c->out, "Content-Type: text/plain\r\nContent-Length: %zu\r\n\r\n", bn);
    if (head_only) return;
    buf_put(&c->out, m->method, m->mlen);
    buf_put(&c->out, " ", 1);
    buf_put(&c->out, m->target, m->tlen);
    buf_printf(&c->out, " HTTP/1.%d\n", m->minor);
    for (int i = 0; i < m->nh; i++) {
        buf_put(&c->out, m->h[i].name, m->h[i].nlen);
        buf_put(&c->out, ": ", 2);
        buf_put(&c->out, m->h[i].val, m->h[i].vlen);
        buf_put(&c->out, "\n", 1);
    }
}

/* Act on one request head: queue the response head (and small bodies), set up
 * the body to read and the pattern to send. */
static void handle_request(struct conn *c, const struct msg *m)
{
    st.requests++;
    bool head_only = span_eq(m->method, m->mlen, "HEAD");
    if (has_header(m, "connection"))
        c->keepalive = m->minor == 1 ? !msg_has_token(m, "connection", "close")
                                     : msg_has_token(m, "connection", "keep-alive");
    else
        c->keepalive = m->minor == 1;

    /* Request body framing: chunked, Content-Length, or none. */
    bool te = false, cl = false, bad = false;
    uint64_t len = 0, v = 0;
    for (int i = 0; i < m->nh; i++) {
        const struct hdr *h = &m->h[i];
        if (span_eq(h->name, h->nlen, "transfer-encoding")) {
            te = true;
            bad |= !msg_has_token(m, "transfer-encoding", "chunked");
        } else if (span_eq(h->name, h->nlen, "content-length")) {
            if (!parse_u64(h->val, h->vlen, &v) || (cl && v != len)) bad = true;
            cl = true;
            len = v;
        }
    }
    c->bm = te ? BM_CHUNKED : cl && len ? BM_LENGTH : BM_NONE;
    c->body_left = len;
    memset(&c->ck, 0, sizeof c->ck);
    c->use = USE_DISCARD;
    if (bad || (te && cl)) {
        c->bm = BM_NONE;
        c->keepalive = false;
        resp_simple(c, 400, "bad request body framing\n", false);
        return;
    }
    if (c->bm != BM_NONE && m->minor == 1 && msg_has_token(m, "expect", "100-continue"))
        buf_printf(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");

    /* The path, from origin form or absolute form, without the query. */
    const char *path = m->target, *end = m->target + m->tlen;
    if (m->tlen > 7 && strncasecmp(path, "http://", 7) == 0) {
        path += 7;
        while (path < end && *path != '/')
            path++;
    } else if (m->tlen > 8 && strncasecmp(path, "https://", 8) == 0) {
        path += 8;
        while (path < end && *path != '/')
            path++;
    }
    const char *q = memchr(path, '?', (size_t)(end - path));
    size_t plen = (size_t)((q ? q : end) - path);
    uint64_t n;

    if ((plen > 7 && memcmp(path, "/bytes/", 7) == 0) ||
        (plen > 9 && memcmp(path, "/chunked/", 9) == 0)) {
        bool chunked = path[1] == 'c';
        size_t skip = chunked ? 9 : 7;
        if (!parse_size(path + skip, plen - skip, &n)) {
            resp_simple(c, 400, "bad size\n", head_only);
            return;
        }
        if (chunked && m->minor == 0)
            chunked = false, c->keepalive = false; /* no chunked coding in HTTP/1.0 */
        resp_start(c, 200);
        buf_printf(&c->out, "Content-Type: application/octet-stream\r\n");
        if (chunked)
            buf_printf(&c->out, "Transfer-Encoding: chunked\r\n\r\n");
        else
            buf_printf(&c->out, "Content-Length: %llu\r\n\r\n", (unsigned long long)n);
        if (head_only) return;
        c->pat_off = 0;
        c->pat_left = n;
        c->pat_chunked = chunked;
        c->pat_final = false;
        c->pat_seg = chunked ? 0 : n;
    } else if (plen == 5 && memcmp(path, "/echo", 5) == 0) {
        if (c->bm == BM_CHUNKED && m->minor == 0)
            c->keepalive = false; /* HTTP/1.0: the echoed body ends at close */
        resp_start(c, 200);
        buf_printf(&c->out, "Content-Type: application/octet-stream\r\n");
        if (c->bm == BM_CHUNKED && m->minor == 1) {
            buf_printf(&c->out, "Transfer-Encoding: chunked\r\n\r\n");
            c->use = USE_ECHO_CHUNKED;
        } else if (c->bm == BM_CHUNKED) {
            buf_printf(&c->out, "\r\n");
            c->use = USE_ECHO_RAW;
        } else {
            buf_printf(&c->out, "Content-Length: %llu\r\n\r\n",
                       (unsigned long long)(c->bm == BM_LENGTH ? len : 0));
            c->use = USE_ECHO_RAW;
        }
        if (head_only) c->use = USE_DISCARD;
    } else if (plen > 8 && memcmp(path, "/status/", 8) == 0) {
        if (!parse_u64(path + 8, plen - 8, &n) || n < 200 || n > 599) {
            resp_simple(c, 400, "status wants 200-599\n", head_only);
            return;
        }
        char body[64];
        snprintf(body, sizeof body, "status %d\n", (int)n);
        resp_simple(c, (int)n, body, head_only);
    } else {
        resp_info(c, m, head_only);
    }
}

/* Consume request body bytes from in: discard or echo them. True on progress. */
static int body_step(struct conn *c)
{
    bool progress = false;
    while (c->rs == R_BODY) {
        size_t avail = buf_len(&c->in);
        const char *p = c->in.p + c->in.r;
        size_t room = c->use == USE_DISCARD ? SIZE_MAX : buf_room(&c->out);
        bool done = false;
        if (c->bm == BM_LENGTH) {
            size_t k = avail < c->body_left ? avail : (size_t)c->body_left;
            if (k > room) k = room;
            if (k == 0) break;
            if (c->use != USE_DISCARD) buf_put(&c->out, p, k);
            c->in.r += k;
            c->body_left -= k;
            done = c->body_left == 0;
        } else if (c->bm == BM_CHUNKED) {
            if (avail == 0 && c->ck.st != CK_DONE) break;
            if (room < 64) break;
            size_t doff, dlen, lim = avail < room - 32 ? avail : room - 32;
            long k = chunked_feed(&c->ck, p, lim, &doff, &dlen);
            if (k < 0) return -1;
            if (dlen && c->use == USE_ECHO_CHUNKED)
                buf_printf(&c->out, "%zx\r\n", dlen), buf_put(&c->out, p + doff, dlen),
                    buf_put(&c->out, "\r\n", 2);
            else if (dlen && c->use == USE_ECHO_RAW)
                buf_put(&c->out, p + doff, dlen);
            c->in.r += (size_t)k;
            done = c->ck.st == CK_DONE;
            if (k == 0 && !done) break;
        } else {
            done = true;
        }
        progress = true;
        if (done) {
            if (c->use == USE_ECHO_CHUNKED) buf_printf(&c->out, "0\r\n\r\n");
            c->rs = R_HEAD;
        }
    }
    return progress;
}

static bool conn_wants_read(struct conn *c)
{
    return !c->eof && (c->linger || buf_room(&c->in) > 0);
}

static void conn_watch(struct conn *c)
{
    int ev = 0;
    if (conn_wants_read(c)) ev |= c->rd_want_w ? EV_WRITE : EV_READ;
    if (!c->linger && has_output(c)) ev |= c->wr_want_r ? EV_READ : EV_WRITE;
    io_watch(c, ev);
}

static void conn_step(struct conn *c)
{
    int round;
    for (round = 0; round < STEP_ROUNDS; round++) {
        bool progress = false;
        ssize_t k;
        if (c->linger) {
            char tmp[16384];
            k = recv(c->fd, tmp, sizeof tmp, 0);
            if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR)) goto close;
            if (k > 0) continue;
            break;
        }
        if (conn_wants_read(c)) {
            size_t room = buf_room(&c->in); /* may move the data: before taking in.w */
            k = tr_read(c, c->in.p + c->in.w, room);
            if (k == IO_ERR) goto close;
            if (k == 0) c->eof = true;
            if (k > 0) {
                c->in.w += (size_t)k;
                st.bytes_in += (uint64_t)k;
            }
            if (k >= 0) progress = true;
        }
        bool waiting_head = false;
        if (c->rs == R_HEAD && !has_output(c) && !c->close_after && buf_len(&c->in)) {
            struct msg m;
            long hl = parse_head(c->in.p + c->in.r, buf_len(&c->in), &m);
            if (hl == 0) {
                waiting_head = true;
            } else if (hl < 0) {
                c->keepalive = false;
                c->bm = BM_NONE;
                resp_simple(c, hl == -2 ? 431 : 400,
                            hl == -2 ? "request head too large\n" : "malformed request\n", false);
                c->in.r = c->in.w;
                c->close_after = true;
                progress = true;
            } else {
                if (cfg.verbose)
                    ulog("%s: %.*s %.*s", c->peer, (int)m.mlen, m.method, (int)m.tlen, m.target);
                handle_request(c, &m);
                c->in.r += (size_t)hl; /* m pointed into in: used up before this */
                c->rs = c->bm == BM_NONE ? R_HEAD : R_BODY;
                if (!c->keepalive) c->close_after = true;
                progress = true;
            }
        }
        if (c->rs == R_BODY) {
            int b = body_step(c);
            if (b < 0) {
                c->close_after = true;
                c->rs = R_HEAD;
                c->in.r = c->in.w;
            } else if (b > 0) {
                progress = true;
            }
        }
        k = conn_flush(c);
        if (k == IO_ERR) goto close;
        if (k > 0) progress = true;
        if (c->rs == R_BODY && c->eof) goto close; /* the body can never end */
        if (c->rs == R_HEAD && !has_output(c)) {
            if (c->close_after) {
                if (c->ssl) SSL_shutdown(c->ssl);
                shutdown(c->fd, SHUT_WR);
                c->linger = true;
                ev_timer_set(&c->timer, LINGER_S, 0.);
                ev_timer_start(cfg.loop, &c->timer);
                continue;
            }
            if (c->eof && (waiting_head || buf_len(&c->in) == 0)) goto close;
        }
        if (!progress) break;
    }
    if (round == STEP_ROUNDS) ev_feed_event(cfg.loop, &c->w, EV_CUSTOM);
    conn_watch(c);
    return;
close:
    conn_free(c);
}

static void conn_cb(EV_P_ ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    conn_step(w->data);
}

static void conn_new(struct listener *ls, int fd, const struct sockaddr_storage *sa)
{
    struct conn *c = calloc(1, sizeof *c);
    char *a = malloc(IN_SIZE), *b = malloc(OUT_SIZE);
    SSL *ssl = NULL;
    if (c && a && b && ls->tls) {
        ssl = SSL_new(cfg.ssl_ctx);
        if (ssl && SSL_set_fd(ssl, fd) != 1) {
            SSL_free(ssl);
            ssl = NULL;
        }
    }
    if (!c || !a || !b || (ls->tls && !ssl)) {
        free(c);
        free(a);
        free(b);
        close(fd);
        return;
    }
    if (ssl) SSL_set_accept_state(ssl);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->ssl = ssl;
    c->in = (struct buf){a, 0, 0, IN_SIZE};
    c->out = (struct buf){b, 0, 0, OUT_SIZE};
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
        port = ntohs(s4->sin_port);
    } else if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
        port = ntohs(s6->sin6_port);
    }
    snprintf(c->peer, sizeof c->peer, "%s:%u", host, port);
    ev_io_init(&c->w, conn_cb, fd, 0);
    ev_init(&c->timer, timer_cb);
    c->w.data = c->timer.data = c;
    st.conns++;
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
        struct sockaddr_storage sa;
        socklen_t sl = sizeof sa;
        int fd = accept4(ls->fd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            conn_new(ls, fd, &sa);
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

/* "HOST:PORT" ("[v6]:PORT"): add a listener. */
static int add_listen(const char *spec, bool tls)
{
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof host ||
        cfg.nls == MAX_LISTENERS)
        return -1;
    const char *hs = spec;
    size_t hl = (size_t)(colon - spec);
    if (hs[0] == '[' && hl >= 2 && hs[hl - 1] == ']') hs++, hl -= 2;
    memcpy(host, hs, hl);
    host[hl] = '\0';
    char *end;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (errno || *end || port == 0 || port > 65535) return -1;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t sl;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        sl = sizeof *s4;
    } else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        sl = sizeof *s6;
    } else {
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0) return -2;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 4096) < 0) {
        fprintf(stderr, "origin: listen %s: %s\n", spec, strerror(errno));
        close(fd);
        return -2;
    }
    cfg.ls[cfg.nls].fd = fd;
    cfg.ls[cfg.nls].tls = tls;
    cfg.nls++;
    return 0;
}

/* Offer-order-independent ALPN: http/1.1 when the client offers it. */
static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    for (unsigned int i = 0; i < inlen; i += 1u + in[i]) {
        if (in[i] == 8 && i + 9 <= inlen && memcmp(in + i + 1, "http/1.1", 8) == 0) {
            *out = in + i + 1;
            *outlen = 8;
            return SSL_TLSEXT_ERR_OK;
        }
    }
    return SSL_TLSEXT_ERR_NOACK;
}

static int tls_setup(const char *cert, const char *key)
{
    cfg.ssl_ctx = SSL_CTX_new(TLS_server_method());
    if (!cfg.ssl_ctx) return -1;
    SSL_CTX_set_min_proto_version(cfg.ssl_ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(cfg.ssl_ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(cfg.ssl_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                      SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_alpn_select_cb(cfg.ssl_ctx, alpn_cb, NULL);
    if (SSL_CTX_use_certificate_chain_file(cfg.ssl_ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(cfg.ssl_ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(cfg.ssl_ctx) != 1) {
        char e[256];
        ERR_error_string_n(ERR_peek_last_error(), e, sizeof e);
        fprintf(stderr, "origin: TLS certificate %s / key %s: %s\n", cert, key, e);
        return -1;
    }
    return 0;
}

static int write_pattern(const char *size)
{
    uint64_t n, off = 0;
    if (!parse_size(size, strlen(size), &n)) {
        fprintf(stderr, "origin: bad --pattern size %s\n", size);
        return 2;
    }
    while (off < n) {
        size_t k = n - off < PAT_WMAX ? (size_t)(n - off) : PAT_WMAX;
        ssize_t w = write(STDOUT_FILENO, pattern + off % PAT_PERIOD, k);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return 1;
        off += (uint64_t)w;
    }
    return 0;
}

static void print_stats(void)
{
    ulog("stats: conns=%llu live=%llu requests=%llu bytes_in=%llu bytes_out=%llu",
         (unsigned long long)st.conns, (unsigned long long)st.live, (unsigned long long)st.requests,
         (unsigned long long)st.bytes_in, (unsigned long long)st.bytes_out);
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
    fprintf(f, "usage: origin --listen HOST:PORT [--listen ...]\n"
               "              [--tls-listen HOST:PORT ... --cert FILE --key FILE] [options]\n"
               "       origin --pattern N      write the first N pattern bytes to stdout\n"
               "\n"
               "A test origin: HTTP/1.1 keep-alive, plain and TLS, same routes on both.\n"
               "  GET /bytes/N     N bytes of the pattern (Content-Length); N may end in k/m/g\n"
               "  GET /chunked/N   the same bytes, chunked\n"
               "  POST /echo       the request body back (Content-Length or chunked, streamed)\n"
               "  GET /status/N    status N (200-599)\n"
               "  anything else    200: the request line and headers as received, in the body\n"
               "                   and as X-Seen-<Name> response headers\n"
               "Every response has \"X-Origin: NAME\". Pattern byte i is\n"
               "  (uint8_t)(((uint32_t)(i %% 65521) * 2654435761u) >> 24)\n"
               "\n"
               "  --listen HOST:PORT      plain HTTP listener (repeatable; [::1]:PORT for IPv6)\n"
               "  --tls-listen HOST:PORT  HTTPS listener (repeatable; needs --cert and --key)\n"
               "  --cert FILE             PEM certificate chain (server certificate first)\n"
               "  --key FILE              PEM private key\n"
               "  --name NAME             the X-Origin value (default origin)\n"
               "  --pattern N             write N pattern bytes to stdout and exit\n"
               "  -v, --verbose           log each request to stderr\n"
               "  -h, --help              this text\n"
               "\n"
               "SIGUSR1 prints counters to stderr; SIGTERM/SIGINT stop it (exit 0).\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"listen", required_argument, NULL, 'l'},
                                         {"tls-listen", required_argument, NULL, 't'},
                                         {"cert", required_argument, NULL, 'c'},
                                         {"key", required_argument, NULL, 'k'},
                                         {"name", required_argument, NULL, 'n'},
                                         {"pattern", required_argument, NULL, 'P'},
                                         {"verbose", no_argument, NULL, 'v'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *plain[MAX_LISTENERS], *tls[MAX_LISTENERS], *cert = NULL, *key = NULL;
    const char *pat = NULL;
    int nplain = 0, ntls = 0, opt;
    while ((opt = getopt_long(argc, argv, "l:t:c:k:n:P:vh", opts, NULL)) != -1) {
        switch (opt) {
        case 'l':
            if (nplain == MAX_LISTENERS) return 2;
            plain[nplain++] = optarg;
            break;
        case 't':
            if (ntls == MAX_LISTENERS) return 2;
            tls[ntls++] = optarg;
            break;
        case 'c':
            cert = optarg;
            break;
        case 'k':
            key = optarg;
            break;
        case 'n':
            cfg.name = optarg;
            break;
        case 'P':
            pat = optarg;
            break;
        case 'v':
            cfg.verbose = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    pattern_init();
    if (pat) return write_pattern(pat);
    if (optind != argc || nplain + ntls == 0 || (ntls && (!cert || !key))) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (ntls && tls_setup(cert, key) < 0) return 1;
    for (int i = 0; i < nplain + ntls; i++) {
        const char *spec = i < nplain ? plain[i] : tls[i - nplain];
        int rc = add_listen(spec, i >= nplain);
        if (rc == -1) fprintf(stderr, "origin: bad listen address %s\n", spec);
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
    ulog("listening: %d plain, %d TLS", nplain, ntls);
    ev_run(cfg.loop, 0);
    print_stats();
    if (cfg.ssl_ctx) SSL_CTX_free(cfg.ssl_ctx);
    return 0;
}
