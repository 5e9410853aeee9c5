/*
 * Unit tests for agent/gw/rendezvous.c: SipHash-2-4 reference vectors, the
 * documented encoding (which every node must share), stability when a
 * provider leaves, balance, and ports.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "rendezvous.h"

/* rendezvous.h's hash for key ("alice", "DE", "abc123") and slug
 * "example-provider", computed by an independent implementation of SipHash-2-4
 * and of the documented encoding (not by this code). */
#define GOLDEN_SCORE    0x7b3ab59d0b5f7ef3ull
#define GOLDEN_PORT     0xc9c1e84ef58680b1ull
#define GOLDEN_PORT_NUM 10079 /* in 10000..10100 */

extern Suite *rendezvous_suite(void);

static struct rendezvous_str S(const char *s) {
    struct rendezvous_str r = {s, strlen(s)};
    return r;
}

START_TEST(test_siphash_vectors)
{
    /* From the SipHash paper (Appendix A) and its reference test vectors:
     * key 00 01 .. 0f, message 00 01 .. (len - 1). */
    uint8_t m[64];
    for (int i = 0; i < 64; i++)
        m[i] = (uint8_t)i;
    const uint64_t k0 = 0x0706050403020100ull, k1 = 0x0f0e0d0c0b0a0908ull;
    ck_assert_uint_eq(rendezvous_siphash(k0, k1, m, 0), 0x726fdb47dd0e0e31ull);
    ck_assert_uint_eq(rendezvous_siphash(k0, k1, m, 15), 0xa129ca6149be45e5ull);
    ck_assert_uint_eq(rendezvous_siphash(k0, k1, m, 63), 0x958a324ceb064572ull);
}
END_TEST

/* The documented byte string, assembled by hand. */
static size_t encode(uint8_t *out, const struct rendezvous_key *k, const char *slug, char tag)
{
    const struct rendezvous_str f[4] = {k->user, k->country, k->session, S(slug)};
    size_t n = 0;
    for (int i = 0; i < 4; i++) {
        uint32_t l = (uint32_t)f[i].len;
        out[n++] = (uint8_t)l;
        out[n++] = (uint8_t)(l >> 8);
        out[n++] = (uint8_t)(l >> 16);
        out[n++] = (uint8_t)(l >> 24);
        memcpy(out + n, f[i].ptr, f[i].len);
        n += f[i].len;
    }
    out[n++] = (uint8_t)tag;
    return n;
}

START_TEST(test_documented_encoding)
{
    /* The key is the ASCII text "proxy-gw-rv-v1\0\0" as little-endian words,
     * and every field length from 0 to 40 crosses the 8-byte word boundaries
     * of the incremental hashing at a different place. */
    const uint8_t kb[16] = "proxy-gw-rv-v1";
    uint64_t k0 = 0, k1 = 0;
    for (int i = 7; i >= 0; i--) {
        k0 = k0 << 8 | kb[i];
        k1 = k1 << 8 | kb[8 + i];
    }
    char text[41];
    uint8_t buf[256];
    memset(text, 'a', sizeof(text));
    for (size_t ul = 0; ul <= 40; ul++) {
        for (size_t sl = 0; sl <= 40; sl += 3) {
            char user[41], sess[41];
            memcpy(user, text, ul);
            user[ul] = '\0';
            memcpy(sess, text, sl);
            sess[sl] = '\0';
            struct rendezvous_key k = {S(user), S(ul % 2 ? "DE" : ""), S(sess)};
            struct rendezvous_str slug = S("provider-x");
            size_t n = encode(buf, &k, "provider-x", 'S');
            ck_assert_uint_eq(rendezvous_score(&k, &slug), rendezvous_siphash(k0, k1, buf, n));
            n = encode(buf, &k, "provider-x", 'P');
            ck_assert_uint_eq(rendezvous_port_hash(&k, &slug), rendezvous_siphash(k0, k1, buf, n));
        }
    }
}
END_TEST

START_TEST(test_golden_values)
{
    /* Pinned outputs: if these change, every sticky session in production
     * moves to another provider. Change them only on purpose. */
    struct rendezvous_key k = {S("alice"), S("DE"), S("abc123")};
    struct rendezvous_str slug = S("example-provider");
    uint64_t score = rendezvous_score(&k, &slug), port = rendezvous_port_hash(&k, &slug);
    ck_assert_uint_eq(score, GOLDEN_SCORE);
    ck_assert_uint_eq(port, GOLDEN_PORT);
    ck_assert_uint_eq(rendezvous_port(port, 10000, 10100), GOLDEN_PORT_NUM);
}
END_TEST

START_TEST(test_fields_are_separate)
{
    /* Moving bytes between fields changes the hash: the lengths frame them. */
    struct rendezvous_str slug = S("p");
    struct rendezvous_key a = {S("ab"), S(""), S("c")};
    struct rendezvous_key b = {S("a"), S(""), S("bc")};
    struct rendezvous_key c = {S("a"), S("b"), S("c")};
    uint64_t ha = rendezvous_score(&a, &slug), hb = rendezvous_score(&b, &slug),
             hc = rendezvous_score(&c, &slug);
    ck_assert_uint_ne(ha, hb);
    ck_assert_uint_ne(ha, hc);
    ck_assert_uint_ne(hb, hc);
    /* and score and port hashes differ */
    ck_assert_uint_ne(rendezvous_score(&a, &slug), rendezvous_port_hash(&a, &slug));
    /* NULL pointers are empty strings */
    struct rendezvous_key z1 = {{NULL, 5}, {NULL, 0}, S("s")};
    struct rendezvous_key z2 = {S(""), S(""), S("s")};
    ck_assert_uint_eq(rendezvous_score(&z1, &slug), rendezvous_score(&z2, &slug));
}
END_TEST

enum { NPROV = 10, NKEYS = 10000 };

static char slug_text[NPROV][24];
static struct rendezvous_str slugs[NPROV];

static void make_slugs(void)
{
    for (int i = 0; i < NPROV; i++) {
        snprintf(slug_text[i], sizeof(slug_text[i]), "provider-%d", i);
        slugs[i] = S(slug_text[i]);
    }
}

static struct rendezvous_key key_for(int i, char *user, char *sess)
{
    static const char *const countries[] = {"US", "DE", "GB", ""};
    sprintf(user, "user%d", i % 97);
    sprintf(sess, "s%d", i);
    struct rendezvous_key k = {S(user), S(countries[i % 4]), S(sess)};
    return k;
}

START_TEST(test_balance_and_removal)
{
    make_slugs();
    static int owner[NKEYS];
    int count[NPROV] = {0};
    char user[32], sess[32];
    for (int i = 0; i < NKEYS; i++) {
        struct rendezvous_key k = key_for(i, user, sess);
        uint64_t score;
        size_t w = rendezvous_pick(&k, slugs, NPROV, &score);
        ck_assert_uint_lt(w, NPROV);
        ck_assert_uint_eq(score, rendezvous_score(&k, &slugs[w]));
        owner[i] = (int)w;
        count[w]++;
    }
    for (int p = 0; p < NPROV; p++) {
        ck_assert_msg(count[p] >= NKEYS * 5 / 100 && count[p] <= NKEYS * 15 / 100,
                      "provider %d has %d of %d keys", p, count[p], NKEYS);
    }

    /* Remove each provider in turn: only its keys move. */
    for (int gone = 0; gone < NPROV; gone++) {
        struct rendezvous_str rest[NPROV - 1];
        int map[NPROV - 1], n = 0;
        for (int p = 0; p < NPROV; p++)
            if (p != gone) map[n] = p, rest[n++] = slugs[p];
        int moved = 0;
        for (int i = 0; i < NKEYS; i++) {
            struct rendezvous_key k = key_for(i, user, sess);
            int w = map[rendezvous_pick(&k, rest, NPROV - 1, NULL)];
            if (owner[i] != gone)
                ck_assert_int_eq(w, owner[i]);
            else
                moved++;
        }
        ck_assert_int_eq(moved, count[gone]);
    }
}
END_TEST

START_TEST(test_order_independent)
{
    make_slugs();
    struct rendezvous_str rev[NPROV];
    for (int p = 0; p < NPROV; p++)
        rev[p] = slugs[NPROV - 1 - p];
    char user[32], sess[32];
    for (int i = 0; i < 2000; i++) {
        struct rendezvous_key k = key_for(i, user, sess);
        size_t a = rendezvous_pick(&k, slugs, NPROV, NULL);
        size_t b = rendezvous_pick(&k, rev, NPROV, NULL);
        ck_assert_uint_eq(a, NPROV - 1 - b);
    }
}
END_TEST

START_TEST(test_ties_and_empty)
{
    struct rendezvous_key k = {S("u"), S(""), S("s")};
    /* The same slug twice ties: the first index in byte order wins either way. */
    struct rendezvous_str two[2] = {S("same"), S("same")};
    uint64_t score = 1;
    ck_assert_uint_eq(rendezvous_pick(&k, two, 2, &score), 0);
    ck_assert_uint_eq(score, rendezvous_score(&k, &two[0]));
    ck_assert_uint_eq(rendezvous_pick(&k, two, 0, &score), 0);
    ck_assert_uint_eq(rendezvous_pick(&k, NULL, 0, NULL), 0);
    ck_assert_uint_eq(rendezvous_pick(&k, two, 1, NULL), 0);
}
END_TEST

START_TEST(test_port_range)
{
    ck_assert_uint_eq(rendezvous_port(0, 10000, 10100), 10000);
    ck_assert_uint_eq(rendezvous_port(UINT64_MAX, 10000, 10100), 10100);
    ck_assert_uint_eq(rendezvous_port(UINT64_MAX / 2, 10000, 10100), 10050);
    ck_assert_uint_eq(rendezvous_port(12345, 8080, 8080), 8080);
    ck_assert_uint_eq(rendezvous_port(UINT64_MAX, 8080, 8080), 8080);
    ck_assert_uint_eq(rendezvous_port(0, 0, 65535), 0);
    ck_assert_uint_eq(rendezvous_port(UINT64_MAX, 0, 65535), 65535);
    ck_assert_uint_eq(rendezvous_port(UINT64_MAX, 1, 65535), 65535);
    /* min > max is the same range swapped */
    ck_assert_uint_eq(rendezvous_port(0, 10100, 10000), 10000);
    ck_assert_uint_eq(rendezvous_port(UINT64_MAX, 10100, 10000), 10100);

    /* Keys spread evenly over a small range, always inside it, and a key's
     * port never changes. */
    make_slugs();
    enum { MIN = 10000, MAX = 10009 };
    int hist[MAX - MIN + 1] = {0};
    char user[32], sess[32];
    for (int i = 0; i < NKEYS; i++) {
        struct rendezvous_key k = key_for(i, user, sess);
        size_t w = rendezvous_pick(&k, slugs, NPROV, NULL);
        uint64_t h = rendezvous_port_hash(&k, &slugs[w]);
        uint16_t port = rendezvous_port(h, MIN, MAX);
        ck_assert(port >= MIN && port <= MAX);
        ck_assert_uint_eq(port, rendezvous_port(rendezvous_port_hash(&k, &slugs[w]), MIN, MAX));
        hist[port - MIN]++;
    }
    for (int p = 0; p <= MAX - MIN; p++)
        ck_assert_msg(hist[p] > NKEYS / 10 * 8 / 10 && hist[p] < NKEYS / 10 * 12 / 10,
                      "port %d: %d", MIN + p, hist[p]);
}
END_TEST

Suite *rendezvous_suite(void)
{
    Suite *s = suite_create("rendezvous");
    TCase *tc = tcase_create("hash");
    tcase_add_test(tc, test_siphash_vectors);
    tcase_add_test(tc, test_documented_encoding);
    tcase_add_test(tc, test_golden_values);
    tcase_add_test(tc, test_fields_are_separate);
    suite_add_tcase(s, tc);

    tc = tcase_create("pick");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_balance_and_removal);
    tcase_add_test(tc, test_order_independent);
    tcase_add_test(tc, test_ties_and_empty);
    tcase_add_test(tc, test_port_range);
    suite_add_tcase(s, tc);
    return s;
}
