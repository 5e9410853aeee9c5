/*
 * Starting a one-shot libev timer again after it has fired.
 *
 * libev keeps a stopped timer's remaining time: once a one-shot timer has
 * fired, that is zero, and a plain ev_timer_start fires it again at once
 * (a reconnect loop would spin). timer_once sets the delay every time.
 */
#ifndef GW_EV_TIMER_ONCE_H
#define GW_EV_TIMER_ONCE_H

#include <ev.h>

/* (Re)starts t to fire once, `after` seconds from now. */
static inline void timer_once(struct ev_loop *loop, ev_timer *t, ev_tstamp after)
{
    ev_timer_stop(loop, t);
    ev_timer_set(t, after, 0.);
    ev_timer_start(loop, t);
}

#endif
