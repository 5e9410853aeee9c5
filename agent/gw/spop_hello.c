/*
 * SPOP handshake and teardown frames: HAPROXY-HELLO / AGENT-HELLO and the
 * DISCONNECT frames of both sides (doc/SPOE.txt 3.2.4, 3.2.5, 3.2.8, 3.2.9).
 *
 * HELLO decoding turns every handshake problem into the spec's status code so
 * the connection layer can answer with the right AGENT-DISCONNECT.
 */
#include <ctype.h>
#include <string.h>

#include "spop.h"

/* Calls fn on each comma-separated, space-trimmed item of s. */
static void for_each_item(struct spop_str s, void (*fn)(struct spop_str item, void *ctx), void *ctx)
{
    const char *p = s.ptr, *end = s.ptr + s.len;
    while (p <= end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma ? comma : end;
        const char *a = p, *b = stop;
        while (a < b && isspace((unsigned char)*a))
            a++;
        while (b > a && isspace((unsigned char)b[-1]))
            b--;
        fn((struct spop_str){a, (size_t)(b - a)}, ctx);
        if (!comma) break;
        p = comma + 1;
    }
}

static void note_version(struct spop_str item, void *ctx)
{
    struct spop_hello *h = ctx;
    /* "Major.Minor": announcing major 2 means every 2.x up to that minor. */
    if (item.len >= 3 && item.ptr[0] == '2' && item.ptr[1] == '.' &&
        isdigit((unsigned char)item.ptr[2]))
        h->version_2_supported = true;
}

static void note_capability(struct spop_str item, void *ctx)
{
    struct spop_hello *h = ctx;
    if (spop_str_eq(item, "pipelining"))
        h->cap_pipelining = true;
    else if (spop_str_eq(item, "async"))
        h->cap_async = true;
    else if (spop_str_eq(item, "fragmentation"))
        h->cap_fragmentation = true;
}

int spop_hello_decode(const uint8_t *p, size_t len, struct spop_hello *h)
{
    struct spop_reader r = {p, p + len};
    memset(h, 0, sizeof(*h));

    while (r.p < r.end) {
        struct spop_str name;
        struct spop_data v;
        if (!spop_get_str(&r, &name) || !spop_get_data(&r, &v)) return SPOP_ERR_INVALID;
        if (spop_str_eq(name, "supported-versions")) {
            if (v.type != SPOP_T_STRING) return SPOP_ERR_INVALID;
            h->has_versions = true;
            for_each_item(v.u.str, note_version, h);
        } else if (spop_str_eq(name, "max-frame-size")) {
            uint64_t mfs;
            if (!spop_data_as_u64(&v, &mfs)) return SPOP_ERR_INVALID;
            h->has_max_frame_size = true;
            h->max_frame_size = mfs > UINT32_MAX ? UINT32_MAX : (uint32_t)mfs;
        } else if (spop_str_eq(name, "capabilities")) {
            if (v.type != SPOP_T_STRING) return SPOP_ERR_INVALID;
            h->has_capabilities = true;
            for_each_item(v.u.str, note_capability, h);
        } else if (spop_str_eq(name, "healthcheck")) {
            if (v.type != SPOP_T_BOOL) return SPOP_ERR_INVALID;
            h->healthcheck = v.u.b;
        } else if (spop_str_eq(name, "engine-id")) {
            if (v.type == SPOP_T_STRING) h->engine_id = v.u.str;
        }
        /* unknown keys are ignored, as the spec asks */
    }
    if (!h->has_versions) return SPOP_ERR_NO_VSN;
    if (!h->has_max_frame_size) return SPOP_ERR_NO_FRAME_SIZE;
    if (!h->has_capabilities) return SPOP_ERR_NO_CAP;
    if (!h->version_2_supported) return SPOP_ERR_BAD_VSN;
    if (h->max_frame_size < SPOP_MIN_FRAME_SIZE) return SPOP_ERR_BAD_FRAME_SIZE;
    return SPOP_OK;
}

bool spop_agent_hello_encode(struct spop_writer *w, uint32_t max_frame_size,
                             const char *capabilities)
{
    size_t start = spop_frame_begin(w, SPOP_FRAME_AGENT_HELLO, SPOP_FLAG_FIN, 0, 0);
    struct spop_data v = spop_data_cstr("2.0");
    spop_put_kv(w, "version", &v);
    v = spop_data_u32(max_frame_size);
    spop_put_kv(w, "max-frame-size", &v);
    v = spop_data_cstr(capabilities);
    spop_put_kv(w, "capabilities", &v);
    return spop_frame_end(w, start, max_frame_size);
}

bool spop_haproxy_hello_encode(struct spop_writer *w, uint32_t max_frame_size,
                               const char *capabilities, bool healthcheck)
{
    size_t start = spop_frame_begin(w, SPOP_FRAME_HAPROXY_HELLO, SPOP_FLAG_FIN, 0, 0);
    struct spop_data v = spop_data_cstr("2.0");
    spop_put_kv(w, "supported-versions", &v);
    v = spop_data_u32(max_frame_size);
    spop_put_kv(w, "max-frame-size", &v);
    v = spop_data_cstr(capabilities);
    spop_put_kv(w, "capabilities", &v);
    if (healthcheck) {
        v = spop_data_bool(true);
        spop_put_kv(w, "healthcheck", &v);
    }
    return spop_frame_end(w, start, max_frame_size);
}

int spop_disconnect_decode(const uint8_t *p, size_t len, struct spop_disconnect *d)
{
    struct spop_reader r = {p, p + len};
    bool has_status = false, has_message = false;

    memset(d, 0, sizeof(*d));
    while (r.p < r.end) {
        struct spop_str name;
        struct spop_data v;
        uint64_t status;
        if (!spop_get_str(&r, &name) || !spop_get_data(&r, &v)) return SPOP_ERR_INVALID;
        if (spop_str_eq(name, "status-code")) {
            if (!spop_data_as_u64(&v, &status) || status > UINT32_MAX) return SPOP_ERR_INVALID;
            d->status = (uint32_t)status;
            has_status = true;
        } else if (spop_str_eq(name, "message")) {
            if (v.type != SPOP_T_STRING) return SPOP_ERR_INVALID;
            d->message = v.u.str;
            has_message = true;
        }
    }
    return has_status && has_message ? SPOP_OK : SPOP_ERR_INVALID;
}

bool spop_disconnect_encode(struct spop_writer *w, uint8_t frame_type, uint32_t status,
                            const char *message)
{
    size_t start = spop_frame_begin(w, frame_type, SPOP_FLAG_FIN, 0, 0);
    struct spop_data v = spop_data_u32(status);
    spop_put_kv(w, "status-code", &v);
    v = spop_data_cstr(message);
    spop_put_kv(w, "message", &v);
    return spop_frame_end(w, start, UINT32_MAX);
}

const char *spop_status_str(uint32_t status)
{
    switch (status) {
    case SPOP_OK:
        return "normal";
    case SPOP_ERR_IO:
        return "I/O error";
    case SPOP_ERR_TIMEOUT:
        return "a timeout occurred";
    case SPOP_ERR_TOO_BIG:
        return "frame is too big";
    case SPOP_ERR_INVALID:
        return "invalid frame received";
    case SPOP_ERR_NO_VSN:
        return "version value not found";
    case SPOP_ERR_NO_FRAME_SIZE:
        return "max-frame-size value not found";
    case SPOP_ERR_NO_CAP:
        return "capabilities value not found";
    case SPOP_ERR_BAD_VSN:
        return "unsupported version";
    case SPOP_ERR_BAD_FRAME_SIZE:
        return "max-frame-size too big or too small";
    case SPOP_ERR_FRAG_NOT_SUPPORTED:
        return "payload fragmentation is not supported";
    case SPOP_ERR_INTERLACED_FRAMES:
        return "invalid interlaced frames";
    case SPOP_ERR_FRAMEID_NOTFOUND:
        return "frame-id not found";
    case SPOP_ERR_RES:
        return "resource allocation error";
    default:
        return "an unknown error occurred";
    }
}
