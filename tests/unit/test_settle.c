/*
 * Unit tests for the database-free parts of agent/settle/settle.c: the PostgreSQL
 * array literals the batch statement is fed with (quoting of hostile
 * strings, column order, ord numbering), which SQL errors send a record to
 * the dead letters rather than retrying the batch, the backoff, and the
 * statement's shape (its parameters and the exactly-once clause). The
 * statement itself runs against PostgreSQL in tests/integration/t_settle.sh.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "settle.h"

extern Suite *settle_suite(void);

START_TEST(test_buf)
{
    struct settle_buf b = {0};
    ck_assert_str_eq(settle_buf_str(&b), "");
    for (int i = 0; i < 1000; i++)
        settle_buf_put(&b, "0123456789", 10);
    ck_assert_uint_eq(b.len, 10000);
    ck_assert_uint_eq(strlen(settle_buf_str(&b)), 10000);
    settle_buf_reset(&b);
    ck_assert_str_eq(settle_buf_str(&b), "");
    settle_buf_put(&b, "x", 1);
    ck_assert_str_eq(settle_buf_str(&b), "x");
    settle_buf_free(&b);
    ck_assert_ptr_null(b.p);
}
END_TEST

static const struct {
    const char *in;
    const char *literal;
} texts[] = {
    {"", "\"\""},
    {"plain", "\"plain\""},
    {"a\"b", "\"a\\\"b\""},
    {"a\\b", "\"a\\\\b\""},
    {"\\\"\\", "\"\\\\\\\"\\\\\""},
    {"NULL", "\"NULL\""}, /* quoted: a string, never SQL NULL */
    {"{a,b}", "\"{a,b}\""},
    {" x ", "\" x \""},
    {"\xc3\xa9\xef\xbf\xbd", "\"\xc3\xa9\xef\xbf\xbd\""},
    {"'; DROP TABLE users; --", "\"'; DROP TABLE users; --\""},
};

START_TEST(test_array_text)
{
    struct settle_buf b = {0};
    settle_array_text(&b, true, texts[_i].in);
    ck_assert_str_eq(settle_buf_str(&b), texts[_i].literal);
    settle_buf_reset(&b);
    settle_array_text(&b, false, texts[_i].in);
    ck_assert_int_eq(settle_buf_str(&b)[0], ',');
    ck_assert_str_eq(settle_buf_str(&b) + 1, texts[_i].literal);
    settle_buf_free(&b);
}
END_TEST

START_TEST(test_array_int)
{
    struct settle_buf b = {0};
    settle_array_int(&b, true, 0);
    settle_array_int(&b, false, -1);
    settle_array_int(&b, false, INT64_MAX);
    settle_array_int(&b, false, INT64_MIN);
    ck_assert_str_eq(settle_buf_str(&b), "0,-1,9223372036854775807,-9223372036854775808");
    settle_buf_free(&b);
}
END_TEST

static void fill(struct traffic_record *r, const char *user, int64_t req, const char *host,
                 const char *rid)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->username, sizeof(r->username), "%s", user);
    r->request_bytes = req;
    r->response_bytes = 2 * req;
    snprintf(r->target_host, sizeof(r->target_host), "%s", host);
    snprintf(r->target_method, sizeof(r->target_method), "GET");
    snprintf(r->proxy_slug, sizeof(r->proxy_slug), "p");
    snprintf(r->country, sizeof(r->country), "DE");
    snprintf(r->session_id, sizeof(r->session_id), "s");
    r->duration = 5;
    r->status_code = 200;
    snprintf(r->client_ip, sizeof(r->client_ip), "::1");
    r->timestamp_ms = 1703001234567;
    snprintf(r->request_id, sizeof(r->request_id), "%s", rid);
}

START_TEST(test_params)
{
    struct traffic_record recs[3];
    fill(&recs[0], "alice", 1, "a.example:443", "r-0");
    fill(&recs[1], "b\"ob", 10, "{\"x\"}\\", "r-1");
    fill(&recs[2], "carol", 100, "", "r\\2");
    recs[2].status_code = -7;
    struct settle_params p = {0};
    /* a subset, out of order: ord is the index into recs */
    const uint32_t idx[] = {2, 0};
    ck_assert_int_eq(settle_params_build(&p, recs, idx, 2), 0);
    static const char *const want[SETTLE_NPARAMS] = {
        "{2,0}",
        "{\"carol\",\"alice\"}",
        "{100,1}",
        "{200,2}",
        "{\"\",\"a.example:443\"}",
        "{\"GET\",\"GET\"}",
        "{\"p\",\"p\"}",
        "{\"DE\",\"DE\"}",
        "{\"s\",\"s\"}",
        "{5,5}",
        "{-7,200}",
        "{\"::1\",\"::1\"}",
        "{1703001234567,1703001234567}",
        "{\"r\\\\2\",\"r-0\"}",
    };
    for (int c = 0; c < SETTLE_NPARAMS; c++)
        ck_assert_str_eq(settle_buf_str(&p.col[c]), want[c]);

    /* built again (buffers reused): only what was asked for */
    const uint32_t one[] = {1};
    ck_assert_int_eq(settle_params_build(&p, recs, one, 1), 0);
    ck_assert_str_eq(settle_buf_str(&p.col[0]), "{1}");
    ck_assert_str_eq(settle_buf_str(&p.col[1]), "{\"b\\\"ob\"}");
    ck_assert_str_eq(settle_buf_str(&p.col[4]), "{\"{\\\"x\\\"}\\\\\"}");

    /* an empty batch is a pair of braces in every column */
    ck_assert_int_eq(settle_params_build(&p, recs, one, 0), 0);
    for (int c = 0; c < SETTLE_NPARAMS; c++)
        ck_assert_str_eq(settle_buf_str(&p.col[c]), "{}");
    settle_params_free(&p);
}
END_TEST

START_TEST(test_params_large)
{
    /* the biggest batch, widest values: builds, and each column has n elements */
    size_t n = SETTLE_BATCH_MAX;
    struct traffic_record *recs = calloc(n, sizeof(*recs));
    uint32_t *idx = calloc(n, sizeof(*idx));
    ck_assert_ptr_nonnull(recs);
    ck_assert_ptr_nonnull(idx);
    for (size_t i = 0; i < n; i++) {
        fill(&recs[i], "u", (int64_t)i, "", "r");
        memset(recs[i].target_host, '"', TRAFFIC_W_HOST);
        idx[i] = (uint32_t)i;
    }
    struct settle_params p = {0};
    ck_assert_int_eq(settle_params_build(&p, recs, idx, n), 0);
    /* every quote escaped: 2 bytes each, plus 2 quotes and a comma per element */
    ck_assert_uint_eq(p.col[4].len, n * (2 * TRAFFIC_W_HOST + 3) - 1 + 2);
    size_t commas = 0;
    for (const char *s = settle_buf_str(&p.col[2]); *s; s++)
        commas += *s == ',';
    ck_assert_uint_eq(commas, n - 1);
    settle_params_free(&p);
    free(recs);
    free(idx);
}
END_TEST

START_TEST(test_sql_fault)
{
    /* values PostgreSQL refuses: find the record, dead-letter it */
    ck_assert_int_eq(settle_sql_fault("22001"), SETTLE_FAULT_RECORD); /* string too long */
    ck_assert_int_eq(settle_sql_fault("22003"), SETTLE_FAULT_RECORD); /* numeric overflow */
    ck_assert_int_eq(settle_sql_fault("22P05"), SETTLE_FAULT_RECORD); /* untranslatable */
    ck_assert_int_eq(settle_sql_fault("23503"), SETTLE_FAULT_RECORD); /* user deleted */
    ck_assert_int_eq(settle_sql_fault("23502"), SETTLE_FAULT_RECORD);
    /* everything else keeps the batch and retries */
    ck_assert_int_eq(settle_sql_fault("40001"), SETTLE_FAULT_RETRY); /* serialization */
    ck_assert_int_eq(settle_sql_fault("40P01"), SETTLE_FAULT_RETRY); /* deadlock */
    ck_assert_int_eq(settle_sql_fault("57014"), SETTLE_FAULT_RETRY); /* statement timeout */
    ck_assert_int_eq(settle_sql_fault("57P01"), SETTLE_FAULT_RETRY); /* admin shutdown */
    ck_assert_int_eq(settle_sql_fault("53100"), SETTLE_FAULT_RETRY); /* disk full */
    ck_assert_int_eq(settle_sql_fault("42P10"), SETTLE_FAULT_RETRY); /* no unique index */
    ck_assert_int_eq(settle_sql_fault("42703"), SETTLE_FAULT_RETRY); /* no request_id column */
    ck_assert_int_eq(settle_sql_fault("08006"), SETTLE_FAULT_RETRY);
    ck_assert_int_eq(settle_sql_fault("2"), SETTLE_FAULT_RETRY);
    ck_assert_int_eq(settle_sql_fault(""), SETTLE_FAULT_RETRY);
    ck_assert_int_eq(settle_sql_fault(NULL), SETTLE_FAULT_RETRY);
}
END_TEST

START_TEST(test_backoff)
{
    ck_assert_uint_eq(settle_backoff_ms(0, 5000), 100);
    ck_assert_uint_eq(settle_backoff_ms(1, 5000), 100);
    ck_assert_uint_eq(settle_backoff_ms(2, 5000), 200);
    ck_assert_uint_eq(settle_backoff_ms(3, 5000), 400);
    ck_assert_uint_eq(settle_backoff_ms(6, 5000), 3200);
    ck_assert_uint_eq(settle_backoff_ms(7, 5000), 5000);
    ck_assert_uint_eq(settle_backoff_ms(4000000000u, 5000), 5000);
    ck_assert_uint_eq(settle_backoff_ms(50, 600000), 600000);
    ck_assert_uint_eq(settle_backoff_ms(1, 50), 50);
}
END_TEST

START_TEST(test_sql_shape)
{
    /* fourteen parameters, in settle_params order, and no fifteenth */
    char p[16];
    for (int i = 1; i <= SETTLE_NPARAMS; i++) {
        snprintf(p, sizeof(p), "$%d::", i);
        ck_assert_msg(strstr(settle_sql_batch, p) != NULL, "%s missing", p);
    }
    ck_assert_ptr_null(strstr(settle_sql_batch, "$15"));
    ck_assert_ptr_nonnull(strstr(settle_sql_batch, "$1::int[], $2::text[], $3::bigint[]"));
    /* exactly once: skip a known request_id, charge only what RETURNING gave */
    ck_assert_ptr_nonnull(strstr(settle_sql_batch, "ON CONFLICT (request_id) DO NOTHING"));
    ck_assert_ptr_nonnull(strstr(settle_sql_batch, "FROM ins GROUP BY user_id"));
    ck_assert_ptr_nonnull(strstr(settle_sql_batch, "ON CONFLICT (user_id) DO UPDATE"));
    ck_assert_ptr_nonnull(strstr(settle_sql_balances, "LEFT JOIN balances"));
}
END_TEST

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

Suite *settle_suite(void)
{
    Suite *s = suite_create("settle");
    TCase *tc = tcase_create("params");
    tcase_add_test(tc, test_buf);
    tcase_add_loop_test(tc, test_array_text, 0, N(texts));
    tcase_add_test(tc, test_array_int);
    tcase_add_test(tc, test_params);
    tcase_add_test(tc, test_params_large);
    suite_add_tcase(s, tc);

    tc = tcase_create("policy");
    tcase_add_test(tc, test_sql_fault);
    tcase_add_test(tc, test_backoff);
    tcase_add_test(tc, test_sql_shape);
    suite_add_tcase(s, tc);
    return s;
}
