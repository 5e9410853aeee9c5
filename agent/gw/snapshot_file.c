/*
 * The snapshot file: the last good snapshot's rows on disk, so the agent can
 * start (on stale data, loudly) while PostgreSQL is down. Format in
 * snapshot.h: a fixed MessagePack header (magic, version, body length,
 * CRC-32) and a body of MessagePack arrays, one per row.
 *
 * Writing uses msgpack-c's packer, streamed to the file through a callback
 * that also computes the CRC, so a million users never sit in a second
 * buffer. Reading does not use msgpack-c's unpacker: it trusts the length in
 * an array header and allocates n * 24 bytes before reading a single element
 * (five bytes of a damaged file ask for 100 GB). The reader here is a small
 * cursor over the buffer that checks every length against the bytes left and
 * allocates nothing; rows go straight into the snapshot builder, which
 * validates them as it validates PostgreSQL's. The CRC-32 is zlib's.
 */
#include "snapshot_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* Larger files are refused before reading them (a million users take about
 * 70 MB). */
#define SNAPSHOT_FILE_MAX ((uint64_t)4 << 30)

/* Fields per row, as written. */
#define META_FIELDS     6
#define SKIP_FIELDS     7
#define PROVIDER_FIELDS 12
#define IP_FIELDS       2
#define USER_FIELDS     5
#define USER_FIELDS_V1  3 /* version 1: no limits */

/* --- CRC-32 ----------------------------------------------------------------------- */

/* Continues a CRC-32 (IEEE 802.3, zlib's): start with 0, feed pieces in order.
 * zlib's own, off the hot path (a snapshot write or a start). */
static uint32_t crc32_update(uint32_t crc, const void *buf, size_t len)
{
    return (uint32_t)crc32_z(crc, buf, len);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint64_t get_be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static void make_header(uint8_t h[SNAPSHOT_FILE_HEADER_LEN], uint64_t body_len, uint32_t crc)
{
    h[0] = 0x94;
    h[1] = 0xa6;
    memcpy(h + 2, SNAPSHOT_FILE_MAGIC, 6);
    h[8] = 0xce;
    put_be32(h + 9, SNAPSHOT_FILE_VERSION);
    h[13] = 0xcf;
    put_be64(h + 14, body_len);
    h[22] = 0xce;
    put_be32(h + 23, crc);
}

/* --- writing ------------------------------------------------------------------------- */

/* Where the packer's bytes go: a sink, with the CRC and length on the way. */
struct enc {
    int (*sink)(void *arg, const char *buf, size_t len);
    void *arg;
    uint32_t crc;
    uint64_t len; /* body bytes */
    bool failed;
};

static int enc_write(void *data, const char *buf, size_t len)
{
    struct enc *e = data;
    if (e->failed) return -1;
    if (e->sink(e->arg, buf, len) != 0) {
        e->failed = true;
        return -1;
    }
    e->crc = crc32_update(e->crc, buf, len);
    e->len += len;
    return 0;
}

static void pack_str(msgpack_packer *pk, const char *s, size_t len)
{
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, s, len);
}

/* The users in s's own table, but those shadow (a delta) has a record for;
 * removed ones never. */
static void pack_users(msgpack_packer *pk, struct enc *e, const struct snapshot *s,
                       const struct snapshot *shadow)
{
    for (size_t off = 0; off < s->urec_len && !e->failed;) {
        const struct user_rec *rec = (const void *)(s->urec + off);
        const struct snap_user *u = &rec->pub;
        off += rec->size;
        if (rec->dup || rec->removed) continue;
        if (shadow != NULL && snapshot_delta_has(shadow, u->username, u->username_len)) continue;
        msgpack_pack_array(pk, USER_FIELDS);
        msgpack_pack_int32(pk, u->id);
        pack_str(pk, u->username, u->username_len);
        pack_str(pk, u->password, u->password_len);
        msgpack_pack_int32(pk, u->max_conns); /* SNAP_LIMIT_DEFAULT (-1): NULL */
        msgpack_pack_int32(pk, u->max_rps);
    }
}

/* The body; returns 0, or -1 when the sink failed. */
static int encode_body(const struct snapshot *s, int64_t written_at_ms, struct enc *e)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, e, enc_write);
    msgpack_pack_array(&pk, META_FIELDS);
    msgpack_pack_int64(&pk, written_at_ms);
    msgpack_pack_int64(&pk, s->loaded_at_ms);
    msgpack_pack_uint64(&pk, s->n_provs);
    msgpack_pack_uint64(&pk, s->n_ips);
    msgpack_pack_uint64(&pk, s->n_users);
    msgpack_pack_array(&pk, SKIP_FIELDS);
    const struct snapshot_skips *k = &s->skips;
    msgpack_pack_uint32(&pk, k->bad_cidr);
    msgpack_pack_uint32(&pk, k->bad_port_range);
    msgpack_pack_uint32(&pk, k->bad_country_format);
    msgpack_pack_uint32(&pk, k->bad_template);
    msgpack_pack_uint32(&pk, k->unresolved_host);
    msgpack_pack_uint32(&pk, k->bad_user);
    msgpack_pack_uint32(&pk, k->duplicate);
    for (size_t i = 0; i < s->n_provs && !e->failed; i++) {
        const struct snap_prov *p = &s->provs[i];
        const char *fmt = country_format_name(p->pub.country_format);
        msgpack_pack_array(&pk, PROVIDER_FIELDS);
        msgpack_pack_int32(&pk, p->pub.id);
        pack_str(&pk, p->pub.slug, p->pub.slug_len);
        pack_str(&pk, p->pub.name, strlen(p->pub.name));
        pack_str(&pk, p->base_url, p->base_url_len);
        pack_str(&pk, p->pub.username, p->pub.username_len);
        pack_str(&pk, p->pub.password, p->pub.password_len);
        pack_str(&pk, p->url_template, p->url_template_len);
        msgpack_pack_uint16(&pk, p->pub.port_min);
        msgpack_pack_uint16(&pk, p->pub.port_max);
        if (p->pub.is_global)
            msgpack_pack_true(&pk);
        else
            msgpack_pack_false(&pk);
        pack_str(&pk, fmt, strlen(fmt));
        pack_str(&pk, p->pub.addr, strlen(p->pub.addr));
    }
    for (size_t i = 0; i < s->n_ips && !e->failed; i++) {
        msgpack_pack_array(&pk, IP_FIELDS);
        msgpack_pack_int32(&pk, s->ips[i].id);
        pack_str(&pk, s->ips[i].text, s->ips[i].len);
    }
    /* a delta: the base's users it does not change, then its own */
    if (s->base != NULL) pack_users(&pk, e, s->base, s);
    pack_users(&pk, e, s, NULL);
    return e->failed ? -1 : 0;
}

struct membuf {
    char *p;
    size_t len, cap;
};

static int mem_sink(void *arg, const char *buf, size_t len)
{
    struct membuf *m = arg;
    if (m->cap - m->len < len) {
        size_t cap = m->cap ? m->cap : 4096;
        while (cap - m->len < len) {
            if (cap > SIZE_MAX / 2) return -1;
            cap *= 2;
        }
        char *p = realloc(m->p, cap);
        if (p == NULL) return -1;
        m->p = p;
        m->cap = cap;
    }
    memcpy(m->p + m->len, buf, len);
    m->len += len;
    return 0;
}

void *snapshot_file_encode(const struct snapshot *s, int64_t written_at_ms, size_t *len)
{
    struct membuf m = {0};
    uint8_t hdr[SNAPSHOT_FILE_HEADER_LEN] = {0};
    if (mem_sink(&m, (const char *)hdr, sizeof(hdr)) != 0) return NULL;
    struct enc e = {.sink = mem_sink, .arg = &m};
    if (encode_body(s, written_at_ms, &e) != 0) {
        free(m.p);
        return NULL;
    }
    make_header((uint8_t *)m.p, e.len, e.crc);
    *len = m.len;
    return m.p;
}

static int file_sink(void *arg, const char *buf, size_t len)
{
    return fwrite(buf, 1, len, arg) == len ? 0 : -1;
}

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen, const char *fmt,
                                                          ...)
{
    if (err == NULL || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* fsync of the directory holding path, so the rename itself is durable. */
static int sync_dir(const char *path)
{
    char *copy = strdup(path);
    if (copy == NULL) return -1;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(copy);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int snapshot_file_write(const struct snapshot *s, const char *path, char *err, size_t errlen)
{
    size_t plen = strlen(path);
    char *tmp = malloc(plen + sizeof(".tmp.XXXXXX"));
    if (tmp == NULL) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", sizeof(".tmp.XXXXXX"));
    int fd = mkostemp(tmp, O_CLOEXEC); /* mode 0600: the file holds credentials */
    if (fd < 0) {
        set_err(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    FILE *f = fdopen(fd, "w");
    if (f == NULL) {
        set_err(err, errlen, "fdopen %s: %s", tmp, strerror(errno));
        close(fd);
        goto fail;
    }
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    uint8_t hdr[SNAPSHOT_FILE_HEADER_LEN] = {0};
    struct enc e = {.sink = file_sink, .arg = f};
    int rc = fwrite(hdr, 1, sizeof(hdr), f) == sizeof(hdr) ? 0 : -1;
    if (rc == 0) rc = encode_body(s, clock_wall_ms(), &e);
    if (rc == 0) rc = fflush(f);
    if (rc == 0) {
        make_header(hdr, e.len, e.crc);
        rc = pwrite(fd, hdr, sizeof(hdr), 0) == (ssize_t)sizeof(hdr) ? 0 : -1;
    }
    if (rc == 0) rc = fsync(fd);
    if (rc != 0) {
        set_err(err, errlen, "writing %s: %s", tmp, strerror(errno ? errno : EIO));
        fclose(f);
        goto fail;
    }
    if (fclose(f) != 0) {
        set_err(err, errlen, "closing %s: %s", tmp, strerror(errno));
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        set_err(err, errlen, "renaming %s to %s: %s", tmp, path, strerror(errno));
        goto fail;
    }
    free(tmp);
    if (sync_dir(path) != 0) {
        set_err(err, errlen, "fsync of the directory of %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
fail:
    unlink(tmp);
    free(tmp);
    return -1;
}

/* --- reading ----------------------------------------------------------------------------- */

/* A cursor over the body. Every reader checks the bytes it needs first. */
struct rd {
    const uint8_t *base, *p, *end;
    char *err;
    size_t errlen;
};

__attribute__((format(printf, 2, 3))) static int rd_fail(struct rd *r, const char *fmt, ...)
{
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    set_err(r->err, r->errlen, "corrupt at byte %zu: %s",
            (size_t)(r->p - r->base) + SNAPSHOT_FILE_HEADER_LEN, what);
    return -1;
}

static int rd_need(struct rd *r, size_t n, const char *what)
{
    if ((size_t)(r->end - r->p) < n) return rd_fail(r, "truncated %s", what);
    return 0;
}

static int rd_array(struct rd *r, uint32_t want, const char *what)
{
    if (rd_need(r, 1, what) != 0) return -1;
    uint8_t b = *r->p;
    uint64_t n;
    size_t hl;
    if (b >= 0x90 && b <= 0x9f)
        n = b & 0x0f, hl = 1;
    else if (b == 0xdc)
        hl = 3;
    else if (b == 0xdd)
        hl = 5;
    else
        return rd_fail(r, "%s is not an array", what);
    if (rd_need(r, hl, what) != 0) return -1;
    if (hl > 1) n = get_be(r->p + 1, (int)hl - 1);
    if (n != want) return rd_fail(r, "%s has %" PRIu64 " fields, not %" PRIu32, what, n, want);
    r->p += hl;
    return 0;
}

static int rd_int(struct rd *r, int64_t *v, const char *what)
{
    if (rd_need(r, 1, what) != 0) return -1;
    uint8_t b = *r->p;
    if (b <= 0x7f) {
        *v = b;
        r->p++;
        return 0;
    }
    if (b >= 0xe0) {
        *v = (int8_t)b;
        r->p++;
        return 0;
    }
    int n;
    bool sign;
    switch (b) {
    case 0xcc:
        n = 1, sign = false;
        break;
    case 0xcd:
        n = 2, sign = false;
        break;
    case 0xce:
        n = 4, sign = false;
        break;
    case 0xcf:
        n = 8, sign = false;
        break;
    case 0xd0:
        n = 1, sign = true;
        break;
    case 0xd1:
        n = 2, sign = true;
        break;
    case 0xd2:
        n = 4, sign = true;
        break;
    case 0xd3:
        n = 8, sign = true;
        break;
    default:
        return rd_fail(r, "%s is not an integer", what);
    }
    if (rd_need(r, 1 + (size_t)n, what) != 0) return -1;
    uint64_t u = get_be(r->p + 1, n);
    if (sign) {
        int shift = 64 - 8 * n; /* sign-extend from n bytes */
        *v = shift ? (int64_t)(u << shift) >> shift : (int64_t)u;
    } else {
        if (u > INT64_MAX) return rd_fail(r, "%s is out of range", what);
        *v = (int64_t)u;
    }
    r->p += 1 + (size_t)n;
    return 0;
}

static int rd_range(struct rd *r, int64_t *v, int64_t lo, int64_t hi, const char *what)
{
    const uint8_t *at = r->p;
    if (rd_int(r, v, what) != 0) return -1;
    if (*v < lo || *v > hi) {
        r->p = at;
        return rd_fail(r, "%s %" PRId64 " is out of range", what, *v);
    }
    return 0;
}

static int rd_str(struct rd *r, const char **s, size_t *len, const char *what)
{
    if (rd_need(r, 1, what) != 0) return -1;
    uint8_t b = *r->p;
    size_t hl;
    uint64_t n;
    if (b >= 0xa0 && b <= 0xbf)
        n = b & 0x1f, hl = 1;
    else if (b == 0xd9)
        hl = 2;
    else if (b == 0xda)
        hl = 3;
    else if (b == 0xdb)
        hl = 5;
    else
        return rd_fail(r, "%s is not a string", what);
    if (rd_need(r, hl, what) != 0) return -1;
    if (hl > 1) n = get_be(r->p + 1, (int)hl - 1);
    if ((uint64_t)(r->end - r->p) - hl < n) return rd_fail(r, "truncated %s", what);
    *s = (const char *)r->p + hl;
    *len = (size_t)n;
    r->p += hl + (size_t)n;
    return 0;
}

static int rd_bool(struct rd *r, bool *v, const char *what)
{
    if (rd_need(r, 1, what) != 0) return -1;
    if (*r->p != 0xc2 && *r->p != 0xc3) return rd_fail(r, "%s is not a boolean", what);
    *v = *r->p++ == 0xc3;
    return 0;
}

/* A user's limit: -1 (NULL, the default) or 0..INT32_MAX. */
static int rd_limit(struct rd *r, struct snapshot_nint *v, const char *what)
{
    int64_t n;
    if (rd_range(r, &n, SNAP_LIMIT_DEFAULT, INT32_MAX, what) != 0) return -1;
    *v = (struct snapshot_nint){.set = n >= 0, .value = n};
    return 0;
}

/* Rejects nothing itself: every provider in a file resolved when it was
 * written, and its address is in the row. A file never causes DNS traffic. */
static int no_dns(void *arg, const char *host, char addr[46])
{
    (void)arg;
    (void)host;
    addr[0] = '\0';
    return -1;
}

static int parse_provider(struct rd *r, struct snapshot_provider_row *p)
{
    int64_t id = 0, pmin = 0, pmax = 0;
    bool global = false;
    if (rd_array(r, PROVIDER_FIELDS, "provider row") != 0 ||
        rd_range(r, &id, INT32_MIN, INT32_MAX, "provider id") != 0 ||
        rd_str(r, &p->slug, &p->slug_len, "slug") != 0 ||
        rd_str(r, &p->name, &p->name_len, "name") != 0 ||
        rd_str(r, &p->base_url, &p->base_url_len, "base_url") != 0 ||
        rd_str(r, &p->username, &p->username_len, "provider username") != 0 ||
        rd_str(r, &p->password, &p->password_len, "provider password") != 0 ||
        rd_str(r, &p->url_template, &p->url_template_len, "url_template") != 0 ||
        rd_int(r, &pmin, "port_min") != 0 || rd_int(r, &pmax, "port_max") != 0 ||
        rd_bool(r, &global, "is_global") != 0 ||
        rd_str(r, &p->country_format, &p->country_format_len, "country_format") != 0 ||
        rd_str(r, &p->addr, &p->addr_len, "addr") != 0)
        return -1;
    p->id = (int32_t)id;
    p->port_min = pmin;
    p->port_max = pmax;
    p->is_global = global ? SNAPSHOT_TRUE : SNAPSHOT_FALSE;
    p->is_visible = SNAPSHOT_TRUE;
    p->is_disabled = SNAPSHOT_FALSE;
    return 0;
}

struct snapshot *snapshot_file_parse(const void *buf, size_t len, char *err, size_t errlen)
{
    const uint8_t *h = buf;
    if (err != NULL && errlen > 0) err[0] = '\0';
    if (len == 0) {
        set_err(err, errlen, "empty file");
        return NULL;
    }
    if (len < SNAPSHOT_FILE_HEADER_LEN) {
        set_err(err, errlen, "truncated: %zu bytes, shorter than the %d-byte header", len,
                SNAPSHOT_FILE_HEADER_LEN);
        return NULL;
    }
    if (h[0] != 0x94 || h[1] != 0xa6 || memcmp(h + 2, SNAPSHOT_FILE_MAGIC, 6) != 0 ||
        h[8] != 0xce || h[13] != 0xcf || h[22] != 0xce) {
        set_err(err, errlen, "not a gw-agent snapshot file (no " SNAPSHOT_FILE_MAGIC " header)");
        return NULL;
    }
    uint32_t version = (uint32_t)get_be(h + 9, 4);
    if (version != SNAPSHOT_FILE_VERSION && version != 1) {
        set_err(err, errlen,
                "unsupported snapshot file version %" PRIu32 " (this agent reads versions 1 to %d)",
                version, SNAPSHOT_FILE_VERSION);
        return NULL;
    }
    uint64_t body_len = get_be(h + 14, 8);
    uint32_t crc = (uint32_t)get_be(h + 23, 4);
    size_t have = len - SNAPSHOT_FILE_HEADER_LEN;
    if (body_len > have) {
        set_err(err, errlen, "truncated: the header announces %" PRIu64 " body bytes, %zu follow",
                body_len, have);
        return NULL;
    }
    if (body_len < have) {
        set_err(err, errlen, "corrupt: %zu bytes after the announced end", have - (size_t)body_len);
        return NULL;
    }
    uint32_t got = crc32_update(0, h + SNAPSHOT_FILE_HEADER_LEN, have);
    if (got != crc) {
        set_err(err, errlen, "corrupt: body CRC-32 is %08" PRIx32 ", the header says %08" PRIx32,
                got, crc);
        return NULL;
    }

    struct rd r = {.base = h + SNAPSHOT_FILE_HEADER_LEN,
                   .p = h + SNAPSHOT_FILE_HEADER_LEN,
                   .end = h + len,
                   .err = err,
                   .errlen = errlen};
    int64_t written_at, loaded_at, np, ni, nu, k[SKIP_FIELDS];
    /* a row takes 3 bytes at least: counts beyond that cannot be right */
    int64_t max_rows = (int64_t)(have / 3);
    if (rd_array(&r, META_FIELDS, "header row") != 0 ||
        rd_int(&r, &written_at, "written_at_ms") != 0 ||
        rd_int(&r, &loaded_at, "loaded_at_ms") != 0 ||
        rd_range(&r, &np, 0, max_rows, "provider count") != 0 ||
        rd_range(&r, &ni, 0, max_rows, "whitelist count") != 0 ||
        rd_range(&r, &nu, 0, max_rows, "user count") != 0 ||
        rd_array(&r, SKIP_FIELDS, "skip counts") != 0)
        return NULL;
    for (int i = 0; i < SKIP_FIELDS; i++)
        if (rd_range(&r, &k[i], 0, UINT32_MAX, "skip count") != 0) return NULL;
    struct snapshot_skips skips = {
        .bad_cidr = (uint32_t)k[0],
        .bad_port_range = (uint32_t)k[1],
        .bad_country_format = (uint32_t)k[2],
        .bad_template = (uint32_t)k[3],
        .unresolved_host = (uint32_t)k[4],
        .bad_user = (uint32_t)k[5],
        .duplicate = (uint32_t)k[6],
    };
    (void)written_at;

    struct snapshot_builder *b = snapshot_builder_new(loaded_at);
    if (b == NULL) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    for (int64_t i = 0; i < np; i++) {
        struct snapshot_provider_row p = {0};
        if (parse_provider(&r, &p) != 0) goto bad;
        if (snapshot_builder_provider(b, &p) != 0) goto oom;
    }
    for (int64_t i = 0; i < ni; i++) {
        struct snapshot_ip_row ip = {.is_active = SNAPSHOT_TRUE};
        int64_t id;
        if (rd_array(&r, IP_FIELDS, "whitelist row") != 0 ||
            rd_range(&r, &id, INT32_MIN, INT32_MAX, "whitelist id") != 0 ||
            rd_str(&r, &ip.ip, &ip.ip_len, "ip") != 0)
            goto bad;
        ip.id = (int32_t)id;
        if (snapshot_builder_ip(b, &ip) != 0) goto oom;
    }
    for (int64_t i = 0; i < nu; i++) {
        struct snapshot_user_row u = {.is_active = SNAPSHOT_TRUE};
        int64_t id;
        if (rd_array(&r, version == 1 ? USER_FIELDS_V1 : USER_FIELDS, "user row") != 0 ||
            rd_range(&r, &id, INT32_MIN, INT32_MAX, "user id") != 0 ||
            rd_str(&r, &u.username, &u.username_len, "username") != 0 ||
            rd_str(&r, &u.password, &u.password_len, "password") != 0)
            goto bad;
        if (version != 1 && (rd_limit(&r, &u.max_conns, "max_conns") != 0 ||
                             rd_limit(&r, &u.max_rps, "max_rps") != 0))
            goto bad;
        u.id = (int32_t)id;
        if (snapshot_builder_user(b, &u) != 0) goto oom;
    }
    if (r.p != r.end) {
        rd_fail(&r, "%zu bytes after the last row", (size_t)(r.end - r.p));
        goto bad;
    }
    snapshot_builder_add_skips(b, &skips);
    struct snapshot *s = snapshot_builder_finish(b, no_dns, NULL);
    if (s == NULL) set_err(err, errlen, "out of memory");
    return s;
oom:
    set_err(err, errlen, "out of memory");
bad:
    snapshot_builder_abort(b);
    return NULL;
}

struct snapshot *snapshot_file_read(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        set_err(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        set_err(err, errlen, "%s is not a regular file", path);
        close(fd);
        return NULL;
    }
    if ((uint64_t)sb.st_size > SNAPSHOT_FILE_MAX) {
        set_err(err, errlen, "%s is too large (%lld bytes)", path, (long long)sb.st_size);
        close(fd);
        return NULL;
    }
    size_t size = (size_t)sb.st_size;
    uint8_t *buf = malloc(size ? size : 1);
    if (buf == NULL) {
        set_err(err, errlen, "out of memory for %zu bytes", size);
        close(fd);
        return NULL;
    }
    size_t got = 0;
    int rerr = 0;
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) rerr = errno;
        if (n <= 0) break; /* an error, or the file shrank: parsed as truncated */
        got += (size_t)n;
    }
    close(fd);
    if (rerr != 0) {
        set_err(err, errlen, "reading %s: %s", path, strerror(rerr));
        free(buf);
        return NULL;
    }
    char why[256];
    struct snapshot *s = snapshot_file_parse(buf, got, why, sizeof(why));
    free(buf);
    if (s == NULL) set_err(err, errlen, "%s: %s", path, why);
    return s;
}
