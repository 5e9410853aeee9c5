/*
 * Unit tests for agent/gw/username.c: the option grammar, the splitting rule
 * between user and options, each refusal and its reason, and the random
 * session id generator.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "username.h"

extern Suite *username_suite(void);

#define LIT(s) s, sizeof(s) - 1

static const struct {
    const char *in;
    size_t len;
    const char *user;
    const char *country; /* NULL: none */
    const char *session; /* NULL: none */
    unsigned minutes;
} accepted[] = {
    {LIT("alice"), "alice", NULL, NULL, 5},
    {LIT("myuser-country-US-session-abc123-sessTime-10"), "myuser", "US", "abc123", 10},
    {LIT("alice-country-DE-session-abc-sessTime-10"), "alice", "DE", "abc", 10},
    {LIT("myuser-country-DE"), "myuser", "DE", NULL, 5},
    {LIT("myuser-country-GB-session-xyz789-sessTime-15"), "myuser", "GB", "xyz789", 15},
    {LIT("bob-session-x1"), "bob", NULL, "x1", 5},
    {LIT("bob-sessTime-30"), "bob", NULL, NULL, 30},
    {LIT("my-user-country-DE"), "my-user", "DE", NULL, 5},
    {LIT("a-b-c-session-s"), "a-b-c", NULL, "s", 5},
    {LIT("my-user"), "my-user", NULL, NULL, 5},
    {LIT("a--b"), "a--b", NULL, NULL, 5},
    {LIT("user-"), "user-", NULL, NULL, 5},
    {LIT("-user"), "-user", NULL, NULL, 5},
    /* the leading token is always user, even when it spells a key */
    {LIT("country-DE"), "country-DE", NULL, NULL, 5},
    {LIT("session"), "session", NULL, NULL, 5},
    /* any order, any key case, any code case */
    {LIT("u-sesstime-1-SESSION-Z_9-Country-de"), "u", "DE", "Z_9", 1},
    {LIT("u-SESSTIME-1440"), "u", NULL, NULL, 1440},
    {LIT("u-sessTime-0010"), "u", NULL, NULL, 10},
    {LIT("u-country-us"), "u", "US", NULL, 5},
    {LIT("u-country-uS"), "u", "US", NULL, 5},
    {LIT("u-session-____"), "u", NULL, "____", 5},
    {LIT("u-session-0123456789012345678901234567890123456789012345678901234567890123"), "u", NULL,
     "0123456789012345678901234567890123456789012345678901234567890123", 5},
    /* keys as user tokens only count from the second token on */
    {LIT("countryman-country-FR"), "countryman", "FR", NULL, 5},
    {LIT("x-sessions-y"), "x-sessions-y", NULL, NULL, 5},
    {LIT("a:b"), "a:b", NULL, NULL, 5},
};

START_TEST(test_accepted)
{
    struct username u;
    const char *reason = "untouched";
    int rc = username_parse(accepted[_i].in, accepted[_i].len, &u, &reason);
    ck_assert_msg(rc == 0, "'%s' refused: %s", accepted[_i].in, reason);
    ck_assert_str_eq(reason, "untouched");
    ck_assert_ptr_eq(u.user, accepted[_i].in);
    ck_assert_uint_eq(u.user_len, strlen(accepted[_i].user));
    ck_assert(memcmp(u.user, accepted[_i].user, u.user_len) == 0);
    if (accepted[_i].country == NULL) {
        ck_assert_ptr_null(u.country);
    } else {
        ck_assert_ptr_nonnull(u.country);
        ck_assert_str_eq(u.country->code, accepted[_i].country);
    }
    if (accepted[_i].session == NULL) {
        ck_assert_ptr_null(u.session);
        ck_assert_uint_eq(u.session_len, 0);
        ck_assert(!u.session_from_client);
    } else {
        ck_assert(u.session_from_client);
        ck_assert_uint_eq(u.session_len, strlen(accepted[_i].session));
        ck_assert(memcmp(u.session, accepted[_i].session, u.session_len) == 0);
        /* it points into the input */
        ck_assert(u.session >= accepted[_i].in &&
                  u.session + u.session_len <= accepted[_i].in + accepted[_i].len);
    }
    ck_assert_uint_eq(u.session_time_min, accepted[_i].minutes);
}
END_TEST

static const struct {
    const char *in;
    size_t len;
    const char *user; /* what out->user holds despite the error */
    const char *reason;
} refused[] = {
    {LIT(""), "", "empty user name"},
    {LIT("-country-DE"), "", "empty user name"},
    {LIT("-session-abc"), "", "empty user name"},
    {LIT("alice-country-XX"), "alice", "country: unknown code"},
    {LIT("alice-country-ZZ-session-abc"), "alice", "country: unknown code"},
    {LIT("alice-country-U1"), "alice", "country: unknown code"},
    {LIT("alice-country-USA"), "alice", "country: must be a 2-letter ISO 3166-1 code"},
    {LIT("alice-country-U"), "alice", "country: must be a 2-letter ISO 3166-1 code"},
    {LIT("alice-country-"), "alice", "country: empty value"},
    {LIT("alice-country"), "alice", "country: empty value"},
    {LIT("alice-country--session-x"), "alice", "country: empty value"},
    {LIT("alice-session-"), "alice", "session: empty value"},
    {LIT("alice-session"), "alice", "session: empty value"},
    {LIT("alice-sessTime"), "alice", "sessTime: empty value"},
    {LIT("alice-sessTime-"), "alice", "sessTime: empty value"},
    {LIT("alice-country-DE-country-FR"), "alice", "country: repeated"},
    {LIT("alice-country-DE-COUNTRY-DE"), "alice", "country: repeated"},
    {LIT("alice-session-a-session-b"), "alice", "session: repeated"},
    {LIT("alice-sessTime-5-sesstime-5"), "alice", "sessTime: repeated"},
    {LIT("alice-session-a.b"), "alice", "session: must be 1-64 of A-Z a-z 0-9 _"},
    {LIT("alice-session-a b"), "alice", "session: must be 1-64 of A-Z a-z 0-9 _"},
    {LIT("alice-session-a:b"), "alice", "session: must be 1-64 of A-Z a-z 0-9 _"},
    {LIT("alice-session-a@b"), "alice", "session: must be 1-64 of A-Z a-z 0-9 _"},
    {LIT("alice-session-\xc3\xa9"), "alice", "session: must be 1-64 of A-Z a-z 0-9 _"},
    {LIT("alice-session-a\0b"), "alice", "session: must be 1-64 of A-Z a-z 0-9 _"},
    {LIT("alice-session-01234567890123456789012345678901234567890123456789012345678901234"),
     "alice", "session: must be 1-64 of A-Z a-z 0-9 _"},
    {LIT("alice-sessTime-0"), "alice", "sessTime: must be an integer from 1 to 1440 (minutes)"},
    {LIT("alice-sessTime-000"), "alice", "sessTime: must be an integer from 1 to 1440 (minutes)"},
    {LIT("alice-sessTime-1441"), "alice", "sessTime: must be an integer from 1 to 1440 (minutes)"},
    {LIT("alice-sessTime-+5"), "alice", "sessTime: must be an integer from 1 to 1440 (minutes)"},
    {LIT("alice-sessTime- 5"), "alice", "sessTime: must be an integer from 1 to 1440 (minutes)"},
    {LIT("alice-sessTime-5 "), "alice", "sessTime: must be an integer from 1 to 1440 (minutes)"},
    {LIT("alice-sessTime-1e3"), "alice", "sessTime: must be an integer from 1 to 1440 (minutes)"},
    {LIT("alice-sessTime-0x10"), "alice", "sessTime: must be an integer from 1 to 1440 (minutes)"},
    {LIT("alice-sessTime-18446744073709551621"), "alice",
     "sessTime: must be an integer from 1 to 1440 (minutes)"},
    {LIT("alice-sessTime-4294967301"), "alice",
     "sessTime: must be an integer from 1 to 1440 (minutes)"},
    /* a negative number is "-" then an unknown key "5"... but first the value is empty */
    {LIT("alice-sessTime--5"), "alice", "sessTime: empty value"},
    {LIT("alice-country-DE-foo"), "alice",
     "unknown option (expected country, session or sessTime)"},
    {LIT("alice-country-DE-foo-bar"), "alice",
     "unknown option (expected country, session or sessTime)"},
    {LIT("alice-country-DE-"), "alice", "empty option name"},
    {LIT("alice-country-DE--session-x"), "alice", "empty option name"},
    {LIT("alice-country-DE-session-abc-"), "alice", "empty option name"},
    /* a user named like an option cannot carry options: the rule is stated */
    {LIT("a-country"), "a", "country: empty value"},
    {LIT("a-country-session-x"), "a", "country: must be a 2-letter ISO 3166-1 code"},
    {LIT("x-session-y-z"), "x", "unknown option (expected country, session or sessTime)"},
};

START_TEST(test_refused)
{
    struct username u;
    const char *reason = NULL;
    int rc = username_parse(refused[_i].in, refused[_i].len, &u, &reason);
    ck_assert_msg(rc == -1, "'%s' accepted", refused[_i].in);
    ck_assert_ptr_nonnull(reason);
    ck_assert_str_eq(reason, refused[_i].reason);
    ck_assert_uint_eq(u.user_len, strlen(refused[_i].user));
    if (u.user_len > 0) {
        ck_assert_ptr_eq(u.user, refused[_i].in);
        ck_assert(memcmp(u.user, refused[_i].user, u.user_len) == 0);
    }
}
END_TEST

START_TEST(test_null_and_reason_optional)
{
    struct username u;
    ck_assert_int_eq(username_parse(NULL, 5, &u, NULL), -1);
    ck_assert_uint_eq(u.user_len, 0);
    ck_assert_int_eq(username_parse("a-country-XX", 12, &u, NULL), -1);
    ck_assert_uint_eq(u.user_len, 1);
    /* the length bounds the parse: bytes past it are not read */
    ck_assert_int_eq(username_parse("bob-country-DEXX", 14, &u, NULL), 0);
    ck_assert_str_eq(u.country->code, "DE");
}
END_TEST

START_TEST(test_every_sesstime)
{
    char buf[32];
    struct username u;
    for (unsigned m = 0; m <= 1500; m++) {
        int n = snprintf(buf, sizeof(buf), "u-sessTime-%u", m);
        int rc = username_parse(buf, (size_t)n, &u, NULL);
        if (m >= 1 && m <= 1440) {
            ck_assert_int_eq(rc, 0);
            ck_assert_uint_eq(u.session_time_min, m);
        } else {
            ck_assert_int_eq(rc, -1);
        }
    }
}
END_TEST

START_TEST(test_every_country)
{
    char buf[32];
    struct username u;
    for (size_t i = 0; i < COUNTRY_COUNT; i++) {
        const struct country *c = country_at(i);
        int n = snprintf(buf, sizeof(buf), "u-country-%s", c->code);
        ck_assert_int_eq(username_parse(buf, (size_t)n, &u, NULL), 0);
        ck_assert_ptr_eq(u.country, c);
    }
}
END_TEST

/* A deterministic source: a counter through a fixed mixer. */
static uint64_t counter_rand(void *ctx)
{
    uint64_t *x = ctx;
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t const_rand(void *ctx)
{
    return *(uint64_t *)ctx;
}

START_TEST(test_random_session)
{
    char a[USERNAME_RANDOM_SESSION + 1], b[USERNAME_RANDOM_SESSION + 1];
    uint64_t s1 = 1, s2 = 1, s3 = 2;
    username_random_session(a, counter_rand, &s1);
    username_random_session(b, counter_rand, &s2);
    ck_assert_str_eq(a, b); /* same source, same id */
    ck_assert_uint_eq(strlen(a), 10);
    username_random_session(b, counter_rand, &s3);
    ck_assert_str_ne(a, b);

    /* Extremes of the source map to the ends of the alphabet. */
    uint64_t lo = 0, hi = UINT64_MAX;
    username_random_session(a, const_rand, &lo);
    ck_assert_str_eq(a, "aaaaaaaaaa");
    username_random_session(a, const_rand, &hi);
    ck_assert_str_eq(a, "9999999999");

    /* Every symbol appears, roughly evenly; the id is a valid session id. */
    unsigned hist[128] = {0};
    uint64_t s = 7;
    for (int i = 0; i < 36000; i++) {
        struct username u;
        char buf[32] = "u-session-";
        username_random_session(a, counter_rand, &s);
        for (int j = 0; j < 10; j++)
            hist[(unsigned char)a[j]]++;
        memcpy(buf + 10, a, 11);
        ck_assert_int_eq(username_parse(buf, 20, &u, NULL), 0);
    }
    for (int ch = 0; ch < 128; ch++) {
        bool in = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
        if (!in) {
            ck_assert_uint_eq(hist[ch], 0);
        } else {
            ck_assert_uint_gt(hist[ch], 9000); /* expected 10000 */
            ck_assert_uint_lt(hist[ch], 11000);
        }
    }
}
END_TEST

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

Suite *username_suite(void)
{
    Suite *s = suite_create("username");
    TCase *tc = tcase_create("parse");
    tcase_add_loop_test(tc, test_accepted, 0, N(accepted));
    tcase_add_loop_test(tc, test_refused, 0, N(refused));
    tcase_add_test(tc, test_null_and_reason_optional);
    tcase_add_test(tc, test_every_sesstime);
    tcase_add_test(tc, test_every_country);
    suite_add_tcase(s, tc);

    tc = tcase_create("random");
    tcase_add_test(tc, test_random_session);
    suite_add_tcase(s, tc);
    return s;
}
