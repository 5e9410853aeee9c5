/*
 * Unit tests for agent/gw/template.c: template syntax and split rules, and
 * rendering with hostile values that try to move a part boundary.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template.h"

extern Suite *template_suite(void);

#define LIT(s) s, sizeof(s) - 1
#define REF_TPL                                                                                    \
    "{username}-country-{country}-session-{session_id}-sessTime-{duration}:{password}@{host}:{"    \
    "port}"

/* The reference README's example provider, with a chosen port. */
static struct template_values ref_values(void)
{
    struct template_values v = {
        .username = LIT("provideruser"),
        .password = LIT("providerpass"),
        .host = LIT("proxy.provider.com"),
        .port = 10042,
        .country = LIT("US"),
        .session_id = LIT("abc123"),
        .duration_min = 10,
    };
    return v;
}

static const struct {
    const char *tpl;
    size_t len;
    const char *user, *pass, *host, *port;
} rendered[] = {
    {LIT(""), "provideruser", "providerpass", "proxy.provider.com", "10042"},
    {LIT(REF_TPL), "provideruser-country-US-session-abc123-sessTime-10", "providerpass",
     "proxy.provider.com", "10042"},
    {LIT("http://{username}:{password}@{host}:{port}"), "provideruser", "providerpass",
     "proxy.provider.com", "10042"},
    {LIT("HTTP://{username}:{password}@{host}:{port}"), "provideruser", "providerpass",
     "proxy.provider.com", "10042"},
    {LIT("{username}@{host}:{port}"), "provideruser", "", "proxy.provider.com", "10042"},
    {LIT("{username}:@{host}:{port}"), "provideruser", "", "proxy.provider.com", "10042"},
    {LIT("{username}:{password}@[2001:db8::1]:{port}"), "provideruser", "providerpass",
     "[2001:db8::1]", "10042"},
    {LIT("{username}:{password}@gw-1.example.com:8000"), "provideruser", "providerpass",
     "gw-1.example.com", "8000"},
    {LIT("{username}:{password}@192.0.2.7:{port}"), "provideruser", "providerpass", "192.0.2.7",
     "10042"},
    /* literal secrets with '@' and ':' split by the rules: first ':' and last '@' */
    {LIT("user:p@ss:w@rd@{host}:{port}"), "user", "p@ss:w@rd", "proxy.provider.com", "10042"},
    {LIT("{username}-{session_id}:{password}-{session_id}@{country}.{host}:{port}"),
     "provideruser-abc123", "providerpass-abc123", "US.proxy.provider.com", "10042"},
    {LIT("{username}:{password}@{host}:0{port}"), "provideruser", "providerpass",
     "proxy.provider.com", "10042"},
    {LIT("{username}:{password}@{host}:00080"), "provideruser", "providerpass",
     "proxy.provider.com", "80"},
    {LIT("{username}:{password}@{host}:{duration}"), "provideruser", "providerpass",
     "proxy.provider.com", "10"},
};

START_TEST(test_render_ok)
{
    struct template_compiled t;
    struct template_upstream up;
    const char *err = "untouched";
    struct template_values v = ref_values();
    ck_assert_msg(template_compile(rendered[_i].tpl, rendered[_i].len, &t, &err) == 0, "%s: %s",
                  rendered[_i].tpl, err);
    ck_assert_msg(template_render(&t, &v, &up, &err) == 0, "%s: %s", rendered[_i].tpl, err);
    ck_assert_str_eq(err, "untouched");
    ck_assert_str_eq(up.user, rendered[_i].user);
    ck_assert_str_eq(up.pass, rendered[_i].pass);
    ck_assert_str_eq(up.host, rendered[_i].host);
    ck_assert_str_eq(up.port_str, rendered[_i].port);
    ck_assert_uint_eq(up.user_len, strlen(up.user));
    ck_assert_uint_eq(up.pass_len, strlen(up.pass));
    ck_assert_uint_eq(up.host_len, strlen(up.host));
    unsigned port;
    ck_assert_int_eq(sscanf(rendered[_i].port, "%u", &port), 1);
    ck_assert_uint_eq(up.port, port);
}
END_TEST

static const struct {
    const char *tpl;
    size_t len;
    const char *err;
} bad_templates[] = {
    {LIT("{username}:{password}{host}:{port}"), "template has no '@' before the host"},
    {LIT("{host}:{port}"), "template has no '@' before the host"},
    {LIT("{username}:{password}@{host}"), "template has no ':' before the port"},
    {LIT("{username}:{password}@:{port}"), "template has an empty host part"},
    {LIT("{username}:{password}@{host}:"), "template has an empty port part"},
    {LIT(":{password}@{host}:{port}"), "template has an empty user part"},
    {LIT("@{host}:{port}"), "template has an empty user part"},
    {LIT("{foo}:{password}@{host}:{port}"), "unknown placeholder in template"},
    {LIT("{USERNAME}:{password}@{host}:{port}"), "unknown placeholder in template"},
    {LIT("{}:{password}@{host}:{port}"), "unknown placeholder in template"},
    {LIT("{ username}:{password}@{host}:{port}"), "unknown placeholder in template"},
    {LIT("{username:{password}@{host}:{port}"), "'{' without '}' in template"},
    {LIT("{{username}}:{password}@{host}:{port}"), "'{' without '}' in template"},
    {LIT("{username}}:{password}@{host}:{port}"), "'}' without '{' in template"},
    {LIT("{username}:{password}@{host}:{port"), "'{' without '}' in template"},
    {LIT("{username}:{pass@word}@{host}:{port}"), "unknown placeholder in template"},
    {LIT("{username}:{password@}{host}:{port}"), "'{' without '}' in template"},
    {LIT("{username}:{password}@proxy host:{port}"),
     "template host part has characters no host has"},
    {LIT("{username}:{password}@{host}/x:{port}"), "template host part has characters no host has"},
    {LIT("{username}:{password}@{host}:80a"), "template port part has characters no port has"},
    {LIT("{username}:{password}@{host}:+80"), "template port part has characters no port has"},
    {LIT("{username}:{password}@{host}: 80"), "template port part has characters no port has"},
    {LIT("{username}:{pass\nword}@{host}:{port}"), "control character in template"},
    {LIT("{username}:{password}@{host}:{port}\0"), "control character in template"},
    {LIT("{username}{username}{username}{username}{username}{username}{username}{username}"
         "{username}{username}{username}{username}{username}{username}{username}{username}"
         "{username}:{password}@{host}:{port}"),
     "template part has too many pieces"},
};

START_TEST(test_compile_refused)
{
    struct template_compiled t;
    const char *err = NULL;
    ck_assert_msg(template_compile(bad_templates[_i].tpl, bad_templates[_i].len, &t, &err) == -1,
                  "'%s' accepted", bad_templates[_i].tpl);
    ck_assert_ptr_nonnull(err);
    ck_assert_str_eq(err, bad_templates[_i].err);
}
END_TEST

START_TEST(test_compile_limits)
{
    static char tpl[TEMPLATE_MAX_LEN + 8];
    struct template_compiled t;
    const char *err = NULL;
    const char tail[] = ":{password}@{host}:{port}";

    /* TEMPLATE_MAX_LEN - 1 bytes compile, one more does not. */
    size_t n = TEMPLATE_MAX_LEN - 1;
    memset(tpl, 'u', n - (sizeof(tail) - 1));
    memcpy(tpl + n - (sizeof(tail) - 1), tail, sizeof(tail) - 1);
    ck_assert_int_eq(template_compile(tpl, n, &t, &err), 0);
    memset(tpl, 'u', n + 1 - (sizeof(tail) - 1));
    memcpy(tpl + n + 1 - (sizeof(tail) - 1), tail, sizeof(tail) - 1);
    ck_assert_int_eq(template_compile(tpl, n + 1, &t, &err), -1);
    ck_assert_str_eq(err, "template too long");

    /* Sixteen pieces in a part are fine. */
    const char sixteen[] = "{username}-{username}-{username}-{username}-{username}-{username}-"
                           "{username}-{username}:{password}@{host}:{port}";
    ck_assert_int_eq(template_compile(sixteen, sizeof(sixteen) - 1, &t, &err), 0);
    /* NULL means the default, like the empty template. */
    ck_assert_int_eq(template_compile(NULL, 0, &t, NULL), 0);
    ck_assert_int_eq(template_compile("x", 1, &t, NULL), -1);
}
END_TEST

START_TEST(test_compiled_is_self_contained)
{
    char tpl[] = "lit-{username}:{password}@{host}:{port}";
    struct template_compiled t;
    struct template_upstream up;
    struct template_values v = ref_values();
    ck_assert_int_eq(template_compile(tpl, strlen(tpl), &t, NULL), 0);
    memset(tpl, '#', strlen(tpl));
    ck_assert_int_eq(template_render(&t, &v, &up, NULL), 0);
    ck_assert_str_eq(up.user, "lit-provideruser");
}
END_TEST

/* Hostile values. Each case: a template, which value is replaced by what,
 * and either the error or the expected parts. */
enum which { W_USER, W_PASS, W_HOST, W_COUNTRY, W_SESSION, W_PORT };
#define FAIL(e)       e, NULL, NULL, NULL
#define PASS(u, p, h) NULL, u, p, h

static const struct {
    const char *tpl;
    enum which which;
    const char *value;
    size_t vlen;
    const char *err; /* NULL: success */
    const char *user, *pass, *host;
} hostile[] = {
    /* provider secrets with '@' and ':' just work */
    {REF_TPL, W_PASS, LIT("p@ss:w:rd@x"),
     PASS("provideruser-country-US-session-abc123-sessTime-10", "p@ss:w:rd@x",
          "proxy.provider.com")},
    {"", W_PASS, LIT(":@:@"), PASS("provideruser", ":@:@", "proxy.provider.com")},
    {"", W_PASS, LIT("@evil.com:80"), PASS("provideruser", "@evil.com:80", "proxy.provider.com")},
    /* a provider username with ':' cannot be sent in Basic */
    {"", W_USER, LIT("us:er"), FAIL("rendered upstream user contains ':'")},
    /* a value with '@' in the user part stays in the user part */
    {REF_TPL, W_SESSION, LIT("x@evil.com"),
     PASS("provideruser-country-US-session-x@evil.com-sessTime-10", "providerpass",
          "proxy.provider.com")},
    {REF_TPL, W_SESSION, LIT("x:y@evil.com"), FAIL("rendered upstream user contains ':'")},
    {REF_TPL, W_COUNTRY, LIT("US:1@evil.com"), FAIL("rendered upstream user contains ':'")},
    {REF_TPL, W_COUNTRY, LIT("US\r\nX-Evil: 1"), FAIL("rendered upstream user contains ':'")},
    {REF_TPL, W_COUNTRY, LIT("US\r\n"),
     FAIL("rendered upstream credentials contain a control character")},
    {REF_TPL, W_SESSION, LIT("a\0b"),
     FAIL("rendered upstream credentials contain a control character")},
    {"", W_PASS, LIT("pa\x7fss"),
     FAIL("rendered upstream credentials contain a control character")},
    {"", W_PASS, LIT("p\tw"), FAIL("rendered upstream credentials contain a control character")},
    /* non-ASCII bytes are allowed in credentials */
    {"", W_PASS, LIT("p\xc3\xa4ss"), PASS("provideruser", "p\xc3\xa4ss", "proxy.provider.com")},
    /* values in the password part cannot reach the host */
    {"{username}:{password}-{session_id}@{host}:{port}", W_SESSION, LIT("a:b@c.com:1"),
     PASS("provideruser", "providerpass-a:b@c.com:1", "proxy.provider.com")},
    /* values in the host part must make a host */
    {"{username}:{password}@{country}.{host}:{port}", W_COUNTRY, LIT("us"),
     PASS("provideruser", "providerpass", "us.proxy.provider.com")},
    {"{username}:{password}@{country}.{host}:{port}", W_COUNTRY, LIT("United States"),
     FAIL("rendered upstream host is not a host name or [IPv6] literal")},
    {"{username}:{password}@{country}.{host}:{port}", W_COUNTRY, LIT("evil.com:80@x"),
     FAIL("rendered upstream host is not a host name or [IPv6] literal")},
    {"", W_HOST, LIT("evil.com/x"),
     FAIL("rendered upstream host is not a host name or [IPv6] literal")},
    {"", W_HOST, LIT("a@b"), FAIL("rendered upstream host is not a host name or [IPv6] literal")},
    {"", W_HOST, LIT("h:1"), FAIL("rendered upstream host is not a host name or [IPv6] literal")},
    {"", W_HOST, LIT(""), FAIL("rendered upstream host is not a host name or [IPv6] literal")},
    {"", W_HOST, LIT("[::1]"), PASS("provideruser", "providerpass", "[::1]")},
    {"", W_HOST, LIT("[zz::1]"),
     FAIL("rendered upstream host is not a host name or [IPv6] literal")},
    {"", W_HOST, LIT("[::1"), FAIL("rendered upstream host is not a host name or [IPv6] literal")},
    {"", W_HOST, LIT("[]"), FAIL("rendered upstream host is not a host name or [IPv6] literal")},
    /* a NUL inside the brackets ended inet_pton's input early: "[::1\0junk]" passed (fuzzer) */
    {"", W_HOST, LIT("[::1\0junk]"),
     FAIL("rendered upstream host is not a host name or [IPv6] literal")},
    {"", W_HOST, LIT("[1.2.3.4]"),
     FAIL("rendered upstream host is not a host name or [IPv6] literal")},
    {"", W_HOST, LIT("ho st"), FAIL("rendered upstream host is not a host name or [IPv6] literal")},
    /* ports */
    {"{username}:{password}@{host}:{country}", W_COUNTRY, LIT("8a"),
     FAIL("rendered upstream port is not a number from 1 to 65535")},
    {"{username}:{password}@{host}:{country}", W_COUNTRY, LIT("-1"),
     FAIL("rendered upstream port is not a number from 1 to 65535")},
    {"{username}:{password}@{host}:{country}", W_COUNTRY, LIT("65536"),
     FAIL("rendered upstream port is not a number from 1 to 65535")},
    {"{username}:{password}@{host}:{country}", W_COUNTRY, LIT("99999999999999999999"),
     FAIL("rendered upstream port is not a number from 1 to 65535")},
    {"{username}:{password}@{host}:{country}", W_COUNTRY, LIT(""),
     FAIL("rendered upstream port is not a number from 1 to 65535")},
    {"{username}:{password}@{host}:{country}", W_COUNTRY, LIT("65535"),
     PASS("provideruser", "providerpass", "proxy.provider.com")},
    {"{username}:{password}@{host}:{port}", W_PORT, LIT("0"),
     FAIL("rendered upstream port is not a number from 1 to 65535")},
    {"{username}:{password}@{host}:1{port}", W_PORT, LIT("65535"),
     FAIL("rendered upstream port is not a number from 1 to 65535")},
    /* empty user */
    {"{session_id}:{password}@{host}:{port}", W_SESSION, LIT(""),
     FAIL("rendered upstream user is empty")},
};

START_TEST(test_render_hostile)
{
    struct template_compiled t;
    struct template_upstream up;
    struct template_values v = ref_values();
    const char *err = NULL;
    const char *val = hostile[_i].value;
    size_t vlen = hostile[_i].vlen;
    switch (hostile[_i].which) {
    case W_USER:
        v.username = val, v.username_len = vlen;
        break;
    case W_PASS:
        v.password = val, v.password_len = vlen;
        break;
    case W_HOST:
        v.host = val, v.host_len = vlen;
        break;
    case W_COUNTRY:
        v.country = val, v.country_len = vlen;
        break;
    case W_SESSION:
        v.session_id = val, v.session_id_len = vlen;
        break;
    case W_PORT:
        v.port = (uint16_t)atoi(val);
        break;
    }
    ck_assert_int_eq(template_compile(hostile[_i].tpl, strlen(hostile[_i].tpl), &t, &err), 0);
    int rc = template_render(&t, &v, &up, &err);
    if (hostile[_i].err != NULL) {
        ck_assert_msg(rc == -1, "case %d rendered user '%s' host '%s'", _i, up.user, up.host);
        ck_assert_str_eq(err, hostile[_i].err);
        /* nothing half-rendered is left behind */
        ck_assert_str_eq(up.user, "");
        ck_assert_str_eq(up.host, "");
        ck_assert_uint_eq(up.port, 0);
    } else {
        ck_assert_msg(rc == 0, "case %d: %s", _i, err);
        ck_assert_uint_eq(up.user_len, strlen(hostile[_i].user));
        ck_assert(memcmp(up.user, hostile[_i].user, up.user_len) == 0);
        ck_assert_uint_eq(up.pass_len, strlen(hostile[_i].pass));
        ck_assert(memcmp(up.pass, hostile[_i].pass, up.pass_len) == 0);
        ck_assert_str_eq(up.host, hostile[_i].host);
    }
}
END_TEST

START_TEST(test_render_lengths)
{
    static char big[TEMPLATE_PART_MAX + 8];
    struct template_compiled t;
    struct template_upstream up;
    struct template_values v = ref_values();
    const char *err = NULL;
    ck_assert_int_eq(template_compile("", 0, &t, NULL), 0);

    /* TEMPLATE_PART_MAX - 1 bytes fit in each part; one more does not. */
    memset(big, 'p', sizeof(big));
    v.password = big, v.password_len = TEMPLATE_PART_MAX - 1;
    ck_assert_int_eq(template_render(&t, &v, &up, &err), 0);
    ck_assert_uint_eq(up.pass_len, TEMPLATE_PART_MAX - 1);
    ck_assert_uint_eq(strlen(up.pass), TEMPLATE_PART_MAX - 1);
    v.password_len = TEMPLATE_PART_MAX;
    ck_assert_int_eq(template_render(&t, &v, &up, &err), -1);
    ck_assert_str_eq(err, "rendered upstream password too long");

    v = ref_values();
    v.username = big, v.username_len = TEMPLATE_PART_MAX;
    ck_assert_int_eq(template_render(&t, &v, &up, &err), -1);
    ck_assert_str_eq(err, "rendered upstream user too long");

    v = ref_values();
    memset(big, 'h', sizeof(big));
    v.host = big, v.host_len = TEMPLATE_PART_MAX;
    ck_assert_int_eq(template_render(&t, &v, &up, &err), -1);
    ck_assert_str_eq(err, "rendered upstream host too long");

    /* Overflow comes from the sum of pieces, not from any one piece. */
    ck_assert_int_eq(template_compile("{username}{username}:p@h:1", 26, &t, NULL), 0);
    v = ref_values();
    memset(big, 'u', sizeof(big));
    v.username = big, v.username_len = TEMPLATE_PART_MAX / 2;
    ck_assert_int_eq(template_render(&t, &v, &up, &err), -1);
    ck_assert_str_eq(err, "rendered upstream user too long");
    v.username_len = TEMPLATE_PART_MAX / 2 - 1;
    ck_assert_int_eq(template_render(&t, &v, &up, &err), 0);

    /* NULL strings read as empty. */
    ck_assert_int_eq(template_compile(REF_TPL, strlen(REF_TPL), &t, NULL), 0);
    v = ref_values();
    v.country = NULL, v.country_len = 2;
    v.session_id = NULL, v.session_id_len = 0;
    v.password = NULL, v.password_len = 9;
    ck_assert_int_eq(template_render(&t, &v, &up, &err), 0);
    ck_assert_str_eq(up.user, "provideruser-country--session--sessTime-10");
    ck_assert_str_eq(up.pass, "");
}
END_TEST

START_TEST(test_every_port)
{
    struct template_compiled t;
    struct template_upstream up;
    struct template_values v = ref_values();
    ck_assert_int_eq(template_compile("", 0, &t, NULL), 0);
    for (unsigned p = 1; p <= 65535; p++) {
        v.port = (uint16_t)p;
        ck_assert_int_eq(template_render(&t, &v, &up, NULL), 0);
        ck_assert_uint_eq(up.port, p);
    }
}
END_TEST

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

Suite *template_suite(void)
{
    Suite *s = suite_create("template");
    TCase *tc = tcase_create("compile");
    tcase_add_loop_test(tc, test_compile_refused, 0, N(bad_templates));
    tcase_add_test(tc, test_compile_limits);
    tcase_add_test(tc, test_compiled_is_self_contained);
    suite_add_tcase(s, tc);

    tc = tcase_create("render");
    tcase_add_loop_test(tc, test_render_ok, 0, N(rendered));
    tcase_add_loop_test(tc, test_render_hostile, 0, N(hostile));
    tcase_add_test(tc, test_render_lengths);
    tcase_add_test(tc, test_every_port);
    suite_add_tcase(s, tc);
    return s;
}
