/*
 * Unit tests for agent/gw/iptrie.c: CIDR parsing, longest-prefix matching at
 * boundaries, IPv4-mapped addresses, and a randomized cross-check against a
 * linear scan, at the whitelist's 100,000-entry scale.
 */
#include <arpa/inet.h>
#include <check.h>
#include <string.h>

#include "iptrie.h"

extern Suite *iptrie_suite(void);

#define LIT(s) s, sizeof(s) - 1

static const struct {
    const char *in;
    size_t len;
    int family;
    const char *addr; /* canonical text of the masked address */
    unsigned plen;
    bool host_bits;
} parsed[] = {
    {LIT("1.2.3.4"), AF_INET, "1.2.3.4", 32, false},
    {LIT("203.0.113.50"), AF_INET, "203.0.113.50", 32, false},
    {LIT("10.0.0.0/8"), AF_INET, "10.0.0.0", 8, false},
    {LIT("0.0.0.0/0"), AF_INET, "0.0.0.0", 0, false},
    {LIT("255.255.255.255/32"), AF_INET, "255.255.255.255", 32, false},
    {LIT("10.1.2.3/8"), AF_INET, "10.0.0.0", 8, true},
    {LIT("10.1.2.3/0"), AF_INET, "0.0.0.0", 0, true},
    {LIT("192.168.1.255/25"), AF_INET, "192.168.1.128", 25, true},
    {LIT("192.168.1.128/25"), AF_INET, "192.168.1.128", 25, false},
    {LIT("1.2.3.4/008"), AF_INET, "1.0.0.0", 8, true},
    {LIT(" 10.0.0.0/8\t"), AF_INET, "10.0.0.0", 8, false},
    {LIT("2001:db8::/32"), AF_INET6, "2001:db8::", 32, false},
    {LIT("::1"), AF_INET6, "::1", 128, false},
    {LIT("::/0"), AF_INET6, "::", 0, false},
    {LIT("2001:DB8:0:0:0:0:0:1/128"), AF_INET6, "2001:db8::1", 128, false},
    {LIT("2001:db8::1/64"), AF_INET6, "2001:db8::", 64, true},
    {LIT("2001:db8:ffff::/33"), AF_INET6, "2001:db8:8000::", 33, true},
    {LIT("fe80::/10"), AF_INET6, "fe80::", 10, false},
    /* IPv4-mapped prefixes of length >= 96 are IPv4 prefixes */
    {LIT("::ffff:1.2.3.4"), AF_INET, "1.2.3.4", 32, false},
    {LIT("::ffff:10.0.0.0/104"), AF_INET, "10.0.0.0", 8, false},
    {LIT("::ffff:0:0/96"), AF_INET, "0.0.0.0", 0, false},
    {LIT("::ffff:10.9.9.9/104"), AF_INET, "10.0.0.0", 8, true},
    {LIT("::ffff:0:0/95"), AF_INET6, "::fffe:0:0", 95, true},
    {LIT("::1.2.3.4"), AF_INET6, "::1.2.3.4", 128, false},
};

START_TEST(test_parse_ok)
{
    struct ip_prefix p;
    char text[INET6_ADDRSTRLEN];
    ck_assert_msg(iptrie_parse_cidr(parsed[_i].in, parsed[_i].len, &p) == 0, "'%s' refused",
                  parsed[_i].in);
    ck_assert_int_eq(p.family, parsed[_i].family);
    ck_assert_uint_eq(p.len, parsed[_i].plen);
    ck_assert(p.host_bits_set == parsed[_i].host_bits);
    ck_assert_ptr_nonnull(inet_ntop(p.family, p.addr, text, sizeof(text)));
    ck_assert_str_eq(text, parsed[_i].addr);
    if (p.family == AF_INET) {
        static const uint8_t zero[12];
        ck_assert(memcmp(p.addr + 4, zero, 12) == 0);
    }
}
END_TEST

static const struct {
    const char *in;
    size_t len;
} unparsable[] = {
    {LIT("")},
    {LIT("   ")},
    {LIT("1.2.3")},
    {LIT("1.2.3.4.5")},
    {LIT("256.1.1.1")},
    {LIT("1.2.3.-1")},
    {LIT("01.2.3.4")},
    {LIT("0x1.2.3.4")},
    {LIT("1.2.3.4/33")},
    {LIT("1.2.3.4/100")},
    {LIT("::/129")},
    {LIT("::1/999")},
    {LIT("1.2.3.4/")},
    {LIT("/8")},
    {LIT("1.2.3.4/-1")},
    {LIT("1.2.3.4/+8")},
    {LIT("1.2.3.4/ 8")},
    {LIT("1.2.3.4 /8")},
    {LIT("1.2.3.4/8 x")},
    {LIT("1.2.3.4/0008")},
    {LIT("1.2.3.4/8/9")},
    {LIT("1.2.3.4/8a")},
    {LIT("fe80::1%eth0")},
    {LIT("::1::2")},
    {LIT("gggg::")},
    {LIT("2001:db8::/")},
    {LIT("localhost")},
    {LIT("1.2.3.4\0")},
    {LIT("1.2.3.4\0/8")},
    {LIT("1111:2222:3333:4444:5555:6666:7777:8888:9999/128")},
    {LIT("1.2.3.4/8xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")},
    {LIT("0000000000000000000000000000000000000000000000000000000000000000001.2.3.4")},
};

START_TEST(test_parse_refused)
{
    struct ip_prefix p;
    memset(&p, 0x5a, sizeof(p));
    ck_assert_msg(iptrie_parse_cidr(unparsable[_i].in, unparsable[_i].len, &p) == -1,
                  "'%s' accepted", unparsable[_i].in);
    ck_assert_int_eq(p.len, 0x5a); /* untouched */
}
END_TEST

static struct iptrie *build(const char *const *cidrs, size_t n)
{
    struct iptrie *t = iptrie_new();
    ck_assert_ptr_nonnull(t);
    for (size_t i = 0; i < n; i++) {
        struct ip_prefix p;
        ck_assert_msg(iptrie_parse_cidr(cidrs[i], strlen(cidrs[i]), &p) == 0, "%s", cidrs[i]);
        ck_assert_int_eq(iptrie_insert(t, &p, (uint32_t)(i + 1)), 0);
    }
    return t;
}

/* The id of the longest match for a textual address, 0 when none. */
static uint32_t lookup(const struct iptrie *t, const char *addr)
{
    uint8_t a[16];
    uint32_t id = 0;
    int family = strchr(addr, ':') ? AF_INET6 : AF_INET;
    ck_assert_int_eq(inet_pton(family, addr, a), 1);
    bool hit = iptrie_match(t, family, a, &id);
    ck_assert(hit == (id != 0));
    return hit ? id : 0;
}

static const char *const whitelist[] = {
    /* 1 */ "10.0.0.0/8",
    /* 2 */ "10.1.0.0/16",
    /* 3 */ "10.1.2.0/24",
    /* 4 */ "10.1.2.3/32",
    /* 5 */ "203.0.113.50",
    /* 6 */ "192.168.0.0/23",
    /* 7 */ "2001:db8::/32",
    /* 8 */ "2001:db8:1::/48",
    /* 9 */ "::1",
    /* 10 */ "::ffff:172.16.0.0/108",
    /* 11 */ "128.0.0.0/1",
    /* 12 */ "fe80::/10",
};

static const struct {
    const char *addr;
    uint32_t id;
} matches[] = {
    {"10.0.0.0", 1},
    {"10.255.255.255", 1},
    {"9.255.255.255", 0},
    {"11.0.0.0", 0},
    {"10.1.0.0", 2},
    {"10.1.255.255", 2},
    {"10.0.255.255", 1},
    {"10.2.0.0", 1},
    {"10.1.2.0", 3},
    {"10.1.2.2", 3},
    {"10.1.2.3", 4},
    {"10.1.2.4", 3},
    {"10.1.2.255", 3},
    {"10.1.3.0", 2},
    {"203.0.113.50", 5},
    {"203.0.113.49", 11},
    {"203.0.113.51", 11},
    {"192.168.0.0", 6},
    {"192.168.1.255", 6},
    {"192.168.2.0", 11},
    {"192.167.255.255", 11},
    {"127.0.0.1", 0},
    {"0.0.0.0", 0},
    {"127.255.255.255", 0},
    {"128.0.0.0", 11},
    {"255.255.255.255", 11},
    {"172.16.0.0", 10},
    {"172.31.255.255", 10},
    {"172.32.0.0", 11},
    {"172.15.255.255", 11},
    /* mapped clients match IPv4 entries */
    {"::ffff:10.1.2.3", 4},
    {"::ffff:10.9.9.9", 1},
    {"::ffff:172.20.1.1", 10},
    {"::ffff:127.0.0.1", 0},
    {"2001:db8::", 7},
    {"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 7},
    {"2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", 0},
    {"2001:db9::", 0},
    {"2001:db8:1::1", 8},
    {"2001:db8:1:ffff:ffff:ffff:ffff:ffff", 8},
    {"2001:db8:2::", 7},
    {"::1", 9},
    {"::2", 0},
    {"::", 0},
    {"fe80::1", 12},
    {"febf:ffff::", 12},
    {"fec0::", 0},
    /* the IPv4-compatible (not mapped) form is plain IPv6 */
    {"::10.1.2.3", 0},
};

START_TEST(test_match)
{
    struct iptrie *t = build(whitelist, sizeof(whitelist) / sizeof(whitelist[0]));
    ck_assert_uint_eq(iptrie_count(t), sizeof(whitelist) / sizeof(whitelist[0]));
    for (size_t i = 0; i < sizeof(matches) / sizeof(matches[0]); i++)
        ck_assert_msg(lookup(t, matches[i].addr) == matches[i].id, "%s: got %u, want %u",
                      matches[i].addr, lookup(t, matches[i].addr), matches[i].id);
    iptrie_free(t);
}
END_TEST

START_TEST(test_match_order_independent)
{
    /* The same entries inserted in reverse give the same answers. */
    size_t n = sizeof(whitelist) / sizeof(whitelist[0]);
    const char *rev[sizeof(whitelist) / sizeof(whitelist[0])];
    for (size_t i = 0; i < n; i++)
        rev[i] = whitelist[n - 1 - i];
    struct iptrie *t = build(rev, n);
    for (size_t i = 0; i < sizeof(matches) / sizeof(matches[0]); i++) {
        uint32_t want = matches[i].id == 0 ? 0 : (uint32_t)(n + 1 - matches[i].id);
        ck_assert_msg(lookup(t, matches[i].addr) == want, "%s", matches[i].addr);
    }
    iptrie_free(t);
}
END_TEST

START_TEST(test_match_all_and_host)
{
    static const char *const v4all[] = {"0.0.0.0/0"};
    static const char *const v6all[] = {"::/0"};
    static const char *const hosts[] = {"255.255.255.255", "0.0.0.0",
                                        "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"};
    struct iptrie *t = build(v4all, 1);
    ck_assert_uint_eq(lookup(t, "1.2.3.4"), 1);
    ck_assert_uint_eq(lookup(t, "0.0.0.0"), 1);
    ck_assert_uint_eq(lookup(t, "255.255.255.255"), 1);
    ck_assert_uint_eq(lookup(t, "::ffff:1.2.3.4"), 1);
    ck_assert_uint_eq(lookup(t, "::1"), 0);
    ck_assert_uint_eq(lookup(t, "2001:db8::1"), 0);
    iptrie_free(t);

    t = build(v6all, 1);
    ck_assert_uint_eq(lookup(t, "::1"), 1);
    ck_assert_uint_eq(lookup(t, "2001:db8::1"), 1);
    ck_assert_uint_eq(lookup(t, "1.2.3.4"), 0);
    ck_assert_uint_eq(lookup(t, "::ffff:1.2.3.4"), 0);
    iptrie_free(t);

    t = build(hosts, 4);
    ck_assert_uint_eq(lookup(t, "255.255.255.255"), 1);
    ck_assert_uint_eq(lookup(t, "255.255.255.254"), 0);
    ck_assert_uint_eq(lookup(t, "0.0.0.0"), 2);
    ck_assert_uint_eq(lookup(t, "0.0.0.1"), 0);
    ck_assert_uint_eq(lookup(t, "::"), 3);
    ck_assert_uint_eq(lookup(t, "::1"), 0);
    ck_assert_uint_eq(lookup(t, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), 4);
    ck_assert_uint_eq(lookup(t, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"), 0);
    iptrie_free(t);
}
END_TEST

START_TEST(test_edge_cases)
{
    struct iptrie *t = iptrie_new();
    struct ip_prefix p;
    uint8_t a[16] = {10, 0, 0, 1};
    uint32_t id = 77;

    /* empty trie */
    ck_assert(!iptrie_match(t, AF_INET, a, &id));
    ck_assert_uint_eq(id, 77);
    ck_assert_uint_eq(iptrie_count(t), 0);

    /* duplicates keep the first id and count once */
    ck_assert_int_eq(iptrie_parse_cidr("10.0.0.0/8", 10, &p), 0);
    ck_assert_int_eq(iptrie_insert(t, &p, 5), 0);
    ck_assert_int_eq(iptrie_insert(t, &p, 6), 0);
    ck_assert_int_eq(iptrie_parse_cidr("10.9.9.9/8", 10, &p), 0);
    ck_assert_int_eq(iptrie_insert(t, &p, 7), 0);
    ck_assert_uint_eq(iptrie_count(t), 1);
    ck_assert(iptrie_match(t, AF_INET, a, &id));
    ck_assert_uint_eq(id, 5);
    ck_assert(iptrie_match(t, AF_INET, a, NULL));

    /* invalid prefixes and families are refused */
    p.family = AF_INET;
    p.len = 33;
    ck_assert_int_eq(iptrie_insert(t, &p, 1), -1);
    p.family = AF_INET6;
    p.len = 129;
    ck_assert_int_eq(iptrie_insert(t, &p, 1), -1);
    p.family = AF_UNIX;
    p.len = 8;
    ck_assert_int_eq(iptrie_insert(t, &p, 1), -1);
    ck_assert_int_eq(iptrie_insert(t, NULL, 1), -1);
    ck_assert_int_eq(iptrie_insert(NULL, &p, 1), -1);
    ck_assert_uint_eq(iptrie_count(t), 1);
    ck_assert(!iptrie_match(t, AF_UNIX, a, &id));
    ck_assert(!iptrie_match(t, AF_INET, NULL, &id));
    ck_assert(!iptrie_match(NULL, AF_INET, a, &id));
    ck_assert_int_eq(iptrie_parse_cidr(NULL, 3, &p), -1);
    iptrie_free(t);
    iptrie_free(NULL);
    ck_assert_uint_eq(iptrie_count(NULL), 0);
}
END_TEST

/* xorshift64*: reproducible test data. */
static uint64_t rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dull;
}

struct entry {
    struct ip_prefix p;
    uint32_t id;
};

static bool prefix_has(const struct ip_prefix *p, int family, const uint8_t *a)
{
    if (p->family != family) return false;
    unsigned full = p->len / 8, rest = p->len % 8;
    if (memcmp(p->addr, a, full) != 0) return false;
    if (rest == 0) return true;
    uint8_t m = (uint8_t)(0xff << (8 - rest));
    return (p->addr[full] & m) == (a[full] & m);
}

/* The reference answer: longest match by linear scan, first id on ties. */
static uint32_t linear(const struct entry *e, size_t n, int family, const uint8_t *a)
{
    int best_len = -1;
    uint32_t best = 0;
    for (size_t i = 0; i < n; i++) {
        if (prefix_has(&e[i].p, family, a) && (int)e[i].p.len > best_len) {
            best_len = e[i].p.len;
            best = e[i].id;
        }
    }
    return best;
}

/* A random prefix drawn near a few hot spots, so prefixes nest and overlap. */
static void random_prefix(uint64_t *s, struct ip_prefix *p)
{
    uint64_t r = rnd(s);
    memset(p, 0, sizeof(*p));
    p->family = (r & 1) ? AF_INET6 : AF_INET;
    unsigned width = p->family == AF_INET ? 32 : 128;
    uint64_t hi = rnd(s), lo = rnd(s);
    /* hot spots: top byte from a small set */
    hi = (hi & 0x00ffffffffffffffull) | ((uint64_t)(r >> 8 & 3) << 62);
    for (int i = 0; i < 8; i++) {
        p->addr[i] = (uint8_t)(hi >> (56 - 8 * i));
        p->addr[8 + i] = (uint8_t)(lo >> (56 - 8 * i));
    }
    if (p->family == AF_INET) memset(p->addr + 4, 0, 12);
    p->len = (uint8_t)((r >> 16) % (width + 1));
    /* clear bits past len */
    for (unsigned b = p->len; b < width; b++)
        p->addr[b / 8] &= (uint8_t) ~(0x80 >> (b % 8));
}

START_TEST(test_random_against_linear)
{
    enum { NPREFIX = 3000, NLOOKUP = 20000 };
    static struct entry e[NPREFIX];
    uint64_t s = 0x1234567u;
    struct iptrie *t = iptrie_new();
    size_t n = 0;
    for (size_t i = 0; i < NPREFIX; i++) {
        random_prefix(&s, &e[n].p);
        e[n].id = (uint32_t)(i + 1);
        ck_assert_int_eq(iptrie_insert(t, &e[n].p, e[n].id), 0);
        n++;
    }
    size_t hits = 0;
    for (size_t i = 0; i < NLOOKUP; i++) {
        struct ip_prefix q;
        uint8_t a[16];
        random_prefix(&s, &q);
        /* a random address under a random prefix: hits are common */
        memcpy(a, q.addr, 16);
        uint64_t r = rnd(&s);
        unsigned width = q.family == AF_INET ? 32 : 128;
        for (unsigned b = q.len; b < width; b++)
            if ((r >> (b % 64)) & 1) a[b / 8] |= (uint8_t)(0x80 >> (b % 8));
        if (i % 2 == 0) {
            const struct entry *pick = &e[rnd(&s) % n];
            memcpy(a, pick->p.addr, 16);
            q.family = pick->p.family;
        }
        uint32_t want = linear(e, n, q.family, a), got = 0;
        bool hit = iptrie_match(t, q.family, a, &got);
        ck_assert_uint_eq(hit ? got : 0, want);
        hits += hit;
    }
    ck_assert_uint_gt(hits, NLOOKUP / 3);
    iptrie_free(t);
}
END_TEST

/* A random address: under a live entry's prefix half the time. */
static int random_addr(uint64_t *s, const struct entry *live, size_t n, uint8_t a[16])
{
    struct ip_prefix q;
    random_prefix(s, &q);
    memcpy(a, q.addr, 16);
    if (n > 0 && rnd(s) % 2 == 0) {
        const struct entry *pick = &live[rnd(s) % n];
        memcpy(a, pick->p.addr, 16);
        q.family = pick->p.family;
        q.len = pick->p.len;
    }
    uint64_t r = rnd(s);
    unsigned width = q.family == AF_INET ? 32 : 128;
    for (unsigned b = q.len; b < width; b++)
        if ((r >> (b % 64)) & 1) a[b / 8] |= (uint8_t)(0x80 >> (b % 8));
    return q.family;
}

START_TEST(test_remove_against_linear)
{
    /* inserts (some of them repeats of a live prefix) and removals at
     * random, on a copy of a trie: a hit exactly when a live row covers the
     * address; the original trie does not move */
    enum { NOPS = 6000, NLOOKUP = 400 };
    static struct entry live[NOPS], first[NOPS];
    uint64_t s = 0xfeedu;
    struct iptrie *orig = iptrie_new();
    size_t n = 0;
    for (; n < 500; n++) {
        random_prefix(&s, &live[n].p);
        live[n].id = (uint32_t)n + 1;
        ck_assert_int_eq(iptrie_insert(orig, &live[n].p, live[n].id), 0);
    }
    memcpy(first, live, n * sizeof(*live));
    size_t n_first = n, count_first = iptrie_count(orig);
    struct iptrie *t = iptrie_copy(orig);
    ck_assert_ptr_nonnull(t);
    for (size_t op = 0; op < NOPS; op++) {
        uint64_t r = rnd(&s) % 10;
        if (r < 4 && n > 0) {
            size_t k = rnd(&s) % n;
            ck_assert_int_eq(iptrie_remove(t, &live[k].p), 0);
            live[k] = live[--n];
        } else {
            if (r < 6 && n > 0)
                live[n].p = live[rnd(&s) % n].p; /* a repeat */
            else
                random_prefix(&s, &live[n].p);
            live[n].id = (uint32_t)(1000 + op);
            ck_assert_int_eq(iptrie_insert(t, &live[n].p, live[n].id), 0);
            n++;
        }
        if (op % 500 != 0 && op != NOPS - 1) continue;
        for (size_t i = 0; i < NLOOKUP; i++) {
            uint8_t a[16];
            int fam = random_addr(&s, live, n, a);
            ck_assert_int_eq(iptrie_match(t, fam, a, NULL), linear(live, n, fam, a) != 0);
        }
    }
    for (size_t i = 0; i < NLOOKUP; i++) {
        uint8_t a[16];
        int fam = random_addr(&s, first, n_first, a);
        uint32_t id = 0;
        bool hit = iptrie_match(orig, fam, a, &id);
        ck_assert_uint_eq(hit ? id : 0, linear(first, n_first, fam, a));
    }
    ck_assert_uint_eq(iptrie_count(orig), count_first);
    /* everything taken back: nothing matches */
    while (n > 0) {
        ck_assert_int_eq(iptrie_remove(t, &live[n - 1].p), 0);
        n--;
    }
    ck_assert_uint_eq(iptrie_count(t), 0);
    for (size_t i = 0; i < NLOOKUP; i++) {
        uint8_t a[16];
        int fam = random_addr(&s, first, n_first, a);
        ck_assert(!iptrie_match(t, fam, a, NULL));
    }
    iptrie_free(t);
    iptrie_free(orig);
}
END_TEST

START_TEST(test_remove_edges)
{
    struct iptrie *t = iptrie_new();
    struct ip_prefix p8, p16, p24, host;
    ck_assert_int_eq(iptrie_parse_cidr(LIT("10.0.0.0/8"), &p8), 0);
    ck_assert_int_eq(iptrie_parse_cidr(LIT("10.1.0.0/16"), &p16), 0);
    ck_assert_int_eq(iptrie_parse_cidr(LIT("10.1.2.0/24"), &p24), 0);
    ck_assert_int_eq(iptrie_parse_cidr(LIT("10.1.2.3"), &host), 0);
    const uint8_t a[4] = {10, 1, 2, 3};
    ck_assert_int_eq(iptrie_remove(t, &p8), -1); /* not there */
    ck_assert_int_eq(iptrie_insert(t, &p8, 1), 0);
    ck_assert_int_eq(iptrie_insert(t, &p24, 2), 0);
    ck_assert_int_eq(iptrie_remove(t, &p16), -1);  /* between two that are */
    ck_assert_int_eq(iptrie_remove(t, &host), -1); /* under one that is */
    ck_assert_int_eq(iptrie_remove(t, NULL), -1);
    ck_assert_int_eq(iptrie_remove(NULL, &p8), -1);
    ck_assert_int_eq(iptrie_remove(t, &p8), 0);
    ck_assert_int_eq(iptrie_remove(t, &p8), -1); /* once only */
    uint32_t id = 0;
    ck_assert(iptrie_match(t, AF_INET, a, &id));
    ck_assert_uint_eq(id, 2);
    ck_assert_int_eq(iptrie_remove(t, &p24), 0);
    ck_assert(!iptrie_match(t, AF_INET, a, NULL));
    ck_assert_uint_eq(iptrie_count(t), 0);
    /* a prefix inserted more often than a node counts is stuck: it stays */
    for (unsigned i = 0; i < 70000; i++)
        ck_assert_int_eq(iptrie_insert(t, &host, i), 0);
    ck_assert_int_eq(iptrie_remove(t, &host), -1);
    ck_assert(iptrie_match(t, AF_INET, a, NULL));
    /* below that, as many removals as insertions */
    ck_assert_int_eq(iptrie_insert(t, &p16, 1), 0);
    ck_assert_int_eq(iptrie_insert(t, &p16, 2), 0);
    ck_assert_int_eq(iptrie_remove(t, &p16), 0);
    const uint8_t b[4] = {10, 1, 9, 9};
    ck_assert(iptrie_match(t, AF_INET, b, NULL));
    ck_assert_int_eq(iptrie_remove(t, &p16), 0);
    ck_assert(!iptrie_match(t, AF_INET, b, NULL));
    ck_assert_ptr_null(iptrie_copy(NULL));
    iptrie_free(t);
}
END_TEST

START_TEST(test_100k_entries)
{
    enum { NPREFIX = 100000, NLINEAR = 200, NLOOKUP = 200000 };
    static struct entry e[NPREFIX];
    static uint8_t addrs[NLOOKUP][16];
    static int fams[NLOOKUP];
    uint64_t s = 42;
    struct iptrie *t = iptrie_new();
    for (size_t i = 0; i < NPREFIX; i++) {
        random_prefix(&s, &e[i].p);
        /* mostly long prefixes, like a real whitelist of hosts and small nets */
        if (e[i].p.len < 16) e[i].p.len = (uint8_t)(e[i].p.family == AF_INET ? 32 : 128);
        e[i].id = (uint32_t)(i + 1);
        ck_assert_int_eq(iptrie_insert(t, &e[i].p, e[i].id), 0);
    }
    for (size_t i = 0; i < NLOOKUP; i++) {
        const struct entry *pick = &e[rnd(&s) % NPREFIX];
        memcpy(addrs[i], pick->p.addr, 16);
        fams[i] = pick->p.family;
        if (i % 2) addrs[i][fams[i] == AF_INET ? 3 : 15] ^= (uint8_t)rnd(&s);
    }

    /* Every lookup agrees with a scan of all 100,000 entries for a sample;
     * the speed is measured by the benchmark, never asserted here. */
    size_t hits = 0;
    for (size_t i = 0; i < NLOOKUP; i++) {
        uint32_t id = 0;
        hits += iptrie_match(t, fams[i], addrs[i], &id);
        if (i < NLINEAR) ck_assert_uint_eq(id, linear(e, NPREFIX, fams[i], addrs[i]));
    }
    ck_assert_uint_gt(hits, NLOOKUP / 2);
    iptrie_free(t);
}
END_TEST

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

Suite *iptrie_suite(void)
{
    Suite *s = suite_create("iptrie");
    TCase *tc = tcase_create("parse");
    tcase_add_loop_test(tc, test_parse_ok, 0, N(parsed));
    tcase_add_loop_test(tc, test_parse_refused, 0, N(unparsable));
    suite_add_tcase(s, tc);

    tc = tcase_create("match");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_match);
    tcase_add_test(tc, test_match_order_independent);
    tcase_add_test(tc, test_match_all_and_host);
    tcase_add_test(tc, test_edge_cases);
    tcase_add_test(tc, test_random_against_linear);
    tcase_add_test(tc, test_remove_against_linear);
    tcase_add_test(tc, test_remove_edges);
    tcase_add_test(tc, test_100k_entries);
    suite_add_tcase(s, tc);
    return s;
}
