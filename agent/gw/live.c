/*
 * The live registry (see live.h): a chained hash table of the streams this
 * node allowed, keyed by (HAProxy pid, stream counter), under one mutex.
 *
 * Every entry is also on one list, so that a dump's end walks the entries
 * (what is registered), not the buckets (what could be): the verdict threads
 * wait for the mutex that long.
 *
 * Each entry remembers what the last dump showed (the stream's address and
 * bytes) and what was last handed out to Redis, so a dump sends only the
 * streams that grew. Entries carry their user and request id inline.
 */
#include "live.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct entry {
    struct entry *next;          /* hash chain */
    struct entry *older, *newer; /* the list of all entries (dumps walk it) */
    uint64_t pid, id;            /* HAProxy process, its stream counter (%rt) */
    uint64_t ptr;                /* the stream's address in the last dump that showed it */
    uint64_t seen_bytes;         /* request + response bytes in that dump */
    uint64_t sent_bytes;         /* bytes last handed out (live_dump_end) */
    int64_t registered_ms;       /* when the verdict registered it */
    uint32_t seen_gen;           /* the dump that last showed it (0: none) */
    uint8_t cut;                 /* enum live_cut */
    uint16_t user_len;
    uint8_t rid_len;
    char data[]; /* user, then request id (no NULs) */
};

struct live {
    pthread_mutex_t mu;
    struct entry **buckets;
    size_t nbuckets;      /* a power of two */
    struct entry *newest; /* the list of all entries, newest first */
    size_t max_entries;
    uint64_t dump_pid;
    uint32_t gen;
    struct live_counts counts;
};

const char *live_cut_name(enum live_cut why)
{
    switch (why) {
    case LIVE_CUT_BALANCE:
        return "balance";
    case LIVE_CUT_NONE:
        break;
    }
    return NULL;
}

static size_t bucket_of(const struct live *l, uint64_t pid, uint64_t id)
{
    uint64_t h = (id ^ (pid << 40) ^ (pid >> 24)) * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 20) & (l->nbuckets - 1);
}

struct live *live_new(size_t max_entries)
{
    struct live *l = calloc(1, sizeof(*l));
    if (!l) return NULL;
    l->max_entries = max_entries ? max_entries : 1;
    l->nbuckets = 1024;
    while (l->nbuckets < l->max_entries && l->nbuckets < ((size_t)1 << 22))
        l->nbuckets <<= 1;
    l->buckets = calloc(l->nbuckets, sizeof(*l->buckets));
    if (!l->buckets) {
        free(l);
        return NULL;
    }
    pthread_mutex_init(&l->mu, NULL);
    return l;
}

void live_free(struct live *l)
{
    if (!l) return;
    for (struct entry *e = l->newest, *n; e; e = n) {
        n = e->older;
        free(e);
    }
    free(l->buckets);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

static bool dec(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 19) return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

bool live_sid_parse(const char *s, size_t len, uint64_t *pid, uint64_t *id)
{
    const char *dot = memchr(s, '.', len);
    if (!dot) return false;
    size_t a = (size_t)(dot - s);
    return dec(s, a, pid) && dec(dot + 1, len - a - 1, id) && *pid != 0;
}

static void list_add(struct live *l, struct entry *e)
{
    e->older = l->newest;
    e->newer = NULL;
    if (l->newest) l->newest->newer = e;
    l->newest = e;
}

/* Unlinks e from its hash chain (through *link) and from the list, frees it. */
static void drop(struct live *l, struct entry **link, struct entry *e)
{
    *link = e->next;
    if (e->newer)
        e->newer->older = e->older;
    else
        l->newest = e->older;
    if (e->older) e->older->newer = e->newer;
    free(e);
    l->counts.entries--;
}

/* The entry's link (the pointer that points at it), or NULL. Locked. */
static struct entry **find(struct live *l, uint64_t pid, uint64_t id)
{
    struct entry **pp = &l->buckets[bucket_of(l, pid, id)];
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->id == id && (*pp)->pid == pid) return pp;
    return NULL;
}

int live_register(struct live *l, uint64_t pid, uint64_t id, const char *rid, size_t rid_len,
                  const char *user, size_t user_len, int64_t now_ms)
{
    if (user_len == 0 || user_len > LIVE_USER_MAX || rid_len == 0 || rid_len > LIVE_RID_MAX) {
        pthread_mutex_lock(&l->mu);
        l->counts.refused++;
        pthread_mutex_unlock(&l->mu);
        return -1;
    }
    struct entry *e = malloc(sizeof(*e) + user_len + rid_len);
    pthread_mutex_lock(&l->mu);
    if (!e || l->counts.entries >= l->max_entries) {
        l->counts.refused++;
        pthread_mutex_unlock(&l->mu);
        free(e);
        return -1;
    }
    struct entry **old = find(l, pid, id);
    if (old) drop(l, old, *old); /* the same stream again: the newer registration wins */
    *e = (struct entry){.pid = pid,
                        .id = id,
                        .registered_ms = now_ms,
                        .user_len = (uint16_t)user_len,
                        .rid_len = (uint8_t)rid_len};
    memcpy(e->data, user, user_len);
    memcpy(e->data + user_len, rid, rid_len);
    size_t b = bucket_of(l, pid, id);
    e->next = l->buckets[b];
    l->buckets[b] = e;
    list_add(l, e);
    l->counts.entries++;
    l->counts.registered++;
    pthread_mutex_unlock(&l->mu);
    return 0;
}

enum live_cut live_finish(struct live *l, uint64_t pid, uint64_t id)
{
    enum live_cut why = LIVE_CUT_NONE;
    pthread_mutex_lock(&l->mu);
    struct entry **pp = find(l, pid, id);
    if (pp) {
        why = (enum live_cut)(*pp)->cut;
        drop(l, pp, *pp);
        l->counts.finished++;
    }
    pthread_mutex_unlock(&l->mu);
    return why;
}

void live_dump_begin(struct live *l, uint64_t pid)
{
    pthread_mutex_lock(&l->mu);
    l->dump_pid = pid;
    if (++l->gen == 0) l->gen = 1; /* 0 means "never seen" */
    pthread_mutex_unlock(&l->mu);
}

void live_dump_stream(struct live *l, uint64_t id, uint64_t ptr, uint64_t bytes)
{
    pthread_mutex_lock(&l->mu);
    struct entry **pp = find(l, l->dump_pid, id);
    if (pp) {
        struct entry *e = *pp;
        e->ptr = ptr;
        e->seen_bytes = bytes;
        e->seen_gen = l->gen;
    }
    pthread_mutex_unlock(&l->mu);
}

size_t live_dump_end(struct live *l, int64_t prune_before_ms, live_progress_fn fn, void *arg)
{
    size_t out = 0;
    pthread_mutex_lock(&l->mu);
    for (struct entry *e = l->newest, *older; e; e = older) {
        older = e->older;
        if (e->seen_gen != l->gen && e->registered_ms < prune_before_ms) {
            /* gone from HAProxy (its end record is late, or logging is off),
             * or in another HAProxy process (an old worker after a reload):
             * nothing to meter; its record still bills it */
            drop(l, find(l, e->pid, e->id), e);
            l->counts.pruned++;
            continue;
        }
        if (e->seen_gen == l->gen && e->seen_bytes > e->sent_bytes && !e->cut) {
            e->sent_bytes = e->seen_bytes;
            fn(arg, e->data, e->user_len, e->data + e->user_len, e->rid_len, e->seen_bytes);
            out++;
        }
    }
    pthread_mutex_unlock(&l->mu);
    return out;
}

size_t live_cut_user(struct live *l, const char *user, size_t user_len, enum live_cut why,
                     uint64_t *ptrs, size_t cap)
{
    size_t n = 0;
    pthread_mutex_lock(&l->mu);
    for (struct entry *e = l->newest; e && n < cap; e = e->older)
        if (e->seen_gen == l->gen && e->pid == l->dump_pid && e->user_len == user_len &&
            memcmp(e->data, user, user_len) == 0) {
            if (!e->cut) e->cut = (uint8_t)why;
            ptrs[n++] = e->ptr;
        }
    pthread_mutex_unlock(&l->mu);
    return n;
}

bool live_active(struct live *l)
{
    pthread_mutex_lock(&l->mu);
    bool any = l->counts.entries > 0;
    pthread_mutex_unlock(&l->mu);
    return any;
}

struct live_counts live_counts(struct live *l)
{
    pthread_mutex_lock(&l->mu);
    struct live_counts c = l->counts;
    pthread_mutex_unlock(&l->mu);
    return c;
}
