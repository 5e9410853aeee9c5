/*
 * The verdict for one proxy request, from a snapshot: who is asking, are they
 * allowed, and which upstream with which credentials. Pure computation over
 * the snapshot and a per-thread context (random source, cache of verified
 * password hashes); the balance lookup and hash verification, which need
 * I/O or CPU time, are left to the caller (handler_gw.c).
 *
 * Order of checks (reference README): client IP (403), credentials (407),
 * username options (400), then (caller) balance (402), provider (503).
 */
#ifndef GW_POLICY_H
#define GW_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "health.h"
#include "snapshot.h"
#include "username.h"

#define POLICY_AUTH_MAX 1024 /* bytes of Proxy-Authorization we look at */

struct policy_request {
    int family;             /* AF_INET or AF_INET6 */
    uint8_t addr[16];       /* client address, network order (4 bytes for IPv4) */
    const char *proxy_auth; /* Proxy-Authorization value; NULL or empty: absent */
    size_t proxy_auth_len;
    const char *auth; /* Authorization value, used when Proxy-Authorization is absent */
    size_t auth_len;
};

enum policy_outcome {
    POLICY_DONE,        /* verdict filled in: answer it (after the balance when allowed) */
    POLICY_VERIFY_HASH, /* the password must be checked against a crypt(3) hash first */
};

/* What a verdict says; on 200 everything HAProxy needs to forward and log. */
struct policy_verdict {
    int status;         /* 200, 400, 403, 407 or 503 */
    const char *reason; /* short static text for the client and logs */
    bool check_balance; /* status is 200 or 503: ask Redis, 402 wins */
    char user[256];     /* the customer's username (without options) */
    char slug[256];     /* provider slug */
    char country[3];    /* ISO code the request was routed for ("US" by default) */
    char session[USERNAME_SESSION_MAX + 1];
    uint16_t duration_min;
    char upstream_addr[46]; /* IP address HAProxy connects to */
    uint16_t upstream_port;
    char upstream_auth[6 + 4 * ((2 * 256 + 2) / 3) + 8]; /* "Basic <base64(user:pass)>" */
    /* The user's limits, the configured default in place of NULL (0:
     * unlimited); HAProxy enforces them per node (gateway.cfg). Set once the
     * user is known. */
    uint32_t max_conns; /* requests and tunnels in progress at once */
    uint32_t max_rps;   /* requests forwarded per second */
};

/* A hash check the caller must run (off the event loop) when decide returns
 * POLICY_VERIFY_HASH; on success it calls policy_hash_verified and decides
 * again. Pointers are into the request and snapshot: copy before going async. */
struct policy_hash_job {
    const char *password; /* from the client */
    size_t password_len;
    const char *hash; /* crypt(3) string from the users table */
};

#define POLICY_CACHE_SLOTS 4096 /* verified (user, password, hash) fingerprints per thread */

/* Per-thread state. Initialize with policy_ctx_init, then set the defaults. */
struct policy_ctx {
    /* Limits of users whose column is NULL; 0 (unlimited) after
     * policy_ctx_init. */
    uint32_t default_max_conns;
    uint32_t default_max_rps;
    uint64_t rng[2];                       /* xorshift128+ state */
    uint64_t cache_key[2];                 /* SipHash key of the fingerprints */
    uint64_t verified[POLICY_CACHE_SLOTS]; /* fingerprints of checked hashes; 0 empty */
    struct health *health; /* provider health (health.h), shared; NULL: every provider is in */
};

void policy_ctx_init(struct policy_ctx *ctx);
uint64_t policy_rand(struct policy_ctx *ctx);

enum policy_outcome policy_decide(const struct snapshot *snap, const struct policy_request *rq,
                                  struct policy_ctx *ctx, struct policy_verdict *v,
                                  struct policy_hash_job *job);
/* Records that `password` matches `hash`, so the next decide passes. */
void policy_hash_verified(struct policy_ctx *ctx, const char *password, size_t password_len,
                          const char *hash);
/* Verifies a password against a crypt(3) hash (slow: bcrypt, sha-crypt,
 * yescrypt). Thread-safe. */
bool policy_crypt_check(const char *password, size_t password_len, const char *hash);

#endif
