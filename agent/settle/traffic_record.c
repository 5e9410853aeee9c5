/*
 * The billing record's reader and the dead-letter writer. A record comes off
 * the Redis list traffic:logs; the settlement worker turns it into a
 * traffic_logs row and a charge on the user's balance, so what it accepts must
 * be exactly what the producer meant, and fit the columns it goes to: a value
 * PostgreSQL would refuse would fail a whole batch.
 *
 * Two layers: traffic_json_scan() is a strict RFC 8259 reader for one object
 * of scalar members (no nesting: the record has none, and refusing it bounds
 * the work); traffic_record_parse() maps members to fields, checks types and
 * ranges, refuses duplicates and missing members. No allocation: decoded
 * strings go to a stack buffer as long as the largest record accepted.
 * UTF-8, base64 and the JSON string writer are the common ones (agent/common/).
 * The reader is hand-written rather than json-c or jansson: those build a
 * tree in allocated memory for any input size, and by default keep one of
 * two duplicate keys without a word; here a record with either problem is
 * refused before anything is allocated.
 */
#include "traffic_record.h"

#include "base64.h"
#include "json.h"
#include "textbuf.h"
#include "utf8.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- the JSON reader ------------------------------------------------------------ */

struct scan {
    const unsigned char *start, *p, *end;
    char *out; /* scratch for decoded strings */
    size_t cap, used;
    char *err;
    size_t errlen;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int fail(struct scan *s, const char *what)
{
    set_err(s->err, s->errlen, "invalid JSON at byte %zu: %s", (size_t)(s->p - s->start), what);
    return -1;
}

static void skip_ws(struct scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int hex4(const unsigned char *p, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        v = v << 4 | d;
    }
    *out = v;
    return 0;
}

/* At an opening quote: decodes the string into scratch. Decoding never
 * grows (an escape is longer than what it stands for), so the string and its
 * NUL fit in the bytes its quotes and contents took. */
static int scan_string(struct scan *s, const char **str, size_t *len)
{
    char *o = s->out + s->used;
    size_t room = s->cap - s->used, n = 0;
    s->p++;
/* Room for k more bytes and the NUL; never short when cap >= len + 1. */
#define NEED(k)                                                                                    \
    do {                                                                                           \
        if (n + (k) + 1 > room) return fail(s, "scratch buffer too small");                        \
    } while (0)
    for (;;) {
        if (s->p >= s->end) return fail(s, "unterminated string");
        unsigned c = *s->p;
        if (c == '"') {
            s->p++;
            break;
        }
        if (c < 0x20) return fail(s, "raw control character in a string (must be escaped)");
        if (c >= 0x80) {
            size_t k = utf8_seq(s->p, (size_t)(s->end - s->p));
            if (k == 0) return fail(s, "invalid UTF-8 in a string");
            NEED(k);
            memcpy(o + n, s->p, k);
            n += k;
            s->p += k;
            continue;
        }
        NEED(1);
        if (c != '\\') {
            o[n++] = (char)c;
            s->p++;
            continue;
        }
        if (s->end - s->p < 2) return fail(s, "unterminated escape");
        switch (s->p[1]) {
        case '"':
            o[n++] = '"';
            break;
        case '\\':
            o[n++] = '\\';
            break;
        case '/':
            o[n++] = '/';
            break;
        case 'b':
            o[n++] = '\b';
            break;
        case 'f':
            o[n++] = '\f';
            break;
        case 'n':
            o[n++] = '\n';
            break;
        case 'r':
            o[n++] = '\r';
            break;
        case 't':
            o[n++] = '\t';
            break;
        case 'u': {
            uint32_t cp, lo;
            NEED(4);
            if (s->end - s->p < 6 || hex4(s->p + 2, &cp) != 0)
                return fail(s, "\\u must be followed by 4 hex digits");
            if (cp >= 0xDC00 && cp <= 0xDFFF) return fail(s, "lone low surrogate in \\u escape");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                const unsigned char *q = s->p + 6;
                if (s->end - q < 6 || q[0] != '\\' || q[1] != 'u' || hex4(q + 2, &lo) != 0 ||
                    lo < 0xDC00 || lo > 0xDFFF)
                    return fail(s, "high surrogate not followed by a low one in \\u escapes");
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                s->p += 6;
            }
            n += utf8_put(o + n, cp);
            s->p += 6;
            continue;
        }
        default:
            return fail(s, "invalid escape");
        }
        s->p += 2;
    }
#undef NEED
    o[n] = '\0';
    s->used += n + 1;
    *str = o;
    *len = n;
    return 0;
}

static bool is_digit(unsigned c)
{
    return c >= '0' && c <= '9';
}

static int scan_number(struct scan *s, struct json_value *v)
{
    const unsigned char *q = s->p;
    bool neg = false, real = false;
    if (*q == '-') {
        neg = true;
        q++;
    }
    if (q >= s->end || !is_digit(*q)) return s->p = q, fail(s, "invalid number");
    const unsigned char *digits = q;
    if (*q == '0') {
        q++;
        if (q < s->end && is_digit(*q)) return s->p = q, fail(s, "leading zero in a number");
    } else {
        while (q < s->end && is_digit(*q))
            q++;
    }
    const unsigned char *digits_end = q;
    if (q < s->end && *q == '.') {
        q++;
        if (q >= s->end || !is_digit(*q)) return s->p = q, fail(s, "digit expected after '.'");
        while (q < s->end && is_digit(*q))
            q++;
        real = true;
    }
    if (q < s->end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < s->end && (*q == '+' || *q == '-')) q++;
        if (q >= s->end || !is_digit(*q)) return s->p = q, fail(s, "digit expected in exponent");
        while (q < s->end && is_digit(*q))
            q++;
        real = true;
    }
    s->p = q;
    if (real) {
        v->kind = JSON_REAL;
        return 0;
    }
    /* magnitude limit: 2^63 for a negative number, 2^63 - 1 otherwise */
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, m = 0;
    v->kind = JSON_INT;
    for (const unsigned char *d = digits; d < digits_end; d++) {
        unsigned dv = *d - '0';
        if (m > (limit - dv) / 10) {
            v->kind = JSON_INT_RANGE;
            return 0;
        }
        m = m * 10 + dv;
    }
    v->i = neg ? (m == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)m) : (int64_t)m;
    return 0;
}

static int scan_literal(struct scan *s, const char *word, enum json_kind kind, struct json_value *v)
{
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return fail(s, "expected a value");
    s->p += n;
    v->kind = kind;
    return 0;
}

int traffic_json_scan(const char *in, size_t len, char *scratch, size_t scratch_cap,
                      json_member_fn fn, void *ctx, char *err, size_t errlen)
{
    struct scan s = {
        .start = (const unsigned char *)in,
        .p = (const unsigned char *)in,
        .end = (const unsigned char *)in + len,
        .out = scratch,
        .cap = scratch_cap,
        .err = err,
        .errlen = errlen,
    };
    set_err(err, errlen, "ok");
    if (scratch_cap < len + 1) return fail(&s, "scratch buffer too small");
    skip_ws(&s);
    if (s.p >= s.end || *s.p != '{') return fail(&s, "expected an object");
    s.p++;
    skip_ws(&s);
    if (s.p < s.end && *s.p == '}') {
        s.p++;
    } else {
        for (;;) {
            const char *key;
            size_t klen;
            struct json_value v = {0};
            if (s.p >= s.end || *s.p != '"') return fail(&s, "expected a member name");
            if (scan_string(&s, &key, &klen) != 0) return -1;
            skip_ws(&s);
            if (s.p >= s.end || *s.p != ':') return fail(&s, "expected ':'");
            s.p++;
            skip_ws(&s);
            if (s.p >= s.end) return fail(&s, "expected a value");
            int rc;
            switch (*s.p) {
            case '"':
                v.kind = JSON_STRING;
                rc = scan_string(&s, &v.str, &v.len);
                break;
            case 't':
                rc = scan_literal(&s, "true", JSON_TRUE, &v);
                break;
            case 'f':
                rc = scan_literal(&s, "false", JSON_FALSE, &v);
                break;
            case 'n':
                rc = scan_literal(&s, "null", JSON_NULL, &v);
                break;
            case '{':
            case '[':
                return fail(&s, "nested objects and arrays are not accepted");
            default:
                if (*s.p == '-' || is_digit(*s.p)) {
                    rc = scan_number(&s, &v);
                } else {
                    return fail(&s, "expected a value");
                }
            }
            if (rc != 0) return -1;
            if (fn != NULL && fn(ctx, key, klen, &v, err, errlen) != 0) return -1;
            skip_ws(&s);
            if (s.p < s.end && *s.p == ',') {
                s.p++;
                skip_ws(&s);
                continue;
            }
            if (s.p < s.end && *s.p == '}') {
                s.p++;
                break;
            }
            return fail(&s, "expected ',' or '}'");
        }
    }
    skip_ws(&s);
    if (s.p != s.end) return fail(&s, "trailing bytes after the object");
    return 0;
}

/* --- the record ---------------------------------------------------------------- */

enum field_type { FT_BILLING_TEXT, FT_TEXT, FT_INT64, FT_INT32 };

static const struct field_def {
    const char *name;
    enum field_type type;
    size_t off;   /* in struct traffic_record */
    size_t width; /* FT_TEXT, FT_BILLING_TEXT: characters (username) or bytes (request_id) */
} fields[TRAFFIC_F_COUNT] = {
#define F(id, name, type, member, width)                                                           \
    [id] = {name, type, offsetof(struct traffic_record, member), width}
    F(TRAFFIC_F_USERNAME, "username", FT_BILLING_TEXT, username, TRAFFIC_W_USERNAME),
    F(TRAFFIC_F_REQUEST_BYTES, "request_bytes", FT_INT64, request_bytes, 0),
    F(TRAFFIC_F_RESPONSE_BYTES, "response_bytes", FT_INT64, response_bytes, 0),
    F(TRAFFIC_F_TARGET_HOST, "target_host", FT_TEXT, target_host, TRAFFIC_W_HOST),
    F(TRAFFIC_F_TARGET_METHOD, "target_method", FT_TEXT, target_method, TRAFFIC_W_METHOD),
    F(TRAFFIC_F_PROXY_SLUG, "proxy_slug", FT_TEXT, proxy_slug, TRAFFIC_W_SLUG),
    F(TRAFFIC_F_COUNTRY, "country", FT_TEXT, country, TRAFFIC_W_COUNTRY),
    F(TRAFFIC_F_SESSION_ID, "session_id", FT_TEXT, session_id, TRAFFIC_W_SESSION),
    F(TRAFFIC_F_DURATION, "duration", FT_INT32, duration, 0),
    F(TRAFFIC_F_STATUS_CODE, "status_code", FT_INT32, status_code, 0),
    F(TRAFFIC_F_CLIENT_IP, "client_ip", FT_TEXT, client_ip, TRAFFIC_W_CLIENT_IP),
    F(TRAFFIC_F_TIMESTAMP, "timestamp", FT_INT64, timestamp_ms, 0),
    F(TRAFFIC_F_REQUEST_ID, "request_id", FT_BILLING_TEXT, request_id, TRAFFIC_REQUEST_ID_MAX),
#undef F
};

const char *traffic_field_name(enum traffic_field f)
{
    return (unsigned)f < TRAFFIC_F_COUNT ? fields[f].name : "?";
}

#define MAX_UNKNOWN 16 /* distinct unknown members tolerated in one record */

struct rec_ctx {
    struct traffic_record *r;
    uint32_t seen; /* bit per enum traffic_field */
    const char *unknown[MAX_UNKNOWN];
    size_t unknown_len[MAX_UNKNOWN];
    unsigned n_unknown;
};

/* Copies valid UTF-8 src into dst (room for width characters and a NUL),
 * NUL as U+FFFD, cut after `width` characters. True when it had to cut. */
static bool copy_text(char *dst, size_t width, const char *src, size_t len)
{
    size_t i = 0, o = 0;
    for (size_t chars = 0; i < len && chars < width; chars++) {
        unsigned c = (unsigned char)src[i];
        if (c == 0) {
            memcpy(dst + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
            continue;
        }
        size_t k = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        memcpy(dst + o, src + i, k);
        o += k;
        i += k;
    }
    dst[o] = '\0';
    return i < len;
}

static int unknown_member(struct rec_ctx *c, const char *key, size_t klen,
                          const struct json_value *v, char *err, size_t errlen)
{
    (void)v; /* any scalar is fine: the scanner refused the rest */
    for (unsigned i = 0; i < c->n_unknown; i++) {
        if (c->unknown_len[i] == klen && memcmp(c->unknown[i], key, klen) == 0) {
            set_err(err, errlen, "duplicate member \"%.40s\"", key);
            return -1;
        }
    }
    if (c->n_unknown == MAX_UNKNOWN) {
        set_err(err, errlen, "more than %d unknown members", MAX_UNKNOWN);
        return -1;
    }
    c->unknown[c->n_unknown] = key;
    c->unknown_len[c->n_unknown++] = klen;
    return 0;
}

static int record_member(void *ctx, const char *key, size_t klen, const struct json_value *v,
                         char *err, size_t errlen)
{
    struct rec_ctx *c = ctx;
    int f = 0;
    while (f < TRAFFIC_F_COUNT &&
           (strlen(fields[f].name) != klen || memcmp(fields[f].name, key, klen) != 0))
        f++;
    if (f == TRAFFIC_F_COUNT) return unknown_member(c, key, klen, v, err, errlen);

    const struct field_def *d = &fields[f];
    char *base = (char *)c->r;
    if (c->seen & (1u << f)) {
        set_err(err, errlen, "duplicate member \"%s\"", d->name);
        return -1;
    }
    c->seen |= 1u << f;

    if (d->type == FT_TEXT || d->type == FT_BILLING_TEXT) {
        if (v->kind != JSON_STRING) {
            set_err(err, errlen, "%s: must be a string", d->name);
            return -1;
        }
        if (d->type == FT_TEXT) {
            if (copy_text(base + d->off, d->width, v->str, v->len)) c->r->truncated |= 1u << f;
            return 0;
        }
        /* username, request_id: exact, or refused */
        if (v->len == 0) {
            set_err(err, errlen, "%s: empty", d->name);
            return -1;
        }
        if (memchr(v->str, '\0', v->len) != NULL) {
            set_err(err, errlen, "%s: contains U+0000", d->name);
            return -1;
        }
        if (f == TRAFFIC_F_REQUEST_ID && v->len > d->width) {
            set_err(err, errlen, "request_id: longer than %zu bytes", d->width);
            return -1;
        }
        if (f == TRAFFIC_F_USERNAME && utf8_chars(v->str, v->len) > d->width) {
            set_err(err, errlen, "username: longer than %zu characters (no such user)", d->width);
            return -1;
        }
        memcpy(base + d->off, v->str, v->len + 1);
        return 0;
    }

    if (v->kind == JSON_INT_RANGE) {
        set_err(err, errlen, "%s: out of range", d->name);
        return -1;
    }
    if (v->kind != JSON_INT) {
        set_err(err, errlen, "%s: must be an integer", d->name);
        return -1;
    }
    int64_t lo = INT64_MIN, hi = INT64_MAX;
    if (d->type == FT_INT32) {
        lo = INT32_MIN;
        hi = INT32_MAX;
    }
    if (f == TRAFFIC_F_REQUEST_BYTES || f == TRAFFIC_F_RESPONSE_BYTES) lo = 0;
    if (f == TRAFFIC_F_TIMESTAMP) {
        lo = 0;
        hi = TRAFFIC_TIMESTAMP_MAX;
    }
    if (v->i < lo || v->i > hi) {
        set_err(err, errlen, "%s: %lld is out of range %lld..%lld", d->name, (long long)v->i,
                (long long)lo, (long long)hi);
        return -1;
    }
    if (d->type == FT_INT32) {
        int32_t x = (int32_t)v->i;
        memcpy(base + d->off, &x, sizeof(x));
    } else {
        memcpy(base + d->off, &v->i, sizeof(v->i));
    }
    return 0;
}

int traffic_record_parse(const char *json, size_t len, struct traffic_record *out, char *err,
                         size_t errlen)
{
    static _Thread_local char scratch[TRAFFIC_RECORD_MAX_LEN + 1];
    if (len > TRAFFIC_RECORD_MAX_LEN) {
        set_err(err, errlen, "record longer than %d bytes", TRAFFIC_RECORD_MAX_LEN);
        return -1;
    }
    memset(out, 0, sizeof(*out));
    struct rec_ctx c = {.r = out};
    if (traffic_json_scan(json, len, scratch, sizeof(scratch), record_member, &c, err, errlen) != 0)
        return -1;
    for (int f = 0; f < TRAFFIC_F_COUNT; f++) {
        if (!(c.seen & (1u << f))) {
            set_err(err, errlen, "missing member \"%s\"", fields[f].name);
            return -1;
        }
    }
    if (out->request_bytes > INT64_MAX - out->response_bytes) {
        set_err(err, errlen, "request_bytes + response_bytes overflows int64");
        return -1;
    }
    return 0;
}

/* --- the JSON writer (agent/common/json.h) ----------------------------------------- */

size_t traffic_json_quote(const char *s, size_t len, char *out, size_t cap)
{
    if (len > (SIZE_MAX - 2) / 6 || cap < traffic_json_quote_max(len)) return 0;
    struct textbuf b;
    textbuf_init(&b, out, cap);
    json_put_string(&b, s, len);
    return textbuf_len(&b);
}

char *traffic_dead_letter(const char *reason, const char *rec, size_t len, size_t *outlen)
{
    size_t rlen = strlen(reason);
    if (len > SIZE_MAX / 16 || rlen > SIZE_MAX / 16) return NULL;
    bool utf8 = utf8_valid(rec, len);
    size_t cap = 64 + traffic_json_quote_max(rlen) + traffic_json_quote_max(len) +
                 (utf8 ? 0 : BASE64_LEN(len));
    char *out = malloc(cap);
    if (out == NULL) return NULL;
    size_t o = 0;
    memcpy(out + o, "{\"reason\":", 10);
    o += 10;
    o += traffic_json_quote(reason, rlen, out + o, cap - o);
    memcpy(out + o, ",\"record\":", 10);
    o += 10;
    o += traffic_json_quote(rec, len, out + o, cap - o);
    if (!utf8) {
        memcpy(out + o, ",\"record_base64\":\"", 18);
        o += 18;
        o += base64_encode(rec, len, out + o);
        out[o++] = '"';
    }
    out[o++] = '}';
    out[o] = '\0';
    *outlen = o;
    return out;
}
