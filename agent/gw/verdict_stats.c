/*
 * Verdict reasons and per-provider counts (verdict_stats.h). A reason is
 * classified by its status first, then by its text: the texts are the
 * constants of policy.c and handler_gw.c, and one that is not in the table
 * counts as "other" rather than becoming a label of its own.
 *
 * The provider table is append-only: a new slug takes the next slot under a
 * mutex and is published by the release store of nproviders; lookups scan
 * the published slots without a lock (a handful of providers: a few
 * string compares per allowed request).
 */
#include "verdict_stats.h"

#include <pthread.h>
#include <stdbool.h>
#include <string.h>

const struct verdict_reason_info verdict_reasons[VR_COUNT] = {
    [VR_OK] = {"200", "ok"},
    [VR_BAD_OPTIONS] = {"400", "bad_username_options"},
    [VR_NO_BALANCE] = {"402", "insufficient_balance"},
    [VR_IP_NOT_AUTHORIZED] = {"403", "ip_not_authorized"},
    [VR_NO_CLIENT_ADDRESS] = {"403", "client_address_unknown"},
    [VR_CREDENTIALS_REQUIRED] = {"407", "credentials_required"},
    [VR_CREDENTIALS_TOO_LONG] = {"407", "credentials_too_long"},
    [VR_CREDENTIALS_MALFORMED] = {"407", "credentials_malformed"},
    [VR_CREDENTIALS_INVALID] = {"407", "credentials_invalid"},
    [VR_NO_PROVIDER] = {"503", "no_provider"},
    [VR_PROVIDER_MISCONFIGURED] = {"503", "provider_misconfigured"},
    [VR_AUTH_BUSY] = {"503", "authentication_busy"},
    [VR_OUT_OF_MEMORY] = {"503", "agent_out_of_memory"},
    [VR_OTHER] = {"other", "other"},
};

static bool is(const char *reason, const char *text)
{
    return reason && strcmp(reason, text) == 0;
}

enum verdict_reason verdict_reason_of(int status, const char *reason)
{
    switch (status) {
    case 200:
        return VR_OK;
    case 400:
        return VR_BAD_OPTIONS; /* every username option error */
    case 402:
        return VR_NO_BALANCE;
    case 403:
        if (is(reason, "client IP not authorized")) return VR_IP_NOT_AUTHORIZED;
        if (is(reason, "client address unknown")) return VR_NO_CLIENT_ADDRESS;
        break;
    case 407:
        if (is(reason, "invalid proxy credentials")) return VR_CREDENTIALS_INVALID;
        if (is(reason, "proxy credentials required")) return VR_CREDENTIALS_REQUIRED;
        if (is(reason, "proxy credentials too long")) return VR_CREDENTIALS_TOO_LONG;
        if (is(reason, "malformed proxy credentials")) return VR_CREDENTIALS_MALFORMED;
        break;
    case 503:
        if (is(reason, "no upstream provider available")) return VR_NO_PROVIDER;
        if (is(reason, "upstream provider misconfigured")) return VR_PROVIDER_MISCONFIGURED;
        if (is(reason, "authentication busy")) return VR_AUTH_BUSY;
        if (is(reason, "agent out of memory")) return VR_OUT_OF_MEMORY;
        break;
    default:
        break;
    }
    return VR_OTHER;
}

static pthread_mutex_t providers_lock = PTHREAD_MUTEX_INITIALIZER;

static bool find(struct verdict_stats *s, unsigned n, const char *slug)
{
    for (unsigned i = 0; i < n; i++) {
        if (strcmp(s->providers[i].slug, slug) == 0) {
            atomic_fetch_add_explicit(&s->providers[i].requests, 1, memory_order_relaxed);
            return true;
        }
    }
    return false;
}

void verdict_stats_provider(struct verdict_stats *s, const char *slug)
{
    if (!slug) slug = "";
    unsigned n = atomic_load_explicit(&s->nproviders, memory_order_acquire);
    if (find(s, n, slug)) return;
    size_t len = strlen(slug);
    if (len > VERDICT_SLUG_MAX) {
        atomic_fetch_add_explicit(&s->providers_other, 1, memory_order_relaxed);
        return;
    }
    pthread_mutex_lock(&providers_lock);
    unsigned now = atomic_load_explicit(&s->nproviders, memory_order_relaxed);
    if (!find(s, now, slug)) {
        if (now < VERDICT_PROVIDERS_MAX) {
            memcpy(s->providers[now].slug, slug, len + 1);
            atomic_store_explicit(&s->providers[now].requests, 1, memory_order_relaxed);
            atomic_store_explicit(&s->nproviders, now + 1, memory_order_release);
        } else {
            atomic_fetch_add_explicit(&s->providers_other, 1, memory_order_relaxed);
        }
    }
    pthread_mutex_unlock(&providers_lock);
}
