/*
 * The billing dedup window (see dedup.h): a circle of slots, mirrored in a
 * file, and an open-addressing hash set (linear probing, backward-shift
 * deletion) of slot numbers for the lookups.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dedup.h"
#include "log.h"

#define MAGIC      "GWDEDUP1"
#define HEADER_LEN 16
#define MIN_CAP    16
#define MAX_CAP    (1ull << 28)

/* One id in the window. Stored as is in the file (host byte order: the file
 * never moves between machines). */
struct slot {
    uint64_t seq; /* 0: empty */
    uint64_t h[2];
};

struct dedup {
    int fd;
    char *path;
    uint64_t cap;
    struct slot *slots;
    uint32_t *table; /* slot number + 1; 0 is empty */
    uint64_t mask;
    uint64_t next; /* the slot the next id goes to */
    uint64_t seq;  /* the newest sequence */
    uint64_t count;
    uint64_t dirty_from, dirty_n; /* slots added since the last flush */
};

static uint64_t fmix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    return k ^ (k >> 33);
}

/* Two independent 64-bit FNV-1a hashes, finalized: 128 bits, so a
 * collision (a record taken for a duplicate) is out of reach. */
static void hash_id(const char *id, size_t len, uint64_t h[2])
{
    uint64_t a = 0xcbf29ce484222325ull, b = 0x84222325cbf29ce4ull;
    for (size_t i = 0; i < len; i++) {
        a = (a ^ (uint8_t)id[i]) * 0x100000001b3ull;
        b = (b ^ (uint8_t)id[i]) * 0x100000001b3ull;
    }
    h[0] = fmix64(a);
    h[1] = fmix64(b ^ len);
}

/* The table position holding h, or the empty position where it would go. */
static uint64_t probe(const struct dedup *d, const uint64_t h[2], bool *found)
{
    uint64_t i = h[0] & d->mask;
    while (d->table[i]) {
        const struct slot *s = &d->slots[d->table[i] - 1];
        if (s->h[0] == h[0] && s->h[1] == h[1]) {
            *found = true;
            return i;
        }
        i = (i + 1) & d->mask;
    }
    *found = false;
    return i;
}

/* Removes the entry at table position i, shifting its probe chain back. */
static void table_delete(struct dedup *d, uint64_t i)
{
    d->table[i] = 0;
    for (uint64_t j = (i + 1) & d->mask; d->table[j]; j = (j + 1) & d->mask) {
        uint64_t home = d->slots[d->table[j] - 1].h[0] & d->mask;
        /* the entry at j may move to i when its home is not in (i, j] */
        bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (stays) continue;
        d->table[i] = d->table[j];
        d->table[j] = 0;
        i = j;
    }
}

static void table_insert(struct dedup *d, uint64_t slot)
{
    bool found;
    uint64_t i = probe(d, d->slots[slot].h, &found);
    if (!found) d->table[i] = (uint32_t)(slot + 1);
}

bool dedup_seen(const struct dedup *d, const char *id, size_t len)
{
    uint64_t h[2];
    bool found;
    hash_id(id, len, h);
    probe(d, h, &found);
    return found;
}

void dedup_add(struct dedup *d, const char *id, size_t len)
{
    uint64_t h[2];
    bool found;
    hash_id(id, len, h);
    probe(d, h, &found);
    if (found) return;
    uint64_t p = d->next;
    struct slot *s = &d->slots[p];
    if (s->seq) { /* the oldest id leaves the window */
        uint64_t i = probe(d, s->h, &found);
        if (found) table_delete(d, i);
        d->count--;
    }
    s->seq = ++d->seq;
    s->h[0] = h[0];
    s->h[1] = h[1];
    table_insert(d, p);
    d->count++;
    d->next = (p + 1) % d->cap;
    if (d->dirty_n == 0) d->dirty_from = p;
    if (d->dirty_n < d->cap) d->dirty_n++;
}

static int write_slots(struct dedup *d, uint64_t from, uint64_t n)
{
    size_t len = (size_t)n * sizeof(struct slot);
    ssize_t w =
        pwrite(d->fd, &d->slots[from], len, (off_t)(HEADER_LEN + from * sizeof(struct slot)));
    if (w != (ssize_t)len) {
        log_error("dedup %s: write: %s", d->path, w < 0 ? strerror(errno) : "short write");
        return -1;
    }
    return 0;
}

int dedup_flush(struct dedup *d)
{
    if (!d->dirty_n) return 0;
    uint64_t first = d->dirty_n < d->cap - d->dirty_from ? d->dirty_n : d->cap - d->dirty_from;
    int rc = write_slots(d, d->dirty_from, first);
    if (rc == 0 && first < d->dirty_n) rc = write_slots(d, 0, d->dirty_n - first);
    d->dirty_n = 0;
    return rc;
}

static int by_seq(const void *a, const void *b)
{
    const struct slot *x = a, *y = b;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

/* Lays out the ids read from a file of another capacity (or out of order):
 * the newest ones, oldest first, from slot 0. Then the whole file is
 * rewritten. */
static int relayout(struct dedup *d, struct slot *old, uint64_t n_old)
{
    uint64_t n = 0;
    for (uint64_t i = 0; i < n_old; i++)
        if (old[i].seq) old[n++] = old[i];
    qsort(old, n, sizeof(*old), by_seq);
    uint64_t keep = n < d->cap ? n : d->cap;
    memcpy(d->slots, old + (n - keep), keep * sizeof(*old));
    d->next = keep % d->cap;
    d->count = keep;
    d->seq = keep ? d->slots[keep - 1].seq : 0;
    if (ftruncate(d->fd, (off_t)(HEADER_LEN + d->cap * sizeof(struct slot))) != 0) return -1;
    return write_slots(d, 0, d->cap);
}

static int write_header(struct dedup *d)
{
    uint8_t h[HEADER_LEN];
    memcpy(h, MAGIC, 8);
    for (int i = 0; i < 8; i++)
        h[8 + i] = (uint8_t)(d->cap >> (56 - 8 * i));
    return pwrite(d->fd, h, sizeof(h), 0) == (ssize_t)sizeof(h) ? 0 : -1;
}

/* Reads an existing file into d. */
static int load(struct dedup *d, uint64_t size, char *err, size_t errlen)
{
    uint8_t h[HEADER_LEN];
    if (pread(d->fd, h, sizeof(h), 0) != (ssize_t)sizeof(h) || memcmp(h, MAGIC, 8) != 0) {
        snprintf(err, errlen, "%s: not a dedup window file (bad magic): move it away", d->path);
        return -1;
    }
    uint64_t file_cap = 0;
    for (int i = 0; i < 8; i++)
        file_cap = file_cap << 8 | h[8 + i];
    uint64_t n = (size - HEADER_LEN) / sizeof(struct slot);
    if (file_cap < n) n = file_cap;
    struct slot *old = calloc(n ? n : 1, sizeof(*old));
    if (!old) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    size_t len = (size_t)n * sizeof(*old);
    if (pread(d->fd, old, len, HEADER_LEN) != (ssize_t)len) {
        snprintf(err, errlen, "%s: read: %s", d->path, strerror(errno));
        free(old);
        return -1;
    }
    int rc = 0;
    if (file_cap == d->cap && n == d->cap) {
        /* the usual case: the same circle; the newest slot says where to go on */
        memcpy(d->slots, old, len);
        uint64_t newest = 0;
        for (uint64_t i = 0; i < n; i++) {
            if (!d->slots[i].seq) continue;
            d->count++;
            if (d->slots[i].seq > d->seq) {
                d->seq = d->slots[i].seq;
                newest = i;
            }
        }
        d->next = d->count ? (newest + 1) % d->cap : 0;
    } else {
        log_warn("dedup %s: window of %llu ids resized to %llu", d->path,
                 (unsigned long long)file_cap, (unsigned long long)d->cap);
        if (write_header(d) != 0 || relayout(d, old, n) != 0) {
            snprintf(err, errlen, "%s: rewrite: %s", d->path, strerror(errno));
            rc = -1;
        }
    }
    free(old);
    if (rc == 0)
        for (uint64_t i = 0; i < d->cap; i++)
            if (d->slots[i].seq) table_insert(d, i);
    return rc;
}

struct dedup *dedup_open(const char *path, uint64_t capacity, char *err, size_t errlen)
{
    if (capacity < MIN_CAP || capacity > MAX_CAP) {
        snprintf(err, errlen, "window of %llu ids: must be %d..%llu", (unsigned long long)capacity,
                 MIN_CAP, (unsigned long long)MAX_CAP);
        return NULL;
    }
    struct dedup *d = calloc(1, sizeof(*d));
    if (!d) goto oom;
    d->fd = -1;
    d->cap = capacity;
    uint64_t tsize = 1;
    while (tsize < 2 * capacity)
        tsize <<= 1;
    d->mask = tsize - 1;
    d->path = strdup(path);
    d->slots = calloc(capacity, sizeof(*d->slots));
    d->table = calloc(tsize, sizeof(*d->table));
    if (!d->path || !d->slots || !d->table) goto oom;
    d->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    struct stat st;
    if (d->fd < 0 || fstat(d->fd, &st) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto fail;
    }
    if (st.st_size < HEADER_LEN) {
        if (write_header(d) != 0 ||
            ftruncate(d->fd, (off_t)(HEADER_LEN + capacity * sizeof(struct slot))) != 0) {
            snprintf(err, errlen, "%s: cannot initialize: %s", path, strerror(errno));
            goto fail;
        }
    } else if (load(d, (uint64_t)st.st_size, err, errlen) != 0) {
        goto fail;
    }
    return d;
oom:
    snprintf(err, errlen, "out of memory for a window of %llu ids", (unsigned long long)capacity);
fail:
    if (d) {
        if (d->fd >= 0) close(d->fd);
        free(d->path);
        free(d->slots);
        free(d->table);
        free(d);
    }
    return NULL;
}

void dedup_close(struct dedup *d)
{
    if (!d) return;
    dedup_flush(d);
    close(d->fd);
    free(d->path);
    free(d->slots);
    free(d->table);
    free(d);
}

uint64_t dedup_count(const struct dedup *d)
{
    return d->count;
}
