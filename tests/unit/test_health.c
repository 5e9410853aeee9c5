/*
 * Unit tests for agent/gw/health.c: the classification of HAProxy's
 * termination states, and the state machine (failures in a row, the failure
 * ratio, back-off growth and its cap, half-open trials, outcomes of requests
 * that began before a change of state, active check gating).
 */
#include <check.h>
#include <string.h>

#include "health.h"

extern Suite *health_suite(void);

#define SLUG "prov"
#define N    4

static struct health_config cfg(void)
{
    return (struct health_config){
        .fails = 3,
        .ratio_pct = 0,
        .min_requests = 10,
        .window_ms = 10000,
        .backoff_min_ms = 1000,
        .backoff_max_ms = 5000,
        .trials = 1,
        .trial_timeout_ms = 3000,
        .gate_on_check = false,
    };
}

/* Monotonic and wall clocks move together in these tests. */
#define WALL(ms) (1700000000000 + (ms))

static void report(struct health *h, enum health_result r, int64_t started, int64_t now)
{
    health_report(h, SLUG, N, r, WALL(started), now, WALL(now));
}

static enum health_state st(struct health *h)
{
    return health_state(h, SLUG, N);
}

START_TEST(classify_termination_states)
{
    /* the provider's failures */
    ck_assert_int_eq(health_classify(503, "SC--", 4), HEALTH_FAIL_CONNECT);
    ck_assert_int_eq(health_classify(503, "sC--", 4), HEALTH_FAIL_TIMEOUT);
    ck_assert_int_eq(health_classify(502, "SH--", 4), HEALTH_FAIL_RESET);
    ck_assert_int_eq(health_classify(504, "sH--", 4), HEALTH_FAIL_STALL);
    ck_assert_int_eq(health_classify(502, "LH--", 4), HEALTH_FAIL_AUTH);
    /* the provider answered: whatever the status, it did its part */
    ck_assert_int_eq(health_classify(200, "----", 4), HEALTH_OK);
    ck_assert_int_eq(health_classify(404, "----", 4), HEALTH_OK);
    ck_assert_int_eq(health_classify(502, "----", 4), HEALTH_OK); /* origin's or target's 502 */
    ck_assert_int_eq(health_classify(503, "----", 4), HEALTH_OK);
    ck_assert_int_eq(health_classify(200, "CD--", 4), HEALTH_OK); /* tunnel closed by client */
    ck_assert_int_eq(health_classify(200, "SD--", 4), HEALTH_OK); /* closed during data */
    ck_assert_int_eq(health_classify(200, "sD--", 4), HEALTH_OK);
    ck_assert_int_eq(health_classify(200, "KD--", 4), HEALTH_OK); /* cut by the live balance */
    /* says nothing about the provider */
    ck_assert_int_eq(health_classify(503, "CC--", 4), HEALTH_NEUTRAL); /* client left */
    ck_assert_int_eq(health_classify(502, "CH--", 4), HEALTH_NEUTRAL);
    ck_assert_int_eq(health_classify(504, "cH--", 4), HEALTH_NEUTRAL);
    ck_assert_int_eq(health_classify(400, "CR--", 4), HEALTH_NEUTRAL);
    ck_assert_int_eq(health_classify(403, "PR--", 4), HEALTH_NEUTRAL);
    ck_assert_int_eq(health_classify(503, "KH--", 4), HEALTH_NEUTRAL); /* cut while waiting */
    ck_assert_int_eq(health_classify(500, "LH--", 4), HEALTH_NEUTRAL); /* not our 407 rule */
    ck_assert_int_eq(health_classify(-1, "----", 4), HEALTH_NEUTRAL);
    ck_assert_int_eq(health_classify(502, "S", 1), HEALTH_NEUTRAL);
    ck_assert_int_eq(health_classify(502, NULL, 0), HEALTH_NEUTRAL);
}
END_TEST

START_TEST(consecutive_failures_take_it_out)
{
    struct health_config c = cfg();
    struct health *h = health_new(&c);
    ck_assert_int_eq(st(h), HEALTH_IN);
    report(h, HEALTH_FAIL_CONNECT, 0, 1);
    report(h, HEALTH_FAIL_CONNECT, 0, 2);
    report(h, HEALTH_OK, 0, 3); /* a success resets the count */
    report(h, HEALTH_FAIL_CONNECT, 0, 4);
    report(h, HEALTH_NEUTRAL, 0, 5); /* neutral changes nothing */
    report(h, HEALTH_FAIL_STALL, 0, 6);
    ck_assert_int_eq(st(h), HEALTH_IN);
    report(h, HEALTH_FAIL_AUTH, 0, 7);
    ck_assert_int_eq(st(h), HEALTH_OUT);
    struct health_view v;
    ck_assert(health_view(h, SLUG, N, 7, &v));
    ck_assert_int_eq(v.failures, 3);
    ck_assert_int_eq(v.last_error, HEALTH_FAIL_AUTH);
    ck_assert_int_eq(v.out_left_ms, 1000);
    ck_assert_int_eq(v.times_out, 1);
    /* another provider is unaffected, an unknown one is in */
    ck_assert_int_eq(health_state(h, "other", 5), HEALTH_IN);
    ck_assert(!health_view(h, "other", 5, 7, &v));
    health_free(h);
}
END_TEST

START_TEST(ratio_over_the_window)
{
    struct health_config c = cfg();
    c.fails = 0;
    c.ratio_pct = 50;
    c.min_requests = 10;
    struct health *h = health_new(&c);
    /* alternating: never 2 in a row, but half of them fail (outcomes count
     * from a provider's first failure: before it, it has no slot) */
    for (int i = 0; i < 8; i++)
        report(h, i % 2 ? HEALTH_OK : HEALTH_FAIL_RESET, 0, 10 + i);
    ck_assert_int_eq(st(h), HEALTH_IN); /* too few outcomes yet */
    report(h, HEALTH_OK, 0, 18);
    report(h, HEALTH_FAIL_RESET, 0, 19); /* 10 outcomes, 5 failed */
    ck_assert_int_eq(st(h), HEALTH_OUT);
    health_free(h);

    /* a new window forgets the old outcomes */
    h = health_new(&c);
    for (int i = 0; i < 9; i++)
        report(h, i % 2 ? HEALTH_OK : HEALTH_FAIL_RESET, 0, 10 + i);
    report(h, HEALTH_FAIL_RESET, 0, 20000);
    ck_assert_int_eq(st(h), HEALTH_IN);
    health_free(h);
}
END_TEST

/* Takes the provider out at now (3 failures). */
static void knock_out(struct health *h, int64_t now)
{
    for (int i = 0; i < 3; i++)
        report(h, HEALTH_FAIL_CONNECT, now, now);
}

START_TEST(backoff_grows_and_half_open_decides)
{
    struct health_config c = cfg();
    struct health *h = health_new(&c);
    knock_out(h, 100);
    ck_assert_int_eq(st(h), HEALTH_OUT);
    ck_assert(!health_take_trial(h, SLUG, N));
    health_tick(h, 1099, WALL(1099));
    ck_assert_int_eq(st(h), HEALTH_OUT);
    health_tick(h, 1100, WALL(1100)); /* 1 s back-off over */
    ck_assert_int_eq(st(h), HEALTH_HALF_OPEN);
    /* one trial at a time */
    ck_assert(health_usable(h, SLUG, N));
    ck_assert(!health_usable(h, SLUG, N));
    /* the trial fails: out again, 2 s */
    report(h, HEALTH_FAIL_CONNECT, 1101, 1150);
    ck_assert_int_eq(st(h), HEALTH_OUT);
    struct health_view v;
    health_view(h, SLUG, N, 1150, &v);
    ck_assert_int_eq(v.out_left_ms, 2000);
    /* 4 s, then capped at 5 s */
    health_tick(h, 3150, WALL(3150));
    report(h, HEALTH_FAIL_CONNECT, 3151, 3200);
    health_view(h, SLUG, N, 3200, &v);
    ck_assert_int_eq(v.out_left_ms, 4000);
    health_tick(h, 7200, WALL(7200));
    report(h, HEALTH_FAIL_CONNECT, 7201, 7300);
    health_view(h, SLUG, N, 7300, &v);
    ck_assert_int_eq(v.out_left_ms, 5000);
    ck_assert_int_eq(v.times_out, 4);
    /* half-open, the trial succeeds: in, and the back-off starts over */
    health_tick(h, 12300, WALL(12300));
    ck_assert(health_usable(h, SLUG, N));
    report(h, HEALTH_OK, 12301, 12400);
    ck_assert_int_eq(st(h), HEALTH_IN);
    ck_assert(health_usable(h, SLUG, N));
    knock_out(h, 12500);
    health_view(h, SLUG, N, 12500, &v);
    ck_assert_int_eq(v.out_left_ms, 1000);
    health_free(h);
}
END_TEST

START_TEST(old_requests_do_not_count)
{
    struct health_config c = cfg();
    struct health *h = health_new(&c);
    knock_out(h, 100);
    /* failures and successes of requests that began before it went out */
    report(h, HEALTH_FAIL_CONNECT, 50, 120);
    report(h, HEALTH_OK, 99, 130); /* a long tunnel ending well */
    ck_assert_int_eq(st(h), HEALTH_OUT);
    struct health_view v;
    health_view(h, SLUG, N, 130, &v);
    ck_assert_int_eq(v.out_left_ms, 970); /* not extended */
    /* requests sent there after (every provider out): a failure keeps the
     * back-off as it was, a success brings it in */
    report(h, HEALTH_FAIL_CONNECT, 140, 150);
    health_view(h, SLUG, N, 150, &v);
    ck_assert_int_eq(v.out_left_ms, 950);
    ck_assert_int_eq(v.times_out, 1);
    report(h, HEALTH_OK, 200, 250);
    ck_assert_int_eq(st(h), HEALTH_IN);
    health_free(h);
}
END_TEST

START_TEST(stuck_trial_frees_its_place)
{
    struct health_config c = cfg();
    struct health *h = health_new(&c);
    knock_out(h, 0);
    health_tick(h, 1000, WALL(1000));
    ck_assert(health_take_trial(h, SLUG, N));
    ck_assert(!health_take_trial(h, SLUG, N));
    health_tick(h, 3999, WALL(3999));
    ck_assert(!health_take_trial(h, SLUG, N));
    health_tick(h, 4000, WALL(4000)); /* trial_timeout_ms without an outcome */
    ck_assert(health_take_trial(h, SLUG, N));
    health_free(h);
}
END_TEST

START_TEST(checks_gate_half_open)
{
    struct health_config c = cfg();
    c.gate_on_check = true;
    struct health *h = health_new(&c);
    /* checks that fail take an in provider out like requests */
    for (int i = 0; i < 3; i++)
        health_check_done(h, SLUG, N, false, 10, WALL(10));
    ck_assert_int_eq(st(h), HEALTH_OUT);
    health_tick(h, 2000, WALL(2000));
    ck_assert_int_eq(st(h), HEALTH_OUT); /* no half-open without a check */
    ck_assert(health_due(h, SLUG, N, 2000));
    health_check_done(h, SLUG, N, false, 2000, WALL(2000)); /* still down: longer */
    struct health_view v;
    health_view(h, SLUG, N, 2000, &v);
    ck_assert_int_eq(v.out_left_ms, 2000);
    ck_assert_int_eq(v.last_error, HEALTH_FAIL_CHECK);
    ck_assert(!health_due(h, SLUG, N, 3999));
    health_check_done(h, SLUG, N, true, 3999, WALL(3999)); /* too early: ignored */
    ck_assert_int_eq(st(h), HEALTH_OUT);
    health_check_done(h, SLUG, N, true, 4000, WALL(4000));
    ck_assert_int_eq(st(h), HEALTH_HALF_OPEN);
    /* a check's success alone never brings it in: a request must */
    health_check_done(h, SLUG, N, true, 4001, WALL(4001));
    ck_assert_int_eq(st(h), HEALTH_HALF_OPEN);
    report(h, HEALTH_OK, 4002, 4100);
    ck_assert_int_eq(st(h), HEALTH_IN);
    /* and a check's success does not reset failures in a row */
    report(h, HEALTH_FAIL_AUTH, 4200, 4200);
    report(h, HEALTH_FAIL_AUTH, 4200, 4201);
    health_check_done(h, SLUG, N, true, 4202, WALL(4202));
    report(h, HEALTH_FAIL_AUTH, 4200, 4203);
    ck_assert_int_eq(st(h), HEALTH_OUT);
    health_free(h);
}
END_TEST

START_TEST(null_and_long_slugs)
{
    ck_assert_int_eq(health_state(NULL, SLUG, N), HEALTH_IN);
    struct health_config c = cfg();
    struct health *h = health_new(&c);
    char big[HEALTH_SLUG_MAX + 10];
    memset(big, 'a', sizeof(big));
    for (int i = 0; i < 5; i++)
        health_report(h, big, sizeof(big), HEALTH_FAIL_CONNECT, WALL(0), 1, WALL(1));
    ck_assert_int_eq(health_state(h, big, sizeof(big)), HEALTH_IN); /* not tracked */
    health_free(h);
}
END_TEST

Suite *health_suite(void)
{
    Suite *s = suite_create("health");
    TCase *tc = tcase_create("classify");
    tcase_add_test(tc, classify_termination_states);
    suite_add_tcase(s, tc);
    tc = tcase_create("state");
    tcase_add_test(tc, consecutive_failures_take_it_out);
    tcase_add_test(tc, ratio_over_the_window);
    tcase_add_test(tc, backoff_grows_and_half_open_decides);
    tcase_add_test(tc, old_requests_do_not_count);
    tcase_add_test(tc, stuck_trial_frees_its_place);
    tcase_add_test(tc, checks_gate_half_open);
    tcase_add_test(tc, null_and_long_slugs);
    suite_add_tcase(s, tc);
    return s;
}
