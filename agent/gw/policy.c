/*
 * The verdict for one proxy request (see policy.h for the order of checks).
 *
 * Everything here runs on a worker thread's event loop, so it is bounded
 * work: hash lookups in the snapshot, one trie walk for the client address,
 * a few hundred bytes of string building. The two slow parts are handed back
 * to the caller: a crypt(3) verification (POLICY_VERIFY_HASH) and the Redis
 * balance (check_balance).
 *
 * Upstream choice: with a client session id, rendezvous hashing of (user,
 * country, session) over the eligible providers picks the provider and,
 * from the same key, the port, so a session sticks to one upstream on every
 * node and across restarts; without one, a random provider and port.
 * Providers that provider health (health.h) took out are skipped: a random
 * request draws among the others, a session goes to its next rendezvous
 * choice while its own is out; with every provider out, health is ignored.
 */
#include <arpa/inet.h>
#include <crypt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "basic_auth.h"
#include "policy.h"
#include "rendezvous.h"

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

void policy_ctx_init(struct policy_ctx *ctx)
{
    uint64_t seed[4];
    memset(ctx, 0, sizeof(*ctx));
    if (getrandom(seed, sizeof(seed), 0) != (ssize_t)sizeof(seed)) {
        /* no entropy source: still distinct per thread and run */
        seed[0] = (uint64_t)(uintptr_t)ctx ^ (uint64_t)time(NULL);
        seed[1] = splitmix(&seed[0]);
        seed[2] = splitmix(&seed[0]);
        seed[3] = splitmix(&seed[0]);
    }
    ctx->rng[0] = splitmix(&seed[0]) | 1;
    ctx->rng[1] = splitmix(&seed[1]);
    ctx->cache_key[0] = seed[2];
    ctx->cache_key[1] = seed[3];
}

uint64_t policy_rand(struct policy_ctx *ctx)
{
    uint64_t s1 = ctx->rng[0];
    const uint64_t s0 = ctx->rng[1];
    ctx->rng[0] = s0;
    s1 ^= s1 << 23;
    ctx->rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return ctx->rng[1] + s0;
}

static uint64_t rand_cb(void *ctx)
{
    return policy_rand(ctx);
}

/* Uniform in [0, n) for n >= 1 (multiply-high: no modulo bias to speak of). */
static uint64_t rand_below(struct policy_ctx *ctx, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)policy_rand(ctx) * n) >> 64);
}

static bool equal_ct(const char *a, size_t alen, const char *b, size_t blen)
{
    /* Constant time in the contents; lengths are not secret enough to hide. */
    volatile unsigned char diff = (unsigned char)(alen != blen);
    size_t n = alen < blen ? alen : blen;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

/* Keyed fingerprint of (hash, password): the cache never holds a password,
 * and a changed hash in the database (new password) misses. 0 = no slot. */
static uint64_t fingerprint(const struct policy_ctx *ctx, const char *password, size_t plen,
                            const char *hash)
{
    char buf[BASIC_AUTH_MAX_DECODED + 256];
    size_t hlen = strlen(hash);
    if (hlen + 1 + plen > sizeof(buf)) return 0;
    memcpy(buf, hash, hlen);
    buf[hlen] = '\0';
    memcpy(buf + hlen + 1, password, plen);
    uint64_t fp = rendezvous_siphash(ctx->cache_key[0], ctx->cache_key[1], buf, hlen + 1 + plen);
    return fp ? fp : 1;
}

void policy_hash_verified(struct policy_ctx *ctx, const char *password, size_t password_len,
                          const char *hash)
{
    uint64_t fp = fingerprint(ctx, password, password_len, hash);
    if (fp) ctx->verified[fp % POLICY_CACHE_SLOTS] = fp;
}

bool policy_crypt_check(const char *password, size_t password_len, const char *hash)
{
    char pw[BASIC_AUTH_MAX_DECODED + 1];
    if (password_len >= sizeof(pw)) return false;
    memcpy(pw, password, password_len);
    pw[password_len] = '\0';
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    if (!cd) return false;
    const char *out = crypt_r(pw, hash, cd);
    /* libxcrypt returns "*0"/"*1" (or NULL) for failures: never equal to a hash */
    bool ok = out && out[0] != '*' && equal_ct(out, strlen(out), hash, strlen(hash));
    explicit_bzero(pw, sizeof(pw));
    explicit_bzero(cd, sizeof(*cd));
    free(cd);
    return ok;
}

static enum policy_outcome refuse(struct policy_verdict *v, int status, const char *reason)
{
    v->status = status;
    v->reason = reason;
    v->check_balance = false;
    return POLICY_DONE;
}

static void copy_str(char *dst, size_t cap, const char *src, size_t len)
{
    if (len >= cap) len = cap - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

/* The slug of pool[i], for rendezvous_pick_by. */
static struct rendezvous_str pool_slug(const void *ctx, size_t i)
{
    const struct snap_provider *const *pool = ctx;
    return (struct rendezvous_str){pool[i]->slug, pool[i]->slug_len};
}

/* Whether (sa, a) comes before (sb, b) in rendezvous order: higher score
 * first, ties to the smaller slug (as rendezvous_pick_by). */
static bool rv_before(uint64_t sa, const struct snap_provider *a, uint64_t sb,
                      const struct snap_provider *b)
{
    if (sa != sb) return sa > sb;
    size_t n = a->slug_len < b->slug_len ? a->slug_len : b->slug_len;
    int c = memcmp(a->slug, b->slug, n);
    return c != 0 ? c < 0 : a->slug_len < b->slug_len;
}

/* A session whose provider (pool[best]) is out: its next rendezvous choice
 * that is usable, so the sessions of healthy providers never move and this
 * one moves to the same place on every node. Every provider out: best (the
 * least bad: the session stays where it would be). Only runs when the first
 * choice is out: a pass over the pool per provider skipped. */
static size_t sticky_fallback(const struct rendezvous_key *key,
                              const struct snap_provider *const *pool, size_t n, size_t best,
                              uint64_t best_score, struct health *h)
{
    const struct snap_provider *prev = pool[best];
    uint64_t prev_score = best_score;
    for (size_t round = 1; round < n; round++) {
        size_t next = n;
        uint64_t next_score = 0;
        for (size_t i = 0; i < n; i++) {
            struct rendezvous_str slug = {pool[i]->slug, pool[i]->slug_len};
            uint64_t sc = rendezvous_score(key, &slug);
            if (!rv_before(prev_score, prev, sc, pool[i])) continue; /* already tried */
            if (next == n || rv_before(sc, pool[i], next_score, pool[next])) {
                next = i;
                next_score = sc;
            }
        }
        if (next == n) break;
        if (health_usable(h, pool[next]->slug, pool[next]->slug_len)) return next;
        prev = pool[next];
        prev_score = next_score;
    }
    return best;
}

/* A random request whose draw (pool[first]) is out: a random provider that
 * is in, else a half-open one with a trial place free, else first (every
 * provider out: the least bad is where it would have gone anyway). */
static size_t random_fallback(const struct snap_provider *const *pool, size_t n, size_t first,
                              struct health *h, struct policy_ctx *ctx)
{
    size_t in = 0;
    for (size_t i = 0; i < n; i++)
        in += health_state(h, pool[i]->slug, pool[i]->slug_len) == HEALTH_IN;
    if (in > 0) {
        uint64_t k = rand_below(ctx, in);
        for (size_t i = 0; i < n; i++)
            if (health_state(h, pool[i]->slug, pool[i]->slug_len) == HEALTH_IN && k-- == 0)
                return i;
    }
    size_t start = (size_t)rand_below(ctx, n);
    for (size_t j = 0; j < n; j++) {
        size_t i = (start + j) % n;
        if (i != first && health_take_trial(h, pool[i]->slug, pool[i]->slug_len)) return i;
    }
    return first;
}

/* Picks the provider and port; fills slug, session, upstream fields.
 * Returns false (503) when the provider cannot be rendered. */
static bool route(const struct snap_provider *const *pool, size_t n, const struct username *un,
                  const struct country *country, struct policy_ctx *ctx, struct policy_verdict *v)
{
    const struct snap_provider *p;
    uint16_t port;

    if (un->session_from_client) {
        struct rendezvous_key key = {
            .user = {v->user, strlen(v->user)},
            .country = {country->code, 2},
            .session = {un->session, un->session_len},
        };
        uint64_t score;
        size_t best = rendezvous_pick_by(&key, n, pool_slug, pool, &score);
        if (ctx->health && !health_usable(ctx->health, pool[best]->slug, pool[best]->slug_len))
            best = sticky_fallback(&key, pool, n, best, score, ctx->health);
        p = pool[best];
        struct rendezvous_str slug = {p->slug, p->slug_len};
        port = rendezvous_port(rendezvous_port_hash(&key, &slug), p->port_min, p->port_max);
        copy_str(v->session, sizeof(v->session), un->session, un->session_len);
    } else {
        size_t i = (size_t)rand_below(ctx, n);
        if (ctx->health && !health_usable(ctx->health, pool[i]->slug, pool[i]->slug_len))
            i = random_fallback(pool, n, i, ctx->health, ctx);
        p = pool[i];
        port = (uint16_t)(p->port_min + rand_below(ctx, (uint64_t)p->port_max - p->port_min + 1));
        username_random_session(v->session, rand_cb, ctx);
    }
    copy_str(v->slug, sizeof(v->slug), p->slug, p->slug_len);

    char country_text[COUNTRY_NAME_MAX + 1];
    size_t clen =
        country_format_render(country, p->country_format, country_text, sizeof(country_text));
    struct template_values vals = {
        .username = p->username,
        .username_len = p->username_len,
        .password = p->password,
        .password_len = p->password_len,
        .host = p->host,
        .host_len = strlen(p->host),
        .port = port,
        .country = country_text,
        .country_len = clen,
        .session_id = v->session,
        .session_id_len = strlen(v->session),
        .duration_min = v->duration_min,
    };
    struct template_upstream up;
    const char *err;
    if (clen == 0 || template_render(&p->tpl, &vals, &up, &err) != 0) return false;

    /* HAProxy connects to an address: the provider's resolved one when the
     * template keeps {host}, else a literal address written in the template. */
    unsigned char tmp[16];
    if (strcmp(up.host, p->host) == 0 && p->addr[0])
        copy_str(v->upstream_addr, sizeof(v->upstream_addr), p->addr, strlen(p->addr));
    else if (inet_pton(AF_INET, up.host, tmp) == 1 || inet_pton(AF_INET6, up.host, tmp) == 1)
        copy_str(v->upstream_addr, sizeof(v->upstream_addr), up.host, up.host_len);
    else
        return false;
    v->upstream_port = up.port;

    memcpy(v->upstream_auth, "Basic ", 6);
    size_t alen = basic_auth_encode(up.user, up.user_len, up.pass, up.pass_len,
                                    v->upstream_auth + 6, sizeof(v->upstream_auth) - 6);
    return alen > 0;
}

enum policy_outcome policy_decide(const struct snapshot *snap, const struct policy_request *rq,
                                  struct policy_ctx *ctx, struct policy_verdict *v,
                                  struct policy_hash_job *job)
{
    v->status = 0;
    v->reason = NULL;
    v->check_balance = false;
    v->duration_min = 0;
    v->max_conns = v->max_rps = 0;
    v->user[0] = v->slug[0] = v->country[0] = v->session[0] = '\0';
    v->upstream_addr[0] = v->upstream_auth[0] = '\0';

    /* 1. client address */
    if (!snapshot_ip_allowed(snap, rq->family, rq->addr))
        return refuse(v, 403, "client IP not authorized");

    /* 2. credentials */
    const char *hdr = rq->proxy_auth;
    size_t hlen = rq->proxy_auth_len;
    if (!hdr || hlen == 0) {
        hdr = rq->auth;
        hlen = rq->auth_len;
    }
    if (!hdr || hlen == 0) return refuse(v, 407, "proxy credentials required");
    if (hlen > POLICY_AUTH_MAX) return refuse(v, 407, "proxy credentials too long");
    static _Thread_local char decoded[BASIC_AUTH_BUF_SIZE];
    struct basic_auth_cred cred;
    const char *why;
    if (basic_auth_decode(hdr, hlen, decoded, sizeof(decoded), &cred, &why) != 0)
        return refuse(v, 407, "malformed proxy credentials");

    struct username un;
    const char *opt_error = NULL;
    if (username_parse(cred.user, cred.user_len, &un, &opt_error) != 0 && !opt_error)
        opt_error = "malformed username options";
    const struct snap_user *u = snapshot_user(snap, un.user, un.user_len);
    if (!u) return refuse(v, 407, "invalid proxy credentials");
    if (!u->password_is_hash) {
        if (!equal_ct(cred.pass, cred.pass_len, u->password, u->password_len))
            return refuse(v, 407, "invalid proxy credentials");
    } else {
        uint64_t fp = fingerprint(ctx, cred.pass, cred.pass_len, u->password);
        if (!fp || ctx->verified[fp % POLICY_CACHE_SLOTS] != fp) {
            job->password = cred.pass;
            job->password_len = cred.pass_len;
            job->hash = u->password;
            return POLICY_VERIFY_HASH;
        }
    }
    copy_str(v->user, sizeof(v->user), u->username, u->username_len);
    v->max_conns = u->max_conns >= 0 ? (uint32_t)u->max_conns : ctx->default_max_conns;
    v->max_rps = u->max_rps >= 0 ? (uint32_t)u->max_rps : ctx->default_max_rps;

    /* 3. username options */
    if (opt_error) return refuse(v, 400, opt_error);
    v->duration_min = un.session_time_min;

    /* 4 and 5: the caller asks Redis for the balance; a 402 beats a 503 */
    const struct snap_provider *const *pool;
    const struct country *country = un.country;
    size_t n;
    if (country) {
        n = snapshot_providers(snap, false, &pool);
    } else {
        country = country_lookup("US", 2); /* the reference's default */
        n = snapshot_providers(snap, true, &pool);
        if (n == 0) n = snapshot_providers(snap, false, &pool);
    }
    memcpy(v->country, country->code, 3);
    v->check_balance = true;
    if (n == 0) {
        v->status = 503;
        v->reason = "no upstream provider available";
        return POLICY_DONE;
    }
    if (!route(pool, n, &un, country, ctx, v)) {
        v->status = 503;
        v->reason = "upstream provider misconfigured";
        return POLICY_DONE;
    }
    v->status = 200;
    v->reason = "ok";
    return POLICY_DONE;
}
