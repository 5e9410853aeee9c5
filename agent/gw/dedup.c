/*
 * The billing dedup window (see dedup.h): a circle of slots in a shared
 * mapping of the file, and an open-addressing hash set (linear probing,
 * backward-shift deletion) of slot numbers for the lookups. Hand-written:
 * the set lives in a file mapping that must survive a kill, which no general
 * hash table library offers.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dedup.h"
#include "log.h"

#define MAGIC      "GWDEDUP1"
#define HEADER_LEN 16
#define MIN_CAP    16
#define MAX_CAP    (1ull << 28)

/* One id in the window, as stored in the file (host byte order: the file
 * never moves between machines). */
struct slot {
    uint64_t seq; /* 0: empty */
    uint64_t h[2];
};

struct dedup {
    int fd;
    char *path;
    uint64_t cap;
    void *map; /* the whole file */
    size_t map_len;
    struct slot *slots; /* in map, after the header */
    uint32_t *table;    /* slot number + 1; 0 is empty */
    uint64_t mask;
    uint64_t next; /* the slot the next id goes to */
    uint64_t seq;  /* the newest sequence */
    uint64_t count;
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
    s->h[0] = h[0];
    s->h[1] = h[1];
    s->seq = ++d->seq;
    table_insert(d, p);
    d->count++;
    d->next = (p + 1) % d->cap;
}

static int by_seq(const void *a, const void *b)
{
    const struct slot *x = a, *y = b;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

static int write_header(int fd, uint64_t cap)
{
    uint8_t h[HEADER_LEN];
    memcpy(h, MAGIC, 8);
    for (int i = 0; i < 8; i++)
        h[8 + i] = (uint8_t)(cap >> (56 - 8 * i));
    return pwrite(fd, h, sizeof(h), 0) == (ssize_t)sizeof(h) ? 0 : -1;
}

/* A file written with another capacity: its newest ids, oldest first, from
 * slot 0 of a file of the new size. */
static int resize(struct dedup *d, uint64_t file_cap, uint64_t size, char *err, size_t errlen)
{
    uint64_t n = (size - HEADER_LEN) / sizeof(struct slot);
    if (file_cap < n) n = file_cap;
    struct slot *old = malloc((n ? n : 1) * sizeof(*old));
    if (!old) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    size_t len = (size_t)n * sizeof(*old);
    int rc = -1;
    if (pread(d->fd, old, len, HEADER_LEN) != (ssize_t)len) goto out;
    uint64_t used = 0;
    for (uint64_t i = 0; i < n; i++)
        if (old[i].seq) old[used++] = old[i];
    qsort(old, used, sizeof(*old), by_seq);
    uint64_t keep = used < d->cap ? used : d->cap;
    if (ftruncate(d->fd, HEADER_LEN) != 0 ||
        ftruncate(d->fd, (off_t)(HEADER_LEN + d->cap * sizeof(struct slot))) != 0 ||
        write_header(d->fd, d->cap) != 0)
        goto out;
    len = (size_t)keep * sizeof(*old);
    if (pwrite(d->fd, old + (used - keep), len, HEADER_LEN) != (ssize_t)len) goto out;
    log_warn("dedup %s: window of %llu ids resized to %llu", d->path, (unsigned long long)file_cap,
             (unsigned long long)d->cap);
    rc = 0;
out:
    if (rc != 0) snprintf(err, errlen, "%s: resizing: %s", d->path, strerror(errno));
    free(old);
    return rc;
}

/* Makes the file hold a window of d->cap slots: a new one, or the old one
 * (resized when its capacity differs). */
static int prepare_file(struct dedup *d, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(d->fd, &st) != 0) {
        snprintf(err, errlen, "%s: %s", d->path, strerror(errno));
        return -1;
    }
    uint64_t size = (uint64_t)st.st_size, want = HEADER_LEN + d->cap * sizeof(struct slot);
    if (size < HEADER_LEN) {
        if (write_header(d->fd, d->cap) != 0 || ftruncate(d->fd, (off_t)want) != 0) {
            snprintf(err, errlen, "%s: cannot initialize: %s", d->path, strerror(errno));
            return -1;
        }
        return 0;
    }
    uint8_t h[HEADER_LEN];
    if (pread(d->fd, h, sizeof(h), 0) != (ssize_t)sizeof(h) || memcmp(h, MAGIC, 8) != 0) {
        snprintf(err, errlen, "%s: not a dedup window file (bad magic): move it away", d->path);
        return -1;
    }
    uint64_t file_cap = 0;
    for (int i = 0; i < 8; i++)
        file_cap = file_cap << 8 | h[8 + i];
    if (file_cap == d->cap && size == want) return 0;
    return resize(d, file_cap, size, err, errlen);
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
    d->map = MAP_FAILED;
    d->cap = capacity;
    uint64_t tsize = 1;
    while (tsize < 2 * capacity)
        tsize <<= 1;
    d->mask = tsize - 1;
    d->path = strdup(path);
    d->table = calloc(tsize, sizeof(*d->table));
    if (!d->path || !d->table) goto oom;
    d->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (d->fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto fail;
    }
    if (prepare_file(d, err, errlen) != 0) goto fail;
    d->map_len = HEADER_LEN + capacity * sizeof(struct slot);
    d->map = mmap(NULL, d->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, d->fd, 0);
    if (d->map == MAP_FAILED) {
        snprintf(err, errlen, "%s: mmap: %s", path, strerror(errno));
        goto fail;
    }
    d->slots = (struct slot *)((char *)d->map + HEADER_LEN);
    /* the newest slot says where to go on */
    uint64_t newest = 0;
    for (uint64_t i = 0; i < capacity; i++) {
        if (!d->slots[i].seq) continue;
        table_insert(d, i);
        d->count++;
        if (d->slots[i].seq > d->seq) {
            d->seq = d->slots[i].seq;
            newest = i;
        }
    }
    d->next = d->count ? (newest + 1) % capacity : 0;
    return d;
oom:
    snprintf(err, errlen, "out of memory for a window of %llu ids", (unsigned long long)capacity);
fail:
    dedup_close(d);
    return NULL;
}

void dedup_close(struct dedup *d)
{
    if (!d) return;
    if (d->map != MAP_FAILED) munmap(d->map, d->map_len);
    if (d->fd >= 0) close(d->fd);
    free(d->path);
    free(d->table);
    free(d);
}

uint64_t dedup_count(const struct dedup *d)
{
    return d->count;
}
