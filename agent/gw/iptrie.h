/*
 * Longest-prefix match over IPv4 and IPv6 prefixes: the client IP whitelist
 * (authorized_ips.ip, "203.0.113.50" or "10.0.0.0/8" or "2001:db8::/32").
 *
 * A trie is built by one thread (iptrie_new, iptrie_insert...) and is then
 * immutable: once published to other threads (with the release/acquire the
 * snapshot swap provides) any number of them may call iptrie_match at once.
 * Lookups allocate nothing and cost one walk down a path-compressed binary
 * trie: O(address bits) at worst, independent of the number of entries.
 *
 * Address families. IPv4 and IPv6 entries live in separate tries. An IPv6
 * entry inside ::ffff:0:0/96 with a length of at least 96 is an IPv4 entry
 * written in IPv6 notation and is stored as one; an IPv4-mapped IPv6 client
 * address (::ffff:a.b.c.d) is looked up as the IPv4 address a.b.c.d. Other
 * IPv6 entries never match IPv4 clients: "::/0" admits every IPv6 client and
 * no IPv4 one (as the reference's Go net.IPNet.Contains behaves).
 */
#ifndef GW_IPTRIE_H
#define GW_IPTRIE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest accepted text for iptrie_parse_cidr, after trimming. */
#define IPTRIE_CIDR_MAX 64

struct ip_prefix {
    int family;         /* AF_INET or AF_INET6 */
    uint8_t addr[16];   /* network byte order; 4 bytes used for AF_INET;
                           bits past len are zero */
    uint8_t len;        /* prefix length, bits: 0..32 or 0..128 */
    bool host_bits_set; /* the text had bits set past len (now cleared) */
};

struct iptrie;

/*
 * Parses "a.b.c.d", "a.b.c.d/n", an IPv6 address, or "v6addr/n" (addresses by
 * inet_pton, so no zone ids, no leading zeros in IPv4 octets). Surrounding
 * spaces and tabs are ignored. A missing "/n" means a host prefix (/32, /128).
 * n is 1 to 3 decimal digits, no sign, at most 32 or 128. Bits set past the
 * prefix length ("10.1.2.3/8") are accepted and cleared, and host_bits_set
 * tells the loader so it can warn. IPv4-mapped IPv6 prefixes of length >= 96
 * come back as AF_INET ("::ffff:10.0.0.0/104" is 10.0.0.0/8).
 * Returns 0, or -1 for anything else.
 */
int iptrie_parse_cidr(const char *s, size_t len, struct ip_prefix *out);

/* An empty trie; NULL when out of memory. Free with iptrie_free. */
struct iptrie *iptrie_new(void);

/*
 * Adds p with the caller's id (e.g. the authorized_ips row id). When the same
 * prefix is added twice, the first id is kept (and the prefix counted twice:
 * see iptrie_remove). Returns 0, or -1 when out of
 * memory or p is invalid (the trie is unchanged then). Not thread-safe; never
 * call it on a trie that other threads may be reading.
 */
int iptrie_insert(struct iptrie *t, const struct ip_prefix *p, uint32_t id);

/*
 * Takes back one insertion of p (any id): p stops matching once every
 * insertion of it is taken back. Returns 0, or -1 when p is not in the trie
 * or was inserted too many times (65,535) to be counted: then build a new
 * trie. Not thread-safe, as iptrie_insert.
 */
int iptrie_remove(struct iptrie *t, const struct ip_prefix *p);

/* A copy of t for a writer to change (t stays as it is); NULL when out of
 * memory. */
struct iptrie *iptrie_copy(const struct iptrie *t);

/* Number of distinct prefixes inserted and not removed. */
size_t iptrie_count(const struct iptrie *t);

/*
 * Whether addr (4 bytes for AF_INET, 16 for AF_INET6, network byte order) is
 * inside any inserted prefix. On a match, *id (if id is not NULL) is the id
 * of the longest matching prefix. Unknown families never match.
 */
bool iptrie_match(const struct iptrie *t, int family, const uint8_t *addr, uint32_t *id);

/* Frees the trie and everything it owns; NULL is fine. */
void iptrie_free(struct iptrie *t);

#endif /* GW_IPTRIE_H */
