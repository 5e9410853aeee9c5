/*
 * Unit tests for agent/snapshot*.c without PostgreSQL: building from rows
 * (lookups, is_active and NULL defaults, every skip reason, provider split
 * and order, base_url forms, the whitelist), the snapshot file (round trip,
 * refusals of truncated, corrupt and foreign files), the store's swap under
 * two threads, and snapshot_store_start's fallbacks when PostgreSQL is down.
 */
#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <msgpack.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snapshot.h"
#include "snapshot_int.h"

extern Suite *snapshot_suite(void);

#define TPL "{username}-country-{country}-session-{session_id}:{password}@{host}:{port}"

/* --- row helpers --------------------------------------------------------------------- */

static size_t len_of(const char *s)
{
    return s != NULL ? strlen(s) : 0;
}

static struct snapshot_user_row user_row(int32_t id, const char *name, const char *pw,
                                         enum snapshot_bool active)
{
    return (struct snapshot_user_row){id, name, len_of(name), pw, len_of(pw), active, {0}, {0}};
}

static struct snapshot_ip_row ip_row(int32_t id, const char *ip, enum snapshot_bool active)
{
    return (struct snapshot_ip_row){id, ip, len_of(ip), active};
}

static struct snapshot_provider_row prov_row(int32_t id, const char *slug, const char *base_url,
                                             enum snapshot_bool global)
{
    struct snapshot_provider_row p = {
        .id = id,
        .base_url = base_url,
        .base_url_len = len_of(base_url),
        .name = slug,
        .name_len = len_of(slug),
        .slug = slug,
        .slug_len = len_of(slug),
        .username = "prov-user",
        .username_len = 9,
        .password = "p@ss:word",
        .password_len = 9,
        .url_template = TPL,
        .url_template_len = sizeof(TPL) - 1,
        .port_min = 10000,
        .port_max = 10010,
        .is_global = global,
    };
    return p;
}

/* A resolver that knows names ending in ".test" and refuses the rest;
 * addresses resolve to themselves. */
struct fake_dns {
    int calls;
    char asked[16][64];
};

static int fake_resolve(void *arg, const char *host, char addr[46])
{
    struct fake_dns *d = arg;
    uint8_t buf[16];
    if (d->calls < 16) snprintf(d->asked[d->calls], sizeof(d->asked[0]), "%s", host);
    d->calls++;
    if (inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1) {
        snprintf(addr, 46, "%s", host);
        return 0;
    }
    size_t n = strlen(host);
    if (n > 5 && strcmp(host + n - 5, ".test") == 0) {
        snprintf(addr, 46, "198.51.100.%zu", n);
        return 0;
    }
    return -1;
}

static const struct snap_user *find(const struct snapshot *s, const char *name)
{
    return snapshot_user(s, name, strlen(name));
}

static bool allowed(const struct snapshot *s, const char *text)
{
    uint8_t a[16];
    if (inet_pton(AF_INET, text, a) == 1) return snapshot_ip_allowed(s, AF_INET, a);
    ck_assert_msg(inet_pton(AF_INET6, text, a) == 1, "bad test address %s", text);
    return snapshot_ip_allowed(s, AF_INET6, a);
}

static const struct snap_provider *provider(const struct snapshot *s, const char *slug)
{
    const struct snap_provider *const *v;
    for (int g = 0; g < 2; g++) {
        size_t n = snapshot_providers(s, g == 1, &v);
        for (size_t i = 0; i < n; i++)
            if (strcmp(v[i]->slug, slug) == 0) return v[i];
    }
    return NULL;
}

/* The demo data (sql/demo.sql) plus a few more rows. */
static struct snapshot *demo_snapshot(struct fake_dns *dns)
{
    static const struct snapshot_user_row users[] = {
        {1, "myuser", 6, "mypassword", 10, SNAPSHOT_TRUE, {0}, {0}},
        {2,
         "hashed",
         6,
         "$2b$12$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234",
         60,
         SNAPSHOT_NULL,
         {0},
         {0}},
        {3, "Alice", 5, "pw-upper", 8, SNAPSHOT_TRUE, {0}, {0}},
        {4, "alice", 5, "pw-lower", 8, SNAPSHOT_TRUE, {0}, {0}},
    };
    static const struct snapshot_ip_row ips[] = {
        {1, "127.0.0.1/32", 12, SNAPSHOT_TRUE},
        {2, "::1/128", 7, SNAPSHOT_TRUE},
        {3, "203.0.113.50", 12, SNAPSHOT_TRUE},
        {4, "10.0.0.0/8", 10, SNAPSHOT_TRUE},
    };
    struct snapshot_provider_row provs[3];
    provs[0] = prov_row(1, "demo-global", "127.0.0.1", SNAPSHOT_TRUE);
    provs[1] = prov_row(2, "demo-de", "127.0.0.1", SNAPSHOT_FALSE);
    provs[1].country_format = "ISO_LOWERCASE";
    provs[1].country_format_len = 13;
    provs[1].password = "de:p@ss/w0rd";
    provs[1].password_len = 12;
    provs[2] = prov_row(3, "demo-us", "us.proxy.test", SNAPSHOT_FALSE);
    provs[2].country_format = "NO_SPACES";
    provs[2].country_format_len = 9;
    struct snapshot_rows rows = {users, 4, ips, 4, provs, 3, 1700000000123};
    struct snapshot *s = snapshot_build(&rows, fake_resolve, dns);
    ck_assert_ptr_nonnull(s);
    return s;
}

/* --- building and lookups --------------------------------------------------------------- */

START_TEST(test_user_lookup)
{
    struct fake_dns dns = {0};
    struct snapshot *s = demo_snapshot(&dns);
    ck_assert_uint_eq(snapshot_user_count(s), 4);
    const struct snap_user *u = find(s, "myuser");
    ck_assert_ptr_nonnull(u);
    ck_assert_int_eq(u->id, 1);
    ck_assert_str_eq(u->username, "myuser");
    ck_assert_uint_eq(u->username_len, 6);
    ck_assert_str_eq(u->password, "mypassword");
    ck_assert_uint_eq(u->password_len, 10);
    ck_assert(!u->password_is_hash);
    u = find(s, "hashed");
    ck_assert_ptr_nonnull(u);
    ck_assert(u->password_is_hash);
    /* exact, case-sensitive bytes */
    ck_assert_str_eq(find(s, "Alice")->password, "pw-upper");
    ck_assert_str_eq(find(s, "alice")->password, "pw-lower");
    ck_assert_ptr_null(find(s, "ALICE"));
    ck_assert_ptr_null(find(s, "myuse"));
    ck_assert_ptr_null(find(s, "myuser "));
    ck_assert_ptr_null(find(s, ""));
    ck_assert_ptr_null(snapshot_user(s, "myuser\0x", 8));
    ck_assert_ptr_nonnull(snapshot_user(s, "myuserXX", 6)); /* length, not NUL, ends it */
    ck_assert_int_eq(snapshot_loaded_at_ms(s), 1700000000123);
    snapshot_free(s);
}
END_TEST

START_TEST(test_hash_prefixes)
{
    static const struct {
        const char *pw;
        bool hash;
    } cases[] = {
        {"$2b$10$x", true},  {"$2y$10$x", true}, {"$2a$10$x", true}, {"$5$rounds$x", true},
        {"$6$salt$x", true}, {"$y$j9T$x", true}, {"$1$md5", false},  {"plain", false},
        {"$", false},        {"", false},
    };
    struct snapshot_user_row rows[10];
    char names[10][16];
    for (int i = 0; i < 10; i++) {
        snprintf(names[i], sizeof(names[i]), "u%d", i);
        rows[i] = user_row(i + 1, names[i], cases[i].pw, SNAPSHOT_TRUE);
    }
    struct snapshot_rows r = {.users = rows, .n_users = 10};
    struct snapshot *s = snapshot_build(&r, fake_resolve, &(struct fake_dns){0});
    for (int i = 0; i < 10; i++) {
        const struct snap_user *u = find(s, names[i]);
        ck_assert_ptr_nonnull(u);
        ck_assert_msg(u->password_is_hash == cases[i].hash, "%s", cases[i].pw);
    }
    snapshot_free(s);
}
END_TEST

START_TEST(test_is_active)
{
    struct snapshot_user_row users[] = {
        user_row(1, "on", "x", SNAPSHOT_TRUE),
        user_row(2, "off", "x", SNAPSHOT_FALSE),
        user_row(3, "null", "x", SNAPSHOT_NULL),
    };
    struct snapshot_ip_row ips[] = {
        ip_row(1, "192.0.2.1", SNAPSHOT_TRUE),
        ip_row(2, "192.0.2.2", SNAPSHOT_FALSE),
        ip_row(3, "192.0.2.3", SNAPSHOT_NULL),
    };
    struct snapshot_rows r = {users, 3, ips, 3, NULL, 0, 0};
    struct snapshot *s = snapshot_build(&r, fake_resolve, &(struct fake_dns){0});
    ck_assert_ptr_nonnull(find(s, "on"));
    ck_assert_ptr_null(find(s, "off"));
    ck_assert_ptr_nonnull(find(s, "null"));
    ck_assert(allowed(s, "192.0.2.1"));
    ck_assert(!allowed(s, "192.0.2.2"));
    ck_assert(allowed(s, "192.0.2.3"));
    ck_assert_uint_eq(snapshot_user_count(s), 2);
    ck_assert_uint_eq(snapshot_ip_count(s), 2);
    /* filtered rows are not bad rows */
    const struct snapshot_skips *k = snapshot_skipped(s);
    ck_assert_uint_eq(k->bad_user + k->bad_cidr + k->duplicate, 0);
    snapshot_free(s);
}
END_TEST

START_TEST(test_provider_defaults)
{
    struct snapshot_provider_row p[6];
    p[0] = prov_row(1, "all-null", "a.test", SNAPSHOT_NULL); /* visible, enabled, not global */
    p[1] = prov_row(2, "hidden", "a.test", SNAPSHOT_NULL);
    p[1].is_visible = SNAPSHOT_FALSE;
    p[2] = prov_row(3, "disabled", "a.test", SNAPSHOT_NULL);
    p[2].is_disabled = SNAPSHOT_TRUE;
    p[3] = prov_row(4, "explicit", "a.test", SNAPSHOT_TRUE);
    p[3].is_visible = SNAPSHOT_TRUE;
    p[3].is_disabled = SNAPSHOT_FALSE;
    p[4] = prov_row(5, "fmt-lower", "a.test", SNAPSHOT_FALSE);
    p[4].country_format = "full_name"; /* any case */
    p[4].country_format_len = 9;
    p[5] = prov_row(6, "empty-tpl", "a.test", SNAPSHOT_FALSE);
    p[5].url_template = "";
    p[5].url_template_len = 0;
    struct snapshot_rows r = {.providers = p, .n_providers = 6};
    struct snapshot *s = snapshot_build(&r, fake_resolve, &(struct fake_dns){0});
    ck_assert_uint_eq(snapshot_provider_count(s), 4);
    const struct snap_provider *x = provider(s, "all-null");
    ck_assert_ptr_nonnull(x);
    ck_assert(!x->is_global);
    ck_assert_int_eq(x->country_format, COUNTRY_FMT_ISO);
    ck_assert_ptr_null(provider(s, "hidden"));
    ck_assert_ptr_null(provider(s, "disabled"));
    ck_assert(provider(s, "explicit")->is_global);
    ck_assert_int_eq(provider(s, "fmt-lower")->country_format, COUNTRY_FMT_FULL_NAME);
    /* the empty template is the default one: it renders */
    x = provider(s, "empty-tpl");
    ck_assert_ptr_nonnull(x);
    struct template_values v = {.username = "u",
                                .username_len = 1,
                                .password = "p",
                                .password_len = 1,
                                .host = x->host,
                                .host_len = strlen(x->host),
                                .port = 10001};
    struct template_upstream up;
    const char *err;
    ck_assert_int_eq(template_render(&x->tpl, &v, &up, &err), 0);
    ck_assert_str_eq(up.user, "u");
    ck_assert_str_eq(up.host, "a.test");
    const struct snapshot_skips *k = snapshot_skipped(s);
    ck_assert_uint_eq(k->bad_template + k->bad_country_format + k->bad_port_range, 0);
    snapshot_free(s);
}
END_TEST

START_TEST(test_provider_fields)
{
    struct fake_dns dns = {0};
    struct snapshot *s = demo_snapshot(&dns);
    const struct snap_provider *p = provider(s, "demo-de");
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(p->id, 2);
    ck_assert_str_eq(p->name, "demo-de");
    ck_assert_str_eq(p->host, "127.0.0.1");
    ck_assert_str_eq(p->addr, "127.0.0.1");
    ck_assert_str_eq(p->username, "prov-user");
    ck_assert_uint_eq(p->password_len, 12);
    ck_assert_str_eq(p->password, "de:p@ss/w0rd");
    ck_assert_uint_eq(p->port_min, 10000);
    ck_assert_uint_eq(p->port_max, 10010);
    ck_assert_int_eq(p->country_format, COUNTRY_FMT_ISO_LOWERCASE);
    ck_assert(!p->is_global);
    p = provider(s, "demo-us");
    ck_assert_str_eq(p->host, "us.proxy.test");
    ck_assert_str_eq(p->addr, "198.51.100.13");
    /* one DNS question per distinct host */
    ck_assert_int_eq(dns.calls, 2);
    snapshot_free(s);
}
END_TEST

START_TEST(test_provider_split_sorted)
{
    static const char *const slugs[] = {"m", "b", "z", "a", "mm", "c", "ab", "y"};
    static const bool global[] = {false, true, false, true, true, false, false, true};
    struct snapshot_provider_row p[8];
    for (int i = 0; i < 8; i++)
        p[i] = prov_row(i + 1, slugs[i], "192.0.2.9",
                        global[i] ? SNAPSHOT_TRUE : (i % 2 ? SNAPSHOT_FALSE : SNAPSHOT_NULL));
    struct snapshot_rows r = {.providers = p, .n_providers = 8};
    struct snapshot *s = snapshot_build(&r, fake_resolve, &(struct fake_dns){0});
    const struct snap_provider *const *v;
    ck_assert_uint_eq(snapshot_providers(s, true, &v), 4);
    ck_assert_str_eq(v[0]->slug, "a");
    ck_assert_str_eq(v[1]->slug, "b");
    ck_assert_str_eq(v[2]->slug, "mm");
    ck_assert_str_eq(v[3]->slug, "y");
    for (int i = 0; i < 4; i++)
        ck_assert(v[i]->is_global);
    ck_assert_uint_eq(snapshot_providers(s, false, &v), 4);
    ck_assert_str_eq(v[0]->slug, "ab");
    ck_assert_str_eq(v[1]->slug, "c");
    ck_assert_str_eq(v[2]->slug, "m");
    ck_assert_str_eq(v[3]->slug, "z");
    for (int i = 0; i < 4; i++)
        ck_assert(!v[i]->is_global);
    ck_assert_uint_eq(snapshot_provider_count(s), 8);
    snapshot_free(s);

    /* none at all */
    struct snapshot_rows empty = {0};
    s = snapshot_build(&empty, fake_resolve, &(struct fake_dns){0});
    ck_assert_uint_eq(snapshot_providers(s, true, &v), 0);
    ck_assert_uint_eq(snapshot_providers(s, false, &v), 0);
    ck_assert_ptr_null(find(s, "x"));
    ck_assert(!allowed(s, "127.0.0.1"));
    snapshot_free(s);
}
END_TEST

static const struct {
    const char *base_url;
    const char *host;   /* snap_provider.host; NULL: refused */
    const char *lookup; /* what the resolver is asked */
} base_urls[] = {
    {"proxy.example.test", "proxy.example.test", "proxy.example.test"},
    {"proxy.example.test:8000", "proxy.example.test", "proxy.example.test"},
    {"http://proxy.example.test", "proxy.example.test", "proxy.example.test"},
    {"HTTP://proxy.example.test:3128/some/path?x=1", "proxy.example.test", "proxy.example.test"},
    {"socks5://gw.test#frag", "gw.test", "gw.test"},
    {"  203.0.113.7  ", "203.0.113.7", "203.0.113.7"},
    {"203.0.113.7:9000", "203.0.113.7", "203.0.113.7"},
    {"2001:db8::7", "[2001:db8::7]", "2001:db8::7"},
    {"[2001:db8::7]", "[2001:db8::7]", "2001:db8::7"},
    {"http://[2001:db8::7]:8080/", "[2001:db8::7]", "2001:db8::7"},
    {"", NULL, NULL},
    {"http://", NULL, NULL},
    {"user:pw@proxy.example.test", NULL, NULL},
    {"proxy.example.test:http", NULL, NULL},
    {"proxy.example.test:", NULL, NULL},
    {"[2001:db8::7", NULL, NULL},
    {"[2001:db8::7]x", NULL, NULL},
    {"[not-v6]", NULL, NULL},
    {"bad host.test", NULL, NULL},
    {"unknown.invalid", NULL, "unknown.invalid"}, /* does not resolve */
};

START_TEST(test_base_url_forms)
{
    struct fake_dns dns = {0};
    struct snapshot_provider_row p = prov_row(7, "p", base_urls[_i].base_url, SNAPSHOT_FALSE);
    struct snapshot_rows r = {.providers = &p, .n_providers = 1};
    struct snapshot *s = snapshot_build(&r, fake_resolve, &dns);
    const struct snap_provider *x = provider(s, "p");
    if (base_urls[_i].host == NULL) {
        ck_assert_msg(x == NULL, "'%s' accepted", base_urls[_i].base_url);
        ck_assert_uint_eq(snapshot_skipped(s)->unresolved_host, 1);
    } else {
        ck_assert_msg(x != NULL, "'%s' refused", base_urls[_i].base_url);
        ck_assert_str_eq(x->host, base_urls[_i].host);
        ck_assert_uint_eq(snapshot_skipped(s)->unresolved_host, 0);
    }
    if (base_urls[_i].lookup != NULL) {
        ck_assert_int_eq(dns.calls, 1);
        ck_assert_str_eq(dns.asked[0], base_urls[_i].lookup);
    } else {
        ck_assert_int_eq(dns.calls, 0);
    }
    snapshot_free(s);
}
END_TEST

START_TEST(test_skip_reasons)
{
    static char huge[70000];
    memset(huge, 'h', sizeof(huge) - 1);
    struct snapshot_user_row users[] = {
        user_row(1, "good", "pw", SNAPSHOT_TRUE),
        user_row(2, "", "pw", SNAPSHOT_TRUE),        /* bad_user */
        user_row(3, NULL, "pw", SNAPSHOT_TRUE),      /* bad_user */
        user_row(4, "good", "other", SNAPSHOT_TRUE), /* duplicate */
        user_row(5, "", "pw", SNAPSHOT_FALSE),       /* inactive: not counted */
        user_row(6, huge, "pw", SNAPSHOT_TRUE),      /* bad_user: longer than 64 KiB */
        user_row(7, "big-pw", huge, SNAPSHOT_TRUE),  /* bad_user */
        user_row(8, "no-pw", NULL, SNAPSHOT_TRUE),   /* NULL password reads as "" */
    };
    struct snapshot_ip_row ips[] = {
        ip_row(1, "10.0.0.0/8", SNAPSHOT_TRUE),
        ip_row(2, "10.0.0.0/33", SNAPSHOT_TRUE), /* bad_cidr */
        ip_row(3, "not an ip", SNAPSHOT_TRUE),   /* bad_cidr */
        ip_row(4, "", SNAPSHOT_TRUE),            /* bad_cidr */
        ip_row(5, NULL, SNAPSHOT_TRUE),          /* bad_cidr */
        ip_row(6, "garbage", SNAPSHOT_FALSE),    /* inactive: not counted */
        ip_row(7, "10.1.2.3/16", SNAPSHOT_TRUE), /* host bits: accepted as 10.1.0.0/16 */
    };
    struct snapshot_provider_row p[12];
    int n = 0;
    p[n++] = prov_row(1, "ok", "ok.test", SNAPSHOT_FALSE);
    p[n] = prov_row(2, "min-gt-max", "ok.test", SNAPSHOT_FALSE); /* bad_port_range */
    p[n].port_min = 2000, p[n++].port_max = 1999;
    p[n] = prov_row(3, "zero", "ok.test", SNAPSHOT_FALSE); /* bad_port_range */
    p[n++].port_min = 0;
    p[n] = prov_row(4, "big", "ok.test", SNAPSHOT_FALSE); /* bad_port_range */
    p[n++].port_max = 65536;
    p[n] = prov_row(5, "fmt", "ok.test", SNAPSHOT_FALSE); /* bad_country_format */
    p[n].country_format = "ALPHA3", p[n++].country_format_len = 6;
    p[n] = prov_row(6, "fmt-empty", "ok.test", SNAPSHOT_FALSE); /* bad_country_format */
    p[n].country_format = "", p[n++].country_format_len = 0;
    p[n] = prov_row(7, "tpl", "ok.test", SNAPSHOT_FALSE); /* bad_template */
    p[n].url_template = "{user}@{host}:{port}", p[n++].url_template_len = 20;
    p[n] = prov_row(8, "tpl-noport", "ok.test", SNAPSHOT_FALSE); /* bad_template */
    p[n].url_template = "{username}@{host}", p[n++].url_template_len = 17;
    p[n++] = prov_row(9, "dns", "nowhere.invalid", SNAPSHOT_FALSE);       /* unresolved_host */
    p[n++] = prov_row(10, "dns2", "nowhere.invalid", SNAPSHOT_TRUE);      /* unresolved (cached) */
    p[n++] = prov_row(11, "ok", "other.test", SNAPSHOT_TRUE);             /* duplicate slug */
    p[n] = prov_row(12, "hidden-bad", "nowhere.invalid", SNAPSHOT_FALSE); /* not eligible */
    p[n].is_visible = SNAPSHOT_FALSE, p[n].port_min = 0, p[n++].country_format = "?";
    struct fake_dns dns = {0};
    struct snapshot_rows r = {users, 8, ips, 7, p, (size_t)n, 0};
    struct snapshot *s = snapshot_build(&r, fake_resolve, &dns);
    ck_assert_ptr_nonnull(s);
    const struct snapshot_skips *k = snapshot_skipped(s);
    ck_assert_uint_eq(k->bad_user, 4);
    ck_assert_uint_eq(k->bad_cidr, 4);
    ck_assert_uint_eq(k->bad_port_range, 3);
    ck_assert_uint_eq(k->bad_country_format, 2);
    ck_assert_uint_eq(k->bad_template, 2);
    ck_assert_uint_eq(k->unresolved_host, 2);
    ck_assert_uint_eq(k->duplicate, 2);
    /* the good rows are all there; the first of two duplicates wins */
    ck_assert_uint_eq(snapshot_user_count(s), 2);
    ck_assert_str_eq(find(s, "good")->password, "pw");
    ck_assert_str_eq(find(s, "no-pw")->password, "");
    ck_assert_uint_eq(find(s, "no-pw")->password_len, 0);
    ck_assert_ptr_null(find(s, "big-pw"));
    ck_assert_int_eq(find(s, "good")->id, 1);
    ck_assert_uint_eq(snapshot_ip_count(s), 2);
    ck_assert(allowed(s, "10.200.0.1"));
    ck_assert_uint_eq(snapshot_provider_count(s), 1);
    ck_assert_int_eq(provider(s, "ok")->id, 1);
    ck_assert_str_eq(provider(s, "ok")->host, "ok.test");
    /* "nowhere.invalid" asked once for two providers; "other.test" never
     * (its row was a duplicate) */
    ck_assert_int_eq(dns.calls, 2);
    snapshot_free(s);
}
END_TEST

START_TEST(test_whitelist_families)
{
    struct snapshot_ip_row ips[] = {
        ip_row(1, "10.0.0.0/8", SNAPSHOT_TRUE),           ip_row(2, "203.0.113.50", SNAPSHOT_TRUE),
        ip_row(3, "2001:db8::/32", SNAPSHOT_TRUE),        ip_row(4, "::1", SNAPSHOT_TRUE),
        ip_row(5, "::ffff:192.0.2.0/120", SNAPSHOT_TRUE), /* IPv4 written as mapped IPv6 */
        ip_row(6, " 198.51.100.0/24\t", SNAPSHOT_TRUE),
    };
    struct snapshot_rows r = {.ips = ips, .n_ips = 6};
    struct snapshot *s = snapshot_build(&r, fake_resolve, &(struct fake_dns){0});
    ck_assert_uint_eq(snapshot_ip_count(s), 6);
    ck_assert(allowed(s, "10.0.0.1"));
    ck_assert(allowed(s, "10.255.255.255"));
    ck_assert(!allowed(s, "11.0.0.0"));
    ck_assert(allowed(s, "203.0.113.50"));
    ck_assert(!allowed(s, "203.0.113.51"));
    ck_assert(allowed(s, "2001:db8::1"));
    ck_assert(allowed(s, "2001:db8:ffff::1"));
    ck_assert(!allowed(s, "2001:db9::1"));
    ck_assert(allowed(s, "::1"));
    ck_assert(!allowed(s, "::2"));
    ck_assert(allowed(s, "192.0.2.77"));
    ck_assert(allowed(s, "198.51.100.200"));
    /* IPv4-mapped clients match IPv4 entries */
    ck_assert(allowed(s, "::ffff:10.1.2.3"));
    ck_assert(allowed(s, "::ffff:192.0.2.1"));
    ck_assert(!allowed(s, "::ffff:11.1.2.3"));
    /* IPv4 entries never match other IPv6 clients */
    ck_assert(!allowed(s, "::10.1.2.3"));
    uint8_t a[16] = {0};
    ck_assert(!snapshot_ip_allowed(s, 12345, a));
    snapshot_free(s);
}
END_TEST

START_TEST(test_many_users)
{
    enum { N = 100000 };
    struct snapshot_user_row *rows = calloc(N, sizeof(*rows));
    char(*names)[16] = calloc(N, sizeof(*names));
    ck_assert_ptr_nonnull(rows);
    ck_assert_ptr_nonnull(names);
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "user%07d", i);
        rows[i] = user_row(i + 1, names[i], names[i], SNAPSHOT_TRUE);
    }
    struct snapshot_rows r = {.users = rows, .n_users = N};
    struct snapshot *s = snapshot_build(&r, fake_resolve, &(struct fake_dns){0});
    ck_assert_uint_eq(snapshot_user_count(s), N);
    for (int i = 0; i < N; i++) {
        const struct snap_user *u = find(s, names[i]);
        ck_assert_ptr_nonnull(u);
        ck_assert_int_eq(u->id, i + 1);
    }
    char miss[16];
    for (int i = 0; i < 1000; i++) {
        snprintf(miss, sizeof(miss), "user%07d", N + i);
        ck_assert_ptr_null(find(s, miss));
    }
    /* rows are copied: the caller's memory may go */
    memset(names, 'x', N * sizeof(*names));
    ck_assert_ptr_nonnull(find(s, "user0012345"));
    free(rows);
    free(names);
    snapshot_free(s);
}
END_TEST

/* --- the file ------------------------------------------------------------------------------ */

static char tmpdir[64];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/gw-snapshot-test.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    char p[512];
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof(p), "%s/%s", tmpdir, e->d_name);
        unlink(p);
    }
    if (d != NULL) closedir(d);
    rmdir(tmpdir);
}

static size_t count_files(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    size_t n = 0;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

static void write_bytes(const char *path, const void *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, buf, len), (ssize_t)len);
    close(fd);
}

/* Checks that t answers as the demo snapshot does. */
static void assert_demo_answers(const struct snapshot *t)
{
    ck_assert_uint_eq(snapshot_user_count(t), 4);
    ck_assert_uint_eq(snapshot_ip_count(t), 4);
    ck_assert_uint_eq(snapshot_provider_count(t), 3);
    ck_assert_int_eq(snapshot_loaded_at_ms(t), 1700000000123);
    ck_assert_str_eq(find(t, "myuser")->password, "mypassword");
    ck_assert_int_eq(find(t, "myuser")->id, 1);
    ck_assert(find(t, "hashed")->password_is_hash);
    ck_assert_str_eq(find(t, "Alice")->password, "pw-upper");
    ck_assert_str_eq(find(t, "alice")->password, "pw-lower");
    ck_assert_ptr_null(find(t, "ALICE"));
    ck_assert(allowed(t, "127.0.0.1"));
    ck_assert(allowed(t, "::1"));
    ck_assert(allowed(t, "10.9.8.7"));
    ck_assert(allowed(t, "::ffff:203.0.113.50"));
    ck_assert(!allowed(t, "203.0.113.51"));
    const struct snap_provider *const *v;
    ck_assert_uint_eq(snapshot_providers(t, true, &v), 1);
    ck_assert_str_eq(v[0]->slug, "demo-global");
    ck_assert_uint_eq(snapshot_providers(t, false, &v), 2);
    ck_assert_str_eq(v[0]->slug, "demo-de");
    ck_assert_str_eq(v[1]->slug, "demo-us");
    ck_assert_str_eq(v[1]->host, "us.proxy.test");
    ck_assert_str_eq(v[1]->addr, "198.51.100.13");
    ck_assert_int_eq(v[1]->country_format, COUNTRY_FMT_NO_SPACES);
    ck_assert_str_eq(v[0]->password, "de:p@ss/w0rd");
    ck_assert_int_eq(v[0]->country_format, COUNTRY_FMT_ISO_LOWERCASE);
    ck_assert_uint_eq(v[0]->port_min, 10000);
    ck_assert_uint_eq(v[0]->port_max, 10010);
    ck_assert_int_eq(v[0]->id, 2);
    /* the template survived: same rendering */
    struct template_values vals = {.username = v[0]->username,
                                   .username_len = v[0]->username_len,
                                   .password = v[0]->password,
                                   .password_len = v[0]->password_len,
                                   .host = v[0]->host,
                                   .host_len = strlen(v[0]->host),
                                   .port = 10005,
                                   .country = "de",
                                   .country_len = 2,
                                   .session_id = "abc",
                                   .session_id_len = 3};
    struct template_upstream up;
    const char *err;
    ck_assert_int_eq(template_render(&v[0]->tpl, &vals, &up, &err), 0);
    ck_assert_str_eq(up.user, "prov-user-country-de-session-abc");
    ck_assert_str_eq(up.pass, "de:p@ss/w0rd");
    ck_assert_str_eq(up.host, "127.0.0.1");
    ck_assert_uint_eq(up.port, 10005);
}

/* A bit-at-a-time CRC-32 (IEEE), independent of the module's table. */
static uint32_t crc32_ref(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
    }
    return ~c;
}

/* --- deltas (changed users over a whole snapshot) ------------------------------------ */

/* A delta on prev from rows; never NULL. */
static struct snapshot *delta(struct snapshot *prev, const struct snapshot_user_row *rows, size_t n)
{
    struct snapshot_builder *b = snapshot_builder_delta(prev, 1700000009999, 0);
    ck_assert_ptr_nonnull(b);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(snapshot_builder_user(b, &rows[i]), 0);
    struct snapshot *s = snapshot_builder_finish(b, NULL, NULL);
    ck_assert_ptr_nonnull(s);
    return s;
}

START_TEST(test_delta_changes)
{
    struct fake_dns dns = {0};
    struct snapshot *base = demo_snapshot(&dns);
    const struct snapshot_user_row rows[] = {
        user_row(1, "myuser", "new-password", SNAPSHOT_TRUE), /* changed */
        user_row(3, "Alice", NULL, SNAPSHOT_FALSE),           /* deactivated or deleted */
        user_row(9, "bob", "bob-pw", SNAPSHOT_NULL),          /* new; NULL is active */
        user_row(10, "ghost", NULL, SNAPSHOT_FALSE),          /* gone, and never loaded */
    };
    struct snapshot *d = delta(base, rows, 4);
    ck_assert_uint_eq(snapshot_delta_size(d), 4);
    ck_assert_uint_eq(snapshot_delta_size(base), 0);
    ck_assert_uint_eq(snapshot_user_count(d), 4 + 1 - 1);
    ck_assert_str_eq(find(d, "myuser")->password, "new-password");
    ck_assert_ptr_null(find(d, "Alice"));
    ck_assert_str_eq(find(d, "alice")->password, "pw-lower"); /* from the base */
    ck_assert_str_eq(find(d, "bob")->password, "bob-pw");
    ck_assert_int_eq(find(d, "bob")->id, 9);
    ck_assert_ptr_null(find(d, "ghost"));
    ck_assert(find(d, "hashed")->password_is_hash);
    /* the base is untouched; whitelist and providers are shared */
    ck_assert_str_eq(find(base, "myuser")->password, "mypassword");
    ck_assert_ptr_nonnull(find(base, "Alice"));
    ck_assert_ptr_null(find(base, "bob"));
    ck_assert(allowed(d, "10.1.2.3"));
    ck_assert(!allowed(d, "192.0.2.1"));
    ck_assert_ptr_eq(provider(d, "demo-de"), provider(base, "demo-de"));
    ck_assert_uint_eq(snapshot_provider_count(d), 3);
    ck_assert_uint_eq(snapshot_ip_count(d), 4);
    ck_assert_int_eq(snapshot_loaded_at_ms(d), 1700000009999);
    /* the delta keeps the base alive */
    snapshot_free(base);
    ck_assert_str_eq(find(d, "alice")->password, "pw-lower");
    ck_assert(allowed(d, "127.0.0.1"));
    snapshot_free(d);
}
END_TEST

START_TEST(test_delta_on_delta)
{
    struct fake_dns dns = {0};
    struct snapshot *base = demo_snapshot(&dns);
    const struct snapshot_user_row first[] = {
        user_row(9, "bob", "bob-1", SNAPSHOT_TRUE),
        user_row(1, "myuser", NULL, SNAPSHOT_FALSE),
        user_row(3, "Alice", "alice-1", SNAPSHOT_TRUE),
    };
    struct snapshot *d1 = delta(base, first, 3);
    ck_assert_uint_eq(snapshot_user_count(d1), 4);
    const struct snapshot_user_row second[] = {
        user_row(9, "bob", "bob-2", SNAPSHOT_TRUE),    /* changed again: the newest wins */
        user_row(1, "myuser", "back", SNAPSHOT_TRUE),  /* removed, then back */
        user_row(11, "carol", "carol", SNAPSHOT_TRUE), /* new */
        user_row(4, "alice", NULL, SNAPSHOT_FALSE),    /* removed */
    };
    struct snapshot *d2 = delta(d1, second, 4);
    snapshot_free(d1);
    ck_assert_uint_eq(snapshot_delta_size(d2), 5); /* bob myuser carol alice Alice */
    ck_assert_uint_eq(snapshot_user_count(d2), 4 + 1 + 1 - 1);
    ck_assert_str_eq(find(d2, "bob")->password, "bob-2");
    ck_assert_str_eq(find(d2, "myuser")->password, "back");
    ck_assert_str_eq(find(d2, "carol")->password, "carol");
    ck_assert_ptr_null(find(d2, "alice"));
    ck_assert_str_eq(find(d2, "Alice")->password, "alice-1"); /* carried over */
    ck_assert_ptr_nonnull(find(d2, "hashed"));
    /* a removal carried over stays a removal */
    const struct snapshot_user_row third[] = {user_row(12, "dave", "d", SNAPSHOT_TRUE)};
    struct snapshot *d3 = delta(d2, third, 1);
    ck_assert_ptr_null(find(d3, "alice"));
    ck_assert_uint_eq(snapshot_user_count(d3), snapshot_user_count(d2) + 1);
    snapshot_free(d2);
    snapshot_free(d3);
    snapshot_free(base);
}
END_TEST

START_TEST(test_delta_bad_rows)
{
    struct fake_dns dns = {0};
    struct snapshot *base = demo_snapshot(&dns);
    static char long_pw[70000];
    memset(long_pw, 'p', sizeof(long_pw) - 1);
    const struct snapshot_user_row rows[] = {
        user_row(1, "myuser", long_pw, SNAPSHOT_TRUE), /* now bad: gone, counted */
        user_row(20, "", "x", SNAPSHOT_TRUE),          /* bad, and in no base */
    };
    struct snapshot *d = delta(base, rows, 2);
    ck_assert_ptr_null(find(d, "myuser"));
    ck_assert_uint_eq(snapshot_user_count(d), 3);
    ck_assert_uint_eq(snapshot_skipped(d)->bad_user, 2);
    ck_assert_uint_eq(snapshot_skipped(base)->bad_user, 0);
    /* a delta takes no whitelist or provider rows */
    struct snapshot_builder *b = snapshot_builder_delta(base, 1, 0);
    struct snapshot_ip_row ip = ip_row(1, "192.0.2.0/24", SNAPSHOT_TRUE);
    ck_assert_int_eq(snapshot_builder_ip(b, &ip), -1);
    snapshot_builder_abort(b);
    snapshot_free(d);
    snapshot_free(base);
}
END_TEST

START_TEST(test_delta_new_lists)
{
    /* a delta that reads the whitelist and providers again keeps the user
     * changes before it, and later deltas borrow its lists */
    struct fake_dns dns = {0};
    struct snapshot *base = demo_snapshot(&dns);
    const struct snapshot_user_row first[] = {user_row(9, "bob", "bob-pw", SNAPSHOT_TRUE)};
    struct snapshot *d1 = delta(base, first, 1);

    struct snapshot_builder *b =
        snapshot_builder_delta(d1, 1700000010000, SNAPSHOT_REREAD_IPS | SNAPSHOT_REREAD_PROVIDERS);
    ck_assert_ptr_nonnull(b);
    struct snapshot_ip_row ips[] = {ip_row(1, "192.0.2.0/24", SNAPSHOT_TRUE),
                                    ip_row(2, "not-an-ip", SNAPSHOT_TRUE)};
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(snapshot_builder_ip(b, &ips[i]), 0);
    struct snapshot_provider_row p = prov_row(7, "only-one", "only.test", SNAPSHOT_TRUE);
    ck_assert_int_eq(snapshot_builder_provider(b, &p), 0);
    struct snapshot_user_row carol = user_row(10, "carol", "c", SNAPSHOT_TRUE);
    ck_assert_int_eq(snapshot_builder_user(b, &carol), 0);
    struct snapshot *d2 = snapshot_builder_finish(b, fake_resolve, &dns);
    ck_assert_ptr_nonnull(d2);
    snapshot_free(d1);
    ck_assert(allowed(d2, "192.0.2.7"));
    ck_assert(!allowed(d2, "10.1.2.3")); /* the old whitelist is gone */
    ck_assert_uint_eq(snapshot_provider_count(d2), 1);
    ck_assert_str_eq(provider(d2, "only-one")->addr, "198.51.100.9");
    ck_assert_uint_eq(snapshot_skipped(d2)->bad_cidr, 1);
    ck_assert_str_eq(find(d2, "bob")->password, "bob-pw"); /* carried over */
    ck_assert_str_eq(find(d2, "carol")->password, "c");
    ck_assert_str_eq(find(d2, "myuser")->password, "mypassword"); /* the base's */
    ck_assert_uint_eq(snapshot_user_count(d2), 6);

    const struct snapshot_user_row third[] = {user_row(9, "bob", NULL, SNAPSHOT_FALSE)};
    struct snapshot *d3 = delta(d2, third, 1);
    snapshot_free(d2);
    ck_assert(allowed(d3, "192.0.2.7")); /* borrowed from d2, kept alive */
    ck_assert_ptr_nonnull(provider(d3, "only-one"));
    ck_assert_uint_eq(snapshot_skipped(d3)->bad_cidr, 1);
    ck_assert_ptr_null(find(d3, "bob"));
    ck_assert_ptr_nonnull(find(d3, "carol"));
    snapshot_free(base);
    ck_assert_ptr_nonnull(find(d3, "hashed"));

    /* the providers alone read again: the whitelist stays d2's */
    b = snapshot_builder_delta(d3, 1700000020000, SNAPSHOT_REREAD_PROVIDERS);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(snapshot_builder_ip(b, &ips[0]), -1);
    p = prov_row(8, "another", "another.test", SNAPSHOT_FALSE);
    ck_assert_int_eq(snapshot_builder_provider(b, &p), 0);
    struct snapshot *d4 = snapshot_builder_finish(b, fake_resolve, &dns);
    ck_assert_ptr_nonnull(d4);
    snapshot_free(d3);
    ck_assert(allowed(d4, "192.0.2.7"));
    ck_assert_uint_eq(snapshot_ip_count(d4), 1);
    ck_assert_ptr_null(provider(d4, "only-one"));
    ck_assert_ptr_nonnull(provider(d4, "another"));
    ck_assert_uint_eq(snapshot_skipped(d4)->bad_cidr, 1); /* the whitelist's, kept */
    ck_assert_ptr_nonnull(find(d4, "carol"));

    /* the whitelist alone: the providers stay d4's */
    b = snapshot_builder_delta(d4, 1700000030000, SNAPSHOT_REREAD_IPS);
    ck_assert_int_eq(snapshot_builder_provider(b, &p), -1);
    ck_assert_int_eq(snapshot_builder_ip(b, &ips[1]), 0);
    struct snapshot *d5 = snapshot_builder_finish(b, fake_resolve, &dns);
    snapshot_free(d4);
    ck_assert_uint_eq(snapshot_ip_count(d5), 0);
    ck_assert(!allowed(d5, "192.0.2.7"));
    ck_assert_ptr_nonnull(provider(d5, "another"));
    ck_assert_uint_eq(snapshot_skipped(d5)->bad_cidr, 1);
    ck_assert_ptr_nonnull(find(d5, "carol"));
    snapshot_free(d5);
}
END_TEST

START_TEST(test_delta_patch_ips)
{
    /* a whitelist patched by row id: changed rows replaced, gone rows
     * dropped, the others kept; a later delta borrows the patched list */
    struct fake_dns dns = {0};
    struct snapshot *base = demo_snapshot(&dns); /* ips 1..4 */
    struct snapshot_builder *b = snapshot_builder_delta(base, 1700000010000, 0);
    ck_assert_int_eq(snapshot_builder_ip_changed(b, 3), -1); /* not patching */
    snapshot_builder_abort(b);

    b = snapshot_builder_delta(base, 1700000010000, SNAPSHOT_PATCH_IPS);
    ck_assert_ptr_nonnull(b);
    struct snapshot_ip_row rows[] = {
        ip_row(3, "203.0.113.0/24", SNAPSHOT_TRUE), /* 3 changed */
        ip_row(5, "2001:db8::/32", SNAPSHOT_TRUE),  /* 5 is new */
        ip_row(6, "10.1.0.0/16", SNAPSHOT_TRUE),    /* 6: a twin inside 4's prefix */
        ip_row(7, "bad", SNAPSHOT_TRUE),            /* 7: skipped, counted */
        ip_row(8, "192.0.2.1", SNAPSHOT_FALSE),     /* 8: inactive */
    };
    const int32_t changed[] = {3, 5, 6, 7, 8, 4, 99}; /* 4 deleted; 99 unknown */
    for (size_t i = 0; i < sizeof(changed) / sizeof(*changed); i++)
        ck_assert_int_eq(snapshot_builder_ip_changed(b, changed[i]), 0);
    for (size_t i = 0; i < sizeof(rows) / sizeof(*rows); i++)
        ck_assert_int_eq(snapshot_builder_ip(b, &rows[i]), 0);
    const struct snapshot_user_row bob = user_row(9, "bob", "bob-pw", SNAPSHOT_TRUE);
    ck_assert_int_eq(snapshot_builder_user(b, &bob), 0);
    struct snapshot *d1 = snapshot_builder_finish(b, NULL, NULL);
    ck_assert_ptr_nonnull(d1);
    ck_assert(allowed(d1, "127.0.0.1")); /* kept */
    ck_assert(allowed(d1, "::1"));
    ck_assert(allowed(d1, "203.0.113.9")); /* 3's new prefix */
    ck_assert(allowed(d1, "2001:db8::5"));
    ck_assert(allowed(d1, "10.1.2.3"));
    ck_assert(!allowed(d1, "10.2.0.1")); /* 4 is gone */
    ck_assert(!allowed(d1, "192.0.2.1"));
    ck_assert_uint_eq(snapshot_ip_count(d1), 5);
    ck_assert_uint_eq(snapshot_skipped(d1)->bad_cidr, 1);
    ck_assert_ptr_nonnull(find(d1, "bob"));
    ck_assert(allowed(base, "10.2.0.1")); /* the base is untouched */
    ck_assert(!allowed(base, "203.0.113.9"));

    /* patching a patched list: 6 gone, 4 back */
    b = snapshot_builder_delta(d1, 1700000020000, SNAPSHOT_PATCH_IPS);
    ck_assert_int_eq(snapshot_builder_ip_changed(b, 6), 0);
    ck_assert_int_eq(snapshot_builder_ip_changed(b, 4), 0);
    struct snapshot_ip_row back = ip_row(4, "10.0.0.0/8", SNAPSHOT_TRUE);
    ck_assert_int_eq(snapshot_builder_ip(b, &back), 0);
    struct snapshot *d2 = snapshot_builder_finish(b, NULL, NULL);
    ck_assert_ptr_nonnull(d2);
    snapshot_free(d1);
    ck_assert(allowed(d2, "10.2.0.1"));
    ck_assert(allowed(d2, "203.0.113.9"));
    ck_assert_uint_eq(snapshot_ip_count(d2), 5);
    ck_assert_ptr_nonnull(find(d2, "bob")); /* carried over */

    /* two rows with one prefix: taking one away keeps the other's */
    b = snapshot_builder_delta(d2, 1700000030000, SNAPSHOT_PATCH_IPS);
    struct snapshot_ip_row twin = ip_row(9, "10.0.0.0/8", SNAPSHOT_TRUE);
    ck_assert_int_eq(snapshot_builder_ip_changed(b, 9), 0);
    ck_assert_int_eq(snapshot_builder_ip(b, &twin), 0);
    struct snapshot *d2b = snapshot_builder_finish(b, NULL, NULL);
    b = snapshot_builder_delta(d2b, 1700000040000, SNAPSHOT_PATCH_IPS);
    ck_assert_int_eq(snapshot_builder_ip_changed(b, 4), 0);
    struct snapshot *d2c = snapshot_builder_finish(b, NULL, NULL);
    ck_assert(allowed(d2c, "10.2.0.1"));
    snapshot_free(d2b);
    snapshot_free(d2);
    d2 = d2c;

    /* a delta of users alone borrows the patched whitelist */
    struct snapshot *d3 = delta(d2, &bob, 1);
    snapshot_free(d2);
    ck_assert(allowed(d3, "2001:db8::5"));
    ck_assert(allowed(d3, "10.2.0.1"));
    /* and the file holds it */
    char err[256];
    size_t len;
    uint8_t *buf = snapshot_file_encode(d3, 42, &len);
    ck_assert_ptr_nonnull(buf);
    struct snapshot *t = snapshot_file_parse(buf, len, err, sizeof(err));
    ck_assert_msg(t != NULL, "%s", err);
    ck_assert(allowed(t, "203.0.113.9"));
    ck_assert(!allowed(t, "203.0.114.1"));
    ck_assert_uint_eq(snapshot_ip_count(t), 5);
    free(buf);
    snapshot_free(t);
    snapshot_free(d3);
    snapshot_free(base);
}
END_TEST

START_TEST(test_delta_patch_ips_rebuild)
{
    /* a prefix repeated more often than the trie counts cannot be taken out
     * of a copy: the patch builds the trie again from the rows */
    enum { N = 65536 };
    struct snapshot_builder *b = snapshot_builder_new(1);
    for (int32_t id = 1; id <= N; id++) {
        struct snapshot_ip_row r = ip_row(id, "192.0.2.0/24", SNAPSHOT_TRUE);
        ck_assert_int_eq(snapshot_builder_ip(b, &r), 0);
    }
    struct snapshot_ip_row net = ip_row(N + 1, "10.0.0.0/8", SNAPSHOT_TRUE);
    ck_assert_int_eq(snapshot_builder_ip(b, &net), 0);
    struct snapshot *base = snapshot_builder_finish(b, NULL, NULL);
    ck_assert_ptr_nonnull(base);
    /* all but one of the many rows gone: the prefix stays */
    b = snapshot_builder_delta(base, 2, SNAPSHOT_PATCH_IPS);
    for (int32_t id = 2; id <= N; id++)
        ck_assert_int_eq(snapshot_builder_ip_changed(b, id), 0);
    struct snapshot *d = snapshot_builder_finish(b, NULL, NULL);
    ck_assert_ptr_nonnull(d);
    ck_assert(allowed(d, "192.0.2.1"));
    ck_assert(allowed(d, "10.1.1.1"));
    /* and the last one too, with the /8: nothing left */
    b = snapshot_builder_delta(d, 3, SNAPSHOT_PATCH_IPS);
    ck_assert_int_eq(snapshot_builder_ip_changed(b, 1), 0);
    ck_assert_int_eq(snapshot_builder_ip_changed(b, N + 1), 0);
    struct snapshot *d2 = snapshot_builder_finish(b, NULL, NULL);
    ck_assert_ptr_nonnull(d2);
    ck_assert(!allowed(d2, "192.0.2.1"));
    ck_assert(!allowed(d2, "10.1.1.1"));
    ck_assert_uint_eq(snapshot_ip_count(d2), 0);
    ck_assert(allowed(base, "192.0.2.1")); /* the base is untouched */
    snapshot_free(d2);
    snapshot_free(d);
    snapshot_free(base);
}
END_TEST

START_TEST(test_delta_duplicate_slugs)
{
    /* a repeated slug is counted once per read of the providers, not once
     * more at every delta that reads them again */
    struct fake_dns dns = {0};
    struct snapshot_builder *b = snapshot_builder_new(1);
    struct snapshot_provider_row p1 = prov_row(1, "twin", "a.test", SNAPSHOT_TRUE);
    struct snapshot_provider_row p2 = prov_row(2, "twin", "b.test", SNAPSHOT_TRUE);
    struct snapshot_user_row u = user_row(1, "u", "p", SNAPSHOT_TRUE);
    ck_assert_int_eq(snapshot_builder_provider(b, &p1), 0);
    ck_assert_int_eq(snapshot_builder_provider(b, &p2), 0);
    ck_assert_int_eq(snapshot_builder_user(b, &u), 0);
    ck_assert_int_eq(snapshot_builder_user(b, &u), 0); /* a repeated username too */
    struct snapshot *prev = snapshot_builder_finish(b, fake_resolve, &dns);
    ck_assert_ptr_nonnull(prev);
    ck_assert_uint_eq(snapshot_skipped(prev)->duplicate, 2);
    for (int round = 0; round < 3; round++) {
        b = snapshot_builder_delta(prev, 2, SNAPSHOT_REREAD_PROVIDERS);
        ck_assert_int_eq(snapshot_builder_provider(b, &p1), 0);
        ck_assert_int_eq(snapshot_builder_provider(b, &p2), 0);
        struct snapshot *d = snapshot_builder_finish(b, fake_resolve, &dns);
        ck_assert_ptr_nonnull(d);
        ck_assert_uint_eq(snapshot_skipped(d)->duplicate, 2);
        /* a delta that borrows them keeps the count */
        struct snapshot *d2 = delta(d, &u, 1);
        ck_assert_uint_eq(snapshot_skipped(d2)->duplicate, 2);
        snapshot_free(prev);
        snapshot_free(d);
        prev = d2;
    }
    b = snapshot_builder_delta(prev, 3, SNAPSHOT_REREAD_PROVIDERS);
    ck_assert_int_eq(snapshot_builder_provider(b, &p1), 0);
    struct snapshot *d = snapshot_builder_finish(b, fake_resolve, &dns);
    ck_assert_uint_eq(snapshot_skipped(d)->duplicate, 1); /* the slug is no longer repeated */
    snapshot_free(prev);
    snapshot_free(d);
}
END_TEST

START_TEST(test_delta_file)
{
    /* the file of a delta holds the merged users; read back, it is whole */
    struct fake_dns dns = {0};
    struct snapshot *base = demo_snapshot(&dns);
    const struct snapshot_user_row rows[] = {
        user_row(1, "myuser", "changed", SNAPSHOT_TRUE),
        user_row(4, "alice", NULL, SNAPSHOT_FALSE),
        user_row(9, "bob", "bob-pw", SNAPSHOT_TRUE),
    };
    struct snapshot *d = delta(base, rows, 3);
    char err[256];
    size_t len;
    uint8_t *buf = snapshot_file_encode(d, 42, &len);
    ck_assert_ptr_nonnull(buf);
    struct snapshot *t = snapshot_file_parse(buf, len, err, sizeof(err));
    ck_assert_msg(t != NULL, "%s", err);
    ck_assert_uint_eq(snapshot_delta_size(t), 0);
    ck_assert_uint_eq(snapshot_user_count(t), 4);
    ck_assert_str_eq(find(t, "myuser")->password, "changed");
    ck_assert_ptr_null(find(t, "alice"));
    ck_assert_str_eq(find(t, "Alice")->password, "pw-upper");
    ck_assert_str_eq(find(t, "bob")->password, "bob-pw");
    ck_assert_ptr_nonnull(find(t, "hashed"));
    ck_assert(allowed(t, "10.9.9.9"));
    ck_assert_uint_eq(snapshot_provider_count(t), 3);
    free(buf);
    snapshot_free(t);
    snapshot_free(d);
    snapshot_free(base);
}
END_TEST

START_TEST(test_delta_many)
{
    /* a delta over 100,000 users: every lookup agrees with a whole build */
    enum { N = 100000, CHANGED = 3000 };
    struct snapshot_user_row *rows = calloc(N, sizeof(*rows));
    char(*names)[16] = calloc(N + CHANGED, 16);
    ck_assert(rows && names);
    for (int i = 0; i < N; i++) {
        snprintf(names[i], 16, "u%d", i);
        rows[i] = user_row(i + 1, names[i], names[i], SNAPSHOT_TRUE);
    }
    struct snapshot_rows r = {.users = rows, .n_users = N};
    struct snapshot *base = snapshot_build(&r, NULL, NULL);
    ck_assert_ptr_nonnull(base);
    /* every 3rd of the first CHANGED removed, the others' passwords changed,
     * and CHANGED new users */
    struct snapshot_user_row *ch = calloc(2 * CHANGED, sizeof(*ch));
    for (int i = 0; i < CHANGED; i++) {
        ch[i] =
            user_row(i + 1, names[i], i % 3 ? "new" : NULL, i % 3 ? SNAPSHOT_TRUE : SNAPSHOT_FALSE);
        snprintf(names[N + i], 16, "n%d", i);
        ch[CHANGED + i] = user_row(N + i + 1, names[N + i], "fresh", SNAPSHOT_TRUE);
    }
    struct snapshot *d = delta(base, ch, 2 * CHANGED);
    ck_assert_uint_eq(snapshot_user_count(d), N - CHANGED / 3 + CHANGED);
    for (int i = 0; i < N + CHANGED; i++) {
        const struct snap_user *u = find(d, names[i]);
        if (i < CHANGED && i % 3 == 0)
            ck_assert_ptr_null(u);
        else if (i < CHANGED)
            ck_assert_str_eq(u->password, "new");
        else if (i < N)
            ck_assert_str_eq(u->password, names[i]);
        else
            ck_assert_str_eq(u->password, "fresh");
    }
    snapshot_free(d);
    snapshot_free(base);
    free(ch);
    free(names);
    free(rows);
}
END_TEST

START_TEST(test_file_round_trip)
{
    struct fake_dns dns = {0};
    struct snapshot *s = demo_snapshot(&dns);
    make_tmpdir();
    char path[128], err[256];
    snprintf(path, sizeof(path), "%s/snapshot.bin", tmpdir);
    ck_assert_msg(snapshot_file_write(s, path, err, sizeof(err)) == 0, "%s", err);
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_int_eq(sb.st_mode & 0777, 0600); /* credentials inside */
    ck_assert_uint_eq(count_files(), 1);       /* no temporary file left */
    /* overwrite in place: still one file */
    ck_assert_int_eq(snapshot_file_write(s, path, err, sizeof(err)), 0);
    ck_assert_uint_eq(count_files(), 1);

    struct snapshot *t = snapshot_file_read(path, err, sizeof(err));
    ck_assert_msg(t != NULL, "%s", err);
    assert_demo_answers(t);
    ck_assert_int_eq(dns.calls, 2); /* reading the file asked no DNS */

    /* the bytes: header, then valid MessagePack all through */
    size_t len;
    uint8_t *buf = snapshot_file_encode(t, 42, &len);
    ck_assert_ptr_nonnull(buf);
    ck_assert_mem_eq(buf, "\x94\xa6GWSNAP\xce\x00\x00\x00\x02\xcf", 14);
    uint64_t body = 0;
    for (int i = 0; i < 8; i++)
        body = body << 8 | buf[14 + i];
    ck_assert_uint_eq(body, len - SNAPSHOT_FILE_HEADER_LEN);
    uint32_t crc =
        (uint32_t)buf[23] << 24 | (uint32_t)buf[24] << 16 | (uint32_t)buf[25] << 8 | buf[26];
    ck_assert_uint_eq(crc, crc32_ref(buf + SNAPSHOT_FILE_HEADER_LEN, body));
    ck_assert_uint_eq(crc32_ref((const uint8_t *)"123456789", 9), 0xcbf43926u);
    msgpack_unpacked m;
    msgpack_unpacked_init(&m);
    size_t off = 0;
    int objects = 0;
    while (off < len) {
        ck_assert_int_eq(msgpack_unpack_next(&m, (const char *)buf, len, &off),
                         MSGPACK_UNPACK_SUCCESS);
        ck_assert_int_eq(m.data.type, MSGPACK_OBJECT_ARRAY);
        objects++;
    }
    msgpack_unpacked_destroy(&m);
    ck_assert_int_eq(objects, 1 + 1 + 3 + 4 + 4); /* header, meta, rows */

    /* encode(parse(encode(s))) is stable */
    uint8_t *buf2 = snapshot_file_encode(s, 42, &len);
    ck_assert_mem_eq(buf, buf2, len);
    free(buf);
    free(buf2);
    snapshot_free(t);
    snapshot_free(s);
    remove_tmpdir();
}
END_TEST

START_TEST(test_file_keeps_skips)
{
    struct snapshot_ip_row ips[] = {ip_row(1, "bogus", SNAPSHOT_TRUE),
                                    ip_row(2, "192.0.2.0/24", SNAPSHOT_TRUE)};
    struct snapshot_user_row users[] = {user_row(1, "", "x", SNAPSHOT_TRUE)};
    struct snapshot_rows r = {users, 1, ips, 2, NULL, 0, 5};
    struct snapshot *s = snapshot_build(&r, fake_resolve, &(struct fake_dns){0});
    size_t len;
    char err[256];
    void *buf = snapshot_file_encode(s, 6, &len);
    struct snapshot *t = snapshot_file_parse(buf, len, err, sizeof(err));
    ck_assert_msg(t != NULL, "%s", err);
    ck_assert_uint_eq(snapshot_skipped(t)->bad_cidr, 1);
    ck_assert_uint_eq(snapshot_skipped(t)->bad_user, 1);
    ck_assert_uint_eq(snapshot_user_count(t), 0);
    ck_assert(allowed(t, "192.0.2.200"));
    free(buf);
    snapshot_free(t);
    snapshot_free(s);
}
END_TEST

START_TEST(test_file_truncated)
{
    struct fake_dns dns = {0};
    struct snapshot *s = demo_snapshot(&dns);
    size_t len;
    uint8_t *buf = snapshot_file_encode(s, 1, &len);
    char err[256];
    for (size_t n = 0; n < len; n++) {
        uint8_t *copy = malloc(n ? n : 1); /* exact size: ASan sees any overread */
        memcpy(copy, buf, n);
        err[0] = '\0';
        ck_assert_msg(snapshot_file_parse(copy, n, err, sizeof(err)) == NULL, "%zu bytes", n);
        ck_assert_msg(strstr(err, n == 0 ? "empty" : "truncated") != NULL, "%zu: %s", n, err);
        free(copy);
    }
    snapshot_free(s);
    free(buf);
}
END_TEST

/* Rewrites the header's length and CRC for the body as it now is. */
static void fix_header(uint8_t *buf, size_t len)
{
    uint64_t body = len - SNAPSHOT_FILE_HEADER_LEN;
    for (int i = 0; i < 8; i++)
        buf[14 + i] = (uint8_t)(body >> (56 - 8 * i));
    uint32_t crc = crc32_ref(buf + SNAPSHOT_FILE_HEADER_LEN, body);
    for (int i = 0; i < 4; i++)
        buf[23 + i] = (uint8_t)(crc >> (24 - 8 * i));
}

START_TEST(test_file_corrupt)
{
    struct fake_dns dns = {0};
    struct snapshot *s = demo_snapshot(&dns);
    size_t len;
    uint8_t *buf = snapshot_file_encode(s, 1, &len);
    uint8_t *copy = malloc(len + 16);
    char err[256];

    /* any flipped bit is refused: the header's fields or the CRC */
    for (size_t i = 0; i < len; i++) {
        memcpy(copy, buf, len);
        copy[i] ^= 0x10;
        ck_assert_msg(snapshot_file_parse(copy, len, err, sizeof(err)) == NULL, "byte %zu", i);
        if (i >= SNAPSHOT_FILE_HEADER_LEN)
            ck_assert_msg(strstr(err, "CRC") != NULL, "byte %zu: %s", i, err);
    }
    /* wrong version */
    memcpy(copy, buf, len);
    copy[12] = 3;
    ck_assert_ptr_null(snapshot_file_parse(copy, len, err, sizeof(err)));
    ck_assert_str_eq(err, "unsupported snapshot file version 3 (this agent reads versions 1 to 2)");
    /* not ours */
    memcpy(copy, "\x94\xa6GWSNAQ", 8);
    ck_assert_ptr_null(snapshot_file_parse(copy, len, err, sizeof(err)));
    ck_assert_msg(strstr(err, "not a gw-agent snapshot file") != NULL, "%s", err);
    /* trailing bytes */
    memcpy(copy, buf, len);
    memcpy(copy + len, "extra", 5);
    ck_assert_ptr_null(snapshot_file_parse(copy, len + 5, err, sizeof(err)));
    ck_assert_msg(strstr(err, "after the announced end") != NULL, "%s", err);

    /* damage with a valid CRC: the structure is checked as well */
    memcpy(copy, buf, len);
    memcpy(copy + len, "\x93\x01\xa1x\xa1y", 6); /* one user row more than announced */
    fix_header(copy, len + 6);
    ck_assert_ptr_null(snapshot_file_parse(copy, len + 6, err, sizeof(err)));
    ck_assert_msg(strstr(err, "after the last row") != NULL, "%s", err);
    for (size_t cut = SNAPSHOT_FILE_HEADER_LEN; cut < len; cut++) {
        uint8_t *c = malloc(cut);
        memcpy(c, buf, cut);
        fix_header(c, cut); /* a shorter body with a matching header */
        ck_assert_msg(snapshot_file_parse(c, cut, err, sizeof(err)) == NULL, "cut %zu", cut);
        ck_assert_msg(strstr(err, "corrupt at byte") != NULL, "cut %zu: %s", cut, err);
        free(c);
    }
    /* huge counts and lengths are refused before any allocation */
    static const uint8_t body[] = {0x96, 0x00, 0x00, 0xce, 0xff, 0xff, 0xff, 0xff, 0x00,
                                   0x00, 0x97, 0,    0,    0,    0,    0,    0,    0};
    memcpy(copy, buf, SNAPSHOT_FILE_HEADER_LEN);
    memcpy(copy + SNAPSHOT_FILE_HEADER_LEN, body, sizeof(body));
    fix_header(copy, SNAPSHOT_FILE_HEADER_LEN + sizeof(body));
    ck_assert_ptr_null(
        snapshot_file_parse(copy, SNAPSHOT_FILE_HEADER_LEN + sizeof(body), err, sizeof(err)));
    ck_assert_msg(strstr(err, "provider count") != NULL, "%s", err);
    free(copy);
    free(buf);
    snapshot_free(s);
}
END_TEST

START_TEST(test_file_read_errors)
{
    char err[256], path[128];
    make_tmpdir();
    snprintf(path, sizeof(path), "%s/missing.bin", tmpdir);
    ck_assert_ptr_null(snapshot_file_read(path, err, sizeof(err)));
    ck_assert_msg(strstr(err, "No such file") != NULL, "%s", err);
    ck_assert_ptr_null(snapshot_file_read(tmpdir, err, sizeof(err)));
    snprintf(path, sizeof(path), "%s/empty.bin", tmpdir);
    write_bytes(path, "", 0);
    ck_assert_ptr_null(snapshot_file_read(path, err, sizeof(err)));
    ck_assert_msg(strstr(err, "empty file") != NULL && strstr(err, path) != NULL, "%s", err);
    /* writing into a directory that does not exist fails cleanly */
    struct snapshot_rows r = {0};
    struct snapshot *s = snapshot_build(&r, fake_resolve, &(struct fake_dns){0});
    snprintf(path, sizeof(path), "%s/no/such/dir/snapshot.bin", tmpdir);
    ck_assert_int_eq(snapshot_file_write(s, path, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "cannot create") != NULL, "%s", err);
    /* an empty snapshot round-trips */
    snprintf(path, sizeof(path), "%s/zero.bin", tmpdir);
    ck_assert_int_eq(snapshot_file_write(s, path, err, sizeof(err)), 0);
    struct snapshot *t = snapshot_file_read(path, err, sizeof(err));
    ck_assert_msg(t != NULL, "%s", err);
    ck_assert_uint_eq(snapshot_user_count(t) + snapshot_ip_count(t) + snapshot_provider_count(t),
                      0);
    snapshot_free(t);
    snapshot_free(s);
    remove_tmpdir();
}
END_TEST

/* --- the store ---------------------------------------------------------------------------- */

static struct snapshot *one_user(const char *name, const char *pw)
{
    struct snapshot_user_row u = user_row(1, name, pw, SNAPSHOT_TRUE);
    struct snapshot_rows r = {.users = &u, .n_users = 1};
    struct snapshot *s = snapshot_build(&r, fake_resolve, &(struct fake_dns){0});
    ck_assert_ptr_nonnull(s);
    return s;
}

START_TEST(test_store_static)
{
    struct snapshot *a = one_user("a", "1");
    struct snapshot_store *st = snapshot_store_new_static(a);
    struct snapshot_ref ref = {0};
    const struct snapshot *s = snapshot_store_current(st, &ref);
    ck_assert_ptr_eq(s, a);
    ck_assert_ptr_eq(snapshot_store_current(st, &ref), a); /* fast path: same */
    ck_assert_ptr_null(snapshot_store_new_static(NULL));
    struct snapshot_store_status status;
    snapshot_store_status(st, &status);
    ck_assert_uint_eq(status.generation, 1);
    ck_assert(!status.from_disk);

    struct snapshot *b = one_user("b", "2");
    snapshot_store_publish(st, b);
    snapshot_store_status(st, &status);
    ck_assert_uint_eq(status.generation, 2);
    /* the ref still holds a until it asks again; the store keeps it too */
    ck_assert_uint_eq(atomic_load(&a->refs), 2);
    ck_assert_uint_eq(snapshot_store_reap(st), 1);
    ck_assert_ptr_nonnull(find(s, "a"));
    s = snapshot_store_current(st, &ref);
    ck_assert_ptr_eq(s, b);
    ck_assert_ptr_nonnull(find(s, "b"));
    ck_assert_uint_eq(atomic_load(&b->refs), 2); /* store + ref */
    /* the ref let go of a without freeing it: the store does, when reaping */
    ck_assert_uint_eq(atomic_load(&a->refs), 1);
    ck_assert_uint_eq(snapshot_store_reap(st), 0);
    ck_assert_ptr_null(st->retired);
    snapshot_ref_release(&ref);
    ck_assert_ptr_null(ref.snap);
    ck_assert_uint_eq(atomic_load(&b->refs), 1);
    snapshot_ref_release(&ref); /* twice is harmless */
    snapshot_store_stop(st);
}
END_TEST

struct swap_ctx {
    struct snapshot_store *st;
    sem_t holding, published;
    bool old_still_answers, new_seen;
};

static void *swap_reader(void *arg)
{
    struct swap_ctx *c = arg;
    struct snapshot_ref ref = {0};
    const struct snapshot *s = snapshot_store_current(c->st, &ref);
    bool had_a = find(s, "a") != NULL;
    sem_post(&c->holding);
    sem_wait(&c->published);
    /* b is published; the snapshot this thread holds must still be whole */
    c->old_still_answers = had_a && find(s, "a") != NULL &&
                           strcmp(find(s, "a")->password, "1") == 0 && find(s, "b") == NULL;
    s = snapshot_store_current(c->st, &ref);
    c->new_seen = find(s, "b") != NULL && find(s, "a") == NULL;
    snapshot_ref_release(&ref);
    return NULL;
}

START_TEST(test_store_swap_two_threads)
{
    struct swap_ctx c = {.st = snapshot_store_new_static(one_user("a", "1"))};
    sem_init(&c.holding, 0, 0);
    sem_init(&c.published, 0, 0);
    pthread_t t;
    pthread_create(&t, NULL, swap_reader, &c);
    sem_wait(&c.holding);
    struct snapshot *old = c.st->current;
    snapshot_store_publish(c.st, one_user("b", "2"));
    /* retired: the store and the reader's ref hold it */
    ck_assert_uint_eq(atomic_load(&old->refs), 2);
    ck_assert_ptr_eq(c.st->retired, old);
    sem_post(&c.published);
    pthread_join(t, NULL);
    ck_assert(c.old_still_answers);
    ck_assert(c.new_seen);
    /* the reader moved on and let go; the store frees a when reaping */
    ck_assert_uint_eq(atomic_load(&old->refs), 1);
    ck_assert_uint_eq(snapshot_store_reap(c.st), 0);
    ck_assert_ptr_null(c.st->retired);
    sem_destroy(&c.holding);
    sem_destroy(&c.published);
    snapshot_store_stop(c.st);
}
END_TEST

START_TEST(test_store_reap_deltas)
{
    /* deltas hold their whole snapshot: it is freed once they are, in the
     * same reap; a reader's ref keeps a delta and, through it, its base */
    struct snapshot *whole = one_user("a", "1");
    struct snapshot_store *st = snapshot_store_new_static(whole);
    const struct snapshot_user_row b = user_row(2, "b", "2", SNAPSHOT_TRUE);
    const struct snapshot_user_row c = user_row(3, "c", "3", SNAPSHOT_TRUE);
    struct snapshot *d1 = delta(whole, &b, 1);
    snapshot_store_publish(st, d1);
    struct snapshot_ref ref = {0};
    ck_assert_ptr_eq(snapshot_store_current(st, &ref), d1);
    struct snapshot *d2 = delta(d1, &c, 1);
    snapshot_store_publish(st, d2);
    snapshot_store_publish(st, one_user("z", "9"));
    /* the ref holds d1, d1 holds whole; d2 was freed as it was replaced */
    ck_assert_uint_eq(snapshot_store_reap(st), 2);
    ck_assert_ptr_nonnull(find(d1, "a"));
    ck_assert_ptr_nonnull(find(d1, "b"));
    ck_assert_ptr_nonnull(find(snapshot_store_current(st, &ref), "z"));
    ck_assert_uint_eq(snapshot_store_reap(st), 0);
    ck_assert_ptr_null(st->retired);
    snapshot_ref_release(&ref);
    snapshot_store_stop(st);
}
END_TEST

START_TEST(test_store_free_retired)
{
    /* stopping the store frees what it still holds, whoever let go last */
    struct snapshot_store *st = snapshot_store_new_static(one_user("a", "1"));
    struct snapshot_ref ref = {0};
    snapshot_store_current(st, &ref);
    snapshot_store_publish(st, one_user("b", "2"));
    snapshot_store_publish(st, one_user("c", "3"));
    ck_assert_uint_eq(snapshot_store_reap(st), 1);
    snapshot_ref_release(&ref);
    snapshot_store_stop(st); /* ASan: nothing leaks */
}
END_TEST

struct churn_ctx {
    struct snapshot_store *st;
    atomic_bool done;
    long reads, errors;
};

static void *churn_reader(void *arg)
{
    struct churn_ctx *c = arg;
    struct snapshot_ref ref = {0};
    long last = 0;
    while (!atomic_load(&c->done)) {
        const struct snapshot *s = snapshot_store_current(c->st, &ref);
        const struct snap_user *u = find(s, "u");
        long v = u != NULL ? strtol(u->password, NULL, 10) : -1;
        if (v < last) c->errors++; /* generations only move forward */
        last = v;
        c->reads++;
    }
    snapshot_ref_release(&ref);
    return NULL;
}

START_TEST(test_store_churn)
{
    struct churn_ctx c = {.st = snapshot_store_new_static(one_user("u", "0"))};
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, churn_reader, &c);
    char pw[16];
    for (int i = 1; i <= 300; i++) {
        snprintf(pw, sizeof(pw), "%d", i);
        snapshot_store_publish(c.st, one_user("u", pw));
    }
    atomic_store(&c.done, true);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    ck_assert_int_eq(c.errors, 0);
    ck_assert_int_gt(c.reads, 0);
    struct snapshot_store_status status;
    snapshot_store_status(c.st, &status);
    ck_assert_uint_eq(status.generation, 301);
    snapshot_store_stop(c.st);
}
END_TEST

/* PostgreSQL on a port where nothing listens: refused at once. */
#define NO_PG "postgresql://gw@127.0.0.1:1/gw?connect_timeout=2"

START_TEST(test_start_without_anything)
{
    struct snapshot_store_config cfg = {.postgres_uri = NO_PG, .refresh_s = 1};
    ck_assert_ptr_null(snapshot_store_start(&cfg));
    cfg.postgres_uri = NULL;
    ck_assert_ptr_null(snapshot_store_start(&cfg));
    make_tmpdir();
    char path[128];
    snprintf(path, sizeof(path), "%s/absent.bin", tmpdir);
    cfg.postgres_uri = NO_PG;
    cfg.snapshot_path = path;
    ck_assert_ptr_null(snapshot_store_start(&cfg));
    write_bytes(path, "\x94\xa6GWSNAP\xce\x00\x00\x00\x01", 13); /* truncated */
    ck_assert_ptr_null(snapshot_store_start(&cfg));
    remove_tmpdir();
}
END_TEST

START_TEST(test_start_from_file)
{
    struct fake_dns dns = {0};
    struct snapshot *s = demo_snapshot(&dns);
    make_tmpdir();
    char path[128], err[256];
    snprintf(path, sizeof(path), "%s/snap.bin", tmpdir);
    ck_assert_int_eq(snapshot_file_write(s, path, err, sizeof(err)), 0);
    snapshot_free(s);
    struct snapshot_store_config cfg = {
        .postgres_uri = NO_PG, .refresh_s = 1, .snapshot_path = path, .connect_timeout_s = 1};
    struct snapshot_store *st = snapshot_store_start(&cfg);
    ck_assert_ptr_nonnull(st);
    struct snapshot_store_status status;
    snapshot_store_status(st, &status);
    ck_assert(status.from_disk);
    ck_assert(!status.postgres_ok);
    ck_assert_uint_eq(status.loads_ok, 0);
    ck_assert_uint_ge(status.loads_failed, 1);
    ck_assert_int_eq(status.last_ok_ms, 0);
    struct snapshot_ref ref = {0};
    assert_demo_answers(snapshot_store_current(st, &ref));
    /* the loader keeps trying (and failing) in the background; the file
     * is not rewritten from a failed load */
    usleep(1200 * 1000);
    snapshot_store_status(st, &status);
    ck_assert_uint_ge(status.loads_failed, 2);
    ck_assert(status.from_disk);
    ck_assert_uint_eq(status.generation, 1);
    snapshot_ref_release(&ref);
    snapshot_store_stop(st); /* wakes the thread out of its back-off */
    remove_tmpdir();
}
END_TEST

Suite *snapshot_suite(void)
{
    Suite *s = suite_create("snapshot");
    TCase *tc = tcase_create("build");
    tcase_add_test(tc, test_user_lookup);
    tcase_add_test(tc, test_hash_prefixes);
    tcase_add_test(tc, test_is_active);
    tcase_add_test(tc, test_provider_defaults);
    tcase_add_test(tc, test_provider_fields);
    tcase_add_test(tc, test_provider_split_sorted);
    tcase_add_loop_test(tc, test_base_url_forms, 0, sizeof(base_urls) / sizeof(base_urls[0]));
    tcase_add_test(tc, test_skip_reasons);
    tcase_add_test(tc, test_whitelist_families);
    tcase_add_test(tc, test_many_users);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("delta");
    tcase_add_test(tc, test_delta_changes);
    tcase_add_test(tc, test_delta_on_delta);
    tcase_add_test(tc, test_delta_bad_rows);
    tcase_add_test(tc, test_delta_new_lists);
    tcase_add_test(tc, test_delta_patch_ips);
    tcase_add_test(tc, test_delta_patch_ips_rebuild);
    tcase_add_test(tc, test_delta_duplicate_slugs);
    tcase_add_test(tc, test_delta_file);
    tcase_add_test(tc, test_delta_many);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("file");
    tcase_add_test(tc, test_file_round_trip);
    tcase_add_test(tc, test_file_keeps_skips);
    tcase_add_test(tc, test_file_truncated);
    tcase_add_test(tc, test_file_corrupt);
    tcase_add_test(tc, test_file_read_errors);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("store");
    tcase_add_test(tc, test_store_static);
    tcase_add_test(tc, test_store_swap_two_threads);
    tcase_add_test(tc, test_store_churn);
    tcase_add_test(tc, test_store_reap_deltas);
    tcase_add_test(tc, test_store_free_retired);
    tcase_add_test(tc, test_start_without_anything);
    tcase_add_test(tc, test_start_from_file);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}
