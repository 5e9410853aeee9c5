/*
 * "show info; show sess all" parsing (see sess_dump.h). Only four kinds of
 * line matter; everything is bounded by the line's length.
 */
#include "sess_dump.h"

#include <string.h>

void sess_dump_init(struct sess_dump *d, sess_stream_fn on_stream, void *arg)
{
    memset(d, 0, sizeof(*d));
    d->on_stream = on_stream;
    d->arg = arg;
}

static bool starts(const char *p, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(p, prefix, n) == 0;
}

/* Decimal (base 10) or hex (base 16) digits at p[*i..len); at least one, no
 * overflow. */
static bool number(const char *p, size_t len, size_t *i, int base, uint64_t *out)
{
    uint64_t v = 0;
    size_t start = *i;
    for (; *i < len; (*i)++) {
        char c = p[*i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (base == 16 && c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else if (base == 16 && c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else
            break;
        if (v > (UINT64_MAX - d) / (uint64_t)base) return false;
        v = v * (uint64_t)base + d;
    }
    if (*i == start) return false;
    *out = v;
    return true;
}

/* The number after the first " <key>=" in the line. */
static bool field(const char *p, size_t len, const char *key, int base, uint64_t *out)
{
    size_t klen = strlen(key);
    for (size_t i = 0; i + klen + 2 <= len; i++) {
        if ((p[i] == ' ' || p[i] == '(') && memcmp(p + i + 1, key, klen) == 0 &&
            p[i + 1 + klen] == '=') {
            size_t j = i + klen + 2;
            return number(p, len, &j, base, out);
        }
    }
    return false;
}

static void bad(struct sess_dump *d)
{
    d->malformed++;
    d->in_stream = false;
}

void sess_dump_line(struct sess_dump *d, const char *p, size_t len)
{
    if (starts(p, len, "0x")) { /* a stream's first line */
        size_t i = 2;
        d->in_stream = false;
        memset(&d->cur, 0, sizeof(d->cur));
        if (!number(p, len, &i, 16, &d->cur.ptr) || i >= len || p[i] != ':' ||
            !field(p, len, "id", 10, &d->cur.id)) {
            bad(d);
            return;
        }
        d->in_stream = true;
        d->have_req = false;
        return;
    }
    if (starts(p, len, "Pid: ")) {
        size_t i = 5;
        uint64_t pid;
        if (number(p, len, &i, 10, &pid) && i == len) d->pid = pid;
        return;
    }
    if (!d->in_stream) return;
    if (starts(p, len, "  req=")) {
        if (!field(p, len, "total", 10, &d->cur.req_bytes)) {
            bad(d);
            return;
        }
        d->have_req = true;
    } else if (starts(p, len, "  res=")) {
        if (!d->have_req || !field(p, len, "total", 10, &d->cur.res_bytes)) {
            bad(d);
            return;
        }
        d->in_stream = false;
        d->streams++;
        d->on_stream(d->arg, &d->cur);
    }
}
