/*
 * libFuzzer target for agent/settle/traffic_record.c. Any byte string is a record
 * off the Redis list. When the parser accepts, every field must obey the
 * record's contract (valid UTF-8 without NUL that fits its column, numbers in
 * range), parsing must be deterministic, and the record written back as JSON
 * must parse to the same record. Whatever the verdict, the dead-letter entry
 * for the input must be JSON the reader accepts, and give back the input's
 * exact bytes (in "record", or in "record_base64" when they are not UTF-8).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "traffic_record.h"
#include "utf8.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) abort();                                                                         \
    } while (0)

static size_t chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static void check_text(const char *s, size_t cap, size_t width)
{
    size_t len = strnlen(s, cap);
    CHECK(len < cap);
    CHECK(utf8_valid(s, len));
    CHECK(chars(s) <= width);
}

/* The record as JSON, members in a fixed order. */
static size_t write_record(const struct traffic_record *r, char *out, size_t cap)
{
    const char *const names[] = {"username", "target_host", "target_method", "proxy_slug",
                                 "country",  "session_id",  "client_ip",     "request_id"};
    const char *const vals[] = {r->username, r->target_host, r->target_method, r->proxy_slug,
                                r->country,  r->session_id,  r->client_ip,     r->request_id};
    size_t n = (size_t)snprintf(out, cap,
                                "{\"request_bytes\":%lld,\"response_bytes\":%lld,"
                                "\"duration\":%d,\"status_code\":%d,\"timestamp\":%lld",
                                (long long)r->request_bytes, (long long)r->response_bytes,
                                (int)r->duration, (int)r->status_code, (long long)r->timestamp_ms);
    for (int i = 0; i < 8; i++) {
        n += (size_t)snprintf(out + n, cap - n, ",\"%s\":", names[i]);
        size_t q = traffic_json_quote(vals[i], strlen(vals[i]), out + n, cap - n);
        CHECK(q > 0);
        n += q;
    }
    out[n++] = '}';
    return n;
}

struct dl {
    const char *record, *b64;
    size_t record_len, b64_len;
    int reason, members;
};

static int dl_member(void *ctx, const char *key, size_t klen, const struct json_value *v, char *err,
                     size_t errlen)
{
    struct dl *d = ctx;
    (void)err;
    (void)errlen;
    CHECK(v->kind == JSON_STRING);
    d->members++;
    if (klen == 6 && memcmp(key, "reason", 6) == 0) d->reason++;
    if (klen == 6 && memcmp(key, "record", 6) == 0) {
        d->record = v->str;
        d->record_len = v->len;
    }
    if (klen == 13 && memcmp(key, "record_base64", 13) == 0) {
        d->b64 = v->str;
        d->b64_len = v->len;
    }
    return 0;
}

static int b64val(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Decodes padded base64; returns the length, or (size_t)-1. */
static size_t b64dec(const char *in, size_t len, unsigned char *out)
{
    if (len % 4) return (size_t)-1;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++)
            v[k] = in[i + k] == '=' ? 0 : b64val(in[i + k]);
        if (v[0] < 0 || v[1] < 0 || v[2] < 0 || v[3] < 0) return (size_t)-1;
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[o++] = (unsigned char)(w >> 16);
        if (in[i + 2] != '=') out[o++] = (unsigned char)(w >> 8);
        if (in[i + 3] != '=') out[o++] = (unsigned char)w;
    }
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    static struct traffic_record r, again;
    char err[160];
    memset(err, 'x', sizeof(err));
    int rc = traffic_record_parse(in, size, &r, err, sizeof(err));
    CHECK(rc == 0 || rc == -1);
    CHECK(memchr(err, '\0', sizeof(err)) != NULL);
    if (rc == 0) {
        check_text(r.username, sizeof(r.username), TRAFFIC_W_USERNAME);
        check_text(r.target_host, sizeof(r.target_host), TRAFFIC_W_HOST);
        check_text(r.target_method, sizeof(r.target_method), TRAFFIC_W_METHOD);
        check_text(r.proxy_slug, sizeof(r.proxy_slug), TRAFFIC_W_SLUG);
        check_text(r.country, sizeof(r.country), TRAFFIC_W_COUNTRY);
        check_text(r.session_id, sizeof(r.session_id), TRAFFIC_W_SESSION);
        check_text(r.client_ip, sizeof(r.client_ip), TRAFFIC_W_CLIENT_IP);
        check_text(r.request_id, sizeof(r.request_id), TRAFFIC_REQUEST_ID_MAX);
        CHECK(r.username[0] != '\0' && r.request_id[0] != '\0');
        CHECK(strlen(r.request_id) <= TRAFFIC_REQUEST_ID_MAX);
        CHECK(r.request_bytes >= 0 && r.response_bytes >= 0);
        CHECK(r.request_bytes <= INT64_MAX - r.response_bytes);
        CHECK(r.timestamp_ms >= 0 && r.timestamp_ms <= TRAFFIC_TIMESTAMP_MAX);
        CHECK(r.truncated < (1u << TRAFFIC_F_COUNT));
        /* deterministic */
        CHECK(traffic_record_parse(in, size, &again, NULL, 0) == 0);
        CHECK(memcmp(&r, &again, sizeof(r)) == 0);
        /* written back and read again: the same record, nothing left to cut */
        static char json[TRAFFIC_RECORD_MAX_LEN];
        size_t n = write_record(&r, json, sizeof(json));
        CHECK(traffic_record_parse(json, n, &again, err, sizeof(err)) == 0);
        CHECK(again.truncated == 0);
        again.truncated = r.truncated;
        CHECK(memcmp(&r, &again, sizeof(r)) == 0);
    } else {
        CHECK(err[0] != '\0');
    }

    size_t dlen;
    char *d = traffic_dead_letter(rc == 0 ? "accepted" : err, in, size, &dlen);
    CHECK(d != NULL);
    CHECK(strlen(d) == dlen);
    char *scratch = malloc(dlen + 1);
    CHECK(scratch != NULL);
    struct dl got = {0};
    char derr[160];
    CHECK(traffic_json_scan(d, dlen, scratch, dlen + 1, dl_member, &got, derr, sizeof(derr)) == 0);
    CHECK(got.reason == 1 && got.record != NULL);
    if (utf8_valid(in, size)) {
        CHECK(got.members == 2 && got.b64 == NULL);
        CHECK(got.record_len == size && memcmp(got.record, in, size) == 0);
    } else {
        CHECK(got.members == 3 && got.b64 != NULL);
        unsigned char *raw = malloc(got.b64_len / 4 * 3 + 3);
        CHECK(raw != NULL);
        size_t rn = b64dec(got.b64, got.b64_len, raw);
        CHECK(rn == size && memcmp(raw, in, size) == 0);
        free(raw);
    }
    free(scratch);
    free(d);
    return 0;
}
