/*
 * Unit tests for agent/gw/basic_auth.c: decoding Proxy-Authorization values
 * (every refusal and its reason) and encoding the upstream credential.
 */
#include <check.h>
#include <string.h>

#include "basic_auth.h"

extern Suite *basic_auth_suite(void);

#define LIT(s) s, sizeof(s) - 1

static const struct {
    const char *hdr;
    size_t len;
    const char *user;
    const char *pass;
    size_t pass_len;
} accepted[] = {
    {LIT("Basic YWxpY2U6c2VjcmV0"), "alice", LIT("secret")},
    {LIT("basic YWxpY2U6c2VjcmV0"), "alice", LIT("secret")},
    {LIT("BASIC YWxpY2U6c2VjcmV0"), "alice", LIT("secret")},
    {LIT("bAsIc    YWxpY2U6c2VjcmV0"), "alice", LIT("secret")},
    {LIT("Basic\tYWxpY2U6c2VjcmV0"), "alice", LIT("secret")},
    {LIT("  Basic YWxpY2U6c2VjcmV0  "), "alice", LIT("secret")},
    {LIT("Basic YTo="), "a", LIT("")},
    {LIT("Basic YTpiOmM6ZA=="), "a", LIT("b:c:d")},
    {LIT("Basic dXNlcjpwQHNzOncwcmQ="), "user", LIT("p@ss:w0rd")},
    {LIT("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="), "Aladdin", LIT("open sesame")},
};

START_TEST(test_accepted)
{
    char buf[BASIC_AUTH_BUF_SIZE];
    struct basic_auth_cred c;
    const char *reason = "untouched";
    int rc = basic_auth_decode(accepted[_i].hdr, accepted[_i].len, buf, sizeof(buf), &c, &reason);
    ck_assert_msg(rc == 0, "'%s': %s", accepted[_i].hdr, reason);
    ck_assert_str_eq(c.user, accepted[_i].user);
    ck_assert_uint_eq(c.user_len, strlen(accepted[_i].user));
    ck_assert_uint_eq(c.pass_len, accepted[_i].pass_len);
    ck_assert(memcmp(c.pass, accepted[_i].pass, c.pass_len) == 0);
    ck_assert_int_eq(c.pass[c.pass_len], '\0');
    ck_assert(c.user >= buf && c.pass + c.pass_len < buf + sizeof(buf));
}
END_TEST

static const struct {
    const char *hdr;
    size_t len;
    const char *reason;
} refused[] = {
    {LIT(""), "missing credentials"},
    {LIT("   "), "missing credentials"},
    {LIT("Basic"), "empty Basic credentials"},
    {LIT("Basic   "), "empty Basic credentials"},
    {LIT("Bearer abc.def"), "not Basic credentials"},
    {LIT("Digest username=\"a\""), "not Basic credentials"},
    {LIT("BasicYWxpY2U6c2VjcmV0"), "not Basic credentials"},
    {LIT("Basix YWxpY2U6c2VjcmV0"), "not Basic credentials"},
    {LIT("YWxpY2U6c2VjcmV0"), "not Basic credentials"},
    {LIT("Basic YWxpY2U6c2VjcmV0="), "bad base64 in credentials"}, /* length 17 */
    {LIT("Basic YTo"), "bad base64 in credentials"},               /* no padding */
    {LIT("Basic YT=o"), "bad base64 in credentials"},              /* '=' inside */
    {LIT("Basic Y==="), "bad base64 in credentials"},              /* 3 pads */
    {LIT("Basic ===="), "bad base64 in credentials"},
    {LIT("Basic YTo=YTo="), "bad base64 in credentials"}, /* pad mid-stream */
    {LIT("Basic YR=="), "bad base64 in credentials"},     /* non-canonical */
    {LIT("Basic YTp="), "bad base64 in credentials"},     /* non-canonical */
    {LIT("Basic YWxp*2U6"), "bad base64 in credentials"},
    {LIT("Basic YWxpY2U6 c2VjcmV0"), "bad base64 in credentials"},
    {LIT("Basic YWxp-2U6"), "bad base64 in credentials"}, /* URL-safe alphabet */
    {LIT("Basic YWxp_2U6"), "bad base64 in credentials"},
    {LIT("Basic YWxpY2U6c2Vj\0mV0"), "bad base64 in credentials"},
    {LIT("Basic bm9jb2xvbg=="), "no colon in credentials"},
    {LIT("Basic OnBhc3M="), "empty user name"},
    {LIT("Basic YQBiOmM="), "NUL byte in credentials"},
    {LIT("Basic YTpiAA=="), "NUL byte in credentials"},
};

START_TEST(test_refused)
{
    char buf[BASIC_AUTH_BUF_SIZE];
    struct basic_auth_cred c;
    const char *reason = NULL;
    int rc = basic_auth_decode(refused[_i].hdr, refused[_i].len, buf, sizeof(buf), &c, &reason);
    ck_assert_msg(rc == -1, "'%s' accepted", refused[_i].hdr);
    ck_assert_ptr_nonnull(reason);
    ck_assert_str_eq(reason, refused[_i].reason);
}
END_TEST

/* "x"*ulen ":" "y"*plen, encoded by basic_auth_encode, then decoded. */
static int roundtrip_sizes(size_t ulen, size_t plen, char *buf, size_t cap, const char **reason)
{
    static char user[1024], pass[1024], hdr[2048];
    struct basic_auth_cred c;
    memset(user, 'x', ulen);
    memset(pass, 'y', plen);
    memcpy(hdr, "Basic ", 6);
    size_t n = basic_auth_encode(user, ulen, pass, plen, hdr + 6, sizeof(hdr) - 6);
    ck_assert_uint_eq(n, BASIC_AUTH_B64_LEN(ulen + 1 + plen));
    int rc = basic_auth_decode(hdr, n + 6, buf, cap, &c, reason);
    if (rc == 0) {
        ck_assert_uint_eq(c.user_len, ulen);
        ck_assert_uint_eq(c.pass_len, plen);
    }
    return rc;
}

START_TEST(test_size_cap)
{
    char buf[BASIC_AUTH_BUF_SIZE];
    const char *reason = NULL;
    /* 512 decoded bytes pass, 513 and 514 do not; every padding variant. */
    ck_assert_int_eq(roundtrip_sizes(300, 211, buf, sizeof(buf), &reason), 0);
    ck_assert_int_eq(roundtrip_sizes(300, 210, buf, sizeof(buf), &reason), 0);
    ck_assert_int_eq(roundtrip_sizes(300, 209, buf, sizeof(buf), &reason), 0);
    ck_assert_int_eq(roundtrip_sizes(300, 212, buf, sizeof(buf), &reason), -1);
    ck_assert_str_eq(reason, "credentials too long");
    ck_assert_int_eq(roundtrip_sizes(300, 213, buf, sizeof(buf), &reason), -1);
    ck_assert_str_eq(reason, "credentials too long");
    ck_assert_int_eq(roundtrip_sizes(700, 300, buf, sizeof(buf), &reason), -1);
    ck_assert_str_eq(reason, "credentials too long");

    /* A small caller buffer is respected: 12 decoded bytes need 13. */
    char small[16];
    ck_assert_int_eq(roundtrip_sizes(5, 6, small, 13, &reason), 0);
    ck_assert_int_eq(roundtrip_sizes(5, 6, small, 12, &reason), -1);
    ck_assert_str_eq(reason, "credentials too long");
    ck_assert_int_eq(roundtrip_sizes(5, 6, NULL, 0, &reason), -1);
}
END_TEST

START_TEST(test_huge_header_refused_early)
{
    /* A megabyte of valid base64 is refused on its length alone. */
    static char hdr[1 << 20];
    char buf[BASIC_AUTH_BUF_SIZE];
    struct basic_auth_cred c;
    const char *reason = NULL;
    memcpy(hdr, "Basic ", 6);
    memset(hdr + 6, 'A', sizeof(hdr) - 6);
    ck_assert_int_eq(basic_auth_decode(hdr, sizeof(hdr), buf, sizeof(buf), &c, &reason), -1);
    ck_assert_str_eq(reason, "credentials too long");
    ck_assert_int_eq(basic_auth_decode(NULL, 10, buf, sizeof(buf), &c, &reason), -1);
    ck_assert_str_eq(reason, "missing credentials");
    ck_assert_int_eq(basic_auth_decode("Basic YTo=", 10, buf, sizeof(buf), &c, NULL), 0);
}
END_TEST

static const struct {
    const char *user, *pass;
    size_t plen;
    const char *want;
} encoded[] = {
    {"alice", LIT("secret"), "YWxpY2U6c2VjcmV0"},
    {"a", LIT(""), "YTo="},
    {"a", LIT("b:c:d"), "YTpiOmM6ZA=="},
    {"user", LIT("p@ss:w0rd"), "dXNlcjpwQHNzOncwcmQ="},
    {"Aladdin", LIT("open sesame"), "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="},
    {"\xff\xfe", LIT("\x00\x01"), "//46AAE="},
};

START_TEST(test_encode)
{
    char out[64];
    size_t n = basic_auth_encode(encoded[_i].user, strlen(encoded[_i].user), encoded[_i].pass,
                                 encoded[_i].plen, out, sizeof(out));
    ck_assert_str_eq(out, encoded[_i].want);
    ck_assert_uint_eq(n, strlen(encoded[_i].want));
    /* Exactly enough room, and one byte short. */
    char exact[64];
    ck_assert_uint_eq(basic_auth_encode(encoded[_i].user, strlen(encoded[_i].user),
                                        encoded[_i].pass, encoded[_i].plen, exact, n + 1),
                      n);
    ck_assert_uint_eq(basic_auth_encode(encoded[_i].user, strlen(encoded[_i].user),
                                        encoded[_i].pass, encoded[_i].plen, exact, n),
                      0);
    ck_assert_int_eq(exact[0], '\0');
}
END_TEST

START_TEST(test_encode_refused)
{
    char out[64] = "junk";
    ck_assert_uint_eq(basic_auth_encode("a:b", 3, "c", 1, out, sizeof(out)), 0);
    ck_assert_int_eq(out[0], '\0');
    ck_assert_uint_eq(basic_auth_encode("", 0, "c", 1, out, sizeof(out)), 0);
    ck_assert_uint_eq(basic_auth_encode(NULL, 3, "c", 1, out, sizeof(out)), 0);
    ck_assert_uint_eq(basic_auth_encode("a", 1, "c", 1, NULL, 64), 0);
    ck_assert_uint_eq(basic_auth_encode("a", 1, "c", 1, out, 0), 0);
    ck_assert_uint_eq(basic_auth_encode("a", 1, NULL, 5, out, sizeof(out)), 4);
    ck_assert_str_eq(out, "YTo=");
}
END_TEST

START_TEST(test_roundtrip_bytes)
{
    /* Every byte value except NUL in user (no ':') and password survives. */
    char user[256], pass[256], hdr[1024], buf[BASIC_AUTH_BUF_SIZE];
    size_t ul = 0, pl = 0;
    for (int b = 1; b < 256; b++) {
        if (b != ':') user[ul++] = (char)b;
        pass[pl++] = (char)b;
    }
    memcpy(hdr, "Basic ", 6);
    size_t n = basic_auth_encode(user, ul, pass, pl, hdr + 6, sizeof(hdr) - 6);
    ck_assert_uint_gt(n, 0);
    struct basic_auth_cred c;
    const char *reason = NULL;
    ck_assert_int_eq(basic_auth_decode(hdr, n + 6, buf, sizeof(buf), &c, &reason), 0);
    ck_assert_uint_eq(c.user_len, ul);
    ck_assert_uint_eq(c.pass_len, pl);
    ck_assert(memcmp(c.user, user, ul) == 0);
    ck_assert(memcmp(c.pass, pass, pl) == 0);
}
END_TEST

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

Suite *basic_auth_suite(void)
{
    Suite *s = suite_create("basic_auth");
    TCase *tc = tcase_create("decode");
    tcase_add_loop_test(tc, test_accepted, 0, N(accepted));
    tcase_add_loop_test(tc, test_refused, 0, N(refused));
    tcase_add_test(tc, test_size_cap);
    tcase_add_test(tc, test_huge_header_refused_early);
    suite_add_tcase(s, tc);

    tc = tcase_create("encode");
    tcase_add_loop_test(tc, test_encode, 0, N(encoded));
    tcase_add_test(tc, test_encode_refused);
    tcase_add_test(tc, test_roundtrip_bytes);
    suite_add_tcase(s, tc);
    return s;
}
