/*
 * Sticky provider choice by rendezvous hashing.
 *
 * A session (user, country, session id) must reach the same provider and
 * port on every gateway node and after restarts, without a Redis round trip,
 * and removing a provider must move only the sessions it held. Rendezvous
 * hashing gives both: each candidate gets a score hash(key, slug) and the
 * highest wins, so a candidate's departure only affects the keys it won.
 *
 * SipHash-2-4 is written out here from its specification (it is small) and
 * fed incrementally: the key's fields are absorbed once per pick and the
 * state is copied for each candidate, so n candidates cost one pass over the
 * key plus n short passes over the slugs. rendezvous.h fixes the encoding.
 * Not OpenSSL's SipHash (EVP_MAC): that allocates a context per call and
 * cannot copy an absorbed prefix, and this runs on every sticky request.
 */
#include "rendezvous.h"

#include <string.h>

/* The ASCII bytes "proxy-gw" and "-rv-v1\0\0" as little-endian words. */
#define RV_K0 0x77672d79786f7270ull
#define RV_K1 0x000031762d76722dull

struct rv_sip {
    uint64_t v0, v1, v2, v3;
    uint8_t tail[8]; /* bytes not yet absorbed, fewer than 8 */
    size_t ntail;
    uint64_t total; /* bytes absorbed so far, mod 2^64 */
};

static uint64_t rv_rotl(uint64_t x, unsigned b)
{
    return (x << b) | (x >> (64 - b));
}

static uint64_t rv_load_le64(const uint8_t *p)
{
    uint64_t w = 0;
    for (int i = 7; i >= 0; i--)
        w = (w << 8) | p[i];
    return w;
}

static void rv_round(struct rv_sip *s)
{
    s->v0 += s->v1;
    s->v1 = rv_rotl(s->v1, 13);
    s->v1 ^= s->v0;
    s->v0 = rv_rotl(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = rv_rotl(s->v3, 16);
    s->v3 ^= s->v2;
    s->v0 += s->v3;
    s->v3 = rv_rotl(s->v3, 21);
    s->v3 ^= s->v0;
    s->v2 += s->v1;
    s->v1 = rv_rotl(s->v1, 17);
    s->v1 ^= s->v2;
    s->v2 = rv_rotl(s->v2, 32);
}

/* Two compression rounds per 8-byte word: the "2" of SipHash-2-4. */
static void rv_word(struct rv_sip *s, uint64_t m)
{
    s->v3 ^= m;
    rv_round(s);
    rv_round(s);
    s->v0 ^= m;
}

static void rv_init(struct rv_sip *s, uint64_t k0, uint64_t k1)
{
    s->v0 = k0 ^ 0x736f6d6570736575ull;
    s->v1 = k1 ^ 0x646f72616e646f6dull;
    s->v2 = k0 ^ 0x6c7967656e657261ull;
    s->v3 = k1 ^ 0x7465646279746573ull;
    s->ntail = 0;
    s->total = 0;
}

static void rv_absorb(struct rv_sip *s, const void *data, size_t len)
{
    const uint8_t *p = data;

    s->total += len;
    if (s->ntail > 0) {
        while (s->ntail < 8 && len > 0) {
            s->tail[s->ntail++] = *p++;
            len--;
        }
        if (s->ntail < 8) return;
        rv_word(s, rv_load_le64(s->tail));
        s->ntail = 0;
    }
    for (; len >= 8; p += 8, len -= 8)
        rv_word(s, rv_load_le64(p));
    if (len > 0) memcpy(s->tail, p, len);
    s->ntail = len;
}

/* The last word carries the length's low byte on top; then four rounds: the
 * "4" of SipHash-2-4. */
static uint64_t rv_final(struct rv_sip *s)
{
    uint64_t b = (s->total & 0xff) << 56;
    for (size_t i = 0; i < s->ntail; i++)
        b |= (uint64_t)s->tail[i] << (8 * i);
    rv_word(s, b);
    s->v2 ^= 0xff;
    for (int i = 0; i < 4; i++)
        rv_round(s);
    return s->v0 ^ s->v1 ^ s->v2 ^ s->v3;
}

uint64_t rendezvous_siphash(uint64_t k0, uint64_t k1, const void *data, size_t len)
{
    struct rv_sip s;
    rv_init(&s, k0, k1);
    rv_absorb(&s, data, len);
    return rv_final(&s);
}

/* le32(len) then the bytes. Lengths past 4 GiB cannot occur for these
 * fields; they are truncated like the rest of the encoding would be. */
static void rv_field(struct rv_sip *s, const struct rendezvous_str *f)
{
    size_t len = f->ptr != NULL ? f->len : 0;
    uint8_t l[4] = {(uint8_t)len, (uint8_t)(len >> 8), (uint8_t)(len >> 16), (uint8_t)(len >> 24)};
    rv_absorb(s, l, sizeof(l));
    if (len > 0) rv_absorb(s, f->ptr, len);
}

static void rv_key_state(struct rv_sip *s, const struct rendezvous_key *k)
{
    rv_init(s, RV_K0, RV_K1);
    rv_field(s, &k->user);
    rv_field(s, &k->country);
    rv_field(s, &k->session);
}

static uint64_t rv_tagged(const struct rv_sip *key_state, const struct rendezvous_str *slug,
                          uint8_t tag)
{
    struct rv_sip s = *key_state;
    rv_field(&s, slug);
    rv_absorb(&s, &tag, 1);
    return rv_final(&s);
}

uint64_t rendezvous_score(const struct rendezvous_key *k, const struct rendezvous_str *slug)
{
    struct rv_sip s;
    rv_key_state(&s, k);
    return rv_tagged(&s, slug, 'S');
}

uint64_t rendezvous_port_hash(const struct rendezvous_key *k, const struct rendezvous_str *slug)
{
    struct rv_sip s;
    rv_key_state(&s, k);
    return rv_tagged(&s, slug, 'P');
}

/* Byte order of two slugs, shorter first on a common prefix. */
static int rv_slug_cmp(const struct rendezvous_str *a, const struct rendezvous_str *b)
{
    size_t alen = a->ptr ? a->len : 0, blen = b->ptr ? b->len : 0;
    size_t n = alen < blen ? alen : blen;
    int c = n > 0 ? memcmp(a->ptr, b->ptr, n) : 0;
    if (c != 0) return c;
    return alen < blen ? -1 : alen > blen;
}

size_t rendezvous_pick_by(const struct rendezvous_key *k, size_t n, rendezvous_slug_fn slug_at,
                          const void *ctx, uint64_t *score)
{
    struct rv_sip s;
    size_t best = n;
    uint64_t best_score = 0;
    struct rendezvous_str best_slug = {NULL, 0};

    if (n == 0) return n;
    rv_key_state(&s, k);
    for (size_t i = 0; i < n; i++) {
        struct rendezvous_str slug = slug_at(ctx, i);
        uint64_t sc = rv_tagged(&s, &slug, 'S');
        if (best == n || sc > best_score ||
            (sc == best_score && rv_slug_cmp(&slug, &best_slug) < 0)) {
            best = i;
            best_score = sc;
            best_slug = slug;
        }
    }
    if (score) *score = best_score;
    return best;
}

static struct rendezvous_str rv_array_slug(const void *ctx, size_t i)
{
    return ((const struct rendezvous_str *)ctx)[i];
}

size_t rendezvous_pick(const struct rendezvous_key *k, const struct rendezvous_str *slugs, size_t n,
                       uint64_t *score)
{
    return rendezvous_pick_by(k, n, rv_array_slug, slugs, score);
}

uint16_t rendezvous_port(uint64_t h, uint16_t min, uint16_t max)
{
    if (min > max) {
        uint16_t t = min;
        min = max;
        max = t;
    }
    uint64_t range = (uint64_t)max - min + 1;
    return (uint16_t)(min + (uint64_t)(((unsigned __int128)h * range) >> 64));
}
