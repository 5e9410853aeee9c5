/* timer_once: a one-shot timer started again from its own callback waits
 * its delay each time (a plain ev_timer_start fires it at once: the bug it
 * replaces made reconnect loops spin). */
#include <check.h>
#include <ev.h>

#include "ev_timer_once.h"

#define DELAY 0.02

struct run {
    int fired;
    ev_tstamp start, last;
};

static void again_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct run *r = t->data;
    r->last = ev_time();
    if (++r->fired < 3)
        timer_once(loop, t, DELAY);
    else
        ev_break(loop, EVBREAK_ALL);
}

START_TEST(restarted_timer_waits_its_delay_each_time)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    ev_timer t;
    struct run r = {0};
    ev_timer_init(&t, again_cb, DELAY, 0.);
    t.data = &r;
    r.start = ev_time();
    ev_timer_start(loop, &t);
    ev_run(loop, 0);
    ck_assert_int_eq(r.fired, 3);
    /* three waits of DELAY, not one (a lower bound: timers never fire early
     * by more than libev's clock granularity) */
    ck_assert_msg(r.last - r.start >= 3 * DELAY * 0.9, "three firings within %.4f s",
                  r.last - r.start);
    ev_loop_destroy(loop);
}
END_TEST

Suite *ev_timer_once_suite(void)
{
    Suite *s = suite_create("ev_timer_once");
    TCase *tc = tcase_create("restart");
    tcase_add_test(tc, restarted_timer_waits_its_delay_each_time);
    suite_add_tcase(s, tc);
    return s;
}
