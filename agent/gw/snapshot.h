/*
 * The agent's view of PostgreSQL: an immutable snapshot of active users,
 * whitelisted addresses and usable providers, and the store that rebuilds it
 * off the event loops and swaps it in.
 *
 * Readers (worker threads) never lock on the hot path: each keeps a
 * snapshot_ref and asks the store for the current snapshot once per request;
 * that costs one relaxed atomic load unless a new snapshot was published. A
 * snapshot is freed when the last thread lets go of it.
 */
#ifndef GW_SNAPSHOT_H
#define GW_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "country.h"
#include "template.h"

struct snap_user {
    int32_t id;
    const char *username; /* NUL-terminated, owned by the snapshot */
    size_t username_len;
    const char *password; /* plain text (the reference) or a crypt(3) hash */
    size_t password_len;
    bool password_is_hash; /* starts with $2a$ $2b$ $2y$ $5$ $6$ $y$ */
    /* Per-user limits (users.max_conns, users.max_rps; sql/migrations/006):
     * SNAP_LIMIT_DEFAULT for NULL (the agent's configured default), 0 for
     * unlimited, else the limit: requests and tunnels in progress at once,
     * requests per second. The verdict resolves the default (policy.c). */
    int32_t max_conns;
    int32_t max_rps;
};

#define SNAP_LIMIT_DEFAULT (-1)

struct snap_provider {
    int32_t id;
    const char *slug; /* unique; the rendezvous identity */
    size_t slug_len;
    const char *name;
    const char *host;     /* base_url's host, what {host} renders: a host name,
                             an IPv4 address or a bracketed IPv6 one; any
                             scheme, port, path are stripped (see the loader) */
    char addr[46];        /* the resolved IP address as text, for HAProxy's set-dst */
    const char *username; /* the provider's credentials, for the template */
    size_t username_len;
    const char *password;
    size_t password_len;
    uint16_t port_min, port_max; /* inclusive */
    bool is_global;
    enum country_format country_format;
    struct template_compiled tpl; /* url_template, compiled at load */
};

/* Rows refused while building a snapshot, by reason (cumulative per load). */
struct snapshot_skips {
    uint32_t bad_cidr;
    uint32_t bad_port_range;
    uint32_t bad_country_format;
    uint32_t bad_template;
    uint32_t unresolved_host;
    uint32_t bad_user;
    uint32_t duplicate; /* a username or slug already seen in this load (both are
                           UNIQUE in the schema: only a damaged file has them) */
};

struct snapshot;

const struct snap_user *snapshot_user(const struct snapshot *s, const char *name, size_t len);
/* family is AF_INET (4-byte addr) or AF_INET6 (16-byte addr; IPv4-mapped
 * addresses match IPv4 entries). */
bool snapshot_ip_allowed(const struct snapshot *s, int family, const uint8_t *addr);
/* Eligible providers with is_global == global, sorted by slug. */
size_t snapshot_providers(const struct snapshot *s, bool global,
                          const struct snap_provider *const **out);
size_t snapshot_user_count(const struct snapshot *s);
size_t snapshot_provider_count(const struct snapshot *s);
/* Distinct whitelist prefixes: two rows with one CIDR count once. */
size_t snapshot_ip_count(const struct snapshot *s);
/* Wall-clock time (ms since the epoch) when the data was read from PostgreSQL
 * (for a snapshot restored from disk: when it was originally read). */
int64_t snapshot_loaded_at_ms(const struct snapshot *s);
const struct snapshot_skips *snapshot_skipped(const struct snapshot *s);

struct snapshot_store_config {
    const char *postgres_uri;   /* required */
    unsigned refresh_s;         /* periodic reload, seconds (0: 60); also the
                                   longest retry interval when PostgreSQL fails */
    const char *snapshot_path;  /* saved after each load, read at start; NULL: none */
    unsigned connect_timeout_s; /* PostgreSQL connect timeout (0: 5 s) */
    int full_every;             /* every row read again every this many refresh_s
                                   (0: 20; negative: only when a delta will not do) */
};

struct snapshot_store;

/* Loads the first snapshot (PostgreSQL, else the file at snapshot_path) and
 * starts the refresh thread (periodic, and at once on NOTIFY gw_snapshot).
 * Returns NULL with the reason logged when neither source gives a snapshot. */
struct snapshot_store *snapshot_store_start(const struct snapshot_store_config *cfg);
/* Stops the refresh thread (waiting for a load in progress) and frees the
 * store. Snapshots still held by refs stay valid until released. */
void snapshot_store_stop(struct snapshot_store *st);

/* A thread's hold on the current snapshot. Zero-initialize; release at the
 * thread's end with snapshot_ref_release. A ref belongs to one store. */
struct snapshot_ref {
    struct snapshot *snap;
    uint64_t generation;
};

/* The current snapshot, valid until the next call with the same ref. */
const struct snapshot *snapshot_store_current(struct snapshot_store *st, struct snapshot_ref *ref);
void snapshot_ref_release(struct snapshot_ref *ref);

struct snapshot_store_status {
    bool postgres_ok;   /* the last load attempt succeeded */
    int64_t last_ok_ms; /* wall clock of the last successful load, 0: never */
    uint64_t loads_ok;
    uint64_t loads_failed;
    bool from_disk;        /* the current snapshot came from snapshot_path */
    uint64_t generation;   /* snapshots published so far (1 after start) */
    uint32_t last_load_ms; /* duration of the last successful PostgreSQL load
                              (queries, build, DNS), ms */
};
void snapshot_store_status(struct snapshot_store *st, struct snapshot_store_status *out);

/*
 * A store around a given snapshot, without PostgreSQL or a thread (tests,
 * benchmarks, tools). Takes ownership of s (not NULL); NULL when out of
 * memory (s is freed then). Stop it with snapshot_store_stop.
 */
struct snapshot_store *snapshot_store_new_static(struct snapshot *s);

/*
 * Makes s the current snapshot (takes ownership) and bumps the generation.
 * The previous one is retired: the store keeps it until no snapshot_ref holds
 * it, and then frees it in snapshot_store_reap, which this calls. So a
 * snapshot is never freed by a thread reading through a ref: unmapping a
 * million users takes milliseconds that a worker's event loop must not pay.
 * Any thread; the loader's in the agent.
 */
void snapshot_store_publish(struct snapshot_store *st, struct snapshot *s);

/* Frees the retired snapshots no ref holds any longer, on the calling thread;
 * returns how many are still held. */
size_t snapshot_store_reap(struct snapshot_store *st);

/* --- Building a snapshot from rows ----------------------------------------------
 * What the PostgreSQL loader and the file reader feed, and what tests and
 * benchmarks use to get a snapshot without a database. A row is what the
 * table holds: strings are ptr + len (need not be NUL-terminated; ptr NULL is
 * SQL NULL), booleans are nullable. Rows are validated and the bad ones
 * skipped, logged (table, id, reason) and counted in snapshot_skips:
 *   users           is_active false: left out (NULL counts as true);
 *                   empty username, or a username or password longer
 *                   than 64 KiB: bad_user; repeated username: duplicate;
 *                   max_conns / max_rps NULL or out of 0..INT32_MAX: the
 *                   configured default (the row is kept)
 *   authorized_ips  is_active false: left out (NULL counts as true);
 *                   ip not an address or CIDR (iptrie_parse_cidr): bad_cidr
 *   proxies         eligible when is_visible AND NOT is_disabled (NULL: the
 *                   column defaults true / false; is_global NULL: false);
 *                   port_min > port_max or outside 1..65535: bad_port_range;
 *                   country_format not ISO, ISO_LOWERCASE, FULL_NAME,
 *                   NO_SPACES (NULL: ISO): bad_country_format;
 *                   url_template that template_compile refuses (empty or NULL:
 *                   the default template): bad_template;
 *                   base_url without a usable host, or a host that does not
 *                   resolve: unresolved_host; repeated slug: duplicate
 * base_url may be a bare host ("proxy.example.com", "203.0.113.7",
 * "2001:db8::7"), host:port ("proxy.example.com:8000", "[2001:db8::7]:8000")
 * or a URL ("http://proxy.example.com:8000/path"): the scheme, port, path,
 * query and fragment are stripped; the port is not used (ports come from
 * port_min..port_max). A base_url with credentials ("user:pass@host") is
 * refused (unresolved_host): they belong in username / password.
 */

/* A nullable boolean column; zero (SQL NULL) reads as the column default. */
enum snapshot_bool { SNAPSHOT_NULL = 0, SNAPSHOT_TRUE, SNAPSHOT_FALSE };

/* A nullable integer column; zero-initialized it is SQL NULL. */
struct snapshot_nint {
    bool set; /* false: NULL */
    int64_t value;
};

struct snapshot_user_row {
    int32_t id;
    const char *username;
    size_t username_len;
    const char *password;
    size_t password_len;
    enum snapshot_bool is_active;
    /* NULL (or a database without the columns), a negative value or one
     * above INT32_MAX: SNAP_LIMIT_DEFAULT in the snapshot */
    struct snapshot_nint max_conns, max_rps;
};

struct snapshot_ip_row {
    int32_t id;
    const char *ip;
    size_t ip_len;
    enum snapshot_bool is_active;
};

struct snapshot_provider_row {
    int32_t id;
    const char *base_url;
    size_t base_url_len;
    const char *name;
    size_t name_len;
    const char *slug;
    size_t slug_len;
    const char *username;
    size_t username_len;
    const char *password;
    size_t password_len;
    const char *url_template;
    size_t url_template_len;
    const char *country_format; /* NULL: the column default, ISO */
    size_t country_format_len;
    int64_t port_min, port_max; /* wider than the column, so a bad value is seen */
    enum snapshot_bool is_visible, is_disabled, is_global;
    const char *addr; /* already resolved (a snapshot file): an IP address as
                         text, used as is; NULL: resolve the host */
    size_t addr_len;
};

struct snapshot_rows {
    const struct snapshot_user_row *users;
    size_t n_users;
    const struct snapshot_ip_row *ips;
    size_t n_ips;
    const struct snapshot_provider_row *providers;
    size_t n_providers;
    int64_t loaded_at_ms; /* wall clock (ms since the epoch) the rows were read */
};

/* Resolves host (a name or an address, without brackets) into addr as IP
 * text; returns 0, or -1 when it does not resolve. May block (DNS). The
 * snapshot itself never resolves: the loader passes DNS (net_resolve, with
 * the previous snapshot's addresses as fallback), the file reader the saved
 * addresses, the tests their own table. */
typedef int (*snapshot_resolve_fn)(void *arg, const char *host, char addr[46]);

/*
 * Builds a snapshot from rows (copied: the rows may go away afterwards).
 * resolve (required) is called once per distinct provider
 * host that has no addr, from this thread. Returns NULL only when out of
 * memory. Free with snapshot_free unless given to a store.
 */
struct snapshot *snapshot_build(const struct snapshot_rows *rows, snapshot_resolve_fn resolve,
                                void *arg);

/* Frees a snapshot that no store owns; NULL is fine. */
void snapshot_free(struct snapshot *s);

/* --- The snapshot file ------------------------------------------------------------
 * Written after every successful load, read at start when PostgreSQL is
 * unreachable. It holds the snapshot's rows, not its hash table or trie.
 * Everything is MessagePack; all integers big-endian:
 *
 *   header (27 bytes, fixed encodings):
 *     94                      array of 4
 *     a6 "GWSNAP"             magic
 *     ce <u32>                format version (SNAPSHOT_FILE_VERSION)
 *     cf <u64>                body length, bytes (the file ends right after the body)
 *     ce <u32>                CRC-32 (IEEE 802.3, as zlib's crc32) of the body
 *   body, a sequence of arrays:
 *     [written_at_ms, loaded_at_ms, n_providers, n_ips, n_users,
 *      [bad_cidr, bad_port_range, bad_country_format, bad_template,
 *       unresolved_host, bad_user, duplicate]]
 *     n_providers x [id, slug, name, base_url, username, password, url_template,
 *                    port_min, port_max, is_global, country_format, addr]
 *     n_ips       x [id, ip]
 *     n_users     x [id, username, password, max_conns, max_rps]
 *   (strings are str, is_global bool, the rest int; only eligible providers
 *   and active rows are written; addr is the address resolved at load, reused
 *   as is when the file is read: no DNS at start; a limit is -1 for NULL.)
 *
 * Versions: 2 added the user rows' limits. Version 1 files (user rows
 * [id, username, password]) are still read, their users with the default
 * limits; any other version is refused.
 *
 * The file holds plain-text credentials: it is created with mode 0600.
 */
#define SNAPSHOT_FILE_MAGIC      "GWSNAP"
#define SNAPSHOT_FILE_VERSION    2
#define SNAPSHOT_FILE_HEADER_LEN 27

/* Writes s to path atomically: a temporary file in the same directory,
 * fsync, rename, fsync of the directory. Returns 0, or -1 with err set. */
int snapshot_file_write(const struct snapshot *s, const char *path, char *err, size_t errlen);

/* Reads a snapshot file (this version or version 1). NULL with err set when
 * it is missing, unreadable, truncated, corrupt or of another version. */
struct snapshot *snapshot_file_read(const char *path, char *err, size_t errlen);

/* The parser behind snapshot_file_read, on a buffer (the fuzz target's entry
 * point). Never reads outside buf[0..len); bounded allocations. */
struct snapshot *snapshot_file_parse(const void *buf, size_t len, char *err, size_t errlen);

/* The file's bytes for s, in a malloc'ed buffer (*len bytes); NULL when out
 * of memory. written_at_ms goes into the body as is. */
void *snapshot_file_encode(const struct snapshot *s, int64_t written_at_ms, size_t *len);

#endif
