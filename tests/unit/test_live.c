/*
 * Unit tests for the live balance's node side: agent/sess_dump.c (HAProxy's
 * "show info; show sess all" output, from a capture of HAProxy 2.6.12) and
 * agent/live.c (which running streams grew, which to prune, which to cut, and
 * what an end record learns). The Redis scripts are run by t_live.sh.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "billing_record.h"
#include "live.h"
#include "sess_dump.h"

extern Suite *live_suite(void);

#define LIT(s) s, sizeof(s) - 1

/* --- sess_dump ----------------------------------------------------------------------- */

static const char *const capture[] = {
    "Name: HAProxy",
    "Version: 2.6.12-1+deb12u4",
    "Pid: 20456",
    "Process_num: 1",
    "",
    "0x5606802b5030: [04/Dec/2026:14:19:49.600348] id=45 proto=tcpv4 source=127.0.0.1:33718",
    "  flags=0x84a, conn_retries=0, conn_exp=<NEVER> conn_et=0x000 srv_conn=0x5606801f5f40",
    "  frontend=f (id=2 mode=http), listener=? (id=1) addr=127.0.0.1:19080",
    "  txn=0x5606803d28b0 flags=0x8000 meth=7 status=200 req.st=MSG_TUNNEL rsp.st=MSG_TUNNEL",
    "  req=0x5606802b5050 (f=0x8848202 an=0x0 pipe=0 tofwd=-1 total=245)",
    "      an_exp=3s rex=59m58s wex=<NEVER>",
    "      buf=0x5606802b5058 data=(nil) o=0 p=0 i=0 size=0",
    "  res=0x5606802b50b0 (f=0x88078202 an=0x0 pipe=0 tofwd=-1 total=9807678)",
    "      an_exp=<NEVER> rex=<NEVER> wex=59m58s",
    "0x7f0cb0039f10: [04/Dec/2026:14:19:51.099773] id=46 proto=unix_stream source=unix:1",
    "  req=0x7f0cb0039f30 (f=0xc08000 an=0x0 pipe=0 tofwd=-1 total=14)",
    "  res=0x7f0cb0039f90 (f=0x80008002 an=0x0 pipe=0 tofwd=-1 total=1557)",
    "",
};

struct seen {
    struct sess_stream s[8];
    int n;
};

static void on_stream(void *arg, const struct sess_stream *s)
{
    struct seen *v = arg;
    if (v->n < 8) v->s[v->n++] = *s;
}

static void feed(struct sess_dump *d, const char *const *lines, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sess_dump_line(d, lines[i], strlen(lines[i]));
}

START_TEST(dump_reads_pid_and_each_streams_totals)
{
    struct seen v = {0};
    struct sess_dump d;
    sess_dump_init(&d, on_stream, &v);
    feed(&d, capture, sizeof(capture) / sizeof(capture[0]));
    ck_assert_uint_eq(d.pid, 20456);
    ck_assert_int_eq(v.n, 2);
    ck_assert_uint_eq(v.s[0].ptr, 0x5606802b5030ull);
    ck_assert_uint_eq(v.s[0].id, 45);
    ck_assert_uint_eq(v.s[0].req_bytes, 245);
    ck_assert_uint_eq(v.s[0].res_bytes, 9807678);
    ck_assert_uint_eq(v.s[1].id, 46);
    ck_assert_uint_eq(d.malformed, 0);
}
END_TEST

START_TEST(dump_refuses_what_does_not_parse)
{
    static const char *const bad[] = {
        "0xzz: id=1",                                        /* no hex address */
        "  req=0x1 (total=5)",                               /* outside a stream */
        "  res=0x1 (total=5)",                               /* outside a stream */
        "0x10: [..] id= proto=tcpv4",                        /* empty id */
        "0x11: [..] id=99999999999999999999999 proto=tcpv4", /* overflow */
        "0x12: [..] id=7 proto=tcpv4",
        "  res=0x1 (f=0 total=5)", /* res before req */
        "0x13: [..] id=8 proto=tcpv4",
        "  req=0x1 (f=0 total=x)", /* not a number */
        "  res=0x1 (f=0 total=5)",
        "0x14: [..] id=9 proto=tcpv4",
        "  req=0x1 (f=0 total=1)",
        "  res=0x1 (f=0 total=2)", /* the one good block */
        "Pid: 12x",                /* ignored, pid stays unknown */
    };
    struct seen v = {0};
    struct sess_dump d;
    sess_dump_init(&d, on_stream, &v);
    feed(&d, bad, sizeof(bad) / sizeof(bad[0]));
    ck_assert_int_eq(v.n, 1);
    ck_assert_uint_eq(v.s[0].id, 9);
    ck_assert_uint_eq(v.s[0].req_bytes + v.s[0].res_bytes, 3);
    ck_assert_uint_eq(d.malformed, 5);
    ck_assert_uint_eq(d.pid, 0);
}
END_TEST

/* --- live registry ------------------------------------------------------------------- */

struct progress {
    char user[64], rid[64];
    uint64_t bytes;
};
struct grown {
    struct progress p[16];
    int n;
};

static void on_progress(void *arg, const char *user, size_t ulen, const char *rid, size_t rlen,
                        uint64_t bytes)
{
    struct grown *g = arg;
    ck_assert_int_lt(g->n, 16);
    struct progress *p = &g->p[g->n++];
    memcpy(p->user, user, ulen);
    p->user[ulen] = 0;
    memcpy(p->rid, rid, rlen);
    p->rid[rlen] = 0;
    p->bytes = bytes;
}

START_TEST(sid_parsing)
{
    uint64_t pid, id;
    ck_assert(live_sid_parse(LIT("20456.45"), &pid, &id));
    ck_assert_uint_eq(pid, 20456);
    ck_assert_uint_eq(id, 45);
    ck_assert(live_sid_parse(LIT("1.0"), &pid, &id));
    ck_assert(!live_sid_parse(LIT("0.5"), &pid, &id)); /* no process 0 */
    ck_assert(!live_sid_parse(LIT("12"), &pid, &id));
    ck_assert(!live_sid_parse(LIT("12."), &pid, &id));
    ck_assert(!live_sid_parse(LIT(".12"), &pid, &id));
    ck_assert(!live_sid_parse(LIT("1.2.3"), &pid, &id));
    ck_assert(!live_sid_parse(LIT("-1.2"), &pid, &id));
    ck_assert(!live_sid_parse(LIT("1.99999999999999999999"), &pid, &id));
}
END_TEST

START_TEST(streams_in_flight_are_handed_out_when_they_grow)
{
    struct live *l = live_new(100);
    ck_assert_int_eq(live_register(l, 7, 1, LIT("rid-a"), LIT("ann"), 1000), 0);
    ck_assert_int_eq(live_register(l, 7, 2, LIT("rid-b"), LIT("bob"), 1000), 0);
    ck_assert(live_active(l));

    struct grown g = {0};
    live_dump_begin(l, 7);
    live_dump_stream(l, 1, 0xa1, 500);
    live_dump_stream(l, 2, 0xb1, 0);   /* nothing moved yet */
    live_dump_stream(l, 3, 0xc1, 900); /* not ours: another customer's refused request */
    ck_assert_uint_eq(live_dump_end(l, 0, on_progress, &g), 1);
    ck_assert_int_eq(g.n, 1);
    ck_assert_str_eq(g.p[0].user, "ann");
    ck_assert_str_eq(g.p[0].rid, "rid-a");
    ck_assert_uint_eq(g.p[0].bytes, 500);

    /* the next dump: only growth is handed out, as the new total */
    g.n = 0;
    live_dump_begin(l, 7);
    live_dump_stream(l, 1, 0xa1, 500);
    live_dump_stream(l, 2, 0xb1, 70);
    ck_assert_uint_eq(live_dump_end(l, 0, on_progress, &g), 1);
    ck_assert_str_eq(g.p[0].user, "bob");
    ck_assert_uint_eq(g.p[0].bytes, 70);
    live_free(l);
}
END_TEST

START_TEST(streams_gone_from_haproxy_are_pruned_after_the_grace)
{
    struct live *l = live_new(100);
    live_register(l, 7, 1, LIT("r1"), LIT("ann"), 1000);
    live_register(l, 7, 2, LIT("r2"), LIT("ann"), 5000); /* too young to be missed */
    live_register(l, 8, 3, LIT("r3"), LIT("ann"), 1000); /* an old HAProxy worker's */
    struct grown g = {0};
    live_dump_begin(l, 7);
    live_dump_end(l, 2000, on_progress, &g);
    struct live_counts c = live_counts(l);
    ck_assert_uint_eq(c.pruned, 2);
    ck_assert_uint_eq(c.entries, 1);
    ck_assert_int_eq(live_finish(l, 7, 2), LIVE_CUT_NONE);
    ck_assert(!live_active(l));
    live_free(l);
}
END_TEST

START_TEST(a_cut_marks_the_users_streams_and_the_end_record_learns_it)
{
    struct live *l = live_new(100);
    live_register(l, 7, 1, LIT("r1"), LIT("ann"), 0);
    live_register(l, 7, 2, LIT("r2"), LIT("ann"), 0);
    live_register(l, 7, 3, LIT("r3"), LIT("annie"), 0); /* a prefix is not the user */
    live_register(l, 7, 4, LIT("r4"), LIT("ann"), 0);   /* registered, not in the dump */
    struct grown g = {0};
    live_dump_begin(l, 7);
    live_dump_stream(l, 1, 0xa1, 10);
    live_dump_stream(l, 2, 0xa2, 10);
    live_dump_stream(l, 3, 0xa3, 10);
    live_dump_end(l, -1, on_progress, &g);
    uint64_t ptrs[8];
    size_t n = live_cut_user(l, LIT("ann"), LIVE_CUT_BALANCE, ptrs, 8);
    ck_assert_uint_eq(n, 2);
    ck_assert(ptrs[0] + ptrs[1] == 0xa1 + 0xa2);
    /* a cut stream is not handed out any more: its record has the final say */
    g.n = 0;
    live_dump_begin(l, 7);
    live_dump_stream(l, 1, 0xa1, 99);
    live_dump_end(l, -1, on_progress, &g);
    ck_assert_int_eq(g.n, 0);
    ck_assert_int_eq(live_finish(l, 7, 1), LIVE_CUT_BALANCE);
    ck_assert_str_eq(live_cut_name(LIVE_CUT_BALANCE), "balance");
    ck_assert_int_eq(live_finish(l, 7, 1), LIVE_CUT_NONE); /* gone */
    ck_assert_int_eq(live_finish(l, 7, 3), LIVE_CUT_NONE);
    ck_assert_ptr_null(live_cut_name(LIVE_CUT_NONE));
    live_free(l);
}
END_TEST

START_TEST(the_registry_is_bounded)
{
    struct live *l = live_new(2);
    ck_assert_int_eq(live_register(l, 1, 1, LIT("r"), LIT("u"), 0), 0);
    ck_assert_int_eq(live_register(l, 1, 2, LIT("r"), LIT("u"), 0), 0);
    ck_assert_int_eq(live_register(l, 1, 3, LIT("r"), LIT("u"), 0), -1);
    char big[LIVE_USER_MAX + 1];
    memset(big, 'x', sizeof(big));
    ck_assert_int_eq(live_finish(l, 1, 1), LIVE_CUT_NONE);
    ck_assert_int_eq(live_register(l, 1, 4, LIT("r"), big, sizeof(big), 0), -1);
    ck_assert_int_eq(live_register(l, 1, 4, LIT("r"), "", 0, 0), -1);
    ck_assert_int_eq(live_register(l, 1, 4, "", 0, LIT("u"), 0), -1);
    /* the same stream twice: the newer registration replaces the older */
    ck_assert_int_eq(live_register(l, 1, 2, LIT("r2"), LIT("v"), 0), 0);
    struct live_counts c = live_counts(l);
    ck_assert_uint_eq(c.entries, 1);
    ck_assert_uint_eq(c.refused, 4);
    live_free(l);
}
END_TEST

START_TEST(many_streams_register_finish_and_prune_in_any_order)
{
    enum { N = 3000 };
    struct live *l = live_new(N);
    static bool alive[N];
    unsigned seed = 12345;
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(live_register(l, 9, (uint64_t)i, LIT("r"), LIT("u"), i), 0);
        alive[i] = true;
    }
    size_t left = N;
    for (int round = 0; round < 4; round++) {
        for (int k = 0; k < N / 8; k++) { /* some end */
            seed = seed * 1103515245u + 12345u;
            int i = (int)((seed >> 8) % N);
            if (alive[i]) {
                ck_assert_int_eq(live_finish(l, 9, (uint64_t)i), LIVE_CUT_NONE);
                alive[i] = false;
                left--;
            }
        }
        /* a dump shows the odd streams only; the even ones registered
         * before 1000 are pruned */
        struct grown g = {0};
        live_dump_begin(l, 9);
        for (int i = 1; i < N; i += 2)
            if (alive[i]) live_dump_stream(l, (uint64_t)i, 0x1000u + (uint64_t)i, 0);
        live_dump_end(l, 1000, on_progress, &g);
        for (int i = 0; i < 1000; i += 2)
            if (alive[i]) {
                alive[i] = false;
                left--;
            }
        ck_assert_uint_eq(live_counts(l).entries, left);
    }
    for (int i = 0; i < N; i++)
        if (alive[i]) ck_assert_int_eq(live_finish(l, 9, (uint64_t)i), LIVE_CUT_NONE);
    ck_assert(!live_active(l));
    live_free(l);
}
END_TEST

/* --- gw3 billing records: the stream and how it ended ------------------------------------ */

START_TEST(gw3_records_name_their_stream_and_a_cut_shows_in_json)
{
    static const char line[] = "gw3 rid-1 200 bXl1c2Vy - - - - Q09OTkVDVA== eDo0NDM= 200 300 "
                               "5000 127.0.0.1 1795656352917 4 0 20456.45 K---";
    struct billing_record r;
    char buf[BILLING_LINE_MAX], json[8192];
    const char *err = NULL;
    ck_assert_int_eq(billing_record_parse(line, strlen(line), &r, buf, sizeof(buf), &err), 0);
    ck_assert(billing_record_billable(&r));
    ck_assert_mem_eq(r.stream.ptr, "20456.45", r.stream.len);
    ck_assert_mem_eq(r.termination.ptr, "K---", 4);
    size_t n = billing_record_json(&r, json, sizeof(json));
    json[n] = 0;
    ck_assert_ptr_null(strstr(json, "cut_reason")); /* not cut: the reference's fields only */
    r.cut_reason = live_cut_name(LIVE_CUT_BALANCE);
    n = billing_record_json(&r, json, sizeof(json));
    json[n] = 0;
    ck_assert_ptr_nonnull(strstr(json, ",\"request_id\":\"rid-1\",\"cut_reason\":\"balance\"}"));
    char id[16];
    ck_assert_uint_eq(billing_json_request_id(json, n, id, sizeof(id)), 5);

    static const char refused[] =
        "gw3 rid-2 - 402 181 205 127.0.0.1 1795656352917 5 - 20456.46 ----";
    ck_assert_int_eq(billing_record_parse(refused, strlen(refused), &r, buf, sizeof(buf), &err), 0);
    ck_assert(!billing_record_billable(&r));
    static const char *const bad[] = {
        "gw3 rid-1 200 - - - - - - - 200 300 5000 127.0.0.1 1 4 0 20456.45",    /* short */
        "gw3 rid-1 200 - - - - - - - 200 300 5000 127.0.0.1 1 4 0 1.2 ---- x",  /* long */
        "gw3 rid-1 200 - - - - - - - 200 300 5000 127.0.0.1 1 4 0 1.2 \x01---", /* control */
        "gw4 rid-1 200 - - - - - - - 200 300 5000 127.0.0.1 1 4 0 1.2 ----",    /* unknown */
        "gw3 rid-2 - 402 181 205 127.0.0.1 1 5 - 1.2",                          /* refused, short */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(billing_record_parse(bad[i], strlen(bad[i]), &r, buf, sizeof(buf), &err) != 0,
                      "accepted: %s", bad[i]);
}
END_TEST

Suite *live_suite(void)
{
    Suite *s = suite_create("live");
    TCase *tc = tcase_create("sess_dump");
    tcase_add_test(tc, dump_reads_pid_and_each_streams_totals);
    tcase_add_test(tc, dump_refuses_what_does_not_parse);
    suite_add_tcase(s, tc);
    tc = tcase_create("registry");
    tcase_add_test(tc, sid_parsing);
    tcase_add_test(tc, streams_in_flight_are_handed_out_when_they_grow);
    tcase_add_test(tc, streams_gone_from_haproxy_are_pruned_after_the_grace);
    tcase_add_test(tc, a_cut_marks_the_users_streams_and_the_end_record_learns_it);
    tcase_add_test(tc, the_registry_is_bounded);
    tcase_add_test(tc, many_streams_register_finish_and_prune_in_any_order);
    suite_add_tcase(s, tc);
    tc = tcase_create("records");
    tcase_add_test(tc, gw3_records_name_their_stream_and_a_cut_shows_in_json);
    suite_add_tcase(s, tc);
    return s;
}
