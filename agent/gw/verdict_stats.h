/*
 * Counters of verdicts by reason and of allowed requests by provider, for
 * /metrics: both label sets are bounded by construction (a fixed table of
 * reasons, at most VERDICT_PROVIDERS_MAX provider slugs, then "_other"),
 * so no client byte can create a series.
 *
 * Fed on the verdict threads with relaxed atomics; read by the metrics
 * thread at any time.
 */
#ifndef GW_VERDICT_STATS_H
#define GW_VERDICT_STATS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

enum verdict_reason {
    VR_OK,
    VR_BAD_OPTIONS,
    VR_NO_BALANCE,
    VR_IP_NOT_AUTHORIZED,
    VR_NO_CLIENT_ADDRESS,
    VR_CREDENTIALS_REQUIRED,
    VR_CREDENTIALS_TOO_LONG,
    VR_CREDENTIALS_MALFORMED,
    VR_CREDENTIALS_INVALID,
    VR_NO_PROVIDER,
    VR_PROVIDER_MISCONFIGURED,
    VR_AUTH_BUSY,
    VR_OUT_OF_MEMORY,
    VR_OTHER, /* a status or reason this table does not know */
    VR_COUNT
};

struct verdict_reason_info {
    const char *status; /* the status label: "200", ... ("other" for VR_OTHER) */
    const char *label;  /* the reason label: "insufficient_balance", ... */
};
extern const struct verdict_reason_info verdict_reasons[VR_COUNT];

/* The reason a verdict counts under (policy.c's and handler_gw.c's texts). */
enum verdict_reason verdict_reason_of(int status, const char *reason);

#define VERDICT_PROVIDERS_MAX 128
#define VERDICT_SLUG_MAX      64 /* longer slugs count under "_other" */

struct verdict_stats {
    atomic_uint_fast64_t by_reason[VR_COUNT];
    /* providers[0 .. nproviders): slugs never change once published */
    atomic_uint nproviders;
    struct {
        char slug[VERDICT_SLUG_MAX + 1];
        atomic_uint_fast64_t requests;
    } providers[VERDICT_PROVIDERS_MAX];
    atomic_uint_fast64_t providers_other; /* table full, or slug too long */
};

static inline void verdict_stats_count(struct verdict_stats *s, int status, const char *reason)
{
    atomic_fetch_add_explicit(&s->by_reason[verdict_reason_of(status, reason)], 1,
                              memory_order_relaxed);
}

/* One request allowed to the provider slug (any thread). */
void verdict_stats_provider(struct verdict_stats *s, const char *slug);

#endif
