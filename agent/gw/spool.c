/*
 * The billing spool (format and guarantees in spool.h): a write-ahead log of
 * billing records between HAProxy's log stream and Redis.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <unistd.h>

#include "log.h"
#include "spool.h"

#define MAGIC "GWSPOOL1"

struct spool {
    int fd;
    char *path;
    uint64_t committed; /* offset of the first unacknowledged record */
    uint64_t taken;     /* offset after the last record handed out */
    uint64_t taken_n;   /* records between committed and taken */
    uint64_t id;        /* random, fixed at creation */
    uint64_t sequence;  /* records committed since creation */
    uint64_t size;      /* file size = append offset */
    uint64_t max_bytes;
    bool dirty; /* appended since the last fsync */
};

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static int write_header(struct spool *sp)
{
    uint8_t h[SPOOL_HEADER_LEN] = {0};
    memcpy(h, MAGIC, 8);
    put_u64(h + 8, sp->committed);
    put_u64(h + 16, sp->id);
    put_u64(h + 24, sp->sequence);
    if (pwrite(sp->fd, h, sizeof(h), 0) != (ssize_t)sizeof(h)) {
        log_error("spool %s: header write: %s", sp->path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Reads the frame header at off: sets *hlen and *len; false at a torn end. */
static bool frame_at(const struct spool *sp, uint64_t off, size_t *hlen, uint64_t *len)
{
    uint8_t h[5];
    ssize_t n = pread(sp->fd, h, sizeof(h), (off_t)off);
    if (n < 1) return false;
    if (h[0] == 0xd9 && n >= 2) {
        *hlen = 2;
        *len = h[1];
    } else if (h[0] == 0xda && n >= 3) {
        *hlen = 3;
        *len = (uint64_t)h[1] << 8 | h[2];
    } else if (h[0] == 0xdb && n >= 5) {
        *hlen = 5;
        *len = (uint64_t)h[1] << 24 | (uint64_t)h[2] << 16 | (uint64_t)h[3] << 8 | h[4];
    } else {
        return false;
    }
    return off + *hlen + *len <= sp->size;
}

/* A fresh random id (a spool from before ids existed gets one too). */
static uint64_t new_id(void)
{
    uint64_t id = 0;
    while (id == 0)
        if (getrandom(&id, sizeof(id), 0) != (ssize_t)sizeof(id)) id = 0;
    return id;
}

struct spool *spool_open(const char *path, uint64_t max_bytes, char *err, size_t errlen)
{
    struct spool *sp = calloc(1, sizeof(*sp));
    if (!sp || !(sp->path = strdup(path))) {
        snprintf(err, errlen, "out of memory");
        free(sp);
        return NULL;
    }
    sp->max_bytes = max_bytes;
    sp->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    struct stat st;
    if (sp->fd < 0 || fstat(sp->fd, &st) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto fail;
    }
    sp->size = (uint64_t)st.st_size;
    if (sp->size < SPOOL_HEADER_LEN) {
        sp->committed = sp->size = SPOOL_HEADER_LEN;
        sp->id = new_id();
        if (ftruncate(sp->fd, SPOOL_HEADER_LEN) != 0 || write_header(sp) != 0) {
            snprintf(err, errlen, "%s: cannot initialize: %s", path, strerror(errno));
            goto fail;
        }
    } else {
        uint8_t h[SPOOL_HEADER_LEN];
        if (pread(sp->fd, h, sizeof(h), 0) != (ssize_t)sizeof(h) || memcmp(h, MAGIC, 8) != 0) {
            snprintf(err, errlen, "%s: not a billing spool (bad magic): move it away", path);
            goto fail;
        }
        sp->committed = get_u64(h + 8);
        sp->id = get_u64(h + 16);
        sp->sequence = get_u64(h + 24);
        if (sp->id == 0) {
            sp->id = new_id();
            if (write_header(sp) != 0) {
                snprintf(err, errlen, "%s: cannot write its id: %s", path, strerror(errno));
                goto fail;
            }
        }
        if (sp->committed < SPOOL_HEADER_LEN || sp->committed > sp->size) {
            snprintf(err, errlen, "%s: committed offset %llu outside the file", path,
                     (unsigned long long)sp->committed);
            goto fail;
        }
        /* Walk the uncommitted records; a torn tail is a crash mid-append. */
        uint64_t off = sp->committed, n = 0;
        size_t hl;
        uint64_t len;
        while (off < sp->size && frame_at(sp, off, &hl, &len)) {
            off += hl + len;
            n++;
        }
        if (off < sp->size) {
            log_warn("spool %s: cutting a torn record at offset %llu (%llu bytes)", path,
                     (unsigned long long)off, (unsigned long long)(sp->size - off));
            if (ftruncate(sp->fd, (off_t)off) != 0) {
                snprintf(err, errlen, "%s: truncate: %s", path, strerror(errno));
                goto fail;
            }
            sp->size = off;
        }
        if (n)
            log_warn("spool %s: %llu billing record(s) from before the restart to push to Redis",
                     path, (unsigned long long)n);
    }
    sp->taken = sp->committed;
    return sp;
fail:
    if (sp->fd >= 0) close(sp->fd);
    free(sp->path);
    free(sp);
    return NULL;
}

void spool_close(struct spool *sp)
{
    if (!sp) return;
    spool_sync(sp);
    close(sp->fd);
    free(sp->path);
    free(sp);
}

int spool_append(struct spool *sp, const char *rec, size_t len)
{
    uint8_t h[5];
    size_t hl;
    if (len <= 0xff) {
        h[0] = 0xd9;
        h[1] = (uint8_t)len;
        hl = 2;
    } else if (len <= 0xffff) {
        h[0] = 0xda;
        h[1] = (uint8_t)(len >> 8);
        h[2] = (uint8_t)len;
        hl = 3;
    } else {
        h[0] = 0xdb;
        h[1] = (uint8_t)(len >> 24);
        h[2] = (uint8_t)(len >> 16);
        h[3] = (uint8_t)(len >> 8);
        h[4] = (uint8_t)len;
        hl = 5;
    }
    if (sp->size - sp->committed + hl + len > sp->max_bytes) return -1;
    struct iovec iov[2] = {{h, hl}, {(void *)rec, len}};
    ssize_t n = pwritev(sp->fd, iov, 2, (off_t)sp->size);
    if (n != (ssize_t)(hl + len)) {
        log_error("spool %s: append: %s", sp->path, n < 0 ? strerror(errno) : "short write");
        if (n > 0 && ftruncate(sp->fd, (off_t)sp->size) != 0)
            log_error("spool %s: cannot cut a short write: %s", sp->path, strerror(errno));
        return -1;
    }
    sp->size += hl + len;
    sp->dirty = true;
    return 0;
}

void spool_sync(struct spool *sp)
{
    if (sp->dirty && fdatasync(sp->fd) != 0)
        log_error("spool %s: fdatasync: %s", sp->path, strerror(errno));
    sp->dirty = false;
}

size_t spool_take(struct spool *sp, size_t max, char *buf, size_t cap, const char **records,
                  size_t *lens)
{
    size_t n = 0, used = 0;
    uint64_t off = sp->taken;
    while (n < max && off < sp->size) {
        size_t hl;
        uint64_t len;
        if (!frame_at(sp, off, &hl, &len) || len > cap - used) break;
        if (pread(sp->fd, buf + used, len, (off_t)(off + hl)) != (ssize_t)len) {
            log_error("spool %s: read: %s", sp->path, strerror(errno));
            break;
        }
        records[n] = buf + used;
        lens[n++] = len;
        used += len;
        off += hl + len;
    }
    sp->taken = off;
    sp->taken_n += n;
    return n;
}

int spool_commit(struct spool *sp)
{
    sp->committed = sp->taken;
    sp->sequence += sp->taken_n;
    sp->taken_n = 0;
    if (sp->committed == sp->size) {
        /* all acknowledged: start the file over */
        sp->committed = sp->taken = sp->size = SPOOL_HEADER_LEN;
        if (write_header(sp) != 0) return -1;
        if (ftruncate(sp->fd, SPOOL_HEADER_LEN) != 0) {
            log_error("spool %s: truncate: %s", sp->path, strerror(errno));
            return -1;
        }
        return 0;
    }
    return write_header(sp);
}

void spool_rewind(struct spool *sp)
{
    sp->taken = sp->committed;
    sp->taken_n = 0;
}

uint64_t spool_skip(struct spool *sp, uint64_t n)
{
    spool_rewind(sp);
    uint64_t off = sp->committed, done = 0;
    size_t hl;
    uint64_t len;
    while (done < n && off < sp->size && frame_at(sp, off, &hl, &len)) {
        off += hl + len;
        done++;
    }
    sp->taken = off;
    sp->taken_n = done;
    spool_commit(sp);
    return done;
}

uint64_t spool_id(const struct spool *sp)
{
    return sp->id;
}

uint64_t spool_sequence(const struct spool *sp)
{
    return sp->sequence;
}

uint64_t spool_taken(const struct spool *sp)
{
    return sp->taken_n;
}

uint64_t spool_pending_bytes(const struct spool *sp)
{
    return sp->size - sp->committed;
}

uint64_t spool_max_bytes(const struct spool *sp)
{
    return sp->max_bytes;
}
