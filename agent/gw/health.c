/*
 * Provider health (see health.h for the rule): a fixed open-addressing table
 * of slots keyed by slug, read by the verdict threads without locks and
 * written by the billing and check threads under one mutex.
 *
 * What a reader touches is atomic: the state, the trial places, and what
 * /health shows. The writers' own bookkeeping (the window's counts, when the
 * state last changed) is plain and only ever touched under the mutex. A slot
 * is published once (its slug written, then `used` stored with release) and
 * never freed or reused for another slug, so a reader that found it can read
 * its slug without a lock.
 */
#include "health.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct health_slot {
    atomic_bool used;
    uint8_t slug_len;
    uint64_t hash;
    char slug[HEALTH_SLUG_MAX];
    /* read by any thread */
    _Atomic uint32_t state;       /* enum health_state */
    _Atomic uint32_t trials;      /* half-open places taken since the last reset */
    _Atomic int64_t out_until_ms; /* monotonic: the back-off's end */
    _Atomic uint32_t failures;    /* in a row */
    _Atomic uint32_t recent;      /* failures in the current window */
    _Atomic uint32_t last_error;  /* enum health_result */
    _Atomic int64_t last_error_wall_ms;
    _Atomic uint32_t times_out;
    /* writers only, under the mutex */
    uint32_t backoff_ms;     /* the last back-off (0: never out since in) */
    uint32_t win_total;      /* outcomes in the window */
    int64_t win_start_ms;    /* monotonic */
    int64_t changed_wall_ms; /* wall: when the state last changed (0: never) */
    int64_t trials_reset_ms; /* monotonic: half-open, or the last freeing of places */
};

struct health {
    struct health_config cfg;
    pthread_mutex_t mu;
    struct health_slot slots[HEALTH_SLOTS];
};

static const char *const result_names[HEALTH_RESULT_COUNT] = {
    [HEALTH_OK] = "ok",
    [HEALTH_NEUTRAL] = "neutral",
    [HEALTH_FAIL_CONNECT] = "connect",
    [HEALTH_FAIL_TIMEOUT] = "connect_timeout",
    [HEALTH_FAIL_RESET] = "reset",
    [HEALTH_FAIL_STALL] = "stall",
    [HEALTH_FAIL_AUTH] = "auth_407",
    [HEALTH_FAIL_CHECK] = "check",
};

const char *health_result_name(enum health_result r)
{
    return (unsigned)r < HEALTH_RESULT_COUNT ? result_names[r] : "?";
}

const char *health_state_name(enum health_state s)
{
    switch (s) {
    case HEALTH_IN:
        return "in";
    case HEALTH_OUT:
        return "out";
    case HEALTH_HALF_OPEN:
        return "half_open";
    }
    return "?";
}

enum health_result health_classify(int64_t status, const char *tsc, size_t len)
{
    if (!tsc || len < 2) return HEALTH_NEUTRAL;
    char who = tsc[0], stage = tsc[1];
    switch (stage) {
    case 'C': /* connecting to the upstream */
        if (who == 'S') return HEALTH_FAIL_CONNECT;
        if (who == 's') return HEALTH_FAIL_TIMEOUT;
        return HEALTH_NEUTRAL;
    case 'H': /* connected, waiting for the response head */
        if (who == 'S') return HEALTH_FAIL_RESET;
        if (who == 's') return HEALTH_FAIL_STALL;
        if (who == 'L' && status == 502) return HEALTH_FAIL_AUTH;
        return HEALTH_NEUTRAL;
    case 'D': /* a response head came: the provider did its part */
    case 'L':
    case '-':
        return status > 0 ? HEALTH_OK : HEALTH_NEUTRAL;
    default: /* R, Q, T: never reached the upstream */
        return HEALTH_NEUTRAL;
    }
}

struct health *health_new(const struct health_config *cfg)
{
    struct health *h = calloc(1, sizeof(*h));
    if (!h) return NULL;
    h->cfg = *cfg;
    if (h->cfg.trials == 0) h->cfg.trials = 1;
    if (h->cfg.backoff_min_ms == 0) h->cfg.backoff_min_ms = 1;
    if (h->cfg.backoff_max_ms < h->cfg.backoff_min_ms)
        h->cfg.backoff_max_ms = h->cfg.backoff_min_ms;
    if (h->cfg.window_ms == 0) h->cfg.window_ms = 1;
    pthread_mutex_init(&h->mu, NULL);
    return h;
}

void health_free(struct health *h)
{
    if (!h) return;
    pthread_mutex_destroy(&h->mu);
    free(h);
}

const struct health_config *health_config(const struct health *h)
{
    return &h->cfg;
}

/* FNV-1a: slugs are short and chosen by operators, not by clients. */
static uint64_t slug_hash(const char *s, size_t len)
{
    uint64_t x = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        x ^= (unsigned char)s[i];
        x *= 0x100000001b3ull;
    }
    return x;
}

/* The slot of slug, or NULL. Lock-free: slots are never removed. */
static struct health_slot *find(const struct health *h, const char *slug, size_t len)
{
    if (!h || len == 0 || len >= HEALTH_SLUG_MAX) return NULL;
    uint64_t x = slug_hash(slug, len);
    for (size_t i = 0; i < HEALTH_SLOTS; i++) {
        struct health_slot *s = (struct health_slot *)&h->slots[(x + i) & (HEALTH_SLOTS - 1)];
        if (!atomic_load_explicit(&s->used, memory_order_acquire)) return NULL;
        if (s->hash == x && s->slug_len == len && memcmp(s->slug, slug, len) == 0) return s;
    }
    return NULL;
}

/* The slot of slug, created when missing; NULL when the table is full or the
 * slug too long. Writers only, under the mutex. */
static struct health_slot *find_or_add(struct health *h, const char *slug, size_t len)
{
    if (len == 0 || len >= HEALTH_SLUG_MAX) return NULL;
    uint64_t x = slug_hash(slug, len);
    for (size_t i = 0; i < HEALTH_SLOTS; i++) {
        struct health_slot *s = &h->slots[(x + i) & (HEALTH_SLOTS - 1)];
        if (!atomic_load_explicit(&s->used, memory_order_relaxed)) {
            s->hash = x;
            s->slug_len = (uint8_t)len;
            memcpy(s->slug, slug, len);
            s->slug[len] = '\0';
            atomic_store_explicit(&s->used, true, memory_order_release);
            return s;
        }
        if (s->hash == x && s->slug_len == len && memcmp(s->slug, slug, len) == 0) return s;
    }
    static atomic_bool warned;
    if (!atomic_exchange(&warned, true))
        log_warn("health: more than %d providers: the others are not tracked", HEALTH_SLOTS);
    return NULL;
}

enum health_state health_state(const struct health *h, const char *slug, size_t len)
{
    const struct health_slot *s = find(h, slug, len);
    if (!s) return HEALTH_IN;
    return (enum health_state)atomic_load_explicit(&((struct health_slot *)s)->state,
                                                   memory_order_relaxed);
}

bool health_take_trial(struct health *h, const char *slug, size_t len)
{
    struct health_slot *s = find(h, slug, len);
    if (!s) return true;
    if (atomic_load_explicit(&s->state, memory_order_relaxed) != HEALTH_HALF_OPEN) return false;
    return atomic_fetch_add_explicit(&s->trials, 1, memory_order_relaxed) < h->cfg.trials;
}

bool health_view(const struct health *h, const char *slug, size_t len, int64_t now_mono_ms,
                 struct health_view *v)
{
    struct health_slot *s = find(h, slug, len);
    if (!s) return false;
    v->state = (enum health_state)atomic_load_explicit(&s->state, memory_order_relaxed);
    v->failures = atomic_load_explicit(&s->failures, memory_order_relaxed);
    v->recent_failures = atomic_load_explicit(&s->recent, memory_order_relaxed);
    v->last_error = (enum health_result)atomic_load_explicit(&s->last_error, memory_order_relaxed);
    v->last_error_wall_ms = atomic_load_explicit(&s->last_error_wall_ms, memory_order_relaxed);
    v->times_out = atomic_load_explicit(&s->times_out, memory_order_relaxed);
    int64_t until = atomic_load_explicit(&s->out_until_ms, memory_order_relaxed);
    v->out_left_ms = v->state == HEALTH_OUT && until > now_mono_ms ? until - now_mono_ms : 0;
    return true;
}

/* --- writers ------------------------------------------------------------------------ */

static void set_state(struct health_slot *s, enum health_state st, int64_t now_wall_ms)
{
    atomic_store_explicit(&s->state, st, memory_order_relaxed);
    s->changed_wall_ms = now_wall_ms;
}

static void go_out(struct health *h, struct health_slot *s, enum health_result why,
                   int64_t now_mono_ms, int64_t now_wall_ms)
{
    enum health_state was = atomic_load_explicit(&s->state, memory_order_relaxed);
    uint64_t b =
        was == HEALTH_IN || s->backoff_ms == 0 ? h->cfg.backoff_min_ms : 2ull * s->backoff_ms;
    if (b > h->cfg.backoff_max_ms) b = h->cfg.backoff_max_ms;
    s->backoff_ms = (uint32_t)b;
    atomic_store_explicit(&s->out_until_ms, now_mono_ms + (int64_t)b, memory_order_relaxed);
    atomic_store_explicit(&s->trials, 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->times_out, 1, memory_order_relaxed);
    set_state(s, HEALTH_OUT, now_wall_ms);
    log_warn("health: provider %s out for %.1f s (%s; %u failures in a row, was %s)", s->slug,
             (double)b / 1000.0, health_result_name(why),
             atomic_load_explicit(&s->failures, memory_order_relaxed), health_state_name(was));
}

static void go_in(struct health_slot *s, int64_t now_mono_ms, int64_t now_wall_ms)
{
    enum health_state was = atomic_load_explicit(&s->state, memory_order_relaxed);
    s->backoff_ms = 0;
    s->win_total = 0;
    s->win_start_ms = now_mono_ms;
    atomic_store_explicit(&s->recent, 0, memory_order_relaxed);
    atomic_store_explicit(&s->failures, 0, memory_order_relaxed);
    set_state(s, HEALTH_IN, now_wall_ms);
    log_info("health: provider %s back in (was %s)", s->slug, health_state_name(was));
}

static void go_half_open(struct health_slot *s, int64_t now_mono_ms, int64_t now_wall_ms)
{
    s->trials_reset_ms = now_mono_ms;
    atomic_store_explicit(&s->trials, 0, memory_order_relaxed);
    set_state(s, HEALTH_HALF_OPEN, now_wall_ms);
    log_info("health: provider %s half-open: trial requests", s->slug);
}

/* Counts one outcome into the window, opening a new one when it is over. */
static void window_add(struct health *h, struct health_slot *s, bool failed, int64_t now_mono_ms)
{
    if (now_mono_ms - s->win_start_ms >= (int64_t)h->cfg.window_ms) {
        s->win_start_ms = now_mono_ms;
        s->win_total = 0;
        atomic_store_explicit(&s->recent, 0, memory_order_relaxed);
    }
    s->win_total++;
    if (failed) atomic_fetch_add_explicit(&s->recent, 1, memory_order_relaxed);
}

static void note_error(struct health_slot *s, enum health_result r, int64_t now_wall_ms)
{
    atomic_store_explicit(&s->last_error, r, memory_order_relaxed);
    atomic_store_explicit(&s->last_error_wall_ms, now_wall_ms, memory_order_relaxed);
}

/* One failure while in: out when the rule says so. */
static void fail_in(struct health *h, struct health_slot *s, enum health_result r,
                    int64_t now_mono_ms, int64_t now_wall_ms)
{
    uint32_t f = atomic_fetch_add_explicit(&s->failures, 1, memory_order_relaxed) + 1;
    window_add(h, s, true, now_mono_ms);
    uint32_t recent = atomic_load_explicit(&s->recent, memory_order_relaxed);
    bool by_count = h->cfg.fails > 0 && f >= h->cfg.fails;
    bool by_ratio = h->cfg.ratio_pct > 0 && s->win_total >= h->cfg.min_requests &&
                    (uint64_t)recent * 100 >= (uint64_t)h->cfg.ratio_pct * s->win_total;
    if (by_count || by_ratio) go_out(h, s, r, now_mono_ms, now_wall_ms);
}

void health_report(struct health *h, const char *slug, size_t len, enum health_result r,
                   int64_t started_wall_ms, int64_t now_mono_ms, int64_t now_wall_ms)
{
    if (!h || r == HEALTH_NEUTRAL) return;
    bool failed = health_is_failure(r);
    pthread_mutex_lock(&h->mu);
    /* a success of a provider never tracked changes nothing: no slot for it */
    struct health_slot *s = failed ? find_or_add(h, slug, len) : find(h, slug, len);
    if (!s) goto out;
    if (failed) note_error(s, r, now_wall_ms);
    /* Only requests that began after the last change of state say anything
     * about the state now. */
    if (started_wall_ms < s->changed_wall_ms) goto out;
    switch ((enum health_state)atomic_load_explicit(&s->state, memory_order_relaxed)) {
    case HEALTH_IN:
        if (failed) {
            fail_in(h, s, r, now_mono_ms, now_wall_ms);
        } else {
            atomic_store_explicit(&s->failures, 0, memory_order_relaxed);
            window_add(h, s, false, now_mono_ms);
        }
        break;
    case HEALTH_HALF_OPEN:
        if (failed) {
            atomic_fetch_add_explicit(&s->failures, 1, memory_order_relaxed);
            go_out(h, s, r, now_mono_ms, now_wall_ms);
        } else {
            go_in(s, now_mono_ms, now_wall_ms);
        }
        break;
    case HEALTH_OUT:
        /* Requests reach a provider that is out only when every provider of
         * their pool is: a failure keeps the back-off as it is (it ends when
         * it ends), a success means it works again. */
        if (failed)
            atomic_fetch_add_explicit(&s->failures, 1, memory_order_relaxed);
        else
            go_in(s, now_mono_ms, now_wall_ms);
        break;
    }
out:
    pthread_mutex_unlock(&h->mu);
}

void health_check_done(struct health *h, const char *slug, size_t len, bool ok, int64_t now_mono_ms,
                       int64_t now_wall_ms)
{
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    struct health_slot *s = ok ? find(h, slug, len) : find_or_add(h, slug, len);
    if (!s) goto out;
    enum health_state st = atomic_load_explicit(&s->state, memory_order_relaxed);
    int64_t until = atomic_load_explicit(&s->out_until_ms, memory_order_relaxed);
    if (!ok) note_error(s, HEALTH_FAIL_CHECK, now_wall_ms);
    if (st == HEALTH_IN) {
        if (!ok) fail_in(h, s, HEALTH_FAIL_CHECK, now_mono_ms, now_wall_ms);
    } else if (st == HEALTH_OUT && now_mono_ms >= until) {
        if (ok)
            go_half_open(s, now_mono_ms, now_wall_ms);
        else
            go_out(h, s, HEALTH_FAIL_CHECK, now_mono_ms, now_wall_ms);
    } else if (st == HEALTH_HALF_OPEN && !ok) {
        go_out(h, s, HEALTH_FAIL_CHECK, now_mono_ms, now_wall_ms);
    }
out:
    pthread_mutex_unlock(&h->mu);
}

void health_tick(struct health *h, int64_t now_mono_ms, int64_t now_wall_ms)
{
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    for (size_t i = 0; i < HEALTH_SLOTS; i++) {
        struct health_slot *s = &h->slots[i];
        if (!atomic_load_explicit(&s->used, memory_order_relaxed)) continue;
        enum health_state st = atomic_load_explicit(&s->state, memory_order_relaxed);
        if (st == HEALTH_OUT && !h->cfg.gate_on_check &&
            now_mono_ms >= atomic_load_explicit(&s->out_until_ms, memory_order_relaxed)) {
            go_half_open(s, now_mono_ms, now_wall_ms);
        } else if (st == HEALTH_HALF_OPEN &&
                   now_mono_ms - s->trials_reset_ms >= (int64_t)h->cfg.trial_timeout_ms) {
            /* trials without an outcome (a long tunnel, a lost record) */
            s->trials_reset_ms = now_mono_ms;
            atomic_store_explicit(&s->trials, 0, memory_order_relaxed);
        }
    }
    pthread_mutex_unlock(&h->mu);
}

bool health_due(const struct health *h, const char *slug, size_t len, int64_t now_mono_ms)
{
    struct health_slot *s = find(h, slug, len);
    return s && atomic_load_explicit(&s->state, memory_order_relaxed) == HEALTH_OUT &&
           now_mono_ms >= atomic_load_explicit(&s->out_until_ms, memory_order_relaxed);
}
