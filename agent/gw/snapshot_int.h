/*
 * Inside the snapshot module: the snapshot's layout, the incremental builder
 * the loaders feed row by row, and the store's state. Shared by snapshot.c
 * (data structure, lookups, swap), snapshot_load.c (PostgreSQL, the refresh
 * thread) and snapshot_file.c (the file on disk). Nothing else includes it.
 */
#ifndef GW_SNAPSHOT_INT_H
#define GW_SNAPSHOT_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "iptrie.h"
#include "clock.h"
#include "snapshot.h"

/* A whitelist row as loaded, kept only to write the snapshot file. */
struct snap_ip_entry {
    int32_t id;
    uint32_t len;     /* bytes of text */
    const char *text; /* authorized_ips.ip as stored, NUL-terminated, in the arena */
};

/* A provider with what the file needs besides the public part. */
struct snap_prov {
    struct snap_provider pub;
    const char *base_url; /* as stored, NUL-terminated, in the arena */
    size_t base_url_len;
    const char *url_template; /* as stored (may be empty), in the arena */
    size_t url_template_len;
};

/* A user record in snapshot.urec: the public part first (what lookups
 * return), then its strings. */
struct user_rec {
    struct snap_user pub;
    uint32_t size; /* bytes of the whole record, a multiple of 8 */
    bool dup;      /* a repeated username: kept in place, never indexed */
    bool removed;  /* in a delta: the user is gone (deleted, inactive, or its
                      row is now bad); lookups find no one */
};

#define USER_REC_ALIGN 8

struct arena_chunk;

/* Immutable once snapshot_builder_finish returns it, but for refs. */
struct snapshot {
    atomic_uint refs; /* owners: the builder's caller, a store, snapshot_refs */
    int64_t loaded_at_ms;
    struct snapshot_skips skips;

    /* users: records (struct user_rec, then the username and password,
     * NUL-terminated) back to back in one region grown with mremap, and an
     * open-addressing table of slots: (32-bit hash tag << 32) | (record
     * offset / 8 + 1), 0 when empty; linear probing, at most half full. A
     * hit touches two places in memory: its slot and its record. */
    char *urec;
    size_t urec_len, urec_cap; /* bytes used, mapped */
    size_t n_users;            /* records indexed (repeated usernames are not) */
    uint64_t *slots;
    size_t slot_mask;   /* slots - 1 (a power of two minus one) */
    size_t slots_bytes; /* bytes mapped */
    uint64_t key[2];    /* SipHash key, random per snapshot */

    struct arena_chunk *arena; /* every string of the snapshot */

    struct iptrie *trie;
    struct snap_ip_entry *ips; /* rows, for the file */
    size_t n_ips, ips_cap;

    struct snap_prov *provs; /* eligible providers, sorted by slug */
    size_t n_provs, provs_cap;
    const struct snap_provider **global, **country; /* into provs, sorted by slug */
    size_t n_global, n_country;
    uint32_t dup_slugs; /* of skips.duplicate, the repeated slugs of provs */

    /* A delta (snapshot_builder_delta): urec and slots hold only the users
     * that changed since base was loaded, the gone ones as removed records;
     * any other username is looked up in base, whose hash key it shares.
     * base is a whole snapshot (never a delta), held by a reference. NULL: a
     * whole snapshot. */
    struct snapshot *base;
    size_t n_delta; /* records in a delta's table, removed ones included */
    /* A delta that did not read the whitelist again borrows it (trie, ips)
     * from ips_from, and one that did not read the providers again borrows
     * them (provs, global, country) from provs_from: snapshots that own
     * them, held by a reference. NULL: this snapshot's own. */
    struct snapshot *ips_from, *provs_from;

    /* The store's list of snapshots no longer current, under its mutex. */
    struct snapshot *retired_next;
};

void snapshot_retain(struct snapshot *s);
void snapshot_release(struct snapshot *s);

/*
 * The incremental builder: rows are copied as they come (the loader frees
 * each batch of PostgreSQL results right after), validated, and skipped with
 * a logged reason when bad. The add functions return 0 (added or skipped),
 * or -1 when out of memory: then abort the builder.
 */
struct snapshot_builder;

struct snapshot_builder *snapshot_builder_new(int64_t loaded_at_ms);
int snapshot_builder_user(struct snapshot_builder *b, const struct snapshot_user_row *r);
int snapshot_builder_ip(struct snapshot_builder *b, const struct snapshot_ip_row *r);
int snapshot_builder_provider(struct snapshot_builder *b, const struct snapshot_provider_row *r);
/* Adds counts of rows skipped before (a file keeps its original load's). */
void snapshot_builder_add_skips(struct snapshot_builder *b, const struct snapshot_skips *k);
/* Indexes the users, drops repeated slugs, resolves the providers' hosts
 * (with resolve, required) and returns the snapshot; the builder
 * is gone either way. NULL when out of memory. */
struct snapshot *snapshot_builder_finish(struct snapshot_builder *b, snapshot_resolve_fn resolve,
                                         void *arg);
void snapshot_builder_abort(struct snapshot_builder *b);

/*
 * A builder for a delta on top of prev (whole or itself a delta): feed it
 * the current row of every user that changed (is_active SNAPSHOT_FALSE for a
 * user that was deleted or deactivated) with snapshot_builder_user, then
 * snapshot_builder_finish. The result holds prev's changes plus these (these
 * win), over prev's whole snapshot, and prev's skip counts plus its own.
 * reread says which other parts are read again: feed all their rows (finish
 * resolves provider hosts as for a whole build); the others are shared with
 * prev, and rows for them are refused (-1).
 *
 * SNAPSHOT_PATCH_IPS (without SNAPSHOT_REREAD_IPS): the whitelist is prev's
 * but for the rows named with snapshot_builder_ip_changed, whose current
 * versions (if any) are fed with snapshot_builder_ip. The delta gets a copy
 * of prev's trie with the old versions taken out (at finish) and the current
 * ones put in; prev's bad_cidr count is kept.
 */
#define SNAPSHOT_REREAD_IPS       1u /* authorized_ips */
#define SNAPSHOT_REREAD_PROVIDERS 2u /* proxies */
#define SNAPSHOT_PATCH_IPS        4u /* authorized_ips: prev's, some rows changed */
struct snapshot_builder *snapshot_builder_delta(struct snapshot *prev, int64_t loaded_at_ms,
                                                unsigned reread);
/* SNAPSHOT_PATCH_IPS: the authorized_ips row id changed (updated, deleted,
 * inserted); 0, or -1 when out of memory or not patching. */
int snapshot_builder_ip_changed(struct snapshot_builder *b, int32_t id);
/* Whether a and b hold the same providers (every column the agent keeps,
 * the resolved address included) and skipped the same provider rows. */
bool snapshot_same_providers(const struct snapshot *a, const struct snapshot *b);
/* Records in a delta's own table (0 for a whole snapshot). */
size_t snapshot_delta_size(const struct snapshot *s);
/* Whether the delta s has a record (changed or removed) for name. */
bool snapshot_delta_has(const struct snapshot *s, const char *name, size_t len);

struct snapshot_loader; /* snapshot_load.c: the refresh thread and its connection */

struct snapshot_store {
    pthread_mutex_t mu;
    struct snapshot *current;            /* under mu; the store holds one reference */
    _Atomic uint64_t generation;         /* written under mu; read without it */
    struct snapshot_store_status status; /* under mu */
    struct snapshot_loader *loader;      /* NULL for a static store */
    /* Published, then replaced: held (one reference each) until no ref
     * holds them, then freed by snapshot_store_reap. Under mu. */
    struct snapshot *retired;
};

/* A store whose current snapshot is first (owned); NULL when out of memory. */
struct snapshot_store *snapshot_store_alloc(struct snapshot *first);
/* Frees the store and drops its reference to the current snapshot. */
void snapshot_store_free(struct snapshot_store *st);

/* s[0..len) for a log line: at most about cap - 1 bytes, bytes outside
 * printable ASCII as '?', "..." when cut. Returns buf. */
const char *snapshot_printable(const char *s, size_t len, char *buf, size_t cap);

#endif /* GW_SNAPSHOT_INT_H */
