/*
 * Unit tests for agent/settle/traffic_record.c: the billing record's strict JSON
 * reader (every escape, UTF-8, numbers at and past the int64 edges, each
 * refusal and its reason), the fitting of descriptive fields to their
 * columns, and the dead-letter writer (exact bytes, and a round trip through
 * the reader), and agreement with the producer (agent/gw/billing_record.c).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "billing_record.h"
#include "traffic_record.h"
#include "utf8.h"

extern Suite *traffic_record_suite(void);

#define LIT(s) s, sizeof(s) - 1

/* The reference's example record, plus request_id. */
static const char *const members[TRAFFIC_F_COUNT][2] = {
    {"username", "\"myuser\""},
    {"request_bytes", "1024"},
    {"response_bytes", "4096"},
    {"target_host", "\"api.example.com:443\""},
    {"target_method", "\"CONNECT\""},
    {"proxy_slug", "\"example-provider\""},
    {"country", "\"US\""},
    {"session_id", "\"abc123\""},
    {"duration", "5"},
    {"status_code", "200"},
    {"client_ip", "\"203.0.113.50\""},
    {"timestamp", "1703001234567"},
    {"request_id", "\"req-1\""},
};

/* The example with member `name` given the JSON value `value` (NULL: left
 * out), then `extra` appended inside the object. Static buffer. */
static const char *rec_with(const char *name, const char *value, const char *extra)
{
    static char buf[200000];
    size_t n = 0;
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "{");
    bool first = true;
    for (int f = 0; f < TRAFFIC_F_COUNT; f++) {
        const char *v = members[f][1];
        if (name != NULL && strcmp(name, members[f][0]) == 0) {
            if (value == NULL) continue;
            v = value;
        }
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s\"%s\":%s", first ? "" : ",",
                              members[f][0], v);
        first = false;
    }
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s}", extra ? extra : "");
    ck_assert_uint_lt(n, sizeof(buf) - 1);
    return buf;
}

static int parse(const char *json, struct traffic_record *r, char *err, size_t errlen)
{
    return traffic_record_parse(json, strlen(json), r, err, errlen);
}

START_TEST(test_reference_example)
{
    struct traffic_record r;
    char err[160];
    int rc = parse(rec_with(NULL, NULL, NULL), &r, err, sizeof(err));
    ck_assert_msg(rc == 0, "%s", err);
    ck_assert_str_eq(r.username, "myuser");
    ck_assert_int_eq(r.request_bytes, 1024);
    ck_assert_int_eq(r.response_bytes, 4096);
    ck_assert_str_eq(r.target_host, "api.example.com:443");
    ck_assert_str_eq(r.target_method, "CONNECT");
    ck_assert_str_eq(r.proxy_slug, "example-provider");
    ck_assert_str_eq(r.country, "US");
    ck_assert_str_eq(r.session_id, "abc123");
    ck_assert_int_eq(r.duration, 5);
    ck_assert_int_eq(r.status_code, 200);
    ck_assert_str_eq(r.client_ip, "203.0.113.50");
    ck_assert_int_eq(r.timestamp_ms, 1703001234567);
    ck_assert_str_eq(r.request_id, "req-1");
    ck_assert_uint_eq(r.truncated, 0);
}
END_TEST

START_TEST(test_whitespace_order_unknown)
{
    static const char json[] =
        " \t\r\n{ \"request_id\" : \"z\" "
        ",\n\"timestamp\":0,\"client_ip\":\"::1\",\"status_code\":-1,"
        "\"duration\":-0,\"session_id\":\"\",\"country\":\"\",\"proxy_slug\":\"\","
        "\"target_method\":\"\",\"target_host\":\"\",\"response_bytes\":0,\"request_bytes\":0,"
        "\"node\":\"gw-2\",\"sampled\":true,\"weight\":1.5e3,\"gone\":null,\"off\":false,"
        "\"\":\"empty key\",\"username\":\"u\"}\r\n ";
    struct traffic_record r;
    char err[160];
    ck_assert_msg(parse(json, &r, err, sizeof(err)) == 0, "%s", err);
    ck_assert_str_eq(r.username, "u");
    ck_assert_str_eq(r.request_id, "z");
    ck_assert_int_eq(r.duration, 0);
    ck_assert_int_eq(r.status_code, -1);
    ck_assert_str_eq(r.client_ip, "::1");
    ck_assert_str_eq(r.target_host, "");
}
END_TEST

/* A descriptive string's JSON spelling and the bytes it must decode to. */
static const struct {
    const char *json;
    const char *bytes;
} strings[] = {
    {"\"plain\"", "plain"},
    {"\"q\\\"b\\\\s\\/\"", "q\"b\\s/"},
    {"\"\\b\\f\\n\\r\\t\"", "\b\f\n\r\t"},
    {"\"\\u0001\\u001f\\u007f\"", "\x01\x1f\x7f"},
    {"\"\\u00e9\\u00E9\"", "\xc3\xa9\xc3\xa9"},
    {"\"\\u20ac\\u20AC\"", "\xe2\x82\xac\xe2\x82\xac"},
    {"\"\\uffff\"", "\xef\xbf\xbf"},
    {"\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80"},
    {"\"\\uD83D\\uDE00\"", "\xf0\x9f\x98\x80"},
    {"\"\\udbff\\udfff\"", "\xf4\x8f\xbf\xbf"},
    {"\"\\ud800\\udc00\"", "\xf0\x90\x80\x80"},
    {"\"raw \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\"",
     "raw \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf"},
    {"\"a\\u0000b\"", "a\xef\xbf\xbd"
                      "b"}, /* NUL cannot go to PostgreSQL: U+FFFD */
    {"\"{\\\"x\\\":[1,2]}\"", "{\"x\":[1,2]}"},
    {"\"\x7f\"", "\x7f"},
};

START_TEST(test_string_escapes)
{
    struct traffic_record r;
    char err[160];
    int rc = parse(rec_with("target_host", strings[_i].json, NULL), &r, err, sizeof(err));
    ck_assert_msg(rc == 0, "%s: %s", strings[_i].json, err);
    ck_assert_str_eq(r.target_host, strings[_i].bytes);
    ck_assert_uint_eq(r.truncated, 0);
    /* the same escapes in a key: "user\u006eame" is username */
    rc = parse("{\"user\\u006eame\":\"u\",\"request_bytes\":1,\"response_bytes\":2,"
               "\"target_host\":\"h\",\"target_method\":\"m\",\"proxy_slug\":\"p\","
               "\"country\":\"c\",\"session_id\":\"s\",\"duration\":1,\"status_code\":2,"
               "\"client_ip\":\"i\",\"timestamp\":3,\"request_id\":\"r\"}",
               &r, err, sizeof(err));
    ck_assert_msg(rc == 0, "%s", err);
    ck_assert_str_eq(r.username, "u");
}
END_TEST

START_TEST(test_billing_strings_exact)
{
    struct traffic_record r;
    char err[160];
    ck_assert_int_eq(
        parse(rec_with("username", "\"\\u00e9l\\u00e8ve\\\"\\\\\"", NULL), &r, err, sizeof(err)),
        0);
    ck_assert_str_eq(r.username, "\xc3\xa9l\xc3\xa8ve\"\\");
    ck_assert_int_eq(
        parse(rec_with("request_id", "\"\\u0041-\\ud83d\\ude00\"", NULL), &r, err, sizeof(err)), 0);
    ck_assert_str_eq(r.request_id, "A-\xf0\x9f\x98\x80");
}
END_TEST

START_TEST(test_number_edges)
{
    struct traffic_record r;
    char err[160];
    ck_assert_int_eq(
        parse(rec_with("request_bytes", "9223372036854775807", ",\"zz\":1"), &r, err, sizeof(err)),
        -1);
    ck_assert_str_eq(err, "request_bytes + response_bytes overflows int64");
    /* at the edge with the other count 0 */
    char json[600];
    snprintf(json, sizeof(json), "%s", rec_with("response_bytes", "0", NULL));
    const char *p = strstr(json, "\"request_bytes\":1024");
    ck_assert_ptr_nonnull(p);
    char fixed[700];
    snprintf(fixed, sizeof(fixed), "%.*s\"request_bytes\":9223372036854775807%s", (int)(p - json),
             json, p + strlen("\"request_bytes\":1024"));
    ck_assert_msg(parse(fixed, &r, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(r.request_bytes, INT64_MAX);
    ck_assert_int_eq(r.response_bytes, 0);

    ck_assert_int_eq(parse(rec_with("duration", "2147483647", NULL), &r, err, sizeof(err)), 0);
    ck_assert_int_eq(r.duration, INT32_MAX);
    ck_assert_int_eq(parse(rec_with("status_code", "-2147483648", NULL), &r, err, sizeof(err)), 0);
    ck_assert_int_eq(r.status_code, INT32_MIN);
    ck_assert_int_eq(parse(rec_with("timestamp", "253402300799999", NULL), &r, err, sizeof(err)),
                     0);
    ck_assert_int_eq(r.timestamp_ms, TRAFFIC_TIMESTAMP_MAX);
    ck_assert_int_eq(parse(rec_with("timestamp", "0", NULL), &r, err, sizeof(err)), 0);
    /* unknown members may hold any number, even past int64 */
    ck_assert_int_eq(parse(rec_with(NULL, NULL,
                                    ",\"big\":-99999999999999999999999,"
                                    "\"r\":-0.5E-7,\"e\":1e+400,\"m\":-9223372036854775808"),
                           &r, err, sizeof(err)),
                     0);
}
END_TEST

START_TEST(test_truncation)
{
    struct traffic_record r;
    char err[160];
    static char host[4000], want[4000];
    /* 300 ASCII characters: cut to 255 */
    host[0] = '"';
    memset(host + 1, 'h', 300);
    strcpy(host + 301, "\"");
    ck_assert_int_eq(parse(rec_with("target_host", host, NULL), &r, err, sizeof(err)), 0);
    ck_assert_uint_eq(strlen(r.target_host), 255);
    ck_assert_uint_eq(r.truncated, 1u << TRAFFIC_F_TARGET_HOST);
    /* 300 two-byte characters: cut to 255 characters, never inside one */
    size_t n = 0;
    host[n++] = '"';
    for (int i = 0; i < 300; i++) {
        memcpy(host + n, "\xc3\xa9", 2);
        n += 2;
    }
    strcpy(host + n, "\"");
    ck_assert_int_eq(parse(rec_with("target_host", host, NULL), &r, err, sizeof(err)), 0);
    ck_assert_uint_eq(strlen(r.target_host), 510);
    for (int i = 0; i < 255; i++)
        memcpy(want + 2 * i, "\xc3\xa9", 2);
    want[510] = '\0';
    ck_assert_str_eq(r.target_host, want);
    /* 255 four-byte characters fit exactly */
    n = 0;
    host[n++] = '"';
    for (int i = 0; i < 255; i++) {
        memcpy(host + n, "\\ud83d\\ude00", 12);
        n += 12;
    }
    strcpy(host + n, "\"");
    ck_assert_int_eq(parse(rec_with("proxy_slug", host, NULL), &r, err, sizeof(err)), 0);
    ck_assert_uint_eq(strlen(r.proxy_slug), 1020);
    ck_assert_uint_eq(r.truncated, 0);
    /* every descriptive column at width + 1 */
    ck_assert_int_eq(
        parse(rec_with("target_method", "\"OPTIONSXXXY\"", NULL), &r, err, sizeof(err)), 0);
    ck_assert_str_eq(r.target_method, "OPTIONSXXX");
    ck_assert_uint_eq(r.truncated, 1u << TRAFFIC_F_TARGET_METHOD);
    ck_assert_int_eq(parse(rec_with("country", "\"12345678901\"", NULL), &r, err, sizeof(err)), 0);
    ck_assert_str_eq(r.country, "1234567890");
    ck_assert_int_eq(
        parse(rec_with("client_ip", "\"0000:0000:0000:0000:0000:ffff:255.255.255.2551\"", NULL), &r,
              err, sizeof(err)),
        0);
    ck_assert_uint_eq(strlen(r.client_ip), 45);
    memset(host, 's', 101);
    host[0] = '"';
    strcpy(host + 102, "\"");
    ck_assert_int_eq(parse(rec_with("session_id", host, NULL), &r, err, sizeof(err)), 0);
    ck_assert_uint_eq(strlen(r.session_id), 100);
    ck_assert_uint_eq(r.truncated, 1u << TRAFFIC_F_SESSION_ID);
}
END_TEST

START_TEST(test_billing_lengths)
{
    struct traffic_record r;
    char err[160];
    static char v[4000];
    /* username: 255 characters (4-byte ones) accepted, 256 refused */
    size_t n = 0;
    v[n++] = '"';
    for (int i = 0; i < 255; i++) {
        memcpy(v + n, "\xf0\x9f\x98\x80", 4);
        n += 4;
    }
    strcpy(v + n, "\"");
    ck_assert_msg(parse(rec_with("username", v, NULL), &r, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(strlen(r.username), 1020);
    strcpy(v + n, "x\"");
    ck_assert_int_eq(parse(rec_with("username", v, NULL), &r, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "username: longer than 255 characters (no such user)");
    /* request_id: 256 bytes accepted, 257 refused */
    v[0] = '"';
    memset(v + 1, 'r', 256);
    strcpy(v + 257, "\"");
    ck_assert_int_eq(parse(rec_with("request_id", v, NULL), &r, err, sizeof(err)), 0);
    ck_assert_uint_eq(strlen(r.request_id), 256);
    memset(v + 1, 'r', 257);
    strcpy(v + 258, "\"");
    ck_assert_int_eq(parse(rec_with("request_id", v, NULL), &r, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "request_id: longer than 256 bytes");
}
END_TEST

START_TEST(test_missing_each)
{
    struct traffic_record r;
    char err[160], want[80];
    ck_assert_int_eq(parse(rec_with(members[_i][0], NULL, NULL), &r, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "missing member \"%s\"", members[_i][0]);
    ck_assert_str_eq(err, want);
    ck_assert_str_eq(traffic_field_name((enum traffic_field)_i), members[_i][0]);
}
END_TEST

START_TEST(test_duplicate_each)
{
    struct traffic_record r;
    char err[160], extra[120], want[80];
    snprintf(extra, sizeof(extra), ",\"%s\":%s", members[_i][0], members[_i][1]);
    ck_assert_int_eq(parse(rec_with(NULL, NULL, extra), &r, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "duplicate member \"%s\"", members[_i][0]);
    ck_assert_str_eq(err, want);
}
END_TEST

/* A member's bad value and the reason given; "@n: what" stands for
 * "invalid JSON at byte <the value's offset + n>: what". */
static const struct {
    const char *name;
    const char *value;
    const char *reason;
} refused[] = {
    /* wrong types */
    {"username", "5", "username: must be a string"},
    {"username", "null", "username: must be a string"},
    {"target_host", "true", "target_host: must be a string"},
    {"request_id", "7", "request_id: must be a string"},
    {"request_bytes", "\"5\"", "request_bytes: must be an integer"},
    {"request_bytes", "1.5", "request_bytes: must be an integer"},
    {"request_bytes", "1e3", "request_bytes: must be an integer"},
    {"request_bytes", "1.0", "request_bytes: must be an integer"},
    {"response_bytes", "null", "response_bytes: must be an integer"},
    {"duration", "false", "duration: must be an integer"},
    {"timestamp", "\"1703001234567\"", "timestamp: must be an integer"},
    /* ranges */
    {"request_bytes", "-1", "request_bytes: -1 is out of range 0..9223372036854775807"},
    {"response_bytes", "-9223372036854775808",
     "response_bytes: -9223372036854775808 is out of range 0..9223372036854775807"},
    {"request_bytes", "9223372036854775808", "request_bytes: out of range"},
    {"request_bytes", "-9223372036854775809", "request_bytes: out of range"},
    {"response_bytes", "99999999999999999999999999999", "response_bytes: out of range"},
    {"duration", "2147483648", "duration: 2147483648 is out of range -2147483648..2147483647"},
    {"status_code", "-2147483649",
     "status_code: -2147483649 is out of range -2147483648..2147483647"},
    {"timestamp", "-1", "timestamp: -1 is out of range 0..253402300799999"},
    {"timestamp", "253402300800000",
     "timestamp: 253402300800000 is out of range 0..253402300799999"},
    /* billing strings */
    {"username", "\"\"", "username: empty"},
    {"request_id", "\"\"", "request_id: empty"},
    {"username", "\"my\\u0000user\"", "username: contains U+0000"},
    {"request_id", "\"r\\u0000\"", "request_id: contains U+0000"},
    /* nesting */
    {"target_host", "{}", "@0: nested objects and arrays are not accepted"},
    {"country", "[\"US\"]", "@0: nested objects and arrays are not accepted"},
    /* bad strings */
    {"target_host", "\"a\\x\"", "@2: invalid escape"},
    {"target_host", "\"\\u12\"", "@1: \\u must be followed by 4 hex digits"},
    {"target_host", "\"\\u12G4\"", "@1: \\u must be followed by 4 hex digits"},
    {"target_host", "\"\\ud83d\"", "@1: high surrogate not followed by a low one in \\u escapes"},
    {"target_host", "\"\\ud83d\\u0041\"",
     "@1: high surrogate not followed by a low one in \\u escapes"},
    {"target_host", "\"\\ud83d\\ud83d\"",
     "@1: high surrogate not followed by a low one in \\u escapes"},
    {"target_host", "\"\\ude00\"", "@1: lone low surrogate in \\u escape"},
    {"target_host", "\"a\x01\"", "@2: raw control character in a string (must be escaped)"},
    {"target_host", "\"a\tb\"", "@2: raw control character in a string (must be escaped)"},
    {"target_host", "\"a\nb\"", "@2: raw control character in a string (must be escaped)"},
    {"target_host", "\"\xc0\x80\"", "@1: invalid UTF-8 in a string"},
    {"target_host", "\"\xc1\xbf\"", "@1: invalid UTF-8 in a string"},
    {"target_host", "\"\xe0\x80\xaf\"", "@1: invalid UTF-8 in a string"},
    {"target_host", "\"\xed\xa0\x80\"", "@1: invalid UTF-8 in a string"},
    {"target_host", "\"\xf0\x80\x80\xaf\"", "@1: invalid UTF-8 in a string"},
    {"target_host", "\"\xf4\x90\x80\x80\"", "@1: invalid UTF-8 in a string"},
    {"target_host", "\"\xf5\x80\x80\x80\"", "@1: invalid UTF-8 in a string"},
    {"target_host", "\"\x80\"", "@1: invalid UTF-8 in a string"},
    {"target_host", "\"\xe2\x82\"", "@1: invalid UTF-8 in a string"},
    {"target_host", "\"\xff\"", "@1: invalid UTF-8 in a string"},
    {"username", "\"my\xfeuser\"", "@3: invalid UTF-8 in a string"},
    /* bad numbers and literals */
    {"duration", "01", "@1: leading zero in a number"},
    {"duration", "-", "@1: invalid number"},
    {"duration", "+1", "@0: expected a value"},
    {"duration", "1.", "@2: digit expected after '.'"},
    {"duration", ".5", "@0: expected a value"},
    {"duration", "1e", "@2: digit expected in exponent"},
    {"duration", "1e+", "@3: digit expected in exponent"},
    {"duration", "0x10", "@1: expected ',' or '}'"},
    {"duration", "5 5", "@2: expected ',' or '}'"},
    {"duration", "NaN", "@0: expected a value"},
    {"duration", "Infinity", "@0: expected a value"},
    {"status_code", "tru", "@0: expected a value"},
    {"status_code", "nul", "@0: expected a value"},
    {"status_code", "True", "@0: expected a value"},
    {"status_code", "'200'", "@0: expected a value"},
    {"status_code", "", "@0: expected a value"},
};

START_TEST(test_refused)
{
    struct traffic_record r;
    char err[160];
    const char *json = rec_with(refused[_i].name, refused[_i].value, NULL);
    char want[200], key[40];
    const char *reason = refused[_i].reason;
    if (reason[0] == '@') {
        snprintf(key, sizeof(key), "\"%s\":", refused[_i].name);
        const char *at = strstr(json, key);
        ck_assert_ptr_nonnull(at);
        char *rest;
        long rel = strtol(reason + 1, &rest, 10);
        snprintf(want, sizeof(want), "invalid JSON at byte %ld%s",
                 (long)(at - json) + (long)strlen(key) + rel, rest);
        reason = want;
    }
    ck_assert_msg(parse(json, &r, err, sizeof(err)) == -1, "accepted: %s", json);
    ck_assert_str_eq(err, reason);
}
END_TEST

/* Whole inputs that are not one well-formed object. */
static const struct {
    const char *in;
    size_t len;
    const char *reason;
} malformed[] = {
    {LIT(""), "invalid JSON at byte 0: expected an object"},
    {LIT("   "), "invalid JSON at byte 3: expected an object"},
    {LIT("null"), "invalid JSON at byte 0: expected an object"},
    {LIT("[]"), "invalid JSON at byte 0: expected an object"},
    {LIT("\"str\""), "invalid JSON at byte 0: expected an object"},
    {LIT("\xef\xbb\xbf{}"), "invalid JSON at byte 0: expected an object"}, /* BOM */
    {LIT("{"), "invalid JSON at byte 1: expected a member name"},
    {LIT("{\"a\""), "invalid JSON at byte 4: expected ':'"},
    {LIT("{\"a\":"), "invalid JSON at byte 5: expected a value"},
    {LIT("{\"a\":1"), "invalid JSON at byte 6: expected ',' or '}'"},
    {LIT("{\"a\":1,}"), "invalid JSON at byte 7: expected a member name"},
    {LIT("{,}"), "invalid JSON at byte 1: expected a member name"},
    {LIT("{\"a\" 1}"), "invalid JSON at byte 5: expected ':'"},
    {LIT("{\"a\":1 \"b\":2}"), "invalid JSON at byte 7: expected ',' or '}'"},
    {LIT("{a:1}"), "invalid JSON at byte 1: expected a member name"},
    {LIT("{'a':1}"), "invalid JSON at byte 1: expected a member name"},
    {LIT("{\"a\":\"x}"), "invalid JSON at byte 8: unterminated string"},
    {LIT("{\"a\":\"x\\"), "invalid JSON at byte 7: unterminated escape"},
    {LIT("{\"a\\u00"), "invalid JSON at byte 3: \\u must be followed by 4 hex digits"},
    {LIT("{}x"), "invalid JSON at byte 2: trailing bytes after the object"},
    {LIT("{}{}"), "invalid JSON at byte 2: trailing bytes after the object"},
    {LIT("{} ,"), "invalid JSON at byte 3: trailing bytes after the object"},
    {LIT("{}\0"), "invalid JSON at byte 2: trailing bytes after the object"},
    {LIT("\0{}"), "invalid JSON at byte 0: expected an object"},
    {LIT("{\"a\":1}\n{\"b\":2}"), "invalid JSON at byte 8: trailing bytes after the object"},
    {LIT("{\"a\":{\"b\":1}}"),
     "invalid JSON at byte 5: nested objects and arrays are not accepted"},
    {LIT("{}"), "missing member \"username\""},
    {LIT("{\"x\":1,\"x\":2}"), "duplicate member \"x\""},
    {LIT("{\"\\u0078\":1,\"x\":2}"), "duplicate member \"x\""},
    {LIT("{\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5,\"f\":6,\"g\":7,\"h\":8,\"i\":9,\"j\":10,"
         "\"k\":11,\"l\":12,\"m\":13,\"n\":14,\"o\":15,\"p\":16,\"q\":17}"),
     "more than 16 unknown members"},
};

START_TEST(test_malformed)
{
    struct traffic_record r;
    char err[160];
    ck_assert_int_eq(
        traffic_record_parse(malformed[_i].in, malformed[_i].len, &r, err, sizeof(err)), -1);
    ck_assert_str_eq(err, malformed[_i].reason);
}
END_TEST

START_TEST(test_trailing_and_prefix)
{
    struct traffic_record r;
    char err[160], buf[800];
    const char *ok = rec_with(NULL, NULL, NULL);
    ck_assert_int_eq(parse(ok, &r, err, sizeof(err)), 0);
    snprintf(buf, sizeof(buf), "%s garbage", ok);
    ck_assert_int_eq(parse(buf, &r, err, sizeof(err)), -1);
    ck_assert_str_eq(err + strcspn(err, ":"), ": trailing bytes after the object");
    /* the same bytes with the trailing part cut off by len are fine */
    ck_assert_int_eq(traffic_record_parse(buf, strlen(ok), &r, err, sizeof(err)), 0);
    /* every proper prefix is refused */
    for (size_t n = 0; n < strlen(ok); n++)
        ck_assert_msg(traffic_record_parse(ok, n, &r, err, sizeof(err)) == -1, "prefix %zu", n);
}
END_TEST

START_TEST(test_size_cap)
{
    struct traffic_record r;
    char err[160];
    size_t n = TRAFFIC_RECORD_MAX_LEN + 1;
    char *big = malloc(n);
    ck_assert_ptr_nonnull(big);
    /* a valid record padded with whitespace to one byte past the cap */
    const char *ok = rec_with(NULL, NULL, NULL);
    size_t oklen = strlen(ok);
    memset(big, ' ', n);
    memcpy(big, ok, oklen);
    ck_assert_int_eq(traffic_record_parse(big, n - 1, &r, err, sizeof(err)), 0);
    ck_assert_int_eq(traffic_record_parse(big, n, &r, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "record longer than 65536 bytes");
    free(big);
}
END_TEST

START_TEST(test_err_optional)
{
    struct traffic_record r;
    char tiny[8];
    ck_assert_int_eq(traffic_record_parse(LIT("nope"), &r, NULL, 0), -1);
    ck_assert_int_eq(traffic_record_parse(LIT("nope"), &r, tiny, sizeof(tiny)), -1);
    ck_assert_str_eq(tiny, "invalid");
}
END_TEST

START_TEST(test_utf8_valid)
{
    ck_assert(utf8_valid(LIT("")));
    ck_assert(utf8_valid(LIT("a\0b")));
    ck_assert(utf8_valid(
        LIT("\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf")));
    ck_assert(!utf8_valid(LIT("\xc2")));
    ck_assert(!utf8_valid(LIT("\xc2\x7f")));
    ck_assert(!utf8_valid(LIT("\xed\xbf\xbf")));
    ck_assert(!utf8_valid(LIT("\xf4\x90\x80\x80")));
    ck_assert(!utf8_valid(LIT("\xf8\x88\x80\x80\x80")));
}
END_TEST

START_TEST(test_json_quote)
{
    char out[200];
    size_t n = traffic_json_quote(LIT("a\"b\\c/\n\r\t\b\f\x01\x1f\x7f\xc3\xa9\xff\xe2\x82"), out,
                                  sizeof(out));
    ck_assert_uint_gt(n, 0);
    out[n] = '\0';
    ck_assert_str_eq(out, "\"a\\\"b\\\\c/\\n\\r\\t\\b\\f\\u0001\\u001f\\u007f\xc3\xa9\\ufffd\\ufffd"
                          "\\ufffd\"");
    ck_assert_uint_eq(traffic_json_quote(LIT("\0"), out, sizeof(out)), 8);
    ck_assert(memcmp(out, "\"\\u0000\"", 8) == 0);
    /* too small for the worst case: refused, nothing written past cap */
    ck_assert_uint_eq(traffic_json_quote(LIT("ab"), out, traffic_json_quote_max(2) - 1), 0);
    ck_assert_uint_eq(traffic_json_quote(LIT("ab"), out, traffic_json_quote_max(2)), 4);
}
END_TEST

START_TEST(test_dead_letter_exact)
{
    size_t n;
    char *d = traffic_dead_letter("bad \"thing\"", LIT("{\"a\":\n1}"), &n);
    ck_assert_ptr_nonnull(d);
    ck_assert_str_eq(d, "{\"reason\":\"bad \\\"thing\\\"\",\"record\":\"{\\\"a\\\":\\n1}\"}");
    ck_assert_uint_eq(n, strlen(d));
    free(d);
    d = traffic_dead_letter("r", LIT("x\xff\0y"), &n);
    ck_assert_ptr_nonnull(d);
    ck_assert_str_eq(d, "{\"reason\":\"r\",\"record\":\"x\\ufffd\\u0000y\","
                        "\"record_base64\":\"eP8AeQ==\"}");
    free(d);
    d = traffic_dead_letter("", LIT(""), &n);
    ck_assert_str_eq(d, "{\"reason\":\"\",\"record\":\"\"}");
    free(d);
}
END_TEST

struct dl {
    const char *reason, *record, *b64;
    size_t record_len;
    int members;
};

static int dl_member(void *ctx, const char *key, size_t klen, const struct json_value *v, char *err,
                     size_t errlen)
{
    struct dl *d = ctx;
    (void)klen;
    (void)err;
    (void)errlen;
    ck_assert_int_eq(v->kind, JSON_STRING);
    d->members++;
    if (strcmp(key, "reason") == 0) d->reason = v->str;
    if (strcmp(key, "record") == 0) {
        d->record = v->str;
        d->record_len = v->len;
    }
    if (strcmp(key, "record_base64") == 0) d->b64 = v->str;
    return 0;
}

START_TEST(test_dead_letter_round_trip)
{
    /* every escape the reader knows, raw UTF-8, a NUL: read back the same */
    static const char rec[] = "{\"username\":\"\\u00e9\\ud83d\\ude00\",\"x\":\"\xe2\x82\xac\x01\"}"
                              "\0\t\r\n\\\"/\x7f";
    size_t n;
    char *d = traffic_dead_letter("why \\ \"", rec, sizeof(rec) - 1, &n);
    ck_assert_ptr_nonnull(d);
    char *scratch = malloc(n + 1);
    struct dl got = {0};
    char err[160];
    int rc = traffic_json_scan(d, n, scratch, n + 1, dl_member, &got, err, sizeof(err));
    ck_assert_msg(rc == 0, "%s", err);
    ck_assert_int_eq(got.members, 2);
    ck_assert_str_eq(got.reason, "why \\ \"");
    ck_assert_uint_eq(got.record_len, sizeof(rec) - 1);
    ck_assert(memcmp(got.record, rec, sizeof(rec) - 1) == 0);
    ck_assert_ptr_null(got.b64);
    free(scratch);
    free(d);
}
END_TEST

#define BS(s) ((struct billing_str){s, sizeof(s) - 1})

/* What the agent pushes (billing_record_json) is what the worker reads. */
START_TEST(test_producer_agrees)
{
    struct billing_record b = {
        .request_id = BS("00000001:gw.1"),
        .verdict = 200,
        .user = BS("my\"user\\"),
        .slug = BS("demo-de"),
        .country = BS("DE"),
        .session = BS("s\x01\x7f"),
        .method = BS("CONNECT"),
        .target = BS("h\xc3\xa9\xff\0x:443"), /* not UTF-8, a NUL */
        .client_ip = BS("203.0.113.50"),
        .duration_min = 10,
        .status = 200,
        .bytes_in = 512,
        .bytes_out = 9223372036854775807ull - 512,
        .timestamp_ms = 1703001234567,
    };
    static char json[6 * BILLING_LINE_MAX + 512];
    size_t n = billing_record_json(&b, json, sizeof(json));
    ck_assert_uint_gt(n, 0);
    struct traffic_record r;
    char err[160];
    ck_assert_msg(traffic_record_parse(json, n, &r, err, sizeof(err)) == 0, "%s: %.*s", err, (int)n,
                  json);
    ck_assert_str_eq(r.username, "my\"user\\");
    ck_assert_str_eq(r.request_id, "00000001:gw.1");
    ck_assert_str_eq(r.proxy_slug, "demo-de");
    ck_assert_str_eq(r.session_id, "s\x01\x7f");
    /* the producer writes a stray byte as U+FFFD (agent/common/json.h), NUL as
     * \u0000, which the reader turns into U+FFFD too */
    ck_assert_str_eq(r.target_host, "h\xc3\xa9\xef\xbf\xbd\xef\xbf\xbdx:443");
    ck_assert_int_eq(r.request_bytes, 512);
    ck_assert_int_eq(r.response_bytes, INT64_MAX - 512);
    ck_assert_int_eq(r.duration, 10);
    ck_assert_int_eq(r.timestamp_ms, 1703001234567);

    /* absent strings are "": an absent user or request_id is refused */
    b.user = (struct billing_str){NULL, 0};
    n = billing_record_json(&b, json, sizeof(json));
    ck_assert_int_eq(traffic_record_parse(json, n, &r, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "username: empty");
}
END_TEST

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

Suite *traffic_record_suite(void)
{
    Suite *s = suite_create("traffic_record");
    TCase *tc = tcase_create("accept");
    tcase_add_test(tc, test_reference_example);
    tcase_add_test(tc, test_whitespace_order_unknown);
    tcase_add_loop_test(tc, test_string_escapes, 0, N(strings));
    tcase_add_test(tc, test_billing_strings_exact);
    tcase_add_test(tc, test_number_edges);
    tcase_add_test(tc, test_truncation);
    tcase_add_test(tc, test_billing_lengths);
    suite_add_tcase(s, tc);

    tc = tcase_create("refuse");
    tcase_add_loop_test(tc, test_missing_each, 0, TRAFFIC_F_COUNT);
    tcase_add_loop_test(tc, test_duplicate_each, 0, TRAFFIC_F_COUNT);
    tcase_add_loop_test(tc, test_refused, 0, N(refused));
    tcase_add_loop_test(tc, test_malformed, 0, N(malformed));
    tcase_add_test(tc, test_trailing_and_prefix);
    tcase_add_test(tc, test_size_cap);
    tcase_add_test(tc, test_err_optional);
    suite_add_tcase(s, tc);

    tc = tcase_create("write");
    tcase_add_test(tc, test_utf8_valid);
    tcase_add_test(tc, test_json_quote);
    tcase_add_test(tc, test_dead_letter_exact);
    tcase_add_test(tc, test_dead_letter_round_trip);
    suite_add_tcase(s, tc);

    tc = tcase_create("producer");
    tcase_add_test(tc, test_producer_agrees);
    suite_add_tcase(s, tc);
    return s;
}
