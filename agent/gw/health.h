/*
 * Provider health: which upstream providers are in selection, per node.
 *
 * Passive health comes from real traffic: the billing thread sees how every
 * forwarded request ended (HAProxy's status and termination state, %tsc)
 * and health_classify tells the provider's failures (connect refused or
 * timed out, reset or stall before a response, its 407 to the gateway's
 * credentials) from what says nothing about it (the client leaving, the
 * origin's own answers passed through). Active health (health_check.c) adds
 * a periodic TCP connect to each provider.
 *
 * The rule, per provider (slug):
 *   in        failures in a row >= fails, or (over the current window of
 *             window_ms) at least min_requests outcomes of which ratio_pct %
 *             or more failed  ->  out
 *   out       for backoff (backoff_min_ms the first time, doubled each time
 *             it fails again from half-open, at most backoff_max_ms); then
 *             half-open (with active checks on: only once a connect succeeds;
 *             a failed connect means out again, longer)
 *   half-open at most `trials` requests at a time go to it (a trial stuck
 *             for trial_timeout_ms, e.g. a long tunnel, frees its place);
 *             a success -> in (back-off back to its minimum), a failure ->
 *             out again, longer
 * An outcome counts only when its request began after the provider's last
 * change of state: requests in flight when it went out, or long tunnels
 * ending later, say nothing about its state now. Requests reach a provider
 * that is out only when every provider of their pool is out: their failures
 * leave the back-off as it is, a success brings the provider back in.
 *
 * Threads: the verdict threads only read (health_state, one relaxed load)
 * and take half-open trial places (one atomic add); writers (the billing
 * thread, the check thread) serialize on a mutex that readers never take.
 * Slots are keyed by slug, created on first failure or check and never
 * removed, so the state survives snapshot reloads (a provider removed and
 * added again keeps it).
 */
#ifndef GW_HEALTH_H
#define GW_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HEALTH_SLUG_MAX 128  /* longer slugs are not tracked (always in) */
#define HEALTH_SLOTS    4096 /* providers tracked at most */

enum health_state {
    HEALTH_IN = 0,
    HEALTH_OUT = 1,
    HEALTH_HALF_OPEN = 2,
};

/* How one forwarded request (or one check) ended, for its provider. */
enum health_result {
    HEALTH_OK = 0,       /* the provider answered (whatever the origin said) */
    HEALTH_NEUTRAL,      /* says nothing about the provider (client abort, cut...) */
    HEALTH_FAIL_CONNECT, /* connection refused or reset while connecting (SC) */
    HEALTH_FAIL_TIMEOUT, /* connect timeout (sC) */
    HEALTH_FAIL_RESET,   /* closed or reset before its response head (SH) */
    HEALTH_FAIL_STALL,   /* no response head within the server timeout (sH) */
    HEALTH_FAIL_AUTH,    /* answered 407 to the gateway's credentials (LH + 502) */
    HEALTH_FAIL_CHECK,   /* active check: the TCP connect failed */
    HEALTH_RESULT_COUNT
};

/* The short name /health and the logs use ("connect", "stall"...). */
const char *health_result_name(enum health_result r);
const char *health_state_name(enum health_state s);
static inline bool health_is_failure(enum health_result r)
{
    return r >= HEALTH_FAIL_CONNECT && r < HEALTH_RESULT_COUNT;
}

/*
 * Classifies a forwarded request's end from the status HAProxy logged (%ST)
 * and its termination state (%tsc, at least 2 characters; NULL or shorter:
 * neutral). The first character says who ended it (S server, s server-side
 * timeout, C/c client, L local, K killed...), the second at which stage (C
 * connecting, H waiting for the response head, D data...). A response head
 * received (stage D, L or '-') means the provider did its job: OK, whatever
 * the status (the origin's 4xx/5xx, or the provider's own error about the
 * target, pass through). The gateway turns an upstream 407 into its own 502
 * with an http-response rule: that is the only "L" end at stage H with 502.
 */
enum health_result health_classify(int64_t status, const char *tsc, size_t len);

struct health_config {
    unsigned fails;            /* failures in a row that take a provider out (0: not by count) */
    unsigned ratio_pct;        /* failure ratio over the window that does (0: off) */
    unsigned min_requests;     /* outcomes in the window before the ratio counts */
    unsigned window_ms;        /* the ratio's window, ms */
    unsigned backoff_min_ms;   /* first time out, ms */
    unsigned backoff_max_ms;   /* longest time out, ms */
    unsigned trials;           /* requests at a time while half-open (>= 1) */
    unsigned trial_timeout_ms; /* a trial without an outcome this long frees its place */
    bool gate_on_check;        /* out -> half-open only after a successful check */
};

/* What /health shows for one provider. */
struct health_view {
    enum health_state state;
    uint32_t failures;        /* in a row */
    uint32_t recent_failures; /* in the current window */
    enum health_result last_error;
    int64_t last_error_wall_ms; /* 0: never */
    int64_t out_left_ms;        /* out: until half-open; else 0 */
    uint32_t times_out;         /* times it was taken out since the agent started */
};

struct health;

struct health *health_new(const struct health_config *cfg);
void health_free(struct health *h);
const struct health_config *health_config(const struct health *h);

/* --- readers (verdict threads): lock-free --------------------------------------- */

/* The provider's state; an unknown provider is in. h may be NULL (health off). */
enum health_state health_state(const struct health *h, const char *slug, size_t len);
/* Takes one of a half-open provider's trial places; false when none is free
 * (or it is not half-open any more). */
bool health_take_trial(struct health *h, const char *slug, size_t len);
/* Whether a request may go to the provider now (in, or a trial place taken). */
static inline bool health_usable(struct health *h, const char *slug, size_t len)
{
    enum health_state s = health_state(h, slug, len);
    return s == HEALTH_IN || (s == HEALTH_HALF_OPEN && health_take_trial(h, slug, len));
}
/* Fills *v; false when the provider was never tracked (in, no failure). */
bool health_view(const struct health *h, const char *slug, size_t len, int64_t now_mono_ms,
                 struct health_view *v);

/* --- writers (billing thread, check thread) ----------------------------------------- */

/* The outcome of one request to the provider that began at started_wall_ms
 * (HAProxy's accept date), at now (monotonic and wall ms). */
void health_report(struct health *h, const char *slug, size_t len, enum health_result r,
                   int64_t started_wall_ms, int64_t now_mono_ms, int64_t now_wall_ms);
/* An active check's outcome (HEALTH_OK or HEALTH_FAIL_CHECK). A success only
 * lets an out provider whose back-off is over into half-open; a failure
 * counts like a request's (and keeps an out provider out, longer). */
void health_check_done(struct health *h, const char *slug, size_t len, bool ok, int64_t now_mono_ms,
                       int64_t now_wall_ms);
/* Timed changes: out -> half-open when the back-off is over (unless
 * gate_on_check), stuck trial places freed. Call every ~100 ms. */
void health_tick(struct health *h, int64_t now_mono_ms, int64_t now_wall_ms);
/* Whether the provider is out with its back-off over (the check thread
 * checks it at once). */
bool health_due(const struct health *h, const char *slug, size_t len, int64_t now_mono_ms);

#endif
