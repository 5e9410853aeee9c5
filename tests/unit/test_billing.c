/*
 * Billing record and spool tests: the log line HAProxy writes, the JSON the
 * agent pushes (valid for any byte), and the spool's write-ahead guarantees
 * (reopen, torn tail, commit, rewind, bound).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "billing_record.h"
#include "spool.h"

/* "myuser", "demo-de", "DE", "abc123", "CONNECT", "example.com:443" in base64 */
#define GOOD                                                                                       \
    "gw1 0e2f8140-4762-4468-ba11-9910719407fd 200 bXl1c2Vy ZGVtby1kZQ== REU= YWJjMTIz 10 "         \
    "Q09OTkVDVA== ZXhhbXBsZS5jb206NDQz 200 255 5153 203.0.113.50 1795656352917"

START_TEST(parse_and_json)
{
    struct billing_record r;
    char buf[BILLING_LINE_MAX];
    const char *err = NULL;
    ck_assert_int_eq(billing_record_parse(GOOD, strlen(GOOD), &r, buf, sizeof(buf), &err), 0);
    ck_assert(billing_record_billable(&r));
    char json[8192];
    size_t n = billing_record_json(&r, json, sizeof(json));
    ck_assert_uint_gt(n, 0);
    json[n] = '\0';
    ck_assert_str_eq(json,
                     "{\"username\":\"myuser\",\"request_bytes\":255,\"response_bytes\":5153,"
                     "\"target_host\":\"example.com:443\",\"target_method\":\"CONNECT\","
                     "\"proxy_slug\":\"demo-de\",\"country\":\"DE\",\"session_id\":\"abc123\","
                     "\"duration\":10,\"status_code\":200,\"client_ip\":\"203.0.113.50\","
                     "\"timestamp\":1795656352917,"
                     "\"request_id\":\"0e2f8140-4762-4468-ba11-9910719407fd\"}");
    /* and back: the id the agent remembers for a spooled record */
    char id[64];
    size_t idlen = billing_json_request_id(json, n, id, sizeof(id));
    ck_assert_uint_eq(idlen, 36);
    ck_assert_mem_eq(id, "0e2f8140-4762-4468-ba11-9910719407fd", 36);
}
END_TEST

START_TEST(request_id_from_json_unescapes_and_refuses)
{
    char id[16];
    const char *j = "{\"username\":\",\\\"request_id\\\":\\\"x\",\"request_id\":\"a\\\"b\\\\c\"}";
    size_t n = billing_json_request_id(j, strlen(j), id, sizeof(id));
    ck_assert_uint_eq(n, 5); /* the last key is ours, not one inside a value */
    ck_assert_mem_eq(id, "a\"b\\c", 5);
    ck_assert_uint_eq(billing_json_request_id("{}", 2, id, sizeof(id)), 0);
    const char *cut = "{\"a\":1,\"request_id\":\"abc";
    ck_assert_uint_eq(billing_json_request_id(cut, strlen(cut), id, sizeof(id)), 0);
    const char *big = "{\"a\":1,\"request_id\":\"0123456789abcdefXYZ\"}";
    ck_assert_uint_eq(billing_json_request_id(big, strlen(big), id, sizeof(id)), 0);
}
END_TEST

START_TEST(refused_requests_are_not_billable)
{
    static const char line[] = "gw1 id1 407 - - - - - R0VU eA== 407 181 205 127.0.0.1 1";
    struct billing_record r;
    char buf[BILLING_LINE_MAX];
    const char *err;
    ck_assert_int_eq(billing_record_parse(line, strlen(line), &r, buf, sizeof(buf), &err), 0);
    ck_assert(!billing_record_billable(&r));
    static const char noverdict[] = "gw1 id1 - - - - - - R0VU eA== 503 181 205 127.0.0.1 1";
    ck_assert_int_eq(billing_record_parse(noverdict, strlen(noverdict), &r, buf, sizeof(buf), &err),
                     0);
    ck_assert(!billing_record_billable(&r));
    /* gw2: what HAProxy logs for a request it answered itself (407 here) */
    static const char refused[] = "gw2 id2 - 407 181 205 127.0.0.1 1795656352917 5 -";
    ck_assert_int_eq(billing_record_parse(refused, strlen(refused), &r, buf, sizeof(buf), &err), 0);
    ck_assert(!billing_record_billable(&r));
    ck_assert_int_eq(r.status, 407);
}
END_TEST

static const char *const bad_lines[] = {
    "",
    "gw2 id 200 - - - - - - - 200 1 1 127.0.0.1 1",
    "gw1 id 200 - - - - - - - 200 1 1 127.0.0.1",                      /* a field short */
    "gw1 id 200 - - - - - - - 200 1 1 127.0.0.1 1 extra",              /* a field too many */
    "gw1 id 200 - - - - - - - 200 1 1 127.0.0.1 1 ",                   /* trailing space */
    "gw1 id  200 - - - - - - - 200 1 1 127.0.0.1 1",                   /* double space */
    "gw1 id 200 bXl1c2Vy= - - - - - - 200 1 1 127.0.0.1 1",            /* bad base64 length */
    "gw1 id 200 bXl!c2Vy - - - - - - 200 1 1 127.0.0.1 1",             /* bad base64 char */
    "gw1 id 200 - - - - - - - 200 -5 1 127.0.0.1 1",                   /* negative bytes */
    "gw1 id 200 - - - - - - - 200 1 99999999999999999999 127.0.0.1 1", /* overflow */
    "gw1 id 2x0 - - - - - - - 200 1 1 127.0.0.1 1",                    /* not a number */
    "gw1 id\x01 200 - - - - - - - 200 1 1 127.0.0.1 1",                /* control byte in the id */
    "gw2 id 200 - - - - - - - 200 1 1 127.0.0.1 1 5",                  /* gw2 without a count */
    "gw2 id 200 - - - - - - - 200 1 1 127.0.0.1 1 5 -1",               /* negative count */
    "gw2 id 200 - - - - - - - 200 1 1 127.0.0.1 1 x 0",                /* count not a number */
    "gw3 id 200 - - - - - - - 200 1 1 127.0.0.1 1 5 0",                /* unknown version */
    "gw2 id - 407 181 205 127.0.0.1 1 5",                              /* refused, a field short */
    "gw2 id - 4x7 181 205 127.0.0.1 1 5 -",                            /* refused, bad status */
};

/* The figures HAProxy 2.6 logged for requests whose wire sizes curl
 * reported (tests/integration/t_billing.sh checks the same live). */
START_TEST(gw2_header_counts_give_wire_bytes)
{
    static const struct {
        const char *line;
        uint64_t in, out;
    } cases[] = {
        /* GET, 5 request headers (222 bytes sent), 4 response headers + 1000 body */
        {"gw2 a 200 - - - - - R0VU - 200 217 1126 127.0.0.1 1 5 4", 222, 1127},
        /* CONNECT, 4 headers; the upstream's 200 has none, then 1118 payload bytes */
        {"gw2 b 200 - - - - - Q09OTkVDVA== - 200 302 1172 127.0.0.1 1 4 0", 303, 1157},
        /* no response head (the upstream never answered): %B stays as counted */
        {"gw2 c 200 - - - - - R0VU - 502 217 120 127.0.0.1 1 5 -", 222, 120},
        /* gw1 lines (older configurations) are taken as counted */
        {"gw1 d 200 - - - - - R0VU - 200 217 1126 127.0.0.1 1", 217, 1126},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct billing_record r;
        char buf[BILLING_LINE_MAX];
        const char *err = NULL;
        const char *line = cases[i].line;
        ck_assert_msg(billing_record_parse(line, strlen(line), &r, buf, sizeof(buf), &err) == 0,
                      "%s: %s", line, err);
        ck_assert_uint_eq(r.bytes_in, cases[i].in);
        ck_assert_uint_eq(r.bytes_out, cases[i].out);
    }
}
END_TEST

START_TEST(malformed_lines_refused)
{
    struct billing_record r;
    char buf[BILLING_LINE_MAX];
    const char *err = NULL;
    const char *line = bad_lines[_i];
    ck_assert_msg(billing_record_parse(line, strlen(line), &r, buf, sizeof(buf), &err) == -1,
                  "accepted: %s", line);
    ck_assert_ptr_nonnull(err);
}
END_TEST

/* A tiny JSON string validator: what any JSON parser would accept. */
static bool valid_json_string(const char *s, size_t n, size_t *used)
{
    if (n == 0 || s[0] != '"') return false;
    for (size_t i = 1; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"') {
            *used = i + 1;
            return true;
        }
        if (c < 0x20) return false;
        if (c == '\\') {
            if (++i >= n) return false;
            if (s[i] == 'u') {
                if (i + 4 >= n) return false;
                i += 4;
            } else if (!strchr("\"\\/bfnrt", s[i])) {
                return false;
            }
        }
    }
    return false;
}

START_TEST(hostile_bytes_make_valid_json)
{
    /* every byte value, in every string field */
    char raw[256];
    for (int i = 0; i < 256; i++)
        raw[i] = (char)i;
    struct billing_record r = {0};
    struct billing_str hostile = {raw, sizeof(raw)};
    r.user = r.slug = r.country = r.session = r.method = r.target = r.client_ip = hostile;
    r.request_id = hostile;
    char json[16384];
    size_t n = billing_record_json(&r, json, sizeof(json));
    ck_assert_uint_gt(n, 0);
    /* no raw control byte anywhere, every string well-formed, and no invalid UTF-8 */
    size_t strings = 0;
    for (size_t i = 0; i < n;) {
        if (json[i] == '"') {
            size_t used;
            ck_assert(valid_json_string(json + i, n - i, &used));
            i += used;
            strings++;
        } else {
            ck_assert((unsigned char)json[i] >= 0x20 && (unsigned char)json[i] < 0x80);
            i++;
        }
    }
    ck_assert_uint_eq(strings, 13 + 8); /* 13 keys, 8 of them with string values */
    /* 0x80..0xff are not UTF-8 on their own: U+FFFD (agent/common/json.h) */
    ck_assert_ptr_nonnull(strstr(json, "\\ufffd"));
    ck_assert_ptr_nonnull(strstr(json, "\\\""));
    ck_assert_ptr_nonnull(strstr(json, "\\\\"));
    /* valid UTF-8 passes through */
    struct billing_str utf8 = {"h\xc3\xa9llo", 6};
    r.user = utf8;
    n = billing_record_json(&r, json, sizeof(json));
    json[n] = '\0';
    ck_assert_ptr_nonnull(strstr(json, "\"username\":\"h\xc3\xa9llo\""));
}
END_TEST

/* --- spool ------------------------------------------------------------------------- */

static char spool_path[64];

static void spool_setup(void)
{
    snprintf(spool_path, sizeof(spool_path), "/tmp/gw-spool-test.XXXXXX");
    int fd = mkstemp(spool_path);
    close(fd);
    unlink(spool_path);
}

static void spool_teardown(void)
{
    unlink(spool_path);
}

static size_t take_all(struct spool *sp, char *buf, size_t cap, const char **recs, size_t *lens)
{
    return spool_take(sp, 1000, buf, cap, recs, lens);
}

START_TEST(spool_survives_reopen_until_committed)
{
    char err[256];
    struct spool *sp = spool_open(spool_path, 1 << 20, err, sizeof(err));
    ck_assert_ptr_nonnull(sp);
    char rec[64];
    for (int i = 0; i < 10; i++) {
        int n = snprintf(rec, sizeof(rec), "{\"n\":%d}", i);
        ck_assert_int_eq(spool_append(sp, rec, (size_t)n), 0);
    }
    /* take 4, commit them; the other 6 stay */
    char buf[4096];
    const char *recs[16];
    size_t lens[16];
    ck_assert_uint_eq(spool_take(sp, 4, buf, sizeof(buf), recs, lens), 4);
    ck_assert_int_eq(spool_commit(sp), 0);
    /* take 3 more, never committed: a crash now */
    ck_assert_uint_eq(spool_take(sp, 3, buf, sizeof(buf), recs, lens), 3);
    spool_close(sp);

    sp = spool_open(spool_path, 1 << 20, err, sizeof(err));
    ck_assert_ptr_nonnull(sp);
    size_t n = take_all(sp, buf, sizeof(buf), recs, lens);
    ck_assert_uint_eq(n, 6); /* the 3 taken-but-uncommitted come again */
    ck_assert_mem_eq(recs[0], "{\"n\":4}", 7);
    ck_assert_mem_eq(recs[5], "{\"n\":9}", 7);
    ck_assert_int_eq(spool_commit(sp), 0);
    ck_assert_uint_eq(spool_pending_bytes(sp), 0);
    spool_close(sp);
}
END_TEST

START_TEST(spool_sequence_and_id_survive_reopen_and_skip)
{
    char err[256];
    struct spool *sp = spool_open(spool_path, 1 << 20, err, sizeof(err));
    ck_assert_ptr_nonnull(sp);
    uint64_t id = spool_id(sp);
    ck_assert_uint_ne(id, 0);
    ck_assert_uint_eq(spool_sequence(sp), 0);
    char rec[32], buf[4096];
    const char *recs[16];
    size_t lens[16];
    for (int i = 0; i < 8; i++) {
        int n = snprintf(rec, sizeof(rec), "r%d", i);
        ck_assert_int_eq(spool_append(sp, rec, (size_t)n), 0);
    }
    ck_assert_uint_eq(spool_take(sp, 3, buf, sizeof(buf), recs, lens), 3);
    ck_assert_uint_eq(spool_taken(sp), 3);
    ck_assert_int_eq(spool_commit(sp), 0);
    ck_assert_uint_eq(spool_sequence(sp), 3);
    /* two more taken and pushed, then the agent dies before the answer */
    ck_assert_uint_eq(spool_take(sp, 2, buf, sizeof(buf), recs, lens), 2);
    spool_close(sp);

    sp = spool_open(spool_path, 1 << 20, err, sizeof(err));
    ck_assert_ptr_nonnull(sp);
    ck_assert_uint_eq(spool_id(sp), id);
    ck_assert_uint_eq(spool_sequence(sp), 3);
    /* Redis says 5 were pushed: the two in flight are skipped, not retaken */
    ck_assert_uint_eq(spool_skip(sp, 2), 2);
    ck_assert_uint_eq(spool_sequence(sp), 5);
    ck_assert_uint_eq(spool_take(sp, 10, buf, sizeof(buf), recs, lens), 3);
    ck_assert_mem_eq(recs[0], "r5", 2);
    /* skipping more than is pending stops at the end and empties the file */
    ck_assert_uint_eq(spool_skip(sp, 10), 3);
    ck_assert_uint_eq(spool_sequence(sp), 8);
    ck_assert_uint_eq(spool_pending_bytes(sp), 0);
    /* the sequence goes on after the file was emptied */
    ck_assert_int_eq(spool_append(sp, "r8", 2), 0);
    ck_assert_uint_eq(spool_take(sp, 10, buf, sizeof(buf), recs, lens), 1);
    ck_assert_int_eq(spool_commit(sp), 0);
    spool_close(sp);
    sp = spool_open(spool_path, 1 << 20, err, sizeof(err));
    ck_assert_uint_eq(spool_sequence(sp), 9);
    ck_assert_uint_eq(spool_id(sp), id);
    spool_close(sp);
}
END_TEST

START_TEST(spool_cuts_a_torn_tail)
{
    char err[256];
    struct spool *sp = spool_open(spool_path, 1 << 20, err, sizeof(err));
    ck_assert_int_eq(spool_append(sp, "first", 5), 0);
    ck_assert_int_eq(spool_append(sp, "second", 6), 0);
    spool_close(sp);
    /* a crash mid-append: the last frame lacks bytes */
    ck_assert_int_eq(truncate(spool_path, SPOOL_HEADER_LEN + 7 + 4), 0);
    sp = spool_open(spool_path, 1 << 20, err, sizeof(err));
    ck_assert_ptr_nonnull(sp);
    char buf[256];
    const char *recs[4];
    size_t lens[4];
    ck_assert_uint_eq(take_all(sp, buf, sizeof(buf), recs, lens), 1);
    ck_assert_mem_eq(recs[0], "first", 5);
    ck_assert_int_eq(spool_append(sp, "third", 5), 0); /* appends after the cut */
    spool_rewind(sp);
    ck_assert_uint_eq(take_all(sp, buf, sizeof(buf), recs, lens), 2);
    ck_assert_mem_eq(recs[1], "third", 5);
    spool_close(sp);
}
END_TEST

START_TEST(spool_rewind_and_bound)
{
    char err[256];
    struct spool *sp = spool_open(spool_path, 100, err, sizeof(err));
    char rec[40];
    memset(rec, 'x', sizeof(rec));
    ck_assert_int_eq(spool_append(sp, rec, sizeof(rec)), 0);
    ck_assert_int_eq(spool_append(sp, rec, sizeof(rec)), 0);
    ck_assert_int_eq(spool_append(sp, rec, sizeof(rec)), -1); /* over 100 bytes pending */
    char buf[256];
    const char *recs[4];
    size_t lens[4];
    ck_assert_uint_eq(take_all(sp, buf, sizeof(buf), recs, lens), 2);
    spool_rewind(sp); /* Redis did not acknowledge */
    ck_assert_uint_eq(take_all(sp, buf, sizeof(buf), recs, lens), 2);
    ck_assert_int_eq(spool_commit(sp), 0);
    ck_assert_int_eq(spool_append(sp, rec, sizeof(rec)), 0); /* room again */
    spool_close(sp);
}
END_TEST

START_TEST(spool_refuses_foreign_files)
{
    FILE *f = fopen(spool_path, "w");
    fputs("this is not a spool file, it is something else entirely", f);
    fclose(f);
    char err[256];
    ck_assert_ptr_null(spool_open(spool_path, 1 << 20, err, sizeof(err)));
    ck_assert_ptr_nonnull(strstr(err, "not a billing spool"));
}
END_TEST

Suite *billing_suite(void)
{
    Suite *s = suite_create("billing");
    TCase *tc = tcase_create("record");
    tcase_add_test(tc, parse_and_json);
    tcase_add_test(tc, request_id_from_json_unescapes_and_refuses);
    tcase_add_test(tc, gw2_header_counts_give_wire_bytes);
    tcase_add_test(tc, refused_requests_are_not_billable);
    tcase_add_loop_test(tc, malformed_lines_refused, 0, sizeof(bad_lines) / sizeof(bad_lines[0]));
    tcase_add_test(tc, hostile_bytes_make_valid_json);
    suite_add_tcase(s, tc);
    TCase *ts = tcase_create("spool");
    tcase_add_checked_fixture(ts, spool_setup, spool_teardown);
    tcase_add_test(ts, spool_survives_reopen_until_committed);
    tcase_add_test(ts, spool_sequence_and_id_survive_reopen_and_skip);
    tcase_add_test(ts, spool_cuts_a_torn_tail);
    tcase_add_test(ts, spool_rewind_and_bound);
    tcase_add_test(ts, spool_refuses_foreign_files);
    suite_add_tcase(s, ts);
    return s;
}
