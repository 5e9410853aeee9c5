/*
 * SPOP primitives: varints and typed data (doc/SPOE.txt section 3.1).
 *
 * Everything the frame codecs build on. Readers never step past `end` and
 * report truncation or out-of-range values as `false`; writers stop at `cap`
 * and latch `overflow`. Integer typed data is checked against its declared
 * width so a peer cannot smuggle a 64-bit value in an INT32.
 */
#include <string.h>

#include "spop.h"

void spop_writer_init(struct spop_writer *w, void *buf, size_t cap)
{
    w->buf = buf;
    w->len = 0;
    w->cap = cap;
    w->overflow = false;
}

void spop_put_bytes(struct spop_writer *w, const void *p, size_t len)
{
    if (w->overflow || len > w->cap - w->len) {
        w->overflow = true;
        return;
    }
    if (len) memcpy(w->buf + w->len, p, len);
    w->len += len;
}

static void put_byte(struct spop_writer *w, uint8_t b)
{
    spop_put_bytes(w, &b, 1);
}

/* HAProxy's "peers" varint: values below 240 take one byte; above, the first
 * byte carries the low 4 bits (ORed with 0xF0) and each following byte 7 more
 * bits, high bit meaning "more". At most 10 bytes for 64 bits. */
void spop_put_varint(struct spop_writer *w, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;

    if (v < 240) {
        put_byte(w, (uint8_t)v);
        return;
    }
    tmp[n++] = (uint8_t)v | 0xF0;
    v = (v - 240) >> 4;
    while (v >= 128) {
        tmp[n++] = (uint8_t)v | 0x80;
        v = (v - 128) >> 7;
    }
    tmp[n++] = (uint8_t)v;
    spop_put_bytes(w, tmp, n);
}

bool spop_get_varint(struct spop_reader *r, uint64_t *out)
{
    if (r->p >= r->end) return false;
    uint64_t v = *r->p++;
    if (v < 240) {
        *out = v;
        return true;
    }
    unsigned shift = 4;
    for (;;) {
        if (r->p >= r->end || shift > 60) return false;
        uint64_t b = *r->p++;
        /* The bits of b that land above bit 63 must be zero. */
        if (shift > 57 && (b >> (64 - shift)) != 0) return false;
        if (__builtin_add_overflow(v, b << shift, &v)) return false;
        if (b < 128) break;
        shift += 7;
    }
    *out = v;
    return true;
}

bool spop_get_str(struct spop_reader *r, struct spop_str *out)
{
    uint64_t len;
    if (!spop_get_varint(r, &len) || len > (uint64_t)(r->end - r->p)) return false;
    out->ptr = (const char *)r->p;
    out->len = (size_t)len;
    r->p += len;
    return true;
}

void spop_put_str(struct spop_writer *w, const char *s, size_t len)
{
    spop_put_varint(w, len);
    spop_put_bytes(w, s, len);
}

bool spop_get_data(struct spop_reader *r, struct spop_data *out)
{
    if (r->p >= r->end) return false;
    uint8_t tb = *r->p++;
    uint64_t v;

    out->type = (enum spop_type)(tb & 0x0F);
    switch (out->type) {
    case SPOP_T_NULL:
        return true;
    case SPOP_T_BOOL:
        out->u.b = (tb & 0x10) != 0;
        return true;
    case SPOP_T_INT32:
        /* Encoded as the two's complement bit pattern of a 64-bit integer. */
        if (!spop_get_varint(r, &v) || (int64_t)v < INT32_MIN || (int64_t)v > INT32_MAX)
            return false;
        out->u.i32 = (int32_t)(int64_t)v;
        return true;
    case SPOP_T_UINT32:
        if (!spop_get_varint(r, &v) || v > UINT32_MAX) return false;
        out->u.u32 = (uint32_t)v;
        return true;
    case SPOP_T_INT64:
        if (!spop_get_varint(r, &v)) return false;
        out->u.i64 = (int64_t)v;
        return true;
    case SPOP_T_UINT64:
        return spop_get_varint(r, &out->u.u64);
    case SPOP_T_IPV4:
        if (r->end - r->p < 4) return false;
        memcpy(out->u.ipv4, r->p, 4);
        r->p += 4;
        return true;
    case SPOP_T_IPV6:
        if (r->end - r->p < 16) return false;
        memcpy(out->u.ipv6, r->p, 16);
        r->p += 16;
        return true;
    case SPOP_T_STRING:
    case SPOP_T_BINARY:
        return spop_get_str(r, &out->u.str);
    }
    return false; /* types 10..15 are reserved */
}

void spop_put_data(struct spop_writer *w, const struct spop_data *d)
{
    switch (d->type) {
    case SPOP_T_NULL:
        put_byte(w, SPOP_T_NULL);
        return;
    case SPOP_T_BOOL:
        put_byte(w, SPOP_T_BOOL | (d->u.b ? 0x10 : 0));
        return;
    case SPOP_T_INT32:
        put_byte(w, SPOP_T_INT32);
        spop_put_varint(w, (uint64_t)(int64_t)d->u.i32);
        return;
    case SPOP_T_UINT32:
        put_byte(w, SPOP_T_UINT32);
        spop_put_varint(w, d->u.u32);
        return;
    case SPOP_T_INT64:
        put_byte(w, SPOP_T_INT64);
        spop_put_varint(w, (uint64_t)d->u.i64);
        return;
    case SPOP_T_UINT64:
        put_byte(w, SPOP_T_UINT64);
        spop_put_varint(w, d->u.u64);
        return;
    case SPOP_T_IPV4:
        put_byte(w, SPOP_T_IPV4);
        spop_put_bytes(w, d->u.ipv4, 4);
        return;
    case SPOP_T_IPV6:
        put_byte(w, SPOP_T_IPV6);
        spop_put_bytes(w, d->u.ipv6, 16);
        return;
    case SPOP_T_STRING:
    case SPOP_T_BINARY:
        put_byte(w, (uint8_t)d->type);
        spop_put_str(w, d->u.str.ptr, d->u.str.len);
        return;
    }
    w->overflow = true; /* not a type we can encode: make the frame fail */
}

struct spop_data spop_data_str(const char *s, size_t len)
{
    struct spop_data d = {.type = SPOP_T_STRING};
    d.u.str.ptr = s;
    d.u.str.len = len;
    return d;
}

struct spop_data spop_data_cstr(const char *s)
{
    return spop_data_str(s, strlen(s));
}

struct spop_data spop_data_u32(uint32_t v)
{
    struct spop_data d = {.type = SPOP_T_UINT32};
    d.u.u32 = v;
    return d;
}

struct spop_data spop_data_i64(int64_t v)
{
    struct spop_data d = {.type = SPOP_T_INT64};
    d.u.i64 = v;
    return d;
}

struct spop_data spop_data_bool(bool v)
{
    struct spop_data d = {.type = SPOP_T_BOOL};
    d.u.b = v;
    return d;
}

bool spop_data_as_u64(const struct spop_data *d, uint64_t *out)
{
    switch (d->type) {
    case SPOP_T_INT32:
        if (d->u.i32 < 0) return false;
        *out = (uint64_t)d->u.i32;
        return true;
    case SPOP_T_UINT32:
        *out = d->u.u32;
        return true;
    case SPOP_T_INT64:
        if (d->u.i64 < 0) return false;
        *out = (uint64_t)d->u.i64;
        return true;
    case SPOP_T_UINT64:
        *out = d->u.u64;
        return true;
    default:
        return false;
    }
}

bool spop_str_eq(struct spop_str s, const char *cstr)
{
    size_t n = strlen(cstr);
    return s.len == n && memcmp(s.ptr, cstr, n) == 0;
}
