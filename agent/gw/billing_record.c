/*
 * Billing records: parse HAProxy's log line, write the reference's JSON
 * (see billing_record.h for both formats). Pure functions, fuzzed. Base64
 * and the JSON string rule are the common ones (agent/common/).
 */
#include <string.h>

#include "base64.h"
#include "billing_record.h"
#include "json.h"
#include "textbuf.h"

/* Standard base64 with padding, its padding bits unchecked (HAProxy writes
 * them zero; a bill is not refused over them); "-" means absent. Decodes to *pos, at most up to
 * end. */
static bool decode_b64(const char *s, size_t len, char **pos, const char *end,
                       struct billing_str *out)
{
    if (len == 1 && s[0] == '-') {
        out->ptr = NULL;
        out->len = 0;
        return true;
    }
    long n = base64_decode(s, len, *pos, (size_t)(end - *pos), false);
    if (n < 0) return false;
    out->ptr = *pos;
    out->len = (size_t)n;
    *pos += n;
    return true;
}

/* Decimal integer, optional leading '-'; "-" alone means absent (0). */
static bool parse_int(const char *s, size_t len, int64_t *out)
{
    if (len == 1 && s[0] == '-') {
        *out = 0;
        return true;
    }
    bool neg = len > 0 && s[0] == '-';
    size_t i = neg;
    if (i == len || len - i > 19) return false;
    int64_t v = 0;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9' || __builtin_mul_overflow(v, 10, &v) ||
            __builtin_add_overflow(v, s[i] - '0', &v))
            return false;
    }
    *out = neg ? -v : v;
    return true;
}

static bool parse_count(const char *s, size_t len, uint64_t *out)
{
    int64_t v;
    if (!parse_int(s, len, &v) || v < 0) return false;
    *out = (uint64_t)v;
    return true;
}

/* A request id or an address: printable ASCII without spaces, taken as is. */
static bool plain_token(const char *s, size_t len, struct billing_str *out)
{
    if (len == 1 && s[0] == '-') {
        out->ptr = NULL;
        out->len = 0;
        return true;
    }
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f) return false;
    out->ptr = s;
    out->len = len;
    return true;
}

enum {
    F_TAG,
    F_ID,
    F_VERDICT,
    F_USER,
    F_SLUG,
    F_COUNTRY,
    F_SESSION,
    F_DURATION,
    F_METHOD,
    F_TARGET,
    F_STATUS,
    F_IN,
    F_OUT,
    F_IP,
    F_TS,
    F_GW1_COUNT, /* gw1 ends here */
    F_REQ_HEADERS = F_GW1_COUNT,
    F_RES_HEADERS,
    F_GW2_COUNT, /* gw2 ends here */
    F_STREAM = F_GW2_COUNT,
    F_TERMINATION,
    F_COUNT,
};

/* Fields of a record the gateway did not forward: tag, id, "-", then status
 * to the end. */
static size_t not_forwarded_fields(size_t count)
{
    return 3 + count - F_STATUS;
}

static const char *const field_names[F_COUNT] = {"tag",
                                                 "request id",
                                                 "verdict",
                                                 "user",
                                                 "slug",
                                                 "country",
                                                 "session",
                                                 "duration",
                                                 "method",
                                                 "target",
                                                 "status",
                                                 "bytes in",
                                                 "bytes out",
                                                 "client ip",
                                                 "timestamp",
                                                 "request header count",
                                                 "response header count",
                                                 "stream",
                                                 "termination state"};

/* HAProxy counts a message head as it holds it (HTX): the start line's three
 * parts plus 20 bytes, each header's name and value, 1 byte for the end of
 * the head. On the wire a head is the three parts plus 4 (two spaces, CRLF),
 * each header as name ": " value CRLF, and a final CRLF: so the wire size is
 * HAProxy's count - 15 + 4 per header line. */
static uint64_t wire_bytes(uint64_t counted, bool have_headers, int64_t headers)
{
    if (!have_headers || headers < 0 || counted + 4 * (uint64_t)headers < 15) return counted;
    return counted + 4 * (uint64_t)headers - 15;
}

int billing_record_parse(const char *line, size_t len, struct billing_record *r, char *buf,
                         size_t cap, const char **err)
{
    const char *f[F_COUNT];
    size_t flen[F_COUNT];
    size_t n = 0, i = 0;

    memset(r, 0, sizeof(*r));
    if (len > BILLING_LINE_MAX) {
        *err = "record longer than BILLING_LINE_MAX";
        return -1;
    }
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    while (i < len) {
        if (n == F_COUNT) {
            *err = "too many fields";
            return -1;
        }
        size_t j = i;
        while (j < len && line[j] != ' ')
            j++;
        if (j == i) {
            *err = "empty field (double space)";
            return -1;
        }
        f[n] = line + i;
        flen[n++] = j - i;
        i = j + 1;
        if (j + 1 == len) {
            *err = "trailing space";
            return -1;
        }
    }
    int version = n > 0 && flen[F_TAG] == 3 && memcmp(f[F_TAG], "gw", 2) == 0 &&
                          f[F_TAG][2] >= '1' && f[F_TAG][2] <= '3'
                      ? f[F_TAG][2] - '0'
                      : 0;
    if (version == 0) {
        *err = "not a gw1, gw2 or gw3 record";
        return -1;
    }
    bool gw2 = version >= 2;
    size_t count = version == 1 ? F_GW1_COUNT : version == 2 ? F_GW2_COUNT : F_COUNT;
    /* gw2/gw3 of a request the gateway did not forward: "-" for the
     * verdict's fields (haproxy/gateway.cfg sets them only when forwarding),
     * then the fields from status on; nothing to bill */
    if (gw2 && n == not_forwarded_fields(count) && flen[F_VERDICT] == 1 && f[F_VERDICT][0] == '-') {
        if (!plain_token(f[F_ID], flen[F_ID], &r->request_id)) {
            *err = field_names[F_ID];
            return -1;
        }
        if (!parse_int(f[F_VERDICT + 1], flen[F_VERDICT + 1], &r->status)) {
            *err = field_names[F_STATUS];
            return -1;
        }
        /* the stream, which a 200 verdict registered even when HAProxy then
         * refused the request (a per-user limit's 429) */
        size_t at = F_STREAM - F_STATUS + 3;
        if (version >= 3 && !plain_token(f[at], flen[at], &r->stream)) {
            *err = field_names[F_STREAM];
            return -1;
        }
        return 0;
    }
    if (n != count) {
        *err = n < count ? "too few fields" : "too many fields";
        return -1;
    }

    char *pos = buf;
    const char *end = buf + cap;
    struct billing_str *b64_fields[] = {
        [F_USER] = &r->user,       [F_SLUG] = &r->slug,     [F_COUNTRY] = &r->country,
        [F_SESSION] = &r->session, [F_METHOD] = &r->method, [F_TARGET] = &r->target};
    for (int k = F_USER; k <= F_TARGET; k++) {
        if (k == F_DURATION) continue;
        if (!decode_b64(f[k], flen[k], &pos, end, b64_fields[k])) {
            *err = field_names[k];
            return -1;
        }
    }
    int bad = -1;
    if (!plain_token(f[F_ID], flen[F_ID], &r->request_id))
        bad = F_ID;
    else if (!parse_int(f[F_VERDICT], flen[F_VERDICT], &r->verdict))
        bad = F_VERDICT;
    else if (!parse_int(f[F_DURATION], flen[F_DURATION], &r->duration_min))
        bad = F_DURATION;
    else if (!parse_int(f[F_STATUS], flen[F_STATUS], &r->status))
        bad = F_STATUS;
    else if (!parse_count(f[F_IN], flen[F_IN], &r->bytes_in))
        bad = F_IN;
    else if (!parse_count(f[F_OUT], flen[F_OUT], &r->bytes_out))
        bad = F_OUT;
    else if (!plain_token(f[F_IP], flen[F_IP], &r->client_ip))
        bad = F_IP;
    else if (!parse_int(f[F_TS], flen[F_TS], &r->timestamp_ms))
        bad = F_TS;
    int64_t req_headers = 0, res_headers = 0;
    if (bad < 0 && gw2) {
        if (!parse_int(f[F_REQ_HEADERS], flen[F_REQ_HEADERS], &req_headers) || req_headers < 0)
            bad = F_REQ_HEADERS;
        else if (!parse_int(f[F_RES_HEADERS], flen[F_RES_HEADERS], &res_headers) || res_headers < 0)
            bad = F_RES_HEADERS;
    }
    if (bad < 0 && version >= 3) {
        if (!plain_token(f[F_STREAM], flen[F_STREAM], &r->stream))
            bad = F_STREAM;
        else if (!plain_token(f[F_TERMINATION], flen[F_TERMINATION], &r->termination))
            bad = F_TERMINATION;
    }
    if (bad >= 0) {
        *err = field_names[bad];
        return -1;
    }
    /* "-": no head was received (e.g. no response), nothing to convert */
    r->bytes_in = wire_bytes(r->bytes_in, gw2 && f[F_REQ_HEADERS][0] != '-', req_headers);
    r->bytes_out = wire_bytes(r->bytes_out, gw2 && f[F_RES_HEADERS][0] != '-', res_headers);
    return 0;
}

bool billing_record_billable(const struct billing_record *r)
{
    return r->verdict == 200 && r->request_id.ptr != NULL;
}

/* --- JSON (the common writer: agent/common/json.h) ------------------------------------ */

static void put_str(struct textbuf *o, struct billing_str s)
{
    json_put_string(o, s.ptr, s.ptr ? s.len : 0);
}

size_t billing_record_json(const struct billing_record *r, char *out, size_t cap)
{
    struct textbuf o;
    textbuf_init(&o, out, cap);
    textbuf_puts(&o, "{\"username\":");
    put_str(&o, r->user);
    textbuf_puts(&o, ",\"request_bytes\":");
    textbuf_put_int(&o, (int64_t)r->bytes_in);
    textbuf_puts(&o, ",\"response_bytes\":");
    textbuf_put_int(&o, (int64_t)r->bytes_out);
    textbuf_puts(&o, ",\"target_host\":");
    put_str(&o, r->target);
    textbuf_puts(&o, ",\"target_method\":");
    put_str(&o, r->method);
    textbuf_puts(&o, ",\"proxy_slug\":");
    put_str(&o, r->slug);
    textbuf_puts(&o, ",\"country\":");
    put_str(&o, r->country);
    textbuf_puts(&o, ",\"session_id\":");
    put_str(&o, r->session);
    textbuf_puts(&o, ",\"duration\":");
    textbuf_put_int(&o, r->duration_min);
    textbuf_puts(&o, ",\"status_code\":");
    textbuf_put_int(&o, r->status);
    textbuf_puts(&o, ",\"client_ip\":");
    put_str(&o, r->client_ip);
    textbuf_puts(&o, ",\"timestamp\":");
    textbuf_put_int(&o, r->timestamp_ms);
    textbuf_puts(&o, ",\"request_id\":");
    put_str(&o, r->request_id);
    if (r->cut_reason) {
        textbuf_puts(&o, ",\"cut_reason\":");
        put_str(&o, (struct billing_str){r->cut_reason, strlen(r->cut_reason)});
    }
    textbuf_putc(&o, '}');
    return textbuf_len(&o);
}

size_t billing_json_request_id(const char *json, size_t len, char *out, size_t cap)
{
    static const char key[] = ",\"request_id\":\"";
    const size_t klen = sizeof(key) - 1;
    const char *p = NULL;
    for (size_t i = len >= klen ? len - klen + 1 : 0; i-- > 0;) /* the last one: ours */
        if (memcmp(json + i, key, klen) == 0) {
            p = json + i + klen;
            break;
        }
    if (!p) return 0;
    size_t n = 0;
    for (const char *end = json + len; p < end; p++) {
        if (*p == '"') return n;
        if (*p == '\\') { /* a plain token has only \" and \\ escaped */
            if (++p == end || (*p != '"' && *p != '\\')) return 0;
        }
        if (n == cap) return 0;
        out[n++] = *p;
    }
    return 0;
}
