/*
 * Rendezvous (highest random weight) hashing: the sticky choice of provider
 * and port for a session, the same on every gateway node and across restarts
 * with no shared state.
 *
 * The hash is SipHash-2-4 (Aumasson and Bernstein, 2012) with the fixed
 * 128-bit key whose 16 bytes are the ASCII text "proxy-gw-rv-v1\0\0" (little-
 * endian words k0, k1), over this byte string:
 *
 *     le32(len user) user  le32(len country) country  le32(len session) session
 *     le32(len slug) slug  tag
 *
 * where le32 is a 4-byte little-endian length and tag is one byte: 'S' for a
 * provider's score, 'P' for its port hash. The lengths make the encoding
 * unambiguous; the tag makes the port independent of the score. SipHash is
 * defined on bytes and little-endian words, so the results are identical on
 * every architecture. Changing any of this moves every sticky session.
 *
 * Pure functions: no I/O, no allocation, no global state.
 */
#ifndef GW_RENDEZVOUS_H
#define GW_RENDEZVOUS_H

#include <stddef.h>
#include <stdint.h>

/* A byte string, not NUL-terminated; ptr may be NULL when len is 0. Same
 * layout as struct spop_str. */
struct rendezvous_str {
    const char *ptr;
    size_t len; /* bytes */
};

/* What a session is: the same key always lands on the same provider. */
struct rendezvous_key {
    struct rendezvous_str user;    /* customer username (without options) */
    struct rendezvous_str country; /* upper-case ISO code, or empty */
    struct rendezvous_str session; /* session id */
};

/*
 * Picks among n candidates, each named by its stable slug, the one with the
 * highest rendezvous_score; ties (astronomically rare) go to the smaller slug
 * in byte order, so the result does not depend on the order of slugs[].
 * Returns its index, or n when n is 0. When score is not NULL it receives the
 * winner's score.
 */
size_t rendezvous_pick(const struct rendezvous_key *k, const struct rendezvous_str *slugs, size_t n,
                       uint64_t *score);

/* The slug of candidate i of ctx (for rendezvous_pick_by). */
typedef struct rendezvous_str (*rendezvous_slug_fn)(const void *ctx, size_t i);

/* rendezvous_pick over candidates kept in the caller's own structure (the
 * policy's provider pool): the same choice, without copying the slugs out. */
size_t rendezvous_pick_by(const struct rendezvous_key *k, size_t n, rendezvous_slug_fn slug_at,
                          const void *ctx, uint64_t *score);

/* The score of one provider for a key (the hash tagged 'S'). */
uint64_t rendezvous_score(const struct rendezvous_key *k, const struct rendezvous_str *slug);

/* The port hash of one provider for a key (the hash tagged 'P'). */
uint64_t rendezvous_port_hash(const struct rendezvous_key *k, const struct rendezvous_str *slug);

/*
 * Maps a hash onto [min, max] evenly (multiply-high, not modulo):
 * min + floor(h * (max - min + 1) / 2^64). min > max is read as [max, min].
 */
uint16_t rendezvous_port(uint64_t h, uint16_t min, uint16_t max);

/* SipHash-2-4 of data[0..len) with key (k0, k1): exposed for the tests'
 * reference vectors. */
uint64_t rendezvous_siphash(uint64_t k0, uint64_t k1, const void *data, size_t len);

#endif /* GW_RENDEZVOUS_H */
