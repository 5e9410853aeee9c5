/*
 * The snapshot store's loader: reads users, authorized_ips and proxies from
 * PostgreSQL on a thread of its own (never on a worker's event loop), builds
 * a snapshot and publishes it, then waits for the next reason to reload.
 *
 * Consistency: the three tables are read in one REPEATABLE READ READ ONLY
 * transaction, so a snapshot never mixes two database states. The big tables
 * are read through cursors, FETCH_ROWS rows at a time, straight into the
 * builder: memory holds one small batch of results next to the snapshot,
 * never the whole result set, and PostgreSQL never sends megabytes in one
 * burst while verdicts are being answered. Provider hosts are resolved
 * after COMMIT (DNS may be slow; the transaction should not wait for it).
 *
 * Freshness: the connection LISTENs on gw_snapshot (sql/migrations/001: every
 * statement on the three tables notifies it) before the first load, so no
 * commit is missed. The thread sleeps in poll() on the connection's socket
 * and a wake-up pipe; a notification triggers a reload at once, after
 * draining every notification already received (a burst costs one load, plus
 * one more for commits that land during it). Reloads are also periodic
 * (refresh_s), and triggered loads are spaced by at least the last load's
 * duration, so a table that changes all the time keeps the thread at most
 * half busy.
 *
 * Deltas: with sql/migrations/004 applied, users are not read again for
 * every load. A load reads the users named in gw_user_changes since the last
 * read (pg_delta) and publishes a delta over the last whole snapshot:
 * milliseconds, where a million users take seconds. When only users changed
 * (the notification's payload names the table) that is all it reads; a
 * change to authorized_ips or proxies reads that table again as well, and
 * so does the periodic refresh for proxies (re-resolving provider hosts).
 * Every row is read (READ_WHOLE) at the first load on a connection
 * (notifications may have been missed), every full_every refreshes, and
 * when a delta cannot be had: a statement that changed more than
 * DELTA_MAX_ROWS users, a TRUNCATE, more than DELTA_MAX_SIZE changes piled
 * up, no change log. With sql/migrations/005 as well, a change to
 * authorized_ips reads only the rows named in gw_ip_changes (same cursor)
 * and patches the whitelist in memory; the whole table is read again only
 * when that log says "too many" or is missing. Users' limits
 * (sql/migrations/006) are read with the users when the columns exist, which
 * every load checks: without them the users get the configured defaults
 * (said once in the log), and every user is read again when they appear or
 * go. The snapshot file is written after loads that read a table again,
 * after deltas alone at most once per refresh_s, and at a clean stop.
 *
 * Failures keep the last snapshot: the error is logged, postgres_ok turns
 * false, and the load is retried after 1 s, 2 s, 4 s... up to refresh_s; a
 * broken connection is dropped and made again. At start, when PostgreSQL
 * cannot give a first snapshot, the file at snapshot_path (the last good
 * snapshot) is used, with an error in the log
 * saying how old it is.
 */
#include "snapshot_int.h"

#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "net.h"
#include "pg.h"

/* Rows per FETCH from a cursor. PostgreSQL sends a FETCH's rows in one
 * burst: 50,000 rows at a time (megabytes) put the verdicts' p99 during a whole
 * read at 5-7 ms on a 2-core machine at 10,000 frames/s, 1,000 at 1.8-2.1 ms
 * (paired runs: tests/bench/results/README.md), for about 1,000 round trips
 * more per million rows (50 ms). */
#define FETCH_ROWS          1000
#define DELTA_MAX_ROWS      10000 /* changed users read as a delta; more: a whole load */
#define DELTA_MAX_SIZE      50000 /* changes a delta may carry; more: a whole load */
#define DEFAULT_FULL_EVERY  20    /* every row read again every this many refresh_s */
#define DEFAULT_REFRESH_S   60
#define DEFAULT_CONNECT_S   5
#define FIRST_BACKOFF_MS    1000
#define REAP_EVERY_MS       100 /* replaced snapshots still held: look again this often */
#define STATEMENT_TIMEOUT_S 120 /* one FETCH never takes this long */

struct snapshot_loader {
    struct snapshot_store *st;
    char *uri;          /* may hold a password: never logged */
    char *path;         /* NULL: no snapshot file */
    int64_t refresh_ms; /* periodic reload */
    int64_t full_ms;    /* periodic read of every row; 0: none */
    unsigned connect_s; /* connect_timeout */
    PGconn *conn;       /* the loader thread's (the starter's until it runs) */
    pthread_t thread;
    bool thread_started;
    int wake[2]; /* snapshot_store_stop writes to wake[1] */
    atomic_bool stopping;
    bool save_first; /* the first snapshot came from PostgreSQL: write the file */
    uint32_t last_load_ms;
    /* Deltas (sql/migrations/004): when gw_user_changes is there and
     * readable, a change to users only reads the changed users. */
    bool log_ok;            /* seen by the last whole load */
    bool ip_log_ok;         /* gw_ip_changes (005) seen by the last whole whitelist read */
    bool limits_ok;         /* users.max_conns and max_rps (006) seen by the last whole load */
    bool limits_said;       /* limits_ok was logged (once per change of it) */
    int64_t cursor;         /* txid_snapshot_xmin of the last read of users */
    size_t changed_users;   /* what the last delta applied: users, */
    size_t changed_ips;     /* ... whitelist rows (patched) */
    int64_t last_whole;     /* monotonic ms when the last whole load ended */
    int64_t last_providers; /* ... the last load that read the providers */
    int64_t last_save;      /* monotonic ms of the last snapshot file write */
    bool dirty;             /* a delta was published since that write */
};

/* What a load reads besides the changed users (0: just them, a delta). */
#define READ_IPS       SNAPSHOT_REREAD_IPS       /* every authorized_ips row */
#define READ_PROVIDERS SNAPSHOT_REREAD_PROVIDERS /* every proxies row */
#define READ_WHOLE     7u                        /* every row of the three tables */

/* What a notification on gw_snapshot (its payload is the table) asks the next
 * load to read: READ_* bits, or CHANGED_USERS for a delta alone. */
#define CHANGED_USERS 8u

static const char *load_name(unsigned read)
{
    static const char *const names[] = {"changed users", "whitelist, changed users",
                                        "providers, changed users",
                                        "whitelist, providers, changed users"};
    return read == READ_WHOLE ? "everything" : names[read & 3];
}

/* Connects and LISTENs. NULL with err set on failure. */
static PGconn *loader_connect(const struct snapshot_loader *l, char *err, size_t errlen)
{
    const struct pg_params p = {.uri = l->uri,
                                .application_name = "gw-agent snapshot",
                                .connect_timeout_s = l->connect_s,
                                .statement_timeout_s = STATEMENT_TIMEOUT_S,
                                .listen = "gw_snapshot",
                                .log_prefix = "snapshot"};
    return pg_connect(&p, err, errlen);
}

/* Reads every pending notification; returns what they ask for (READ_* and
 * CHANGED_USERS bits), 0 when there was none. A broken connection shows in
 * PQstatus afterwards. */
static unsigned drain_notifies(PGconn *c)
{
    unsigned changed = 0;
    PGnotify *n;
    PQconsumeInput(c);
    while ((n = PQnotifies(c)) != NULL) {
        if (strcmp(n->extra, "users") == 0)
            changed |= CHANGED_USERS;
        else if (strcmp(n->extra, "authorized_ips") == 0)
            changed |= READ_IPS;
        else if (strcmp(n->extra, "proxies") == 0)
            changed |= READ_PROVIDERS;
        else
            changed |= READ_WHOLE;
        PQfreemem(n);
    }
    return changed;
}

static const char *val(const PGresult *res, int row, int col, size_t *len)
{
    if (PQgetisnull(res, row, col)) {
        *len = 0;
        return NULL;
    }
    *len = (size_t)PQgetlength(res, row, col);
    return PQgetvalue(res, row, col);
}

static enum snapshot_bool bval(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col)) return SNAPSHOT_NULL;
    return PQgetvalue(res, row, col)[0] == 't' ? SNAPSHOT_TRUE : SNAPSHOT_FALSE;
}

/* An integer column; NULL reads as 0 (every one the loader reads is NOT NULL). */
static int64_t ival(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col)) return 0;
    return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

/* A nullable integer column, when the result has it. */
static struct snapshot_nint nval(const PGresult *res, int row, int col)
{
    if (col >= PQnfields(res) || PQgetisnull(res, row, col)) return (struct snapshot_nint){0};
    return (struct snapshot_nint){.set = true, .value = ival(res, row, col)};
}

static int add_providers(struct snapshot_builder *b, const PGresult *res)
{
    for (int i = 0, n = PQntuples(res); i < n; i++) {
        struct snapshot_provider_row p = {
            .id = (int32_t)ival(res, i, 0),
            .port_min = ival(res, i, 7),
            .port_max = ival(res, i, 8),
            .is_visible = bval(res, i, 9),
            .is_disabled = bval(res, i, 10),
            .is_global = bval(res, i, 11),
        };
        p.base_url = val(res, i, 1, &p.base_url_len);
        p.name = val(res, i, 2, &p.name_len);
        p.slug = val(res, i, 3, &p.slug_len);
        p.username = val(res, i, 4, &p.username_len);
        p.password = val(res, i, 5, &p.password_len);
        p.url_template = val(res, i, 6, &p.url_template_len);
        p.country_format = val(res, i, 12, &p.country_format_len);
        if (snapshot_builder_provider(b, &p) != 0) return -1;
    }
    return 0;
}

static int add_ips(struct snapshot_builder *b, const PGresult *res)
{
    for (int i = 0, n = PQntuples(res); i < n; i++) {
        struct snapshot_ip_row r = {.id = (int32_t)ival(res, i, 0), .is_active = bval(res, i, 2)};
        r.ip = val(res, i, 1, &r.ip_len);
        if (snapshot_builder_ip(b, &r) != 0) return -1;
    }
    return 0;
}

static int add_users(struct snapshot_builder *b, const PGresult *res)
{
    for (int i = 0, n = PQntuples(res); i < n; i++) {
        /* columns 4 and 5, max_conns and max_rps, when the database has them */
        struct snapshot_user_row r = {.id = (int32_t)ival(res, i, 0),
                                      .is_active = bval(res, i, 3),
                                      .max_conns = nval(res, i, 4),
                                      .max_rps = nval(res, i, 5)};
        r.username = val(res, i, 1, &r.username_len);
        r.password = val(res, i, 2, &r.password_len);
        if (snapshot_builder_user(b, &r) != 0) return -1;
    }
    return 0;
}

/* Runs sql (a SELECT or a FETCH) and feeds its rows to add; returns the row
 * count, or -1 with err set. */
static long pg_rows(PGconn *c, const char *sql, struct snapshot_builder *b,
                    int (*add)(struct snapshot_builder *, const PGresult *), char *err,
                    size_t errlen)
{
    PGresult *res = PQexec(c, sql);
    long n = -1;
    char what[64];
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        pg_message(err, errlen, pg_statement(sql, what, sizeof(what)),
                   res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(c));
    else if (add(b, res) != 0)
        snprintf(err, errlen, "out of memory building the snapshot");
    else
        n = PQntuples(res);
    PQclear(res);
    return n;
}

/* Declares a cursor for sql and fetches it all into the builder. */
static int pg_cursor(PGconn *c, const char *name, const char *sql, struct snapshot_builder *b,
                     int (*add)(struct snapshot_builder *, const PGresult *), char *err,
                     size_t errlen)
{
    char q[512];
    snprintf(q, sizeof(q), "DECLARE %s NO SCROLL CURSOR FOR %s", name, sql);
    if (pg_command(c, q, err, errlen) != 0) return -1;
    snprintf(q, sizeof(q), "FETCH FORWARD %d FROM %s", FETCH_ROWS, name);
    long n;
    do {
        n = pg_rows(c, q, b, add, err, errlen);
        if (n < 0) return -1;
    } while (n == FETCH_ROWS);
    return 0;
}

/*
 * DNS, falling back to the address the previous snapshot had for the same
 * host: a DNS outage during a reload must not take working providers away.
 * arg is the previous snapshot (may be NULL).
 */
static int resolve_with_fallback(void *arg, const char *host, char addr[46])
{
    char err[320];
    if (net_resolve(host, addr, err, sizeof(err)) == 0) return 0;
    log_warn("snapshot: %s", err);
    const struct snapshot *prev = arg;
    if (prev == NULL) return -1;
    size_t hlen = strlen(host);
    for (int global = 0; global < 2; global++) {
        const struct snap_provider *const *pool;
        size_t n = snapshot_providers(prev, global, &pool);
        for (size_t i = 0; i < n; i++) {
            const char *h = pool[i]->host;
            size_t len = strlen(h);
            if (len >= 2 && h[0] == '[' && h[len - 1] == ']') { /* IPv6 literal */
                h++;
                len -= 2;
            }
            if (len == hlen && memcmp(h, host, hlen) == 0 && pool[i]->addr[0]) {
                memcpy(addr, pool[i]->addr, 46);
                log_warn("snapshot: provider host %s does not resolve now; keeping its last "
                         "known address %s",
                         host, addr);
                return 0;
            }
        }
    }
    return -1;
}

/*
 * Inside a load's transaction, before anything else: whether gw_user_changes
 * (sql/migrations/004) and gw_ip_changes (005) exist and may be read, whether
 * users has the limit columns (006), and the transaction's snapshot xmin.
 * Every transaction this one cannot see has an xid >= xmin, so the next
 * delta reads the change rows from there on.
 */
static int change_log_state(PGconn *c, bool *log_ok, bool *ip_log_ok, bool *limits_ok,
                            int64_t *xmin, char *err, size_t errlen)
{
    PGresult *res = PQexec(c, "SELECT CASE WHEN to_regclass('gw_user_changes') IS NULL THEN false "
                              "ELSE has_table_privilege(to_regclass('gw_user_changes'), 'SELECT') "
                              "END, txid_snapshot_xmin(txid_current_snapshot()), "
                              "CASE WHEN to_regclass('gw_ip_changes') IS NULL THEN false "
                              "ELSE has_table_privilege(to_regclass('gw_ip_changes'), 'SELECT') "
                              "END, (SELECT count(*) = 2 FROM pg_attribute "
                              "WHERE attrelid = to_regclass('users') AND attnum > 0 "
                              "AND NOT attisdropped AND attname IN ('max_conns', 'max_rps'))");
    int rc = 0;
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        pg_message(err, errlen, "reading the transaction's xmin",
                   res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(c));
        rc = -1;
    } else {
        *log_ok = bval(res, 0, 0) == SNAPSHOT_TRUE;
        *xmin = ival(res, 0, 1);
        *ip_log_ok = bval(res, 0, 2) == SNAPSHOT_TRUE;
        *limits_ok = bval(res, 0, 3) == SNAPSHOT_TRUE;
    }
    PQclear(res);
    return rc;
}

/* The providers and the whitelist, as read says, into b (inside a load's
 * transaction). */
static int read_lists(PGconn *c, unsigned read, struct snapshot_builder *b, char *err,
                      size_t errlen)
{
    if ((read & READ_PROVIDERS) &&
        pg_rows(c,
                "SELECT id, base_url, name, slug, username, password, url_template, port_min, "
                "port_max, is_visible, is_disabled, is_global, country_format "
                "FROM proxies ORDER BY id",
                b, add_providers, err, errlen) < 0)
        return -1;
    if (!(read & READ_IPS)) return 0;
    return pg_cursor(c, "gw_snapshot_ips",
                     "SELECT id, ip, is_active FROM authorized_ips "
                     "WHERE is_active IS NOT FALSE ORDER BY id",
                     b, add_ips, err, errlen);
}

/*
 * Whether users has the limit columns (sql/migrations/006), said in the log
 * once per change: without them every user gets the configured defaults
 * (the design's rule for a database with only the reference schema).
 */
static void say_limits(struct snapshot_loader *l, bool limits_ok)
{
    if (l->limits_said && l->limits_ok == limits_ok) return;
    if (limits_ok)
        log_info("snapshot: per-user limits read from users.max_conns and users.max_rps");
    else
        log_warn("snapshot: users has no max_conns / max_rps columns (sql/migrations/"
                 "006_user_limits.sql not applied): every user gets the configured default "
                 "limits (GW_MAX_CONNS, GW_MAX_RPS)");
    l->limits_ok = limits_ok;
    l->limits_said = true;
}

/*
 * One load: the three tables in one read-only REPEATABLE READ transaction,
 * then DNS (falling back to prev's addresses). NULL-flag semantics are the builder's (NULL
 * is_active counts as true), so the WHERE clauses say IS NOT FALSE. Returns the snapshot, or NULL
 * with err set.
 */
static struct snapshot *pg_load(struct snapshot_loader *l, const struct snapshot *prev, char *err,
                                size_t errlen)
{
    PGconn *c = l->conn;
    struct snapshot_builder *b = snapshot_builder_new(clock_wall_ms());
    if (b == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    int rc = pg_command(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", err, errlen);
    bool log_ok = false, ip_log_ok = false, limits_ok = false;
    int64_t cursor = 0;
    if (rc == 0) rc = change_log_state(c, &log_ok, &ip_log_ok, &limits_ok, &cursor, err, errlen);
    if (rc == 0) rc = read_lists(c, READ_WHOLE, b, err, errlen);
    if (rc == 0)
        rc = pg_cursor(c, "gw_snapshot_users",
                       limits_ok ? "SELECT id, username, password, is_active, max_conns, max_rps "
                                   "FROM users WHERE is_active IS NOT FALSE"
                                 : "SELECT id, username, password, is_active FROM users "
                                   "WHERE is_active IS NOT FALSE",
                       b, add_users, err, errlen);
    if (rc == 0) rc = pg_command(c, "COMMIT", err, errlen);
    if (rc != 0) {
        if (PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) != PQTRANS_IDLE) {
            char ignored[64];
            pg_command(c, "ROLLBACK", ignored, sizeof(ignored));
        }
        snapshot_builder_abort(b);
        return NULL;
    }
    struct snapshot *s = snapshot_builder_finish(b, resolve_with_fallback, (void *)prev);
    if (s == NULL) {
        snprintf(err, errlen, "out of memory building the snapshot");
    } else {
        l->log_ok = log_ok;
        l->ip_log_ok = ip_log_ok;
        l->cursor = cursor;
        say_limits(l, limits_ok);
    }
    return s;
}

/*
 * The changed users (the rows of the query in pg_delta) into *b, made on
 * prev when NULL and there is a change. Returns how many, or -1 with err
 * set when a delta will not do.
 */
static int add_changed_users(struct snapshot_builder **b, struct snapshot *prev, PGconn *c,
                             const PGresult *res, char *err, size_t errlen)
{
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        pg_message(err, errlen, "reading gw_user_changes",
                   res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(c));
        return -1;
    }
    int n = PQntuples(res);
    size_t piled = snapshot_delta_size(prev) + (size_t)n;
    if (n > 0 && PQgetisnull(res, 0, 0)) {
        snprintf(err, errlen, "a statement changed more users than a delta lists");
        return -1;
    }
    if (n > DELTA_MAX_ROWS || piled > DELTA_MAX_SIZE) {
        snprintf(err, errlen, "%s%zu users changed", n > DELTA_MAX_ROWS ? "more than " : "",
                 n > DELTA_MAX_ROWS ? (size_t)DELTA_MAX_ROWS : piled);
        return -1;
    }
    if (n > 0 && *b == NULL && (*b = snapshot_builder_delta(prev, clock_wall_ms(), 0)) == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        bool gone = PQgetisnull(res, i, 1);
        struct snapshot_user_row r = {.id = (int32_t)ival(res, i, 1),
                                      .is_active = gone ? SNAPSHOT_FALSE : bval(res, i, 3),
                                      .max_conns = nval(res, i, 4),
                                      .max_rps = nval(res, i, 5)};
        r.username = val(res, i, 0, &r.username_len);
        r.password = val(res, i, 2, &r.password_len);
        if (snapshot_builder_user(*b, &r) != 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    return n;
}

/* Why a delta was not possible (a whole load follows). */
enum delta_result { DELTA_OK, DELTA_WHOLE, DELTA_FAILED };

/*
 * The whitelist rows named in gw_ip_changes since the cursor (params: the
 * cursor, the row limit), as they are now: (changed id, id, ip, is_active),
 * id NULL for a row that is gone. NULL with err set when the query failed;
 * a result whose first changed id is NULL ("too many to list") or with more
 * than DELTA_MAX_ROWS rows means: read the whole whitelist.
 */
static PGresult *changed_ips(PGconn *c, const char *const params[2], char *err, size_t errlen)
{
    PGresult *res = PQexecParams(c,
                                 "SELECT c.id, a.id, a.ip, a.is_active "
                                 "FROM (SELECT DISTINCT id FROM gw_ip_changes "
                                 "WHERE xid >= $1::bigint) c "
                                 "LEFT JOIN authorized_ips a ON a.id = c.id "
                                 "ORDER BY c.id NULLS FIRST LIMIT $2::bigint",
                                 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) == PGRES_TUPLES_OK) return res;
    pg_message(err, errlen, "reading gw_ip_changes",
               res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(c));
    PQclear(res);
    return NULL;
}

/* The rows of changed_ips into b (made with SNAPSHOT_PATCH_IPS). */
static int add_changed_ips(struct snapshot_builder *b, const PGresult *res)
{
    for (int i = 0; i < PQntuples(res); i++) {
        if (snapshot_builder_ip_changed(b, (int32_t)ival(res, i, 0)) != 0) return -1;
        if (PQgetisnull(res, i, 1)) continue; /* deleted */
        struct snapshot_ip_row r = {.id = (int32_t)ival(res, i, 1), .is_active = bval(res, i, 3)};
        r.ip = val(res, i, 2, &r.ip_len);
        if (snapshot_builder_ip(b, &r) != 0) return -1;
    }
    return 0;
}

/*
 * One delta: the users named in gw_user_changes since l->cursor, as they
 * are now, the whitelist rows named in gw_ip_changes (or the whole
 * whitelist, when *read asks for it and there is no usable log, or the log
 * lists too many), and the providers when *read asks, in one REPEATABLE READ
 * transaction, on top of prev. *read becomes what was read in full. *out is
 * the new snapshot (NULL when nothing changed). DELTA_WHOLE (with err saying
 * why) when a whole load is needed instead: too many user changes, a
 * TRUNCATE of users, or the log cannot be read; DELTA_FAILED when the
 * connection broke.
 */
static enum delta_result pg_delta(struct snapshot_loader *l, struct snapshot *prev, unsigned *read,
                                  struct snapshot **out, char *err, size_t errlen)
{
    PGconn *c = l->conn;
    struct snapshot_builder *b = NULL;
    PGresult *ips = NULL;
    *out = NULL;
    bool log_ok, ip_log_ok, limits_ok;
    int64_t cursor;
    if (pg_command(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", err, errlen) != 0 ||
        change_log_state(c, &log_ok, &ip_log_ok, &limits_ok, &cursor, err, errlen) != 0)
        goto whole;
    if (!log_ok) {
        snprintf(err, errlen, "gw_user_changes is gone or not readable");
        goto whole;
    }
    if (limits_ok != l->limits_ok) {
        /* added or dropped by DDL, which no trigger logs (and a column
         * added with a DEFAULT has values at once) */
        snprintf(err, errlen, "the columns users.max_conns and max_rps %s",
                 limits_ok ? "appeared" : "are gone");
        goto whole;
    }
    char since[24], limit[24];
    snprintf(since, sizeof(since), "%lld", (long long)l->cursor);
    snprintf(limit, sizeof(limit), "%d", DELTA_MAX_ROWS + 1);
    const char *params[2] = {since, limit};
    unsigned build = *read;
    if (ip_log_ok && l->ip_log_ok) {
        if ((ips = changed_ips(c, params, err, errlen)) == NULL) goto whole;
        int rows = PQntuples(ips);
        if (rows > DELTA_MAX_ROWS || (rows > 0 && PQgetisnull(ips, 0, 0))) {
            log_info("snapshot: reading the whole whitelist: %s",
                     rows > DELTA_MAX_ROWS ? "too many rows changed"
                                           : "a statement changed more rows than a delta lists");
            build |= READ_IPS;
        } else {
            build &= ~READ_IPS; /* a notification's: the log says which rows */
            if (rows > 0) build |= SNAPSHOT_PATCH_IPS;
            *read &= ~READ_IPS;
        }
    } else if (l->ip_log_ok) {
        log_info("snapshot: reading the whole whitelist: gw_ip_changes is gone or not readable");
        build |= READ_IPS;
    }
    if (build) {
        if ((b = snapshot_builder_delta(prev, clock_wall_ms(), build)) == NULL) {
            snprintf(err, errlen, "out of memory");
            goto whole;
        }
        if ((build & SNAPSHOT_PATCH_IPS) && add_changed_ips(b, ips) != 0) {
            snprintf(err, errlen, "out of memory");
            goto whole;
        }
        if (read_lists(c, build, b, err, errlen) != 0) goto whole;
        *read = build & (READ_IPS | READ_PROVIDERS);
    }
    size_t patched = build & SNAPSHOT_PATCH_IPS ? (size_t)PQntuples(ips) : 0;
    PQclear(ips);
    ips = NULL;
    PGresult *res = PQexecParams(c,
                                 limits_ok ? "SELECT c.username, u.id, u.password, u.is_active, "
                                             "u.max_conns, u.max_rps "
                                             "FROM (SELECT DISTINCT username FROM gw_user_changes "
                                             "WHERE xid >= $1::bigint) c "
                                             "LEFT JOIN users u ON u.username = c.username "
                                             "ORDER BY c.username NULLS FIRST LIMIT $2::bigint"
                                           : "SELECT c.username, u.id, u.password, u.is_active "
                                             "FROM (SELECT DISTINCT username FROM gw_user_changes "
                                             "WHERE xid >= $1::bigint) c "
                                             "LEFT JOIN users u ON u.username = c.username "
                                             "ORDER BY c.username NULLS FIRST LIMIT $2::bigint",
                                 2, NULL, params, NULL, NULL, 0);
    int n = add_changed_users(&b, prev, c, res, err, errlen);
    PQclear(res);
    if (n < 0 || pg_command(c, "COMMIT", err, errlen) != 0) goto whole;
    if (*read & READ_IPS) l->ip_log_ok = ip_log_ok;
    l->changed_ips = patched;
    if (b != NULL) {
        *out = snapshot_builder_finish(b, resolve_with_fallback, prev);
        if (*out == NULL) {
            snprintf(err, errlen, "out of memory");
            return DELTA_WHOLE;
        }
        /* the periodic refresh, with nothing changed: no new generation
         * (and no snapshot file of a million users written again) */
        if (*read == READ_PROVIDERS && n == 0 && patched == 0 &&
            snapshot_same_providers(*out, prev)) {
            snapshot_release(*out);
            *out = NULL;
        }
    }
    l->cursor = cursor;
    l->changed_users = (size_t)n;
    return DELTA_OK;
whole:
    PQclear(ips);
    snapshot_builder_abort(b);
    if (PQstatus(c) != CONNECTION_OK) return DELTA_FAILED;
    if (PQtransactionStatus(c) != PQTRANS_IDLE) {
        char ignored[64];
        pg_command(c, "ROLLBACK", ignored, sizeof(ignored));
    }
    return DELTA_WHOLE;
}

static struct snapshot *current(struct snapshot_store *st);

/*
 * Connects when needed and loads what *read says (READ_*); a whole load
 * instead (and *read says so) on a new connection, when the last whole load
 * did not see the change log, or when the delta cannot be had; a delta
 * leaves what it applied in l->changed_users and l->changed_ips. Returns the
 * new snapshot; NULL with err "" when a delta found nothing changed; NULL
 * with err set on failure (a broken connection is dropped).
 */
static struct snapshot *attempt(struct snapshot_loader *l, unsigned *read, char *err, size_t errlen)
{
    err[0] = '\0';
    l->changed_users = l->changed_ips = 0;
    if (l->conn == NULL) {
        *read = READ_WHOLE; /* notifications may have been missed meanwhile */
        if ((l->conn = loader_connect(l, err, errlen)) == NULL) return NULL;
    }
    int64_t t0 = clock_mono_ms();
    struct snapshot *prev = l->st ? current(l->st) : NULL; /* none at the first load */
    struct snapshot *s = NULL;
    enum delta_result dr = DELTA_WHOLE;
    if (*read != READ_WHOLE && prev != NULL && l->log_ok) {
        char why[512] = "";
        dr = pg_delta(l, prev, read, &s, why, sizeof(why));
        if (dr == DELTA_WHOLE) log_info("snapshot: reading every user: %s", why);
        if (dr == DELTA_FAILED) snprintf(err, errlen, "%s", why);
    }
    if (dr == DELTA_WHOLE) {
        *read = READ_WHOLE;
        s = pg_load(l, prev, err, errlen);
    }
    snapshot_release(prev);
    if (s != NULL || err[0] == '\0') {
        int64_t d = clock_mono_ms() - t0;
        l->last_load_ms = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
    } else if (PQstatus(l->conn) != CONNECTION_OK) {
        PQfinish(l->conn);
        l->conn = NULL;
    }
    return s;
}

static void format_time(int64_t ms, char *buf, size_t cap)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* A load that read a table in full; a delta's also says what it applied. */
static void log_loaded(const struct snapshot_loader *l, const struct snapshot *s, unsigned read,
                       uint64_t generation)
{
    const struct snapshot_skips *k = snapshot_skipped(s);
    const struct snap_provider *const *pp;
    size_t global = snapshot_providers(s, true, &pp);
    char applied[96] = "";
    if (read != READ_WHOLE)
        snprintf(applied, sizeof(applied),
                 "%zu changed users and %zu changed whitelist rows applied; ", l->changed_users,
                 l->changed_ips);
    log_info("snapshot: generation %llu from PostgreSQL (%s) in %u ms: %s%zu users, %zu whitelist "
             "prefixes, %zu providers (%zu global); skipped rows: %u bad CIDR, %u bad port range, "
             "%u bad country_format, %u bad template, %u unresolved host, %u bad user, "
             "%u duplicate",
             (unsigned long long)generation, load_name(read), l->last_load_ms, applied,
             snapshot_user_count(s), snapshot_ip_count(s), snapshot_provider_count(s), global,
             k->bad_cidr, k->bad_port_range, k->bad_country_format, k->bad_template,
             k->unresolved_host, k->bad_user, k->duplicate);
}

static void save(struct snapshot_loader *l, const struct snapshot *s)
{
    l->dirty = false;
    l->last_save = clock_mono_ms();
    if (l->path == NULL) return;
    char err[512];
    int64_t t0 = clock_mono_ms();
    if (snapshot_file_write(s, l->path, err, sizeof(err)) != 0)
        log_error("snapshot: cannot save the snapshot file: %s", err);
    else
        log_debug("snapshot: saved %s in %lld ms", l->path, (long long)(clock_mono_ms() - t0));
}

/* The store's current snapshot, with a reference for the caller (NULL when
 * there is none yet). */
static struct snapshot *current(struct snapshot_store *st)
{
    pthread_mutex_lock(&st->mu);
    struct snapshot *s = st->current;
    if (s != NULL) snapshot_retain(s);
    pthread_mutex_unlock(&st->mu);
    return s;
}

static void set_failed(struct snapshot_store *st, bool count)
{
    pthread_mutex_lock(&st->mu);
    st->status.postgres_ok = false;
    if (count) st->status.loads_failed++;
    pthread_mutex_unlock(&st->mu);
}

/*
 * After a successful load: s is the new snapshot (NULL: a delta found no
 * change, the current one is confirmed up to date). The file is written
 * after a load that read a table in full, and after deltas at most once per
 * refresh interval (a million users take a while to write).
 */
static void loaded(struct snapshot_loader *l, struct snapshot *s, unsigned read)
{
    struct snapshot_store *st = l->st;
    pthread_mutex_lock(&st->mu);
    bool was_ok = st->status.postgres_ok, was_disk = st->status.from_disk;
    st->status.postgres_ok = true;
    st->status.loads_ok++;
    st->status.last_ok_ms = clock_wall_ms();
    st->status.last_load_ms = l->last_load_ms;
    if (s != NULL) st->status.from_disk = false;
    pthread_mutex_unlock(&st->mu);
    if (!was_ok)
        log_info("snapshot: PostgreSQL is reachable again%s",
                 was_disk && s != NULL ? "; no longer serving the snapshot file's stale data" : "");
    if (s == NULL) {
        log_debug("snapshot: nothing changed (checked in %u ms)", l->last_load_ms);
    } else {
        snapshot_retain(s); /* ours, for the file */
        snapshot_store_publish(st, s);
        struct snapshot_store_status now;
        snapshot_store_status(st, &now);
        if (read == 0)
            log_info("snapshot: generation %llu from PostgreSQL in %u ms: %zu changed users "
                     "and %zu changed whitelist rows applied (%zu user changes since the last "
                     "whole load); %zu users, %zu whitelist prefixes",
                     (unsigned long long)now.generation, l->last_load_ms, l->changed_users,
                     l->changed_ips, snapshot_delta_size(s), snapshot_user_count(s),
                     snapshot_ip_count(s));
        else
            log_loaded(l, s, read, now.generation);
        l->dirty = true;
    }
    if (l->dirty && (read != 0 || clock_mono_ms() - l->last_save >= l->refresh_ms)) {
        struct snapshot *cur = s != NULL ? s : current(st);
        save(l, cur);
        if (s == NULL) snapshot_release(cur);
    }
    snapshot_release(s);
}

/* The connection broke while idle: drop it; the caller retries. */
static void lost(struct snapshot_loader *l)
{
    char msg[512];
    pg_message(msg, sizeof(msg), "connection", PQerrorMessage(l->conn));
    log_warn("snapshot: lost the PostgreSQL connection (%s); keeping the current snapshot, "
             "reconnecting",
             msg);
    PQfinish(l->conn);
    l->conn = NULL;
    set_failed(l->st, false);
}

static void *loader_main(void *arg)
{
    struct snapshot_loader *l = arg;
    /* Building a million-user snapshot takes a core for a second or two:
     * verdicts come first whenever both want the same CPU. */
    if (setpriority(PRIO_PROCESS, (id_t)gettid(), 19) != 0)
        log_debug("snapshot: cannot lower the loader thread's priority: %s", strerror(errno));
    if (l->save_first) {
        struct snapshot *s = current(l->st);
        save(l, s);
        snapshot_release(s);
    }
    /* started from the file (PostgreSQL down, or up but the load failed):
     * retry soon; else the next load is the periodic one */
    bool healthy = l->save_first;
    int64_t now = clock_mono_ms();
    int64_t backoff = healthy ? 0 : FIRST_BACKOFF_MS;
    int64_t due = now + (healthy ? l->refresh_ms : backoff); /* next load attempt */
    int64_t gap = l->last_load_ms; /* least time between a load's end and a triggered one */
    int64_t last_end = now;
    unsigned pending = 0;    /* CHANGED_* notified since the last load began */
    bool need_whole = false; /* a whole load failed: the next one is whole too */
    l->last_whole = l->last_providers = l->last_save = now;
    char err[1024];

    while (!atomic_load(&l->stopping)) {
        /* replaced snapshots are freed here, off the workers' loops */
        size_t held = snapshot_store_reap(l->st);
        now = clock_mono_ms();
        if (l->conn != NULL && PQstatus(l->conn) != CONNECTION_OK) {
            lost(l);
            due = now; /* once at once, then back off */
            backoff = 0;
            continue;
        }
        if (now < due) {
            struct pollfd fds[2] = {{.fd = l->wake[0], .events = POLLIN},
                                    {.fd = l->conn ? PQsocket(l->conn) : -1, .events = POLLIN}};
            int64_t wait = due - now;
            if (held > 0 && wait > REAP_EVERY_MS) wait = REAP_EVERY_MS;
            int n = poll(fds, 2, wait > INT_MAX ? INT_MAX : (int)wait);
            if (n < 0 && errno != EINTR) {
                log_error("snapshot: poll: %s", strerror(errno));
                usleep(100 * 1000);
            }
            if (n <= 0 || fds[0].revents != 0) continue; /* stopping is checked above */
            if (fds[1].revents == 0) continue;
            /* a closed connection shows as readable; the check at the top
             * of the loop sees it broken then */
            unsigned changed = drain_notifies(l->conn);
            if (changed) {
                pending |= changed;
                int64_t at = last_end + gap;
                if (at < due) due = at;
            }
            continue;
        }

        /* The changed users always; the tables the notifications named; the
         * providers at each periodic refresh (which re-resolves their
         * hosts); every row every full_every refreshes (a safety net for
         * changes the triggers did not log). */
        if (l->conn != NULL) pending |= drain_notifies(l->conn);
        unsigned read = pending & READ_WHOLE;
        if (need_whole || (l->full_ms > 0 && now - l->last_whole >= l->full_ms)) read = READ_WHOLE;
        if (now - l->last_providers >= l->refresh_ms) read |= READ_PROVIDERS;
        pending = 0;
        struct snapshot *s = attempt(l, &read, err, sizeof(err));
        now = clock_mono_ms();
        if (s != NULL || err[0] == '\0') {
            if (read & READ_PROVIDERS) l->last_providers = now;
            if (read == READ_WHOLE) {
                l->last_whole = now;
                need_whole = false;
            }
            loaded(l, s, read);
            backoff = 0;
            last_end = clock_mono_ms();
            gap = l->last_load_ms;
            due = last_end + l->refresh_ms;
            /* commits that landed during the load */
            if (l->conn != NULL && (pending = drain_notifies(l->conn)) != 0) due = last_end + gap;
            continue;
        }
        need_whole = need_whole || read == READ_WHOLE;
        pending |= read | CHANGED_USERS; /* still owed */
        set_failed(l->st, true);
        backoff = backoff == 0 ? FIRST_BACKOFF_MS : backoff * 2;
        if (backoff > l->refresh_ms) backoff = l->refresh_ms;
        due = now + backoff;
        struct snapshot *cur = current(l->st);
        char when[32];
        format_time(snapshot_loaded_at_ms(cur), when, sizeof(when));
        log_error("snapshot: load from PostgreSQL failed: %s; still serving the snapshot read at "
                  "%s (%lld s ago); retrying in %lld ms",
                  err, when, (long long)((clock_wall_ms() - snapshot_loaded_at_ms(cur)) / 1000),
                  (long long)backoff);
        snapshot_release(cur);
    }
    return NULL;
}

static void loader_free(struct snapshot_loader *l)
{
    if (l == NULL) return;
    if (l->conn != NULL) PQfinish(l->conn);
    if (l->wake[0] >= 0) close(l->wake[0]);
    if (l->wake[1] >= 0) close(l->wake[1]);
    if (l->uri != NULL) {
        explicit_bzero(l->uri, strlen(l->uri));
        free(l->uri);
    }
    free(l->path);
    free(l);
}

struct snapshot_store *snapshot_store_start(const struct snapshot_store_config *cfg)
{
    if (cfg == NULL || cfg->postgres_uri == NULL || cfg->postgres_uri[0] == '\0') {
        log_error("snapshot: no PostgreSQL URI configured");
        return NULL;
    }
    struct snapshot_loader *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        log_error("snapshot: out of memory");
        return NULL;
    }
    l->wake[0] = l->wake[1] = -1;
    l->uri = strdup(cfg->postgres_uri);
    l->path = cfg->snapshot_path && cfg->snapshot_path[0] ? strdup(cfg->snapshot_path) : NULL;
    l->refresh_ms = (int64_t)(cfg->refresh_s ? cfg->refresh_s : DEFAULT_REFRESH_S) * 1000;
    l->full_ms = cfg->full_every < 0
                     ? 0
                     : l->refresh_ms * (cfg->full_every ? cfg->full_every : DEFAULT_FULL_EVERY);
    l->connect_s = cfg->connect_timeout_s ? cfg->connect_timeout_s : DEFAULT_CONNECT_S;
    atomic_init(&l->stopping, false);
    if (l->uri == NULL || (cfg->snapshot_path && cfg->snapshot_path[0] && l->path == NULL) ||
        pipe2(l->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        log_error("snapshot: cannot set up the loader: %s", strerror(errno ? errno : ENOMEM));
        loader_free(l);
        return NULL;
    }

    char err[1024];
    unsigned read = READ_WHOLE;
    struct snapshot *s = attempt(l, &read, err, sizeof(err));
    bool from_disk = false;
    if (s == NULL) {
        log_error("snapshot: cannot load the first snapshot from PostgreSQL: %s", err);
        char ferr[512];
        if (l->path == NULL) {
            snprintf(ferr, sizeof(ferr), "no snapshot file configured");
        } else if ((s = snapshot_file_read(l->path, ferr, sizeof(ferr))) != NULL) {
            char when[32];
            int64_t at = snapshot_loaded_at_ms(s);
            format_time(at, when, sizeof(when));
            log_error("snapshot: STARTING ON STALE DATA from the snapshot file %s, read from "
                      "PostgreSQL at %s (%lld s ago): %zu users, %zu whitelist prefixes, %zu "
                      "providers; changes made since then are not seen until PostgreSQL is "
                      "reachable",
                      l->path, when, (long long)((clock_wall_ms() - at) / 1000),
                      snapshot_user_count(s), snapshot_ip_count(s), snapshot_provider_count(s));
            from_disk = true;
        }
        if (s == NULL) {
            log_error("snapshot: no snapshot to start with: PostgreSQL is unreachable and "
                      "there is no usable snapshot file (%s)",
                      ferr);
            loader_free(l);
            return NULL;
        }
    }
    struct snapshot_store *st = snapshot_store_alloc(s);
    if (st == NULL) {
        log_error("snapshot: out of memory");
        snapshot_release(s);
        loader_free(l);
        return NULL;
    }
    st->loader = l;
    l->st = st;
    l->save_first = !from_disk;
    st->status.from_disk = from_disk;
    st->status.postgres_ok = !from_disk;
    if (from_disk) {
        st->status.loads_failed = 1;
    } else {
        st->status.loads_ok = 1;
        st->status.last_ok_ms = snapshot_loaded_at_ms(s);
        st->status.last_load_ms = l->last_load_ms;
        log_loaded(l, s, READ_WHOLE, 1);
    }

    /* The thread takes no signals: they are the main thread's business. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&l->thread, NULL, loader_main, l);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        log_error("snapshot: cannot start the loader thread: %s", strerror(rc));
        st->loader = NULL;
        loader_free(l);
        snapshot_store_free(st);
        return NULL;
    }
    l->thread_started = true;
    return st;
}

/* Waits for a load in progress to end (bounded by the statement timeout). */
void snapshot_store_stop(struct snapshot_store *st)
{
    if (st == NULL) return;
    struct snapshot_loader *l = st->loader;
    if (l != NULL) {
        atomic_store(&l->stopping, true);
        ssize_t w = write(l->wake[1], "x", 1);
        (void)w; /* a full pipe already wakes it */
        if (l->thread_started) pthread_join(l->thread, NULL);
        if (l->dirty) { /* deltas not yet in the file */
            struct snapshot *cur = current(st);
            save(l, cur);
            snapshot_release(cur);
        }
        loader_free(l);
    }
    snapshot_store_free(st);
}
