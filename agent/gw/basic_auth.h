/*
 * HTTP Basic credentials (RFC 7617): decoding the client's
 * Proxy-Authorization value and encoding the upstream one.
 *
 * Pure functions over caller buffers: no I/O, no allocation, no global state.
 */
#ifndef GW_BASIC_AUTH_H
#define GW_BASIC_AUTH_H

#include <stddef.h>

/* Largest decoded "user:password" accepted, in bytes. Longer credentials are
 * refused before decoding: no client can make the agent do unbounded work. */
#define BASIC_AUTH_MAX_DECODED 512

/* Buffer size that basic_auth_decode always finds sufficient. */
#define BASIC_AUTH_BUF_SIZE (BASIC_AUTH_MAX_DECODED + 1)

/* Base64 length of n bytes, with padding, without the NUL. */
#define BASIC_AUTH_B64_LEN(n) ((((n) + 2) / 3) * 4)

struct basic_auth_cred {
    const char *user; /* NUL-terminated, inside the caller's buffer */
    size_t user_len;  /* bytes, >= 1 */
    const char *pass; /* NUL-terminated, inside the caller's buffer */
    size_t pass_len;  /* bytes, may be 0 */
};

/*
 * Decodes a header value "Basic <base64>" into buf (cap bytes) and points
 * out->user and out->pass into it; the decoded text is split at its FIRST
 * colon, so passwords may contain colons, user names may not.
 *
 * Accepted: optional spaces/tabs around the value, the scheme "Basic" in any
 * letter case, one or more spaces/tabs, then standard base64 (RFC 4648
 * alphabet, '=' padding required, length a multiple of 4, unused bits zero:
 * only the canonical encoding is accepted).
 *
 * Returns 0, or -1 with *reason set to a static message for: an empty value,
 * another scheme, bad base64, a decoded length above BASIC_AUTH_MAX_DECODED or
 * not fitting in cap - 1, a NUL byte in the decoded text, no colon, an empty
 * user name. On error the contents of buf are unspecified.
 */
int basic_auth_decode(const char *hdr, size_t len, char *buf, size_t cap,
                      struct basic_auth_cred *out, const char **reason);

/*
 * Writes base64("user:pass") into out (cap bytes) with a NUL, the token that
 * follows "Basic " in an upstream Proxy-Authorization header. Returns its
 * length, or 0 when it does not fit (out then holds "" if cap > 0) or when
 * user contains ':' or is empty, which Basic cannot represent.
 */
size_t basic_auth_encode(const char *user, size_t ulen, const char *pass, size_t plen, char *out,
                         size_t cap);

#endif /* GW_BASIC_AUTH_H */
