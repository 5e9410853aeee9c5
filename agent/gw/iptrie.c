/*
 * The whitelist lookup: is this client address inside any authorized
 * prefix? Asked on every request, so it must not scan the list: the
 * reference's linear scan is fine for ten entries and not for 100,000.
 *
 * A path-compressed binary trie per family: every node holds a whole prefix
 * (bits and length), children extend it by at least one bit, and chains of
 * single-child nodes are never created, so there are fewer than two nodes
 * per prefix and a lookup visits at most one node per distinct prefix length
 * on its path. Nodes live in one array and refer to each other by index, so
 * the build can grow it with realloc and a lookup touches no pointers but the
 * array's. The build is the only writer; see iptrie.h for thread use.
 * Hand-written: Debian has no maintained longest-prefix-match library for C
 * of this size (the ones in routing daemons come with their daemons).
 */
#include "iptrie.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

struct iptrie_node {
    uint8_t key[16];   /* prefix bits, network order; bits past len are zero */
    uint8_t len;       /* prefix length, bits */
    uint16_t rows;     /* insertions of this prefix not removed; 0: a branch;
                          IPTRIE_ROWS_STUCK: too many to count, never removed */
    uint32_t id;       /* a caller's id, when rows > 0 */
    uint32_t child[2]; /* node indices by the bit after len; 0 is "none" */
};

#define IPTRIE_ROWS_STUCK UINT16_MAX

/* Nodes 0 and 1 are the IPv4 and IPv6 roots (the empty prefix); being roots,
 * they are never anyone's child, which frees index 0 to mean "none". */
enum { IPTRIE_ROOT4 = 0, IPTRIE_ROOT6 = 1 };

struct iptrie {
    struct iptrie_node *nodes; /* owned; n used of cap */
    size_t n, cap;             /* nodes */
    size_t count;              /* distinct prefixes inserted */
};

static const uint8_t iptrie_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static unsigned iptrie_bit(const uint8_t *key, unsigned i)
{
    return (key[i >> 3] >> (7 - (i & 7))) & 1u;
}

/* Clears every bit at or past len. */
static void iptrie_mask(uint8_t key[16], unsigned len)
{
    for (unsigned i = 0; i < 16; i++) {
        if (len >= 8 * (i + 1)) continue;
        key[i] &= len <= 8 * i ? 0 : (uint8_t)(0xff << (8 - (len - 8 * i)));
    }
}

/* Number of leading bits a and b share, at most max. */
static unsigned iptrie_common(const uint8_t *a, const uint8_t *b, unsigned max)
{
    unsigned n = 0;
    for (unsigned i = 0; n < max; i++) {
        uint8_t x = a[i] ^ b[i];
        if (x != 0) {
            n += (unsigned)__builtin_clz(x) - 24;
            break;
        }
        n += 8;
    }
    return n < max ? n : max;
}

/* Whether bits [from, to) of a and b are equal; bits before from are known
 * equal already, so whole bytes from from / 8 may be compared. */
static bool iptrie_equal_bits(const uint8_t *a, const uint8_t *b, unsigned from, unsigned to)
{
    unsigned i = from >> 3;
    for (; 8 * (i + 1) <= to; i++)
        if (a[i] != b[i]) return false;
    if (8 * i < to) {
        uint8_t m = (uint8_t)(0xff << (8 - (to - 8 * i)));
        if ((a[i] ^ b[i]) & m) return false;
    }
    return true;
}

int iptrie_parse_cidr(const char *s, size_t len, struct ip_prefix *out)
{
    char buf[IPTRIE_CIDR_MAX + 1];
    struct ip_prefix p = {0};

    if (s == NULL) return -1;
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    while (len > 0 && (s[0] == ' ' || s[0] == '\t')) {
        s++;
        len--;
    }
    if (len == 0 || len > IPTRIE_CIDR_MAX || memchr(s, '\0', len) != NULL) return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';

    char *slash = strchr(buf, '/');
    if (slash != NULL) *slash = '\0';
    p.family = strchr(buf, ':') != NULL ? AF_INET6 : AF_INET;
    unsigned width = p.family == AF_INET ? 32 : 128;
    if (inet_pton(p.family, buf, p.addr) != 1) return -1;

    unsigned plen = width;
    if (slash != NULL) {
        const char *d = slash + 1;
        size_t nd = strlen(d);
        if (nd == 0 || nd > 3) return -1;
        plen = 0;
        for (size_t i = 0; i < nd; i++) {
            if (d[i] < '0' || d[i] > '9') return -1;
            plen = plen * 10 + (unsigned)(d[i] - '0');
        }
        if (plen > width) return -1;
    }

    uint8_t masked[16];
    memcpy(masked, p.addr, sizeof(masked));
    iptrie_mask(masked, plen);
    p.host_bits_set = memcmp(masked, p.addr, sizeof(masked)) != 0;
    memcpy(p.addr, masked, sizeof(masked));
    p.len = (uint8_t)plen;

    /* ::ffff:a.b.c.d/96+n is the IPv4 prefix a.b.c.d/n (see iptrie.h). */
    if (p.family == AF_INET6 && plen >= 96 &&
        memcmp(p.addr, iptrie_mapped_prefix, sizeof(iptrie_mapped_prefix)) == 0) {
        p.family = AF_INET;
        memmove(p.addr, p.addr + 12, 4);
        memset(p.addr + 4, 0, 12);
        p.len = (uint8_t)(plen - 96);
    }
    *out = p;
    return 0;
}

struct iptrie *iptrie_new(void)
{
    struct iptrie *t = calloc(1, sizeof(*t));
    if (t == NULL) return NULL;
    t->cap = 64;
    t->nodes = calloc(t->cap, sizeof(*t->nodes));
    if (t->nodes == NULL) {
        free(t);
        return NULL;
    }
    t->n = 2; /* the two roots, zeroed: empty prefixes, no children */
    return t;
}

/* Makes room for two more nodes, the most one insertion adds. */
static int iptrie_reserve(struct iptrie *t)
{
    if (t->n + 2 <= t->cap) return 0;
    if (t->cap > UINT32_MAX / 2) return -1;
    size_t cap = t->cap * 2;
    struct iptrie_node *nodes = realloc(t->nodes, cap * sizeof(*nodes));
    if (nodes == NULL) return -1;
    t->nodes = nodes;
    t->cap = cap;
    return 0;
}

static uint32_t iptrie_add_node(struct iptrie *t, const uint8_t key[16], unsigned len)
{
    struct iptrie_node *nd = &t->nodes[t->n];
    memset(nd, 0, sizeof(*nd));
    memcpy(nd->key, key, 16);
    iptrie_mask(nd->key, len);
    nd->len = (uint8_t)len;
    return (uint32_t)t->n++;
}

/* The prefix's root, and q: its bits, masked. -1 for an invalid prefix. */
static int iptrie_key(const struct ip_prefix *p, uint8_t q[16], uint32_t *root)
{
    if (p == NULL ||
        (!(p->family == AF_INET && p->len <= 32) && !(p->family == AF_INET6 && p->len <= 128)))
        return -1;
    memset(q, 0, 16);
    memcpy(q, p->addr, p->family == AF_INET ? 4 : 16);
    iptrie_mask(q, p->len);
    *root = p->family == AF_INET ? IPTRIE_ROOT4 : IPTRIE_ROOT6;
    return 0;
}

int iptrie_insert(struct iptrie *t, const struct ip_prefix *p, uint32_t id)
{
    uint8_t q[16];
    uint32_t cur;
    if (t == NULL || iptrie_key(p, q, &cur) != 0 || iptrie_reserve(t) != 0) return -1;
    const unsigned qlen = p->len;

    /* Invariant: nodes[cur] is a prefix of q. */
    for (;;) {
        struct iptrie_node *nd = &t->nodes[cur];
        if (nd->len == qlen) {
            if (nd->rows == 0) {
                nd->id = id;
                t->count++;
            }
            if (nd->rows != IPTRIE_ROWS_STUCK) nd->rows++;
            return 0;
        }
        unsigned b = iptrie_bit(q, nd->len);
        uint32_t c = nd->child[b];
        if (c == 0) {
            uint32_t leaf = iptrie_add_node(t, q, qlen);
            t->nodes[leaf].rows = 1;
            t->nodes[leaf].id = id;
            t->nodes[cur].child[b] = leaf;
            t->count++;
            return 0;
        }
        const struct iptrie_node *cn = &t->nodes[c];
        unsigned k = iptrie_common(q, cn->key, qlen < cn->len ? qlen : cn->len);
        if (k == cn->len) {
            cur = c;
            continue;
        }
        /* q and the child part ways (or q ends) at bit k, strictly inside
         * the child's prefix: a node for the first k bits goes between. */
        unsigned cbit = iptrie_bit(cn->key, k);
        uint32_t split = iptrie_add_node(t, q, k);
        t->nodes[split].child[cbit] = c;
        if (k == qlen) {
            t->nodes[split].rows = 1;
            t->nodes[split].id = id;
        } else {
            uint32_t leaf = iptrie_add_node(t, q, qlen);
            t->nodes[leaf].rows = 1;
            t->nodes[leaf].id = id;
            t->nodes[split].child[cbit ^ 1u] = leaf;
        }
        t->nodes[cur].child[b] = split;
        t->count++;
        return 0;
    }
}

/*
 * The node left a branch keeps its place: lookups stay correct (they test
 * rows), and the next whole build drops it. A prefix inserted more often
 * than a node can count is stuck: removing it fails, and the caller builds
 * the trie again from its rows.
 */
int iptrie_remove(struct iptrie *t, const struct ip_prefix *p)
{
    uint8_t q[16];
    uint32_t cur;
    if (t == NULL || iptrie_key(p, q, &cur) != 0) return -1;
    for (;;) {
        struct iptrie_node *nd = &t->nodes[cur];
        if (nd->len == p->len) {
            if (nd->rows == 0 || nd->rows == IPTRIE_ROWS_STUCK) return -1;
            if (--nd->rows == 0) t->count--;
            return 0;
        }
        uint32_t c = nd->child[iptrie_bit(q, nd->len)];
        if (c == 0 || t->nodes[c].len > p->len ||
            !iptrie_equal_bits(t->nodes[c].key, q, nd->len, t->nodes[c].len))
            return -1;
        cur = c;
    }
}

struct iptrie *iptrie_copy(const struct iptrie *t)
{
    if (t == NULL) return NULL;
    struct iptrie *c = malloc(sizeof(*c));
    if (c == NULL) return NULL;
    *c = *t;
    c->cap = t->n + 64; /* room for a few insertions before a realloc */
    c->nodes = malloc(c->cap * sizeof(*c->nodes));
    if (c->nodes == NULL) {
        free(c);
        return NULL;
    }
    memcpy(c->nodes, t->nodes, t->n * sizeof(*t->nodes));
    return c;
}

size_t iptrie_count(const struct iptrie *t)
{
    return t ? t->count : 0;
}

bool iptrie_match(const struct iptrie *t, int family, const uint8_t *addr, uint32_t *id)
{
    uint8_t key[16] = {0};
    unsigned width;
    uint32_t cur;

    if (t == NULL || addr == NULL) return false;
    if (family == AF_INET6 && memcmp(addr, iptrie_mapped_prefix, 12) == 0) {
        family = AF_INET;
        addr += 12;
    }
    if (family == AF_INET) {
        memcpy(key, addr, 4);
        width = 32;
        cur = IPTRIE_ROOT4;
    } else if (family == AF_INET6) {
        memcpy(key, addr, 16);
        width = 128;
        cur = IPTRIE_ROOT6;
    } else {
        return false;
    }

    bool found = false;
    for (;;) {
        const struct iptrie_node *nd = &t->nodes[cur];
        /* Prefixes grow along the path: the last terminal is the longest. */
        if (nd->rows != 0) {
            found = true;
            if (id) *id = nd->id;
        }
        if (nd->len >= width) break;
        uint32_t c = nd->child[iptrie_bit(key, nd->len)];
        if (c == 0 || !iptrie_equal_bits(t->nodes[c].key, key, nd->len, t->nodes[c].len)) break;
        cur = c;
    }
    return found;
}

void iptrie_free(struct iptrie *t)
{
    if (t == NULL) return;
    free(t->nodes);
    free(t);
}
