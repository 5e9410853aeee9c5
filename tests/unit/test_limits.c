/*
 * Unit tests for the per-user limits (users.max_conns / max_rps,
 * sql/migrations/006) on their way from rows to the verdict: the builder's
 * NULL / 0 / value / out-of-range rules, deltas carrying them, the snapshot
 * file (version 2 keeps them, version 1 still loads with the defaults, a bad
 * limit is refused), the effective values policy_decide puts in the
 * verdict, and the record of a request refused after its verdict (it names
 * its stream, for the live balance's registry). HAProxy's enforcement is tested end to end in
 * tests/integration/t_limits.sh.
 */
#include <arpa/inet.h>
#include <check.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "basic_auth.h"
#include "billing_record.h"
#include "policy.h"
#include "snapshot.h"
#include "snapshot_int.h"

extern Suite *limits_suite(void);

#define S(x) x, sizeof(x) - 1
#define NUL  ((struct snapshot_nint){0})
#define N(v) ((struct snapshot_nint){.set = true, .value = (v)})

static struct snapshot_user_row user(int32_t id, const char *name, struct snapshot_nint conns,
                                     struct snapshot_nint rps)
{
    return (struct snapshot_user_row){.id = id,
                                      .username = name,
                                      .username_len = strlen(name),
                                      .password = "pw",
                                      .password_len = 2,
                                      .is_active = SNAPSHOT_TRUE,
                                      .max_conns = conns,
                                      .max_rps = rps};
}

static int self_resolve(void *arg, const char *host, char addr[46])
{
    (void)arg;
    snprintf(addr, 46, "%s", host);
    return 0;
}

/* Users with every kind of limit, one provider, the loopback whitelist. */
static struct snapshot *build(void)
{
    static struct snapshot_user_row users[6];
    users[0] = user(1, "nulls", NUL, NUL);
    users[1] = user(2, "zeros", N(0), N(0));
    users[2] = user(3, "set", N(2), N(5));
    users[3] = user(4, "negative", N(-1), N(-7));
    users[4] = user(5, "huge", N((int64_t)INT32_MAX + 1), N(INT64_MAX));
    users[5] = user(6, "max", N(INT32_MAX), N(1));
    static const struct snapshot_ip_row ips[] = {{1, S("127.0.0.1/32"), SNAPSHOT_TRUE}};
    static const struct snapshot_provider_row provs[] = {{
        .id = 1,
        .base_url = "127.0.0.1",
        .base_url_len = 9,
        .name = "p",
        .name_len = 1,
        .slug = "p",
        .slug_len = 1,
        .username = "u",
        .username_len = 1,
        .password = "pw",
        .password_len = 2,
        .port_min = 1000,
        .port_max = 1000,
        .is_global = SNAPSHOT_TRUE,
    }};
    struct snapshot_rows rows = {users, 6, ips, 1, provs, 1, 1700000000000};
    struct snapshot *s = snapshot_build(&rows, self_resolve, NULL);
    ck_assert_ptr_nonnull(s);
    return s;
}

static void assert_limits(const struct snapshot *s, const char *name, int32_t conns, int32_t rps)
{
    const struct snap_user *u = snapshot_user(s, name, strlen(name));
    ck_assert_msg(u != NULL, "user %s missing", name);
    ck_assert_msg(u->max_conns == conns && u->max_rps == rps, "%s: max_conns %d max_rps %d", name,
                  (int)u->max_conns, (int)u->max_rps);
}

static void assert_built_limits(const struct snapshot *s)
{
    assert_limits(s, "nulls", SNAP_LIMIT_DEFAULT, SNAP_LIMIT_DEFAULT);
    assert_limits(s, "zeros", 0, 0);
    assert_limits(s, "set", 2, 5);
    assert_limits(s, "negative", SNAP_LIMIT_DEFAULT, SNAP_LIMIT_DEFAULT);
    assert_limits(s, "huge", SNAP_LIMIT_DEFAULT, SNAP_LIMIT_DEFAULT);
    assert_limits(s, "max", INT32_MAX, 1);
}

START_TEST(test_builder_limits)
{
    struct snapshot *s = build();
    assert_built_limits(s);
    /* a row without the fields (a database without migration 006) */
    struct snapshot_user_row plain = {
        .id = 7, .username = S("plain"), .password = S("pw"), .is_active = SNAPSHOT_TRUE};
    struct snapshot_rows rows = {.users = &plain, .n_users = 1};
    struct snapshot *t = snapshot_build(&rows, self_resolve, NULL);
    assert_limits(t, "plain", SNAP_LIMIT_DEFAULT, SNAP_LIMIT_DEFAULT);
    snapshot_free(t);
    snapshot_free(s);
}
END_TEST

static struct snapshot *delta(struct snapshot *prev, const struct snapshot_user_row *rows, size_t n)
{
    struct snapshot_builder *b = snapshot_builder_delta(prev, 1700000001000, 0);
    ck_assert_ptr_nonnull(b);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(snapshot_builder_user(b, &rows[i]), 0);
    struct snapshot *d = snapshot_builder_finish(b, self_resolve, NULL);
    ck_assert_ptr_nonnull(d);
    return d;
}

START_TEST(test_delta_limits)
{
    struct snapshot *base = build();
    /* UPDATE users SET max_conns = 7, max_rps = NULL WHERE username = 'set' */
    const struct snapshot_user_row first[] = {user(3, "set", N(7), NUL),
                                              user(8, "new", N(0), N(3))};
    struct snapshot *d1 = delta(base, first, 2);
    assert_limits(d1, "set", 7, SNAP_LIMIT_DEFAULT);
    assert_limits(d1, "new", 0, 3);
    assert_limits(d1, "zeros", 0, 0); /* from the base */
    assert_limits(base, "set", 2, 5); /* the base is immutable */
    /* a delta on the delta carries the first one's changes over */
    const struct snapshot_user_row second[] = {user(2, "zeros", N(1), N(1))};
    struct snapshot *d2 = delta(d1, second, 1);
    assert_limits(d2, "set", 7, SNAP_LIMIT_DEFAULT);
    assert_limits(d2, "new", 0, 3);
    assert_limits(d2, "zeros", 1, 1);
    assert_limits(d2, "nulls", SNAP_LIMIT_DEFAULT, SNAP_LIMIT_DEFAULT);
    snapshot_free(d2);
    snapshot_free(d1);
    snapshot_free(base);
}
END_TEST

START_TEST(test_file_keeps_limits)
{
    struct snapshot *s = build();
    char err[256];
    size_t len;
    uint8_t *buf = snapshot_file_encode(s, 42, &len);
    ck_assert_ptr_nonnull(buf);
    ck_assert_mem_eq(buf, "\x94\xa6GWSNAP\xce\x00\x00\x00\x02", 13);
    struct snapshot *t = snapshot_file_parse(buf, len, err, sizeof(err));
    ck_assert_msg(t != NULL, "%s", err);
    assert_built_limits(t);
    free(buf);

    /* a delta's file holds the merged users with their limits */
    const struct snapshot_user_row rows[] = {user(3, "set", N(0), N(9))};
    struct snapshot *d = delta(s, rows, 1);
    buf = snapshot_file_encode(d, 42, &len);
    struct snapshot *u = snapshot_file_parse(buf, len, err, sizeof(err));
    ck_assert_msg(u != NULL, "%s", err);
    assert_limits(u, "set", 0, 9);
    assert_limits(u, "nulls", SNAP_LIMIT_DEFAULT, SNAP_LIMIT_DEFAULT);
    assert_limits(u, "max", INT32_MAX, 1);
    free(buf);
    snapshot_free(u);
    snapshot_free(d);
    snapshot_free(t);
    snapshot_free(s);
}
END_TEST

/* --- hand-made files ---------------------------------------------------------------------- */

static uint32_t crc32_bitwise(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    while (n--) {
        c ^= *p++;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
    }
    return ~c;
}

/* A file of the given version with one user row packed by row(pk). */
static uint8_t *make_file(uint32_t version, void (*row)(msgpack_packer *), size_t *len)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 6);
    msgpack_pack_int64(&pk, 1700000000000);
    msgpack_pack_int64(&pk, 1700000000000);
    msgpack_pack_uint64(&pk, 0);
    msgpack_pack_uint64(&pk, 0);
    msgpack_pack_uint64(&pk, 1);
    msgpack_pack_array(&pk, 7);
    for (int i = 0; i < 7; i++)
        msgpack_pack_uint32(&pk, 0);
    row(&pk);
    *len = SNAPSHOT_FILE_HEADER_LEN + sb.size;
    uint8_t *f = malloc(*len);
    uint32_t crc = crc32_bitwise((const uint8_t *)sb.data, sb.size);
    memcpy(f, "\x94\xa6GWSNAP\xce", 9);
    for (int i = 0; i < 4; i++)
        f[9 + i] = (uint8_t)(version >> (24 - 8 * i));
    f[13] = 0xcf;
    for (int i = 0; i < 8; i++)
        f[14 + i] = (uint8_t)((uint64_t)sb.size >> (56 - 8 * i));
    f[22] = 0xce;
    for (int i = 0; i < 4; i++)
        f[23 + i] = (uint8_t)(crc >> (24 - 8 * i));
    memcpy(f + SNAPSHOT_FILE_HEADER_LEN, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    return f;
}

static void row_v1(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 3);
    msgpack_pack_int32(pk, 1);
    msgpack_pack_str_with_body(pk, "old", 3);
    msgpack_pack_str_with_body(pk, "pw", 2);
}

static void row_v2(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 5);
    msgpack_pack_int32(pk, 1);
    msgpack_pack_str_with_body(pk, "new", 3);
    msgpack_pack_str_with_body(pk, "pw", 2);
    msgpack_pack_int32(pk, -1);
    msgpack_pack_int32(pk, 4);
}

static void row_v2_bad_limit(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 5);
    msgpack_pack_int32(pk, 1);
    msgpack_pack_str_with_body(pk, "bad", 3);
    msgpack_pack_str_with_body(pk, "pw", 2);
    msgpack_pack_int32(pk, -2);
    msgpack_pack_int32(pk, 4);
}

START_TEST(test_file_versions)
{
    char err[256];
    size_t len;
    /* version 1 (an agent before the limits): read, users get the defaults */
    uint8_t *f = make_file(1, row_v1, &len);
    struct snapshot *s = snapshot_file_parse(f, len, err, sizeof(err));
    ck_assert_msg(s != NULL, "%s", err);
    assert_limits(s, "old", SNAP_LIMIT_DEFAULT, SNAP_LIMIT_DEFAULT);
    ck_assert_str_eq(snapshot_user(s, "old", 3)->password, "pw");
    snapshot_free(s);
    free(f);
    /* version 2 rows in a version 1 file, and the reverse: refused */
    f = make_file(1, row_v2, &len);
    ck_assert_ptr_null(snapshot_file_parse(f, len, err, sizeof(err)));
    ck_assert_msg(strstr(err, "user row has 5 fields, not 3") != NULL, "%s", err);
    free(f);
    f = make_file(2, row_v1, &len);
    ck_assert_ptr_null(snapshot_file_parse(f, len, err, sizeof(err)));
    ck_assert_msg(strstr(err, "user row has 3 fields, not 5") != NULL, "%s", err);
    free(f);
    /* version 2 */
    f = make_file(2, row_v2, &len);
    s = snapshot_file_parse(f, len, err, sizeof(err));
    ck_assert_msg(s != NULL, "%s", err);
    assert_limits(s, "new", SNAP_LIMIT_DEFAULT, 4);
    snapshot_free(s);
    free(f);
    /* a limit below -1 is damage, not a default */
    f = make_file(2, row_v2_bad_limit, &len);
    ck_assert_ptr_null(snapshot_file_parse(f, len, err, sizeof(err)));
    ck_assert_msg(strstr(err, "max_conns -2 is out of range") != NULL, "%s", err);
    free(f);
    /* a later version: refused, saying which ones this agent reads */
    f = make_file(3, row_v2, &len);
    ck_assert_ptr_null(snapshot_file_parse(f, len, err, sizeof(err)));
    ck_assert_str_eq(err, "unsupported snapshot file version 3 (this agent reads versions 1 to 2)");
    free(f);
}
END_TEST

/* --- the verdict ------------------------------------------------------------------------------ */

/* The verdict for user:pw from 127.0.0.1. */
static void decide(const struct snapshot *s, struct policy_ctx *ctx, const char *name,
                   struct policy_verdict *v)
{
    char hdr[128] = "Basic ";
    size_t n = basic_auth_encode(name, strlen(name), "pw", 2, hdr + 6, sizeof(hdr) - 6);
    ck_assert_uint_gt(n, 0);
    struct policy_request rq = {.family = AF_INET, .proxy_auth = hdr, .proxy_auth_len = 6 + n};
    inet_pton(AF_INET, "127.0.0.1", rq.addr);
    struct policy_hash_job job;
    ck_assert_int_eq(policy_decide(s, &rq, ctx, v, &job), POLICY_DONE);
}

START_TEST(test_verdict_limits)
{
    struct snapshot *s = build();
    struct policy_ctx ctx;
    policy_ctx_init(&ctx);
    struct policy_verdict v;
    /* no defaults configured: NULL means unlimited */
    decide(s, &ctx, "nulls", &v);
    ck_assert_int_eq(v.status, 200);
    ck_assert_uint_eq(v.max_conns, 0);
    ck_assert_uint_eq(v.max_rps, 0);
    decide(s, &ctx, "set", &v);
    ck_assert_uint_eq(v.max_conns, 2);
    ck_assert_uint_eq(v.max_rps, 5);

    ctx.default_max_conns = 10;
    ctx.default_max_rps = 50;
    decide(s, &ctx, "nulls", &v); /* NULL: the default */
    ck_assert_int_eq(v.status, 200);
    ck_assert_uint_eq(v.max_conns, 10);
    ck_assert_uint_eq(v.max_rps, 50);
    decide(s, &ctx, "zeros", &v); /* 0: unlimited, whatever the default */
    ck_assert_uint_eq(v.max_conns, 0);
    ck_assert_uint_eq(v.max_rps, 0);
    decide(s, &ctx, "set", &v); /* a value: itself */
    ck_assert_uint_eq(v.max_conns, 2);
    ck_assert_uint_eq(v.max_rps, 5);
    decide(s, &ctx, "max", &v);
    ck_assert_uint_eq(v.max_conns, INT32_MAX);
    ck_assert_uint_eq(v.max_rps, 1);

    /* refusals carry no limits */
    decide(s, &ctx, "nobody", &v);
    ck_assert_int_eq(v.status, 407);
    ck_assert_uint_eq(v.max_conns, 0);
    ck_assert_uint_eq(v.max_rps, 0);
    snapshot_free(s);
}
END_TEST

/* --- the end of a refused stream ---------------------------------------------------------- */

START_TEST(test_refused_record_names_its_stream)
{
    /* A 200 verdict registers the stream for the live balance; HAProxy's
     * 429 then ends it unbilled: its record still names the stream, so the
     * agent's registry lets go of it at once. */
    static const char line[] = "gw3 rid-3 - 429 177 150 127.0.0.1 1796396739179 5 - 9773.16 LR--";
    struct billing_record r;
    char buf[BILLING_LINE_MAX];
    const char *err = NULL;
    ck_assert_int_eq(billing_record_parse(line, strlen(line), &r, buf, sizeof(buf), &err), 0);
    ck_assert(!billing_record_billable(&r));
    ck_assert_int_eq(r.status, 429);
    ck_assert_uint_eq(r.stream.len, 7);
    ck_assert_mem_eq(r.stream.ptr, "9773.16", 7);
    static const char gw2[] = "gw2 rid-3 - 429 177 150 127.0.0.1 1796396739179 5 -";
    ck_assert_int_eq(billing_record_parse(gw2, strlen(gw2), &r, buf, sizeof(buf), &err), 0);
    ck_assert_ptr_null(r.stream.ptr);
}
END_TEST

Suite *limits_suite(void)
{
    Suite *s = suite_create("limits");
    TCase *tc = tcase_create("limits");
    tcase_add_test(tc, test_builder_limits);
    tcase_add_test(tc, test_delta_limits);
    tcase_add_test(tc, test_file_keeps_limits);
    tcase_add_test(tc, test_file_versions);
    tcase_add_test(tc, test_verdict_limits);
    tcase_add_test(tc, test_refused_record_names_its_stream);
    suite_add_tcase(s, tc);
    return s;
}
